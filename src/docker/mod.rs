//! Everything that talks to Docker Engine or translates to and from it.

pub mod client;

pub use client::DockerClient;
