//! Pod helpers for integration tests: sandbox configs as kubelet builds
//! them, and a way to run a command inside a pod's namespaces straight
//! through Docker (a stand-in for an app container).

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};
use dockercri::proto::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RunPodSandboxRequest, StopPodSandboxRequest,
};
use futures_util::StreamExt;

use super::{BUSYBOX, Harness, TEST_LABEL, docker, unique_id};

impl Harness {
    /// A sandbox config as kubelet would send it, labelled for cleanup.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let uid = unique_id("uid");
        let log_directory = self
            .dir
            .path()
            .join("pods")
            .join(format!("default_{name}_{uid}"));
        let mut labels = self.labels();
        labels.insert("io.kubernetes.pod.name".into(), name.into());
        labels.insert("io.kubernetes.pod.namespace".into(), "default".into());
        labels.insert("io.kubernetes.pod.uid".into(), uid.clone());
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                namespace: "default".into(),
                uid,
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_directory.display().to_string(),
            labels,
            annotations: HashMap::from([(
                "kubernetes.io/config.source".to_string(),
                "api".to_string(),
            )]),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(kubelet_namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Runs a sandbox and returns its id (panics on failure).
    pub async fn run_pod(&self, config: PodSandboxConfig) -> String {
        self.rt()
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}\n{}", self.logs()))
            .into_inner()
            .pod_sandbox_id
    }

    /// Stops a sandbox (panics on failure).
    pub async fn stop_pod(&self, id: &str) {
        self.rt()
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap();
    }

    /// Runs `cmd` in a busybox container that joins the pod's network, IPC
    /// and PID namespaces; returns its exit code and combined output.
    pub async fn run_in_pod(&self, sandbox_id: &str, cmd: &[&str]) -> (i64, String) {
        let d = docker().await;
        let join = format!("container:{sandbox_id}");
        let name = unique_id("dcri-probe");
        let body = ContainerCreateBody {
            image: Some(BUSYBOX.into()),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            labels: Some(HashMap::from([(TEST_LABEL.to_string(), self.id.clone())])),
            host_config: Some(HostConfig {
                network_mode: Some(join.clone()),
                ipc_mode: Some(join.clone()),
                pid_mode: Some(join),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let id = d.create_container(Some(options), body).await.unwrap().id;
        d.start_container(&id, None).await.unwrap();
        let code = tokio::time::timeout(Duration::from_secs(30), async {
            let mut wait = d.wait_container(&id, None);
            match wait.next().await {
                Some(Ok(r)) => r.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                other => panic!("wait: {other:?}"),
            }
        })
        .await
        .expect("probe container finished");
        let logs = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let mut out = String::new();
        let mut stream = d.logs(&id, Some(logs));
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&chunk.to_string());
        }
        let _ = d
            .remove_container(
                &id,
                Some(bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        (code, out)
    }

    /// Docker's view of every container this harness made: id -> running.
    pub async fn docker_containers(&self) -> std::collections::BTreeMap<String, bool> {
        use bollard::query_parameters::ListContainersOptionsBuilder;
        let filters = HashMap::from([("label", vec![format!("{TEST_LABEL}={}", self.id)])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        docker()
            .await
            .list_containers(Some(opts))
            .await
            .unwrap()
            .into_iter()
            .map(|c| {
                let running = c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
                (c.id.unwrap_or_default(), running)
            })
            .collect()
    }

    /// The pod's CRI status (it must exist).
    pub async fn pod_status(&self, id: &str) -> dockercri::proto::PodSandboxStatus {
        self.rt()
            .pod_sandbox_status(dockercri::proto::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
    }

    /// Starts a long-running busybox command in the pod's namespaces;
    /// returns the Docker id (removed with the harness).
    pub async fn start_in_pod(&self, sandbox_id: &str, cmd: &[&str]) -> String {
        let d = docker().await;
        let join = format!("container:{sandbox_id}");
        let body = ContainerCreateBody {
            image: Some(BUSYBOX.into()),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            labels: Some(HashMap::from([
                (TEST_LABEL.to_string(), self.id.clone()),
                (
                    "io.kubernetes.sandbox.id".to_string(),
                    sandbox_id.to_string(),
                ),
                (
                    "io.kubernetes.docker.type".to_string(),
                    "container".to_string(),
                ),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some(join.clone()),
                ipc_mode: Some(join.clone()),
                pid_mode: Some(join),
                ..Default::default()
            }),
            ..Default::default()
        };
        // A CRI container's name, so that dockercri shows it like one.
        let name = format!("k8s_{}_joined_default_uid_0", unique_id("app"));
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let id = d.create_container(Some(options), body).await.unwrap().id;
        d.start_container(&id, None).await.unwrap();
        // dockercri learns of it from Docker's events; asking for its
        // status makes sure it has before the test goes on.
        let status = dockercri::proto::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        };
        self.rt().container_status(status).await.unwrap();
        id
    }
}

/// A container config as kubelet builds it: `sh -c script` in busybox,
/// logging to `<name>/0.log`, labelled for cleanup.
pub fn container_config(
    h: &Harness,
    name: &str,
    script: &str,
) -> dockercri::proto::ContainerConfig {
    dockercri::proto::ContainerConfig {
        metadata: Some(dockercri::proto::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(dockercri::proto::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into()],
        args: vec![script.into()],
        log_path: format!("{name}/0.log"),
        labels: h.labels(),
        linux: Some(dockercri::proto::LinuxContainerConfig {
            security_context: Some(dockercri::proto::LinuxContainerSecurityContext {
                namespace_options: Some(kubelet_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The namespaces kubelet asks for, for the sandbox and each container, when
/// the pod sets neither hostPID nor shareProcessNamespace: PID is CONTAINER.
pub fn kubelet_namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The text of a kubelet log file, in either format kubelet reads: Docker's
/// json-file lines or CRI lines (`<time> <stream> <tag> <text>`).
pub fn log_text(path: &str) -> String {
    let raw = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::new();
    for line in raw.lines() {
        if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            out.push_str(v["log"].as_str().unwrap_or_default());
        } else {
            let mut parts = line.splitn(4, ' ');
            let (_, _, tag, text) = (parts.next(), parts.next(), parts.next(), parts.next());
            out.push_str(text.unwrap_or_default());
            if tag != Some("P") {
                out.push('\n');
            }
        }
    }
    out
}

/// A running pod plus the config kubelet would pass along with containers.
pub struct Pod {
    pub id: String,
    pub config: PodSandboxConfig,
}

impl Harness {
    /// The CRI containers of this harness, as `ListContainers` lists them.
    pub async fn listed_containers(&self) -> Vec<dockercri::proto::Container> {
        self.rt()
            .list_containers(dockercri::proto::ListContainersRequest {
                filter: Some(dockercri::proto::ContainerFilter {
                    label_selector: self.labels(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers
    }

    /// Runs a plain pod for app containers.
    pub async fn pod(&self, name: &str) -> Pod {
        let config = self.pod_config(name);
        let id = self.run_pod(config.clone()).await;
        Pod { id, config }
    }

    /// Creates a container in `pod`; returns the CRI result.
    pub async fn try_create(
        &self,
        pod: &Pod,
        config: dockercri::proto::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.rt()
            .create_container(dockercri::proto::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    /// Creates and starts a container (panics on failure).
    pub async fn start_container(
        &self,
        pod: &Pod,
        config: dockercri::proto::ContainerConfig,
    ) -> String {
        let id = self
            .try_create(pod, config)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e:?}\n{}", self.logs()));
        self.rt()
            .start_container(dockercri::proto::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer: {e:?}\n{}", self.logs()));
        id
    }

    /// The container's CRI status.
    pub async fn container_status(&self, id: &str) -> dockercri::proto::ContainerStatus {
        self.rt()
            .container_status(dockercri::proto::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
    }

    /// Waits (up to 30 s) until the container has exited; returns its status.
    pub async fn wait_exited(&self, id: &str) -> dockercri::proto::ContainerStatus {
        for _ in 0..300 {
            let s = self.container_status(id).await;
            if s.state() == dockercri::proto::ContainerState::ContainerExited {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("container {id} did not exit");
    }

    /// Runs `script` in a new container of `pod` with `adjust` applied to
    /// its config, waits for it, and returns (exit code, log text).
    pub async fn run_script(
        &self,
        pod: &Pod,
        name: &str,
        script: &str,
        adjust: impl FnOnce(&mut dockercri::proto::ContainerConfig),
    ) -> (i32, String) {
        let mut config = container_config(self, name, script);
        adjust(&mut config);
        let id = self.start_container(pod, config).await;
        let s = self.wait_exited(&id).await;
        (s.exit_code, settled_log(&s.log_path).await)
    }
}

/// The log text once dockercri has caught up after the container exited:
/// non-empty and unchanged for 150 ms (at most 5 s).
pub async fn settled_log(path: &str) -> String {
    let mut last = String::new();
    for _ in 0..33 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let now = log_text(path);
        if !now.is_empty() && now == last {
            return now;
        }
        last = now;
    }
    last
}
