//! Switching a node from cri-dockerd: the state cri-dockerd leaves behind
//! for its pods is made here through Docker directly, as cri-dockerd makes
//! it (names from its core/naming.go, labels from core/helpers.go,
//! core/sandbox_helpers.go and core/container_create.go, sandbox
//! checkpoints as core/checkpoint.go writes them under its root directory,
//! log symlinks at kubelet's paths as core/container_start.go makes them).
//! Then dockercri starts on that node and kubelet's calls must find every
//! pod and container as cri-dockerd reported them, and keep working.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding, PortMap};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use common::pods::{Pod, container_config, log_text, settled_log};
use common::*;
use dockercri::proto::{
    ContainerFilter, ContainerState, ContainerStatsFilter, ExecSyncRequest,
    ListContainerStatsRequest, ListContainersRequest, ListPodSandboxRequest, NamespaceMode,
    PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxState,
    RemoveContainerRequest, RemovePodSandboxRequest, ReopenContainerLogRequest,
};
use futures_util::StreamExt;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A pod as kubelet described it to cri-dockerd.
struct CriDockerdPod {
    name: String,
    namespace: String,
    uid: String,
    /// kubelet's pod log directory, `/var/log/pods/<ns>_<name>_<uid>`.
    log_dir: PathBuf,
    /// The CRI labels kubelet gave the sandbox (and, with the container
    /// name, each container).
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
}

impl CriDockerdPod {
    fn new(h: &Harness, name: &str) -> Self {
        let namespace = "mig".to_string();
        let uid = unique_id("uid");
        let log_dir = h
            .dir
            .path()
            .join("var-log-pods")
            .join(format!("{namespace}_{name}_{uid}"));
        let mut labels = h.labels();
        labels.extend(map(&[
            ("io.kubernetes.pod.name", name),
            ("io.kubernetes.pod.namespace", &namespace),
            ("io.kubernetes.pod.uid", &uid),
            ("app", name),
        ]));
        let annotations = map(&[
            ("kubernetes.io/config.source", "api"),
            (
                "kubernetes.io/config.seen",
                "2026-12-06T01:00:00.000000000Z",
            ),
        ]);
        CriDockerdPod {
            name: name.into(),
            namespace,
            uid,
            log_dir,
            labels,
            annotations,
        }
    }
}

/// cri-dockerd's `makeLabels`: CRI labels as they are, annotations as
/// `annotation.<key>`.
fn make_labels(
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut out = labels.clone();
    for (k, v) in annotations {
        out.insert(format!("annotation.{k}"), v.clone());
    }
    out
}

/// A busybox script that runs until SIGTERM, as a pause container would.
const PAUSE: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

async fn create(name: &str, body: ContainerCreateBody) -> String {
    let d = docker().await;
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    let id = d
        .create_container(Some(options), body)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"))
        .id;
    d.start_container(&id, None).await.unwrap();
    id
}

/// The pause container cri-dockerd runs (`makeSandboxDockerConfig`):
/// `k8s_POD_<pod>_<ns>_<uid>_<attempt>`, the pod's labels and annotations,
/// the type label and `io.kubernetes.container.name=POD`, a shareable IPC
/// namespace, and the pod's port mappings as Docker port bindings.
async fn run_sandbox(pod: &CriDockerdPod, host_network: bool) -> String {
    let mut labels = make_labels(&pod.labels, &pod.annotations);
    labels.insert("io.kubernetes.docker.type".into(), "podsandbox".into());
    labels.insert("io.kubernetes.container.name".into(), "POD".into());
    let mut host = HostConfig {
        ipc_mode: Some("shareable".into()),
        ..Default::default()
    };
    let mut exposed = None;
    if host_network {
        host.network_mode = Some("host".into());
    } else {
        // Docker picks the host port; the checkpoint records it.
        host.port_bindings = Some(PortMap::from([(
            "80/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        )]));
        exposed = Some(vec!["80/tcp".to_string()]);
    }
    let name = format!("k8s_POD_{}_{}_{}_0", pod.name, pod.namespace, pod.uid);
    let body = ContainerCreateBody {
        image: Some(BUSYBOX.into()),
        cmd: Some(vec!["sh".into(), "-c".into(), PAUSE.into()]),
        hostname: (!host_network).then(|| pod.name.clone()),
        labels: Some(labels),
        exposed_ports: exposed,
        host_config: Some(host),
        ..Default::default()
    };
    create(&name, body).await
}

/// cri-dockerd's sandbox checkpoint (`PodSandboxCheckpoint`, JSON) at
/// `<its root>/sandbox/<sandbox id>`. The checksum is an FNV-32a hash of
/// Go's spew dump of `data`, which dockercri does not verify (nor read).
fn write_checkpoint(
    root: &Path,
    sandbox_id: &str,
    pod: &CriDockerdPod,
    ports: &[(i32, i32)],
    host_network: bool,
) -> PathBuf {
    let port_mappings: Vec<serde_json::Value> = ports
        .iter()
        .map(|(container, host)| {
            serde_json::json!({
                "protocol": "tcp", "container_port": container,
                "host_port": host, "host_ip": "127.0.0.1",
            })
        })
        .collect();
    let mut data = serde_json::Map::new();
    if !port_mappings.is_empty() {
        data.insert("port_mappings".into(), port_mappings.into());
    }
    if host_network {
        data.insert("host_network".into(), true.into());
    }
    let checkpoint = serde_json::json!({
        "version": "v1",
        "name": pod.name,
        "namespace": pod.namespace,
        "data": data,
        "checksum": 1234567890u64,
    });
    let dir = root.join("sandbox");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(sandbox_id);
    std::fs::write(&path, serde_json::to_vec(&checkpoint).unwrap()).unwrap();
    path
}

/// The annotations kubelet gives a container (`newContainerAnnotations`).
fn container_annotations(attempt: u32) -> HashMap<String, String> {
    map(&[
        ("io.kubernetes.container.hash", "5d0a7b1c"),
        ("io.kubernetes.container.restartCount", &attempt.to_string()),
        (
            "io.kubernetes.container.terminationMessagePath",
            "/dev/termination-log",
        ),
        ("io.kubernetes.container.terminationMessagePolicy", "File"),
        ("io.kubernetes.pod.terminationGracePeriod", "30"),
    ])
}

/// An app container as cri-dockerd creates and starts it
/// (`makeContainerDockerConfig` / `StartContainer`): its name, the CRI
/// labels and annotations, the type, sandbox id and log path labels, the
/// pod's namespaces, and kubelet's log path a symlink to Docker's
/// json-file log. Returns the Docker id and the log path.
async fn run_container(
    pod: &CriDockerdPod,
    sandbox_id: &str,
    name: &str,
    attempt: u32,
    script: &str,
) -> (String, PathBuf) {
    // kubelet's container labels (`newContainerLabels`), and the test's.
    let mut cri_labels: HashMap<String, String> = pod
        .labels
        .iter()
        .filter(|(k, _)| k.starts_with("io.kubernetes.pod.") || *k == TEST_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    cri_labels.insert("io.kubernetes.container.name".into(), name.into());
    let annotations = container_annotations(attempt);
    let log_path = pod.log_dir.join(name).join(format!("{attempt}.log"));
    let mut labels = make_labels(&cri_labels, &annotations);
    labels.insert("io.kubernetes.docker.type".into(), "container".into());
    labels.insert("io.kubernetes.sandbox.id".into(), sandbox_id.into());
    labels.insert(
        "io.kubernetes.container.logpath".into(),
        log_path.display().to_string(),
    );
    let join = format!("container:{sandbox_id}");
    let body = ContainerCreateBody {
        image: Some(BUSYBOX.into()),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(join.clone()),
            ipc_mode: Some(join),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let docker_name = format!(
        "k8s_{name}_{}_{}_{}_{attempt}",
        pod.name, pod.namespace, pod.uid
    );
    let id = create(&docker_name, body).await;
    let json_log = docker()
        .await
        .inspect_container(&id, None)
        .await
        .unwrap()
        .log_path
        .unwrap();
    std::fs::create_dir_all(log_path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&json_log, &log_path).unwrap();
    (id, log_path)
}

/// Waits until Docker reports the container exited.
async fn wait_docker_exit(id: &str) {
    let d = docker().await;
    let mut wait = d.wait_container(id, None);
    let _ = tokio::time::timeout(Duration::from_secs(30), wait.next()).await;
}

/// The `tick N` numbers in a log file (either format kubelet reads).
fn ticks(path: &Path) -> Vec<u64> {
    log_text(&path.display().to_string())
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect()
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn is_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_cri_dockerd_made_carry_over_to_dockercri() {
    let cri_dockerd_root = tempdir();
    let root_flag = cri_dockerd_root.path().display().to_string();
    let mut h = Harness::start_with(&["--cri-dockerd-root-directory", &root_flag]).await;

    // --- The node as cri-dockerd leaves it. ---
    let web = CriDockerdPod::new(&h, "web");
    let web_id = run_sandbox(&web, false).await;
    let inspect = docker()
        .await
        .inspect_container(&web_id, None)
        .await
        .unwrap();
    let settings = inspect.network_settings.clone().unwrap();
    let bridge_ip = settings.networks.unwrap()["bridge"]
        .ip_address
        .clone()
        .unwrap();
    assert!(!bridge_ip.is_empty(), "the pause container has a bridge IP");
    let host_port: i32 = settings.ports.unwrap()["80/tcp"].as_ref().unwrap()[0]
        .host_port
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    let web_checkpoint = write_checkpoint(
        cri_dockerd_root.path(),
        &web_id,
        &web,
        &[(80, host_port)],
        false,
    );
    let tick_script = "echo hello from cri-dockerd; echo to stderr >&2; \
        trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done";
    let (app_id, app_log) = run_container(&web, &web_id, "app", 0, tick_script).await;
    let (done_id, done_log) =
        run_container(&web, &web_id, "done", 1, "echo finished; exit 3").await;
    wait_docker_exit(&done_id).await;

    // A second pod, on the host network, that stays throughout.
    let other = CriDockerdPod::new(&h, "hostnet");
    let other_id = run_sandbox(&other, true).await;
    let other_checkpoint = write_checkpoint(cri_dockerd_root.path(), &other_id, &other, &[], true);
    // A checkpoint cri-dockerd left of a pod whose containers are gone.
    let orphan_checkpoint = cri_dockerd_root.path().join("sandbox").join("0abc");
    std::fs::write(&orphan_checkpoint, "{}").unwrap();

    // --- dockercri starts on that node (as after `systemctl start`). ---
    h.restart_killed().await;

    // Every pod, with kubelet's metadata, labels and annotations.
    let pods = h
        .rt()
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                label_selector: h.labels(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 2, "{pods:?}");
    for (pod, id) in [(&web, &web_id), (&other, &other_id)] {
        let p = pods.iter().find(|p| &p.id == id).expect("pod listed");
        let m = p.metadata.as_ref().unwrap();
        assert_eq!(
            (
                m.name.as_str(),
                m.namespace.as_str(),
                m.uid.as_str(),
                m.attempt
            ),
            (
                pod.name.as_str(),
                pod.namespace.as_str(),
                pod.uid.as_str(),
                0
            )
        );
        assert_eq!(p.state(), PodSandboxState::SandboxReady);
        // cri-dockerd's own `io.kubernetes.container.name=POD` is not a CRI label.
        assert_eq!(p.labels, pod.labels);
        assert_eq!(p.annotations, pod.annotations);
    }

    // Pod statuses: the pod IP from Docker's bridge; none on the host network.
    let s = h.pod_status(&web_id).await;
    assert_eq!(s.network.as_ref().unwrap().ip, bridge_ip);
    let ns = |s: &dockercri::proto::PodSandboxStatus| {
        s.linux
            .as_ref()
            .and_then(|l| l.namespaces.as_ref())
            .and_then(|n| n.options.clone())
            .unwrap()
    };
    assert_eq!(ns(&s).network(), NamespaceMode::Pod);
    assert_eq!(ns(&s).pid(), NamespaceMode::Container);
    assert_eq!(s.labels, web.labels);
    let s = h.pod_status(&other_id).await;
    assert_eq!(s.network.as_ref().unwrap().ip, "");
    assert_eq!(ns(&s).network(), NamespaceMode::Node);

    // Every container, with its metadata and state.
    let containers = h
        .rt()
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: web_id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(containers.len(), 2, "{containers:?}");
    for (id, name, attempt, state) in [
        (&app_id, "app", 0, ContainerState::ContainerRunning),
        (&done_id, "done", 1, ContainerState::ContainerExited),
    ] {
        let c = containers.iter().find(|c| &c.id == id).expect("listed");
        let m = c.metadata.as_ref().unwrap();
        assert_eq!((m.name.as_str(), m.attempt), (name, attempt));
        assert_eq!(c.state(), state, "{name}");
        assert_eq!(c.pod_sandbox_id, web_id);
        let mut want = h.labels();
        want.extend(map(&[
            ("io.kubernetes.container.name", name),
            ("io.kubernetes.pod.name", "web"),
            ("io.kubernetes.pod.namespace", "mig"),
            ("io.kubernetes.pod.uid", &web.uid),
        ]));
        assert_eq!(c.labels, want, "{name}");
        assert_eq!(c.annotations, container_annotations(attempt), "{name}");
    }

    // Container statuses: state, exit code and reason, kubelet's log path.
    let done = h.container_status(&done_id).await;
    assert_eq!(done.state(), ContainerState::ContainerExited);
    assert_eq!((done.exit_code, done.reason.as_str()), (3, "Error"));
    assert_eq!(done.log_path, done_log.display().to_string());
    let app = h.container_status(&app_id).await;
    assert_eq!(app.state(), ContainerState::ContainerRunning);
    assert_eq!(app.log_path, app_log.display().to_string());

    // Logs: kubelet reads them at the log path, still cri-dockerd's symlink.
    assert!(is_symlink(&app_log) && is_symlink(&done_log));
    assert_eq!(log_text(&done.log_path), "finished\n");
    wait_until("the app's output", || {
        let text = log_text(&app.log_path);
        ["hello from cri-dockerd\n", "to stderr\n", "tick 0\n"]
            .iter()
            .all(|line| text.contains(line))
    })
    .await;

    // Exec, in the pod's network namespace.
    let r = h
        .rt()
        .exec_sync(ExecSyncRequest {
            container_id: app_id.clone(),
            cmd: vec!["sh".into(), "-c".into(), "hostname; ip addr".into()],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.exit_code, 0, "{r:?}");
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.starts_with("web\n"), "{out}");
    assert!(out.contains(&format!("inet {bridge_ip}/")), "{out}");

    // kubelet's log rotation: rename the log, then ReopenContainerLog.
    let rotated = PathBuf::from(format!("{}.20261206-020000", app_log.display()));
    let before = ticks(&app_log);
    std::fs::rename(&app_log, &rotated).unwrap();
    h.rt()
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: app_id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("ReopenContainerLog: {e:?}\n{}", h.logs()));
    wait_until("new output at the log path", || ticks(&app_log).len() >= 5).await;
    assert!(is_file(&app_log), "a file of dockercri's at the log path");
    let new = ticks(&app_log);
    // Only what came after the rotation, nothing twice, nothing missing.
    let last_before = *before.last().unwrap();
    assert!(new[0] > last_before, "before {before:?} new {new:?}");
    assert!(new[0] < last_before + 50, "before {before:?} new {new:?}");
    assert_eq!(new, (new[0]..new[0] + new.len() as u64).collect::<Vec<_>>());
    // The rotated link still reads everything written up to the rotation.
    let old = ticks(&rotated);
    assert_eq!(old[..before.len()], before[..]);
    // A CRI log file, not Docker's JSON.
    let raw = std::fs::read_to_string(&app_log).unwrap();
    assert!(raw.lines().all(|l| l.contains(" stdout F tick ")), "{raw}");

    // A restart of dockercri keeps writing that file.
    let written = ticks(&app_log).len();
    h.restart_killed().await;
    wait_until("output after a restart", || {
        ticks(&app_log).len() > written + 5
    })
    .await;
    let after = ticks(&app_log);
    assert_eq!(
        after,
        (after[0]..after[0] + after.len() as u64).collect::<Vec<_>>()
    );

    // Stats of the running container, from its cgroup.
    let stats = h
        .rt()
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: web_id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let app_stats = stats
        .iter()
        .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == app_id))
        .unwrap_or_else(|| panic!("the app's stats: {stats:?}"));
    let memory = app_stats
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref());
    assert!(memory.is_some_and(|m| m.value > 0), "{app_stats:?}");

    // kubelet's garbage collection of an exited container: it goes, with
    // cri-dockerd's symlink (as cri-dockerd's RemoveContainer did).
    h.rt()
        .remove_container(RemoveContainerRequest {
            container_id: done_id.clone(),
        })
        .await
        .unwrap();
    assert!(!h.docker_containers().await.contains_key(&done_id));
    assert!(!is_symlink(&done_log) && !done_log.exists());

    // kubelet restarts a container of the pod: dockercri makes it, and it
    // writes its own CRI log file beside cri-dockerd's symlinks.
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: web.name.clone(),
            namespace: web.namespace.clone(),
            uid: web.uid.clone(),
            attempt: 0,
        }),
        log_directory: web.log_dir.display().to_string(),
        labels: web.labels.clone(),
        annotations: web.annotations.clone(),
        ..Default::default()
    };
    let pod = Pod {
        id: web_id.clone(),
        config: sandbox_config,
    };
    let mut config = container_config(&h, "done", "echo again; exit 0");
    config.metadata.as_mut().unwrap().attempt = 2;
    config.log_path = "done/2.log".into();
    let again_id = h.start_container(&pod, config).await;
    let again = h.wait_exited(&again_id).await;
    assert_eq!(again.exit_code, 0);
    assert_eq!(
        again.log_path,
        web.log_dir.join("done/2.log").display().to_string()
    );
    assert_eq!(settled_log(&again.log_path).await, "again\n");
    assert!(is_file(Path::new(&again.log_path)));
    let name = docker()
        .await
        .inspect_container(&again_id, None)
        .await
        .unwrap()
        .name;
    assert_eq!(
        name.unwrap(),
        format!("/k8s_done_web_mig_{}_2", web.uid),
        "cri-dockerd's naming"
    );

    // StopPodSandbox and RemovePodSandbox take the pod and only the pod.
    h.stop_pod(&web_id).await;
    let on_docker = h.docker_containers().await;
    for id in [&web_id, &app_id, &again_id] {
        assert_eq!(on_docker.get(id), Some(&false), "{id} stopped");
    }
    assert_eq!(on_docker.get(&other_id), Some(&true), "the other pod runs");
    h.rt()
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: web_id.clone(),
        })
        .await
        .unwrap();
    let on_docker = h.docker_containers().await;
    for id in [&web_id, &app_id, &done_id, &again_id] {
        assert!(!on_docker.contains_key(id), "{id} removed");
    }
    assert_eq!(on_docker.get(&other_id), Some(&true), "the other pod runs");
    assert!(!web_checkpoint.exists(), "the pod's cri-dockerd checkpoint");
    assert!(other_checkpoint.exists() && orphan_checkpoint.exists());
    // kubelet's log directory is kubelet's to collect.
    assert!(web.log_dir.exists());
    let pods = h
        .rt()
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                label_selector: h.labels(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(
        pods.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        [other_id.as_str()]
    );
}
