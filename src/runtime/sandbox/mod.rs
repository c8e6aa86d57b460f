//! Pod sandboxes: run, stop, remove, status, list, resources. A sandbox is
//! a pause container; its CRI config is recorded under the root
//! directory so that a restart of dockercri loses nothing.

mod resources;
mod run;
mod status;
mod teardown;

pub use resources::update_resources;
pub(crate) use run::read_seccomp_profile;
pub use run::run;
pub use status::{list, status, status_with_containers};
pub use teardown::{remove, stop};

use std::sync::Arc;

use futures_util::future::join_all;

use crate::context::Context;
use crate::docker::labels;
use crate::error::{Error, Result};
use crate::index::Entry;
use crate::sandbox_record::{self, SandboxRecord};

/// Writes a sandbox's record on a blocking thread: the write waits
/// for the disk (it is synced, to survive a power loss).
async fn save_record(ctx: &Context, id: &str, saved: SandboxRecord) -> Result<()> {
    let root = ctx.config.root_directory.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || sandbox_record::save(&root, &id, &saved))
        .await
        .map_err(|e| Error::Internal(format!("writing a sandbox record: {e}")))?
}

/// The sandbox with this id, if there is one (any other container is not).
pub(crate) async fn find(ctx: &Context, id: &str) -> Result<Option<Arc<Entry>>> {
    ctx.index.sandbox(&ctx.docker, id).await
}

/// The containers of sandbox `id` (running or not): from the index, which
/// also holds what joined the pod beside dockercri (labelled as a pod
/// container) once Docker has reported it; from Docker while the index is
/// not synced.
async fn members(ctx: &Context, id: &str) -> Result<Vec<String>> {
    if let Some(ids) = ctx.index.member_ids(&ctx.docker, id).await? {
        return Ok(ids);
    }
    let containers = ctx
        .docker
        .list_containers(&[format!("{}={id}", labels::SANDBOX_ID)])
        .await?;
    Ok(containers.into_iter().filter_map(|c| c.id).collect())
}

/// Stops (or removes) containers at once, each recorded in the index
/// (unless Docker's answer says it `changed_nothing`).
async fn for_each_container<'a, F, Fut, T>(
    ctx: &'a Context,
    ids: &'a [String],
    act: F,
    changed_nothing: fn(&Result<T>) -> bool,
) -> Result<()>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + 'a,
{
    let results = join_all(ids.iter().map(|id| {
        let done = act(id);
        ctx.index
            .writing_unless(&ctx.docker, id, done, changed_nothing)
    }))
    .await;
    results.into_iter().try_for_each(|r| r.map(drop))
}

/// The pause container's pid while it runs.
fn running_pid(sandbox: &bollard::models::ContainerInspectResponse) -> Option<i64> {
    let state = sandbox.state.as_ref()?;
    (state.running == Some(true)).then_some(state.pid?)
}

/// The key of the pod lock: the sandbox's Docker name.
pub(crate) fn lock_key(sandbox: &Entry) -> String {
    sandbox
        .inspect
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string()
}
