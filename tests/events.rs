//! GetContainerEvents: created → started → stopped → deleted, in order, to
//! two subscribers at once, a start and a stop event for each of many
//! containers started and stopped at once, and on after dockerd goes away and comes back.

mod common;

use std::time::Duration;

use common::pods::*;
use common::*;
use dockercri::proto::{
    ContainerEventResponse, ContainerEventType, ContainerState, GetEventsRequest,
    RemoveContainerRequest, StopContainerRequest,
};
use tonic::Streaming;

async fn subscribe(h: &Harness) -> Streaming<ContainerEventResponse> {
    h.rt()
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The next `n` events about `id` (others' events are skipped).
async fn events_for(
    stream: &mut Streaming<ContainerEventResponse>,
    id: &str,
    n: usize,
) -> Vec<ContainerEventResponse> {
    let mut got = Vec::new();
    while got.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .unwrap_or_else(|_| panic!("no event for {id} after {got:?}"))
            .unwrap()
            .expect("stream open");
        if next.container_id == id {
            got.push(next);
        }
    }
    got
}

fn kinds(events: &[ContainerEventResponse]) -> Vec<ContainerEventType> {
    events.iter().map(|e| e.container_event_type()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lifecycle_reaches_two_subscribers_in_order() {
    let h = Harness::start().await;
    let pod = h.pod("events").await;
    let mut first = subscribe(&h).await;
    let mut second = subscribe(&h).await;
    let id = h
        .start_container(&pod, container_config(&h, "ev", "exec sleep 600"))
        .await;
    h.rt()
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    h.rt()
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    use ContainerEventType::*;
    let want = [
        ContainerCreatedEvent,
        ContainerStartedEvent,
        ContainerStoppedEvent,
        ContainerDeletedEvent,
    ];
    for stream in [&mut first, &mut second] {
        let events = events_for(stream, &id, 4).await;
        assert_eq!(kinds(&events), want);
        for pair in events.windows(2) {
            assert!(pair[0].created_at <= pair[1].created_at);
        }
        let started = &events[1];
        assert_eq!(started.pod_sandbox_status.as_ref().unwrap().id, pod.id);
        assert!(
            started.containers_statuses.iter().any(|s| s.id == id),
            "{events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watch_resumes_after_dockerd_comes_back() {
    let dir = tempdir();
    let endpoint = dir.path().join("docker.sock");
    let proxy = docker_proxy(endpoint.clone()).await;
    let flag = format!("unix://{}", endpoint.display());
    let h = Harness::start_with(&["--docker-endpoint", &flag]).await;
    let pod = h.pod("resume").await;
    let mut events = subscribe(&h).await;
    let id = h
        .start_container(&pod, container_config(&h, "ev", "exec sleep 600"))
        .await;
    use ContainerEventType::*;
    assert_eq!(
        kinds(&events_for(&mut events, &id, 2).await),
        [ContainerCreatedEvent, ContainerStartedEvent]
    );

    // dockerd "goes away"; the container stops meanwhile; dockerd comes back.
    proxy.abort();
    let _ = proxy.await;
    docker()
        .await
        .stop_container(
            &id,
            Some(bollard::query_parameters::StopContainerOptions {
                t: Some(0),
                signal: None,
            }),
        )
        .await
        .unwrap();
    let _proxy = docker_proxy(endpoint.clone()).await;
    let stopped = events_for(&mut events, &id, 1).await;
    assert_eq!(kinds(&stopped), [ContainerStoppedEvent]);
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_started_and_stopped_at_once_each_report_it() {
    use futures_util::future::join_all;
    let h = Harness::start().await;
    let names: Vec<String> = (0..8).map(|i| format!("crowd{i}")).collect();
    let pods = join_all(names.iter().map(|name| h.pod(name))).await;
    let mut events = subscribe(&h).await;
    // Docker stamps events before it sends them, from concurrent
    // goroutines: starts and stops in different pods at once arrive with
    // their times out of order.
    let ids = join_all(
        pods.iter()
            .map(|pod| h.start_container(pod, container_config(&h, "c", "exec sleep 600"))),
    )
    .await;
    join_all(ids.iter().map(|id| {
        let mut rt = h.rt();
        let container_id = id.clone();
        async move {
            rt.stop_container(StopContainerRequest {
                container_id,
                timeout: 0,
            })
            .await
            .unwrap()
        }
    }))
    .await;
    use ContainerEventType::*;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 * ids.len() {
        let next = tokio::time::timeout(Duration::from_secs(20), events.message())
            .await
            .unwrap_or_else(|_| panic!("{} of {} events: {seen:?}", seen.len(), 2 * ids.len()))
            .unwrap()
            .expect("stream open");
        let kind = next.container_event_type();
        if matches!(kind, ContainerStartedEvent | ContainerStoppedEvent)
            && ids.contains(&next.container_id)
        {
            seen.insert((next.container_id, kind));
        }
    }
}

/// The status of an event's own container as the event carries it.
fn own_state(event: &ContainerEventResponse) -> ContainerState {
    event
        .containers_statuses
        .iter()
        .find(|s| s.id == event.container_id)
        .unwrap_or_else(|| panic!("the event does not list its own container: {event:?}"))
        .state()
}

/// kubelet's evented PLEG stores each event's statuses as the pod's
/// status: a started event that still shows its container created (or a
/// stopped one that shows it running) makes kubelet start another copy.
/// Docker sends `start` and `die` while our StartContainer and
/// StopContainer calls are still in flight, so this is the case every
/// kubelet-driven start and stop hits.
#[tokio::test(flavor = "multi_thread")]
async fn each_event_shows_its_container_in_the_state_it_reports() {
    let h = Harness::start().await;
    let pod = h.pod("state").await;
    let mut events = subscribe(&h).await;
    use ContainerEventType::*;
    for round in 0..6 {
        let id = h
            .start_container(&pod, container_config(&h, "c", "exec sleep 600"))
            .await;
        let started = events_for(&mut events, &id, 2).await;
        assert_eq!(
            kinds(&started),
            [ContainerCreatedEvent, ContainerStartedEvent]
        );
        // Translated once the event is in: by then the start may be too.
        assert!(
            matches!(
                own_state(&started[0]),
                ContainerState::ContainerCreated | ContainerState::ContainerRunning
            ),
            "round {round}: {:?}",
            started[0]
        );
        assert_eq!(
            own_state(&started[1]),
            ContainerState::ContainerRunning,
            "round {round}: {:?}",
            started[1]
        );
        h.rt()
            .stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
        let stopped = events_for(&mut events, &id, 1).await;
        assert_eq!(kinds(&stopped), [ContainerStoppedEvent]);
        assert_eq!(
            own_state(&stopped[0]),
            ContainerState::ContainerExited,
            "round {round}: {:?}",
            stopped[0]
        );
    }
}
