//! The informer-style index of dockercri's sandboxes and containers: listed
//! once, then kept by Docker's event stream ([`watch`]) with a periodic
//! resync. Reads are answered from memory.
//!
//! Consistency with our own writes: every write through dockercri marks the
//! container *dirty* when Docker has answered; the next read of a dirty
//! container inspects it again before answering. The write's caller gets
//! Docker's answer at once and the container is inspected in the
//! background, so by the time kubelet reads it back it is normally clean.
//! A refresh only lands when nothing marked the container dirty again while
//! its inspect was in flight (a generation number per dirty mark), so a
//! slow inspect never overwrites a newer state.
//!
//! When the event stream is down the index is *not synced*: lists go to
//! Docker and lookups inspect, until the watch has listed everything again.

pub mod entry;
#[cfg(test)]
pub(crate) mod fake;
pub mod oom_watch;
pub mod source;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bollard::models::ContainerInspectResponse;
use futures_util::future::join_all;

use crate::error::Result;
pub use entry::{Entry, View};
use oom_watch::OomWatch;
pub use source::ContainerSource;

/// Sandboxes and containers by full Docker id.
#[derive(Debug)]
pub struct Index {
    root: PathBuf,
    state: RwLock<State>,
    synced: AtomicBool,
    /// Host clock (ns) up to which Docker's changes are in the index: the
    /// newest event applied, or the start of the latest list. See
    /// [`Index::complete_until`].
    complete_until: AtomicI64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Arc<Entry>>,
    /// Containers to inspect again before they are read, with the
    /// generation of their latest dirty mark.
    dirty: HashMap<String, u64>,
    next_generation: u64,
    /// Containers with a write of ours in flight: their events and list
    /// reads do not inspect them, which would only wait for Docker's lock
    /// on the container; the write refreshes them itself.
    busy: HashMap<String, Writes>,
    /// Containers our writes removed, with the generation of the removal
    /// and when: a refresh that began before it must not bring them back.
    gone: HashMap<String, (u64, Instant)>,
    /// Containers Docker sent an `oom` event for. Docker 26 on cgroup v2
    /// can lose the kill from the container's state (its exit handling
    /// overwrites the flag the OOM event set), but not the event.
    oom_killed: HashSet<String>,
    /// Containers whose parent cgroup counts their OOM kills (see
    /// [`oom_watch`]); `None` for one that cannot be watched.
    oom_watch: HashMap<String, Option<OomWatch>>,
    /// When (host clock, ns) the latest inspect of each container was
    /// sent, or it was last marked dirty (its next read inspects it): an
    /// event older than that is already in what it saw, or will be.
    inspected_at: HashMap<String, i64>,
}

impl State {
    /// Records that what Docker holds of container `id` now is seen: an
    /// inspect is being sent, or its next read inspects it. Only full ids
    /// (events name containers by them).
    fn seen_now(&mut self, id: &str) {
        if is_full_id(id) {
            let at = self.inspected_at.entry(id.to_string()).or_default();
            *at = (*at).max(crate::docker::time::now_ns());
        }
    }
}

/// The writes of ours in flight on one container.
#[derive(Debug, Default)]
struct Writes {
    count: usize,
    /// When (host clock, ns) the earliest of them began: Docker's changes
    /// from then on may not be in the entry until they end.
    since: i64,
    /// An event came for the container meanwhile (and was left to them).
    event_meanwhile: bool,
}

/// How long a removal is remembered (far beyond any inspect's deadline).
const GONE_MEMORY: Duration = Duration::from_secs(600);

/// How long after an event its container is inspected in the background.
/// Events of our own writes mostly arrive before Docker's answer to the
/// write (a create's, for one); by then the write has taken the container
/// and refreshes it itself. A burst of events on one container costs one
/// inspect. Reads meanwhile inspect it: the mark is set at once.
pub const EVENT_SETTLE: Duration = Duration::from_millis(100);

impl Index {
    /// An empty, unsynced index; `root` holds the sandbox records.
    pub fn new(root: PathBuf) -> Self {
        Index {
            root,
            state: RwLock::default(),
            synced: AtomicBool::new(false),
            complete_until: AtomicI64::new(0),
        }
    }

    /// The root directory the sandbox records are read from.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the index follows Docker (reads may skip Docker).
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub(crate) fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::Release);
    }

    /// The time (host clock, ns) up to which every change Docker made is in
    /// what the index answers (a dirty entry is inspected on read): the
    /// newest event applied, or the start of the latest full list or
    /// resync, whichever is later; 0 while the index does not follow
    /// Docker. An answer stamped with it never claims more than it holds:
    /// kubelet's evented PLEG keeps a pod status stamped later than an
    /// event and would drop that event.
    /// A write of ours in flight leaves its container as it was until the
    /// write ends (the events it causes do not mark it dirty), so the time
    /// stays before the earliest such write began.
    pub fn complete_until(&self) -> i64 {
        if !self.is_synced() {
            return 0;
        }
        let applied = self.complete_until.load(Ordering::Acquire);
        let writes_began = self.read().busy.values().map(|w| w.since).min();
        writes_began.map_or(applied, |began| applied.min(began.saturating_sub(1)))
    }

    /// Records that Docker's changes up to `ns` are applied.
    pub(crate) fn applied_until(&self, ns: i64) {
        self.complete_until.fetch_max(ns, Ordering::AcqRel);
    }

    /// Records Docker's `oom` event for container `id` (a full id).
    pub(crate) fn oom_event(&self, id: &str) {
        self.write().oom_killed.insert(id.to_string());
    }

    /// Watches container `id`'s parent cgroup for OOM kills from now on
    /// (replacing any earlier watch); `None`: it cannot be watched.
    pub fn watch_oom(&self, id: &str, watch: Option<OomWatch>) {
        self.write().oom_watch.insert(id.to_string(), watch);
    }

    /// Marks an exited container as OOM-killed when Docker's `oom` event
    /// was seen for it, or its parent cgroup counted a kill while it ran
    /// and it ended by SIGKILL ([`oom_watch`]), whatever Docker's state
    /// says; starts watching a running container's parent. Every inspect
    /// the index records goes through it (a read's refresh and a full list
    /// alike).
    pub(crate) fn with_oom_events(
        &self,
        mut inspect: ContainerInspectResponse,
    ) -> ContainerInspectResponse {
        let Some(id) = inspect.id.clone() else {
            return inspect;
        };
        let Some(state) = inspect.state.as_mut() else {
            return inspect;
        };
        if state.running == Some(true) {
            let pid = state.pid.filter(|p| *p > 0);
            if let Some(pid) = pid
                && !self.read().oom_watch.contains_key(&id)
            {
                let watch = OomWatch::start(pid);
                self.write().oom_watch.entry(id).or_insert(watch);
            }
            return inspect;
        }
        let (event, watch) = {
            let index = self.read();
            let watch = index.oom_watch.get(&id).cloned().flatten();
            (index.oom_killed.contains(&id), watch)
        };
        // The files are read outside the lock; the decision is kept.
        let counted = watch.map(|mut w| {
            let killed = w.killed(state.exit_code);
            self.write().oom_watch.insert(id.clone(), Some(w));
            killed
        });
        if counted == Some(true) && !event && state.oom_killed != Some(true) {
            tracing::info!(container = %id, "OOM kill counted by the container's parent cgroup; Docker did not report it");
        }
        if event || counted == Some(true) {
            state.oom_killed = Some(true);
        }
        inspect
    }

    /// Marks a container as changed by a write: the next read inspects it.
    /// Returns the mark's generation.
    pub fn invalidate(&self, id: &str) -> u64 {
        let mut state = self.write();
        state.next_generation += 1;
        let generation = state.next_generation;
        if !id.is_empty() {
            state.dirty.insert(id.to_string(), generation);
            state.seen_now(id);
        }
        generation
    }

    /// Whether a write of ours to the container is in flight; if so, the
    /// write learns that an event came meanwhile.
    pub fn busy_with_event(&self, id: &str) -> bool {
        match self.write().busy.get_mut(id) {
            Some(writes) => {
                writes.event_meanwhile = true;
                true
            }
            None => false,
        }
    }

    /// Whether a write of ours is in flight on container `id`.
    pub fn is_busy(&self, id: &str) -> bool {
        self.read().busy.contains_key(id)
    }

    /// Runs our Docker `write` to container `id`. Once Docker has
    /// answered, the container is dirty (its next read inspects it) and is
    /// inspected in the background, off the caller's path.
    pub async fn writing<T, S: ContainerSource>(
        self: &Arc<Self>,
        docker: &Arc<S>,
        id: &str,
        write: impl std::future::Future<Output = T>,
    ) -> T {
        self.writing_unless(docker, id, write, |_| false).await
    }

    /// [`Index::writing`] for a write Docker may answer with "nothing to
    /// do" (`unchanged`, a stop of a stopped container): then, if the
    /// index already holds the container as stopped and no event came
    /// during the write, it stands as it is and Docker is not asked again.
    pub async fn writing_unless<T, S: ContainerSource>(
        self: &Arc<Self>,
        docker: &Arc<S>,
        id: &str,
        write: impl std::future::Future<Output = T>,
        unchanged: impl FnOnce(&T) -> bool,
    ) -> T {
        let mut busy = Busy::new(self, id);
        let result = write.await;
        if !(unchanged(&result) && self.holds_stopped(id)) {
            self.settle(docker, id);
        }
        busy.settled = true;
        result
    }

    /// Whether the index holds container `id` clean and not running, with
    /// no event during the write in flight on it.
    fn holds_stopped(&self, id: &str) -> bool {
        let state = self.read();
        !state.dirty.contains_key(id)
            && state.busy.get(id).is_some_and(|w| !w.event_meanwhile)
            && state.entries.get(id).is_some_and(|e| !e.running())
    }

    /// Runs our Docker removal of container `id`; once Docker has it gone
    /// the index forgets it at once, without asking Docker again.
    pub async fn removing<T, E, S: ContainerSource>(
        self: &Arc<Self>,
        docker: &Arc<S>,
        id: &str,
        remove: impl std::future::Future<Output = std::result::Result<T, E>>,
    ) -> std::result::Result<T, E> {
        let mut busy = Busy::new(self, id);
        let result = remove.await;
        if result.is_ok() {
            self.removed(id);
        } else {
            self.settle(docker, id);
        }
        busy.settled = true;
        result
    }

    /// Forgets a container Docker no longer has (our removal, or its
    /// `destroy` event): nothing to inspect.
    pub fn removed(&self, id: &str) {
        let mut state = self.write();
        state.oom_killed.remove(id);
        state.oom_watch.remove(id);
        state.next_generation += 1;
        let generation = state.next_generation;
        state.entries.remove(id);
        state.dirty.remove(id);
        state.inspected_at.remove(id);
        let now = Instant::now();
        state
            .gone
            .retain(|_, (_, at)| now.duration_since(*at) < GONE_MEMORY);
        state.gone.insert(id.to_string(), (generation, now));
    }

    /// Whether our write removed the container.
    pub fn is_gone(&self, id: &str) -> bool {
        self.read().gone.contains_key(id)
    }

    /// Records that our write just changed container `id`: it is dirty
    /// until an inspect, started here in the background, lands. Should
    /// Docker not answer, the container stays dirty and its next read
    /// inspects it.
    pub fn settle<S: ContainerSource>(self: &Arc<Self>, docker: &Arc<S>, id: &str) {
        self.invalidate(id);
        let (index, docker, id) = (Arc::clone(self), Arc::clone(docker), id.to_string());
        tokio::spawn(async move {
            if let Err(e) = index.refresh(&docker, &id).await {
                tracing::debug!(container = %id, error = %e, "cannot refresh the index after a write");
            }
        });
    }

    /// For an event: marks container `id` dirty now and inspects it
    /// [`EVENT_SETTLE`] later, unless by then a write of ours is on it,
    /// a newer mark came (whose owner inspects it) or a read already did.
    pub fn settle_soon<S: ContainerSource>(self: &Arc<Self>, docker: &Arc<S>, id: &str) {
        let generation = self.invalidate(id);
        let (index, docker, id) = (Arc::clone(self), Arc::clone(docker), id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(EVENT_SETTLE).await;
            if !index.still_due(&id, generation) {
                return;
            }
            if let Err(e) = index.refresh(&docker, &id).await {
                tracing::debug!(container = %id, error = %e, "cannot refresh the index after an event");
            }
        });
    }

    /// Whether the dirty mark `generation` on `id` is still the latest
    /// and no write of ours is on the container.
    fn still_due(&self, id: &str, generation: u64) -> bool {
        let state = self.read();
        state.dirty.get(id) == Some(&generation) && !state.busy.contains_key(id)
    }

    /// Whether an inspect of container `id` was sent, or the container
    /// marked dirty, at or after `ns` (host clock): what an event stamped
    /// `ns` changed is in what that inspect saw (Docker changes the state
    /// before it sends the event), or in what the next read inspects.
    /// Should that inspect fail, the container stays dirty.
    pub(crate) fn inspected_since(&self, id: &str, ns: i64) -> bool {
        ns != 0 && self.read().inspected_at.get(id).is_some_and(|at| *at >= ns)
    }

    /// The sandbox or container with this id or unique id prefix. Answered
    /// from memory when the index is synced and the container is clean;
    /// otherwise Docker is asked and the answer recorded.
    pub async fn get<S: ContainerSource + ?Sized>(
        &self,
        docker: &S,
        id: &str,
    ) -> Result<Option<Arc<Entry>>> {
        if self.is_synced() {
            let known = {
                let state = self.read();
                resolve(&state, id).map(|full| {
                    let clean = !state.dirty.contains_key(&full);
                    (clean.then(|| state.entries.get(&full).cloned()), full)
                })
            };
            match known {
                Some((Some(clean), _)) => return Ok(clean),
                Some((None, full)) => return self.refresh(docker, &full).await,
                None => {}
            }
        }
        // Unknown here (perhaps made behind our back an instant ago), or
        // not synced: Docker resolves the id.
        self.refresh(docker, id).await
    }

    /// The pod sandbox with this id or unique id prefix, if there is one
    /// (any other container is not); an empty id is refused.
    pub async fn sandbox<S: ContainerSource + ?Sized>(
        &self,
        docker: &S,
        id: &str,
    ) -> Result<Option<Arc<Entry>>> {
        if id.is_empty() {
            return Err(crate::error::Error::invalid(
                "pod_sandbox_id",
                "must not be empty",
            ));
        }
        Ok(self.get(docker, id).await?.filter(|e| e.is_sandbox()))
    }

    /// The full id of the container the index knows by Docker name
    /// `name`; `None` when the index is not synced. The entry itself may
    /// be dirty: read it through [`Index::get`]. A container made an
    /// instant ago may not be known yet: a create that must not clash
    /// handles Docker's conflict.
    pub fn named(&self, name: &str) -> Option<Option<String>> {
        if !self.is_synced() {
            return None;
        }
        let state = self.read();
        let found = state.entries.iter().find(|(_, e)| {
            e.inspect.name.as_deref().map(|n| n.trim_start_matches('/')) == Some(name)
        });
        Some(found.map(|(id, _)| id.clone()))
    }

    /// Every entry, after dirty ones are inspected again; `None` when the
    /// index is not synced (the caller asks Docker instead).
    pub async fn snapshot<S: ContainerSource + ?Sized>(
        &self,
        docker: &S,
    ) -> Result<Option<Vec<Arc<Entry>>>> {
        // A container under a write of ours is inspected after it, but one
        // the index holds no entry for yet (made an instant ago) is
        // inspected now: a list must not leave it out.
        self.snapshot_inspecting(docker, |state, id| {
            !state.busy.contains_key(id) || !state.entries.contains_key(id)
        })
        .await
    }

    /// The ids of pod `pod`'s containers (its app containers and any that
    /// joined it, not the sandbox). Membership is in labels, which never
    /// change, so entries stand as they are, dirty or not; only containers
    /// the index holds no entry for yet (made an instant ago) are
    /// inspected. `None` while the index is not synced.
    pub async fn member_ids<S: ContainerSource + ?Sized>(
        &self,
        docker: &S,
        pod: &str,
    ) -> Result<Option<Vec<String>>> {
        let all = self
            .snapshot_inspecting(docker, |state, id| !state.entries.contains_key(id))
            .await?;
        Ok(all.map(|all| {
            all.iter()
                .filter(|e| !e.is_sandbox() && e.pod_id() == pod)
                .map(|e| e.id().to_string())
                .collect()
        }))
    }

    /// Every entry, after the dirty ones that are `due` are inspected
    /// again; `None` when the index is not synced.
    async fn snapshot_inspecting<S: ContainerSource + ?Sized>(
        &self,
        docker: &S,
        due: impl Fn(&State, &str) -> bool,
    ) -> Result<Option<Vec<Arc<Entry>>>> {
        if !self.is_synced() {
            return Ok(None);
        }
        let dirty: Vec<String> = {
            let state = self.read();
            state
                .dirty
                .keys()
                .filter(|id| due(&state, id))
                .cloned()
                .collect()
        };
        // What Docker just said of them stands, whether or not it landed in
        // the index (a write of ours may have marked one dirty again).
        let mut fresh: HashMap<&str, Option<Arc<Entry>>> = HashMap::new();
        let answers = join_all(dirty.iter().map(|id| self.refresh(docker, id))).await;
        for (id, answer) in dirty.iter().zip(answers) {
            fresh.insert(id, answer?);
        }
        if !self.is_synced() {
            return Ok(None);
        }
        let state = self.read();
        let mut all: Vec<Arc<Entry>> = state
            .entries
            .iter()
            .filter(|(id, _)| !fresh.contains_key(id.as_str()))
            .map(|(_, e)| e.clone())
            .collect();
        all.extend(fresh.into_values().flatten());
        Ok(Some(all))
    }

    /// The app containers of pod `pod` as the index holds them now, with
    /// no Docker round trip (an entry may be a moment behind a write).
    pub fn pod_containers(&self, pod: &str) -> Vec<Arc<Entry>> {
        self.read()
            .entries
            .values()
            .filter(|e| e.is_container() && e.pod_id() == pod)
            .cloned()
            .collect()
    }

    /// Inspects `id` (an id, prefix or name Docker resolves) and records
    /// what Docker says, unless a newer write marked it dirty meanwhile.
    /// Returns what Docker said either way.
    pub async fn refresh<S: ContainerSource + ?Sized>(
        &self,
        docker: &S,
        id: &str,
    ) -> Result<Option<Arc<Entry>>> {
        let (mark, began) = {
            let mut state = self.write();
            state.seen_now(id);
            (state.dirty.get(id).copied(), state.next_generation)
        };
        let found = docker
            .inspect_container(id)
            .await?
            .map(|inspect| self.with_oom_events(inspect));
        let full_id = found.as_ref().and_then(|c| c.id.clone());
        let entry = found
            .and_then(|inspect| Entry::load(inspect, &self.root))
            .map(Arc::new);
        let mut state = self.write();
        let key = full_id.unwrap_or_else(|| id.to_string());
        let current = state.dirty.get(&key).copied();
        // Our writes mark full ids. Asked by full id, the answer lands if
        // no newer mark came meanwhile; asked by a prefix or name, only
        // if the container is not waiting for its own refresh.
        let lands = if key == id {
            current == mark
        } else {
            current.is_none()
        } && state.gone.get(&key).is_none_or(|(g, _)| *g <= began);
        if entry.is_none() {
            state.inspected_at.remove(&key);
        }
        if lands {
            state.dirty.remove(&key);
            match &entry {
                Some(e) => {
                    state.entries.insert(key, e.clone());
                }
                None => {
                    state.entries.remove(&key);
                }
            }
        }
        Ok(entry)
    }

    /// Replaces the whole index with what Docker holds now (after a fresh
    /// start or when the event stream came back). Containers marked dirty
    /// since `marks` was taken stay dirty.
    pub(crate) fn replace_all(&self, entries: Vec<Entry>, marks: &HashMap<String, u64>) {
        let mut state = self.write();
        let fresh: HashMap<String, Arc<Entry>> = entries
            .into_iter()
            .map(|e| (e.id().to_string(), Arc::new(e)))
            .collect();
        state
            .dirty
            .retain(|id, generation| marks.get(id) != Some(generation));
        let gone = &state.gone;
        let fresh = fresh
            .into_iter()
            .filter(|(id, _)| !gone.contains_key(id))
            .collect();
        state.entries = fresh;
        let State {
            entries,
            dirty,
            inspected_at,
            oom_watch,
            ..
        } = &mut *state;
        inspected_at.retain(|id, _| entries.contains_key(id) || dirty.contains_key(id));
        oom_watch.retain(|id, _| entries.contains_key(id));
    }

    /// The dirty marks now, for [`Index::replace_all`].
    pub(crate) fn marks(&self) -> HashMap<String, u64> {
        self.read().dirty.clone()
    }

    /// Full ids and Docker state words of every entry, for the resync.
    pub(crate) fn states(&self) -> HashMap<String, String> {
        self.read()
            .entries
            .iter()
            .map(|(id, e)| (id.clone(), e.docker_state()))
            .collect()
    }
}

/// A write in flight on a container; should the write be dropped half-way
/// (the client went away), the container is left dirty for its next read.
struct Busy<'a> {
    index: &'a Index,
    id: &'a str,
    settled: bool,
}

impl<'a> Busy<'a> {
    fn new(index: &'a Index, id: &'a str) -> Self {
        let mut state = index.write();
        let writes = state.busy.entry(id.to_string()).or_insert_with(|| Writes {
            since: crate::docker::time::now_ns(),
            ..Writes::default()
        });
        writes.count += 1;
        drop(state);
        Busy {
            index,
            id,
            settled: false,
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.index.invalidate(self.id);
        }
        let mut state = self.index.write();
        if let Some(writes) = state.busy.get_mut(self.id) {
            writes.count -= 1;
            if writes.count == 0 {
                state.busy.remove(self.id);
            }
        }
    }
}

/// Whether `id` is a whole Docker id (not a prefix or a name).
fn is_full_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The full id `id` names among the known containers: itself, or the one
/// known id it is a unique prefix of.
fn resolve(state: &State, id: &str) -> Option<String> {
    if id.is_empty() {
        return None;
    }
    if state.entries.contains_key(id) || state.dirty.contains_key(id) {
        return Some(id.to_string());
    }
    let mut matches = state
        .entries
        .keys()
        .chain(state.dirty.keys())
        .filter(|k| k.starts_with(id));
    let first = matches.next()?.clone();
    matches.all(|k| *k == first).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::DockerClient;

    #[test]
    fn an_oom_event_marks_the_exited_container_oom_killed() {
        let index = Index::new(PathBuf::from("/nonexistent"));
        let inspect = |id: &str, running: bool| ContainerInspectResponse {
            id: Some(id.to_string()),
            state: Some(bollard::models::ContainerState {
                running: Some(running),
                exit_code: Some(if running { 0 } else { 137 }),
                oom_killed: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        let oom = |c: ContainerInspectResponse| c.state.unwrap().oom_killed;
        index.oom_event("a");
        assert_eq!(oom(index.with_oom_events(inspect("a", false))), Some(true));
        assert_eq!(oom(index.with_oom_events(inspect("a", true))), Some(false));
        assert_eq!(oom(index.with_oom_events(inspect("b", false))), Some(false));
        index.removed("a");
        assert_eq!(oom(index.with_oom_events(inspect("a", false))), Some(false));
    }

    fn state_with(ids: &[&str], dirty: &[&str]) -> State {
        let mut s = State::default();
        for id in ids {
            let inspect = bollard::models::ContainerInspectResponse {
                id: Some(id.to_string()),
                ..Default::default()
            };
            // A bare entry is enough for id resolution.
            s.entries.insert(
                id.to_string(),
                Arc::new(Entry {
                    inspect,
                    view: View::Container {
                        status: Default::default(),
                        item: Default::default(),
                    },
                }),
            );
        }
        for (n, id) in dirty.iter().enumerate() {
            s.dirty.insert(id.to_string(), n as u64);
        }
        s
    }

    #[test]
    fn ids_resolve_by_unique_prefix() {
        let s = state_with(&["abc123", "abd456"], &["fff999"]);
        for (asked, want) in [
            ("abc123", Some("abc123")),
            ("abc", Some("abc123")),
            ("abd", Some("abd456")),
            ("ab", None),
            ("fff", Some("fff999")),
            ("zzz", None),
            ("", None),
        ] {
            assert_eq!(resolve(&s, asked).as_deref(), want, "{asked}");
        }
    }

    #[test]
    fn a_full_relist_keeps_newer_dirty_marks() {
        let index = Index::new(PathBuf::from("/nonexistent"));
        index.invalidate("old");
        let marks = index.marks();
        index.invalidate("new");
        index.replace_all(vec![], &marks);
        let dirty = index.marks();
        assert!(!dirty.contains_key("old"));
        assert!(dirty.contains_key("new"));
    }

    #[test]
    fn names_are_answered_only_while_synced() {
        let index = Index::new(PathBuf::from("/nonexistent"));
        {
            let mut state = index.write();
            *state = state_with(&["abc123"], &[]);
            let mut entry = (*state.entries["abc123"]).clone();
            entry.inspect.name = Some("/k8s_POD_web_default_uid_0".into());
            state.entries.insert("abc123".into(), Arc::new(entry));
        }
        assert!(
            index.named("k8s_POD_web_default_uid_0").is_none(),
            "not synced"
        );
        index.set_synced(true);
        let found = index.named("k8s_POD_web_default_uid_0").unwrap().unwrap();
        assert_eq!(found, "abc123");
        assert!(index.named("k8s_POD_db_default_uid_0").unwrap().is_none());
    }

    /// A client whose every call fails (no daemon at that path).
    fn no_docker() -> Arc<DockerClient> {
        Arc::new(DockerClient::new(crate::config::DockerEndpoint::Unix(
            "/nonexistent/docker.sock".into(),
        )))
    }

    /// An index holding one clean, exited container `id`.
    fn holding_exited(id: &str) -> Arc<Index> {
        let index = Arc::new(Index::new(PathBuf::from("/nonexistent")));
        let mut state = state_with(&[id], &[]);
        let mut entry = (*state.entries[id]).clone();
        entry.inspect.state = Some(bollard::models::ContainerState {
            running: Some(false),
            ..Default::default()
        });
        state.entries.insert(id.into(), Arc::new(entry));
        *index.write() = state;
        index
    }

    #[tokio::test]
    async fn a_write_that_changed_nothing_leaves_a_stopped_entry_clean() {
        let docker = no_docker();
        let id = "c".repeat(64);
        let index = holding_exited(&id);
        // Docker: "not running, nothing to do".
        index
            .writing_unless(&docker, &id, async { true }, |nothing| *nothing)
            .await;
        assert!(!index.marks().contains_key(&id), "no inspect asked");
        // Docker did something: the next read inspects.
        index
            .writing_unless(&docker, &id, async { false }, |nothing| *nothing)
            .await;
        assert!(index.marks().contains_key(&id));
    }

    #[tokio::test]
    async fn a_write_that_changed_nothing_still_settles_after_an_event_meanwhile() {
        let docker = no_docker();
        let id = "d".repeat(64);
        let index = holding_exited(&id);
        let write = async {
            // An event for it arrives while the write is in flight.
            assert!(index.busy_with_event(&id));
            true
        };
        index
            .writing_unless(&docker, &id, write, |nothing| *nothing)
            .await;
        assert!(index.marks().contains_key(&id), "the event is not lost");
        assert!(!index.busy_with_event(&id), "the write is over");
    }

    #[tokio::test]
    async fn an_event_inspect_waits_and_gives_way_to_a_newer_mark_or_a_write() {
        let index = Arc::new(Index::new(PathBuf::from("/nonexistent")));
        let generation = index.invalidate("e");
        assert!(index.marks().contains_key("e"), "dirty at once");
        assert!(index.still_due("e", generation));
        let newer = index.invalidate("e");
        assert!(
            !index.still_due("e", generation),
            "the newer mark's owner inspects"
        );
        let busy = Busy::new(&index, "e");
        assert!(
            !index.still_due("e", newer),
            "the write inspects after itself"
        );
        drop(busy);
        assert!(
            !index.still_due("e", newer),
            "the dropped write left its own mark"
        );
    }

    #[test]
    fn a_destroyed_container_is_forgotten() {
        let id = "f".repeat(64);
        let index = holding_exited(&id);
        index.invalidate(&id);
        index.removed(&id);
        assert!(index.read().entries.is_empty());
        assert!(!index.marks().contains_key(&id));
        assert!(index.is_gone(&id));
    }

    #[test]
    fn events_older_than_the_latest_inspect_are_already_seen() {
        let index = Index::new(PathBuf::from("/nonexistent"));
        index.write().inspected_at.insert("abc".into(), 1_000);
        assert!(index.inspected_since("abc", 999));
        assert!(index.inspected_since("abc", 1_000));
        assert!(!index.inspected_since("abc", 1_001), "a newer event");
        assert!(!index.inspected_since("abc", 0), "an event without a time");
        assert!(!index.inspected_since("other", 1), "never inspected");
        let full = "b".repeat(64);
        let before = crate::docker::time::now_ns();
        index.invalidate(&full);
        assert!(
            index.inspected_since(&full, before),
            "dirty since: its next read inspects"
        );
        assert!(is_full_id(&"a".repeat(64)) && !is_full_id("abc") && !is_full_id(&"g".repeat(64)));
    }
}
