//! `RuntimeService`: thin handlers that name the RPC's span and call the
//! runtime service function of their area.

use tonic::Request;
use tracing::{debug_span, info_span};

use crate::error::Error;
use crate::proto::runtime_service_server::RuntimeService;
use crate::proto::*;
use crate::runtime::{container, exec, metrics, sandbox, stats, status};
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
        req: Request<RunPodSandboxRequest>,
    ) -> Reply<RunPodSandboxResponse> {
        let req = req.into_inner();
        let config = req.config.unwrap_or_default();
        let meta = config.metadata.clone().unwrap_or_default();
        let span = info_span!("rpc", method = "RunPodSandbox", pod = %meta.name, namespace = %meta.namespace, uid = %meta.uid, attempt = meta.attempt);
        let work = async {
            let id = sandbox::run(&self.ctx, config, &req.runtime_handler).await?;
            Ok(RunPodSandboxResponse { pod_sandbox_id: id })
        };
        server::handle(span, work).await
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<StopPodSandboxRequest>,
    ) -> Reply<StopPodSandboxResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let span = info_span!("rpc", method = "StopPodSandbox", sandbox = %id);
        let work = async {
            sandbox::stop(&self.ctx, &id)
                .await
                .map(|()| StopPodSandboxResponse {})
        };
        server::handle(span, work).await
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<RemovePodSandboxRequest>,
    ) -> Reply<RemovePodSandboxResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let span = info_span!("rpc", method = "RemovePodSandbox", sandbox = %id);
        let work = async {
            sandbox::remove(&self.ctx, &id)
                .await
                .map(|()| RemovePodSandboxResponse {})
        };
        server::handle(span, work).await
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<PodSandboxStatusRequest>,
    ) -> Reply<PodSandboxStatusResponse> {
        let req = req.into_inner();
        let span = debug_span!("rpc", method = "PodSandboxStatus", sandbox = %req.pod_sandbox_id);
        server::handle(
            span,
            sandbox::status_with_containers(&self.ctx, &req.pod_sandbox_id, req.verbose),
        )
        .await
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<ListPodSandboxRequest>,
    ) -> Reply<ListPodSandboxResponse> {
        let filter = req.into_inner().filter;
        let span = debug_span!("rpc", method = "ListPodSandbox");
        let work = async {
            Ok(ListPodSandboxResponse {
                items: sandbox::list(&self.ctx, filter).await?,
            })
        };
        server::handle(span, work).await
    }

    async fn stream_pod_sandboxes(
        &self,
        req: Request<StreamPodSandboxesRequest>,
    ) -> Reply<Self::StreamPodSandboxesStream> {
        let filter = req.into_inner().filter;
        let span = debug_span!("rpc", method = "StreamPodSandboxes");
        let work = async {
            let items = sandbox::list(&self.ctx, filter).await?;
            Ok(server::stream_batches(items, |pod_sandboxes| {
                StreamPodSandboxesResponse { pod_sandboxes }
            }))
        };
        server::handle(span, work).await
    }

    async fn create_container(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Reply<CreateContainerResponse> {
        let req = req.into_inner();
        let config = req.config.unwrap_or_default();
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let span = info_span!("rpc", method = "CreateContainer", sandbox = %req.pod_sandbox_id, container = %name);
        let work = async {
            let id = container::create(&self.ctx, &req.pod_sandbox_id, config, req.sandbox_config)
                .await?;
            Ok(CreateContainerResponse { container_id: id })
        };
        server::handle(span, work).await
    }

    async fn start_container(
        &self,
        req: Request<StartContainerRequest>,
    ) -> Reply<StartContainerResponse> {
        let id = req.into_inner().container_id;
        let span = info_span!("rpc", method = "StartContainer", container = %id);
        let work = async {
            container::start(&self.ctx, &id)
                .await
                .map(|()| StartContainerResponse {})
        };
        server::handle(span, work).await
    }

    async fn stop_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Reply<StopContainerResponse> {
        let req = req.into_inner();
        let span = info_span!("rpc", method = "StopContainer", container = %req.container_id, timeout = req.timeout);
        let work = async {
            container::stop(&self.ctx, &req.container_id, req.timeout).await?;
            Ok(StopContainerResponse {})
        };
        server::handle(span, work).await
    }

    async fn remove_container(
        &self,
        req: Request<RemoveContainerRequest>,
    ) -> Reply<RemoveContainerResponse> {
        let id = req.into_inner().container_id;
        let span = info_span!("rpc", method = "RemoveContainer", container = %id);
        let work = async {
            container::remove(&self.ctx, &id)
                .await
                .map(|()| RemoveContainerResponse {})
        };
        server::handle(span, work).await
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Reply<ListContainersResponse> {
        let filter = req.into_inner().filter;
        let span = debug_span!("rpc", method = "ListContainers");
        let work = async {
            Ok(ListContainersResponse {
                containers: container::list(&self.ctx, filter).await?,
            })
        };
        server::handle(span, work).await
    }

    async fn stream_containers(
        &self,
        req: Request<StreamContainersRequest>,
    ) -> Reply<Self::StreamContainersStream> {
        let filter = req.into_inner().filter;
        let span = debug_span!("rpc", method = "StreamContainers");
        let work = async {
            let items = container::list(&self.ctx, filter).await?;
            Ok(server::stream_batches(items, |containers| {
                StreamContainersResponse { containers }
            }))
        };
        server::handle(span, work).await
    }

    async fn container_status(
        &self,
        req: Request<ContainerStatusRequest>,
    ) -> Reply<ContainerStatusResponse> {
        let req = req.into_inner();
        let span = debug_span!("rpc", method = "ContainerStatus", container = %req.container_id);
        server::handle(
            span,
            container::status_with_complete_log(&self.ctx, &req.container_id, req.verbose),
        )
        .await
    }

    async fn update_container_resources(
        &self,
        req: Request<UpdateContainerResourcesRequest>,
    ) -> Reply<UpdateContainerResourcesResponse> {
        let req = req.into_inner();
        let span =
            info_span!("rpc", method = "UpdateContainerResources", container = %req.container_id);
        let work = async {
            container::update_resources(&self.ctx, &req.container_id, req.linux).await?;
            Ok(UpdateContainerResourcesResponse {})
        };
        server::handle(span, work).await
    }

    async fn reopen_container_log(
        &self,
        req: Request<ReopenContainerLogRequest>,
    ) -> Reply<ReopenContainerLogResponse> {
        let id = req.into_inner().container_id;
        let span = info_span!("rpc", method = "ReopenContainerLog", container = %id);
        let work = async {
            container::reopen_log(&self.ctx, &id)
                .await
                .map(|()| ReopenContainerLogResponse {})
        };
        server::handle(span, work).await
    }

    async fn exec_sync(&self, req: Request<ExecSyncRequest>) -> Reply<ExecSyncResponse> {
        let req = req.into_inner();
        // Probes call this every few seconds: keep it out of the info log.
        let span = debug_span!("rpc", method = "ExecSync", container = %req.container_id, timeout = req.timeout);
        server::handle(
            span,
            exec::exec_sync(&self.ctx, &req.container_id, req.cmd, req.timeout),
        )
        .await
    }

    async fn exec(&self, req: Request<ExecRequest>) -> Reply<ExecResponse> {
        let req = req.into_inner();
        let span = info_span!("rpc", method = "Exec", container = %req.container_id, tty = req.tty, stdin = req.stdin);
        let work = async {
            Ok(ExecResponse {
                url: exec::exec(&self.ctx, req).await?,
            })
        };
        server::handle(span, work).await
    }

    async fn attach(&self, req: Request<AttachRequest>) -> Reply<AttachResponse> {
        let req = req.into_inner();
        let span = info_span!("rpc", method = "Attach", container = %req.container_id, tty = req.tty, stdin = req.stdin);
        let work = async {
            Ok(AttachResponse {
                url: exec::attach(&self.ctx, req).await?,
            })
        };
        server::handle(span, work).await
    }

    async fn port_forward(&self, req: Request<PortForwardRequest>) -> Reply<PortForwardResponse> {
        let req = req.into_inner();
        let span = info_span!("rpc", method = "PortForward", sandbox = %req.pod_sandbox_id, ports = ?req.port);
        let work = async {
            Ok(PortForwardResponse {
                url: exec::port_forward(&self.ctx, req).await?,
            })
        };
        server::handle(span, work).await
    }

    async fn container_stats(
        &self,
        req: Request<ContainerStatsRequest>,
    ) -> Reply<ContainerStatsResponse> {
        let id = req.into_inner().container_id;
        let span = debug_span!("rpc", method = "ContainerStats", container = %id);
        let work = async {
            Ok(ContainerStatsResponse {
                stats: Some(stats::container(&self.ctx, &id).await?),
            })
        };
        server::handle(span, work).await
    }

    async fn list_container_stats(
        &self,
        req: Request<ListContainerStatsRequest>,
    ) -> Reply<ListContainerStatsResponse> {
        let filter = req.into_inner().filter;
        let span = debug_span!("rpc", method = "ListContainerStats");
        let work = async {
            Ok(ListContainerStatsResponse {
                stats: stats::list_containers(&self.ctx, filter).await?,
            })
        };
        server::handle(span, work).await
    }

    async fn stream_container_stats(
        &self,
        req: Request<StreamContainerStatsRequest>,
    ) -> Reply<Self::StreamContainerStatsStream> {
        let filter = req.into_inner().filter;
        let span = debug_span!("rpc", method = "StreamContainerStats");
        let work = async {
            let items = stats::list_containers(&self.ctx, filter).await?;
            Ok(server::stream_batches(items, |container_stats| {
                StreamContainerStatsResponse { container_stats }
            }))
        };
        server::handle(span, work).await
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<PodSandboxStatsRequest>,
    ) -> Reply<PodSandboxStatsResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let span = debug_span!("rpc", method = "PodSandboxStats", sandbox = %id);
        let work = async {
            Ok(PodSandboxStatsResponse {
                stats: Some(stats::pod(&self.ctx, &id).await?),
            })
        };
        server::handle(span, work).await
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<ListPodSandboxStatsRequest>,
    ) -> Reply<ListPodSandboxStatsResponse> {
        let filter = req.into_inner().filter;
        let span = debug_span!("rpc", method = "ListPodSandboxStats");
        let work = async {
            Ok(ListPodSandboxStatsResponse {
                stats: stats::list_pods(&self.ctx, filter).await?,
            })
        };
        server::handle(span, work).await
    }

    async fn stream_pod_sandbox_stats(
        &self,
        req: Request<StreamPodSandboxStatsRequest>,
    ) -> Reply<Self::StreamPodSandboxStatsStream> {
        let filter = req.into_inner().filter;
        let span = debug_span!("rpc", method = "StreamPodSandboxStats");
        let work = async {
            let items = stats::list_pods(&self.ctx, filter).await?;
            Ok(server::stream_batches(items, |pod_sandbox_stats| {
                StreamPodSandboxStatsResponse { pod_sandbox_stats }
            }))
        };
        server::handle(span, work).await
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

    /// The one CRI call dockercri does not carry out (see the README).
    async fn checkpoint_container(
        &self,
        req: Request<CheckpointContainerRequest>,
    ) -> Reply<CheckpointContainerResponse> {
        let id = req.into_inner().container_id;
        let span = info_span!("rpc", method = "CheckpointContainer", container = %id);
        let work = async {
            Err(Error::Unimplemented {
                method: "CheckpointContainer",
                why: "Docker Engine's checkpoints (experimental, CRIU) are not the CRI's \
                      checkpoint archive that kubelet's forensic checkpointing expects"
                    .into(),
            })
        };
        server::handle(span, work).await
    }

    async fn get_container_events(
        &self,
        _req: Request<GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        let span = debug_span!("rpc", method = "GetContainerEvents");
        let work = async { Ok(self.ctx.events.subscribe()) };
        server::handle(span, work).await
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<ListMetricDescriptorsRequest>,
    ) -> Reply<ListMetricDescriptorsResponse> {
        let span = debug_span!("rpc", method = "ListMetricDescriptors");
        let work = async {
            Ok(ListMetricDescriptorsResponse {
                descriptors: metrics::descriptors(),
            })
        };
        server::handle(span, work).await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<ListPodSandboxMetricsRequest>,
    ) -> Reply<ListPodSandboxMetricsResponse> {
        let span = debug_span!("rpc", method = "ListPodSandboxMetrics");
        let work = async {
            Ok(ListPodSandboxMetricsResponse {
                pod_metrics: metrics::list(&self.ctx).await?,
            })
        };
        server::handle(span, work).await
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<StreamPodSandboxMetricsRequest>,
    ) -> Reply<Self::StreamPodSandboxMetricsStream> {
        let span = debug_span!("rpc", method = "StreamPodSandboxMetrics");
        let work = async {
            let items = metrics::list(&self.ctx).await?;
            Ok(server::stream_batches(items, |pod_sandbox_metrics| {
                StreamPodSandboxMetricsResponse {
                    pod_sandbox_metrics,
                }
            }))
        };
        server::handle(span, work).await
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
        req: Request<UpdatePodSandboxResourcesRequest>,
    ) -> Reply<UpdatePodSandboxResourcesResponse> {
        let req = req.into_inner();
        let span =
            info_span!("rpc", method = "UpdatePodSandboxResources", sandbox = %req.pod_sandbox_id);
        let work = async {
            sandbox::update_resources(&self.ctx, &req.pod_sandbox_id, req.overhead, req.resources)
                .await?;
            Ok(UpdatePodSandboxResourcesResponse {})
        };
        server::handle(span, work).await
    }
}
