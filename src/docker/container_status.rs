//! Docker's view of an app container → CRI `Container` and
//! `ContainerStatus`. Pure.

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryHostConfig, ContainerSummaryStateEnum, HostConfig, MountPoint,
};

use crate::docker::{labels, naming, time};
use crate::proto::{
    Container, ContainerResources, ContainerState, ContainerStatus, ContainerUser, ImageSpec,
    LinuxContainerResources, LinuxContainerUser, Mount, MountPropagation,
};

/// Exit reasons kubelet knows.
pub const REASON_COMPLETED: &str = "Completed";
pub const REASON_ERROR: &str = "Error";
pub const REASON_OOM_KILLED: &str = "OOMKilled";

/// Docker's container state in CRI terms (inspect flavour).
pub fn state(s: Option<ContainerStateStatusEnum>) -> ContainerState {
    use ContainerStateStatusEnum as D;
    match s {
        Some(D::CREATED) => ContainerState::ContainerCreated,
        Some(D::RUNNING | D::PAUSED | D::RESTARTING | D::STOPPING) => {
            ContainerState::ContainerRunning
        }
        Some(D::EXITED | D::DEAD) => ContainerState::ContainerExited,
        _ => ContainerState::ContainerUnknown,
    }
}

/// Docker's container state in CRI terms (list flavour).
pub fn summary_state(s: Option<ContainerSummaryStateEnum>) -> ContainerState {
    use ContainerSummaryStateEnum as D;
    match s {
        Some(D::CREATED) => ContainerState::ContainerCreated,
        Some(D::RUNNING | D::PAUSED | D::RESTARTING | D::STOPPING) => {
            ContainerState::ContainerRunning
        }
        Some(D::EXITED | D::DEAD) => ContainerState::ContainerExited,
        _ => ContainerState::ContainerUnknown,
    }
}

/// True for containers labelled as app containers.
pub fn is_container(docker_labels: Option<&std::collections::HashMap<String, String>>) -> bool {
    docker_labels
        .and_then(|l| l.get(labels::TYPE))
        .map(String::as_str)
        == Some(labels::TYPE_CONTAINER)
}

/// A `ListContainers` item; `None` for containers that are not part of a pod.
pub fn from_summary(c: &ContainerSummary) -> Option<Container> {
    if !is_container(c.labels.as_ref()) {
        return None;
    }
    let (metadata, _) = c
        .names
        .as_ref()?
        .iter()
        .find_map(|n| naming::parse_container_name(n))?;
    let docker_labels = c.labels.clone().unwrap_or_default();
    let sandbox = docker_labels.get(labels::SANDBOX_ID)?.clone();
    let (labels, annotations) = labels::from_docker(&docker_labels);
    let image_id = c.image_id.clone().unwrap_or_default();
    Some(Container {
        id: c.id.clone()?,
        pod_sandbox_id: sandbox,
        metadata: Some(metadata),
        image: Some(ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        image_ref: image_id.clone(),
        image_id,
        state: summary_state(c.state) as i32,
        created_at: c.created.unwrap_or(0).saturating_mul(1_000_000_000),
        labels,
        annotations,
    })
}

/// What Docker's list would say of the container `inspect` describes:
/// lets the stats, which work from list entries, take the index's inspects
/// instead of a Docker list.
pub fn summary_from_inspect(inspect: &ContainerInspectResponse) -> ContainerSummary {
    let config = inspect.config.as_ref();
    let state = inspect
        .state
        .as_ref()
        .and_then(|s| s.status)
        .and_then(|s| s.to_string().parse().ok());
    let created = inspect
        .created
        .as_deref()
        .map(|t| time::rfc3339_to_ns(t) / 1_000_000_000);
    ContainerSummary {
        id: inspect.id.clone(),
        names: inspect.name.clone().map(|n| vec![n]),
        image: config.and_then(|c| c.image.clone()),
        image_id: inspect.image.clone(),
        created,
        labels: config.and_then(|c| c.labels.clone()),
        state,
        host_config: Some(ContainerSummaryHostConfig {
            network_mode: inspect
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The reason kubelet shows for an exited container.
pub fn exit_reason(exit_code: i64, oom_killed: bool) -> &'static str {
    if oom_killed {
        REASON_OOM_KILLED
    } else if exit_code == 0 {
        REASON_COMPLETED
    } else {
        REASON_ERROR
    }
}

/// A mount as Docker reports it, in CRI terms.
pub fn mount(m: &MountPoint) -> Mount {
    let mode = m.mode.clone().unwrap_or_default();
    let propagation = match m.propagation.as_deref() {
        Some("rslave" | "slave") => MountPropagation::PropagationHostToContainer,
        Some("rshared" | "shared") => MountPropagation::PropagationBidirectional,
        _ => MountPropagation::PropagationPrivate,
    };
    Mount {
        container_path: m.destination.clone().unwrap_or_default(),
        host_path: m.source.clone().unwrap_or_default(),
        readonly: m.rw == Some(false),
        selinux_relabel: mode.split(',').any(|o| o == "Z" || o == "z"),
        propagation: propagation as i32,
        ..Default::default()
    }
}

/// The resources Docker applies, in CRI terms.
pub fn resources(h: &HostConfig) -> LinuxContainerResources {
    LinuxContainerResources {
        cpu_period: h.cpu_period.unwrap_or(0),
        cpu_quota: h.cpu_quota.unwrap_or(0),
        cpu_shares: h.cpu_shares.unwrap_or(0),
        memory_limit_in_bytes: h.memory.unwrap_or(0),
        memory_swap_limit_in_bytes: h.memory_swap.unwrap_or(0),
        oom_score_adj: h.oom_score_adj.unwrap_or(0),
        cpuset_cpus: h.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: h.cpuset_mems.clone().unwrap_or_default(),
        ..Default::default()
    }
}

/// `ContainerStatus` from `docker inspect`; `None` when it is not an app
/// container of a pod. `user` is read from the running process, if any.
pub fn status(
    inspect: &ContainerInspectResponse,
    user: Option<ContainerUser>,
) -> Option<ContainerStatus> {
    let config = inspect.config.clone().unwrap_or_default();
    if !is_container(config.labels.as_ref()) {
        return None;
    }
    let docker_labels = config.labels.clone().unwrap_or_default();
    let (metadata, _) = naming::parse_container_name(inspect.name.as_deref()?)?;
    let (labels, annotations) = labels::from_docker(&docker_labels);
    let st = inspect.state.clone().unwrap_or_default();
    let cri_state = state(st.status);
    let exit_code = st.exit_code.unwrap_or(0);
    let (reason, exit) = match cri_state {
        ContainerState::ContainerExited => (
            exit_reason(exit_code, st.oom_killed == Some(true)).to_string(),
            exit_code,
        ),
        _ => (String::new(), 0),
    };
    let image_id = inspect.image.clone().unwrap_or_default();
    let stop_signal = config
        .stop_signal
        .as_deref()
        .and_then(crate::proto::Signal::from_str_name)
        .map_or(0, |s| s as i32);
    Some(ContainerStatus {
        id: inspect.id.clone()?,
        metadata: Some(metadata),
        state: cri_state as i32,
        created_at: inspect.created.as_deref().map_or(0, time::rfc3339_to_ns),
        started_at: st.started_at.as_deref().map_or(0, time::rfc3339_to_ns),
        finished_at: st.finished_at.as_deref().map_or(0, time::rfc3339_to_ns),
        exit_code: i32::try_from(exit).unwrap_or(i32::MAX),
        image: Some(ImageSpec {
            image: config.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        image_ref: image_id.clone(),
        image_id,
        reason,
        message: st.error.unwrap_or_default(),
        labels,
        annotations,
        mounts: inspect
            .mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(mount)
            .collect(),
        log_path: docker_labels
            .get(labels::LOG_PATH)
            .cloned()
            .unwrap_or_default(),
        resources: inspect.host_config.as_ref().map(|h| ContainerResources {
            linux: Some(resources(h)),
            windows: None,
        }),
        user,
        stop_signal,
    })
}

/// uid, gid and groups of a running process, from `/proc/<pid>/status`.
pub fn process_user(pid: i64) -> Option<ContainerUser> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_process_user(&text)
}

/// Parses the `Uid:`, `Gid:` and `Groups:` lines (effective ids).
pub fn parse_process_user(text: &str) -> Option<ContainerUser> {
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).map(|rest| {
            rest.split_whitespace()
                .filter_map(|v| v.parse::<i64>().ok())
                .collect::<Vec<_>>()
        })
    };
    let uid = *field("Uid:")?.get(1)?;
    let gid = *field("Gid:")?.get(1)?;
    let supplemental_groups = field("Groups:").unwrap_or_default();
    Some(ContainerUser {
        linux: Some(LinuxContainerUser {
            uid,
            gid,
            supplemental_groups,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState as DockerState};
    use std::collections::HashMap;

    fn inspect(status: ContainerStateStatusEnum, exit: i64, oom: bool) -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some("c1".into()),
            name: Some("/k8s_app_web_default_uid_2".into()),
            created: Some("2023-11-14T22:13:20Z".into()),
            image: Some("sha256:abc".into()),
            state: Some(DockerState {
                status: Some(status),
                exit_code: Some(exit),
                oom_killed: Some(oom),
                started_at: Some("2023-11-14T22:13:21Z".into()),
                finished_at: Some("0001-01-01T00:00:00Z".into()),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                image: Some("busybox".into()),
                labels: Some(HashMap::from([
                    (labels::TYPE.to_string(), labels::TYPE_CONTAINER.to_string()),
                    (labels::SANDBOX_ID.to_string(), "sb".to_string()),
                    (labels::LOG_PATH.to_string(), "/logs/app/2.log".to_string()),
                    ("k".to_string(), "v".to_string()),
                ])),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                memory: Some(1 << 20),
                ..Default::default()
            }),
            mounts: Some(vec![MountPoint {
                source: Some("/h".into()),
                destination: Some("/c".into()),
                rw: Some(false),
                propagation: Some("rslave".into()),
                mode: Some("Z".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn docker_states_map_to_cri_states() {
        use ContainerStateStatusEnum as D;
        for (docker, want) in [
            (Some(D::CREATED), ContainerState::ContainerCreated),
            (Some(D::RUNNING), ContainerState::ContainerRunning),
            (Some(D::PAUSED), ContainerState::ContainerRunning),
            (Some(D::EXITED), ContainerState::ContainerExited),
            (Some(D::DEAD), ContainerState::ContainerExited),
            (Some(D::REMOVING), ContainerState::ContainerUnknown),
            (None, ContainerState::ContainerUnknown),
        ] {
            assert_eq!(state(docker), want, "{docker:?}");
        }
    }

    #[test]
    fn exit_reasons() {
        for (code, oom, want) in [
            (0, false, "Completed"),
            (1, false, "Error"),
            (137, true, "OOMKilled"),
        ] {
            assert_eq!(exit_reason(code, oom), want);
        }
    }

    #[test]
    fn inspect_becomes_status() {
        let s = status(&inspect(ContainerStateStatusEnum::EXITED, 3, false), None).unwrap();
        assert_eq!(s.id, "c1");
        assert_eq!(s.metadata.as_ref().unwrap().name, "app");
        assert_eq!(s.metadata.as_ref().unwrap().attempt, 2);
        assert_eq!(s.state(), ContainerState::ContainerExited);
        assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
        assert_eq!(s.created_at, 1_700_000_000_000_000_000);
        assert_eq!(s.started_at, 1_700_000_001_000_000_000);
        assert_eq!(s.finished_at, 0);
        assert_eq!(s.image.as_ref().unwrap().image, "busybox");
        assert_eq!(
            (s.image_ref.as_str(), s.image_id.as_str()),
            ("sha256:abc", "sha256:abc")
        );
        assert_eq!(s.log_path, "/logs/app/2.log");
        assert_eq!(
            s.labels,
            HashMap::from([("k".to_string(), "v".to_string())])
        );
        let m = &s.mounts[0];
        assert!(m.readonly && m.selinux_relabel);
        assert_eq!(
            m.propagation(),
            MountPropagation::PropagationHostToContainer
        );
        assert_eq!(
            s.resources.unwrap().linux.unwrap().memory_limit_in_bytes,
            1 << 20
        );

        let running = status(&inspect(ContainerStateStatusEnum::RUNNING, 0, false), None).unwrap();
        assert_eq!((running.exit_code, running.reason.as_str()), (0, ""));
        let oom = status(&inspect(ContainerStateStatusEnum::EXITED, 137, true), None).unwrap();
        assert_eq!((oom.exit_code, oom.reason.as_str()), (137, "OOMKilled"));
    }

    #[test]
    fn an_inspect_reads_as_the_list_entry_docker_would_give() {
        for (status, word) in [
            (
                ContainerStateStatusEnum::RUNNING,
                ContainerSummaryStateEnum::RUNNING,
            ),
            (
                ContainerStateStatusEnum::EXITED,
                ContainerSummaryStateEnum::EXITED,
            ),
            (
                ContainerStateStatusEnum::CREATED,
                ContainerSummaryStateEnum::CREATED,
            ),
        ] {
            let mut i = inspect(status, 0, false);
            if let Some(h) = i.host_config.as_mut() {
                h.network_mode = Some("container:sb".into());
            }
            let summary = summary_from_inspect(&i);
            assert_eq!(summary.state, Some(word));
            assert_eq!(summary.id.as_deref(), Some("c1"));
            assert_eq!(summary.image.as_deref(), Some("busybox"));
            assert_eq!(summary.image_id.as_deref(), Some("sha256:abc"));
            assert_eq!(summary.created, Some(1_700_000_000));
            assert_eq!(
                summary.host_config.and_then(|h| h.network_mode).as_deref(),
                Some("container:sb")
            );
            // The CRI list item read from it is the one the inspect gives,
            // to the second.
            let from_list = from_summary(&summary_from_inspect(&i)).unwrap();
            let from_status = status_item(&i);
            assert_eq!(from_list, from_status, "{word:?}");
        }
    }

    /// The CRI list item of an inspect, as the index builds it.
    fn status_item(i: &ContainerInspectResponse) -> Container {
        let st = status(i, None).unwrap();
        Container {
            id: st.id,
            pod_sandbox_id: "sb".into(),
            metadata: st.metadata,
            image: st.image,
            image_ref: st.image_ref,
            state: st.state,
            created_at: st.created_at,
            labels: st.labels,
            annotations: st.annotations,
            image_id: st.image_id,
        }
    }

    #[test]
    fn process_user_comes_from_proc_status() {
        let text = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGid:\t3000\t3000\t3000\t3000\nGroups:\t3000 4000 5000 \n";
        let u = parse_process_user(text).unwrap().linux.unwrap();
        assert_eq!((u.uid, u.gid), (1000, 3000));
        assert_eq!(u.supplemental_groups, [3000, 4000, 5000]);
        assert!(parse_process_user("Name: x\n").is_none());
    }
}
