//! The container index: reads stay right through writes made by dockercri
//! and behind its back with the docker CLI; a resync heals missed events;
//! reads go to Docker while the event stream is down and the index is
//! rebuilt when it is back.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::pods::*;
use common::*;
use dockercri::proto::{
    ContainerFilter, ContainerState, ContainerStatusRequest, CreateContainerRequest,
    ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter, PodSandboxState,
    RemoveContainerRequest, RemovePodSandboxRequest, StartContainerRequest, StopContainerRequest,
};
use tonic::Code;

fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Docker CLI flags that label a container into pod `pod` as a pod
/// container, and as this test's.
fn pod_container_labels(h: &Harness, pod: &str) -> [String; 6] {
    [
        "--label".into(),
        "io.kubernetes.docker.type=container".into(),
        "--label".into(),
        format!("io.kubernetes.sandbox.id={pod}"),
        "--label".into(),
        format!("{TEST_LABEL}={}", h.id),
    ]
}

/// The CRI state of a container, or `None` when it is NOT_FOUND.
async fn state_of(h: &Harness, id: &str) -> Option<ContainerState> {
    match h
        .rt()
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
    {
        Ok(r) => Some(r.into_inner().status.unwrap().state()),
        Err(e) if e.code() == Code::NotFound => None,
        Err(e) => panic!("ContainerStatus: {e:?}"),
    }
}

/// The state `ListContainers` shows for `id` (`None`: not listed).
async fn listed_state(h: &Harness, id: &str) -> Option<ContainerState> {
    let all = h
        .rt()
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                id: id.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    all.first().map(|c| c.state())
}

/// Waits up to `limit` until both status and list show `want`.
async fn eventually(h: &Harness, id: &str, want: Option<ContainerState>, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let (status, listed) = (state_of(h, id).await, listed_state(h, id).await);
        if status == want && listed == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "container {id}: status {status:?}, list {listed:?}, want {want:?}\n{}",
            h.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What both reads show right now, with no waiting.
async fn now(h: &Harness, id: &str) -> (Option<ContainerState>, Option<ContainerState>) {
    (state_of(h, id).await, listed_state(h, id).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_follow_dockercri_writes_at_once() {
    let h = Harness::start().await;
    let pod = h.pod("index-writes").await;
    for _ in 0..3 {
        // Every read right after the write shows it, with no wait.
        let id = h
            .rt()
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(container_config(&h, "app", "sleep 600")),
                sandbox_config: Some(pod.config.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        let created = Some(ContainerState::ContainerCreated);
        assert_eq!(now(&h, &id).await, (created, created));
        h.rt()
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
        let running = Some(ContainerState::ContainerRunning);
        assert_eq!(now(&h, &id).await, (running, running));
        h.rt()
            .stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
        let exited = Some(ContainerState::ContainerExited);
        assert_eq!(now(&h, &id).await, (exited, exited));
        h.rt()
            .remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
        assert_eq!(now(&h, &id).await, (None, None));
    }

    h.stop_pod(&pod.id).await;
    let status = h.pod_status(&pod.id).await;
    assert_eq!(status.state(), PodSandboxState::SandboxNotready);
    let pods = |h: &Harness| {
        let mut rt = h.rt();
        let id = pod.id.clone();
        async move {
            rt.list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter {
                    id,
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .items
        }
    };
    assert_eq!(pods(&h).await[0].state(), PodSandboxState::SandboxNotready);
    h.rt()
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    assert!(pods(&h).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_follow_the_docker_cli_behind_its_back() {
    let h = Harness::start().await;
    let pod = h.pod("index-cli").await;
    let id = h
        .start_container(&pod, container_config(&h, "app", "sleep 600"))
        .await;
    let limit = Duration::from_secs(5);

    docker_cli(&["stop", "-t", "0", &id]);
    eventually(&h, &id, Some(ContainerState::ContainerExited), limit).await;
    docker_cli(&["start", &id]);
    eventually(&h, &id, Some(ContainerState::ContainerRunning), limit).await;
    docker_cli(&["rm", "-f", &id]);
    eventually(&h, &id, None, limit).await;

    // A pod container made with the CLI alone appears too.
    let name = format!("k8s_cli_{}_default_uid-{}_0", "index-cli", h.id);
    let labels = pod_container_labels(&h, &pod.id);
    let made = docker_cli(
        &[
            &["create", "--name", &name][..],
            &labels.each_ref().map(String::as_str),
            &[BUSYBOX, "sleep", "600"],
        ]
        .concat(),
    );
    eventually(&h, &made, Some(ContainerState::ContainerCreated), limit).await;
    docker_cli(&["start", &made]);
    eventually(&h, &made, Some(ContainerState::ContainerRunning), limit).await;
    docker_cli(&["rm", "-f", &made]);
    eventually(&h, &made, None, limit).await;
}

/// dockercri behind a proxy that hides every container event from it.
async fn muted(resync: &str) -> (Harness, tokio::task::JoinHandle<()>, tempfile::TempDir) {
    let dir = tempdir();
    let front = dir.path().join("docker.sock");
    let proxy = docker_proxy_muting_events(front.clone()).await;
    let endpoint = format!("unix://{}", front.display());
    let h = Harness::start_with(&[
        "--docker-endpoint",
        &endpoint,
        "--index-resync-period",
        resync,
    ])
    .await;
    (h, proxy, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_come_from_the_index_not_from_docker() {
    // With events muted and no resync in sight, a change made behind
    // dockercri's back stays unseen: the reads never went to Docker.
    let (h, _proxy, _dir) = muted("1h").await;
    let pod = h.pod("index-cached").await;
    let id = h
        .start_container(&pod, container_config(&h, "app", "sleep 600"))
        .await;
    // A read after dockercri's own start leaves the entry clean.
    let running = Some(ContainerState::ContainerRunning);
    assert_eq!(now(&h, &id).await, (running, running));
    docker_cli(&["stop", "-t", "0", &id]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(now(&h, &id).await, (running, running));
    // dockercri's own write is seen at once all the same.
    h.rt()
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(now(&h, &id).await, (None, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_resync_heals_missed_events() {
    let (h, _proxy, _dir) = muted("1s").await;
    let pod = h.pod("index-resync").await;
    let id = h
        .start_container(&pod, container_config(&h, "app", "sleep 600"))
        .await;
    let limit = Duration::from_secs(5);
    let running = Some(ContainerState::ContainerRunning);
    assert_eq!(now(&h, &id).await, (running, running));
    docker_cli(&["stop", "-t", "0", &id]);
    eventually(&h, &id, Some(ContainerState::ContainerExited), limit).await;
    docker_cli(&["rm", "-f", &id]);
    eventually(&h, &id, None, limit).await;
    assert!(
        h.logs().contains("index resync found changes"),
        "{}",
        h.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_go_to_docker_while_events_are_down_and_the_index_is_rebuilt() {
    let dir = tempdir();
    let front = dir.path().join("docker.sock");
    let proxy = docker_proxy(front.clone()).await;
    let endpoint = format!("unix://{}", front.display());
    let h = Harness::start_with(&["--docker-endpoint", &endpoint]).await;
    let pod = h.pod("index-outage").await;
    let id = h
        .start_container(&pod, container_config(&h, "app", "sleep 600"))
        .await;

    // dockerd "goes away": reads are not answered from a stale index.
    proxy.abort();
    let _ = proxy.await;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let answer = h
            .rt()
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await;
        match answer {
            Err(e) if e.code() == Code::Unavailable => break,
            other => assert!(
                Instant::now() < deadline,
                "still answered from the index: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // What changed meanwhile is seen once it is back.
    docker_cli(&["stop", "-t", "0", &id]);
    let _proxy = docker_proxy(front.clone()).await;
    eventually(
        &h,
        &id,
        Some(ContainerState::ContainerExited),
        Duration::from_secs(10),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.logs().matches("index synced with docker").count() < 2 {
        assert!(Instant::now() < deadline, "no resync:\n{}", h.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether Docker runs the container, and whether it still has it.
fn docker_state(id: &str) -> (bool, bool) {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", id])
        .output()
        .expect("docker CLI");
    let running = String::from_utf8_lossy(&out.stdout).trim() == "true";
    (running, out.status.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pods_stop_and_remove_take_what_joined_it_beside_dockercri() {
    let h = Harness::start().await;
    let pod = h.pod("index-member").await;
    // Labelled into the pod, but not named as a CRI container: no CRI
    // read shows it; the index keeps it for the pod's stop and remove.
    let (name, network) = (unique_id("index-member"), format!("container:{}", pod.id));
    let labels = pod_container_labels(&h, &pod.id);
    let member = docker_cli(
        &[
            &["run", "-d", "--name", &name, "--network", &network][..],
            &labels.each_ref().map(String::as_str),
            &[
                BUSYBOX,
                "sh",
                "-c",
                "trap 'exit 0' TERM; while :; do sleep 1; done",
            ],
        ]
        .concat(),
    );
    assert_eq!(state_of(&h, &member).await, None, "not a CRI container");
    // The stop takes the member once Docker's event has reached the
    // index (within milliseconds); a stop is idempotent, so ask again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while docker_state(&member).0 {
        assert!(
            Instant::now() < deadline,
            "the member still runs\n{}",
            h.logs()
        );
        h.rt()
            .stop_pod_sandbox(dockercri::proto::StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await
            .unwrap();
    }
    h.rt()
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    assert!(
        !docker_state(&member).1,
        "the member is removed with the pod"
    );
}
