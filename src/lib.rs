//! dockercri: a Kubernetes CRI v1 runtime that carries out every sandbox,
//! container and image call on Docker Engine.

pub mod authority;
pub mod config;
pub mod context;
pub mod cri;
pub mod daemon;
pub mod docker;
pub mod error;
pub mod fsutil;
pub mod image;
pub mod index;
pub mod kernel_stats;
#[cfg(test)]
mod layers;
pub mod listener;
pub mod logs;
pub mod network;
pub mod runtime;
pub mod sandbox_record;
pub mod server;
pub mod streaming;

pub use error::{Error, Result};

/// The CRI v1 messages, server traits and clients, generated at build time
/// from `proto/runtime/v1/api.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("runtime.v1");
}
