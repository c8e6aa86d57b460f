//! The project's systemd units under systemd as PID 1, installed both ways
//! the README gives: from `systemd/` of a checkout, and from the Debian
//! package (`apt-get install ./dockercri_*.deb`, the file named by
//! `DOCKERCRI_PACKAGE`). Socket activation on the first CRI call,
//! `Type=notify` readiness, restarts (by systemctl, by a package upgrade)
//! that keep the pods running, life through Docker's stops and restarts, a
//! plain-text journal, and a purge that takes only what is dockercri's.
//!
//! It takes over the machine's units, `/run/dockercri.sock` and
//! `docker.service` (it stops Docker), so it runs only in the throwaway
//! guest of `scripts/guest/run.sh`, alone (`scripts/guest/in-guest.sh`
//! runs this binary after the others, its tests one at a time: nextest's
//! `systemd-units` group). On the host it is listed as ignored.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pods::kubelet_namespaces;
use common::{BUSYBOX, TEST_LABEL, connect, docker, unique_id};
use dockercri::proto::runtime_service_client::RuntimeServiceClient;
use dockercri::proto::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, CreateContainerRequest,
    ImageSpec, LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, ListContainersRequest, ListPodSandboxRequest, PodSandboxConfig,
    PodSandboxFilter, PodSandboxMetadata, PodSandboxState, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StatusRequest, VersionRequest,
};
use tonic::transport::Channel;

const SOCKET: &str = "/run/dockercri.sock";
const SERVICE: &str = "dockercri.service";
const UNIT_SOCKET: &str = "dockercri.socket";

/// Runs `systemctl args`; returns (success, stdout + stderr).
fn systemctl(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .expect("systemctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

/// `systemctl args`, which must succeed.
fn must(args: &[&str]) {
    let (ok, text) = systemctl(args);
    assert!(ok, "systemctl {args:?}: {text}\n{}", journal());
}

/// One property of a unit (`systemctl show -p NAME --value UNIT`).
fn prop(unit: &str, name: &str) -> String {
    systemctl(&["show", "-p", name, "--value", unit]).1
}

fn active(unit: &str) -> String {
    systemctl(&["is-active", unit]).1
}

/// dockercri's journal as journalctl prints it for an operator.
fn journal() -> String {
    let out = Command::new("journalctl")
        .args([
            "-u",
            SERVICE,
            "-u",
            UNIT_SOCKET,
            "-b",
            "--no-pager",
            "-o",
            "cat",
        ])
        .output()
        .expect("journalctl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Installs the binary at the unit's ExecStart path, the config file the
/// service reads and the units in /etc/systemd/system, as the README's
/// "From a checkout".
fn install_units() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all("/etc/dockercri").unwrap();
    std::fs::copy(
        repo.join("packaging/config.toml"),
        "/etc/dockercri/config.toml",
    )
    .unwrap();
    let units = repo.join("systemd");
    let service = std::fs::read_to_string(units.join(SERVICE)).unwrap();
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .and_then(|l| l.split_whitespace().next())
        .expect("ExecStart in dockercri.service");
    // Stop what an earlier run left (idempotent), then install.
    let _ = systemctl(&["stop", UNIT_SOCKET, SERVICE]);
    let _ = systemctl(&["reset-failed", UNIT_SOCKET, SERVICE]);
    std::fs::create_dir_all(Path::new(exec).parent().unwrap()).unwrap();
    std::fs::copy(common::binary(), exec).unwrap();
    std::fs::set_permissions(exec, std::fs::Permissions::from_mode(0o755)).unwrap();
    for unit in [SERVICE, UNIT_SOCKET] {
        std::fs::copy(
            units.join(unit),
            Path::new("/etc/systemd/system").join(unit),
        )
        .unwrap();
    }
    must(&["daemon-reload"]);
}

/// The gid of the `docker` group.
fn docker_gid() -> u32 {
    std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<_> = l.split(':').collect();
            (f[0] == "docker").then(|| f[2].parse().unwrap())
        })
        .expect("group docker (package docker.io)")
}

async fn client() -> RuntimeServiceClient<Channel> {
    RuntimeServiceClient::new(connect(Path::new(SOCKET)).await)
}

async fn runtime_ready(rt: &mut RuntimeServiceClient<Channel>) -> bool {
    let s = rt
        .status(StatusRequest::default())
        .await
        .expect("Status answers without dockerd")
        .into_inner();
    s.status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.r#type == "RuntimeReady" && c.status)
}

/// Polls Status until RuntimeReady is `want`; returns how long it took.
async fn wait_ready(
    rt: &mut RuntimeServiceClient<Channel>,
    want: bool,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if runtime_ready(rt).await == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "RuntimeReady did not become {want} within {limit:?}\n{}",
            journal()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Both dockercri units are active and the socket file is there.
fn assert_units_up(after: &str) {
    assert_eq!(
        active(UNIT_SOCKET),
        "active",
        "dockercri.socket after {after}\n{}",
        journal()
    );
    assert_eq!(
        active(SERVICE),
        "active",
        "dockercri.service after {after}\n{}",
        journal()
    );
    assert!(Path::new(SOCKET).exists(), "{SOCKET} is gone after {after}");
}

/// A pod with one long-running busybox container; returns the pod id and
/// the container id.
async fn run_pod(rt: &mut RuntimeServiceClient<Channel>, test: &str) -> (String, String) {
    let labels = HashMap::from([(TEST_LABEL.to_string(), test.to_string())]);
    let name = unique_id("units");
    // kubelet makes the pod's log directory before RunPodSandbox.
    let log_directory = format!("/var/log/pods/default_{name}");
    std::fs::create_dir_all(&log_directory).unwrap();
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            namespace: "default".into(),
            uid: unique_id("uid"),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory,
        labels: labels.clone(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(kubelet_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}\n{}", journal()))
        .into_inner()
        .pod_sandbox_id;
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "sleeper".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "sleeper/0.log".into(),
        labels,
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(kubelet_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container),
            sandbox_config: Some(config),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e:?}\n{}", journal()))
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer: {e:?}\n{}", journal()));
    (pod, id)
}

/// After a restart of the service (`after`): the pod's sandbox and
/// container still run in Docker, and the new process lists the container
/// as running.
async fn assert_pod_kept(
    rt: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    container: &str,
    after: &str,
) {
    assert!(docker_running(pod).await, "sandbox died with the {after}");
    assert!(
        docker_running(container).await,
        "container died with the {after}"
    );
    let containers = rt
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: pod.to_string(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].id, container);
    assert_eq!(containers[0].state(), ContainerState::ContainerRunning);
}

async fn docker_running(id: &str) -> bool {
    let c = docker().await.inspect_container(id, None).await.unwrap();
    c.state.and_then(|s| s.running).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs systemd as PID 1: runs in the guest (scripts/guest)"]
async fn the_units_activate_notify_keep_pods_and_outlive_dockers_restarts() {
    let init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    assert_eq!(init.trim(), "systemd", "PID 1 is not systemd");
    install_units();
    let test = unique_id("units");

    // The socket alone is enabled; the first CRI call starts the service.
    must(&["enable", "--now", UNIT_SOCKET]);
    assert_eq!(active(UNIT_SOCKET), "active");
    assert_eq!(active(SERVICE), "inactive", "started before any call");
    let meta = std::fs::metadata(SOCKET).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660, "socket mode");
    assert_eq!(meta.gid(), docker_gid(), "socket group");
    let mut rt = client().await;
    let v = rt
        .version(VersionRequest::default())
        .await
        .unwrap_or_else(|e| panic!("Version through the activated socket: {e:?}\n{}", journal()))
        .into_inner();
    assert_eq!(v.runtime_name, "docker");
    assert_eq!(active(SERVICE), "active", "not activated by the first call");

    // Type=notify: systemd counts the service started only on READY=1
    // (a service that never sends it fails its start after the timeout);
    // `systemctl restart` returns when it arrives, with a new main pid.
    assert_eq!(prop(SERVICE, "Type"), "notify");
    assert_eq!(prop(SERVICE, "SubState"), "running");
    let (pod, container) = run_pod(&mut rt, &test).await;
    let pid = prop(SERVICE, "MainPID");
    must(&["restart", SERVICE]);
    assert_eq!(prop(SERVICE, "SubState"), "running");
    assert_ne!(
        prop(SERVICE, "MainPID"),
        pid,
        "restart kept the old process"
    );
    assert!(
        journal().contains("Started dockercri"),
        "no readiness in the journal:\n{}",
        journal()
    );

    // KillMode=process: the pod's containers outlive the restart, and the
    // new process lists them at once.
    let mut rt = client().await;
    assert_pod_kept(&mut rt, &pod, &container, "restart").await;
    let pods = rt
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].state(), PodSandboxState::SandboxReady);
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();

    // Docker goes away: dockercri keeps serving and says not ready within
    // 2 s (docker.socket too, or the next call would start Docker again).
    assert!(runtime_ready(&mut rt).await);
    must(&["stop", "docker.socket", "docker.service"]);
    let took = wait_ready(&mut rt, false, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(2), "not-ready took {took:?}");
    assert_units_up("systemctl stop docker");

    // Docker comes back: the same dockercri process is ready again.
    let pid = prop(SERVICE, "MainPID");
    must(&["start", "docker.service"]);
    assert_units_up("systemctl start docker");
    let mut rt = client().await;
    wait_ready(&mut rt, true, Duration::from_secs(120)).await;
    assert_eq!(
        prop(SERVICE, "MainPID"),
        pid,
        "dockercri restarted with Docker"
    );

    // A restart of Docker leaves dockercri (and its socket) alone too.
    must(&["restart", "docker.service"]);
    assert_units_up("systemctl restart docker");
    let mut rt = client().await;
    wait_ready(&mut rt, true, Duration::from_secs(120)).await;
    assert_eq!(
        prop(SERVICE, "MainPID"),
        pid,
        "dockercri restarted with Docker"
    );

    // The journal is plain text: no terminal colour codes.
    let text = journal();
    assert!(text.contains("dockercri"), "empty journal: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in the journal:\n{text}"
    );

    must(&["disable", "--now", UNIT_SOCKET, SERVICE]);
    remove_units();
}

/// Takes away what `install_units` put in /etc/systemd/system (units there
/// would shadow a package's in /usr/lib/systemd/system).
fn remove_units() {
    let _ = systemctl(&["stop", UNIT_SOCKET, SERVICE]);
    for unit in [SERVICE, UNIT_SOCKET] {
        let _ = std::fs::remove_file(Path::new("/etc/systemd/system").join(unit));
    }
    must(&["daemon-reload"]);
    let _ = systemctl(&["reset-failed", UNIT_SOCKET, SERVICE]);
}

/// Runs apt-get (or dpkg) non-interactively; panics with its output and
/// the journal when it fails.
fn package_tool(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        journal()
    );
}

fn is_enabled(unit: &str) -> String {
    systemctl(&["is-enabled", unit]).1
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs systemd as PID 1 and the built package: runs in the guest (scripts/guest)"]
async fn the_package_starts_its_socket_restarts_on_upgrade_and_purges_its_own() {
    let init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    assert_eq!(init.trim(), "systemd", "PID 1 is not systemd");
    let deb = std::env::var("DOCKERCRI_PACKAGE")
        .expect("DOCKERCRI_PACKAGE names the .deb to install (scripts/guest/run.sh builds it)");
    let deb = std::fs::canonicalize(&deb).unwrap_or_else(|e| panic!("{deb}: {e}"));
    let deb = deb.to_str().unwrap();
    remove_units();
    let test = unique_id("package");

    // A first install enables both units and starts the socket; the first
    // CRI call starts the service from /usr/bin with the conffile.
    package_tool("apt-get", &["install", "-y", "-q", deb]);
    assert_eq!(is_enabled(UNIT_SOCKET), "enabled");
    assert_eq!(is_enabled(SERVICE), "enabled");
    assert_eq!(active(UNIT_SOCKET), "active", "{}", journal());
    assert_eq!(active(SERVICE), "inactive", "started before any call");
    assert_eq!(
        prop(SERVICE, "FragmentPath"),
        "/usr/lib/systemd/system/dockercri.service"
    );
    let mut rt = client().await;
    let v = rt
        .version(VersionRequest::default())
        .await
        .unwrap_or_else(|e| panic!("Version through the package's socket: {e:?}\n{}", journal()))
        .into_inner();
    assert_eq!(v.runtime_name, "docker");
    assert_eq!(active(SERVICE), "active", "not activated by the first call");
    let exec = prop(SERVICE, "ExecStart");
    assert!(
        exec.contains("path=/usr/bin/dockercri") && exec.contains("/etc/dockercri/config.toml"),
        "{exec}"
    );

    // An upgrade (the same package again: prerm upgrade, postinst
    // configure with the old version) restarts the service and keeps the
    // pods, which the new process lists.
    let (pod, container) = run_pod(&mut rt, &test).await;
    let pid = prop(SERVICE, "MainPID");
    package_tool("dpkg", &["-i", deb]);
    assert_eq!(active(SERVICE), "active", "{}", journal());
    assert_ne!(
        prop(SERVICE, "MainPID"),
        pid,
        "the upgrade did not restart the service"
    );
    let mut rt = client().await;
    assert_pod_kept(&mut rt, &pod, &container, "upgrade").await;
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    drop(rt);

    // Purge: the units stop and go, the socket file goes, and of the disk
    // only dockercri's own root directory; Docker and a neighbour stay.
    std::fs::create_dir_all("/var/lib/dockercri-neighbour").unwrap();
    std::fs::write("/var/lib/dockercri-neighbour/keep", "x").unwrap();
    assert!(Path::new("/var/lib/dockercri").is_dir());
    package_tool("apt-get", &["purge", "-y", "-q", "dockercri"]);
    assert_eq!(active(SERVICE), "inactive");
    assert_eq!(active(UNIT_SOCKET), "inactive");
    assert!(!Path::new(SOCKET).exists(), "{SOCKET} left after purge");
    for gone in [
        "/usr/bin/dockercri",
        "/usr/lib/systemd/system/dockercri.service",
        "/etc/dockercri/config.toml",
        "/var/lib/dockercri",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    assert!(Path::new("/var/lib/dockercri-neighbour/keep").exists());
    std::fs::remove_dir_all("/var/lib/dockercri-neighbour").unwrap();
    assert_eq!(
        active("docker.service"),
        "active",
        "the purge touched Docker"
    );
}
