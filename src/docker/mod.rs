//! Everything that talks to Docker Engine or translates to and from it.

pub mod client;
pub mod reference;

pub use client::DockerClient;
