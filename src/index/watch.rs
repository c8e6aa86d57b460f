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

use crate::context::Context;
use crate::docker::{labels, time};
use crate::error::Result;
use crate::index::Entry;

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

/// Follows Docker for as long as dockercri runs; hands every pod event it
/// applied to `publish` while `GetContainerEvents` has subscribers.
pub async fn run(ctx: Arc<Context>, publish: tokio::sync::mpsc::Sender<EventMessage>) {
    let mut seen = SeenEvents::default();
    loop {
        ctx.index.set_synced(false);
        let Ok(docker) = ctx.docker.get().await else {
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
        match relist(&ctx).await {
            Ok(count) => {
                ctx.index.set_synced(true);
                info!(containers = count, "index synced with docker");
            }
            Err(e) => {
                debug!(error = %e, "cannot list docker's containers for the index");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let mut resync = tokio::time::interval(ctx.config.index_resync_period);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(message)) => apply(&ctx, &message, &mut seen, &publish),
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
                    if let Err(e) = heal(&ctx).await {
                        debug!(error = %e, "index resync failed");
                    }
                }
            }
        }
        ctx.index.set_synced(false);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Applies one Docker event to the index and queues it for the subscribers.
fn apply(
    ctx: &Context,
    message: &EventMessage,
    seen: &mut SeenEvents,
    publish: &tokio::sync::mpsc::Sender<EventMessage>,
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
        ctx.index.applied_until(ns);
        return;
    }
    // A destroyed container is simply forgotten. One under a write of ours
    // is inspected after that write; one inspected since the event already
    // shows what it changed. Any other is dirty at once (its next read
    // inspects it) and inspected in the background a moment later: an
    // inspect waits for Docker's lock on the container (held through a
    // start), which must not hold up the events after it.
    if action == "oom" {
        ctx.index.oom_event(id);
    }
    if action == "destroy" {
        ctx.index.removed(id);
    } else if !ctx.index.busy_with_event(id)
        && !ctx.index.is_gone(id)
        && inspect_again(action, ctx.index.inspected_since(id, ns))
    {
        ctx.index.settle_soon(&ctx.docker, id);
    }
    ctx.index.applied_until(ns);
    if ctx.events.has_subscribers() && publish.try_send(message.clone()).is_err() {
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

/// Docker's pod containers (sandboxes and app containers), any state.
async fn docker_list(ctx: &Context) -> Result<Vec<bollard::models::ContainerSummary>> {
    ctx.docker
        .list_containers(&[labels::TYPE.to_string()])
        .await
}

/// Lists and inspects every pod container and replaces the index with it.
async fn relist(ctx: &Context) -> Result<usize> {
    let began = time::now_ns();
    let marks = ctx.index.marks();
    let ids: Vec<String> = docker_list(ctx)
        .await?
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    let root = ctx.config.root_directory.clone();
    let inspected: Vec<_> = futures_util::stream::iter(ids)
        .map(|id| async move { ctx.docker.inspect_container(&id, "container").await })
        .buffer_unordered(LIST_CONCURRENCY)
        .collect()
        .await;
    let mut entries = Vec::with_capacity(inspected.len());
    for result in inspected {
        // A container removed since the list is simply not there.
        let inspected = result?.map(|inspect| ctx.index.with_oom_events(inspect));
        if let Some(entry) = inspected.and_then(|inspect| Entry::load(inspect, &root)) {
            entries.push(entry);
        }
    }
    let count = entries.len();
    ctx.index.replace_all(entries, &marks);
    ctx.index.applied_until(began);
    Ok(count)
}

/// The resync: one Docker list compared with the index; containers that
/// appeared, vanished or changed state are inspected again.
async fn heal(ctx: &Context) -> Result<()> {
    let began = time::now_ns();
    let known = ctx.index.states();
    let listed: HashMap<String, String> = docker_list(ctx)
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
        ctx.index.applied_until(began);
        return Ok(());
    }
    info!(
        containers = stale.len(),
        "index resync found changes its events missed"
    );
    for id in stale {
        ctx.index.refresh(&ctx.docker, id).await?;
    }
    ctx.index.applied_until(began);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
