//! The pod lifecycle through dockercri against the same Docker requests
//! made straight through bollard. Run:
//! `cargo build --release && cargo bench --bench lifecycle`
//! (`BENCH_PODS`, default 100; `BENCH_PARALLEL`, default 8;
//! `BENCH_READ_ROUNDS`, default 500; `BENCH_REPEATS`, default 2: runs of
//! each side, alternated). Needs dockerd and the test images
//! (`scripts/setup.sh`).

mod engine;

use std::path::Path;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let binary = std::env::var("DOCKERCRI_BIN")
        .map(Into::into)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/dockercri"));
    let plan = engine::Plan {
        pods: env_or("BENCH_PODS", 100),
        parallel: env_or("BENCH_PARALLEL", 8),
        read_rounds: env_or("BENCH_READ_ROUNDS", 500),
        repeats: env_or("BENCH_REPEATS", 2),
        binary,
    };
    let report = engine::run(plan).await;
    print!("{}", report.render());
}
