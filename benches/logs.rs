//! Log-copy cost: a container writes 50 MB in 100-byte lines. We compare
//! the CPU dockercri spends writing its CRI log with the CPU dockerd spends
//! writing its own json log for the same output (measured on a run without
//! dockercri). Run: `cargo build --release && cargo bench --bench logs`.
//! Needs dockerd and the test images (`scripts/setup.sh`).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use common::{IMAGE, cpu};
use dockercri::proto::*;
use futures_util::StreamExt;

const BYTES: u64 = 50 * 1024 * 1024;
/// 99 characters and a newline per line.
const SCRIPT: &str = "yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -c 52428800";

fn dockerd_pid() -> u32 {
    std::fs::read_to_string("/var/run/docker.pid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("dockerd pid in /var/run/docker.pid")
}

async fn docker_only(docker: &Docker) -> Duration {
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        cmd: Some(vec!["sh".into(), "-c".into(), SCRIPT.into()]),
        ..Default::default()
    };
    let id = docker.create_container(None, body).await.unwrap().id;
    let before = cpu(dockerd_pid());
    docker.start_container(&id, None).await.unwrap();
    let _ = docker.wait_container(&id, None).next().await;
    let used = cpu(dockerd_pid()) - before;
    let _ = docker
        .remove_container(
            &id,
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    used
}

async fn through_dockercri(dir: &Path) -> (Duration, Duration, Duration) {
    let (mut child, mut rt) = common::start(dir).await;
    let pod = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "bench".into(),
            namespace: "bench".into(),
            uid: format!("bench-{}", std::process::id()),
            attempt: 0,
        }),
        log_directory: dir.join("pods").display().to_string(),
        labels: HashMap::from([("dockercri.bench".to_string(), "1".to_string())]),
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
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "writer".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into()],
        args: vec![SCRIPT.into()],
        log_path: "writer/0.log".into(),
        ..Default::default()
    };
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(config),
            sandbox_config: Some(pod),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    let log = dir.join("pods/writer/0.log");
    let (ours_before, dockerd_before) = (cpu(child.id()), cpu(dockerd_pid()));
    let started = Instant::now();
    rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    // Done when the container has exited and every line is in the file.
    let lines = BYTES / 100;
    loop {
        let written = std::fs::read(&log)
            .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
            .unwrap_or(0);
        if written >= lines || started.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    let ours = cpu(child.id()) - ours_before;
    let dockerd = cpu(dockerd_pid()) - dockerd_before;
    let _ = rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await;
    let _ = rt
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await;
    let _ = child.kill();
    let _ = child.wait();
    (ours, dockerd, elapsed)
}

#[tokio::main]
async fn main() {
    let docker = Docker::connect_with_unix_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let baseline = docker_only(&docker).await;
    let (ours, dockerd, elapsed) = through_dockercri(dir.path()).await;
    println!("50 MB in 100-byte lines ({} lines)", BYTES / 100);
    println!(
        "dockerd writing its json log alone:        {:>8.3} s CPU",
        baseline.as_secs_f64()
    );
    println!(
        "dockercri copying it into the CRI log:     {:>8.3} s CPU",
        ours.as_secs_f64()
    );
    println!(
        "dockerd during that run (json + log API):  {:>8.3} s CPU",
        dockerd.as_secs_f64()
    );
    println!(
        "wall time until the CRI log was complete:  {:>8.3} s",
        elapsed.as_secs_f64()
    );
    println!(
        "ratio dockercri / dockerd-json-log:        {:>8.2}",
        ours.as_secs_f64() / baseline.as_secs_f64().max(1e-9)
    );
}
