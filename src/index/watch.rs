//! Keeps the index true to Docker: opens Docker's event stream, lists every
//! pod container once, then applies each event (a dirty mark and an
//! inspect a moment later; a `destroy` forgets the container) and publishes
//! the CRI container events; a periodic resync compares Docker's list with
//! the index and heals what an event missed. When the stream breaks the
//! index is marked unsynced until the next full list.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use crate::docker::{DockerClient, labels, time};
use crate::error::Result;
use crate::index::{ContainerSource, Entry, Index};

/// Docker actions that change what the index holds.
/// (`oom`: Docker 26 on cgroup v2 may lose the kill from the state it
/// keeps, not from its events.)
const ACTIONS: [&str; 7] = [
    "create", "start", "die", "destroy", "update", "rename", "oom",
];

/// Inspects running at once during a full list.
const LIST_CONCURRENCY: usize = 8;

/// Events remembered to recognise the ones a reconnect replays.
const SEEN_EVENTS: usize = 4096;

/// The latest events applied, by identity (container, action, time):
/// after a reconnect, Docker replays from a whole second before the newest
/// one, and those already applied are skipped. Identity, not time order:
/// Docker stamps events before it sends them, from concurrent goroutines,
/// so an event may carry an older time than the one sent before it.
#[derive(Debug, Default)]
struct SeenEvents {
    order: VecDeque<(String, String, i64)>,
    keys: HashSet<(String, String, i64)>,
    newest_ns: i64,
}

impl SeenEvents {
    /// Records the event; false when it was seen already.
    fn first_time(&mut self, id: &str, action: &str, ns: i64) -> bool {
        let key = (id.to_string(), action.to_string(), ns);
        if self.keys.contains(&key) {
            return false;
        }
        if self.order.len() == SEEN_EVENTS
            && let Some(oldest) = self.order.pop_front()
        {
            self.keys.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.keys.insert(key);
        self.newest_ns = self.newest_ns.max(ns);
        true
    }
}

/// What the watcher is handed: the index it keeps, Docker, and where the
/// events it applied go.
pub struct Watcher {
    pub index: Arc<Index>,
    pub docker: Arc<DockerClient>,
    /// How often Docker's list is compared with the index.
    pub resync_period: Duration,
    /// Every pod event applied, for `GetContainerEvents`…
    pub publish: tokio::sync::mpsc::Sender<EventMessage>,
    /// …while this says someone subscribes.
    pub subscribed: Box<dyn Fn() -> bool + Send + Sync>,
}

/// Follows Docker for as long as dockercri runs.
pub async fn run(w: Watcher) {
    let mut seen = SeenEvents::default();
    let index = &w.index;
    loop {
        index.set_synced(false);
        let Ok(docker) = w.docker.get().await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // Replay from just before the list (or the newest event applied)
        // so nothing between the list and the live stream is missed; what
        // was already applied is skipped.
        let since_ns = if seen.newest_ns > 0 {
            seen.newest_ns
        } else {
            time::now_ns()
        } - 1_000_000_000;
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("event", ACTIONS.map(String::from).to_vec()),
        ]);
        let since = (since_ns / 1_000_000_000).to_string();
        let options = EventsOptionsBuilder::default()
            .filters(&filters)
            .since(&since)
            .build();
        let mut stream = docker.events(Some(options));
        match relist(index, &w.docker).await {
            Ok(count) => {
                index.set_synced(true);
                info!(containers = count, "index synced with docker");
            }
            Err(e) => {
                debug!(error = %e, "cannot list docker's containers for the index");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let mut resync = tokio::time::interval(w.resync_period);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(message)) => {
                        let publish = (w.subscribed)().then_some(&w.publish);
                        apply(index, &w.docker, &message, &mut seen, publish);
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "docker's event stream broke; reads go to docker until it is back");
                        break;
                    }
                    None => {
                        warn!("docker's event stream ended; reads go to docker until it is back");
                        break;
                    }
                },
                _ = resync.tick() => {
                    if let Err(e) = heal(index, &*w.docker).await {
                        debug!(error = %e, "index resync failed");
                    }
                }
            }
        }
        index.set_synced(false);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Applies one Docker event to the index and hands a pod's event to
/// `publish` (when there are subscribers).
fn apply<S: ContainerSource>(
    index: &Arc<Index>,
    docker: &Arc<S>,
    message: &EventMessage,
    seen: &mut SeenEvents,
    publish: Option<&tokio::sync::mpsc::Sender<EventMessage>>,
) {
    let ns = message.time_nano.unwrap_or(0);
    let Some(actor) = message.actor.as_ref() else {
        return;
    };
    let Some(id) = actor.id.as_deref() else {
        return;
    };
    let action = message.action.as_deref().unwrap_or_default();
    if !seen.first_time(id, action, ns) {
        return;
    }
    let attributes = actor.attributes.clone().unwrap_or_default();
    if labels::pod_of(id, &attributes).is_none() {
        // Not ours, but Docker's stream has come this far.
        index.applied_until(ns);
        return;
    }
    // A destroyed container is simply forgotten. One under a write of ours
    // is inspected after that write; one inspected since the event already
    // shows what it changed. Any other is dirty at once (its next read
    // inspects it) and inspected in the background a moment later: an
    // inspect waits for Docker's lock on the container (held through a
    // start), which must not hold up the events after it.
    if action == "oom" {
        index.oom_event(id);
    }
    if action == "destroy" {
        index.removed(id);
    } else if !index.busy_with_event(id)
        && !index.is_gone(id)
        && inspect_again(action, index.inspected_since(id, ns))
    {
        index.settle_soon(docker, id);
    }
    index.applied_until(ns);
    if let Some(publish) = publish
        && publish.try_send(message.clone()).is_err()
    {
        warn!(container = %id, "container events fall behind; one is dropped");
    }
}

/// Whether an event about a container inspected `inspected_since` its
/// stamp needs another inspect. An `oom` always does: Docker's own state
/// can miss the kill (seen on Docker 20.10 with containers exiting side by
/// side, and on Docker 26 with cgroup v2), so an inspect made after the
/// event can still show `OOMKilled: false`; the inspect that follows the
/// event marks the container from it.
fn inspect_again(action: &str, inspected_since: bool) -> bool {
    action == "oom" || !inspected_since
}

/// Lists and inspects every pod container and replaces the index with it.
async fn relist<S: ContainerSource + ?Sized>(index: &Index, docker: &S) -> Result<usize> {
    let began = time::now_ns();
    let marks = index.marks();
    let ids: Vec<String> = docker
        .list_pod_containers()
        .await?
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    let inspected: Vec<_> = futures_util::stream::iter(ids)
        .map(|id| async move { docker.inspect_container(&id).await })
        .buffer_unordered(LIST_CONCURRENCY)
        .collect()
        .await;
    let mut entries = Vec::with_capacity(inspected.len());
    for result in inspected {
        // A container removed since the list is simply not there.
        let inspected = result?.map(|inspect| index.with_oom_events(inspect));
        if let Some(entry) = inspected.and_then(|inspect| Entry::load(inspect, index.root())) {
            entries.push(entry);
        }
    }
    let count = entries.len();
    index.replace_all(entries, &marks);
    index.applied_until(began);
    Ok(count)
}

/// The resync: one Docker list compared with the index; containers that
/// appeared, vanished or changed state are inspected again.
async fn heal<S: ContainerSource + ?Sized>(index: &Index, docker: &S) -> Result<()> {
    let began = time::now_ns();
    let known = index.states();
    let listed: HashMap<String, String> = docker
        .list_pod_containers()
        .await?
        .into_iter()
        .filter_map(|c| Some((c.id?, c.state.map(|s| s.to_string()).unwrap_or_default())))
        .collect();
    let mut stale: HashSet<&String> = listed
        .iter()
        .filter(|(id, state)| known.get(*id) != Some(*state))
        .map(|(id, _)| id)
        .collect();
    stale.extend(known.keys().filter(|id| !listed.contains_key(*id)));
    if stale.is_empty() {
        index.applied_until(began);
        return Ok(());
    }
    info!(
        containers = stale.len(),
        "index resync found changes its events missed"
    );
    for id in stale {
        index.refresh(docker, id).await?;
    }
    index.applied_until(began);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::View;
    use crate::index::fake::{self, FakeDocker};
    use crate::proto::ContainerState;

    /// A pod (`sb`) with two running containers (`c1`, `c2`) and a
    /// container that is no pod's, listed into a fresh index.
    async fn listed() -> (Arc<Index>, Arc<FakeDocker>, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        let docker = Arc::new(FakeDocker::default());
        docker.put(fake::sandbox("ab"));
        docker.put(fake::container("c1", "ab", "app"));
        docker.put(fake::container("c2", "ab", "side"));
        docker.put(fake::stranger("ee"));
        let index = Arc::new(Index::new(root.path().to_path_buf()));
        assert_eq!(relist(&index, &docker).await.unwrap(), 3);
        index.set_synced(true);
        (index, docker, root)
    }

    fn state_of(entry: &Entry) -> (ContainerState, String) {
        match &entry.view {
            View::Container { status, .. } => (status.state(), status.reason.clone()),
            _ => panic!("not a container: {entry:?}"),
        }
    }

    async fn read(
        index: &Index,
        docker: &FakeDocker,
        id: &str,
    ) -> Option<(ContainerState, String)> {
        index.get(docker, id).await.unwrap().map(|e| state_of(&e))
    }

    #[tokio::test]
    async fn a_full_list_fills_the_index_and_reads_come_from_memory() {
        let (index, docker, _root) = listed().await;
        let after_list = docker.inspects();
        assert_eq!(after_list, 3, "the stranger is not listed");
        assert_eq!(index.pod_containers(&fake::full("ab")).len(), 2);
        assert_eq!(
            read(&index, &docker, "c1").await,
            Some((ContainerState::ContainerRunning, String::new()))
        );
        assert_eq!(docker.inspects(), after_list, "a clean entry asks nothing");
    }

    #[tokio::test]
    async fn a_die_event_makes_the_next_read_inspect() {
        let (index, docker, _root) = listed().await;
        let mut seen = SeenEvents::default();
        docker.exit("c1", 1, false);
        let before = docker.inspects();
        apply(
            &index,
            &docker,
            &fake::event("die", &fake::container("c1", "ab", "app"), time::now_ns()),
            &mut seen,
            None,
        );
        assert_eq!(
            read(&index, &docker, "c1").await,
            Some((ContainerState::ContainerExited, "Error".into()))
        );
        assert_eq!(docker.inspects(), before + 1);
        // The sibling was not touched.
        assert_eq!(
            read(&index, &docker, "c2").await,
            Some((ContainerState::ContainerRunning, String::new()))
        );
        assert_eq!(docker.inspects(), before + 1);
    }

    #[tokio::test]
    async fn an_oom_event_marks_the_kill_even_after_a_later_inspect() {
        let (index, docker, _root) = listed().await;
        let mut seen = SeenEvents::default();
        let c1 = fake::container("c1", "ab", "app");
        let oom_at = time::now_ns();
        // Docker's state misses the kill, and a read inspected the exit
        // after the oom event was stamped, before the watcher applied it.
        docker.exit("c1", 137, false);
        index.refresh(&*docker, &fake::full("c1")).await.unwrap();
        assert_eq!(
            read(&index, &docker, "c1").await,
            Some((ContainerState::ContainerExited, "Error".into()))
        );
        apply(
            &index,
            &docker,
            &fake::event("oom", &c1, oom_at),
            &mut seen,
            None,
        );
        apply(
            &index,
            &docker,
            &fake::event("die", &c1, oom_at + 1),
            &mut seen,
            None,
        );
        assert_eq!(
            read(&index, &docker, "c1").await,
            Some((ContainerState::ContainerExited, "OOMKilled".into()))
        );
    }

    #[tokio::test]
    async fn a_destroy_event_forgets_the_container_without_asking_docker() {
        let (index, docker, _root) = listed().await;
        let mut seen = SeenEvents::default();
        let before = docker.inspects();
        docker.remove("c2");
        apply(
            &index,
            &docker,
            &fake::event(
                "destroy",
                &fake::container("c2", "ab", "side"),
                time::now_ns(),
            ),
            &mut seen,
            None,
        );
        assert_eq!(index.pod_containers(&fake::full("ab")).len(), 1);
        assert_eq!(docker.inspects(), before);
    }

    #[tokio::test]
    async fn others_events_only_move_the_watermark_and_replays_are_skipped() {
        let (index, docker, _root) = listed().await;
        let mut seen = SeenEvents::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let before = docker.inspects();
        let ns = time::now_ns() + 1_000_000_000;
        apply(
            &index,
            &docker,
            &fake::event("die", &fake::stranger("ee"), ns),
            &mut seen,
            Some(&tx),
        );
        assert_eq!(index.complete_until(), ns);
        assert!(rx.try_recv().is_err(), "no pod's event");
        let die = fake::event("die", &fake::container("c1", "ab", "app"), ns + 1);
        apply(&index, &docker, &die, &mut seen, Some(&tx));
        assert_eq!(rx.try_recv().unwrap().time_nano, Some(ns + 1));
        // The replay after a reconnect: neither applied nor published.
        index.get(&*docker, &fake::full("c1")).await.unwrap();
        let inspected = docker.inspects();
        apply(&index, &docker, &die, &mut seen, Some(&tx));
        assert!(rx.try_recv().is_err());
        assert_eq!(
            read(&index, &docker, "c1").await.map(|s| s.0),
            Some(ContainerState::ContainerRunning)
        );
        assert_eq!(docker.inspects(), inspected);
        assert!(inspected > before);
    }

    #[tokio::test]
    async fn a_resync_inspects_only_what_its_events_missed() {
        let (index, docker, _root) = listed().await;
        docker.exit("c1", 0, false);
        docker.remove("c2");
        let before = docker.inspects();
        heal(&index, &*docker).await.unwrap();
        assert_eq!(
            docker.inspects(),
            before + 2,
            "c1 changed, c2 vanished, sb as it was"
        );
        assert_eq!(
            read(&index, &docker, "c1").await,
            Some((ContainerState::ContainerExited, "Completed".into()))
        );
        assert_eq!(index.pod_containers(&fake::full("ab")).len(), 1);
        heal(&index, &*docker).await.unwrap();
        assert_eq!(docker.inspects(), before + 2, "nothing left to heal");
    }

    #[tokio::test]
    async fn an_event_during_our_write_is_inspected_after_the_write() {
        let (index, docker, _root) = listed().await;
        let mut seen = SeenEvents::default();
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let writer = {
            let (index, docker) = (index.clone(), docker.clone());
            tokio::spawn(async move {
                index
                    .writing(&docker, &fake::full("c1"), async {
                        let _ = wait.await;
                    })
                    .await
            })
        };
        while !index.is_busy(&fake::full("c1")) {
            tokio::task::yield_now().await;
        }
        docker.exit("c1", 0, false);
        let before = docker.inspects();
        apply(
            &index,
            &docker,
            &fake::event("die", &fake::container("c1", "ab", "app"), time::now_ns()),
            &mut seen,
            None,
        );
        tokio::time::sleep(crate::index::EVENT_SETTLE * 2).await;
        assert_eq!(docker.inspects(), before, "inspected during our write");
        release.send(()).unwrap();
        writer.await.unwrap();
        assert_eq!(
            read(&index, &docker, "c1").await,
            Some((ContainerState::ContainerExited, "Completed".into()))
        );
    }

    #[test]
    fn replayed_events_are_skipped_and_older_stamps_are_not() {
        let mut seen = SeenEvents::default();
        assert!(seen.first_time("a", "start", 200));
        // Sent after it, stamped before it: a different event.
        assert!(seen.first_time("b", "start", 199));
        assert!(seen.first_time("a", "die", 200));
        assert_eq!(seen.newest_ns, 200);
        // The replay after a reconnect.
        assert!(!seen.first_time("a", "start", 200));
        assert!(!seen.first_time("b", "start", 199));
        assert!(seen.first_time("b", "die", 300));
    }

    #[test]
    fn an_oom_event_is_inspected_again_even_after_a_later_inspect() {
        assert!(inspect_again("oom", true));
        assert!(inspect_again("die", false));
        assert!(!inspect_again("die", true));
        assert!(!inspect_again("start", true));
    }

    #[test]
    fn only_the_latest_events_are_remembered() {
        let mut seen = SeenEvents::default();
        for ns in 0..(SEEN_EVENTS as i64 + 10) {
            assert!(seen.first_time("a", "start", ns));
        }
        assert_eq!(seen.order.len(), SEEN_EVENTS);
        assert_eq!(seen.keys.len(), SEEN_EVENTS);
        assert!(seen.first_time("a", "start", 0), "forgotten");
        assert!(!seen.first_time("a", "start", SEEN_EVENTS as i64 + 9));
    }
}
