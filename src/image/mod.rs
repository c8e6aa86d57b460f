//! `ImageService`: thin handlers over the image domain functions.

use tonic::Request;

use crate::proto::image_service_server::ImageService;
use crate::proto::*;
use crate::server::{self, BoxStream, Cri, Reply};

#[tonic::async_trait]
impl ImageService for Cri {
    type StreamImagesStream = BoxStream<StreamImagesResponse>;

    async fn list_images(&self, _req: Request<ListImagesRequest>) -> Reply<ListImagesResponse> {
        Err(server::not_implemented("ListImages"))
    }

    async fn stream_images(
        &self,
        _req: Request<StreamImagesRequest>,
    ) -> Reply<Self::StreamImagesStream> {
        Err(server::not_implemented("StreamImages"))
    }

    async fn image_status(&self, _req: Request<ImageStatusRequest>) -> Reply<ImageStatusResponse> {
        Err(server::not_implemented("ImageStatus"))
    }

    async fn pull_image(&self, _req: Request<PullImageRequest>) -> Reply<PullImageResponse> {
        Err(server::not_implemented("PullImage"))
    }

    async fn remove_image(&self, _req: Request<RemoveImageRequest>) -> Reply<RemoveImageResponse> {
        Err(server::not_implemented("RemoveImage"))
    }

    async fn image_fs_info(&self, _req: Request<ImageFsInfoRequest>) -> Reply<ImageFsInfoResponse> {
        Err(server::not_implemented("ImageFsInfo"))
    }
}
