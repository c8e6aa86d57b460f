//! `UpdatePodSandboxResources`: kept in the sandbox's record.

use tracing::debug;

use super::{find, lock_key, save_record};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proto::LinuxContainerResources;
use crate::sandbox_record;

/// `UpdatePodSandboxResources`: kubelet resizes the pod cgroup itself; we
/// record the new values with the sandbox. Unknown ids are `NOT_FOUND`.
pub async fn update_resources(
    ctx: &Context,
    id: &str,
    overhead: Option<LinuxContainerResources>,
    resources: Option<LinuxContainerResources>,
) -> Result<()> {
    let sandbox = find(ctx, id)
        .await?
        .ok_or_else(|| Error::not_found("pod sandbox", id))?;
    let full_id = sandbox.id().to_string();
    let _pod = ctx.pod_locks.lock(&lock_key(&sandbox)).await;
    let root = &ctx.config.root_directory;
    let mut saved = sandbox_record::load(root, &full_id).unwrap_or_default();
    saved.overhead = overhead;
    saved.resources = resources;
    save_record(ctx, &full_id, saved).await?;
    ctx.index.settle(&ctx.docker, &full_id);
    debug!(sandbox = %full_id, "pod sandbox resources recorded");
    Ok(())
}
