//! A Docker held in memory for the index's unit tests: containers by id,
//! the inspects counted, pod containers made with kubelet's names and
//! dockercri's labels.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bollard::models::{
    ContainerConfig, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    ContainerSummary, ContainerSummaryStateEnum, EventActor, EventMessage,
};

use crate::docker::labels;
use crate::error::Result;
use crate::index::ContainerSource;

#[derive(Debug, Default)]
pub struct FakeDocker {
    containers: Mutex<HashMap<String, ContainerInspectResponse>>,
    inspects: AtomicUsize,
}

impl FakeDocker {
    pub fn put(&self, c: ContainerInspectResponse) {
        let id = c.id.clone().unwrap_or_default();
        self.containers.lock().unwrap().insert(id, c);
    }

    pub fn remove(&self, id: &str) {
        self.containers.lock().unwrap().remove(&full(id));
    }

    /// Sets container `id` exited with `code` (OOM-killed or not, as
    /// Docker's state says).
    pub fn exit(&self, id: &str, code: i64, oom_killed: bool) {
        let mut all = self.containers.lock().unwrap();
        let state = all.get_mut(&full(id)).unwrap().state.as_mut().unwrap();
        state.running = Some(false);
        state.status = Some(ContainerStateStatusEnum::EXITED);
        state.exit_code = Some(code);
        state.oom_killed = Some(oom_killed);
        state.finished_at = Some("2026-12-06T05:00:00Z".into());
    }

    /// Inspects asked so far.
    pub fn inspects(&self) -> usize {
        self.inspects.load(Ordering::SeqCst)
    }
}

#[tonic::async_trait]
impl ContainerSource for FakeDocker {
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        self.inspects.fetch_add(1, Ordering::SeqCst);
        let all = self.containers.lock().unwrap();
        Ok(all
            .iter()
            .find(|(full, _)| full.starts_with(id))
            .map(|(_, c)| c.clone()))
    }

    async fn list_pod_containers(&self) -> Result<Vec<ContainerSummary>> {
        let all = self.containers.lock().unwrap();
        Ok(all
            .values()
            .filter(|c| {
                c.config
                    .as_ref()
                    .and_then(|c| c.labels.as_ref())
                    .is_some_and(|l| l.contains_key(labels::TYPE))
            })
            .map(|c| {
                let running = c.state.as_ref().and_then(|s| s.running) == Some(true);
                ContainerSummary {
                    id: c.id.clone(),
                    state: Some(if running {
                        ContainerSummaryStateEnum::RUNNING
                    } else {
                        ContainerSummaryStateEnum::EXITED
                    }),
                    ..Default::default()
                }
            })
            .collect())
    }
}

/// The full (64 hex digit) id a test calls `short`, as Docker's ids are.
pub fn full(short: &str) -> String {
    format!("{short:0<64}")
}

fn made(id: &str, name: &str, docker_labels: HashMap<String, String>) -> ContainerInspectResponse {
    ContainerInspectResponse {
        id: Some(full(id)),
        name: Some(format!("/{name}")),
        created: Some("2026-12-06T04:00:00.000000001Z".into()),
        image: Some("sha256:abc".into()),
        state: Some(ContainerState {
            running: Some(true),
            status: Some(ContainerStateStatusEnum::RUNNING),
            pid: Some(0),
            started_at: Some("2026-12-06T04:00:01Z".into()),
            ..Default::default()
        }),
        config: Some(ContainerConfig {
            image: Some("busybox".into()),
            labels: Some(docker_labels),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A running pause container of pod `pod` (its short id), as dockercri
/// makes it.
pub fn sandbox(pod: &str) -> ContainerInspectResponse {
    made(
        pod,
        &format!("k8s_POD_web_default_uid-{pod}_0"),
        HashMap::from([
            (labels::TYPE.to_string(), labels::TYPE_SANDBOX.to_string()),
            ("io.kubernetes.pod.name".into(), "web".into()),
            ("io.kubernetes.pod.namespace".into(), "default".into()),
            ("io.kubernetes.pod.uid".into(), format!("uid-{pod}")),
        ]),
    )
}

/// A running app container `name` of pod `pod`.
pub fn container(id: &str, pod: &str, name: &str) -> ContainerInspectResponse {
    made(
        id,
        &format!("k8s_{name}_web_default_uid-{pod}_0"),
        HashMap::from([
            (labels::TYPE.to_string(), labels::TYPE_CONTAINER.to_string()),
            (labels::SANDBOX_ID.to_string(), full(pod)),
        ]),
    )
}

/// A container nobody labelled (not a pod's).
pub fn stranger(id: &str) -> ContainerInspectResponse {
    made(id, "web", HashMap::new())
}

/// Docker's event `action` on container `c`, stamped `ns`.
pub fn event(action: &str, c: &ContainerInspectResponse, ns: i64) -> EventMessage {
    EventMessage {
        action: Some(action.to_string()),
        actor: Some(EventActor {
            id: c.id.clone(),
            attributes: c.config.as_ref().and_then(|c| c.labels.clone()),
        }),
        time_nano: Some(ns),
        ..Default::default()
    }
}
