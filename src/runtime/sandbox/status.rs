//! `PodSandboxStatus` and `ListPodSandbox`, from the index.

use std::collections::HashMap;

use futures_util::future::join_all;

use super::{find, members};
use crate::context::Context;
use crate::docker::{labels, sandbox_status, time};
use crate::error::{Error, Result};
use crate::index::View;
use crate::network;
use crate::proto::{
    ContainerStatus, LinuxContainerResources, PodIp, PodSandbox, PodSandboxFilter,
    PodSandboxNetworkStatus, PodSandboxStatusResponse,
};
use crate::runtime::container;
use crate::sandbox_record::SandboxRecord;

/// `PodSandboxStatus` as kubelet reads it: the sandbox with the statuses
/// of all its containers, stamped with the time up to which the answer is
/// complete. kubelet's evented PLEG (`GetPodStatus`, 1.27–1.36) takes a
/// pod's containers from this answer alone when `timestamp` is set, so an
/// empty list would have it start them all again. While the index does
/// not follow Docker the timestamp is 0: kubelet then asks for each
/// container itself, and drops nothing for a later event.
pub async fn status_with_containers(
    ctx: &Context,
    id: &str,
    verbose: bool,
) -> Result<PodSandboxStatusResponse> {
    // Taken before anything is read: what follows holds at least that much.
    let timestamp = ctx.index.complete_until().min(time::now_ns());
    let mut reply = status(ctx, id, verbose).await?;
    let pod_id = reply
        .status
        .as_ref()
        .map(|s| s.id.clone())
        .unwrap_or_default();
    reply.containers_statuses = container_statuses(ctx, &pod_id).await?;
    reply.timestamp = timestamp;
    Ok(reply)
}

/// The statuses of sandbox `pod_id`'s app containers, as `ContainerStatus`
/// reports them (one removed meanwhile is left out).
async fn container_statuses(ctx: &Context, pod_id: &str) -> Result<Vec<ContainerStatus>> {
    let ids = members(ctx, pod_id).await?;
    let replies = join_all(ids.iter().map(|id| container::status(ctx, id, false))).await;
    let mut statuses = Vec::with_capacity(replies.len());
    for reply in replies {
        match reply {
            Ok(r) => statuses.extend(r.status),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    statuses.sort_by_key(|s| s.created_at);
    Ok(statuses)
}

/// The sandbox's own status; unknown ids are `NOT_FOUND`. Events use it
/// too, with the containers they read themselves.
pub async fn status(ctx: &Context, id: &str, verbose: bool) -> Result<PodSandboxStatusResponse> {
    let sandbox = find(ctx, id)
        .await?
        .ok_or_else(|| Error::not_found("pod sandbox", id))?;
    let View::Sandbox { status, record, .. } = &sandbox.view else {
        return Err(Error::not_found("pod sandbox", id));
    };
    let mut status = status.clone();
    // A CNI pod's IPs are in the CNI result cache, not in Docker.
    if let Some((ip, others)) = network::pod_ips(&ctx.network, sandbox.id()) {
        let additional_ips = others.into_iter().map(|ip| PodIp { ip }).collect();
        status.network = Some(PodSandboxNetworkStatus { ip, additional_ips });
    }
    let mut info = HashMap::new();
    if verbose {
        info.insert(
            "info".to_string(),
            verbose_info(&sandbox.inspect, record.as_deref()).to_string(),
        );
    }
    Ok(PodSandboxStatusResponse {
        status: Some(status),
        info,
        containers_statuses: vec![],
        timestamp: time::now_ns(),
    })
}

fn verbose_info(
    sandbox: &bollard::models::ContainerInspectResponse,
    saved: Option<&SandboxRecord>,
) -> serde_json::Value {
    let host = sandbox.host_config.clone().unwrap_or_default();
    let config = saved.and_then(|c| c.config.as_ref());
    serde_json::json!({
        "pid": sandbox.state.as_ref().and_then(|s| s.pid),
        "image": sandbox.config.as_ref().and_then(|c| c.image.clone()),
        "networkMode": host.network_mode,
        "cgroupParent": host.cgroup_parent,
        "runtime": host.runtime,
        "dns": config.and_then(|c| c.dns_config.as_ref()).map(|d| serde_json::json!({
            "servers": d.servers, "searches": d.searches, "options": d.options,
        })),
        "portMappings": config.map(|c| c.port_mappings.iter().map(|p| serde_json::json!({
            "protocol": p.protocol, "containerPort": p.container_port,
            "hostPort": p.host_port, "hostIP": p.host_ip,
        })).collect::<Vec<_>>()),
        "resources": saved.and_then(|c| c.resources.as_ref()).map(resources_json),
        "overhead": saved.and_then(|c| c.overhead.as_ref()).map(resources_json),
        "checkpointed": saved.is_some(),
    })
}

fn resources_json(r: &LinuxContainerResources) -> serde_json::Value {
    serde_json::json!({
        "cpuPeriod": r.cpu_period, "cpuQuota": r.cpu_quota, "cpuShares": r.cpu_shares,
        "memoryLimitInBytes": r.memory_limit_in_bytes, "cpusetCpus": r.cpuset_cpus,
        "cpusetMems": r.cpuset_mems,
    })
}

/// `ListPodSandbox` with every filter applied.
pub async fn list(ctx: &Context, filter: Option<PodSandboxFilter>) -> Result<Vec<PodSandbox>> {
    let filter = filter.unwrap_or_default();
    let wanted = |s: &PodSandbox| {
        s.id.starts_with(&filter.id)
            && filter.state.as_ref().is_none_or(|v| v.state == s.state)
            && labels::matches_selector(&s.labels, &filter.label_selector)
    };
    if let Some(all) = ctx.index.snapshot(&ctx.docker).await? {
        return Ok(all
            .iter()
            .filter_map(|e| match &e.view {
                View::Sandbox { item, .. } if wanted(item) => Some(item.clone()),
                _ => None,
            })
            .collect());
    }
    let selector = labels::filters(labels::TYPE_SANDBOX, &filter.label_selector);
    let containers = ctx.docker.list_containers(&selector).await?;
    Ok(containers
        .iter()
        .filter_map(sandbox_status::from_summary)
        .filter(|s| wanted(s))
        .collect())
}
