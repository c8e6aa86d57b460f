//! kubelet's evented PLEG, followed step by step: when `PodSandboxStatus`
//! carries a timestamp, kubelet (kuberuntime_manager.go `GetPodStatus`,
//! 1.27–1.36) takes the pod's containers from its `containers_statuses`
//! alone, and its pod cache keeps a status stamped later than an event
//! and drops that event. A missing container is started again; a status
//! stamped past a change it does not show hides that change.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::pods::*;
use common::*;
use dockercri::proto::{
    ContainerConfig, ContainerEventType, ContainerFilter, ContainerState, ContainerStatus,
    GetEventsRequest, ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter,
    PodSandboxStatusRequest, PodSandboxStatusResponse, StopContainerRequest,
};

/// The pod's newest sandbox, as kubelet picks it (labels carry the uid).
async fn newest_sandbox(h: &Harness, uid: &str) -> String {
    let mut selector = h.labels();
    selector.insert("io.kubernetes.pod.uid".into(), uid.into());
    let mut items = h
        .rt()
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    items.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    items.first().expect("the pod has a sandbox").id.clone()
}

async fn sandbox_status(h: &Harness, id: &str) -> PodSandboxStatusResponse {
    h.rt()
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
}

/// kubelet's `GetPodStatus` with `EventedPLEG=true`: the containers come
/// from `PodSandboxStatus` alone when its timestamp is set; with 0 kubelet
/// lists the pod's containers and asks for each.
async fn evented_pod_status(h: &Harness, uid: &str) -> (i64, Vec<ContainerStatus>) {
    let sandbox = newest_sandbox(h, uid).await;
    let reply = sandbox_status(h, &sandbox).await;
    if reply.timestamp != 0 {
        return (reply.timestamp, reply.containers_statuses);
    }
    let mut selector = h.labels();
    selector.insert("io.kubernetes.pod.uid".into(), uid.into());
    let listed = h
        .rt()
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    let mut statuses = Vec::new();
    for c in listed {
        statuses.push(h.container_status(&c.id).await);
    }
    (0, statuses)
}

/// A container config with the labels kubelet puts on each container.
fn kubelet_container(h: &Harness, uid: &str, name: &str, script: &str) -> ContainerConfig {
    let mut config = container_config(h, name, script);
    config
        .labels
        .insert("io.kubernetes.pod.uid".into(), uid.into());
    config
        .labels
        .insert("io.kubernetes.container.name".into(), name.into());
    config
}

/// kubelet's `computePodActions` for containers that restart on failure
/// only (init containers never run twice once they succeeded): the names
/// of the wanted containers it would start now.
fn containers_to_start(wanted: &[&str], statuses: &[ContainerStatus]) -> Vec<String> {
    let mut newest: BTreeMap<String, &ContainerStatus> = BTreeMap::new();
    for s in statuses {
        let name = s
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let keep = newest
            .get(&name)
            .is_none_or(|old| old.created_at < s.created_at);
        if keep {
            newest.insert(name, s);
        }
    }
    wanted
        .iter()
        .filter(|name| match newest.get(**name) {
            None => true,
            Some(s) => s.state() == ContainerState::ContainerExited && s.exit_code != 0,
        })
        .map(|name| name.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubelet_with_evented_pleg_starts_each_container_once() {
    let mut h = Harness::start().await;
    let pod = h.pod("evented").await;
    let uid = pod.config.metadata.as_ref().unwrap().uid.clone();
    let wanted = ["init", "app"];

    // A new pod: kubelet starts what is missing, in order.
    let (_, statuses) = evented_pod_status(&h, &uid).await;
    assert_eq!(containers_to_start(&wanted, &statuses), wanted);
    let init = h
        .start_container(&pod, kubelet_container(&h, &uid, "init", "echo ready"))
        .await;
    let app = h
        .start_container(&pod, kubelet_container(&h, &uid, "app", "sleep 3600"))
        .await;
    for _ in 0..100 {
        if h.container_status(&init).await.state() == ContainerState::ContainerExited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Each relist, a restarted kubelet (a new client), a restarted
    // dockercri (its index listed anew): the pod is complete every time.
    let check = |label: &'static str, (timestamp, statuses): (i64, Vec<ContainerStatus>)| {
        let ids: Vec<&str> = statuses.iter().map(|s| s.id.as_str()).collect();
        assert!(
            ids.contains(&init.as_str()) && ids.contains(&app.as_str()),
            "{label}: stamped {timestamp}: {ids:?}"
        );
        assert_eq!(
            containers_to_start(&wanted, &statuses),
            Vec::<String>::new(),
            "{label}: kubelet would start these again"
        );
        let newest = statuses.iter().map(|s| s.created_at).max().unwrap_or(0);
        assert!(
            timestamp == 0 || timestamp >= newest,
            "{label}: stamped before its content"
        );
        let app_status = statuses.iter().find(|s| s.id == app).unwrap();
        assert_eq!(
            app_status.state(),
            ContainerState::ContainerRunning,
            "{label}"
        );
        let init_status = statuses.iter().find(|s| s.id == init).unwrap();
        assert_eq!(
            init_status.state(),
            ContainerState::ContainerExited,
            "{label}"
        );
        assert_eq!(init_status.exit_code, 0, "{label}");
    };
    let relist = evented_pod_status(&h, &uid).await;
    assert_ne!(
        relist.0, 0,
        "an index that follows Docker stamps its answer"
    );
    check("relist", relist);
    h.reconnect().await;
    check("kubelet restart", evented_pod_status(&h, &uid).await);
    h.restart_killed().await;
    check("dockercri restart", evented_pod_status(&h, &uid).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_status_stamped_after_an_event_shows_what_it_changed() {
    let h = Harness::start().await;
    let pod = h.pod("stamped").await;
    let app = h
        .start_container(&pod, container_config(&h, "app", "sleep 3600"))
        .await;
    let mut events = h
        .rt()
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();

    // kubelet's PLEG reads the pod while the container stops.
    let reader = {
        let h_rt = h.rt();
        let pod_id = pod.id.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let until = tokio::time::Instant::now() + Duration::from_secs(4);
            while tokio::time::Instant::now() < until {
                let reply = h_rt
                    .clone()
                    .pod_sandbox_status(PodSandboxStatusRequest {
                        pod_sandbox_id: pod_id.clone(),
                        verbose: false,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                seen.push(reply);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.rt()
        .stop_container(StopContainerRequest {
            container_id: app.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    let stopped_at = loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.message())
            .await
            .expect("a stop event")
            .unwrap()
            .expect("stream open");
        if event.container_id == app
            && event.container_event_type == ContainerEventType::ContainerStoppedEvent as i32
        {
            break event.created_at;
        }
    };
    let mut seen = reader.await.unwrap();
    // On a slow node the reads above may all predate the event's stamp:
    // read on until one is stamped at or after it.
    for _ in 0..300 {
        if seen.iter().any(|r| r.timestamp >= stopped_at) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen.push(sandbox_status(&h, &pod.id).await);
    }
    let mut after = 0;
    for reply in &seen {
        let state = reply
            .containers_statuses
            .iter()
            .find(|s| s.id == app)
            .map(|s| s.state());
        assert!(
            state.is_some(),
            "the container is missing (stop event at {stopped_at}): {reply:?}"
        );
        if reply.timestamp >= stopped_at {
            after += 1;
            // kubelet would keep this status and drop the stop event.
            assert_eq!(
                state,
                Some(ContainerState::ContainerExited),
                "stamped {} at or after the stop event ({stopped_at}) yet running",
                reply.timestamp
            );
        }
    }
    assert!(after > 0, "no status was read after the stop");
}
