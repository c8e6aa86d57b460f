//! The modern node: cgroup v2, Docker's systemd cgroup driver, Docker API
//! 1.44+, every capability. This machine has none of it (Docker 20.10,
//! cgroup v1, cgroupfs, no CAP_SYS_RESOURCE), so these tests are ignored
//! here and run in the guest (scripts/guest), where each one must pass.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::pods::*;
use common::*;
use dockercri::proto::{
    CgroupDriver, ContainerState, ContainerStatsRequest, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount,
    RuntimeConfigRequest, UpdateContainerResourcesRequest,
};

/// A pod as kubelet sends it with the systemd cgroup driver: its cgroup
/// parent is the whole path of slices, the uid's dashes escaped.
fn systemd_pod(h: &Harness, name: &str) -> Pod {
    let mut config = h.pod_config(name);
    let uid = config.metadata.as_ref().unwrap().uid.replace('-', "_");
    config.linux.get_or_insert_default().cgroup_parent =
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice");
    Pod {
        id: String::new(),
        config,
    }
}

async fn run(h: &Harness, mut pod: Pod) -> Pod {
    pod.id = h.run_pod(pod.config.clone()).await;
    pod
}

/// The cgroup v2 directory of a running container.
async fn cgroup_dir(h: &Harness, id: &str) -> std::path::PathBuf {
    let pid = docker()
        .await
        .inspect_container(id, None)
        .await
        .unwrap()
        .state
        .unwrap()
        .pid
        .unwrap();
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup v2 line in {text:?}: {}", h.logs()));
    std::path::Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs cgroup v2, Docker's systemd driver and API 1.44+: runs in the guest (scripts/guest)"]
async fn kubelets_systemd_cgroup_parent_runs_a_pod_with_stats() {
    let h = Harness::start().await;
    let driver = h
        .rt()
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner()
        .linux
        .unwrap()
        .cgroup_driver();
    assert_eq!(
        driver,
        CgroupDriver::Systemd,
        "Docker's driver in the guest"
    );
    let pod = run(&h, systemd_pod(&h, "slices")).await;
    let id = h
        .start_container(&pod, container_config(&h, "burn", "while true; do :; done"))
        .await;
    let uid = pod.config.metadata.as_ref().unwrap().uid.replace('-', "_");
    let dir = cgroup_dir(&h, &id).await;
    let path = dir.display().to_string();
    assert!(
        path.contains(&format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/"
        )),
        "{path}"
    );
    let stats = |h: &Harness| {
        let mut rt = h.rt();
        let id = id.clone();
        async move {
            rt.container_stats(ContainerStatsRequest { container_id: id })
                .await
                .unwrap()
                .into_inner()
                .stats
                .unwrap()
        }
    };
    stats(&h).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let s = stats(&h).await;
    let cpu = s.cpu.unwrap();
    assert!(cpu.usage_core_nano_seconds.unwrap().value > 0);
    assert!(cpu.usage_nano_cores.unwrap().value > 100_000_000);
    assert!(s.memory.unwrap().working_set_bytes.unwrap().value > 0);
    let pod_stats = h
        .rt()
        .pod_sandbox_stats(dockercri::proto::PodSandboxStatsRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let linux = pod_stats.linux.unwrap();
    assert!(linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
    assert!(linux.memory.unwrap().working_set_bytes.unwrap().value > 0);
    h.stop_pod(&pod.id).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs cgroup v2, Docker's systemd driver and API 1.44+: runs in the guest (scripts/guest)"]
async fn unified_resources_land_and_survive_an_update() {
    let h = Harness::start().await;
    let pod = run(&h, systemd_pod(&h, "unified")).await;
    let unified = HashMap::from([
        ("memory.oom.group".to_string(), "1".to_string()),
        ("memory.high".to_string(), "209715200".to_string()),
    ]);
    let mut config = container_config(&h, "app", "sleep 3600");
    config.linux.get_or_insert_default().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 256 << 20,
        unified: unified.clone(),
        ..Default::default()
    });
    let id = h.start_container(&pod, config).await;
    let dir = cgroup_dir(&h, &id).await;
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("memory.oom.group"), "1");
    assert_eq!(read("memory.high"), "209715200");
    // kubelet's resize: Docker's update rewrites the memory files.
    h.rt()
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 300 << 20,
                unified,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(read("memory.max"), (300u64 << 20).to_string());
    assert_eq!(read("memory.oom.group"), "1");
    assert_eq!(read("memory.high"), "209715200");
    h.stop_pod(&pod.id).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs cgroup v2, Docker's systemd driver and API 1.44+: runs in the guest (scripts/guest)"]
async fn an_oom_killed_container_reports_oomkilled() {
    let h = Harness::start().await;
    let pod = run(&h, systemd_pod(&h, "oom")).await;
    let mut config = container_config(
        &h,
        "hog",
        "a=$(head -c 200000000 /dev/zero | tr '\\0' x); echo survived",
    );
    config.linux.get_or_insert_default().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 32 << 20,
        memory_swap_limit_in_bytes: 32 << 20,
        ..Default::default()
    });
    let id = h.start_container(&pod, config).await;
    let status = h.wait_exited(&id).await;
    assert_eq!(status.reason, "OOMKilled", "{status:?}");
    assert_eq!(status.exit_code, 137);
    h.stop_pod(&pod.id).await;
}

/// critest's OOM spec: the kernel kills the shell's `dd` child, the shell
/// exits 137, and systemd stops the container's scope at once (its default
/// OOM policy), removing the cgroup before containerd's shim reads it:
/// Docker then reported no OOM kill (critest v1.36.0 in this guest); the
/// pod slice's count of kills tells dockercri.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs cgroup v2, Docker's systemd driver and API 1.44+: runs in the guest (scripts/guest)"]
async fn a_child_killed_for_memory_reports_oomkilled_too() {
    let h = Harness::start().await;
    let pod = run(&h, systemd_pod(&h, "oom-child")).await;
    for round in 0..2 {
        let mut config = container_config(
            &h,
            &format!("dd{round}"),
            "dd if=/dev/zero of=/dev/null bs=20M",
        );
        config.linux.get_or_insert_default().resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: 15 << 20,
            memory_swap_limit_in_bytes: 15 << 20,
            ..Default::default()
        });
        let id = h.start_container(&pod, config).await;
        let status = h.wait_exited(&id).await;
        assert_eq!(
            (status.exit_code, status.reason.as_str()),
            (137, "OOMKilled"),
            "round {round}: {status:?}"
        );
    }
    h.stop_pod(&pod.id).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs cgroup v2, Docker's systemd driver and API 1.44+: runs in the guest (scripts/guest)"]
async fn privileged_containers_run_with_every_capability() {
    let h = Harness::start().await;
    let mut pod = systemd_pod(&h, "privileged");
    let linux = pod
        .config
        .linux
        .get_or_insert_with(LinuxPodSandboxConfig::default);
    linux
        .security_context
        .get_or_insert_with(LinuxSandboxSecurityContext::default)
        .privileged = true;
    let pod = run(&h, pod).await;
    let mut config = container_config(
        &h,
        "priv",
        "grep CapEff /proc/self/status; hostname priv-test && echo renamed",
    );
    config.linux.get_or_insert_default().security_context = Some(LinuxContainerSecurityContext {
        privileged: true,
        namespace_options: Some(kubelet_namespaces()),
        ..Default::default()
    });
    let id = h.start_container(&pod, config).await;
    let status = h.wait_exited(&id).await;
    let log = log_text(&status.log_path);
    assert_eq!(status.exit_code, 0, "{log}");
    assert!(log.contains("renamed"), "{log}");
    let caps = log
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|c| u64::from_str_radix(c.trim(), 16).unwrap())
        .unwrap_or_default();
    assert!(caps.count_ones() >= 38, "CapEff {caps:x}");
    h.stop_pod(&pod.id).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs cgroup v2, Docker's systemd driver and API 1.44+: runs in the guest (scripts/guest)"]
async fn readonly_mounts_are_recursive_only_when_asked() {
    let h = Harness::start().await;
    // A host directory with a writable tmpfs mounted beneath it.
    let src = h.dir.path().join("ro-src");
    let sub = src.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&sub)
        .status()
        .unwrap();
    assert!(mounted.success());
    let pod = run(&h, systemd_pod(&h, "mounts")).await;
    let try_write = |name: &str, recursive: bool, selinux_relabel: bool| {
        let mut config = container_config(&h, name, "touch /m/sub/x && echo wrote");
        config.mounts = vec![Mount {
            container_path: "/m".into(),
            host_path: src.display().to_string(),
            readonly: true,
            recursive_read_only: recursive,
            selinux_relabel,
            ..Default::default()
        }];
        config
    };
    // kubelet and critest ask for a relabel on hosts without SELinux too
    // (the guest has none): it must not make the mount recursive.
    for (name, relabel) in [("plain", false), ("relabelled", true)] {
        let plain = h
            .start_container(&pod, try_write(name, false, relabel))
            .await;
        let status = h.wait_exited(&plain).await;
        assert_eq!(
            status.exit_code,
            0,
            "non-recursive ({name}): the tmpfs beneath stays writable: {}",
            log_text(&status.log_path)
        );
    }
    let rro = h.start_container(&pod, try_write("rro", true, false)).await;
    let status = h.wait_exited(&rro).await;
    assert_ne!(
        status.exit_code, 0,
        "recursive: the tmpfs beneath is read-only too"
    );
    let _ = std::process::Command::new("umount").arg(&sub).status();
    h.stop_pod(&pod.id).await;
    assert_eq!(
        h.container_status(&rro).await.state(),
        ContainerState::ContainerExited
    );
}
