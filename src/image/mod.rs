//! The image services (`pull`, `list`, `status`, `remove`, `fs`) and the
//! little state they share (image users by ID, the filesystem sampler).
//! The gRPC handlers that call them are in `server::image_service`.

pub mod convert;
pub mod fs;
pub mod list;
pub mod pull;
pub mod remove;
pub mod status;

use crate::docker::reference::ImageName;
use crate::error::{Error, Result};
use crate::proto::*;

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
