//! CRI `ContainerConfig` (+ its sandbox's config) → Docker create body.
//! Pure: validation and translation only; the caller supplies what needs
//! I/O (the sandbox id, a localhost seccomp profile's text, the OOM clamp).

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HostConfig, HostConfigLogConfig, Mount as DockerMount,
    MountBindOptions, MountBindOptionsPropagationEnum, MountType,
};

use crate::config::DockerLogLimit;

use crate::docker::oom_score::OomPolicy;
use crate::docker::sandbox_body::{
    apparmor_opts, check_absolute_path, check_name_part, seccomp_opts, selinux_opts,
};
use crate::docker::{capabilities, cgroup_parent, labels};
use crate::error::{Error, Result};
use crate::proto::{
    CgroupDriver, ContainerConfig, LinuxContainerResources, Mount, MountPropagation, NamespaceMode,
    NamespaceOption, PodSandboxConfig, Signal, SupplementalGroupsPolicy,
};

/// What the container body needs besides the CRI configs.
#[derive(Debug, Clone)]
pub struct ContainerInputs<'a> {
    pub sandbox_id: &'a str,
    pub sandbox: &'a PodSandboxConfig,
    /// The text of a `Localhost` seccomp profile, already read.
    pub seccomp_localhost: Option<&'a str>,
    pub oom: OomPolicy,
    /// Docker's API can make a bind mount recursively read-only (API 1.44+).
    pub recursive_read_only: bool,
    /// Docker labels containers for SELinux: a mount's relabel applies.
    pub selinux: bool,
    /// The node runs cgroup v2 (unified): `unified` keys can be written.
    pub cgroup_v2: bool,
    /// Docker's cgroup driver: the form the cgroup parent must take.
    pub cgroup_driver: CgroupDriver,
    /// The bound on Docker's own log of the container (`None`: Docker's
    /// daemon.json settings).
    pub docker_log: Option<&'a DockerLogLimit>,
}

/// The kubelet log path: `<sandbox log_directory>/<log_path>`, or `None`
/// when kubelet gave none. A `log_path` that escapes the directory is refused.
pub fn log_path(config: &ContainerConfig, sandbox: &PodSandboxConfig) -> Result<Option<String>> {
    if config.log_path.is_empty() {
        return Ok(None);
    }
    if std::path::Path::new(&config.log_path).is_absolute() {
        return Err(Error::invalid(
            "config.log_path",
            "must be relative to the sandbox's log_directory",
        ));
    }
    if sandbox.log_directory.is_empty() {
        return Err(Error::invalid(
            "sandbox_config.log_directory",
            "must be set when the container has a log_path",
        ));
    }
    let joined = std::path::Path::new(&sandbox.log_directory).join(&config.log_path);
    let joined = joined.display().to_string();
    check_absolute_path("config.log_path", &joined)?;
    Ok(Some(joined))
}

/// Docker's namespace mode string for one CRI namespace option.
fn namespace_mode(
    field: &'static str,
    mode: i32,
    sandbox_id: &str,
    target_id: &str,
    private: Option<&'static str>,
) -> Result<Option<String>> {
    match NamespaceMode::try_from(mode) {
        Ok(NamespaceMode::Pod) => Ok(Some(format!("container:{sandbox_id}"))),
        Ok(NamespaceMode::Node) => Ok(Some("host".into())),
        Ok(NamespaceMode::Container) => match private {
            Some(p) => Ok(Some(p.to_string()).filter(|p| !p.is_empty())),
            None => Err(Error::invalid(field, "CONTAINER is not valid here")),
        },
        Ok(NamespaceMode::Target) if !target_id.is_empty() => {
            Ok(Some(format!("container:{target_id}")))
        }
        Ok(NamespaceMode::Target) => Err(Error::invalid(field, "TARGET needs target_id")),
        Err(_) => Err(Error::invalid(field, format!("unknown mode {mode}"))),
    }
}

/// Docker's network, PID and IPC modes for the container.
pub fn namespaces(
    opts: Option<&NamespaceOption>,
    sandbox_id: &str,
) -> Result<(Option<String>, Option<String>, Option<String>)> {
    let default = NamespaceOption::default();
    let o = opts.unwrap_or(&default);
    let f = "config.linux.security_context.namespace_options";
    Ok((
        namespace_mode(f, o.network, sandbox_id, &o.target_id, None)?,
        // CONTAINER: the container's own PID namespace (Docker's default).
        namespace_mode(f, o.pid, sandbox_id, &o.target_id, Some(""))?,
        namespace_mode(f, o.ipc, sandbox_id, &o.target_id, None)?,
    ))
}

/// One CRI mount as a Docker bind string (`src:dst[:opts]`), or, when its
/// read-only-ness must be said exactly (API 1.44+: `recursive_read_only`),
/// as a `Mounts` entry. `selinux`: Docker labels for SELinux, so a
/// relabel (`:Z`) does something.
pub fn mount(m: &Mount, recursive_read_only: bool, selinux: bool) -> Result<MountSpec> {
    check_absolute_path("config.mounts.container_path", &m.container_path)?;
    if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
        return Err(Error::invalid(
            "config.mounts.image",
            "image volumes are not supported by Docker Engine",
        ));
    }
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(Error::invalid(
            "config.mounts.uid_mappings",
            "idmapped mounts are not supported by Docker Engine",
        ));
    }
    if m.host_path.is_empty() {
        return Err(Error::invalid(
            "config.mounts.host_path",
            "must not be empty",
        ));
    }
    if m.host_path.contains(':') || m.container_path.contains(':') {
        return Err(Error::invalid(
            "config.mounts",
            format!(
                "{:?} holds a ':', which Docker bind mounts cannot express",
                m.host_path
            ),
        ));
    }
    let propagation = match MountPropagation::try_from(m.propagation) {
        Ok(MountPropagation::PropagationPrivate) => None,
        Ok(MountPropagation::PropagationHostToContainer) => Some("rslave"),
        Ok(MountPropagation::PropagationBidirectional) => Some("rshared"),
        Err(_) => {
            return Err(Error::invalid(
                "config.mounts.propagation",
                format!("unknown propagation {}", m.propagation),
            ));
        }
    };
    if m.recursive_read_only {
        if !m.readonly {
            return Err(Error::invalid(
                "config.mounts.recursive_read_only",
                "needs readonly to be set too",
            ));
        }
        if propagation.is_some() {
            return Err(Error::invalid(
                "config.mounts.recursive_read_only",
                "needs private propagation",
            ));
        }
        if !recursive_read_only {
            return Err(Error::invalid(
                "config.mounts.recursive_read_only",
                "this Docker Engine cannot make mounts recursively read-only (needs API 1.44)",
            ));
        }
        return Ok(read_only_bind(
            m,
            MountBindOptions {
                read_only_force_recursive: Some(true),
                ..Default::default()
            },
        ));
    }
    // From API 1.44 Docker makes a plain `ro` bind recursively read-only
    // where the kernel can; the CRI's `readonly` alone is not recursive
    // (what runc does for containerd). An SELinux relabel has no `Mounts`
    // form: where Docker labels for SELinux, such a bind stays a bind
    // string; elsewhere the relabel does nothing and is left out (critest
    // and kubelet ask for it on every host).
    if m.readonly && recursive_read_only && !(m.selinux_relabel && selinux) {
        return Ok(read_only_bind(
            m,
            MountBindOptions {
                read_only_non_recursive: Some(true),
                propagation: propagation.map(|p| match p {
                    "rshared" => MountBindOptionsPropagationEnum::RSHARED,
                    _ => MountBindOptionsPropagationEnum::RSLAVE,
                }),
                // A bind string makes a missing source directory; so does this.
                create_mountpoint: Some(true),
                ..Default::default()
            },
        ));
    }
    let mut opts = vec![];
    if m.readonly {
        opts.push("ro");
    }
    if let Some(p) = propagation {
        opts.push(p);
    }
    if m.selinux_relabel {
        opts.push("Z");
    }
    let mut bind = format!("{}:{}", m.host_path, m.container_path);
    if !opts.is_empty() {
        bind.push(':');
        bind.push_str(&opts.join(","));
    }
    Ok(MountSpec::Bind(bind))
}

/// A read-only bind mount of `m` in Docker's `Mounts` form, with `options`
/// saying how read-only.
fn read_only_bind(m: &Mount, options: MountBindOptions) -> MountSpec {
    MountSpec::Mount(Box::new(DockerMount {
        target: Some(m.container_path.clone()),
        source: Some(m.host_path.clone()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        bind_options: Some(options),
        ..Default::default()
    }))
}

/// A mount in whichever of Docker's two forms it needs.
#[derive(Debug, Clone, PartialEq)]
pub enum MountSpec {
    Bind(String),
    Mount(Box<DockerMount>),
}

/// cgroup v2 files (`unified` keys) Docker has no field for, with the
/// values to write into them, in key order.
pub type CgroupFiles = Vec<(String, String)>;

/// A `unified` key dockercri may write: a controller's interface file
/// (`memory.oom.group`, `memory.high`, ...), never a path or one of the
/// cgroup core files (`cgroup.procs`, `cgroup.subtree_control`, ...).
fn is_controller_file(key: &str) -> bool {
    let Some((controller, file)) = key.split_once('.') else {
        return false;
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    };
    controller != "cgroup" && word(controller) && word(file) && !file.starts_with('.')
}

/// Resources that Docker takes at create and update time. Returns the
/// `unified` keys Docker cannot take, for dockercri to write into the
/// container's cgroup itself (kubelet on cgroup v2 sends
/// `memory.oom.group` for every container).
pub fn resources(
    r: &LinuxContainerResources,
    oom: OomPolicy,
    host: &mut HostConfig,
) -> Result<CgroupFiles> {
    let positive = |v: i64| (v > 0).then_some(v);
    host.cpu_period = positive(r.cpu_period);
    host.cpu_quota = positive(r.cpu_quota);
    host.cpu_shares = positive(r.cpu_shares);
    host.memory = positive(r.memory_limit_in_bytes);
    host.memory_swap = match r.memory_swap_limit_in_bytes {
        v if v > 0 => Some(v),
        // -1 is "unlimited swap" in Docker; 0 is "not set".
        -1 => Some(-1),
        _ => None,
    };
    host.cpuset_cpus = (!r.cpuset_cpus.is_empty()).then(|| r.cpuset_cpus.clone());
    host.cpuset_mems = (!r.cpuset_mems.is_empty()).then(|| r.cpuset_mems.clone());
    if let Some(h) = r.hugepage_limits.iter().find(|h| h.limit > 0) {
        return Err(Error::invalid(
            "config.linux.resources.hugepage_limits",
            format!("Docker Engine cannot limit {} huge pages", h.page_size),
        ));
    }
    let mut files = CgroupFiles::new();
    for (key, value) in &r.unified {
        match (key.as_str(), host.memory) {
            // kubelet's "no swap" on cgroup v2; Docker says it as swap = memory.
            ("memory.swap.max", Some(memory)) => {
                host.memory_swap = Some(match value.as_str() {
                    "max" => -1,
                    v => memory.saturating_add(v.parse::<i64>().map_err(|_| {
                        Error::invalid(
                            "config.linux.resources.unified",
                            format!("memory.swap.max={v:?}"),
                        )
                    })?),
                });
            }
            ("memory.swap.max", None) => {}
            (key, _) if is_controller_file(key) && !value.contains(['\n', '\0']) => {
                files.push((key.to_string(), value.clone()));
            }
            _ => {
                return Err(Error::invalid(
                    "config.linux.resources.unified",
                    format!("{key:?}={value:?} is not a cgroup v2 controller file and value"),
                ));
            }
        }
    }
    files.sort();
    if r.oom_score_adj != 0 {
        if !(-1000..=1000).contains(&r.oom_score_adj) {
            return Err(Error::invalid(
                "config.linux.resources.oom_score_adj",
                format!("{} is outside -1000..1000", r.oom_score_adj),
            ));
        }
        host.oom_score_adj = Some(oom.clamp(r.oom_score_adj));
    }
    Ok(files)
}

/// The container's create body.
pub fn create_body(
    config: &ContainerConfig,
    inputs: &ContainerInputs,
) -> Result<ContainerCreateBody> {
    let meta = config
        .metadata
        .as_ref()
        .ok_or_else(|| Error::invalid("config.metadata", "missing"))?;
    check_name_part("config.metadata.name", &meta.name)?;
    // The Docker name also holds the pod's parts: kubelet's sandbox_config
    // is input as much as the container's own config.
    if let Some(pod) = &inputs.sandbox.metadata {
        for (field, value) in [
            ("sandbox_config.metadata.name", &pod.name),
            ("sandbox_config.metadata.namespace", &pod.namespace),
            ("sandbox_config.metadata.uid", &pod.uid),
        ] {
            check_name_part(field, value)?;
        }
    }
    let image = config
        .image
        .as_ref()
        .map(|i| i.image.trim())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Error::invalid("config.image", "missing"))?;
    let log_path = log_path(config, inputs.sandbox)?;
    let linux = config.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();

    let mut host = HostConfig::default();
    let (network, pid, ipc) = namespaces(sc.namespace_options.as_ref(), inputs.sandbox_id)?;
    host.network_mode = network;
    host.pid_mode = pid;
    host.ipc_mode = ipc;
    let cgroup_files = match &linux.resources {
        Some(r) => resources(r, inputs.oom, &mut host)?,
        None => CgroupFiles::new(),
    };
    if let (Some((key, _)), false) = (cgroup_files.first(), inputs.cgroup_v2) {
        return Err(Error::invalid(
            "config.linux.resources.unified",
            format!("{key:?} is a cgroup v2 file; this node runs cgroup v1"),
        ));
    }
    let parent = inputs
        .sandbox
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.as_str())
        .unwrap_or_default();
    host.log_config = inputs.docker_log.map(|limit| HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".to_string(), limit.max_size.clone()),
            ("max-file".to_string(), limit.max_files.to_string()),
        ])),
    });
    host.cgroup_parent = cgroup_parent::for_docker(
        parent,
        inputs.cgroup_driver,
        "sandbox_config.linux.cgroup_parent",
    )?;

    let mut binds = vec![];
    let mut mounts = vec![];
    for m in &config.mounts {
        match mount(m, inputs.recursive_read_only, inputs.selinux)? {
            MountSpec::Bind(b) => binds.push(b),
            MountSpec::Mount(m) => mounts.push(*m),
        }
    }
    host.binds = (!binds.is_empty()).then_some(binds);
    host.mounts = (!mounts.is_empty()).then_some(mounts);
    let mut devices = vec![];
    for d in &config.devices {
        check_absolute_path("config.devices.host_path", &d.host_path)?;
        check_absolute_path("config.devices.container_path", &d.container_path)?;
        if !d.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(Error::invalid(
                "config.devices.permissions",
                format!("{:?} is not a combination of r, w and m", d.permissions),
            ));
        }
        devices.push(DeviceMapping {
            path_on_host: Some(d.host_path.clone()),
            path_in_container: Some(d.container_path.clone()),
            cgroup_permissions: Some(if d.permissions.is_empty() {
                "rwm".into()
            } else {
                d.permissions.clone()
            }),
        });
    }
    host.devices = (!devices.is_empty()).then_some(devices);
    if !config.cdi_devices.is_empty() {
        return Err(Error::invalid(
            "config.CDI_devices",
            "CDI devices are not supported by Docker Engine 20.10",
        ));
    }

    // Security context.
    host.privileged = sc.privileged.then_some(true);
    host.readonly_rootfs = sc.readonly_rootfs.then_some(true);
    if let Some(caps) = &sc.capabilities {
        if !caps.add_ambient_capabilities.is_empty() {
            return Err(Error::invalid(
                "config.linux.security_context.capabilities.add_ambient_capabilities",
                "ambient capabilities are not supported by Docker Engine",
            ));
        }
        host.cap_add = non_empty(capabilities::to_docker(
            "config.linux.security_context.capabilities.add_capabilities",
            &caps.add_capabilities,
        )?);
        host.cap_drop = non_empty(capabilities::to_docker(
            "config.linux.security_context.capabilities.drop_capabilities",
            &caps.drop_capabilities,
        )?);
    }
    if sc.supplemental_groups_policy == SupplementalGroupsPolicy::Strict as i32 {
        return Err(Error::invalid(
            "config.linux.security_context.supplemental_groups_policy",
            "Strict is not supported: Docker Engine always merges the groups of the image's /etc/group",
        ));
    }
    host.group_add = (!sc.supplemental_groups.is_empty())
        .then(|| sc.supplemental_groups.iter().map(i64::to_string).collect());
    let user = match (
        &sc.run_as_user,
        sc.run_as_username.as_str(),
        &sc.run_as_group,
    ) {
        (Some(u), _, g) => Some(with_group(u.value.to_string(), g.as_ref())),
        (None, name, g) if !name.is_empty() => Some(with_group(name.to_string(), g.as_ref())),
        (None, _, Some(_)) => {
            return Err(Error::invalid(
                "config.linux.security_context.run_as_group",
                "run_as_group needs run_as_user or run_as_username",
            ));
        }
        _ => None,
    };
    #[allow(deprecated)] // older kubelets still send the path fields
    let seccomp = seccomp_opts(
        sc.seccomp.as_ref(),
        &sc.seccomp_profile_path,
        inputs.seccomp_localhost,
        "config.linux.security_context.seccomp",
    )?;
    // A privileged container runs without seccomp, whatever profile it
    // names (as with containerd and CRI-O): Docker leaves seccomp off for
    // privileged containers unless a profile is named explicitly.
    let mut security_opt = if sc.privileged { vec![] } else { seccomp };
    #[allow(deprecated)]
    let apparmor = match (&sc.apparmor, sc.apparmor_profile.as_str()) {
        (Some(p), _) => apparmor_opts(Some(p), "config.linux.security_context.apparmor")?,
        (None, "" | "runtime/default") => vec![],
        (None, "unconfined") => vec!["apparmor=unconfined".into()],
        (None, p) => vec![format!(
            "apparmor={}",
            p.strip_prefix("localhost/").unwrap_or(p)
        )],
    };
    security_opt.extend(apparmor);
    security_opt.extend(selinux_opts(sc.selinux_options.as_ref()));
    if sc.no_new_privs {
        security_opt.push("no-new-privileges".into());
    }
    host.security_opt = (!security_opt.is_empty()).then_some(security_opt);
    host.masked_paths = (!sc.masked_paths.is_empty()).then(|| sc.masked_paths.clone());
    host.readonly_paths = (!sc.readonly_paths.is_empty()).then(|| sc.readonly_paths.clone());

    let mut internal = vec![
        (labels::TYPE, labels::TYPE_CONTAINER),
        (labels::SANDBOX_ID, inputs.sandbox_id),
    ];
    if let Some(path) = &log_path {
        internal.push((labels::LOG_PATH, path.as_str()));
    }
    let unified = (!cgroup_files.is_empty()).then(|| {
        let map: std::collections::BTreeMap<_, _> = cgroup_files.iter().cloned().collect();
        serde_json::to_string(&map).unwrap_or_default()
    });
    if let Some(unified) = &unified {
        internal.push((labels::CGROUP_UNIFIED, unified.as_str()));
    }
    labels::check_size(&config.labels, &config.annotations)?;
    let docker_labels = labels::to_docker(&config.labels, &config.annotations, &internal);
    let mut env = vec![];
    for kv in &config.envs {
        if kv.key.is_empty() || kv.key.contains('=') {
            return Err(Error::invalid(
                "config.envs",
                format!("bad variable name {:?}", kv.key),
            ));
        }
        let value = String::from_utf8(kv.value.clone()).map_err(|_| {
            Error::invalid(
                "config.envs",
                format!("the value of {} is not UTF-8", kv.key),
            )
        })?;
        env.push(format!("{}={value}", kv.key));
    }
    let stop_signal = match Signal::try_from(config.stop_signal) {
        Ok(Signal::RuntimeDefault) => None,
        Ok(s) => Some(s.as_str_name().to_string()),
        Err(_) => {
            return Err(Error::invalid(
                "config.stop_signal",
                format!("unknown signal {}", config.stop_signal),
            ));
        }
    };
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    Ok(ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: non_empty(&config.command),
        cmd: non_empty(&config.args),
        working_dir: (!config.working_dir.is_empty()).then(|| config.working_dir.clone()),
        env: (!env.is_empty()).then_some(env),
        labels: Some(docker_labels),
        user,
        tty: Some(config.tty),
        open_stdin: Some(config.stdin),
        stdin_once: Some(config.stdin_once),
        attach_stdin: Some(config.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(!config.tty),
        stop_signal,
        host_config: Some(host),
        ..Default::default()
    })
}

fn with_group(user: String, group: Option<&crate::proto::Int64Value>) -> String {
    match group {
        Some(g) => format!("{user}:{}", g.value),
        None => user,
    }
}

fn non_empty(list: Vec<String>) -> Option<Vec<String>> {
    (!list.is_empty()).then_some(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        Capability, ContainerMetadata, Device, ImageSpec, Int64Value, KeyValue,
        LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    };

    fn sandbox() -> PodSandboxConfig {
        PodSandboxConfig {
            log_directory: "/var/log/pods/ns_pod_uid".into(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/pod1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn config() -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "app".into(),
                attempt: 1,
            }),
            image: Some(ImageSpec {
                image: "busybox:latest".into(),
                ..Default::default()
            }),
            log_path: "app/1.log".into(),
            ..Default::default()
        }
    }

    fn secured(sc: LinuxContainerSecurityContext) -> ContainerConfig {
        ContainerConfig {
            linux: Some(LinuxContainerConfig {
                security_context: Some(sc),
                ..Default::default()
            }),
            ..config()
        }
    }

    fn body(c: &ContainerConfig) -> Result<ContainerCreateBody> {
        let s = sandbox();
        create_body(
            c,
            &ContainerInputs {
                sandbox_id: "sb1",
                sandbox: &s,
                seccomp_localhost: None,
                oom: OomPolicy { floor: Some(0) },
                recursive_read_only: false,
                selinux: false,
                cgroup_v2: false,
                cgroup_driver: CgroupDriver::Cgroupfs,
                docker_log: None,
            },
        )
    }

    #[test]
    fn the_basics_translate() {
        let mut c = config();
        c.command = vec!["/bin/sh".into(), "-c".into()];
        c.args = vec!["echo hi".into()];
        c.working_dir = "/work".into();
        c.envs = vec![KeyValue {
            key: "A".into(),
            value: b"1=2".to_vec(),
        }];
        c.labels.insert("l".into(), "v".into());
        c.annotations.insert("a".into(), "w".into());
        c.stop_signal = Signal::Sigint as i32;
        let b = body(&c).unwrap();
        let h = b.host_config.as_ref().unwrap();
        assert_eq!(b.image.as_deref(), Some("busybox:latest"));
        assert_eq!(b.entrypoint.as_deref().unwrap(), ["/bin/sh", "-c"]);
        assert_eq!(b.cmd.as_deref().unwrap(), ["echo hi"]);
        assert_eq!(b.working_dir.as_deref(), Some("/work"));
        assert_eq!(b.env.as_deref().unwrap(), ["A=1=2"]);
        assert_eq!(b.stop_signal.as_deref(), Some("SIGINT"));
        let l = b.labels.as_ref().unwrap();
        assert_eq!(l["io.kubernetes.docker.type"], "container");
        assert_eq!(l["io.kubernetes.sandbox.id"], "sb1");
        assert_eq!(
            l["io.kubernetes.container.logpath"],
            "/var/log/pods/ns_pod_uid/app/1.log"
        );
        assert_eq!(l["l"], "v");
        assert_eq!(l["annotation.a"], "w");
        assert_eq!(h.network_mode.as_deref(), Some("container:sb1"));
        assert_eq!(h.ipc_mode.as_deref(), Some("container:sb1"));
        assert_eq!(h.pid_mode.as_deref(), Some("container:sb1"));
        assert_eq!(h.cgroup_parent.as_deref(), Some("/kubepods/pod1"));
        assert_eq!(h.security_opt.as_deref().unwrap(), ["seccomp=unconfined"]);
    }

    #[test]
    fn a_privileged_container_runs_without_seccomp_whatever_it_names() {
        let s = sandbox();
        let blocks_sethostname = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}"#;
        let body_with = |privileged: bool| {
            let mut c = config();
            c.linux = Some(crate::proto::LinuxContainerConfig {
                security_context: Some(crate::proto::LinuxContainerSecurityContext {
                    privileged,
                    seccomp: Some(crate::proto::SecurityProfile {
                        profile_type: crate::proto::security_profile::ProfileType::Localhost as i32,
                        localhost_ref: "/profiles/no-hostname.json".into(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            let inputs = ContainerInputs {
                sandbox_id: "sb1",
                sandbox: &s,
                seccomp_localhost: Some(blocks_sethostname),
                oom: OomPolicy { floor: Some(0) },
                recursive_read_only: false,
                selinux: false,
                cgroup_v2: false,
                cgroup_driver: CgroupDriver::Cgroupfs,
                docker_log: None,
            };
            create_body(&c, &inputs).unwrap().host_config.unwrap()
        };
        let privileged = body_with(true);
        assert_eq!(privileged.privileged, Some(true));
        assert_eq!(privileged.security_opt, None, "Docker's privileged default");
        let opts = body_with(false).security_opt.unwrap();
        assert!(opts[0].starts_with("seccomp={"), "{opts:?}");
    }

    #[test]
    fn namespace_modes_map_to_docker() {
        use NamespaceMode::*;
        let cases = [
            (
                (Pod, Pod, Pod),
                ("container:sb", Some("container:sb"), "container:sb"),
            ),
            ((Node, Node, Node), ("host", Some("host"), "host")),
            (
                (Pod, Container, Pod),
                ("container:sb", None, "container:sb"),
            ),
            (
                (Pod, Target, Pod),
                ("container:sb", Some("container:tgt"), "container:sb"),
            ),
        ];
        for ((n, p, i), (wn, wp, wi)) in cases {
            let opts = NamespaceOption {
                network: n as i32,
                pid: p as i32,
                ipc: i as i32,
                target_id: "tgt".into(),
                ..Default::default()
            };
            let (gn, gp, gi) = namespaces(Some(&opts), "sb").unwrap();
            assert_eq!(
                (gn.as_deref(), gp.as_deref(), gi.as_deref()),
                (Some(wn), wp, Some(wi))
            );
        }
        let bad = NamespaceOption {
            network: NamespaceMode::Container as i32,
            ..Default::default()
        };
        assert!(namespaces(Some(&bad), "sb").is_err());
    }

    #[test]
    fn mounts_become_bind_strings() {
        let m = |readonly, propagation: MountPropagation, selinux_relabel| Mount {
            host_path: "/h".into(),
            container_path: "/c".into(),
            readonly,
            propagation: propagation as i32,
            selinux_relabel,
            ..Default::default()
        };
        use MountPropagation::*;
        for (mount_, want) in [
            (m(false, PropagationPrivate, false), "/h:/c"),
            (m(true, PropagationPrivate, false), "/h:/c:ro"),
            (m(false, PropagationHostToContainer, false), "/h:/c:rslave"),
            (
                m(true, PropagationBidirectional, true),
                "/h:/c:ro,rshared,Z",
            ),
        ] {
            assert_eq!(
                mount(&mount_, false, true).unwrap(),
                MountSpec::Bind(want.into())
            );
        }
        let mut rro = m(true, PropagationPrivate, false);
        rro.recursive_read_only = true;
        let err = mount(&rro, false, true).unwrap_err();
        assert!(err.to_string().contains("recursive_read_only"), "{err}");
        let MountSpec::Mount(made) = mount(&rro, true, true).unwrap() else {
            panic!("rro is a Mounts entry");
        };
        let options = made.bind_options.unwrap();
        assert_eq!(options.read_only_force_recursive, Some(true));
        assert_eq!(options.read_only_non_recursive, None);
        // On API 1.44+ a plain readonly mount says it is not recursive.
        let MountSpec::Mount(plain) =
            mount(&m(true, PropagationHostToContainer, false), true, true).unwrap()
        else {
            panic!("readonly on API 1.44 is a Mounts entry");
        };
        assert_eq!(plain.read_only, Some(true));
        let options = plain.bind_options.unwrap();
        assert_eq!(options.read_only_non_recursive, Some(true));
        assert_eq!(options.create_mountpoint, Some(true));
        assert_eq!(
            options.propagation,
            Some(MountBindOptionsPropagationEnum::RSLAVE)
        );
        // Writable mounts stay bind strings; so do relabelled ones where
        // Docker labels for SELinux. Elsewhere the relabel does nothing
        // and the mount says it is not recursive.
        assert_eq!(
            mount(&m(false, PropagationPrivate, false), true, true).unwrap(),
            MountSpec::Bind("/h:/c".into())
        );
        assert_eq!(
            mount(&m(true, PropagationPrivate, true), true, true).unwrap(),
            MountSpec::Bind("/h:/c:ro,Z".into())
        );
        let MountSpec::Mount(unlabelled) =
            mount(&m(true, PropagationPrivate, true), true, false).unwrap()
        else {
            panic!("a relabel without SELinux is a Mounts entry on API 1.44");
        };
        let options = unlabelled.bind_options.unwrap();
        assert_eq!(options.read_only_non_recursive, Some(true));
        assert_eq!(
            mount(&m(true, PropagationPrivate, true), false, false).unwrap(),
            MountSpec::Bind("/h:/c:ro,Z".into())
        );
        rro.readonly = false;
        assert!(mount(&rro, true, true).is_err(), "rro needs readonly");
        let relative = Mount {
            container_path: "c".into(),
            host_path: "/h".into(),
            ..Default::default()
        };
        assert!(mount(&relative, false, true).is_err());
    }

    #[test]
    fn resources_translate_and_oom_is_clamped() {
        let r = LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 64 << 20,
            oom_score_adj: -997,
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        let mut h = HostConfig::default();
        resources(&r, OomPolicy { floor: Some(0) }, &mut h).unwrap();
        assert_eq!(
            (h.cpu_period, h.cpu_quota, h.cpu_shares),
            (Some(100_000), Some(50_000), Some(512))
        );
        assert_eq!((h.memory, h.memory_swap), (Some(64 << 20), Some(64 << 20)));
        assert_eq!(h.oom_score_adj, Some(0));
        assert_eq!(h.cpuset_cpus.as_deref(), Some("0"));
        resources(&r, OomPolicy { floor: None }, &mut h).unwrap();
        assert_eq!(h.oom_score_adj, Some(-997));
        let bad = LinuxContainerResources {
            oom_score_adj: 5000,
            ..Default::default()
        };
        assert!(resources(&bad, OomPolicy { floor: None }, &mut h).is_err());
    }

    #[test]
    fn unified_keys_docker_cannot_take_are_kept_for_the_cgroup() {
        let with_unified = |pairs: &[(&str, &str)]| ContainerConfig {
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    memory_limit_in_bytes: 64 << 20,
                    unified: pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..config()
        };
        let s = sandbox();
        let create = |c: &ContainerConfig, cgroup_v2: bool| {
            create_body(
                c,
                &ContainerInputs {
                    sandbox_id: "sb1",
                    sandbox: &s,
                    seccomp_localhost: None,
                    oom: OomPolicy { floor: None },
                    recursive_read_only: false,
                    selinux: false,
                    cgroup_v2,
                    cgroup_driver: CgroupDriver::Cgroupfs,
                    docker_log: None,
                },
            )
        };
        // kubelet 1.32+ on cgroup v2: memory.oom.group for every container.
        let kubelet = with_unified(&[
            ("memory.oom.group", "1"),
            ("memory.swap.max", "0"),
            ("memory.high", "50331648"),
        ]);
        let b = create(&kubelet, true).unwrap();
        let label = &b.labels.as_ref().unwrap()[labels::CGROUP_UNIFIED];
        assert_eq!(
            label,
            r#"{"memory.high":"50331648","memory.oom.group":"1"}"#
        );
        // memory.swap.max is Docker's own field.
        assert_eq!(b.host_config.as_ref().unwrap().memory_swap, Some(64 << 20));
        let plain = create(&with_unified(&[("memory.swap.max", "0")]), true).unwrap();
        assert!(!plain.labels.unwrap().contains_key(labels::CGROUP_UNIFIED));

        let v1 = create(&kubelet, false).unwrap_err().to_string();
        assert!(v1.contains("cgroup v1"), "{v1}");
        for bad in [
            ("cgroup.procs", "1"),
            ("cgroup.subtree_control", "+memory"),
            ("../../memory.max", "1"),
            ("memory/../x.max", "1"),
            ("nodot", "1"),
            (".hidden", "1"),
            ("memory.", "1"),
            ("Memory.High", "1"),
            ("memory.high", "1\nmore"),
        ] {
            let err = create(&with_unified(&[bad]), true).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains("unified"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn security_context_translates() {
        let b = body(&secured(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: vec!["CAP_NET_ADMIN".into(), "sys_time".into()],
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            run_as_user: Some(Int64Value { value: 1000 }),
            run_as_group: Some(Int64Value { value: 2000 }),
            supplemental_groups: vec![3000, 4000],
            readonly_rootfs: true,
            no_new_privs: true,
            masked_paths: vec!["/proc/kcore".into()],
            readonly_paths: vec!["/proc/sys".into()],
            ..Default::default()
        }))
        .unwrap();
        let h = b.host_config.unwrap();
        assert_eq!(b.user.as_deref(), Some("1000:2000"));
        assert_eq!(h.cap_add.unwrap(), ["NET_ADMIN", "SYS_TIME"]);
        assert_eq!(h.cap_drop.unwrap(), ["ALL"]);
        assert_eq!(h.group_add.unwrap(), ["3000", "4000"]);
        assert_eq!(h.readonly_rootfs, Some(true));
        assert!(
            h.security_opt
                .unwrap()
                .contains(&"no-new-privileges".to_string())
        );
        assert_eq!(h.masked_paths.unwrap(), ["/proc/kcore"]);
        assert_eq!(h.readonly_paths.unwrap(), ["/proc/sys"]);

        let b = body(&secured(LinuxContainerSecurityContext {
            run_as_username: "app".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(b.user.as_deref(), Some("app"));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases: Vec<(ContainerConfig, &str)> = vec![
            (
                ContainerConfig {
                    metadata: None,
                    ..config()
                },
                "config.metadata",
            ),
            (
                ContainerConfig {
                    image: None,
                    ..config()
                },
                "config.image",
            ),
            (
                secured(LinuxContainerSecurityContext {
                    run_as_group: Some(Int64Value { value: 1 }),
                    ..Default::default()
                }),
                "run_as_group",
            ),
            (
                secured(LinuxContainerSecurityContext {
                    supplemental_groups_policy: SupplementalGroupsPolicy::Strict as i32,
                    ..Default::default()
                }),
                "supplemental_groups_policy",
            ),
            (
                ContainerConfig {
                    log_path: "../../../etc/passwd".into(),
                    ..config()
                },
                "config.log_path",
            ),
            (
                ContainerConfig {
                    log_path: "/etc/passwd".into(),
                    ..config()
                },
                "config.log_path",
            ),
            (
                ContainerConfig {
                    devices: vec![Device {
                        host_path: "/dev/null".into(),
                        container_path: "/dev/x".into(),
                        permissions: "rwx".into(),
                    }],
                    ..config()
                },
                "permissions",
            ),
            (
                ContainerConfig {
                    envs: vec![KeyValue {
                        key: "A=B".into(),
                        value: vec![],
                    }],
                    ..config()
                },
                "config.envs",
            ),
        ];
        for (c, field) in cases {
            let err = body(&c).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
            assert!(err.to_string().contains(field), "want {field}: {err}");
        }
    }
}
