//! What the CRI protocol fixes for every layer: the names and versions
//! `Version` reports, the message size limit, the stream type of the
//! server-streaming RPCs.

use tonic::Status;

/// The CRI request API version dockercri answers with (as dockershim did).
pub const KUBE_API_VERSION: &str = "0.1.0";
/// `runtime_name` in `Version`: the engine we drive.
pub const RUNTIME_NAME: &str = "docker";
/// The CRI API version we speak.
pub const RUNTIME_API_VERSION: &str = "v1";

/// Largest gRPC message dockercri accepts or sends, both ways: kubelet's
/// own limit (`maxMsgSize` in its CRI client, 16 MiB), set on purpose
/// rather than tonic's defaults (4 MiB in, unbounded out). A bigger request
/// is refused by tonic before any handler runs (`OUT_OF_RANGE`).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The stream type of server-streaming RPCs.
pub type BoxStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Items per message of the `Stream*` list RPCs: small enough to stay far
/// below gRPC's message limit, large enough to keep messages few.
pub const STREAM_BATCH: usize = 500;

/// Sends `items` as a stream of batches, each wrapped by `wrap`.
pub fn stream_batches<T, R>(items: Vec<T>, wrap: impl Fn(Vec<T>) -> R) -> BoxStream<R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let mut batches = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        batches.push(Ok(wrap(items.by_ref().take(STREAM_BATCH).collect())));
    }
    Box::pin(tokio_stream::iter(batches))
}
