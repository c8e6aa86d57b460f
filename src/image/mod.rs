//! `ImageService`: thin handlers over the image domain functions
//! (`pull`, `list`, `status`, `remove`, `fs`), and the little state they
//! share (image users by ID, the filesystem sampler).

pub mod convert;
pub mod fs;
pub mod list;
pub mod pull;
pub mod remove;
pub mod status;

use tonic::Request;
use tracing::{debug_span, info_span};

use crate::docker::reference::ImageName;
use crate::error::{Error, Result};
use crate::proto::image_service_server::ImageService;
use crate::proto::*;
use crate::server::{self, BoxStream, Cri, Reply};

/// What the image RPCs keep between calls.
#[derive(Debug, Default)]
pub struct ImageState {
    /// Each image's config `USER`, by image ID (configs never change under
    /// an ID), so a relist only inspects images it has not seen.
    pub users: list::UserCache,
    /// The last filesystem usage sample and its background refresher.
    pub fs: fs::FsSampler,
}

/// The image a request names: its trimmed text and what it parses as.
/// Refuses an empty or malformed name with `INVALID_ARGUMENT`.
pub(crate) fn requested(spec: Option<&ImageSpec>) -> Result<(&str, ImageName)> {
    let input = spec.map(|s| s.image.trim()).unwrap_or_default();
    if input.is_empty() {
        return Err(Error::invalid("image", "no image given"));
    }
    let name = ImageName::parse(input)
        .map_err(|e| Error::invalid("image", format!("{input:?} is not a valid reference: {e}")))?;
    Ok((input, name))
}

/// The image name of a request, for its span.
fn shown(spec: Option<&ImageSpec>) -> &str {
    spec.map(|s| s.image.as_str()).unwrap_or_default()
}

#[tonic::async_trait]
impl ImageService for Cri {
    type StreamImagesStream = BoxStream<StreamImagesResponse>;

    async fn list_images(&self, req: Request<ListImagesRequest>) -> Reply<ListImagesResponse> {
        let req = req.into_inner();
        let span = debug_span!("rpc", method = "ListImages");
        server::handle(span, list::list(&self.ctx, req.filter.as_ref())).await
    }

    async fn stream_images(
        &self,
        req: Request<StreamImagesRequest>,
    ) -> Reply<Self::StreamImagesStream> {
        let req = req.into_inner();
        let span = debug_span!("rpc", method = "StreamImages");
        server::handle(span, list::stream(&self.ctx, req.filter.as_ref())).await
    }

    async fn image_status(&self, req: Request<ImageStatusRequest>) -> Reply<ImageStatusResponse> {
        let req = req.into_inner();
        let span = debug_span!("rpc", method = "ImageStatus", image = %shown(req.image.as_ref()));
        server::handle(
            span,
            status::status(&self.ctx, req.image.as_ref(), req.verbose),
        )
        .await
    }

    async fn pull_image(&self, req: Request<PullImageRequest>) -> Reply<PullImageResponse> {
        let req = req.into_inner();
        let span = info_span!("rpc", method = "PullImage", image = %shown(req.image.as_ref()));
        server::handle(
            span,
            pull::pull(&self.ctx, req.image.as_ref(), req.auth.as_ref()),
        )
        .await
    }

    async fn remove_image(&self, req: Request<RemoveImageRequest>) -> Reply<RemoveImageResponse> {
        let req = req.into_inner();
        let span = info_span!("rpc", method = "RemoveImage", image = %shown(req.image.as_ref()));
        server::handle(span, remove::remove(&self.ctx, req.image.as_ref())).await
    }

    async fn image_fs_info(&self, _req: Request<ImageFsInfoRequest>) -> Reply<ImageFsInfoResponse> {
        let span = debug_span!("rpc", method = "ImageFsInfo");
        server::handle(span, fs::info(&self.ctx)).await
    }
}
