//! A bounded run of the lifecycle benchmark (`benches/lifecycle`), so that
//! it cannot rot: every operation runs both ways without an error. No
//! timing is asserted here.

#[path = "../benches/lifecycle/engine.rs"]
mod engine;

#[tokio::test(flavor = "multi_thread")]
async fn the_lifecycle_benchmark_runs_clean() {
    let report = engine::run(engine::Plan {
        pods: 3,
        parallel: 2,
        read_rounds: 5,
        repeats: 1,
        binary: env!("CARGO_BIN_EXE_dockercri").into(),
    })
    .await;
    let text = report.render();
    assert!(report.dockercri.errors.is_empty(), "{text}");
    assert!(report.docker.errors.is_empty(), "{text}");
    for op in engine::OPS {
        let count = |s: &engine::Samples| s.latencies.get(op).map_or(0, |h| h.len());
        assert!(
            count(&report.dockercri) > 0,
            "{op} never ran through dockercri\n{text}"
        );
        assert!(
            count(&report.docker) > 0,
            "{op} never ran against docker\n{text}"
        );
    }
    assert!(report.rss_idle_kib > 0 && report.rss_peak_kib >= report.rss_idle_kib);
    println!("{text}");
}
