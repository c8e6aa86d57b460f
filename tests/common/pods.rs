//! Pod helpers for integration tests: sandbox configs as kubelet builds
//! them, and a way to run a command inside a pod's namespaces straight
//! through Docker (a stand-in for an app container).

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};
use dockercri::proto::{
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
        let name = unique_id("dcri-app");
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let id = d.create_container(Some(options), body).await.unwrap().id;
        d.start_container(&id, None).await.unwrap();
        id
    }
}
