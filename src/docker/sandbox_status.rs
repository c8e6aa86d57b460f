//! Docker's view of a pause container → CRI `PodSandbox` and
//! `PodSandboxStatus`. Pure; a checkpoint fills in what Docker cannot say.

use std::collections::HashMap;

use bollard::models::{ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum};

use crate::docker::{labels, naming, time};
use crate::proto::{
    LinuxPodSandboxStatus, Namespace, NamespaceMode, NamespaceOption, PodIp, PodSandbox,
    PodSandboxConfig, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus,
};

/// READY while the pause container runs; NOTREADY otherwise.
pub fn state(running: bool) -> PodSandboxState {
    if running {
        PodSandboxState::SandboxReady
    } else {
        PodSandboxState::SandboxNotready
    }
}

/// True for containers labelled as sandboxes.
pub fn is_sandbox(docker_labels: Option<&HashMap<String, String>>) -> bool {
    docker_labels
        .and_then(|l| l.get(labels::TYPE))
        .map(String::as_str)
        == Some(labels::TYPE_SANDBOX)
}

/// A `ListPodSandbox` item; `None` for containers that are not sandboxes
/// or whose name is not a sandbox name.
pub fn from_summary(c: &ContainerSummary) -> Option<PodSandbox> {
    if !is_sandbox(c.labels.as_ref()) {
        return None;
    }
    let metadata = c
        .names
        .as_ref()?
        .iter()
        .find_map(|n| naming::parse_sandbox_name(n))?;
    let docker_labels = c.labels.clone().unwrap_or_default();
    let (labels, annotations) = labels::from_docker(&docker_labels);
    let running = c.state == Some(ContainerSummaryStateEnum::RUNNING);
    Some(PodSandbox {
        id: c.id.clone()?,
        metadata: Some(metadata),
        state: state(running) as i32,
        created_at: c.created.unwrap_or(0).saturating_mul(1_000_000_000),
        labels,
        annotations,
        runtime_handler: docker_labels
            .get(labels::RUNTIME_HANDLER)
            .cloned()
            .unwrap_or_default(),
    })
}

/// The namespace options a sandbox runs with: from its CRI config when we
/// have it, else read back from Docker's host config.
pub fn namespace_options(
    inspect: &ContainerInspectResponse,
    config: Option<&PodSandboxConfig>,
) -> NamespaceOption {
    if let Some(opts) = config
        .and_then(|c| c.linux.as_ref())
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
    {
        return opts.clone();
    }
    // No config (a pod cri-dockerd made): read back as cri-dockerd reports
    // it (`networkNamespaceMode`, `pidNamespaceMode`): a pause container
    // with a PID namespace of its own stands for CONTAINER, kubelet's
    // default.
    let host = inspect.host_config.clone().unwrap_or_default();
    let mode = |m: Option<&String>, own: NamespaceMode| {
        if m.map(String::as_str) == Some("host") {
            NamespaceMode::Node as i32
        } else {
            own as i32
        }
    };
    NamespaceOption {
        network: mode(host.network_mode.as_ref(), NamespaceMode::Pod),
        pid: mode(host.pid_mode.as_ref(), NamespaceMode::Container),
        ipc: mode(host.ipc_mode.as_ref(), NamespaceMode::Pod),
        ..Default::default()
    }
}

/// The pod's IPs as Docker assigned them on its network; none on the host
/// network (kubelet uses the node's addresses there).
pub fn pod_ips(inspect: &ContainerInspectResponse) -> (String, Vec<PodIp>) {
    let settings = inspect.network_settings.clone().unwrap_or_default();
    let mode = inspect
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    if mode == "host" || mode == "none" {
        return (String::new(), vec![]);
    }
    let networks = settings.networks.unwrap_or_default();
    let endpoint = networks
        .get(if mode == "default" {
            "bridge"
        } else {
            mode.as_str()
        })
        .or_else(|| networks.values().next());
    let Some(endpoint) = endpoint else {
        return (String::new(), vec![]);
    };
    let ip = endpoint.ip_address.clone().unwrap_or_default();
    let additional = endpoint
        .global_ipv6_address
        .iter()
        .filter(|v6| !v6.is_empty())
        .map(|v6| PodIp { ip: v6.clone() })
        .collect();
    (ip, additional)
}

/// `PodSandboxStatus` from `docker inspect`; `None` when it is not a sandbox.
pub fn status(
    inspect: &ContainerInspectResponse,
    config: Option<&PodSandboxConfig>,
    runtime_handler: Option<&str>,
) -> Option<PodSandboxStatus> {
    let cfg = inspect.config.clone().unwrap_or_default();
    if !is_sandbox(cfg.labels.as_ref()) {
        return None;
    }
    let docker_labels = cfg.labels.unwrap_or_default();
    let metadata = config
        .and_then(|c| c.metadata.clone())
        .or_else(|| naming::parse_sandbox_name(inspect.name.as_deref()?))?;
    let (labels, annotations) = labels::from_docker(&docker_labels);
    let running = inspect
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false);
    let (ip, additional_ips) = pod_ips(inspect);
    Some(PodSandboxStatus {
        id: inspect.id.clone()?,
        metadata: Some(metadata),
        state: state(running) as i32,
        created_at: inspect.created.as_deref().map_or(0, time::rfc3339_to_ns),
        network: Some(PodSandboxNetworkStatus { ip, additional_ips }),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: Some(namespace_options(inspect, config)),
            }),
        }),
        labels,
        annotations,
        runtime_handler: runtime_handler
            .map(str::to_string)
            .or_else(|| docker_labels.get(labels::RUNTIME_HANDLER).cloned())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerConfig, ContainerState, EndpointSettings, HostConfig, NetworkSettings,
    };

    fn sandbox_labels() -> HashMap<String, String> {
        HashMap::from([
            (labels::TYPE.to_string(), labels::TYPE_SANDBOX.to_string()),
            ("app".to_string(), "web".to_string()),
            ("annotation.note".to_string(), "hi".to_string()),
            (labels::RUNTIME_HANDLER.to_string(), "runc".to_string()),
        ])
    }

    fn inspect(network_mode: &str, running: bool) -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some("abc".into()),
            name: Some("/k8s_POD_web_default_uid-1_2".into()),
            created: Some("2023-11-14T22:13:20.000000001Z".into()),
            state: Some(ContainerState {
                running: Some(running),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                labels: Some(sandbox_labels()),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some(network_mode.into()),
                pid_mode: Some("host".into()),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([(
                    "bridge".to_string(),
                    EndpointSettings {
                        ip_address: Some("172.17.0.5".into()),
                        global_ipv6_address: Some(String::new()),
                        ..Default::default()
                    },
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn inspect_becomes_status() {
        let s = status(&inspect("bridge", true), None, None).unwrap();
        assert_eq!(s.id, "abc");
        let m = s.metadata.clone().unwrap();
        assert_eq!(
            (
                m.name.as_str(),
                m.namespace.as_str(),
                m.uid.as_str(),
                m.attempt
            ),
            ("web", "default", "uid-1", 2)
        );
        assert_eq!(s.state(), PodSandboxState::SandboxReady);
        assert_eq!(s.created_at, 1_700_000_000_000_000_001);
        assert_eq!(s.network.clone().unwrap().ip, "172.17.0.5");
        let ns = s.linux.unwrap().namespaces.unwrap().options.unwrap();
        assert_eq!(ns.pid(), NamespaceMode::Node);
        assert_eq!(ns.network(), NamespaceMode::Pod);
        assert_eq!(
            s.labels,
            HashMap::from([("app".to_string(), "web".to_string())])
        );
        assert_eq!(s.annotations["note"], "hi");
        assert_eq!(s.runtime_handler, "runc");
    }

    #[test]
    fn namespaces_without_a_config_read_as_cri_dockerd_reports_them() {
        let mut i = inspect("bridge", true);
        i.host_config = Some(HostConfig {
            network_mode: Some("default".into()),
            ipc_mode: Some("shareable".into()),
            ..Default::default()
        });
        let ns = namespace_options(&i, None);
        assert_eq!(
            (ns.network(), ns.pid(), ns.ipc()),
            (
                NamespaceMode::Pod,
                NamespaceMode::Container,
                NamespaceMode::Pod
            )
        );
    }

    #[test]
    fn host_network_pods_have_no_pod_ip_and_stopped_ones_are_not_ready() {
        let s = status(&inspect("host", false), None, None).unwrap();
        assert_eq!(s.state(), PodSandboxState::SandboxNotready);
        assert_eq!(s.network.unwrap().ip, "");
    }

    #[test]
    fn plain_containers_are_not_sandboxes() {
        let mut i = inspect("bridge", true);
        i.config = Some(ContainerConfig::default());
        assert!(status(&i, None, None).is_none());
        let summary = ContainerSummary {
            id: Some("x".into()),
            names: Some(vec!["/k8s_POD_a_b_c_0".into()]),
            ..Default::default()
        };
        assert!(from_summary(&summary).is_none());
    }

    #[test]
    fn summary_becomes_list_item() {
        let summary = ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/k8s_POD_web_default_uid-1_0".into()]),
            labels: Some(sandbox_labels()),
            state: Some(ContainerSummaryStateEnum::EXITED),
            created: Some(1_700_000_000),
            ..Default::default()
        };
        let p = from_summary(&summary).unwrap();
        assert_eq!(p.state(), PodSandboxState::SandboxNotready);
        assert_eq!(p.created_at, 1_700_000_000_000_000_000);
        assert_eq!(p.metadata.unwrap().name, "web");
        assert_eq!(p.runtime_handler, "runc");
    }
}
