//! `ListImages` and `StreamImages`: one `docker images` call, plus an
//! inspect of each image not seen before (for its config's `USER`, cached
//! by image ID). kubelet relists every few seconds; a warm relist costs one
//! Docker round trip.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use bollard::Docker;
use bollard::models::{ImageInspect, ImageSummary};
use bollard::query_parameters::ListImagesOptionsBuilder;
use futures_util::{StreamExt, TryStreamExt, stream};
use tracing::debug;

use crate::context::Context;
use crate::cri::BoxStream;
use crate::error::{Error, Result};
use crate::image::convert::{self, ImageMatcher, Pinned};
use crate::proto::{Image, ImageFilter, ListImagesResponse, StreamImagesResponse};

/// How many image inspects a (cold) list runs at once.
const INSPECT_CONCURRENCY: usize = 8;
/// Images per `StreamImages` message.
const STREAM_CHUNK: usize = 100;

/// Config `USER` by image ID. Entries of images Docker no longer lists are
/// dropped on each unfiltered list.
#[derive(Debug, Default)]
pub struct UserCache {
    users: Mutex<HashMap<String, String>>,
}

impl UserCache {
    fn get(&self, id: &str) -> Option<String> {
        self.users.lock().ok()?.get(id).cloned()
    }

    /// Records the user of an inspected image.
    pub fn remember(&self, inspect: &ImageInspect) {
        let (Some(id), Ok(mut users)) = (inspect.id.clone(), self.users.lock()) else {
            return;
        };
        let user = inspect
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        users.insert(id, user);
    }

    /// Drops a removed image.
    pub fn forget(&self, id: &str) {
        if let Ok(mut users) = self.users.lock() {
            users.remove(id);
        }
    }

    fn retain(&self, live: &HashSet<&str>) {
        if let Ok(mut users) = self.users.lock() {
            users.retain(|id, _| live.contains(id.as_str()));
        }
    }
}

/// `ListImages`.
pub async fn list(ctx: &Context, filter: Option<&ImageFilter>) -> Result<ListImagesResponse> {
    Ok(ListImagesResponse {
        images: images(ctx, filter).await?,
    })
}

/// `StreamImages`: the same images as `ListImages`, in chunks.
pub async fn stream(
    ctx: &Context,
    filter: Option<&ImageFilter>,
) -> Result<BoxStream<StreamImagesResponse>> {
    let images = images(ctx, filter).await?;
    let chunks: Vec<_> = images
        .chunks(STREAM_CHUNK)
        .map(|c| Ok(StreamImagesResponse { images: c.to_vec() }))
        .collect();
    Ok(Box::pin(tokio_stream::iter(chunks)))
}

/// The images Docker has, filtered, as CRI images.
pub async fn images(ctx: &Context, filter: Option<&ImageFilter>) -> Result<Vec<Image>> {
    let matcher = match filter
        .and_then(|f| f.image.as_ref())
        .map(|s| s.image.trim())
    {
        Some(text) if !text.is_empty() => Some(ImageMatcher::parse(text).map_err(|e| {
            Error::invalid(
                "filter.image",
                format!("{text:?} is not a valid reference: {e}"),
            )
        })?),
        _ => None,
    };
    let docker = ctx.docker.get().await?;
    let options = ListImagesOptionsBuilder::default().all(false).build();
    let summaries = docker
        .list_images(Some(options))
        .await
        .map_err(|e| ctx.docker.classify(e, "images", "list"))?;
    if matcher.is_none() {
        let live: HashSet<&str> = summaries.iter().map(|s| s.id.as_str()).collect();
        ctx.images.users.retain(&live);
    }
    let wanted: Vec<ImageSummary> = summaries
        .into_iter()
        .filter(|s| {
            matcher
                .as_ref()
                .is_none_or(|m| m.matches(&s.id, &s.repo_tags, &s.repo_digests))
        })
        .collect();
    let users = users_of(ctx, &docker, &wanted).await?;
    let pinned = Pinned::new(&ctx.config.pause_image);
    Ok(wanted
        .iter()
        .filter_map(|s| {
            let user = users.get(&s.id)?;
            Some(convert::image_from_summary(s, user, &pinned))
        })
        .collect())
}

/// Each image's `USER`, from the cache or by inspecting it. An image that
/// vanished between list and inspect is left out of the answer.
async fn users_of(
    ctx: &Context,
    docker: &Docker,
    images: &[ImageSummary],
) -> Result<HashMap<String, String>> {
    let mut users = HashMap::new();
    let mut missing = Vec::new();
    for s in images {
        match ctx.images.users.get(&s.id) {
            Some(user) => {
                users.insert(s.id.clone(), user);
            }
            None => missing.push(s.id.clone()),
        }
    }
    if missing.is_empty() {
        return Ok(users);
    }
    debug!(count = missing.len(), "inspecting images not seen before");
    let inspected: Vec<Option<ImageInspect>> = stream::iter(missing)
        .map(|id| async move {
            match docker.inspect_image(&id).await {
                Ok(inspect) => Ok(Some(inspect)),
                Err(e) => match ctx.docker.classify(e, "image", &id) {
                    Error::NotFound { .. } => Ok(None),
                    other => Err(other),
                },
            }
        })
        .buffer_unordered(INSPECT_CONCURRENCY)
        .try_collect()
        .await?;
    for inspect in inspected.into_iter().flatten() {
        ctx.images.users.remember(&inspect);
        if let Some(id) = inspect.id {
            let user = inspect.config.and_then(|c| c.user).unwrap_or_default();
            users.insert(id, user);
        }
    }
    Ok(users)
}
