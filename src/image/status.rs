//! `ImageStatus`: the image an ID, short ID, tag, digest or short name
//! resolves to, as Docker resolves it. A missing image is an empty answer,
//! not an error (kubelet asks before every pull).

use std::collections::HashMap;

use bollard::models::ImageInspect;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::image::convert::{self, Pinned};
use crate::image::requested;
use crate::proto::{ImageSpec, ImageStatusResponse};

/// Key of the verbose `info` map that holds the image's inspect JSON.
pub const INFO_KEY: &str = "info";

/// `ImageStatus`.
pub async fn status(
    ctx: &Context,
    spec: Option<&ImageSpec>,
    verbose: bool,
) -> Result<ImageStatusResponse> {
    let (input, name) = requested(spec)?;
    let Some(inspect) = inspect(ctx, &name.lookup(input)).await? else {
        return Ok(ImageStatusResponse::default());
    };
    ctx.images.users.remember(&inspect);
    let pinned = Pinned::new(&ctx.config.pause_image);
    let mut info = HashMap::new();
    if verbose {
        let json = serde_json::to_string(&inspect)
            .map_err(|e| Error::Internal(format!("cannot encode image {input:?} as JSON: {e}")))?;
        info.insert(INFO_KEY.to_string(), json);
    }
    Ok(ImageStatusResponse {
        image: Some(convert::image_from_inspect(&inspect, &pinned)),
        info,
    })
}

/// Docker's view of the image `lookup` names, or `None` when there is none.
pub async fn inspect(ctx: &Context, lookup: &str) -> Result<Option<ImageInspect>> {
    let docker = ctx.docker.get().await?;
    match docker.inspect_image(lookup).await {
        Ok(inspect) => Ok(Some(inspect)),
        Err(e) => match ctx.docker.classify(e, "image", lookup) {
            Error::NotFound { .. } => Ok(None),
            other => Err(other),
        },
    }
}
