//! The runtime services: pod sandboxes, containers, exec and streaming
//! requests, stats and metrics, status and events. The gRPC handlers that
//! call them are in `server::runtime_service`.

pub mod apparmor;
pub mod container;
pub mod events;
pub mod exec;
pub mod locks;
pub mod metrics;
pub mod pause;
pub mod sandbox;
pub mod stats;
pub mod status;
pub mod unified;
