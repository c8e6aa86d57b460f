//! CRI `PodSandboxConfig` → Docker create body for the pause container.
//! Pure: validation and translation only; the caller supplies what needs
//! I/O (the image, a localhost seccomp profile's text, the OOM clamp).

use std::collections::HashMap;
use std::path::{Component, Path};

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};

use crate::docker::{cgroup_parent, labels, naming};
use crate::error::{Error, Result};
use crate::proto::{
    CgroupDriver, NamespaceMode, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
    SecurityProfile, security_profile::ProfileType,
};

/// dockershim's `oom_score_adj` for the pause container: killed last.
pub const SANDBOX_OOM_SCORE_ADJ: i64 = -998;

/// Docker network mode for pods that are not on the host network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodNetwork {
    /// Docker's default bridge: Docker gives the IP and publishes ports.
    DockerBridge,
    /// No Docker network: a CNI plugin wires the namespace afterwards.
    None,
}

/// What the sandbox body needs besides the CRI config.
#[derive(Debug, Clone)]
pub struct SandboxInputs<'a> {
    pub image: &'a str,
    pub network: PodNetwork,
    /// Docker runtime for the CRI runtime handler; `None` = dockerd's default.
    pub runtime: Option<&'a str>,
    /// The text of a `Localhost` seccomp profile, already read.
    pub seccomp_localhost: Option<&'a str>,
    /// The `oom_score_adj` after clamping to what the host allows.
    pub oom_score_adj: i64,
    /// Docker's cgroup driver: the form the cgroup parent must take.
    pub cgroup_driver: CgroupDriver,
}

/// The namespace modes of a sandbox (NODE or POD for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SandboxNamespaces {
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
}

/// The sandbox's metadata, checked: every field Docker's name needs is set
/// and holds only characters a Docker name may hold.
pub fn metadata(config: &PodSandboxConfig) -> Result<&PodSandboxMetadata> {
    let m = config
        .metadata
        .as_ref()
        .ok_or_else(|| Error::invalid("config.metadata", "missing"))?;
    for (field, value) in [
        ("config.metadata.name", &m.name),
        ("config.metadata.namespace", &m.namespace),
        ("config.metadata.uid", &m.uid),
    ] {
        check_name_part(field, value)?;
    }
    Ok(m)
}

/// A part of a Docker container name: non-empty, `[A-Za-z0-9.-]`, no `_`
/// (it separates the parts), and bounded.
pub fn check_name_part(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > 253 {
        return Err(Error::invalid(field, "longer than 253 characters"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(Error::invalid(
            field,
            format!("{value:?} may hold only letters, digits, '-' and '.'"),
        ));
    }
    Ok(())
}

/// An absolute path without `..`: kubelet's directories, never an escape.
pub fn check_absolute_path(field: &'static str, path: &str) -> Result<()> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(Error::invalid(field, format!("{path:?} is not absolute")));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(Error::invalid(field, format!("{path:?} contains \"..\"")));
    }
    Ok(())
}

/// The namespace options the sandbox asks for.
pub fn namespaces(config: &PodSandboxConfig) -> Result<SandboxNamespaces> {
    let Some(opts) = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
    else {
        return Ok(SandboxNamespaces::default());
    };
    // `private` is the other mode that gives the sandbox a namespace of its
    // own. For PID it is CONTAINER: kubelet's default for every pod without
    // shareProcessNamespace, where the pause container's PID namespace is
    // its own and each container gets one too.
    let node = |field: &'static str, value: i32, private: NamespaceMode| -> Result<bool> {
        match NamespaceMode::try_from(value) {
            Ok(NamespaceMode::Node) => Ok(true),
            Ok(NamespaceMode::Pod) => Ok(false),
            Ok(mode) if mode == private => Ok(false),
            Ok(mode) => Err(Error::invalid(
                field,
                format!("{} is not valid for a sandbox", mode.as_str_name()),
            )),
            Err(_) => Err(Error::invalid(field, format!("unknown mode {value}"))),
        }
    };
    if opts.userns_options.as_ref().is_some_and(|u| u.mode != 2) {
        return Err(Error::invalid(
            "config.linux.security_context.namespace_options.userns_options",
            "user namespaces are not supported by Docker Engine pods",
        ));
    }
    Ok(SandboxNamespaces {
        host_network: node(
            "config.linux.security_context.namespace_options.network",
            opts.network,
            NamespaceMode::Pod,
        )?,
        host_pid: node(
            "config.linux.security_context.namespace_options.pid",
            opts.pid,
            NamespaceMode::Container,
        )?,
        host_ipc: node(
            "config.linux.security_context.namespace_options.ipc",
            opts.ipc,
            NamespaceMode::Pod,
        )?,
    })
}

/// Docker's `"<port>/<proto>"` key and binding for one CRI port mapping.
pub fn port_binding(p: &PortMapping) -> Result<(String, Option<PortBinding>)> {
    let proto = match Protocol::try_from(p.protocol) {
        Ok(Protocol::Tcp) => "tcp",
        Ok(Protocol::Udp) => "udp",
        Ok(Protocol::Sctp) => "sctp",
        Err(_) => {
            return Err(Error::invalid(
                "config.port_mappings.protocol",
                format!("unknown protocol {}", p.protocol),
            ));
        }
    };
    if !(1..=65535).contains(&p.container_port) {
        return Err(Error::invalid(
            "config.port_mappings.container_port",
            format!("{} is not a port", p.container_port),
        ));
    }
    if !(0..=65535).contains(&p.host_port) {
        return Err(Error::invalid(
            "config.port_mappings.host_port",
            format!("{} is not a port", p.host_port),
        ));
    }
    if !p.host_ip.is_empty() && p.host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(Error::invalid(
            "config.port_mappings.host_ip",
            format!("{:?} is not an IP address", p.host_ip),
        ));
    }
    let key = format!("{}/{proto}", p.container_port);
    // Only ports with a host port are published (as dockershim did).
    let binding = (p.host_port > 0).then(|| PortBinding {
        host_ip: (!p.host_ip.is_empty()).then(|| p.host_ip.clone()),
        host_port: Some(p.host_port.to_string()),
    });
    Ok((key, binding))
}

/// Docker `SecurityOpt` entries for seccomp, given the CRI profile (or the
/// deprecated path field). An absent profile means unconfined, as in
/// Kubernetes; `RuntimeDefault` is Docker's default profile.
pub fn seccomp_opts(
    profile: Option<&SecurityProfile>,
    deprecated_path: &str,
    localhost_text: Option<&str>,
    field: &'static str,
) -> Result<Vec<String>> {
    let unconfined = || Ok(vec!["seccomp=unconfined".to_string()]);
    let localhost = || match localhost_text {
        Some(text) => Ok(vec![format!("seccomp={}", compact_json(text))]),
        None => Err(Error::invalid(field, "localhost profile was not read")),
    };
    match profile {
        Some(p) => match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(vec![]),
            Ok(ProfileType::Unconfined) => unconfined(),
            Ok(ProfileType::Localhost) => localhost(),
            Err(_) => Err(Error::invalid(
                field,
                format!("unknown profile type {}", p.profile_type),
            )),
        },
        None => match deprecated_path {
            "" | "unconfined" => unconfined(),
            "runtime/default" | "docker/default" => Ok(vec![]),
            p if p.starts_with("localhost/") => localhost(),
            other => Err(Error::invalid(
                field,
                format!("unknown seccomp profile {other:?}"),
            )),
        },
    }
}

/// The file a `Localhost` seccomp profile names, if any.
pub fn seccomp_localhost_path<'a>(
    profile: Option<&'a SecurityProfile>,
    deprecated_path: &'a str,
) -> Option<&'a str> {
    match profile {
        Some(p) if p.profile_type == ProfileType::Localhost as i32 => Some(&p.localhost_ref),
        Some(_) => None,
        None => deprecated_path.strip_prefix("localhost/"),
    }
}

/// Docker `SecurityOpt` entries for AppArmor.
pub fn apparmor_opts(
    profile: Option<&SecurityProfile>,
    field: &'static str,
) -> Result<Vec<String>> {
    match profile {
        None => Ok(vec![]),
        Some(p) => match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(vec![]),
            Ok(ProfileType::Unconfined) => Ok(vec!["apparmor=unconfined".into()]),
            Ok(ProfileType::Localhost) if !p.localhost_ref.is_empty() => {
                let name = p
                    .localhost_ref
                    .strip_prefix("localhost/")
                    .unwrap_or(&p.localhost_ref);
                Ok(vec![format!("apparmor={name}")])
            }
            Ok(ProfileType::Localhost) => Err(Error::invalid(field, "localhost_ref is empty")),
            Err(_) => Err(Error::invalid(
                field,
                format!("unknown profile type {}", p.profile_type),
            )),
        },
    }
}

/// Docker `SecurityOpt` entries for SELinux labels.
pub fn selinux_opts(o: Option<&crate::proto::SeLinuxOption>) -> Vec<String> {
    let Some(o) = o else { return vec![] };
    [
        ("user", &o.user),
        ("role", &o.role),
        ("type", &o.r#type),
        ("level", &o.level),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("label={k}:{v}"))
    .collect()
}

fn compact_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| text.to_string())
}

/// The pause container's create body.
pub fn create_body(
    config: &PodSandboxConfig,
    inputs: &SandboxInputs,
) -> Result<ContainerCreateBody> {
    metadata(config)?;
    let ns = namespaces(config)?;
    if !config.log_directory.is_empty() {
        check_absolute_path("config.log_directory", &config.log_directory)?;
    }
    let linux = config.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();

    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &config.port_mappings {
        let (key, binding) = port_binding(p)?;
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        if let Some(b) = binding {
            bindings
                .entry(key)
                .or_insert_with(|| Some(vec![]))
                .get_or_insert_default()
                .push(b);
        }
    }

    // The deprecated path field still comes from older kubelets.
    #[allow(deprecated)]
    let seccomp = seccomp_opts(
        sc.seccomp.as_ref(),
        &sc.seccomp_profile_path,
        inputs.seccomp_localhost,
        "config.linux.security_context.seccomp",
    )?;
    // Privileged: no seccomp, whatever profile is named (as containerd).
    let mut security_opt = if sc.privileged { vec![] } else { seccomp };
    security_opt.extend(apparmor_opts(
        sc.apparmor.as_ref(),
        "config.linux.security_context.apparmor",
    )?);
    security_opt.extend(selinux_opts(sc.selinux_options.as_ref()));

    let user = match (&sc.run_as_user, &sc.run_as_group) {
        (Some(u), Some(g)) => Some(format!("{}:{}", u.value, g.value)),
        (Some(u), None) => Some(u.value.to_string()),
        (None, Some(_)) => {
            return Err(Error::invalid(
                "config.linux.security_context.run_as_group",
                "run_as_group needs run_as_user",
            ));
        }
        (None, None) => None,
    };

    let dns = config.dns_config.clone().unwrap_or_default();
    let non_empty = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let network_mode = if ns.host_network {
        "host"
    } else {
        match inputs.network {
            PodNetwork::DockerBridge => "bridge",
            PodNetwork::None => "none",
        }
    };
    let host_config = HostConfig {
        network_mode: Some(network_mode.into()),
        port_bindings: (!bindings.is_empty() && !ns.host_network).then_some(bindings),
        dns: non_empty(dns.servers),
        dns_search: non_empty(dns.searches),
        dns_options: non_empty(dns.options),
        pid_mode: ns.host_pid.then(|| "host".into()),
        // App containers join the pod's IPC namespace: it must be shareable.
        ipc_mode: Some(if ns.host_ipc { "host" } else { "shareable" }.into()),
        uts_mode: ns.host_network.then(|| "host".into()),
        cgroup_parent: cgroup_parent::for_docker(
            &linux.cgroup_parent,
            inputs.cgroup_driver,
            "config.linux.cgroup_parent",
        )?,
        sysctls: (!linux.sysctls.is_empty()).then(|| linux.sysctls.clone()),
        privileged: sc.privileged.then_some(true),
        readonly_rootfs: sc.readonly_rootfs.then_some(true),
        security_opt: non_empty(security_opt),
        oom_score_adj: Some(inputs.oom_score_adj),
        runtime: inputs.runtime.map(str::to_string),
        ..Default::default()
    };
    let mut internal = vec![(labels::TYPE, labels::TYPE_SANDBOX)];
    if let Some(handler) = inputs.runtime {
        internal.push((labels::RUNTIME_HANDLER, handler));
    }
    labels::check_size(&config.labels, &config.annotations)?;
    let docker_labels = labels::to_docker(&config.labels, &config.annotations, &internal);
    Ok(ContainerCreateBody {
        image: Some(inputs.image.to_string()),
        hostname: (!ns.host_network && !config.hostname.is_empty())
            .then(|| config.hostname.clone()),
        user,
        labels: Some(docker_labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// The Docker name of the sandbox this config asks for.
pub fn name(config: &PodSandboxConfig) -> Result<String> {
    Ok(naming::sandbox_name(metadata(config)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        DnsConfig, Int64Value, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
        SeLinuxOption,
    };

    fn inputs() -> SandboxInputs<'static> {
        SandboxInputs {
            image: "pause:1",
            network: PodNetwork::DockerBridge,
            runtime: None,
            seccomp_localhost: None,
            oom_score_adj: -998,
            cgroup_driver: CgroupDriver::Cgroupfs,
        }
    }

    fn config() -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                namespace: "default".into(),
                uid: "uid-1".into(),
                attempt: 0,
            }),
            hostname: "web-host".into(),
            log_directory: "/var/log/pods/default_web_uid-1".into(),
            ..Default::default()
        }
    }

    fn with_security(sc: LinuxSandboxSecurityContext) -> PodSandboxConfig {
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(sc),
                ..Default::default()
            }),
            ..config()
        }
    }

    fn host(body: &ContainerCreateBody) -> &HostConfig {
        body.host_config.as_ref().unwrap()
    }

    #[test]
    fn a_plain_pod_gets_bridge_dns_and_labels() {
        let mut c = config();
        c.labels.insert("app".into(), "web".into());
        c.annotations.insert("seen".into(), "now".into());
        c.dns_config = Some(DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
        let body = create_body(&c, &inputs()).unwrap();
        let h = host(&body);
        assert_eq!(body.image.as_deref(), Some("pause:1"));
        assert_eq!(body.hostname.as_deref(), Some("web-host"));
        assert_eq!(h.network_mode.as_deref(), Some("bridge"));
        assert_eq!(h.ipc_mode.as_deref(), Some("shareable"));
        assert_eq!(h.pid_mode, None);
        assert_eq!(h.dns.as_deref(), Some(&["10.0.0.10".to_string()][..]));
        assert_eq!(h.dns_options.as_deref(), Some(&["ndots:5".to_string()][..]));
        assert_eq!(h.oom_score_adj, Some(-998));
        assert_eq!(
            h.security_opt.as_deref(),
            Some(&["seccomp=unconfined".to_string()][..])
        );
        let l = body.labels.as_ref().unwrap();
        assert_eq!(l["io.kubernetes.docker.type"], "podsandbox");
        assert_eq!(l["app"], "web");
        assert_eq!(l["annotation.seen"], "now");
    }

    #[test]
    fn host_namespaces_map_to_docker_host_modes() {
        let c = with_security(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: NamespaceMode::Node as i32,
                pid: NamespaceMode::Node as i32,
                ipc: NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        });
        let body = create_body(&c, &inputs()).unwrap();
        let h = host(&body);
        assert_eq!(h.network_mode.as_deref(), Some("host"));
        assert_eq!(h.pid_mode.as_deref(), Some("host"));
        assert_eq!(h.ipc_mode.as_deref(), Some("host"));
        assert_eq!(h.uts_mode.as_deref(), Some("host"));
        assert_eq!(
            body.hostname, None,
            "host network pods keep the node's hostname"
        );
    }

    #[test]
    fn kubelets_default_namespaces_give_the_pod_its_own() {
        // What kubelet sends for a pod without hostPID or
        // shareProcessNamespace: PID is CONTAINER, not POD.
        for pid in [NamespaceMode::Container, NamespaceMode::Pod] {
            let c = with_security(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: pid as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            });
            let body = create_body(&c, &inputs()).unwrap();
            let h = host(&body);
            assert_eq!(h.network_mode.as_deref(), Some("bridge"), "{pid:?}");
            assert_eq!(h.pid_mode, None, "{pid:?}");
            assert_eq!(h.ipc_mode.as_deref(), Some("shareable"), "{pid:?}");
        }
    }

    #[test]
    fn ports_are_exposed_and_published_only_with_a_host_port() {
        let mut c = config();
        c.port_mappings = vec![
            PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                host_port: 8080,
                host_ip: "127.0.0.1".into(),
            },
            PortMapping {
                protocol: Protocol::Udp as i32,
                container_port: 53,
                host_port: 0,
                host_ip: String::new(),
            },
            PortMapping {
                protocol: Protocol::Sctp as i32,
                container_port: 9,
                host_port: 9009,
                host_ip: String::new(),
            },
        ];
        let body = create_body(&c, &inputs()).unwrap();
        assert_eq!(
            body.exposed_ports.as_deref().unwrap(),
            ["80/tcp", "53/udp", "9/sctp"]
        );
        let b = host(&body).port_bindings.as_ref().unwrap();
        assert_eq!(b.len(), 2);
        let tcp = b["80/tcp"].as_ref().unwrap();
        assert_eq!(tcp[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(tcp[0].host_port.as_deref(), Some("8080"));
        assert_eq!(b["9/sctp"].as_ref().unwrap()[0].host_ip, None);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let bad_port = |p: PortMapping| PodSandboxConfig {
            port_mappings: vec![p],
            ..config()
        };
        let cases: Vec<(PodSandboxConfig, &str)> = vec![
            (
                PodSandboxConfig {
                    metadata: None,
                    ..config()
                },
                "config.metadata",
            ),
            (
                PodSandboxConfig {
                    metadata: Some(PodSandboxMetadata {
                        uid: String::new(),
                        ..config().metadata.unwrap()
                    }),
                    ..config()
                },
                "config.metadata.uid",
            ),
            (
                PodSandboxConfig {
                    metadata: Some(PodSandboxMetadata {
                        name: "a_b".into(),
                        ..config().metadata.unwrap()
                    }),
                    ..config()
                },
                "config.metadata.name",
            ),
            (
                bad_port(PortMapping {
                    container_port: 0,
                    ..Default::default()
                }),
                "container_port",
            ),
            (
                bad_port(PortMapping {
                    container_port: 80,
                    host_port: 70000,
                    ..Default::default()
                }),
                "host_port",
            ),
            (
                bad_port(PortMapping {
                    container_port: 80,
                    protocol: 9,
                    ..Default::default()
                }),
                "protocol",
            ),
            (
                bad_port(PortMapping {
                    container_port: 80,
                    host_ip: "nope".into(),
                    ..Default::default()
                }),
                "host_ip",
            ),
            (
                PodSandboxConfig {
                    log_directory: "relative/dir".into(),
                    ..config()
                },
                "config.log_directory",
            ),
            (
                PodSandboxConfig {
                    log_directory: "/var/log/pods/../../etc".into(),
                    ..config()
                },
                "config.log_directory",
            ),
            (
                with_security(LinuxSandboxSecurityContext {
                    run_as_group: Some(Int64Value { value: 1 }),
                    ..Default::default()
                }),
                "run_as_group",
            ),
            (
                with_security(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                "namespace_options.network",
            ),
            (
                with_security(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        ipc: NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                "namespace_options.ipc",
            ),
            (
                with_security(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        pid: NamespaceMode::Target as i32,
                        target_id: "abc".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                "namespace_options.pid",
            ),
        ];
        for (c, field) in cases {
            let err = create_body(&c, &inputs()).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
            assert!(err.to_string().contains(field), "want {field}: {err}");
        }
    }

    #[test]
    fn security_context_maps_to_docker() {
        let c = with_security(LinuxSandboxSecurityContext {
            run_as_user: Some(Int64Value { value: 1000 }),
            run_as_group: Some(Int64Value { value: 3000 }),
            readonly_rootfs: true,
            privileged: true,
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            }),
            apparmor: Some(SecurityProfile {
                profile_type: ProfileType::Unconfined as i32,
                localhost_ref: String::new(),
            }),
            selinux_options: Some(SeLinuxOption {
                user: "system_u".into(),
                level: "s0:c1,c2".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut i = inputs();
        i.runtime = Some("runc");
        let body = create_body(&c, &i).unwrap();
        let h = host(&body);
        assert_eq!(body.user.as_deref(), Some("1000:3000"));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.privileged, Some(true));
        assert_eq!(h.runtime.as_deref(), Some("runc"));
        assert_eq!(
            h.security_opt.as_deref().unwrap(),
            [
                "apparmor=unconfined",
                "label=user:system_u",
                "label=level:s0:c1,c2"
            ]
        );
    }

    #[test]
    fn seccomp_profiles_follow_kubernetes_defaults() {
        let p = |t: ProfileType| SecurityProfile {
            profile_type: t as i32,
            localhost_ref: "/p.json".into(),
        };
        let f = "f";
        assert_eq!(
            seccomp_opts(None, "", None, f).unwrap(),
            ["seccomp=unconfined"]
        );
        assert!(
            seccomp_opts(None, "runtime/default", None, f)
                .unwrap()
                .is_empty()
        );
        assert!(
            seccomp_opts(Some(&p(ProfileType::RuntimeDefault)), "", None, f)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            seccomp_opts(
                Some(&p(ProfileType::Localhost)),
                "",
                Some("{ \"a\": 1 }"),
                f
            )
            .unwrap(),
            ["seccomp={\"a\":1}"]
        );
        assert_eq!(
            seccomp_localhost_path(Some(&p(ProfileType::Localhost)), ""),
            Some("/p.json")
        );
        assert_eq!(
            seccomp_localhost_path(None, "localhost/x.json"),
            Some("x.json")
        );
        assert!(seccomp_opts(None, "bogus", None, f).is_err());
    }
}
