//! The gRPC edge: builds the tonic server on the listener and wraps every
//! handler in one span, one error log and one conversion to a gRPC status.

use std::future::Future;
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::{Code, Response, Status};
use tracing::{Instrument, Span};

mod image_service;
mod runtime_service;

use crate::authority::AuthorityFix;
use crate::context::Context;
use crate::proto::image_service_server::ImageServiceServer;
use crate::proto::runtime_service_server::RuntimeServiceServer;

pub use crate::cri::{BoxStream, MAX_MESSAGE_SIZE, stream_batches};

/// What a tonic handler returns.
pub type Reply<T> = Result<Response<T>, Status>;

/// The CRI service: one value implements both `RuntimeService` and
/// `ImageService`; clones share the same [`Context`].
#[derive(Debug, Clone)]
pub struct Cri {
    pub ctx: Arc<Context>,
}

impl Cri {
    pub fn new(ctx: Arc<Context>) -> Self {
        Cri { ctx }
    }
}

/// Runs `work` inside `span`, logs its error once (at a level that fits
/// the code: kubelet's polls for gone objects are not news) and converts it.
pub async fn handle<T, F>(span: Span, work: F) -> Reply<T>
where
    F: Future<Output = crate::Result<T>>,
{
    async move {
        match work.await {
            Ok(value) => Ok(Response::new(value)),
            Err(err) => {
                let status = Status::from(err);
                match status.code() {
                    Code::NotFound => tracing::debug!(error = status.message(), "rpc failed"),
                    Code::InvalidArgument
                    | Code::FailedPrecondition
                    | Code::AlreadyExists
                    | Code::Unimplemented => {
                        tracing::info!(error = status.message(), "rpc refused")
                    }
                    Code::Unavailable
                    | Code::Unauthenticated
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted => {
                        tracing::warn!(error = status.message(), "rpc failed")
                    }
                    _ => tracing::error!(error = status.message(), "rpc failed"),
                }
                Err(status)
            }
        }
    }
    .instrument(span)
    .await
}

/// Serves CRI on `listener` until `stop` resolves; then stops accepting and
/// lets in-flight calls finish.
pub async fn serve(
    listener: UnixListener,
    cri: Cri,
    stop: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let runtime = RuntimeServiceServer::new(cri.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let image = ImageServiceServer::new(cri)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    Server::builder()
        .add_service(runtime)
        .add_service(image)
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener).map(|conn| conn.map(AuthorityFix::new)),
            stop,
        )
        .await
}
