//! `RemoveImage`: removes the image a reference resolves to, with every tag
//! and digest that names it (kubelet removes by ID). Idempotent; refuses,
//! naming the container, while a container uses the image.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveImageOptionsBuilder};
use tracing::{debug, info};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::image::requested;
use crate::image::status::inspect;
use crate::proto::{ImageSpec, RemoveImageResponse};

/// `RemoveImage`.
pub async fn remove(ctx: &Context, spec: Option<&ImageSpec>) -> Result<RemoveImageResponse> {
    let (input, name) = requested(spec)?;
    let Some(image) = inspect(ctx, &name.lookup(input)).await? else {
        debug!("image already gone");
        return Ok(RemoveImageResponse {});
    };
    let id = image
        .id
        .clone()
        .ok_or_else(|| Error::Internal(format!("docker reported image {input:?} without an ID")))?;
    let docker = ctx.docker.get().await?;
    refuse_if_in_use(ctx, &docker, input, &id).await?;

    // As cri-dockerd: each tag, each digest, then the ID, without force, so
    // Docker itself still refuses if a container appeared meanwhile. Gone
    // already (a concurrent remove) is fine.
    let names = image
        .repo_tags
        .iter()
        .flatten()
        .chain(image.repo_digests.iter().flatten())
        .filter(|n| !n.starts_with("<none>"))
        .cloned()
        .chain(std::iter::once(id.clone()));
    for name in names {
        let options = RemoveImageOptionsBuilder::default().noprune(false).build();
        if let Err(e) = docker.remove_image(&name, Some(options), None).await {
            match ctx.docker.classify(e, "image", &name) {
                Error::NotFound { .. } => continue,
                err => {
                    // A concurrent remove may have taken it meanwhile.
                    if inspect(ctx, &id).await?.is_none() {
                        break;
                    }
                    return Err(err);
                }
            }
        }
    }
    ctx.images.users.forget(&id);
    info!(id = %id, "removed image");
    Ok(RemoveImageResponse {})
}

/// `FAILED_PRECONDITION` naming the first container (running or not) whose
/// image is `id`.
async fn refuse_if_in_use(ctx: &Context, docker: &Docker, input: &str, id: &str) -> Result<()> {
    let filters = HashMap::from([("ancestor", vec![id.to_string()])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| ctx.docker.classify(e, "containers", "list"))?;
    let user = containers
        .iter()
        .find(|c| c.image_id.as_deref() == Some(id));
    if let Some(c) = user {
        let name = c
            .names
            .iter()
            .flatten()
            .next()
            .map(|n| n.trim_start_matches('/'))
            .unwrap_or_default();
        return Err(Error::FailedPrecondition {
            what: format!("image {input:?} ({id})"),
            why: format!(
                "in use by container {name:?} ({})",
                c.id.as_deref().unwrap_or_default()
            ),
        });
    }
    Ok(())
}
