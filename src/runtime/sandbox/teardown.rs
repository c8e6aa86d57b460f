//! `StopPodSandbox` and `RemovePodSandbox`: the pod's containers, its
//! network and the pause container; its record on disk goes with it.

use tracing::{info, warn};

use super::{find, for_each_container, lock_key, members, running_pid};
use crate::context::Context;
use crate::docker::client::Stop;
use crate::error::{Error, Result};
use crate::index::View;
use crate::network;
use crate::sandbox_record::{self, SandboxRecord};

/// Seconds a pod's containers get between SIGTERM and SIGKILL when the pod
/// is stopped (kubelet has normally stopped them already, with the pod's
/// own grace period).
const STOP_GRACE_SECS: i64 = 10;

/// `StopPodSandbox`: stops every container of the pod, then the pause
/// container. Unknown ids and stopped pods are success.
pub async fn stop(ctx: &Context, id: &str) -> Result<()> {
    let Some(sandbox) = find(ctx, id).await? else {
        // The pause container is gone; its pod network may not be.
        network::teardown(&ctx.network, id, None).await?;
        return Ok(());
    };
    let full_id = sandbox.id().to_string();
    let _pod = ctx.pod_locks.lock(&lock_key(&sandbox)).await;
    let containers = members(ctx, &full_id).await?;
    for_each_container(
        ctx,
        &containers,
        |c| ctx.docker.stop_container(c, STOP_GRACE_SECS),
        Stop::changed_nothing,
    )
    .await?;
    network::teardown(&ctx.network, &full_id, running_pid(&sandbox.inspect)).await?;
    let stop = ctx.docker.stop_container(&full_id, STOP_GRACE_SECS);
    ctx.index
        .writing_unless(&ctx.docker, &full_id, stop, Stop::changed_nothing)
        .await?;
    info!(sandbox = %full_id, "pod sandbox stopped");
    Ok(())
}

/// `RemovePodSandbox`: removes every container of the pod, the pause
/// container and the record (not the pod's log directory: kubelet's).
/// Unknown ids are success.
pub async fn remove(ctx: &Context, id: &str) -> Result<()> {
    let sandbox = find(ctx, id).await?;
    let full_id = sandbox
        .as_ref()
        .map_or_else(|| id.to_string(), |s| s.id().to_string());
    let _pod = match &sandbox {
        Some(s) => Some(ctx.pod_locks.lock(&lock_key(s)).await),
        None => None,
    };
    let containers = members(ctx, &full_id).await?;
    for_each_container(
        ctx,
        &containers,
        |c| ctx.docker.remove_container(c),
        |_| false,
    )
    .await?;
    // Normally done by the stop before; a remove alone must not leak it.
    network::teardown(
        &ctx.network,
        &full_id,
        sandbox.as_ref().and_then(|s| running_pid(&s.inspect)),
    )
    .await?;
    let is_id = full_id.chars().all(|c| c.is_ascii_hexdigit()) && !full_id.is_empty();
    // The index holds the record it read with the sandbox; the disk is
    // asked only when it has none.
    let saved = match sandbox.as_ref().map(|s| &s.view) {
        Some(View::Sandbox {
            record: Some(c), ..
        }) => Some(SandboxRecord::clone(c)),
        _ => is_id
            .then(|| sandbox_record::load(&ctx.config.root_directory, &full_id))
            .flatten(),
    };
    // The pod's log directory is not ours to delete: kubelet names it and
    // its garbage collector removes it once the pod is gone (containerd
    // leaves it too). Deleting a path a request named could take anything
    // on the node with it.
    // The record goes while Docker removes the pause container: work
    // that waits on the disk (busy with Docker's own writes) stays off the
    // call's critical path and off the async workers.
    let root = ctx.config.root_directory.clone();
    let roots = (root.clone(), ctx.config.cri_dockerd_root_directory.clone());
    let files_removed = remove_records(roots, is_id.then(|| full_id.clone()));
    if sandbox.is_none() {
        return files_removed.await;
    }
    let remove = ctx.docker.remove_container(&full_id);
    let (removed, files) = tokio::join!(
        ctx.index.removing(&ctx.docker, &full_id, remove),
        files_removed
    );
    if let Err(e) = removed {
        // The pause container is still there: so is its record.
        if let Some(saved) = saved.filter(|_| is_id) {
            let id = full_id.clone();
            let restored =
                tokio::task::spawn_blocking(move || sandbox_record::save(&root, &id, &saved)).await;
            if !matches!(restored, Ok(Ok(()))) {
                warn!(sandbox = %full_id, "cannot put back the record of a sandbox Docker did not remove");
            }
        }
        return Err(e);
    }
    files?;
    info!(sandbox = %full_id, "pod sandbox removed");
    Ok(())
}

/// Deletes a removed pod's record, and cri-dockerd's if it made the
/// pod (on a blocking thread).
async fn remove_records(
    (root, cri_dockerd_root): (std::path::PathBuf, std::path::PathBuf),
    record_of: Option<String>,
) -> Result<()> {
    let removed = tokio::task::spawn_blocking(move || {
        record_of.map_or(Ok(()), |id| {
            sandbox_record::remove_cri_dockerd(&cri_dockerd_root, &id);
            sandbox_record::remove(&root, &id)
        })
    })
    .await;
    removed.map_err(|e| Error::Internal(format!("removing a pod's record: {e}")))?
}
