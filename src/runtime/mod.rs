//! `RuntimeService`: thin handlers that name the RPC's span and call the
//! domain function of their area.

pub mod status;

use tonic::Request;
use tracing::{debug_span, info_span};

use crate::proto::runtime_service_server::RuntimeService;
use crate::proto::*;
use crate::server::{self, BoxStream, Cri, Reply};

#[tonic::async_trait]
impl RuntimeService for Cri {
    type StreamPodSandboxesStream = BoxStream<StreamPodSandboxesResponse>;
    type StreamContainersStream = BoxStream<StreamContainersResponse>;
    type StreamContainerStatsStream = BoxStream<StreamContainerStatsResponse>;
    type StreamPodSandboxStatsStream = BoxStream<StreamPodSandboxStatsResponse>;
    type GetContainerEventsStream = BoxStream<ContainerEventResponse>;
    type StreamPodSandboxMetricsStream = BoxStream<StreamPodSandboxMetricsResponse>;

    async fn version(&self, _req: Request<VersionRequest>) -> Reply<VersionResponse> {
        let span = debug_span!("rpc", method = "Version");
        server::handle(span, status::version(&self.ctx)).await
    }

    async fn run_pod_sandbox(
        &self,
        _req: Request<RunPodSandboxRequest>,
    ) -> Reply<RunPodSandboxResponse> {
        Err(server::not_implemented("RunPodSandbox"))
    }

    async fn stop_pod_sandbox(
        &self,
        _req: Request<StopPodSandboxRequest>,
    ) -> Reply<StopPodSandboxResponse> {
        Err(server::not_implemented("StopPodSandbox"))
    }

    async fn remove_pod_sandbox(
        &self,
        _req: Request<RemovePodSandboxRequest>,
    ) -> Reply<RemovePodSandboxResponse> {
        Err(server::not_implemented("RemovePodSandbox"))
    }

    async fn pod_sandbox_status(
        &self,
        _req: Request<PodSandboxStatusRequest>,
    ) -> Reply<PodSandboxStatusResponse> {
        Err(server::not_implemented("PodSandboxStatus"))
    }

    async fn list_pod_sandbox(
        &self,
        _req: Request<ListPodSandboxRequest>,
    ) -> Reply<ListPodSandboxResponse> {
        Err(server::not_implemented("ListPodSandbox"))
    }

    async fn stream_pod_sandboxes(
        &self,
        _req: Request<StreamPodSandboxesRequest>,
    ) -> Reply<Self::StreamPodSandboxesStream> {
        Err(server::not_implemented("StreamPodSandboxes"))
    }

    async fn create_container(
        &self,
        _req: Request<CreateContainerRequest>,
    ) -> Reply<CreateContainerResponse> {
        Err(server::not_implemented("CreateContainer"))
    }

    async fn start_container(
        &self,
        _req: Request<StartContainerRequest>,
    ) -> Reply<StartContainerResponse> {
        Err(server::not_implemented("StartContainer"))
    }

    async fn stop_container(
        &self,
        _req: Request<StopContainerRequest>,
    ) -> Reply<StopContainerResponse> {
        Err(server::not_implemented("StopContainer"))
    }

    async fn remove_container(
        &self,
        _req: Request<RemoveContainerRequest>,
    ) -> Reply<RemoveContainerResponse> {
        Err(server::not_implemented("RemoveContainer"))
    }

    async fn list_containers(
        &self,
        _req: Request<ListContainersRequest>,
    ) -> Reply<ListContainersResponse> {
        Err(server::not_implemented("ListContainers"))
    }

    async fn stream_containers(
        &self,
        _req: Request<StreamContainersRequest>,
    ) -> Reply<Self::StreamContainersStream> {
        Err(server::not_implemented("StreamContainers"))
    }

    async fn container_status(
        &self,
        _req: Request<ContainerStatusRequest>,
    ) -> Reply<ContainerStatusResponse> {
        Err(server::not_implemented("ContainerStatus"))
    }

    async fn update_container_resources(
        &self,
        _req: Request<UpdateContainerResourcesRequest>,
    ) -> Reply<UpdateContainerResourcesResponse> {
        Err(server::not_implemented("UpdateContainerResources"))
    }

    async fn reopen_container_log(
        &self,
        _req: Request<ReopenContainerLogRequest>,
    ) -> Reply<ReopenContainerLogResponse> {
        Err(server::not_implemented("ReopenContainerLog"))
    }

    async fn exec_sync(&self, _req: Request<ExecSyncRequest>) -> Reply<ExecSyncResponse> {
        Err(server::not_implemented("ExecSync"))
    }

    async fn exec(&self, _req: Request<ExecRequest>) -> Reply<ExecResponse> {
        Err(server::not_implemented("Exec"))
    }

    async fn attach(&self, _req: Request<AttachRequest>) -> Reply<AttachResponse> {
        Err(server::not_implemented("Attach"))
    }

    async fn port_forward(&self, _req: Request<PortForwardRequest>) -> Reply<PortForwardResponse> {
        Err(server::not_implemented("PortForward"))
    }

    async fn container_stats(
        &self,
        _req: Request<ContainerStatsRequest>,
    ) -> Reply<ContainerStatsResponse> {
        Err(server::not_implemented("ContainerStats"))
    }

    async fn list_container_stats(
        &self,
        _req: Request<ListContainerStatsRequest>,
    ) -> Reply<ListContainerStatsResponse> {
        Err(server::not_implemented("ListContainerStats"))
    }

    async fn stream_container_stats(
        &self,
        _req: Request<StreamContainerStatsRequest>,
    ) -> Reply<Self::StreamContainerStatsStream> {
        Err(server::not_implemented("StreamContainerStats"))
    }

    async fn pod_sandbox_stats(
        &self,
        _req: Request<PodSandboxStatsRequest>,
    ) -> Reply<PodSandboxStatsResponse> {
        Err(server::not_implemented("PodSandboxStats"))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _req: Request<ListPodSandboxStatsRequest>,
    ) -> Reply<ListPodSandboxStatsResponse> {
        Err(server::not_implemented("ListPodSandboxStats"))
    }

    async fn stream_pod_sandbox_stats(
        &self,
        _req: Request<StreamPodSandboxStatsRequest>,
    ) -> Reply<Self::StreamPodSandboxStatsStream> {
        Err(server::not_implemented("StreamPodSandboxStats"))
    }

    async fn update_runtime_config(
        &self,
        req: Request<UpdateRuntimeConfigRequest>,
    ) -> Reply<UpdateRuntimeConfigResponse> {
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        let span = info_span!("rpc", method = "UpdateRuntimeConfig", pod_cidr = %cidr);
        let work = async {
            status::update_runtime_config(&self.ctx, &cidr).map(|()| UpdateRuntimeConfigResponse {})
        };
        server::handle(span, work).await
    }

    async fn status(&self, req: Request<StatusRequest>) -> Reply<StatusResponse> {
        let verbose = req.into_inner().verbose;
        let span = debug_span!("rpc", method = "Status", verbose);
        server::handle(span, status::status(&self.ctx, verbose)).await
    }

    async fn checkpoint_container(
        &self,
        _req: Request<CheckpointContainerRequest>,
    ) -> Reply<CheckpointContainerResponse> {
        Err(server::not_implemented("CheckpointContainer"))
    }

    async fn get_container_events(
        &self,
        _req: Request<GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        Err(server::not_implemented("GetContainerEvents"))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<ListMetricDescriptorsRequest>,
    ) -> Reply<ListMetricDescriptorsResponse> {
        Err(server::not_implemented("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<ListPodSandboxMetricsRequest>,
    ) -> Reply<ListPodSandboxMetricsResponse> {
        Err(server::not_implemented("ListPodSandboxMetrics"))
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<StreamPodSandboxMetricsRequest>,
    ) -> Reply<Self::StreamPodSandboxMetricsStream> {
        Err(server::not_implemented("StreamPodSandboxMetrics"))
    }

    async fn runtime_config(
        &self,
        _req: Request<RuntimeConfigRequest>,
    ) -> Reply<RuntimeConfigResponse> {
        let span = debug_span!("rpc", method = "RuntimeConfig");
        server::handle(span, status::runtime_config(&self.ctx)).await
    }

    async fn update_pod_sandbox_resources(
        &self,
        _req: Request<UpdatePodSandboxResourcesRequest>,
    ) -> Reply<UpdatePodSandboxResourcesResponse> {
        Err(server::not_implemented("UpdatePodSandboxResources"))
    }
}
