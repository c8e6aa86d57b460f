//! `ListContainerStats` with 50 running containers, against the raw Docker
//! stats endpoint for the same containers; then `ListPodSandboxMetrics`
//! with 25 pods (the first holding those 50 containers, 24 more with one
//! each). Run: `cargo build --release && cargo bench --bench stats`. Needs
//! dockerd and the test images.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use common::IMAGE;
use dockercri::proto::*;
use futures_util::StreamExt;

const CONTAINERS: usize = 50;
const ROUNDS: usize = 50;
const PODS: usize = 25;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let (mut child, mut rt) = common::start(dir.path()).await;
    let pod = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "statsbench".into(),
            namespace: "bench".into(),
            uid: format!("statsbench-{}", std::process::id()),
            attempt: 0,
        }),
        log_directory: dir.path().join("pods").display().to_string(),
        labels: HashMap::from([("dockercri.bench".to_string(), "stats".to_string())]),
        ..Default::default()
    };
    let pod_id = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let mut ids = Vec::new();
    for i in 0..CONTAINERS {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: format!("c{i}"),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: format!("c{i}/0.log"),
            ..Default::default()
        };
        let id = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        rt.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
        ids.push(id);
    }
    let filter = || {
        Some(ContainerStatsFilter {
            pod_sandbox_id: pod_id.clone(),
            ..Default::default()
        })
    };
    let started = Instant::now();
    let first = rt
        .list_container_stats(ListContainerStatsRequest { filter: filter() })
        .await
        .unwrap()
        .into_inner();
    let first_took = started.elapsed();
    assert_eq!(first.stats.len(), CONTAINERS);
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let r = rt
            .list_container_stats(ListContainerStatsRequest { filter: filter() })
            .await
            .unwrap()
            .into_inner();
        hist.record(t.elapsed().as_micros() as u64).unwrap();
        assert_eq!(r.stats.len(), CONTAINERS);
    }

    // The raw Docker way: one stats call (stream=false) per container, all at once.
    let docker = bollard::Docker::connect_with_unix_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let t = Instant::now();
    let calls = ids.iter().map(|id| {
        let docker = docker.clone();
        async move {
            let opts = bollard::query_parameters::StatsOptionsBuilder::default()
                .stream(false)
                .build();
            docker.stats(id, Some(opts)).next().await
        }
    });
    let raw = futures_util::future::join_all(calls).await;
    let docker_took = t.elapsed();
    assert_eq!(
        raw.iter().filter(|r| matches!(r, Some(Ok(_)))).count(),
        CONTAINERS
    );

    let ms = |us: u64| us as f64 / 1000.0;
    println!("ListContainerStats, {CONTAINERS} running containers, {ROUNDS} rounds");
    println!(
        "first call:   {:>8.2} ms",
        first_took.as_secs_f64() * 1000.0
    );
    println!("p50:          {:>8.2} ms", ms(hist.value_at_quantile(0.5)));
    println!("p99:          {:>8.2} ms", ms(hist.value_at_quantile(0.99)));
    println!("max:          {:>8.2} ms", ms(hist.max()));
    println!(
        "docker stats (stream=false) for the same {CONTAINERS}, concurrently: {:>8.2} ms",
        docker_took.as_secs_f64() * 1000.0
    );
    println!(
        "ratio docker / dockercri p50: {:.0}x",
        docker_took.as_secs_f64() * 1e6 / hist.value_at_quantile(0.5).max(1) as f64
    );

    // ListPodSandboxMetrics: 24 more pods with one container each.
    let mut pods = vec![pod_id.clone()];
    for p in 1..PODS {
        let mut config = pod.clone();
        let meta = config.metadata.get_or_insert_with(Default::default);
        meta.name = format!("metricsbench{p}");
        meta.uid = format!("metricsbench-{}-{p}", std::process::id());
        let id = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let c = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: id.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "app".into(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: IMAGE.into(),
                        ..Default::default()
                    }),
                    command: vec!["sleep".into(), "3600".into()],
                    log_path: format!("app{p}/0.log"),
                    ..Default::default()
                }),
                sandbox_config: Some(config),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        rt.start_container(StartContainerRequest { container_id: c })
            .await
            .unwrap();
        pods.push(id);
    }
    let ours = |r: &ListPodSandboxMetricsResponse| {
        r.pod_metrics
            .iter()
            .filter(|p| pods.contains(&p.pod_sandbox_id))
            .map(|p| {
                p.metrics.len()
                    + p.container_metrics
                        .iter()
                        .map(|c| c.metrics.len())
                        .sum::<usize>()
            })
            .collect::<Vec<_>>()
    };
    let t = Instant::now();
    let first = rt
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner();
    let metrics_first = t.elapsed();
    assert_eq!(ours(&first).len(), PODS);
    let mut metrics_hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut listed = (0, 0);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let r = rt
            .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner();
        metrics_hist.record(t.elapsed().as_micros() as u64).unwrap();
        let counts = ours(&r);
        assert_eq!(counts.len(), PODS);
        listed = (r.pod_metrics.len(), counts.iter().sum::<usize>());
    }
    println!(
        "ListPodSandboxMetrics, {PODS} pods ({} containers; {} pods on the host), {} metrics for ours, {ROUNDS} rounds",
        CONTAINERS + PODS - 1,
        listed.0,
        listed.1
    );
    println!(
        "first call:   {:>8.2} ms",
        metrics_first.as_secs_f64() * 1000.0
    );
    println!(
        "p50:          {:>8.2} ms",
        ms(metrics_hist.value_at_quantile(0.5))
    );
    println!(
        "p99:          {:>8.2} ms",
        ms(metrics_hist.value_at_quantile(0.99))
    );
    println!("max:          {:>8.2} ms", ms(metrics_hist.max()));

    for id in pods {
        let _ = rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        let _ = rt
            .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
            .await;
    }
    let _ = child.kill();
    let _ = child.wait();
}
