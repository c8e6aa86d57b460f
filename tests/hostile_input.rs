//! Property tests over the pure request translation (no dockerd needed):
//! any CRI config, however hostile, never panics; what is refused is
//! refused with `INVALID_ARGUMENT`; what is accepted gives Docker a valid
//! name and paths that stay where kubelet put them. Image references and
//! container names likewise. Configs come from two sources: generated
//! field by field, and decoded from mutated wire bytes of valid configs
//! (the fields no strategy names, and enum values out of range).

#![allow(deprecated)] // kubelet still sends the deprecated profile fields

use std::collections::HashMap;
use std::path::{Component, Path};

use dockercri::docker::container_body::{self, ContainerInputs};
use dockercri::docker::oom_score::OomPolicy;
use dockercri::docker::reference::Reference;
use dockercri::docker::sandbox_body::{self, PodNetwork, SandboxInputs};
use dockercri::docker::{labels, naming};
use dockercri::proto::*;
use proptest::collection::{hash_map, vec};
use proptest::option;
use proptest::prelude::*;
use prost::Message;
use tonic::Code;

/// Cases per property; the whole file runs in a few seconds.
const CASES: u32 = 2000;

/// Docker's rule for container names (`restrictedNamePattern`).
fn docker_accepts_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn stays_put(path: &str) -> bool {
    let p = Path::new(path);
    p.is_absolute() && !p.components().any(|c| c == Component::ParentDir)
}

// ---- strategies ----
//
// Each field is what kubelet would send most of the time and hostile now
// and then, so that a generated config passes every check often enough
// for the properties about accepted configs to be exercised too.

/// The kubelet-like value, or (one time in `1 + odds`) the hostile one.
fn mostly<T: std::fmt::Debug + Clone + 'static>(
    odds: u32,
    valid: impl Strategy<Value = T> + 'static,
    hostile: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![odds => valid, 1 => hostile].boxed()
}

/// Any string at all: unicode, NUL, separators, right-to-left marks.
fn wild() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        Just(String::new()),
        "[a-zA-Z0-9_/ .:@=,\\\\\u{0}\u{e9}\u{202e}-]{0,24}",
        "(\\.\\./|/|_|[a-z]){1,12}",
    ]
    .boxed()
}

/// A part of a name (pod, namespace, uid, container).
fn name_part() -> BoxedStrategy<String> {
    mostly(30, "[a-z0-9][a-z0-9.-]{0,11}", wild())
}

/// Free text (hostname, DNS entries, commands, label values).
fn text() -> BoxedStrategy<String> {
    mostly(4, "[a-z0-9][a-z0-9.-]{0,11}", wild())
}

/// Paths: plain absolute ones mostly; relative ones, ones with `.`/`..`,
/// junk.
fn path() -> BoxedStrategy<String> {
    mostly(
        12,
        "/[a-z]{1,6}(/[a-z0-9_-]{1,8}){0,3}",
        prop_oneof![
            "(/|\\.\\./|\\./|[a-z]{1,4}/|/\\.\\.){0,5}[a-z.]{0,6}",
            wild()
        ],
    )
}

fn int() -> BoxedStrategy<i64> {
    mostly(
        6,
        0i64..100_000,
        prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(-1i64)],
    )
}

/// An enum field: its first values mostly, any `i32` sometimes.
fn enum_value() -> BoxedStrategy<i32> {
    mostly(20, 0i32..2, any::<i32>())
}

fn map() -> BoxedStrategy<HashMap<String, String>> {
    mostly(
        6,
        hash_map("[a-z][a-z0-9./-]{0,10}", text(), 0..4),
        hash_map(wild(), wild(), 0..4),
    )
}

/// Labels or annotations: small mostly, now and then far past the bound,
/// in one value or in many keys.
fn metadata_map() -> BoxedStrategy<HashMap<String, String>> {
    prop_oneof![
        40 => hash_map("[a-z][a-z0-9./-]{0,10}", text(), 0..4),
        4 => hash_map(wild(), wild(), 0..4),
        1 => (0usize..3).prop_map(|n| HashMap::from([(
            "big".to_string(),
            "x".repeat(labels::MAX_METADATA_BYTES + n - 1),
        )])),
        1 => Just((0..20_000).map(|i| (format!("key-{i:05}"), "v".repeat(60))).collect()),
    ]
    .boxed()
}

fn strings() -> BoxedStrategy<Vec<String>> {
    vec(text(), 0..4).boxed()
}

fn int64_value() -> BoxedStrategy<Option<Int64Value>> {
    option::of(int().prop_map(|value| Int64Value { value })).boxed()
}

fn profile() -> BoxedStrategy<Option<SecurityProfile>> {
    option::of(
        (enum_value(), mostly(8, Just(String::new()), path())).prop_map(
            |(profile_type, localhost_ref)| SecurityProfile {
                profile_type,
                localhost_ref,
            },
        ),
    )
    .boxed()
}

fn selinux() -> BoxedStrategy<Option<SeLinuxOption>> {
    option::of(
        (text(), text(), text(), text()).prop_map(|(user, role, r#type, level)| SeLinuxOption {
            user,
            role,
            r#type,
            level,
        }),
    )
    .boxed()
}

fn namespaces() -> BoxedStrategy<Option<NamespaceOption>> {
    option::of((enum_value(), enum_value(), enum_value(), text()).prop_map(
        |(network, pid, ipc, target_id)| NamespaceOption {
            network,
            pid,
            ipc,
            target_id,
            userns_options: None,
        },
    ))
    .boxed()
}

fn resources() -> BoxedStrategy<Option<LinuxContainerResources>> {
    option::of(
        (
            (int(), int(), int(), int(), -1000i64..=1000, int()),
            (
                mostly(4, Just(String::new()), text()),
                mostly(4, Just(String::new()), text()),
                mostly(8, Just(HashMap::new()), map()),
            ),
        )
            .prop_map(
                |(
                    (cpu_period, cpu_quota, cpu_shares, memory, oom, swap),
                    (cpus, mems, unified),
                )| {
                    LinuxContainerResources {
                        cpu_period,
                        cpu_quota,
                        cpu_shares,
                        memory_limit_in_bytes: memory,
                        oom_score_adj: oom,
                        cpuset_cpus: cpus,
                        cpuset_mems: mems,
                        unified,
                        memory_swap_limit_in_bytes: swap,
                        ..Default::default()
                    }
                },
            ),
    )
    .boxed()
}

fn pod_metadata() -> BoxedStrategy<Option<PodSandboxMetadata>> {
    option::weighted(
        0.97,
        (name_part(), name_part(), name_part(), any::<u32>()).prop_map(
            |(name, namespace, uid, attempt)| PodSandboxMetadata {
                name,
                namespace,
                uid,
                attempt,
            },
        ),
    )
    .boxed()
}

fn port_mappings() -> BoxedStrategy<Vec<PortMapping>> {
    let port = |low| mostly(10, low..65_536i32, any::<i32>());
    let ip = mostly(
        8,
        prop_oneof![Just(""), Just("127.0.0.1"), Just("::1")],
        Just("x"),
    )
    .prop_map(str::to_string);
    vec(
        (enum_value(), port(1), port(0), mostly(10, ip, wild())).prop_map(
            |(protocol, container_port, host_port, host_ip)| PortMapping {
                protocol,
                container_port,
                host_port,
                host_ip,
            },
        ),
        0..3,
    )
    .boxed()
}

fn pod_security() -> BoxedStrategy<Option<LinuxSandboxSecurityContext>> {
    option::of(
        (
            (namespaces(), selinux(), int64_value(), int64_value()),
            (any::<bool>(), any::<bool>(), vec(int(), 0..3), enum_value()),
            (
                profile(),
                profile(),
                mostly(10, Just(String::new()), path()),
            ),
        )
            .prop_map(
                |(
                    (namespace_options, selinux_options, run_as_user, run_as_group),
                    (readonly_rootfs, privileged, supplemental_groups, policy),
                    (seccomp, apparmor, seccomp_profile_path),
                )| LinuxSandboxSecurityContext {
                    namespace_options,
                    selinux_options,
                    run_as_user,
                    run_as_group,
                    readonly_rootfs,
                    supplemental_groups,
                    supplemental_groups_policy: policy,
                    privileged,
                    seccomp,
                    apparmor,
                    seccomp_profile_path,
                },
            ),
    )
    .boxed()
}

fn pod_config() -> BoxedStrategy<PodSandboxConfig> {
    (
        (pod_metadata(), text(), path(), port_mappings()),
        (strings(), strings(), strings()),
        (metadata_map(), metadata_map()),
        option::of((text(), pod_security(), map(), resources())),
    )
        .prop_map(
            |(
                (metadata, hostname, log_directory, port_mappings),
                (servers, searches, options),
                (labels, annotations),
                linux,
            )| PodSandboxConfig {
                metadata,
                hostname,
                log_directory,
                dns_config: Some(DnsConfig {
                    servers,
                    searches,
                    options,
                }),
                port_mappings,
                labels,
                annotations,
                linux: linux.map(|(cgroup_parent, security_context, sysctls, resources)| {
                    LinuxPodSandboxConfig {
                        cgroup_parent,
                        security_context,
                        sysctls,
                        resources,
                        ..Default::default()
                    }
                }),
                ..Default::default()
            },
        )
        .boxed()
}

fn mounts() -> BoxedStrategy<Vec<Mount>> {
    vec(
        (
            (path(), path(), any::<bool>(), any::<bool>()),
            (enum_value(), mostly(6, Just(false), Just(true))),
        )
            .prop_map(
                |((container_path, host_path, readonly, selinux_relabel), (propagation, rro))| {
                    Mount {
                        container_path,
                        host_path,
                        readonly,
                        selinux_relabel,
                        propagation,
                        recursive_read_only: rro,
                        ..Default::default()
                    }
                },
            ),
        0..3,
    )
    .boxed()
}

fn devices() -> BoxedStrategy<Vec<Device>> {
    vec(
        (path(), path(), mostly(10, "[rwm]{1,3}", wild())).prop_map(
            |(container_path, host_path, permissions)| Device {
                container_path,
                host_path,
                permissions,
            },
        ),
        0..2,
    )
    .boxed()
}

fn capabilities() -> BoxedStrategy<Vec<String>> {
    vec(
        mostly(
            6,
            prop_oneof![Just("NET_ADMIN"), Just("CAP_SYS_TIME"), Just("ALL")]
                .prop_map(String::from),
            wild(),
        ),
        0..3,
    )
    .boxed()
}

fn container_security() -> BoxedStrategy<Option<LinuxContainerSecurityContext>> {
    option::of(
        (
            (
                capabilities(),
                capabilities(),
                any::<bool>(),
                namespaces(),
                selinux(),
            ),
            (
                int64_value(),
                int64_value(),
                mostly(4, Just(String::new()), text()),
                any::<bool>(),
            ),
            (vec(int(), 0..3), enum_value(), any::<bool>()),
            (vec(path(), 0..3), vec(path(), 0..3), profile(), profile()),
            (
                mostly(8, Just(String::new()), text()),
                mostly(8, Just(String::new()), path()),
            ),
        )
            .prop_map(
                |(
                    (add, drop, privileged, namespace_options, selinux_options),
                    (run_as_user, run_as_group, run_as_username, readonly_rootfs),
                    (supplemental_groups, policy, no_new_privs),
                    (masked_paths, readonly_paths, seccomp, apparmor),
                    (apparmor_profile, seccomp_profile_path),
                )| LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        add_capabilities: add,
                        drop_capabilities: drop,
                        ..Default::default()
                    }),
                    privileged,
                    namespace_options,
                    selinux_options,
                    run_as_user,
                    run_as_group,
                    run_as_username,
                    readonly_rootfs,
                    supplemental_groups,
                    supplemental_groups_policy: policy,
                    no_new_privs,
                    masked_paths,
                    readonly_paths,
                    seccomp,
                    apparmor,
                    apparmor_profile,
                    seccomp_profile_path,
                },
            ),
    )
    .boxed()
}

fn container_config() -> BoxedStrategy<ContainerConfig> {
    let env = (
        mostly(10, "[A-Z_][A-Z0-9_]{0,8}", wild()),
        vec(any::<u8>(), 0..8),
    );
    let log_path = mostly(10, "[a-z]{1,6}/[0-9]\\.log", path());
    let image = mostly(20, "[a-z]{1,8}(:[a-z0-9.]{1,5})?", wild());
    (
        (
            option::weighted(0.97, (name_part(), any::<u32>())),
            option::weighted(0.97, image),
        ),
        (strings(), strings(), mostly(4, Just(String::new()), path())),
        vec(env, 0..3),
        (mounts(), devices()),
        (
            metadata_map(),
            metadata_map(),
            log_path,
            any::<bool>(),
            any::<bool>(),
        ),
        option::of((resources(), container_security())),
    )
        .prop_map(
            |(
                (metadata, image),
                (command, args, working_dir),
                envs,
                (mounts, devices),
                (labels, annotations, log_path, stdin, tty),
                linux,
            )| ContainerConfig {
                metadata: metadata.map(|(name, attempt)| ContainerMetadata { name, attempt }),
                image: image.map(|image| ImageSpec {
                    image,
                    ..Default::default()
                }),
                command,
                args,
                working_dir,
                envs: envs
                    .into_iter()
                    .map(|(key, value)| KeyValue { key, value })
                    .collect(),
                mounts,
                devices,
                labels,
                annotations,
                log_path,
                stdin,
                tty,
                linux: linux.map(|(resources, security_context)| LinuxContainerConfig {
                    resources,
                    security_context,
                }),
                ..Default::default()
            },
        )
        .boxed()
}

/// Wire bytes of a valid config with some bytes overwritten, some cut off
/// and some inserted: whatever prost still decodes is a hostile config.
fn mutated(valid: Vec<u8>) -> BoxedStrategy<Vec<u8>> {
    let len = valid.len();
    (
        vec((0..len, any::<u8>()), 1..8),
        vec((0..len, any::<u8>()), 0..3),
        0..=len,
    )
        .prop_map(move |(overwrite, insert, keep)| {
            let mut bytes = valid.clone();
            for (at, b) in overwrite {
                bytes[at] = b;
            }
            for (at, b) in insert {
                bytes.insert(at.min(bytes.len()), b);
            }
            bytes.truncate(keep.max(bytes.len() / 2));
            bytes
        })
        .boxed()
}

// ---- what is checked ----

fn sandbox_inputs(seccomp: Option<&str>) -> SandboxInputs<'_> {
    SandboxInputs {
        image: "registry.k8s.io/pause:3.10",
        network: PodNetwork::DockerBridge,
        runtime: None,
        seccomp_localhost: seccomp,
        oom_score_adj: -998,
        cgroup_driver: dockercri::proto::CgroupDriver::Cgroupfs,
    }
}

/// Translating `config` either refuses it with `INVALID_ARGUMENT` or gives
/// Docker a body it can take: a valid name, and a log directory that is
/// absolute and has no `..`.
fn check_sandbox(config: &PodSandboxConfig, seccomp: Option<&str>) -> Result<(), TestCaseError> {
    match sandbox_body::create_body(config, &sandbox_inputs(seccomp)) {
        Err(e) => prop_assert_eq!(e.code(), Code::InvalidArgument, "{}", e),
        Ok(body) => {
            let name = sandbox_body::name(config).expect("an accepted config has a name");
            prop_assert!(docker_accepts_name(&name), "name {:?}", name);
            let meta = config.metadata.clone().unwrap_or_default();
            prop_assert_eq!(naming::parse_sandbox_name(&name), Some(meta));
            prop_assert!(
                config.log_directory.is_empty() || stays_put(&config.log_directory),
                "log_directory {:?}",
                config.log_directory
            );
            let stored: usize = body
                .labels
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum();
            prop_assert!(stored <= 2 * labels::MAX_METADATA_BYTES);
        }
    }
    Ok(())
}

/// Same for a container: a valid name from its and its pod's metadata,
/// a log path inside the pod's log directory, mount targets that stay put.
fn check_container(
    config: &ContainerConfig,
    sandbox: &PodSandboxConfig,
    rro: bool,
) -> Result<(), TestCaseError> {
    let inputs = ContainerInputs {
        sandbox_id: "0123456789abcdef",
        sandbox,
        seccomp_localhost: Some("{}"),
        oom: OomPolicy { floor: Some(-500) },
        recursive_read_only: rro,
        selinux: false,
        cgroup_v2: false,
        cgroup_driver: dockercri::proto::CgroupDriver::Cgroupfs,
        docker_log: None,
    };
    match container_body::create_body(config, &inputs) {
        Err(e) => prop_assert_eq!(e.code(), Code::InvalidArgument, "{}", e),
        Ok(body) => {
            let meta = config.metadata.clone().unwrap_or_default();
            if let Some(pod) = &sandbox.metadata {
                let name = naming::container_name(&meta, pod);
                prop_assert!(docker_accepts_name(&name), "name {:?}", name);
            }
            let docker_labels = body.labels.clone().unwrap_or_default();
            if let Some(log) = docker_labels.get(labels::LOG_PATH) {
                prop_assert!(stays_put(log), "log path {:?}", log);
                prop_assert!(
                    Path::new(log).starts_with(&sandbox.log_directory),
                    "log path {:?} outside {:?}",
                    log,
                    sandbox.log_directory
                );
            }
            let host = body.host_config.unwrap_or_default();
            for bind in host.binds.unwrap_or_default() {
                let target = bind.split(':').nth(1).unwrap_or_default();
                prop_assert!(stays_put(target), "bind {:?}", bind);
            }
            for m in host.mounts.unwrap_or_default() {
                let target = m.target.unwrap_or_default();
                prop_assert!(stays_put(&target), "mount target {:?}", target);
            }
            if let Some(adj) = host.oom_score_adj {
                prop_assert!(adj >= -500, "oom_score_adj {} below the floor", adj);
            }
            let known =
                |c: &String| c == "ALL" || format!("CAP_{c}").parse::<caps::Capability>().is_ok();
            for cap in host.cap_add.iter().chain(host.cap_drop.iter()).flatten() {
                prop_assert!(known(cap), "capability {:?} went to Docker", cap);
            }
        }
    }
    Ok(())
}

/// A pod config kubelet would send, for containers to live in.
fn valid_pod() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web-0".into(),
            namespace: "default".into(),
            uid: "6f1c1e0a-1b2c-4d5e-8f90-123456789abc".into(),
            attempt: 1,
        }),
        hostname: "web-0".into(),
        log_directory: "/var/log/pods/default_web-0_6f1c".into(),
        dns_config: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        port_mappings: vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 80,
            host_port: 8080,
            host_ip: "127.0.0.1".into(),
        }],
        labels: HashMap::from([("app".into(), "web".into())]),
        annotations: HashMap::from([("kubernetes.io/config.source".into(), "api".into())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/besteffort/pod6f1c".into(),
            sysctls: HashMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption::default()),
                run_as_user: Some(Int64Value { value: 65535 }),
                seccomp: Some(SecurityProfile::default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn valid_container() -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 2,
        }),
        image: Some(ImageSpec {
            image: "busybox:latest".into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into()],
        args: vec!["sleep 1".into()],
        working_dir: "/srv".into(),
        envs: vec![KeyValue {
            key: "A".into(),
            value: b"1".to_vec(),
        }],
        mounts: vec![Mount {
            container_path: "/data".into(),
            host_path: "/tmp".into(),
            readonly: true,
            ..Default::default()
        }],
        devices: vec![Device {
            container_path: "/dev/fuse".into(),
            host_path: "/dev/fuse".into(),
            permissions: "rwm".into(),
        }],
        labels: HashMap::from([("app".into(), "web".into())]),
        log_path: "app/2.log".into(),
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: 1000,
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    add_capabilities: vec!["NET_ADMIN".into()],
                    drop_capabilities: vec!["ALL".into()],
                    ..Default::default()
                }),
                run_as_user: Some(Int64Value { value: 1000 }),
                masked_paths: vec!["/proc/kcore".into()],
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

#[test]
fn the_seed_configs_are_accepted() {
    // The mutation properties start from these: they must be valid.
    let pod = valid_pod();
    sandbox_body::create_body(&pod, &sandbox_inputs(None)).unwrap();
    let inputs = ContainerInputs {
        sandbox_id: "0123456789abcdef",
        sandbox: &pod,
        seccomp_localhost: None,
        oom: OomPolicy { floor: None },
        recursive_read_only: false,
        selinux: false,
        cgroup_v2: false,
        cgroup_driver: dockercri::proto::CgroupDriver::Cgroupfs,
        docker_log: None,
    };
    container_body::create_body(&valid_container(), &inputs).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        // Integration tests have no lib.rs to store regressions beside;
        // a failure prints its seed and the minimal case instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_sandbox_config_is_translated_or_refused_as_invalid(
        config in pod_config(),
        seccomp in option::of(text()),
    ) {
        check_sandbox(&config, seccomp.as_deref())?;
    }

    #[test]
    fn any_container_config_is_translated_or_refused_as_invalid(
        config in container_config(),
        sandbox in prop_oneof![Just(valid_pod()), pod_config()],
        rro in any::<bool>(),
    ) {
        check_container(&config, &sandbox, rro)?;
    }

    #[test]
    fn mutated_sandbox_wire_bytes_never_panic(bytes in mutated(valid_pod().encode_to_vec())) {
        if let Ok(config) = PodSandboxConfig::decode(bytes.as_slice()) {
            check_sandbox(&config, None)?;
        }
    }

    #[test]
    fn mutated_container_wire_bytes_never_panic(
        bytes in mutated(valid_container().encode_to_vec()),
        pod in mutated(valid_pod().encode_to_vec()),
    ) {
        let sandbox = PodSandboxConfig::decode(pod.as_slice()).unwrap_or_else(|_| valid_pod());
        if let Ok(config) = ContainerConfig::decode(bytes.as_slice()) {
            check_container(&config, &sandbox, false)?;
        }
    }

    #[test]
    fn valid_sandbox_names_round_trip(
        name in "[a-z0-9][a-z0-9.-]{0,62}",
        namespace in "[a-z0-9][a-z0-9-]{0,62}",
        uid in "[a-f0-9-]{1,36}",
        attempt in any::<u32>(),
        container in "[a-z0-9][a-z0-9-]{0,62}",
    ) {
        let pod = PodSandboxMetadata { name, namespace, uid, attempt };
        let sandbox = naming::sandbox_name(&pod);
        prop_assert!(docker_accepts_name(&sandbox));
        prop_assert_eq!(naming::parse_sandbox_name(&sandbox), Some(pod.clone()));
        let c = ContainerMetadata { name: container, attempt };
        // A container name holds no pod attempt.
        let parsed = naming::parse_container_name(&naming::container_name(&c, &pod));
        let pod = PodSandboxMetadata { attempt: 0, ..pod };
        prop_assert_eq!(parsed, Some((c, pod)));
    }

    #[test]
    fn foreign_names_never_panic(name in prop_oneof![any::<String>(), "/?k8s(_[a-zA-Z0-9.-]{0,5}){0,8}"]) {
        let _ = naming::parse_sandbox_name(&name);
        let _ = naming::parse_container_name(&name);
    }

    #[test]
    fn any_image_reference_parses_or_is_refused(
        input in prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9./:@_-]{0,48}",
            "([a-z0-9.-]{1,10}(:[0-9]{1,5})?/)?[a-z0-9._/-]{1,20}(:[A-Za-z0-9._-]{1,10})?(@sha256:[a-f0-9]{64})?",
        ],
    ) {
        if let Ok(r) = Reference::parse(&input) {
            // Normalising is stable: the canonical form parses to itself.
            let canonical = r.canonical();
            let again = Reference::parse(&canonical);
            prop_assert!(again.is_ok(), "{:?} -> {:?}: {:?}", input, canonical, again);
            prop_assert_eq!(again.unwrap().canonical(), canonical);
        }
    }
}
