//! Log-copy cost: a container writes 50 MB in 100-byte lines. We compare
//! the CPU dockercri spends writing its CRI log with the CPU dockerd spends
//! writing its own json log for the same output (measured on a run without
//! dockercri). Run: `cargo build --release && cargo bench --bench logs`.
//! Needs dockerd and the test images (`scripts/setup.sh`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use dockercri::proto::runtime_service_client::RuntimeServiceClient;
use dockercri::proto::*;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};

const IMAGE: &str = "dockercri-test/busybox:latest";
const BYTES: u64 = 50 * 1024 * 1024;
/// 99 characters and a newline per line.
const SCRIPT: &str = "yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -c 52428800";

/// CPU time (user + system) a process has used so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

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

async fn through_dockercri(binary: &Path, dir: &Path) -> (Duration, Duration, Duration) {
    let socket = dir.join("cri.sock");
    let mut child = std::process::Command::new(binary)
        .args([
            "--container-runtime-endpoint",
            &format!("unix://{}", socket.display()),
        ])
        .args(["--root-directory", &dir.join("root").display().to_string()])
        .args(["--log-level", "warn"])
        .spawn()
        .expect("dockercri binary");
    while tokio::net::UnixStream::connect(&socket).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let path = socket.clone();
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap();
    let mut rt = RuntimeServiceClient::new(channel);
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
    let binary = std::env::var("DOCKERCRI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/dockercri"));
    let docker = Docker::connect_with_unix_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let baseline = docker_only(&docker).await;
    let (ours, dockerd, elapsed) = through_dockercri(&binary, dir.path()).await;
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
