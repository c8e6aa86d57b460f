//! Pod sandboxes through CRI, checked in Docker itself and from inside the
//! pod: naming and labels, namespaces, DNS and hostname, published ports,
//! host network, sysctls, idempotent stop/remove, status, list filters,
//! restart, clean failure, and the built-in pause image.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use dockercri::proto::{
    DnsConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest,
    NamespaceMode, NamespaceOption, PodSandboxFilter, PodSandboxState, PodSandboxStateValue,
    PodSandboxStatusRequest, PortMapping, Protocol, RemovePodSandboxRequest, RunPodSandboxRequest,
    StopPodSandboxRequest, UpdatePodSandboxResourcesRequest,
};
use tonic::Code;

async fn status(h: &Harness, id: &str) -> dockercri::proto::PodSandboxStatusResponse {
    h.rt()
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn list(h: &Harness, filter: PodSandboxFilter) -> Vec<String> {
    let mut ids: Vec<String> = h
        .rt()
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await
        .unwrap()
        .into_inner()
        .items
        .into_iter()
        .map(|s| s.id)
        .collect();
    ids.sort();
    ids
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_runs_with_dockershim_names_labels_and_namespaces() {
    let h = Harness::start().await;
    let config = h.pod_config("web");
    let meta = config.metadata.clone().unwrap();
    let before = dockercri::docker::time::now_ns();
    let id = h.run_pod(config.clone()).await;

    let c = docker().await.inspect_container(&id, None).await.unwrap();
    assert_eq!(
        c.name.as_deref(),
        Some(format!("/k8s_POD_web_default_{}_0", meta.uid).as_str())
    );
    let labels = c.config.as_ref().unwrap().labels.clone().unwrap();
    assert_eq!(labels["io.kubernetes.docker.type"], "podsandbox");
    assert_eq!(labels["io.kubernetes.pod.name"], "web");
    assert_eq!(labels["annotation.kubernetes.io/config.source"], "api");
    let host = c.host_config.unwrap();
    assert_eq!(host.ipc_mode.as_deref(), Some("shareable"));
    assert_eq!(host.network_mode.as_deref(), Some("bridge"));
    assert!(c.state.unwrap().running.unwrap());
    assert!(
        std::path::Path::new(&config.log_directory).is_dir(),
        "log directory made"
    );

    let s = status(&h, &id).await;
    let st = s.status.unwrap();
    assert_eq!(st.id, id);
    assert_eq!(st.state(), PodSandboxState::SandboxReady);
    assert_eq!(st.metadata.unwrap(), meta);
    assert!(
        st.created_at >= before - 1_000_000_000,
        "{} < {before}",
        st.created_at
    );
    assert!(st.created_at <= dockercri::docker::time::now_ns());
    let ip = st.network.unwrap().ip;
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "pod IP {ip:?}");
    assert_eq!(st.labels["io.kubernetes.pod.name"], "web");
    assert!(!st.labels.contains_key("io.kubernetes.docker.type"));
    assert_eq!(st.annotations["kubernetes.io/config.source"], "api");
    let ns = st.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(ns.network(), NamespaceMode::Pod);
    assert!(s.info.contains_key("info"));
    assert!(s.timestamp > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_and_hostname_are_seen_inside_the_pod() {
    let h = Harness::start().await;
    let mut config = h.pod_config("dns");
    config.hostname = "dns-host".into();
    config.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into(), "10.96.0.11".into()],
        searches: vec![
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
        ],
        options: vec!["ndots:5".into(), "timeout:2".into()],
    });
    let id = h.run_pod(config).await;
    let (code, out) = h
        .run_in_pod(&id, &["sh", "-c", "hostname; cat /etc/resolv.conf"])
        .await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "dns-host");
    assert!(lines.contains(&"nameserver 10.96.0.10"), "{out}");
    assert!(lines.contains(&"nameserver 10.96.0.11"), "{out}");
    assert!(
        lines.contains(&"search default.svc.cluster.local svc.cluster.local"),
        "{out}"
    );
    assert!(lines.contains(&"options ndots:5 timeout:2"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_port_reaches_httpd_in_the_pod() {
    let h = Harness::start().await;
    let port = free_port();
    let mut config = h.pod_config("http");
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port: i32::from(port),
        host_ip: "127.0.0.1".into(),
    }];
    let id = h.run_pod(config).await;
    h.start_in_pod(
        &id,
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    )
    .await;
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
            body.clear();
            let _ = s.read_to_string(&mut body);
            if body.contains("hello-from-pod") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.contains("hello-from-pod"), "got {body:?}");
    let verbose = status(&h, &id).await.info["info"].clone();
    assert!(
        verbose.contains(&format!("\"hostPort\":{port}")),
        "{verbose}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_network_pod_lives_in_the_node_namespace() {
    let h = Harness::start().await;
    let mut config = h.pod_config("hostnet");
    config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = h.run_pod(config).await;
    let c = docker().await.inspect_container(&id, None).await.unwrap();
    assert_eq!(c.host_config.unwrap().network_mode.as_deref(), Some("host"));
    let pid = c.state.unwrap().pid.unwrap();
    let pod_ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let node_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(pod_ns, node_ns);
    let (_, out) = h.run_in_pod(&id, &["hostname"]).await;
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(out.trim(), node.trim());

    let st = status(&h, &id).await.status.unwrap();
    assert_eq!(st.network.unwrap().ip, "");
    let ns = st.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(ns.network(), NamespaceMode::Node);
}

#[tokio::test(flavor = "multi_thread")]
async fn sysctls_are_applied() {
    let h = Harness::start().await;
    let mut config = h.pod_config("sysctl");
    config.linux = Some(LinuxPodSandboxConfig {
        sysctls: HashMap::from([
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "1000".to_string(),
            ),
            ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
        ]),
        ..Default::default()
    });
    let id = h.run_pod(config).await;
    let (code, out) = h
        .run_in_pod(
            &id,
            &[
                "cat",
                "/proc/sys/net/ipv4/ip_unprivileged_port_start",
                "/proc/sys/kernel/shm_rmid_forced",
            ],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["1000", "1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_remove_are_idempotent_and_take_the_pods_containers() {
    let h = Harness::start().await;
    let id = h.run_pod(h.pod_config("idem")).await;
    let app = h.start_in_pod(&id, &["sleep", "600"]).await;
    for _ in 0..2 {
        h.stop_pod(&id).await;
    }
    let d = docker().await;
    let app_state = d
        .inspect_container(&app, None)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(
        app_state.running,
        Some(false),
        "app container stopped with the pod"
    );
    let st = status(&h, &id).await.status.unwrap();
    assert_eq!(st.state(), PodSandboxState::SandboxNotready);

    for _ in 0..2 {
        h.rt()
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap();
    }
    assert!(
        d.inspect_container(&id, None).await.is_err(),
        "sandbox gone"
    );
    assert!(
        d.inspect_container(&app, None).await.is_err(),
        "app container gone"
    );
    assert!(
        !h.root.join("sandboxes").join(&id).exists(),
        "checkpoint gone"
    );
    // Unknown ids: stop and remove succeed, status is NOT_FOUND.
    h.stop_pod("0123456789abcdef").await;
    h.rt()
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: "0123456789abcdef".into(),
        })
        .await
        .unwrap();
    let err = h
        .rt()
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(&id), "{err:?}");
}

/// RemovePodSandbox deletes the checkpoint while Docker removes the pause
/// container; when Docker fails, the sandbox is still there and so is its
/// checkpoint (put back), and a retry removes both.
#[tokio::test]
async fn a_remove_docker_refuses_keeps_the_checkpoint_and_a_retry_removes_all() {
    let h = Harness::start().await;
    let id = h.pod("refused").await.id;
    h.stop_pod(&id).await;
    // An immutable file in the container's directory makes Docker's remove
    // fail. The directory is under Docker's own root, wherever it is.
    let root = docker()
        .await
        .info()
        .await
        .unwrap()
        .docker_root_dir
        .expect("docker info names DockerRootDir");
    let pinned = format!("{root}/containers/{id}/hostconfig.json");
    assert!(
        std::path::Path::new(&pinned).exists(),
        "{pinned} missing: is DockerRootDir {root} this machine's?"
    );
    let chattr = |flag: &str| {
        let out = std::process::Command::new("chattr")
            .args([flag, &pinned])
            .output()
            .expect("chattr (Debian package e2fsprogs)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (pinned_ok, why) = chattr("+i");
    assert!(
        pinned_ok,
        "this machine cannot run the test: `chattr +i {pinned}` failed ({why}); it needs \
         Docker's root on a filesystem with the immutable attribute (ext4, xfs, btrfs) \
         and CAP_LINUX_IMMUTABLE"
    );
    let remove = || async {
        h.rt()
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
    };
    let refused = remove().await;
    let unpinned = chattr("-i");
    assert!(refused.is_err(), "Docker's remove was refused");
    assert!(unpinned.0, "chattr -i {pinned}: {}", unpinned.1);
    let checkpoint = h.root.join("sandboxes").join(&id);
    assert!(
        checkpoint.exists(),
        "the checkpoint of a sandbox still there"
    );
    remove().await.unwrap();
    assert!(!checkpoint.exists(), "checkpoint gone");
    assert!(docker().await.inspect_container(&id, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_applies_id_state_and_label_filters() {
    let h = Harness::start().await;
    let mut a = h.pod_config("list-a");
    a.labels.insert("tier".into(), "front".into());
    let mut b = h.pod_config("list-b");
    b.labels.insert("tier".into(), "back".into());
    let a = h.run_pod(a).await;
    let b = h.run_pod(b).await;
    h.stop_pod(&b).await;
    let mine = || h.labels();
    let mut both = vec![a.clone(), b.clone()];
    both.sort();

    let all = PodSandboxFilter {
        label_selector: mine(),
        ..Default::default()
    };
    assert_eq!(list(&h, all.clone()).await, both);
    let by_id = PodSandboxFilter {
        id: a[..12].to_string(),
        ..all.clone()
    };
    assert_eq!(list(&h, by_id).await, std::slice::from_ref(&a));
    let ready = PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: PodSandboxState::SandboxReady as i32,
        }),
        ..all.clone()
    };
    assert_eq!(list(&h, ready).await, std::slice::from_ref(&a));
    let not_ready = PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: PodSandboxState::SandboxNotready as i32,
        }),
        ..all.clone()
    };
    assert_eq!(list(&h, not_ready).await, std::slice::from_ref(&b));
    let mut back = mine();
    back.insert("tier".into(), "back".into());
    let by_label = PodSandboxFilter {
        label_selector: back,
        ..Default::default()
    };
    assert_eq!(list(&h, by_label).await, std::slice::from_ref(&b));

    // The streaming variant yields the same items.
    let mut stream = h
        .rt()
        .stream_pod_sandboxes(dockercri::proto::StreamPodSandboxesRequest { filter: Some(all) })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = vec![];
    while let Some(msg) = stream.message().await.unwrap() {
        streamed.extend(msg.pod_sandboxes.into_iter().map(|s| s.id));
    }
    streamed.sort();
    assert_eq!(streamed, both);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_of_dockercri_loses_nothing() {
    let mut h = Harness::start().await;
    let port = free_port();
    let mut config = h.pod_config("survivor");
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Udp as i32,
        container_port: 53,
        host_port: i32::from(port),
        host_ip: "127.0.0.1".into(),
    }];
    let id = h.run_pod(config).await;
    let stopped = h.run_pod(h.pod_config("survivor-stopped")).await;
    h.stop_pod(&stopped).await;
    let before = status(&h, &id).await;
    let before_stopped = status(&h, &stopped).await;
    let listed_before = list(
        &h,
        PodSandboxFilter {
            label_selector: h.labels(),
            ..Default::default()
        },
    )
    .await;

    h.restart_killed().await;

    let after = status(&h, &id).await;
    assert_eq!(after.status, before.status);
    assert_eq!(after.info, before.info);
    assert_eq!(status(&h, &stopped).await.status, before_stopped.status);
    let listed_after = list(
        &h,
        PodSandboxFilter {
            label_selector: h.labels(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(listed_after, listed_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_leaves_nothing_behind() {
    let h = Harness::start().await;
    let mut config = h.pod_config("doomed");
    // Docker accepts the create but runc refuses an unknown sysctl at start.
    config.linux = Some(LinuxPodSandboxConfig {
        sysctls: HashMap::from([("net.ipv4.no_such_knob".to_string(), "1".to_string())]),
        ..Default::default()
    });
    let err = h
        .rt()
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    let name = format!("k8s_POD_doomed_default_{}_0", config.metadata.unwrap().uid);
    assert!(
        docker().await.inspect_container(&name, None).await.is_err(),
        "container left behind"
    );
    assert!(
        !std::path::Path::new(&config.log_directory).exists(),
        "log directory left behind"
    );
    let checkpoints = std::fs::read_dir(h.root.join("sandboxes"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(checkpoints, 0, "checkpoint left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_configs_are_refused_naming_the_field() {
    let h = Harness::start().await;
    let mut no_uid = h.pod_config("bad");
    no_uid.metadata.as_mut().unwrap().uid.clear();
    let mut bad_port = h.pod_config("bad");
    bad_port.port_mappings = vec![PortMapping {
        container_port: 80,
        host_port: 99999,
        ..Default::default()
    }];
    let mut relative_logs = h.pod_config("bad");
    relative_logs.log_directory = "var/log/pods/x".into();
    let mut no_meta = h.pod_config("bad");
    no_meta.metadata = None;
    for (config, field, handler) in [
        (no_uid, "uid", ""),
        (bad_port, "host_port", ""),
        (relative_logs, "log_directory", ""),
        (no_meta, "metadata", ""),
        (
            h.pod_config("bad-handler"),
            "no-such-runtime",
            "no-such-runtime",
        ),
    ] {
        let err = h
            .rt()
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: handler.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(field), "want {field}: {err:?}");
    }
    let mine = PodSandboxFilter {
        label_selector: h.labels(),
        ..Default::default()
    };
    assert!(list(&h, mine).await.is_empty(), "nothing made");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_builtin_pause_image_stands_in_when_the_configured_one_cannot_be_pulled() {
    let h =
        Harness::start_with(&["--pod-infra-container-image", "127.0.0.1:1/nowhere/pause:9"]).await;
    let id = h.run_pod(h.pod_config("airgap")).await;
    let c = docker().await.inspect_container(&id, None).await.unwrap();
    let image = c.config.unwrap().image.unwrap();
    assert_eq!(image, dockercri::runtime::pause::BUILTIN_IMAGE);
    assert!(
        h.logs().contains("using the built-in pause image"),
        "{}",
        h.logs()
    );
    // The pause program stops at once on SIGTERM (exit 0), not after a timeout.
    let started = std::time::Instant::now();
    h.stop_pod(&id).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let state = docker()
        .await
        .inspect_container(&id, None)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(state.exit_code, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_pod_twice_at_once_is_one_sandbox() {
    let h = Harness::start().await;
    // Several rounds of four at once: a later call must find the sandbox
    // an earlier one just started (never take it for a dead one).
    for round in 0..5 {
        let config = h.pod_config(&format!("twice{round}"));
        let run = || {
            let mut rt = h.rt();
            let config = config.clone();
            async move {
                rt.run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
                .map(|r| r.into_inner().pod_sandbox_id)
            }
        };
        let (a, b, c, d) = tokio::join!(run(), run(), run(), run());
        let ids = [a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap()];
        assert!(ids.iter().all(|id| *id == ids[0]), "round {round}: {ids:?}");
    }
    let in_docker = h.docker_containers().await;
    assert_eq!(in_docker.len(), 5, "{in_docker:?}");
    assert!(in_docker.values().all(|running| *running), "{in_docker:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn update_pod_sandbox_resources_is_recorded() {
    let h = Harness::start().await;
    let id = h.run_pod(h.pod_config("resize")).await;
    h.rt()
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: id.clone(),
            resources: Some(dockercri::proto::LinuxContainerResources {
                cpu_quota: 50_000,
                cpu_period: 100_000,
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            }),
            overhead: None,
        })
        .await
        .unwrap();
    let info = status(&h, &id).await.info["info"].clone();
    assert!(info.contains("\"cpuQuota\":50000"), "{info}");
    assert!(
        info.contains(&format!("\"memoryLimitInBytes\":{}", 64 << 20)),
        "{info}"
    );
    let err = h
        .rt()
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: "feedfacefeedface".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let _ = h
        .rt()
        .stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id })
        .await;
}

/// Stops and removes a pod through the CRI, as kubelet does.
async fn stop_and_remove(h: &Harness, id: &str) {
    h.stop_pod(id).await;
    h.rt()
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_never_deletes_the_log_directory_a_request_named() {
    let h = Harness::start().await;
    // A directory that held files before the pod: it and they stay.
    let existing = h.dir.path().join("precious");
    std::fs::create_dir_all(&existing).unwrap();
    std::fs::write(existing.join("data"), "keep me").unwrap();
    let mut config = h.pod_config("existing-dir");
    config.log_directory = existing.display().to_string();
    let id = h.run_pod(config).await;
    stop_and_remove(&h, &id).await;
    assert_eq!(
        std::fs::read_to_string(existing.join("data")).unwrap(),
        "keep me"
    );

    // The root directory passes every path check: nothing under it goes.
    let mut config = h.pod_config("root-dir");
    config.log_directory = "/".into();
    let id = h.run_pod(config).await;
    stop_and_remove(&h, &id).await;
    assert!(std::path::Path::new("/etc/passwd").exists());
    assert!(h.dir.path().join("precious/data").exists());

    // A directory dockercri made for the pod is kubelet's once the pod
    // runs (its garbage collector removes it): it stays too.
    let config = h.pod_config("made-dir");
    let dir = config.log_directory.clone();
    let id = h.run_pod(config).await;
    stop_and_remove(&h, &id).await;
    assert!(std::path::Path::new(&dir).is_dir());
}
