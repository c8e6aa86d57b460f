//! The integration-test harness: starts the real `dockercri` binary on a
//! temporary socket and root directory against the local dockerd, connects
//! the generated CRI clients the way kubelet does, and on drop stops the
//! daemon and removes every container the test made (found by label).
//!
//! Needs a running dockerd and the test images: `scripts/setup.sh` (run by
//! `scripts/test.sh`) provides both.

#![allow(dead_code)]

pub mod images;
pub mod pods;
pub mod stream;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dockercri::proto::image_service_client::ImageServiceClient;
use dockercri::proto::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The plain busybox test image (root user).
pub const BUSYBOX: &str = "dockercri-test/busybox:latest";
/// Busybox with `USER 1234`.
pub const BUSYBOX_UID: &str = "dockercri-test/busybox-user:latest";
/// Busybox with `USER app`.
pub const BUSYBOX_NAMED: &str = "dockercri-test/busybox-named:latest";

/// Label every container a test creates carries, with the harness id as value.
pub const TEST_LABEL: &str = "dockercri.test";

/// The dockerd the tests run against.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Path of the dockercri binary cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_dockercri")
}

/// A fresh id for names and labels, unique across concurrent test binaries.
pub fn unique_id(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One dockercri process with its own socket and root directory.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub id: String,
    args: Vec<String>,
    child: Option<Child>,
    channel: Channel,
}

impl Harness {
    /// Starts dockercri against the local dockerd with default settings.
    pub async fn start() -> Harness {
        Harness::start_with(&[]).await
    }

    /// Starts dockercri with extra flags after the harness's own.
    pub async fn start_with(extra: &[&str]) -> Harness {
        let dir = tempdir();
        let socket = dir.path().join("cri.sock");
        let root = dir.path().join("root");
        let mut args: Vec<String> = vec![
            "--container-runtime-endpoint".into(),
            format!("unix://{}", socket.display()),
            "--root-directory".into(),
            root.display().to_string(),
            "--streaming-bind-addr".into(),
            "127.0.0.1:0".into(),
            "--log-level".into(),
            "debug".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = spawn(&args, &dir.path().join("dockercri.log"));
        let mut h = Harness {
            id: unique_id("t"),
            args,
            channel: Endpoint::from_static("http://[::]:50051").connect_lazy(),
            socket,
            root,
            child: Some(child),
            dir,
        };
        h.wait_serving().await;
        h.channel = connect(&h.socket).await;
        h
    }

    /// Waits until the socket accepts connections, or fails with the log.
    async fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if UnixStream::connect(&self.socket).await.is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("dockercri exited early ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "dockercri did not serve on {} within 20s:\n{}",
                self.socket.display(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills dockercri (SIGKILL, as a crash would) and starts it again
    /// with the same flags, socket and root directory; reconnects.
    pub async fn restart_killed(&mut self) {
        self.restart_killed_after(Duration::ZERO).await;
    }

    /// [`Harness::restart_killed`], staying down for `down` in between.
    pub async fn restart_killed_after(&mut self, down: Duration) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        tokio::time::sleep(down).await;
        let log = self.dir.path().join("dockercri.log");
        let old = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::write(self.dir.path().join("dockercri.before-restart.log"), old).ok();
        self.child = Some(spawn(&self.args, &log));
        self.wait_serving().await;
        self.channel = connect(&self.socket).await;
    }

    /// Drops the connection and makes a new one, as a restarted kubelet
    /// does.
    pub async fn reconnect(&mut self) {
        self.channel = connect(&self.socket).await;
    }

    /// The RuntimeService client, as kubelet holds it.
    pub fn rt(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// The ImageService client.
    pub fn img(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    /// Everything dockercri logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockercri.log")).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    /// Labels that mark a CRI object as this test's, for cleanup.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(TEST_LABEL.to_string(), self.id.clone())])
    }

    /// Sends SIGTERM and waits (bounded) for the exit status, letting the
    /// test's own gRPC connections answer the server's goodbye meanwhile.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("dockercri is running");
        signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        wait_async(&mut child, Duration::from_secs(20)).await
    }
}

/// Waits for `child` without blocking the test's runtime; kills it after `limit`.
pub async fn wait_async(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("wait after kill");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Graceful shutdown is tested through `terminate`; here the test's
        // runtime is blocked, so its connections could not say goodbye.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_labelled_containers(&self.id);
        if std::thread::panicking() {
            eprintln!("--- dockercri log ---\n{}", self.logs());
        }
    }
}

/// A temporary directory under /tmp (socket paths must stay short).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dcri")
        .tempdir_in("/tmp")
        .expect("tempdir")
}

/// Starts the binary with `args`, its stderr (the log) going to `log`.
pub fn spawn(args: &[String], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(binary())
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn dockercri")
}

/// Runs the binary to completion (for start-up failures), with a limit.
pub fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let dir = tempdir();
    let log = dir.path().join("out.log");
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    // Keep the default socket and root directory of the node untouched.
    for (flag, value) in [
        (
            "--container-runtime-endpoint",
            format!("unix://{}", dir.path().join("cri.sock").display()),
        ),
        (
            "--root-directory",
            dir.path().join("root").display().to_string(),
        ),
    ] {
        if !args.iter().any(|a| a == flag) {
            args.extend([flag.to_string(), value]);
        }
    }
    let mut child = spawn(&args, &log);
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

/// Waits for `child`; kills it after `limit`.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// A tonic channel over a unix socket (the URI is a placeholder).
pub async fn connect(socket: &Path) -> Channel {
    let path = socket.to_path_buf();
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("connect to dockercri")
}

/// A bollard client for checking Docker's side of things directly.
pub async fn docker() -> bollard::Docker {
    bollard::Docker::connect_with_unix(DOCKER_SOCKET, 120, bollard::API_DEFAULT_VERSION)
        .expect("docker socket")
        .negotiate_version()
        .await
        .expect("dockerd answers (run scripts/setup.sh)")
}

/// Removes every container labelled with this harness's id. Runs its own
/// small runtime on a thread so that it works from `Drop`.
pub fn remove_labelled_containers(id: &str) {
    let id = id.to_string();
    let cleanup = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptions};
            let Ok(docker) =
                bollard::Docker::connect_with_unix(DOCKER_SOCKET, 60, bollard::API_DEFAULT_VERSION)
            else {
                return;
            };
            let filters = HashMap::from([("label", vec![format!("{TEST_LABEL}={id}")])]);
            let opts = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            for c in docker.list_containers(Some(opts)).await.unwrap_or_default() {
                if let Some(cid) = c.id {
                    let _ = docker
                        .remove_container(
                            &cid,
                            Some(RemoveContainerOptions {
                                force: true,
                                v: true,
                                ..Default::default()
                            }),
                        )
                        .await;
                }
            }
        });
    });
    let _ = cleanup.join();
}

/// Forwards every connection on `front` to dockerd's socket: a stand-in
/// for dockerd going away and coming back. Aborting the returned task
/// closes every forwarded connection too, as a dockerd restart would.
pub async fn docker_proxy(front: std::path::PathBuf) -> tokio::task::JoinHandle<()> {
    let _ = std::fs::remove_file(&front);
    let listener = tokio::net::UnixListener::bind(&front).unwrap();
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::UnixStream::connect(DOCKER_SOCKET).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

/// Like [`docker_proxy`], but Docker's event stream is silenced: event
/// requests are rewritten to ask for plugin events, which never come, so
/// the stream stays open and healthy while every container event is
/// missed. Everything else is forwarded untouched.
pub async fn docker_proxy_muting_events(front: std::path::PathBuf) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = std::fs::remove_file(&front);
    let listener = tokio::net::UnixListener::bind(&front).unwrap();
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                let Ok(outbound) = tokio::net::UnixStream::connect(DOCKER_SOCKET).await else {
                    return;
                };
                let (mut from_client, mut to_client) = inbound.into_split();
                let (mut from_docker, mut to_docker) = outbound.into_split();
                let upstream = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from_client.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = mute_event_request(&buf[..n]);
                        if to_docker.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_docker.shutdown().await;
                };
                let downstream = async move {
                    let _ = tokio::io::copy(&mut from_docker, &mut to_client).await;
                };
                tokio::join!(upstream, downstream);
            });
        }
    })
}

/// Rewrites the filter of an events request (`type=container`) to
/// `type=plugin`; other bytes pass as they are.
fn mute_event_request(chunk: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(chunk);
    let first_line = text.lines().next().unwrap_or_default();
    if !(first_line.starts_with("GET ") && first_line.contains("/events")) {
        return chunk.to_vec();
    }
    let muted = first_line
        .replace("%22container%22", "%22plugin%22")
        .replace("\"container\"", "\"plugin\"");
    let mut out = muted.into_bytes();
    out.extend_from_slice(&chunk[first_line.len()..]);
    out
}
