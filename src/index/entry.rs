//! One indexed Docker container: its inspect result and the CRI views
//! computed from it once, so that reads only clone.

use std::path::Path;

use bollard::models::ContainerInspectResponse;

use crate::docker::{container_status, labels, sandbox_status};
use crate::proto::{Container, ContainerStatus, ContainerUser, PodSandbox, PodSandboxStatus};
use crate::sandbox_record::{self, SandboxRecord};

/// A pod sandbox or an app container, as the index keeps it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub inspect: ContainerInspectResponse,
    pub view: View,
}

/// The CRI objects of an entry.
// Entries live behind an `Arc`, one per container: their size is no cost.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum View {
    Sandbox {
        status: PodSandboxStatus,
        item: PodSandbox,
        record: Option<Box<SandboxRecord>>,
    },
    Container {
        status: ContainerStatus,
        item: Container,
    },
    /// A container labelled into a pod whose name is not a CRI container's
    /// (made beside dockercri, e.g. with the Docker CLI): no CRI call shows
    /// it, but the pod's stop and remove take it.
    Member { pod_sandbox_id: String },
}

impl Entry {
    /// The entry of a pod object read from disk and `/proc` where Docker
    /// cannot say (the sandbox record, the process's user); `None` for
    /// containers that are not part of a pod.
    pub fn load(inspect: ContainerInspectResponse, root: &Path) -> Option<Entry> {
        let docker_labels = inspect.config.as_ref().and_then(|c| c.labels.as_ref());
        if sandbox_status::is_sandbox(docker_labels) {
            let saved = sandbox_record::load(root, inspect.id.as_deref()?);
            Entry::sandbox(inspect, saved)
        } else if container_status::is_container(docker_labels) {
            let pid = inspect
                .state
                .as_ref()
                .and_then(|s| s.pid)
                .filter(|p| *p > 0);
            let cri_name = inspect
                .name
                .as_deref()
                .and_then(crate::docker::naming::parse_container_name)
                .is_some();
            if cri_name {
                let user = pid.and_then(crate::docker::container_status::process_user);
                Entry::container(inspect, user)
            } else {
                let pod_sandbox_id = docker_labels?.get(labels::SANDBOX_ID)?.clone();
                Some(Entry {
                    inspect,
                    view: View::Member { pod_sandbox_id },
                })
            }
        } else {
            None
        }
    }

    /// A sandbox entry; `None` when `inspect` is not a sandbox.
    pub fn sandbox(
        inspect: ContainerInspectResponse,
        record: Option<SandboxRecord>,
    ) -> Option<Entry> {
        let status = sandbox_status::status(
            &inspect,
            record.as_ref().and_then(|c| c.config.as_ref()),
            record.as_ref().map(|c| c.runtime_handler.as_str()),
        )?;
        let item = PodSandbox {
            id: status.id.clone(),
            metadata: status.metadata.clone(),
            state: status.state,
            created_at: status.created_at,
            labels: status.labels.clone(),
            annotations: status.annotations.clone(),
            runtime_handler: status.runtime_handler.clone(),
        };
        Some(Entry {
            inspect,
            view: View::Sandbox {
                status,
                item,
                record: record.map(Box::new),
            },
        })
    }

    /// An app container entry; `None` when `inspect` is not one.
    pub fn container(
        inspect: ContainerInspectResponse,
        user: Option<ContainerUser>,
    ) -> Option<Entry> {
        let status = container_status::status(&inspect, user)?;
        let pod_sandbox_id = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(labels::SANDBOX_ID))?
            .clone();
        let item = Container {
            id: status.id.clone(),
            pod_sandbox_id,
            metadata: status.metadata.clone(),
            image: status.image.clone(),
            image_ref: status.image_ref.clone(),
            state: status.state,
            created_at: status.created_at,
            labels: status.labels.clone(),
            annotations: status.annotations.clone(),
            image_id: status.image_id.clone(),
        };
        Some(Entry {
            inspect,
            view: View::Container { status, item },
        })
    }

    /// Docker's full id.
    pub fn id(&self) -> &str {
        self.inspect.id.as_deref().unwrap_or_default()
    }

    /// The pod this entry belongs to: itself for a sandbox.
    pub fn pod_id(&self) -> &str {
        match &self.view {
            View::Sandbox { item, .. } => &item.id,
            View::Container { item, .. } => &item.pod_sandbox_id,
            View::Member { pod_sandbox_id } => pod_sandbox_id,
        }
    }

    pub fn is_sandbox(&self) -> bool {
        matches!(self.view, View::Sandbox { .. })
    }

    /// Whether this is a CRI app container.
    pub fn is_container(&self) -> bool {
        matches!(self.view, View::Container { .. })
    }

    /// The pid of Docker's process while it runs (Docker says 0 otherwise).
    pub fn pid(&self) -> Option<i64> {
        self.inspect
            .state
            .as_ref()
            .and_then(|s| s.pid)
            .filter(|p| *p > 0)
    }

    /// Whether Docker's process runs.
    pub fn running(&self) -> bool {
        self.inspect.state.as_ref().and_then(|s| s.running) == Some(true)
    }

    /// Docker's state word (`running`, `exited`, ...), as its list shows it.
    pub fn docker_state(&self) -> String {
        self.inspect
            .state
            .as_ref()
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{PodSandboxConfig, PodSandboxMetadata};
    use bollard::models::{ContainerConfig, ContainerState, ContainerStateStatusEnum};
    use std::collections::HashMap;

    fn inspect(name: &str, kind: &str, running: bool) -> ContainerInspectResponse {
        let mut docker_labels = HashMap::from([
            (labels::TYPE.to_string(), kind.to_string()),
            ("app".to_string(), "web".to_string()),
            ("annotation.note".to_string(), "hi".to_string()),
        ]);
        if kind == labels::TYPE_CONTAINER {
            docker_labels.insert(labels::SANDBOX_ID.into(), "sb1".into());
        }
        ContainerInspectResponse {
            id: Some(format!("{name}-id")),
            name: Some(name.to_string()),
            created: Some("2023-11-14T22:13:20.123456789Z".into()),
            image: Some("sha256:abc".into()),
            state: Some(ContainerState {
                running: Some(running),
                status: Some(if running {
                    ContainerStateStatusEnum::RUNNING
                } else {
                    ContainerStateStatusEnum::EXITED
                }),
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

    #[test]
    fn list_items_agree_with_statuses() {
        let e = Entry::container(
            inspect("/k8s_app_web_default_uid_2", labels::TYPE_CONTAINER, true),
            None,
        )
        .unwrap();
        let View::Container { status, item } = &e.view else {
            panic!("not a container view");
        };
        assert_eq!(item.id, status.id);
        assert_eq!(item.pod_sandbox_id, "sb1");
        assert_eq!(e.pod_id(), "sb1");
        // List items carry the nanoseconds the status has (Docker's list
        // only has seconds).
        assert_eq!(item.created_at, 1_700_000_000_123_456_789);
        assert_eq!(item.created_at, status.created_at);
        assert_eq!(item.state, status.state);
        assert_eq!(item.labels, HashMap::from([("app".into(), "web".into())]));
        assert_eq!(
            item.annotations,
            HashMap::from([("note".into(), "hi".into())])
        );
        assert_eq!(item.image_ref, "sha256:abc");
        assert_eq!(e.docker_state(), "running");
        assert!(e.running() && !e.is_sandbox());
    }

    #[test]
    fn sandboxes_take_metadata_from_their_checkpoint() {
        let saved = SandboxRecord {
            config: Some(PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "uid".into(),
                    attempt: 2,
                }),
                ..Default::default()
            }),
            runtime_handler: "runc".into(),
            ..Default::default()
        };
        let e = Entry::sandbox(
            inspect("/k8s_POD_web_default_uid_2", labels::TYPE_SANDBOX, false),
            Some(saved),
        )
        .unwrap();
        let View::Sandbox { status, item, .. } = &e.view else {
            panic!("not a sandbox view");
        };
        assert_eq!(item.runtime_handler, "runc");
        assert_eq!(item.metadata.as_ref().unwrap().attempt, 2);
        assert_eq!(item.state, status.state);
        assert_eq!(e.pod_id(), e.id());
        assert!(!e.running() && e.is_sandbox());
    }

    #[test]
    fn strangers_are_not_indexed() {
        let root = Path::new("/nonexistent");
        assert!(Entry::load(inspect("/web", "other", true), root).is_none());
        // A sandbox-labelled container with a name that is not a pod name.
        assert!(Entry::sandbox(inspect("/web", labels::TYPE_SANDBOX, true), None).is_none());
        // An app container must be labelled with its sandbox.
        let mut orphan = inspect("/k8s_app_web_default_uid_2", labels::TYPE_CONTAINER, true);
        if let Some(l) = orphan.config.as_mut().and_then(|c| c.labels.as_mut()) {
            l.remove(labels::SANDBOX_ID);
        }
        assert!(Entry::container(orphan, None).is_none());
    }

    #[test]
    fn pod_members_without_a_cri_name_are_kept_but_not_shown() {
        let root = Path::new("/nonexistent");
        let e = Entry::load(inspect("/sidecar", labels::TYPE_CONTAINER, true), root).unwrap();
        assert!(matches!(&e.view, View::Member { pod_sandbox_id } if pod_sandbox_id == "sb1"));
        assert_eq!(e.pod_id(), "sb1");
        assert!(!e.is_container() && !e.is_sandbox());
        let named = inspect("/k8s_app_web_default_uid_2", labels::TYPE_CONTAINER, true);
        assert!(Entry::load(named, root).unwrap().is_container());
        // Without its pod's label it belongs to no pod.
        let mut loose = inspect("/sidecar", labels::TYPE_CONTAINER, true);
        if let Some(l) = loose.config.as_mut().and_then(|c| c.labels.as_mut()) {
            l.remove(labels::SANDBOX_ID);
        }
        assert!(Entry::load(loose, root).is_none());
    }
}
