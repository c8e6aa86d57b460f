//! Everything that talks to Docker Engine or translates to and from it.

pub mod capabilities;
pub mod cgroup_parent;
pub mod client;
pub mod container_body;
pub mod container_status;
pub mod labels;
pub mod naming;
pub mod oom_score;
pub mod reference;
pub mod sandbox_body;
pub mod sandbox_status;
pub mod time;

pub use client::DockerClient;
