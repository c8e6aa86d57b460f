//! The foundation: runtime info RPCs over the socket, life without dockerd,
//! the socket's rules, systemd activation and readiness, shutdown, and the
//! command line.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener as StdUnixListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use dockercri::proto::{
    CgroupDriver, CheckpointContainerRequest, NetworkConfig, RuntimeConfig, RuntimeConfigRequest,
    StatusRequest, UpdateRuntimeConfigRequest, VersionRequest,
};
use tonic::Code;

fn cidr_request(cidr: &str) -> UpdateRuntimeConfigRequest {
    UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig {
            network_config: Some(NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    }
}

fn condition(resp: &dockercri::proto::StatusResponse, kind: &str) -> (bool, String, String) {
    let c = resp
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == kind))
        .unwrap_or_else(|| panic!("condition {kind} missing: {resp:?}"));
    (c.status, c.reason.clone(), c.message.clone())
}

/// `dockercri --version`: the crate version, the commit it was built from
/// (a commit of this repository, or "unknown" outside a checkout) and the
/// CRI API.
#[test]
fn version_flag_prints_version_commit_and_cri_api() {
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text
        .strip_prefix(&format!("dockercri {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("version and commit: {text:?}"));
    let (commit, rest) = rest.split_once(", ").unwrap();
    assert_eq!(rest, "CRI v1, k8s.io/cri-api v0.36.3)\n");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if git(&["rev-parse", "HEAD"]) {
        // The binary may come from another worktree sharing the target
        // directory: any commit of the repository is right.
        assert!(
            commit.len() == 7 && git(&["cat-file", "-e", &format!("{commit}^{{commit}}")]),
            "{commit:?} is not a commit of this checkout"
        );
    } else {
        assert_eq!(commit, "unknown");
    }
}

#[tokio::test]
async fn version_reports_docker_engine() {
    let h = Harness::start().await;
    let engine = docker().await.version().await.unwrap();
    let v = h
        .rt()
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "docker");
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(Some(v.runtime_version), engine.version);
    assert_eq!(v.version, "0.1.0");
}

/// One HTTP/2 frame: (type, flags, stream, payload).
type Frame = (u8, u8, u32, Vec<u8>);
/// Decoded header fields, in order.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

async fn read_frame(s: &mut tokio::net::UnixStream) -> Frame {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 9];
    s.read_exact(&mut head)
        .await
        .expect("a frame from dockercri");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).await.unwrap();
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    (head[3], head[4], stream, payload)
}

/// grpc-go before 1.51 (kubelet and crictl before Kubernetes 1.26),
/// grpc-java and gRPC core send the socket's path as `:authority`, which h2
/// refuses on its own: such a client, speaking raw HTTP/2 here, is served,
/// on two requests of one connection (the second leans on the HPACK table
/// the first filled).
#[tokio::test]
async fn a_client_that_names_the_socket_path_as_authority_is_served() {
    use prost::Message;
    use tokio::io::AsyncWriteExt;
    const HEADERS: u8 = 0x1;
    const DATA: u8 = 0x0;
    const SETTINGS: u8 = 0x4;
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;

    let h = Harness::start().await;
    let authority = h.socket.display().to_string();
    let mut s = tokio::net::UnixStream::connect(&h.socket).await.unwrap();
    let mut encoder = loona_hpack::Encoder::new();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let body = VersionRequest {
        version: "v1".into(),
    }
    .encode_to_vec();
    let mut message = vec![0];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes());
    message.extend_from_slice(&body);
    for stream in [1, 3] {
        let block = encoder.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/runtime.v1.RuntimeService/Version"),
            (b":authority", authority.as_bytes()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]);
        out.extend(frame(HEADERS, END_HEADERS, stream, &block));
        out.extend(frame(DATA, END_STREAM, stream, &message));
    }
    s.write_all(&out).await.unwrap();

    let mut decoder = loona_hpack::Decoder::new();
    let mut headers: HashMap<u32, Fields> = HashMap::new();
    let mut data: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut ended = 0;
    let read_all = async {
        while ended < 2 {
            let (kind, flags, stream, payload) = read_frame(&mut s).await;
            match kind {
                SETTINGS if flags & 0x1 == 0 => {
                    s.write_all(&frame(SETTINGS, 0x1, 0, &[])).await.unwrap();
                }
                HEADERS => {
                    assert_ne!(flags & END_HEADERS, 0, "one frame per block here");
                    let block = decoder.decode(&payload).unwrap();
                    headers.entry(stream).or_default().extend(block);
                    ended += usize::from(flags & END_STREAM != 0);
                }
                DATA => data.entry(stream).or_default().extend_from_slice(&payload),
                // RST_STREAM (the refusal this test is about) or GOAWAY.
                0x3 | 0x7 => panic!("dockercri answered frame type {kind}: {payload:?}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("both answers within 10 s");
    for stream in [1, 3] {
        let got = &headers[&stream];
        let value = |name: &str| {
            got.iter()
                .find(|(n, _)| n == name.as_bytes())
                .map(|(_, v)| String::from_utf8_lossy(v).to_string())
        };
        assert_eq!(value(":status").as_deref(), Some("200"), "stream {stream}");
        assert_eq!(
            value("grpc-status").as_deref(),
            Some("0"),
            "stream {stream}: {got:?}"
        );
        let reply = &data[&stream];
        let v = dockercri::proto::VersionResponse::decode(&reply[5..]).unwrap();
        assert_eq!(
            (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
            ("docker", "v1")
        );
    }
}

#[tokio::test]
async fn status_is_ready_with_a_live_dockerd() {
    let h = Harness::start().await;
    let s = h
        .rt()
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        condition(&s, "RuntimeReady"),
        (true, String::new(), String::new())
    );
    assert_eq!(
        condition(&s, "NetworkReady"),
        (true, String::new(), String::new())
    );
    assert!(s.info.is_empty(), "info only when verbose");
    assert_eq!(
        s.runtime_handlers.first().map(|h| h.name.as_str()),
        Some("")
    );
    assert!(
        s.runtime_handlers.iter().any(|h| h.name == "runc"),
        "{:?}",
        s.runtime_handlers
    );

    let s = h
        .rt()
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let docker: serde_json::Value = serde_json::from_str(&s.info["docker"]).unwrap();
    // Negotiated: the engine's own API version (1.41 on Docker 20.10).
    let engine = common::docker().await.version().await.unwrap();
    assert_eq!(
        docker["apiVersion"].as_str(),
        engine.api_version.as_deref(),
        "{docker}"
    );
    let config: serde_json::Value = serde_json::from_str(&s.info["config"]).unwrap();
    assert_eq!(
        config["podInfraContainerImage"],
        "registry.k8s.io/pause:3.10"
    );
    // The endpoint as the flag takes it, not a Rust debug string.
    assert_eq!(
        config["containerRuntimeEndpoint"],
        format!("unix://{}", h.socket.display()),
        "{config}"
    );
}

/// Features are what the connected Docker can do: recursive read-only
/// mounts from API 1.44 (Docker 25) on; Docker 20.10 (API 1.41) has none.
#[tokio::test]
async fn status_features_follow_dockers_api_version() {
    let h = Harness::start().await;
    let engine = common::docker().await.version().await.unwrap();
    let api = engine.api_version.unwrap();
    let (major, minor) = api.split_once('.').unwrap();
    let api: (usize, usize) = (major.parse().unwrap(), minor.parse().unwrap());
    let want = api >= (1, 44);
    let s = h
        .rt()
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(!s.runtime_handlers.is_empty());
    for handler in &s.runtime_handlers {
        let features = handler.features.as_ref().unwrap();
        assert_eq!(
            features.recursive_read_only_mounts, want,
            "API {api:?}, handler {:?}",
            handler.name
        );
    }
}

/// The one RPC dockercri does not carry out answers UNIMPLEMENTED through
/// the RPC wrapper: its span and log line name the call.
#[tokio::test]
async fn checkpoint_container_is_unimplemented_and_logged() {
    let mut h = Harness::start().await;
    let err = h
        .rt()
        .checkpoint_container(CheckpointContainerRequest {
            container_id: "checkpointme".into(),
            location: "/tmp/checkpoint.tar".into(),
            timeout: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert!(
        err.message()
            .contains("CheckpointContainer is not implemented by dockercri"),
        "{err:?}"
    );
    assert_eq!(h.terminate().await.code(), Some(0));
    let log = h.logs();
    assert!(
        log.lines().any(|l| l.contains("CheckpointContainer")
            && l.contains("checkpointme")
            && l.contains("rpc refused")),
        "{log}"
    );
}

#[tokio::test]
async fn runtime_config_reports_dockers_cgroup_driver() {
    let h = Harness::start().await;
    let info = docker().await.info().await.unwrap();
    let want = match info.cgroup_driver.map(|d| d.to_string()).as_deref() {
        Some("systemd") => CgroupDriver::Systemd,
        _ => CgroupDriver::Cgroupfs,
    };
    let r = h
        .rt()
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.linux.unwrap().cgroup_driver(), want);
}

#[tokio::test]
async fn update_runtime_config_remembers_the_pod_cidr() {
    let mut h = Harness::start().await;
    for _ in 0..2 {
        h.rt()
            .update_runtime_config(cidr_request("10.88.0.0/16"))
            .await
            .unwrap();
    }
    // An empty CIDR leaves the remembered one alone.
    h.rt()
        .update_runtime_config(cidr_request(""))
        .await
        .unwrap();
    let pod_cidr = |s: &dockercri::proto::StatusResponse| {
        let config: serde_json::Value = serde_json::from_str(&s.info["config"]).unwrap();
        config["podCIDR"].as_str().unwrap_or_default().to_string()
    };
    let s = h
        .rt()
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pod_cidr(&s), "10.88.0.0/16");

    let err = h
        .rt()
        .update_runtime_config(cidr_request("10.88.0.0/99"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("pod_cidr"), "{err:?}");

    // The CIDR survives a restart with the same root directory.
    assert!(h.terminate().await.success());
    let socket = h.dir.path().join("again.sock");
    let args: Vec<String> = [
        "--container-runtime-endpoint".to_string(),
        format!("unix://{}", socket.display()),
        "--root-directory".into(),
        h.root.display().to_string(),
    ]
    .into();
    let mut child = spawn(&args, &h.dir.path().join("again.log"));
    wait_for_socket(&socket).await;
    let channel = connect(&socket).await;
    let mut rt = dockercri::proto::runtime_service_client::RuntimeServiceClient::new(channel);
    let s = rt
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pod_cidr(&s), "10.88.0.0/16");
    signal(child.id(), nix::sys::signal::Signal::SIGTERM);
    assert!(
        wait_async(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
}

async fn wait_for_socket(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::UnixStream::connect(path).await.is_err() {
        assert!(Instant::now() < deadline, "no socket at {}", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A socket file whose server is gone: connecting is refused.
fn dead_socket(path: &std::path::Path) {
    drop(StdUnixListener::bind(path).unwrap());
    assert!(std::fs::metadata(path).unwrap().file_type().is_socket());
}

#[tokio::test]
async fn without_dockerd_status_is_not_ready_and_calls_are_unavailable() {
    let dir = tempdir();
    let dead = dir.path().join("dead-docker.sock");
    dead_socket(&dead);
    let missing = dir.path().join("no-docker.sock");
    for endpoint in [&dead, &missing] {
        let flag = format!("unix://{}", endpoint.display());
        let h = Harness::start_with(&["--docker-endpoint", &flag]).await;
        let started = Instant::now();
        let s = h
            .rt()
            .status(StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner();
        let (ready, reason, message) = condition(&s, "RuntimeReady");
        assert!(!ready);
        assert_eq!(reason, "DockerDaemonNotReady");
        assert!(message.contains(&flag), "{message}");
        let (net_ready, net_reason, _) = condition(&s, "NetworkReady");
        assert!(!net_ready);
        assert_eq!(net_reason, "NetworkPluginNotReady");
        assert!(s.info.contains_key("config"));

        let err = h.rt().version(VersionRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(err.message().contains(&flag), "{err:?}");
        let err = h
            .rt()
            .runtime_config(RuntimeConfigRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnects_when_dockerd_comes_back() {
    let dir = tempdir();
    let endpoint = dir.path().join("docker.sock");
    let flag = format!("unix://{}", endpoint.display());
    let h = Harness::start_with(&["--docker-endpoint", &flag]).await;
    let s = h
        .rt()
        .status(StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!condition(&s, "RuntimeReady").0);

    let proxy = docker_proxy(endpoint.clone()).await;
    let s = h
        .rt()
        .status(StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(condition(&s, "RuntimeReady").0, "{s:?}");
    let v = h
        .rt()
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "docker");

    // Down again, then back again.
    proxy.abort();
    let _ = proxy.await;
    let err = h.rt().version(VersionRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let _proxy = docker_proxy(endpoint.clone()).await;
    h.rt().version(VersionRequest::default()).await.unwrap();
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let dir = tempdir();
    let socket = dir.path().join("cri.sock");
    dead_socket(&socket);
    let args: Vec<String> = vec![
        "--container-runtime-endpoint".into(),
        format!("unix://{}", socket.display()),
        "--root-directory".into(),
        dir.path().join("root").display().to_string(),
    ];
    let mut child = spawn(&args, &dir.path().join("log"));
    wait_for_socket(&socket).await;
    let mut rt =
        dockercri::proto::runtime_service_client::RuntimeServiceClient::new(connect(&socket).await);
    rt.version(VersionRequest::default()).await.unwrap();
    signal(child.id(), nix::sys::signal::Signal::SIGTERM);
    assert!(
        wait_async(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("stale socket"), "{log}");
}

#[tokio::test]
async fn a_live_socket_is_not_stolen() {
    let h = Harness::start().await;
    let endpoint = format!("unix://{}", h.socket.display());
    let root = h.dir.path().join("other-root").display().to_string();
    let (status, log) = run_to_exit(&[
        "--container-runtime-endpoint",
        &endpoint,
        "--root-directory",
        &root,
    ]);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("another process is serving"), "{log}");
    // The first daemon still serves.
    h.rt().version(VersionRequest::default()).await.unwrap();
}

#[test]
fn a_path_that_is_not_a_socket_is_refused_and_kept() {
    let dir = tempdir();
    let path = dir.path().join("cri.sock");
    std::fs::write(&path, "keep me").unwrap();
    let endpoint = format!("unix://{}", path.display());
    let root = dir.path().join("root").display().to_string();
    let (status, log) = run_to_exit(&[
        "--container-runtime-endpoint",
        &endpoint,
        "--root-directory",
        &root,
    ]);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("not a socket"), "{log}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

#[tokio::test]
async fn the_socket_is_0660_and_owned_by_the_socket_group() {
    let docker_gid = nix::unistd::Group::from_name("docker")
        .unwrap()
        .map(|g| g.gid.as_raw());
    let h = Harness::start().await;
    let meta = std::fs::metadata(&h.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.uid(), 0);
    // Default group: docker when it exists, else root.
    assert_eq!(meta.gid(), docker_gid.unwrap_or(0));

    let h = Harness::start_with(&["--socket-group", "root"]).await;
    assert_eq!(std::fs::metadata(&h.socket).unwrap().gid(), 0);

    let (status, log) = run_to_exit(&["--socket-group", "no-such-group-here"]);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("no-such-group-here"), "{log}");
}

#[tokio::test]
async fn sigterm_removes_the_socket_and_exits_zero() {
    let mut h = Harness::start().await;
    h.rt().version(VersionRequest::default()).await.unwrap();
    let started = Instant::now();
    let status = h.terminate().await;
    assert_eq!(status.code(), Some(0));
    assert!(!h.socket.exists(), "socket left behind");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(h.logs().contains("SIGTERM"), "{}", h.logs());
}

/// Logs to a file or journald (not a terminal) are plain text: no ANSI
/// colour escapes.
#[tokio::test]
async fn logs_to_a_file_carry_no_colour_escapes() {
    let mut h = Harness::start().await;
    h.rt().version(VersionRequest::default()).await.unwrap();
    assert_eq!(h.terminate().await.code(), Some(0));
    let log = h.logs();
    assert!(log.contains("dockercri stopped"), "{log}");
    assert!(!log.contains("\x1b["), "{log:?}");
}

/// `--log-format json`: one JSON object per line, for log shippers.
#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let mut h = Harness::start_with(&["--log-format", "json"]).await;
    h.rt().version(VersionRequest::default()).await.unwrap();
    assert_eq!(h.terminate().await.code(), Some(0));
    let log = h.logs();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(lines.len() > 2, "{log}");
    for line in &lines {
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "dockercri stopped"),
        "{log}"
    );
}

#[tokio::test]
async fn sigint_also_shuts_down_cleanly() {
    let h = Harness::start().await;
    signal(h.pid(), nix::sys::signal::Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.socket.exists() {
        assert!(Instant::now() < deadline, "socket still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_socket_activation_and_readiness() {
    let dir = tempdir();
    let socket = dir.path().join("activated.sock");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        // It passes the program only the variables named with -E.
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
        .arg(binary())
        .args(["--container-runtime-endpoint", "fd://", "--root-directory"])
        .arg(dir.path().join("root"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd)");
    wait_for_socket(&socket).await;
    // The first connection makes systemd-socket-activate exec dockercri
    // with the listening socket as fd 3.
    let mut rt =
        dockercri::proto::runtime_service_client::RuntimeServiceClient::new(connect(&socket).await);
    let v = rt
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "docker");

    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("sd_notify message");
    let message = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(message.contains("READY=1"), "{message}");

    signal(child.id(), nix::sys::signal::Signal::SIGTERM);
    let status = wait_async(&mut child, Duration::from_secs(10)).await;
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("passed by systemd"), "{log}");
}

#[tokio::test]
async fn a_tcp_socket_from_systemd_is_refused_clearly() {
    let dir = tempdir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new("systemd-socket-activate")
        .args(["-l", &address])
        .arg(binary())
        .args(["--container-runtime-endpoint", "fd://", "--root-directory"])
        .arg(dir.path().join("root"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd)");
    // The first connection makes systemd-socket-activate exec dockercri.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&address).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {address}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = wait_async(&mut child, Duration::from_secs(10)).await;
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("not a unix socket"), "{log}");
}

#[test]
fn fd_endpoint_without_systemd_fails_clearly() {
    let (status, log) = run_to_exit(&["--container-runtime-endpoint", "fd://"]);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("LISTEN_FDS"), "{log}");
}

#[test]
fn bad_flags_fail_with_a_message_that_names_them() {
    let cases: &[(&[&str], &str)] = &[
        (&["--no-such-flag"], "--no-such-flag"),
        (&["--network-plugin", "calico"], "network-plugin"),
        (
            &["--docker-endpoint", "http://localhost"],
            "docker-endpoint",
        ),
        (
            &["--container-runtime-endpoint", "/run/x.sock"],
            "container-runtime-endpoint",
        ),
        (
            &["--streaming-bind-addr", "localhost"],
            "streaming-bind-addr",
        ),
        (
            &["--config", "/nonexistent/dockercri.toml"],
            "/nonexistent/dockercri.toml",
        ),
        (
            &["--shutdown-grace-period", "99999999999999999999h"],
            "shutdown-grace-period",
        ),
        (
            &["--image-pull-progress-deadline", "5124095576030431h1h"],
            "image-pull-progress-deadline",
        ),
        (
            &["--index-resync-period", "2562047788015215h"],
            "index-resync-period",
        ),
    ];
    for (args, needle) in cases {
        let (status, log) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {log}");
        assert!(log.contains(needle), "{args:?}: {log}");
    }
}

#[test]
fn bad_config_files_fail_with_a_message_that_names_the_problem() {
    let dir = tempdir();
    let cases = [
        ("syntax.toml", "docker-endpoint = ", "syntax.toml"),
        (
            "typo.toml",
            "docker-endpont = \"unix:///x\"",
            "docker-endpont",
        ),
        (
            "type.toml",
            "restrict-oom-score-adj = \"maybe\"",
            "restrict-oom-score-adj",
        ),
        ("value.toml", "network-plugin = \"weave\"", "network-plugin"),
        (
            "huge.toml",
            "shutdown-grace-period = \"99999999999999999999h\"",
            "shutdown-grace-period",
        ),
    ];
    for (name, text, needle) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (status, log) = run_to_exit(&["--config", path.to_str().unwrap()]);
        assert_eq!(status.code(), Some(2), "{name}: {log}");
        assert!(log.contains(needle), "{name}: {log}");
    }
}

#[tokio::test]
async fn config_file_settings_apply_and_flags_win() {
    let dir = tempdir();
    let path = dir.path().join("dockercri.toml");
    std::fs::write(
        &path,
        "pod-infra-container-image = \"file/pause:1\"\nsocket-group = \"root\"\n",
    )
    .unwrap();
    let config = path.display().to_string();
    let h = Harness::start_with(&["--config", &config]).await;
    let s = h
        .rt()
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let c: serde_json::Value = serde_json::from_str(&s.info["config"]).unwrap();
    assert_eq!(c["podInfraContainerImage"], "file/pause:1");
    assert_eq!(std::fs::metadata(&h.socket).unwrap().gid(), 0);

    let h = Harness::start_with(&[
        "--config",
        &config,
        "--pod-infra-container-image",
        "flag/pause:2",
    ])
    .await;
    let s = h
        .rt()
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let c: serde_json::Value = serde_json::from_str(&s.info["config"]).unwrap();
    assert_eq!(c["podInfraContainerImage"], "flag/pause:2");
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let dir = tempdir();
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for unit in ["dockercri.service", "dockercri.socket"] {
        let text = std::fs::read_to_string(units.join(unit)).unwrap();
        // Point ExecStart at the binary under test: verify checks it exists.
        let text = text.replace("/usr/bin/dockercri", binary());
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let service = std::fs::read_to_string(units.join("dockercri.service")).unwrap();
    for line in [
        "Type=notify",
        "KillMode=process",
        "Restart=always",
        "Requires=dockercri.socket",
    ] {
        assert!(service.contains(line), "dockercri.service lacks {line}");
    }
    // dockercri serves without dockerd: Docker's stops and restarts must
    // not take it (or its socket) down. tests/systemd_units.rs shows it
    // under systemd.
    assert!(
        !service.contains("Requires=docker.service") && !service.contains("BindsTo="),
        "dockercri.service must not go down with docker.service"
    );
    let socket = std::fs::read_to_string(units.join("dockercri.socket")).unwrap();
    assert!(socket.contains("SocketMode=0660"));
    assert!(
        !socket.contains("PartOf="),
        "the socket must outlive the service"
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("dockercri.socket"))
        .arg(dir.path().join("dockercri.service"))
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let complaints: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("dockercri."))
        .collect();
    assert!(complaints.is_empty(), "{stderr}");
}
