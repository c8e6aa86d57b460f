//! App containers through CRI: lifecycle, exit reasons, OOM, config seen
//! from inside through the kubelet log, mounts and propagation, security
//! context, stop timeouts, remove, list filters (ListContainers and
//! StreamContainers) and resource updates.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::pods::*;
use common::*;
use dockercri::proto::{
    Capability, ContainerFilter, ContainerState, ContainerStateValue, Int64Value, KeyValue,
    LinuxContainerResources, LinuxContainerSecurityContext, ListContainersRequest, Mount,
    MountPropagation, RemoveContainerRequest, SecurityProfile, StopContainerRequest,
    StreamContainersRequest, UpdateContainerResourcesRequest, security_profile::ProfileType,
};
use tonic::Code;

fn secure(c: &mut dockercri::proto::ContainerConfig, sc: LinuxContainerSecurityContext) {
    c.linux
        .get_or_insert_with(Default::default)
        .security_context = Some(sc);
}

fn limit(c: &mut dockercri::proto::ContainerConfig, r: LinuxContainerResources) {
    c.linux.get_or_insert_with(Default::default).resources = Some(r);
}

async fn stop(h: &Harness, id: &str, timeout: i64) {
    h.rt()
        .stop_container(StopContainerRequest {
            container_id: id.into(),
            timeout,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_states_and_timestamps() {
    let h = Harness::start().await;
    let pod = h.pod("life").await;
    let id = h
        .try_create(
            &pod,
            container_config(&h, "life", "trap '' TERM; while true; do sleep 0.2; done"),
        )
        .await
        .unwrap();
    let s = h.container_status(&id).await;
    assert_eq!(s.state(), ContainerState::ContainerCreated);
    assert!(s.created_at > 0);
    assert_eq!((s.started_at, s.finished_at), (0, 0));
    assert_eq!(s.image.as_ref().unwrap().image, BUSYBOX);
    assert!(s.image_ref.starts_with("sha256:"), "{}", s.image_ref);
    assert_eq!(s.metadata.as_ref().unwrap().name, "life");
    assert!(s.log_path.ends_with("/life/0.log"), "{}", s.log_path);

    h.rt()
        .start_container(dockercri::proto::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    let s = h.container_status(&id).await;
    assert_eq!(s.state(), ContainerState::ContainerRunning);
    assert!(s.started_at >= s.created_at);
    assert_eq!(s.reason, "");

    // The shell ignores SIGTERM: the stop waits for the timeout, then kills.
    let started = Instant::now();
    stop(&h, &id, 2).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let s = h.container_status(&id).await;
    assert_eq!(s.state(), ContainerState::ContainerExited);
    assert_eq!((s.exit_code, s.reason.as_str()), (137, "Error"));
    assert!(s.finished_at >= s.started_at);
    // Stopping again, or with 0 (kill now), is fine.
    stop(&h, &id, 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_reasons() {
    let h = Harness::start().await;
    let pod = h.pod("exits").await;
    for (script, code, reason) in [("exit 0", 0, "Completed"), ("exit 3", 3, "Error")] {
        let id = h
            .start_container(&pod, container_config(&h, &format!("exit{code}"), script))
            .await;
        let s = h.wait_exited(&id).await;
        assert_eq!((s.exit_code, s.reason.as_str()), (code, reason), "{script}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oom_kill_is_reported() {
    let h = Harness::start().await;
    let pod = h.pod("oom").await;
    let mut c = container_config(&h, "hog", "exec tail /dev/zero");
    limit(
        &mut c,
        LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            memory_swap_limit_in_bytes: 16 << 20,
            ..Default::default()
        },
    );
    let id = h.start_container(&pod, c).await;
    let s = h.wait_exited(&id).await;
    assert_eq!(s.exit_code, 137);
    // Docker's own state can miss the kill (seen with tests running side
    // by side): a status read between the exit and dockercri's handling of
    // Docker's `oom` event shows "Error"; the event corrects it.
    let mut reason = s.reason;
    for _ in 0..50 {
        if reason == "OOMKilled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        reason = h.container_status(&id).await.reason;
    }
    assert_eq!(reason, "OOMKilled");
}

#[tokio::test(flavor = "multi_thread")]
async fn env_workdir_command_and_args_reach_the_kubelet_log() {
    let h = Harness::start().await;
    let pod = h.pod("env").await;
    let (code, log) = h
        .run_script(&pod, "env", "echo foo=$FOO; pwd; echo arg=$0", |c| {
            c.envs = vec![KeyValue {
                key: "FOO".into(),
                value: b"bar baz".to_vec(),
            }];
            c.working_dir = "/tmp".into();
            c.args.push("zero".into());
        })
        .await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["foo=bar baz", "/tmp", "arg=zero"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_read_write_and_symlinked_mounts() {
    let h = Harness::start().await;
    let pod = h.pod("mounts").await;
    let data = h.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("in"), "from-host").unwrap();
    let link = h.dir.path().join("data-link");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let rw = h.dir.path().join("rw");
    std::fs::create_dir_all(&rw).unwrap();
    let mount = |host: &std::path::Path, ctr: &str, readonly| Mount {
        host_path: host.display().to_string(),
        container_path: ctr.into(),
        readonly,
        ..Default::default()
    };
    let (code, log) = h
        .run_script(
            &pod,
            "mounts",
            "cat /ro/in; echo; cat /via-link/in; echo; echo written > /rw/out && echo rw-ok; touch /ro/x 2>/dev/null || echo ro-refused",
            |c| {
                c.mounts = vec![
                    mount(&data, "/ro", true),
                    mount(&link, "/via-link", true),
                    mount(&rw, "/rw", false),
                ];
            },
        )
        .await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["from-host", "from-host", "rw-ok", "ro-refused"]
    );
    assert_eq!(
        std::fs::read_to_string(rw.join("out")).unwrap(),
        "written\n"
    );
    let id = h
        .start_container(&pod, {
            let mut c = container_config(&h, "mounts2", "sleep 60");
            c.mounts = vec![mount(&data, "/ro", true)];
            c
        })
        .await;
    let s = h.container_status(&id).await;
    let m = s.mounts.iter().find(|m| m.container_path == "/ro").unwrap();
    assert!(m.readonly);
    assert_eq!(m.host_path, data.display().to_string());
}

/// A tmpfs made shared, so that Docker accepts rslave/rshared binds of it
/// (the root mount of this machine is private).
struct SharedMount(std::path::PathBuf);

impl SharedMount {
    fn new(path: std::path::PathBuf) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("mount")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "mount {args:?}: {out:?}");
        };
        let p = path.to_str().unwrap();
        run(&["-t", "tmpfs", "tmpfs", p]);
        run(&["--make-shared", p]);
        SharedMount(path)
    }

    fn mount_tmpfs_at(&self, sub: &str) {
        let p = self.0.join(sub);
        std::fs::create_dir_all(&p).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        std::fs::write(p.join("f"), "propagated").unwrap();
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-R", "-l", self.0.to_str().unwrap()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_propagation_modes() {
    let h = Harness::start().await;
    let pod = h.pod("propagation").await;
    let shared = SharedMount::new(h.dir.path().join("shared"));
    for sub in ["private", "slave"] {
        std::fs::create_dir_all(shared.0.join(sub)).unwrap();
    }
    let watch = |sub: &str| {
        format!(
            "for i in $(seq 1 50); do [ -f /m/{sub}/f ] && {{ echo seen; exit 0; }}; sleep 0.1; done; echo unseen"
        )
    };
    let with_mount = |c: &mut dockercri::proto::ContainerConfig, p: MountPropagation| {
        c.mounts = vec![Mount {
            host_path: shared.0.display().to_string(),
            container_path: "/m".into(),
            propagation: p as i32,
            ..Default::default()
        }];
    };
    let mut private = container_config(&h, "private", &watch("private"));
    with_mount(&mut private, MountPropagation::PropagationPrivate);
    let mut slave = container_config(&h, "slave", &watch("slave"));
    with_mount(&mut slave, MountPropagation::PropagationHostToContainer);
    let private = h.start_container(&pod, private).await;
    let slave = h.start_container(&pod, slave).await;
    // New mounts on the host after the containers started.
    shared.mount_tmpfs_at("private");
    shared.mount_tmpfs_at("slave");
    let private = h.wait_exited(&private).await;
    let slave = h.wait_exited(&slave).await;
    assert_eq!(settled_log(&private.log_path).await.trim(), "unseen");
    assert_eq!(settled_log(&slave.log_path).await.trim(), "seen");

    // Bidirectional: a mount made inside shows up on the host.
    let (code, log) = h
        .run_script(
            &pod,
            "bidi",
            "mkdir -p /m/from-pod && mount -t tmpfs tmpfs /m/from-pod && echo hi > /m/from-pod/f && echo ok",
            |c| {
                with_mount(c, MountPropagation::PropagationBidirectional);
                secure(
                    c,
                    LinuxContainerSecurityContext {
                        capabilities: Some(Capability {
                            add_capabilities: vec!["SYS_ADMIN".into()],
                            ..Default::default()
                        }),
                        apparmor: Some(SecurityProfile {
                            profile_type: ProfileType::Unconfined as i32,
                            localhost_ref: String::new(),
                        }),
                        ..Default::default()
                    },
                );
            },
        )
        .await;
    assert_eq!((code, log.trim()), (0, "ok"));
    assert_eq!(
        std::fs::read_to_string(shared.0.join("from-pod/f")).unwrap(),
        "hi\n"
    );
}

/// True when this process (and so dockerd, started the same way) holds
/// every capability the kernel has.
fn host_has_every_capability() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    bnd == (1u64 << (last + 1)) - 1
}

fn cap_eff(log: &str) -> u64 {
    let hex = log
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff in {log}"))
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn capabilities_privileged_and_read_only_rootfs() {
    let h = Harness::start().await;
    let pod = h.pod("caps").await;
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_CHOWN: u64 = 1 << 0;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    let script = "grep CapEff /proc/self/status";
    let (_, default) = h.run_script(&pod, "caps-default", script, |_| {}).await;
    let default = cap_eff(&default);
    assert!(
        default & CAP_CHOWN != 0 && default & CAP_NET_ADMIN == 0,
        "{default:x}"
    );

    let (_, added) = h
        .run_script(&pod, "caps-add", script, |c| {
            secure(
                c,
                LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        add_capabilities: vec!["CAP_NET_ADMIN".into()],
                        drop_capabilities: vec!["CHOWN".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
        })
        .await;
    let added = cap_eff(&added);
    assert!(
        added & CAP_NET_ADMIN != 0 && added & CAP_CHOWN == 0,
        "{added:x}"
    );

    let (_, none) = h
        .run_script(&pod, "caps-none", script, |c| {
            secure(
                c,
                LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        drop_capabilities: vec!["ALL".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
        })
        .await;
    assert_eq!(cap_eff(&none), 0);

    // Privileged asks runc for every capability Docker knows. Some hosts
    // (like the sandboxed machines this is built on) withhold one from
    // dockerd's bounding set; runc then refuses, and that must surface as
    // a clear error rather than a hang or a half-made container.
    let mut privileged = container_config(&h, "privileged", script);
    secure(
        &mut privileged,
        LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        },
    );
    let id = h.try_create(&pod, privileged).await.unwrap();
    let started = h
        .rt()
        .start_container(dockercri::proto::StartContainerRequest {
            container_id: id.clone(),
        })
        .await;
    if host_has_every_capability() {
        started.unwrap();
        let s = h.wait_exited(&id).await;
        assert!(cap_eff(&settled_log(&s.log_path).await) & CAP_SYS_ADMIN != 0);
    } else {
        let err = started.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("caps"), "{err:?}");
        eprintln!("note: this host withholds capabilities; privileged start refused as expected");
    }

    let (code, log) = h
        .run_script(
            &pod,
            "rofs",
            "touch /newfile 2>/dev/null && echo wrote || echo refused",
            |c| {
                secure(
                    c,
                    LinuxContainerSecurityContext {
                        readonly_rootfs: true,
                        ..Default::default()
                    },
                )
            },
        )
        .await;
    assert_eq!((code, log.trim()), (0, "refused"));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_as_user_group_username_and_supplemental_groups() {
    let h = Harness::start().await;
    let pod = h.pod("users").await;
    let (_, log) = h
        .run_script(&pod, "ids", "id -u; id -g; id -G", |c| {
            secure(
                c,
                LinuxContainerSecurityContext {
                    run_as_user: Some(Int64Value { value: 1000 }),
                    run_as_group: Some(Int64Value { value: 3000 }),
                    supplemental_groups: vec![4000, 5000],
                    ..Default::default()
                },
            )
        })
        .await;
    let lines: Vec<_> = log.lines().collect();
    assert_eq!(lines[..2], ["1000", "3000"], "{log}");
    let groups: Vec<&str> = lines[2].split_whitespace().collect();
    assert!(
        groups.contains(&"4000") && groups.contains(&"5000"),
        "{log}"
    );

    let (_, log) = h
        .run_script(&pod, "named", "id -un; id -u", |c| {
            c.image.as_mut().unwrap().image = BUSYBOX_NAMED.into();
            secure(
                c,
                LinuxContainerSecurityContext {
                    run_as_username: "app".into(),
                    ..Default::default()
                },
            )
        })
        .await;
    assert_eq!(log.lines().collect::<Vec<_>>(), ["app", "1234"]);

    // The running process's ids are reported in the status.
    let mut c = container_config(&h, "user-status", "exec sleep 60");
    secure(
        &mut c,
        LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1000 }),
            run_as_group: Some(Int64Value { value: 3000 }),
            supplemental_groups: vec![4000],
            ..Default::default()
        },
    );
    let id = h.start_container(&pod, c).await;
    let user = h.container_status(&id).await.user.unwrap().linux.unwrap();
    assert_eq!((user.uid, user.gid), (1000, 3000));
    assert!(user.supplemental_groups.contains(&4000), "{user:?}");

    let mut bad = container_config(&h, "group-only", "true");
    secure(
        &mut bad,
        LinuxContainerSecurityContext {
            run_as_group: Some(Int64Value { value: 3000 }),
            ..Default::default()
        },
    );
    let err = h.try_create(&pod, bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("run_as_group"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn seccomp_runtime_default_blocks_and_unconfined_allows() {
    let h = Harness::start().await;
    let pod = h.pod("seccomp").await;
    let script = "unshare -U true 2>/dev/null && echo allowed || echo blocked";
    // AppArmor unconfined in both: Docker's docker-default profile denies
    // userns_create under AppArmor 4 (the Debian trixie guest of
    // scripts/guest), whatever the seccomp profile says.
    let profile = |t: ProfileType| {
        move |c: &mut dockercri::proto::ContainerConfig| {
            secure(
                c,
                LinuxContainerSecurityContext {
                    seccomp: Some(SecurityProfile {
                        profile_type: t as i32,
                        localhost_ref: String::new(),
                    }),
                    apparmor: Some(SecurityProfile {
                        profile_type: ProfileType::Unconfined as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                },
            )
        }
    };
    let (_, log) = h
        .run_script(
            &pod,
            "sc-default",
            script,
            profile(ProfileType::RuntimeDefault),
        )
        .await;
    assert_eq!(log.trim(), "blocked");
    let (_, log) = h
        .run_script(
            &pod,
            "sc-unconfined",
            script,
            profile(ProfileType::Unconfined),
        )
        .await;
    assert_eq!(log.trim(), "allowed");

    // A localhost profile file that refuses one syscall by name.
    let file = h.dir.path().join("deny-mkdir.json");
    std::fs::write(
        &file,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let (_, log) = h
        .run_script(
            &pod,
            "sc-local",
            "mkdir /tmp/x 2>/dev/null && echo made || echo denied",
            |c| {
                secure(
                    c,
                    LinuxContainerSecurityContext {
                        seccomp: Some(SecurityProfile {
                            profile_type: ProfileType::Localhost as i32,
                            localhost_ref: file.display().to_string(),
                        }),
                        ..Default::default()
                    },
                )
            },
        )
        .await;
    assert_eq!(log.trim(), "denied");
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_is_idempotent_and_takes_the_log_link() {
    let h = Harness::start().await;
    let pod = h.pod("rm").await;
    let id = h
        .start_container(&pod, container_config(&h, "rm", "echo bye"))
        .await;
    let s = h.wait_exited(&id).await;
    assert!(
        std::fs::symlink_metadata(&s.log_path).is_ok(),
        "log link exists"
    );
    for _ in 0..2 {
        h.rt()
            .remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
    }
    assert!(
        std::fs::symlink_metadata(&s.log_path).is_err(),
        "log link removed"
    );
    assert!(docker().await.inspect_container(&id, None).await.is_err());
    let err = h
        .rt()
        .container_status(dockercri::proto::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // A created-but-never-started container is removed too.
    let created = h
        .try_create(&pod, container_config(&h, "rm2", "true"))
        .await
        .unwrap();
    h.rt()
        .remove_container(RemoveContainerRequest {
            container_id: created.clone(),
        })
        .await
        .unwrap();
    assert!(
        docker()
            .await
            .inspect_container(&created, None)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_applies_every_filter() {
    let h = Harness::start().await;
    let pod_a = h.pod("list-a").await;
    let pod_b = h.pod("list-b").await;
    let mut c = container_config(&h, "a1", "exec sleep 600");
    c.labels.insert("role".into(), "web".into());
    let running = h.start_container(&pod_a, c).await;
    let exited = h
        .start_container(&pod_a, container_config(&h, "a2", "true"))
        .await;
    h.wait_exited(&exited).await;
    let other = h
        .try_create(&pod_b, container_config(&h, "b1", "true"))
        .await
        .unwrap();

    // ListContainers and StreamContainers give the same containers, whole.
    let list = |f: ContainerFilter| {
        let mut rt = h.rt();
        async move {
            let mut listed = rt
                .list_containers(ListContainersRequest {
                    filter: Some(f.clone()),
                })
                .await
                .unwrap()
                .into_inner()
                .containers;
            let mut stream = rt
                .stream_containers(StreamContainersRequest { filter: Some(f) })
                .await
                .unwrap()
                .into_inner();
            let mut streamed = Vec::new();
            while let Some(batch) = stream.message().await.unwrap() {
                streamed.extend(batch.containers);
            }
            listed.sort_by(|a, b| a.id.cmp(&b.id));
            streamed.sort_by(|a, b| a.id.cmp(&b.id));
            assert_eq!(
                listed, streamed,
                "StreamContainers differs from ListContainers"
            );
            listed.into_iter().map(|c| c.id).collect::<Vec<_>>()
        }
    };
    let mine = ContainerFilter {
        label_selector: h.labels(),
        ..Default::default()
    };
    let mut all = vec![running.clone(), exited.clone(), other.clone()];
    all.sort();
    assert_eq!(list(mine.clone()).await, all);
    assert_eq!(
        list(ContainerFilter {
            id: running[..10].into(),
            ..mine.clone()
        })
        .await,
        std::slice::from_ref(&running)
    );
    let mut in_a = vec![running.clone(), exited.clone()];
    in_a.sort();
    assert_eq!(
        list(ContainerFilter {
            pod_sandbox_id: pod_a.id.clone(),
            ..mine.clone()
        })
        .await,
        in_a
    );
    let state = |s: ContainerState| Some(ContainerStateValue { state: s as i32 });
    assert_eq!(
        list(ContainerFilter {
            state: state(ContainerState::ContainerRunning),
            ..mine.clone()
        })
        .await,
        std::slice::from_ref(&running)
    );
    assert_eq!(
        list(ContainerFilter {
            state: state(ContainerState::ContainerCreated),
            ..mine.clone()
        })
        .await,
        std::slice::from_ref(&other)
    );
    let mut web = h.labels();
    web.insert("role".into(), "web".into());
    assert_eq!(
        list(ContainerFilter {
            label_selector: web,
            ..Default::default()
        })
        .await,
        std::slice::from_ref(&running)
    );
    // Names and pods as created, through the stream too.
    let mut stream = h
        .rt()
        .stream_containers(StreamContainersRequest {
            filter: Some(ContainerFilter {
                id: other.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let batch = stream.message().await.unwrap().expect("one batch");
    assert_eq!(batch.containers.len(), 1, "{batch:?}");
    let b1 = &batch.containers[0];
    assert_eq!(b1.metadata.as_ref().unwrap().name, "b1");
    assert_eq!(b1.pod_sandbox_id, pod_b.id);
    assert!(stream.message().await.unwrap().is_none());
    // Sandboxes are not containers.
    assert!(!list(mine).await.contains(&pod_a.id));
}

fn cgroup_file(pid: i64, controller: &str, file: &str) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroups
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            names
                .split(',')
                .any(|n| n == controller)
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup: {cgroups}"));
    let dir = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.split(',').any(|c| c == controller))
        })
        .unwrap_or_else(|| panic!("no {controller} hierarchy"));
    std::fs::read_to_string(dir.join(path.trim_start_matches('/')).join(file))
        .unwrap()
        .trim()
        .to_string()
}

/// A file of the cgroup v2 cgroup of process `pid`.
fn cgroup2_file(pid: i64, file: &str) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup v2 line: {cgroups}"));
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_string()
}

fn on_cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The memory limit of process `pid` in bytes: `memory.limit_in_bytes`
/// on cgroup v1, `memory.max` on v2 (the guest of scripts/guest).
fn memory_limit(pid: i64) -> String {
    if on_cgroup_v2() {
        cgroup2_file(pid, "memory.max")
    } else {
        cgroup_file(pid, "memory", "memory.limit_in_bytes")
    }
}

/// The CPU quota of process `pid` in µs: `cpu.cfs_quota_us` on cgroup v1,
/// the first field of `cpu.max` on v2.
fn cpu_quota(pid: i64) -> String {
    if on_cgroup_v2() {
        let max = cgroup2_file(pid, "cpu.max");
        max.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    } else {
        cgroup_file(pid, "cpu", "cpu.cfs_quota_us")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_updates_reach_the_cgroup() {
    let h = Harness::start().await;
    let pod = h.pod("resize").await;
    let mut c = container_config(&h, "resize", "exec sleep 600");
    limit(
        &mut c,
        LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 64 << 20,
            ..Default::default()
        },
    );
    let id = h.start_container(&pod, c).await;
    let pid = docker()
        .await
        .inspect_container(&id, None)
        .await
        .unwrap()
        .state
        .unwrap()
        .pid
        .unwrap();
    assert_eq!(memory_limit(pid), (64u64 << 20).to_string());
    assert_eq!(cpu_quota(pid), "50000");

    h.rt()
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 150_000,
                memory_limit_in_bytes: 128 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(memory_limit(pid), (128u64 << 20).to_string());
    assert_eq!(cpu_quota(pid), "150000");
    let r = h
        .container_status(&id)
        .await
        .resources
        .unwrap()
        .linux
        .unwrap();
    assert_eq!((r.cpu_quota, r.memory_limit_in_bytes), (150_000, 128 << 20));

    // What Docker cannot change is refused, saying so.
    let err = h
        .rt()
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                oom_score_adj: 500,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("oom_score_adj"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configs_get_the_right_code_and_leave_nothing() {
    let h = Harness::start().await;
    let pod = h.pod("bad").await;
    let mut no_meta = container_config(&h, "x", "true");
    no_meta.metadata = None;
    let mut bad_image = container_config(&h, "x", "true");
    bad_image.image.as_mut().unwrap().image = "dockercri-test/no-such-image:1".into();
    let mut bad_mount = container_config(&h, "x", "true");
    bad_mount.mounts = vec![Mount {
        host_path: "/tmp".into(),
        container_path: "relative".into(),
        ..Default::default()
    }];
    let mut bad_add = container_config(&h, "x", "true");
    secure(
        &mut bad_add,
        LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: vec!["cap_net_admin".into(), "NET_ADMN".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let mut bad_drop = container_config(&h, "x", "true");
    secure(
        &mut bad_drop,
        LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                drop_capabilities: vec!["all".into(), "CAP_SYS_TYPO".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    // Passes dockercri's checks; Docker answers 400.
    let mut tiny = container_config(&h, "x", "true");
    limit(
        &mut tiny,
        LinuxContainerResources {
            memory_limit_in_bytes: 1,
            ..Default::default()
        },
    );
    for (config, code, needle) in [
        (no_meta, Code::InvalidArgument, "metadata"),
        (bad_image, Code::NotFound, "no-such-image"),
        (bad_mount, Code::InvalidArgument, "container_path"),
        (
            bad_add,
            Code::InvalidArgument,
            "capabilities.add_capabilities: unknown capability \"NET_ADMN\"",
        ),
        (
            bad_drop,
            Code::InvalidArgument,
            "capabilities.drop_capabilities: unknown capability \"CAP_SYS_TYPO\"",
        ),
        (tiny, Code::InvalidArgument, "Minimum memory limit"),
    ] {
        let err = h.try_create(&pod, config).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(needle), "{err:?}");
    }
    let gone = Pod {
        id: "0123456789abcdef".into(),
        config: pod.config.clone(),
    };
    let err = h
        .try_create(&gone, container_config(&h, "x", "true"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("pod sandbox"), "{err:?}");
    let left = h.listed_containers().await;
    assert!(left.is_empty(), "{left:?}");
}

/// kubelet 1.32+ on a cgroup v2 node asks for `memory.oom.group=1` in every
/// container's `unified` resources, which Docker's API cannot carry:
/// dockercri writes it into the container's cgroup. A cgroup v1 node has no
/// such file, and the request is refused, naming why.
#[tokio::test(flavor = "multi_thread")]
async fn kubelets_memory_oom_group_reaches_the_cgroup_on_v2_and_is_refused_on_v1() {
    let h = Harness::start().await;
    let pod = h.pod("oomgroup").await;
    let mut config = container_config(&h, "grouped", "sleep 600");
    config.linux.get_or_insert_with(Default::default).resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        unified: [("memory.oom.group".to_string(), "1".to_string())].into(),
        ..Default::default()
    });
    if !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let err = h.try_create(&pod, config).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("cgroup v1"), "{err:?}");
        assert!(err.message().contains("memory.oom.group"), "{err:?}");
        let left = h.listed_containers().await;
        assert!(left.is_empty(), "{left:?}");
        return;
    }
    let id = h.start_container(&pod, config).await;
    let pid = docker()
        .await
        .inspect_container(&id, None)
        .await
        .unwrap()
        .state
        .and_then(|s| s.pid)
        .unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let dir = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 path");
    let group = std::fs::read_to_string(format!("/sys/fs/cgroup{dir}/memory.oom.group")).unwrap();
    assert_eq!(group.trim(), "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_pod_stops_its_containers() {
    let h = Harness::start().await;
    let pod = h.pod("podstop").await;
    let id = h
        .start_container(
            &pod,
            container_config(
                &h,
                "app",
                "trap 'exit 0' TERM; while true; do sleep 0.1; done",
            ),
        )
        .await;
    h.stop_pod(&pod.id).await;
    let s = h.container_status(&id).await;
    assert_eq!(s.state(), ContainerState::ContainerExited);
}
