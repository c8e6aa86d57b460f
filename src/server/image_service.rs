//! `ImageService`: thin handlers that name the RPC's span and call the
//! image service function.

use tonic::Request;
use tracing::{debug_span, info_span};

use crate::image::{fs, list, pull, remove, status};
use crate::proto::image_service_server::ImageService;
use crate::proto::*;
use crate::server::{self, BoxStream, Cri, Reply};

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
