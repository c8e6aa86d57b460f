//! `GetContainerEvents`: Docker's event stream turned into CRI container
//! events (created, started, stopped, deleted) for pod containers and
//! sandboxes, each with its pod's sandbox status and container statuses.
//! One watcher follows Docker (resuming after dockerd restarts, without
//! gaps or repeats); subscribers each get a bounded queue, so a slow one
//! only loses its own events (and that is logged).

use std::sync::Arc;

use bollard::models::EventMessage;
use futures_util::StreamExt;
use futures_util::future::join_all;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tracing::warn;

use crate::context::Context;
use crate::cri::BoxStream;
use crate::docker::labels;
use crate::index::View;
use crate::proto::{ContainerEventResponse, ContainerEventType};
use crate::runtime::{container, sandbox};

/// Events a subscriber may fall behind by before it loses the oldest.
pub const SUBSCRIBER_BUFFER: usize = 1024;

/// The fan-out of container events to `GetContainerEvents` subscribers.
#[derive(Debug)]
pub struct EventHub {
    sender: broadcast::Sender<ContainerEventResponse>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            sender: broadcast::channel(SUBSCRIBER_BUFFER).0,
        }
    }
}

impl EventHub {
    /// A new subscriber's stream, from now on.
    pub fn subscribe(&self) -> BoxStream<ContainerEventResponse> {
        let stream = BroadcastStream::new(self.sender.subscribe()).filter_map(|item| async move {
            match item {
                Ok(event) => Some(Ok(event)),
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    warn!(
                        dropped = n,
                        "a slow GetContainerEvents subscriber lost events"
                    );
                    None
                }
            }
        });
        Box::pin(stream)
    }

    /// Whether anyone listens (events are not built for nobody).
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub(crate) fn publish(&self, event: ContainerEventResponse) {
        // No subscriber is fine: nobody is listening.
        let _ = self.sender.send(event);
    }
}

/// The CRI event for a Docker container action, if it is one of the four.
pub fn event_type(action: &str) -> Option<ContainerEventType> {
    match action {
        "create" => Some(ContainerEventType::ContainerCreatedEvent),
        "start" => Some(ContainerEventType::ContainerStartedEvent),
        "die" => Some(ContainerEventType::ContainerStoppedEvent),
        "destroy" => Some(ContainerEventType::ContainerDeletedEvent),
        _ => None,
    }
}

/// The CRI event for a Docker event about a pod container, with the pod's
/// status and its containers' statuses (read from the index).
pub(crate) async fn translate(
    ctx: &Context,
    message: &EventMessage,
) -> Option<ContainerEventResponse> {
    let kind = event_type(message.action.as_deref()?)?;
    let actor = message.actor.as_ref()?;
    let id = actor.id.clone()?;
    let attributes = actor.attributes.clone().unwrap_or_default();
    let pod = labels::pod_of(&id, &attributes)?;
    inspect_busy(ctx, &pod, &id).await;
    let pod_sandbox_status = match sandbox::status(ctx, &pod, false).await {
        Ok(r) => r.status,
        Err(_) => None,
    };
    // The event's own container as Docker has it now (dirty since the
    // event, or inspected above); the pod's others as the index knows them.
    let own = match kind {
        ContainerEventType::ContainerDeletedEvent => None,
        _ => container::status(ctx, &id, false)
            .await
            .ok()
            .and_then(|r| r.status),
    };
    let mut containers_statuses: Vec<_> = ctx
        .index
        .pod_containers(&pod)
        .iter()
        .filter(|e| e.id() != id)
        .filter_map(|e| match &e.view {
            View::Container { status, .. } => Some(status.clone()),
            _ => None,
        })
        .collect();
    containers_statuses.extend(own);
    Some(ContainerEventResponse {
        container_id: id,
        container_event_type: kind as i32,
        created_at: message
            .time_nano
            .unwrap_or_else(|| message.time.unwrap_or(0).saturating_mul(1_000_000_000)),
        pod_sandbox_status,
        containers_statuses,
    })
}

/// Inspects again, from Docker, the pod's sandbox and containers (the
/// event's own among them) that a write of ours is in flight on. The index
/// holds such a container as it was before the write until the write
/// returns, and Docker sends `start` and `die` while our StartContainer or
/// StopContainer call is still in flight: an event built from the index
/// would show its container created, or still running, and kubelet's
/// evented PLEG, which takes the event's statuses as the pod's, would
/// start the container again. Docker changes a container's state before it
/// sends the event, under the container's lock, which an inspect waits
/// for: the inspect shows what the event says. Containers no write is on
/// are read from the index (asking Docker for each would wait for their
/// locks and hold up every event after this one).
async fn inspect_busy(ctx: &Context, pod: &str, id: &str) {
    let mut ids: Vec<String> = ctx
        .index
        .pod_containers(pod)
        .iter()
        .map(|e| e.id().to_string())
        .collect();
    ids.extend([pod.to_string(), id.to_string()]);
    ids.sort();
    ids.dedup();
    ids.retain(|c| ctx.index.is_busy(c));
    let refreshed = join_all(ids.iter().map(|c| ctx.index.refresh(&ctx.docker, c))).await;
    for (c, result) in ids.iter().zip(refreshed) {
        if let Err(e) = result {
            tracing::debug!(container = %c, error = %e, "cannot inspect a container under a write for its event");
        }
    }
}

/// CRI events being translated at once (they are published in order).
const TRANSLATING: usize = 8;

/// Translates Docker's events into CRI events for the subscribers, in
/// order, off the index's path (a translation reads statuses, which may
/// wait for Docker).
pub fn publisher(ctx: Arc<Context>) -> tokio::sync::mpsc::Sender<EventMessage> {
    let (tx, rx) = tokio::sync::mpsc::channel::<EventMessage>(EVENT_QUEUE);
    tokio::spawn(async move {
        let translated = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|message| {
                let ctx = ctx.clone();
                async move { translate(&ctx, &message).await }
            })
            .buffered(TRANSLATING);
        futures_util::pin_mut!(translated);
        while let Some(event) = translated.next().await {
            if let Some(event) = event {
                ctx.events.publish(event);
            }
        }
    });
    tx
}

/// Docker events waiting for their translation.
const EVENT_QUEUE: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_actions_map_to_cri_events() {
        use ContainerEventType::*;
        for (action, want) in [
            ("create", Some(ContainerCreatedEvent)),
            ("start", Some(ContainerStartedEvent)),
            ("die", Some(ContainerStoppedEvent)),
            ("destroy", Some(ContainerDeletedEvent)),
            ("kill", None),
            ("exec_start: sh", None),
        ] {
            assert_eq!(event_type(action), want, "{action}");
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_only_its_own_events() {
        let hub = EventHub::default();
        let mut fast = hub.subscribe();
        let mut slow = hub.subscribe();
        let event = |n: i64| ContainerEventResponse {
            created_at: n,
            ..Default::default()
        };
        for n in 0..(SUBSCRIBER_BUFFER as i64 + 10) {
            hub.publish(event(n));
            // The fast one keeps up.
            assert_eq!(fast.next().await.unwrap().unwrap().created_at, n);
        }
        // The slow one skipped the oldest and goes on with what is left.
        let first = slow.next().await.unwrap().unwrap().created_at;
        assert_eq!(first, 10);
    }
}
