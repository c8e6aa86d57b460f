//! What the benches share: start the release binary on a temporary socket
//! and connect the CRI client, as kubelet would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use dockercri::proto::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// The test image the benches run.
pub const IMAGE: &str = "dockercri-test/busybox:latest";

/// The dockercri binary under test: `DOCKERCRI_BIN`, else the release build.
pub fn binary() -> PathBuf {
    std::env::var("DOCKERCRI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/dockercri"))
}

/// Starts dockercri with its socket and root under `dir`; returns the
/// process and a connected client.
pub async fn start(dir: &Path) -> (Child, RuntimeServiceClient<Channel>) {
    start_binary(&binary(), dir).await
}

/// [`start`] with a given dockercri binary.
pub async fn start_binary(binary: &Path, dir: &Path) -> (Child, RuntimeServiceClient<Channel>) {
    let socket = dir.join("cri.sock");
    let child = std::process::Command::new(binary)
        .args([
            "--container-runtime-endpoint",
            &format!("unix://{}", socket.display()),
        ])
        .args(["--root-directory", &dir.join("root").display().to_string()])
        .args(["--log-level", "warn"])
        .spawn()
        .expect("dockercri binary (cargo build --release first)");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::UnixStream::connect(&socket).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "dockercri did not serve"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect");
    (child, RuntimeServiceClient::new(channel))
}

/// CPU time (user + system) a process has used so far.
pub fn cpu(pid: u32) -> Duration {
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
