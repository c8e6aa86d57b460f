//! The index's port to Docker: the two questions it asks (one container's
//! inspect, the list of pod containers). The Docker adapter answers them;
//! the index's unit tests use a Docker held in memory.

use std::sync::Arc;

use bollard::models::{ContainerInspectResponse, ContainerSummary};

use crate::docker::{DockerClient, labels};
use crate::error::Result;

/// What the index asks of Docker.
#[tonic::async_trait]
pub trait ContainerSource: Send + Sync + 'static {
    /// Container `id` (a full id, a unique prefix or a name) as Docker
    /// has it; `None` when Docker has no such container.
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInspectResponse>>;

    /// Every pod container (sandboxes and app containers), any state.
    async fn list_pod_containers(&self) -> Result<Vec<ContainerSummary>>;
}

#[tonic::async_trait]
impl ContainerSource for DockerClient {
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        DockerClient::inspect_container(self, id, "container").await
    }

    async fn list_pod_containers(&self) -> Result<Vec<ContainerSummary>> {
        self.list_containers(&[labels::TYPE.to_string()]).await
    }
}

#[tonic::async_trait]
impl<T: ContainerSource + ?Sized> ContainerSource for Arc<T> {
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        (**self).inspect_container(id).await
    }

    async fn list_pod_containers(&self) -> Result<Vec<ContainerSummary>> {
        (**self).list_pod_containers().await
    }
}
