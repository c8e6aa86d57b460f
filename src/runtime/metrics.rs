//! `ListMetricDescriptors`, `ListPodSandboxMetrics` and
//! `StreamPodSandboxMetrics`: the cAdvisor metric set (see
//! [`crate::kernel_stats::cadvisor`]) of every running pod and its running
//! containers, read from the kernel as stats are. Like cAdvisor, which sees
//! live cgroups only, stopped pods and containers are left out.

use std::collections::HashMap;

use bollard::models::ContainerSummary;
use futures_util::future::join_all;

use crate::context::Context;
use crate::docker::{container_status, labels, sandbox_status, time};
use crate::error::{Error, Result};
use crate::kernel_stats::cadvisor::{self, Layer, Reading, Subject};
use crate::kernel_stats::{self as kernel, cgroup};
use crate::proto::{ContainerMetrics, MetricDescriptor, PodSandboxMetrics};
use crate::runtime::stats::{facts, pod_containers, pod_sample, running};

/// `ListMetricDescriptors`: fixed, so kubelet may ask once at start.
pub fn descriptors() -> Vec<MetricDescriptor> {
    cadvisor::descriptors()
}

/// `ListPodSandboxMetrics`: the pod containers from the index (one Docker
/// list per kind while it is not synced), then kernel counters.
pub async fn list(ctx: &Context) -> Result<Vec<PodSandboxMetrics>> {
    let any = HashMap::new();
    let (sandboxes, app) = tokio::try_join!(
        pod_containers(ctx, labels::TYPE_SANDBOX, &any),
        pod_containers(ctx, labels::TYPE_CONTAINER, &any),
    )?;
    let device = ctx.docker_root().await;
    let mut members: HashMap<&str, Vec<&ContainerSummary>> = HashMap::new();
    for c in app.iter().filter(|c| running(c)) {
        if let Some(sandbox) = c.labels.as_ref().and_then(|l| l.get(labels::SANDBOX_ID)) {
            members.entry(sandbox.as_str()).or_default().push(c);
        }
    }
    let pods = sandboxes.iter().filter(|sb| running(sb)).map(|sb| {
        let mine = sb
            .id
            .as_deref()
            .and_then(|id| members.get(id))
            .map(Vec::as_slice)
            .unwrap_or_default();
        one_pod(ctx, sb, mine, &device)
    });
    let mut out = Vec::new();
    for result in join_all(pods).await {
        match result {
            Ok(m) => out.push(m),
            // Removed between the list and its inspect.
            Err(e) => tracing::debug!(error = %e, "pod metrics skipped"),
        }
    }
    let mut live: Vec<String> = app
        .iter()
        .chain(&sandboxes)
        .filter_map(|c| c.id.clone())
        .collect();
    live.extend(
        sandboxes
            .iter()
            .filter_map(|c| Some(format!("pod:{}", c.id.as_ref()?))),
    );
    ctx.stats.retain(&live);
    ctx.forget_stats_facts(&live);
    Ok(out)
}

/// The metrics of a running sandbox: its own (pod-level) and its running
/// containers'.
async fn one_pod(
    ctx: &Context,
    sb: &ContainerSummary,
    members: &[&ContainerSummary],
    device: &str,
) -> Result<PodSandboxMetrics> {
    let pod = sandbox_status::from_summary(sb)
        .ok_or_else(|| Error::not_found("pod sandbox", sb.id.as_deref().unwrap_or_default()))?;
    let meta = pod.metadata.clone().unwrap_or_default();
    let now = time::now_ns();
    let meta = &meta;
    let read = members.iter().map(|c| async move {
        let item = container_status::from_summary(c)?;
        let f = facts(ctx, &item.id, true).await.ok()?;
        let sample = ctx
            .stats
            .paths(&item.id, f.pid)
            .map(|p| cgroup::read(&p))
            .unwrap_or_default();
        let layer = f.upper_dir.as_deref().map(|upper| Layer {
            device: device.to_string(),
            bytes: ctx
                .stats
                .layer(upper, device, now)
                .used_bytes
                .map(|b| b.value)
                .unwrap_or(0),
        });
        let who = Subject {
            container: item.metadata.map(|m| m.name).unwrap_or_default(),
            id: item.id,
            image: item.image.map(|i| i.image).unwrap_or_default(),
            name: docker_name(c),
            namespace: meta.namespace.clone(),
            pod: meta.name.clone(),
        };
        let reading = Reading {
            sample,
            interfaces: Vec::new(),
            layer,
            start_time: c.created,
        };
        Some((who, reading))
    });
    let readings: Vec<(Subject, Reading)> = join_all(read).await.into_iter().flatten().collect();
    let samples: Vec<cgroup::Sample> = readings.iter().map(|(_, r)| r.sample.clone()).collect();
    let (sample, f) = pod_sample(ctx, sb, &pod.id, &samples).await?;
    // A host-network pod's interfaces are the node's, not the pod's.
    let host_network = sb
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref())
        == Some("host");
    let interfaces = (f.pid > 0 && !host_network)
        .then(|| std::fs::read_to_string(format!("/proc/{}/net/dev", f.pid)).ok())
        .flatten()
        .map(|text| kernel::interfaces(&text))
        .unwrap_or_default();
    // The pod's own cgroup, as cAdvisor labels it: no container, name or image.
    let who = Subject {
        id: pod.id.clone(),
        namespace: meta.namespace.clone(),
        pod: meta.name.clone(),
        ..Default::default()
    };
    let reading = Reading {
        sample,
        interfaces,
        layer: None,
        start_time: sb.created,
    };
    Ok(PodSandboxMetrics {
        pod_sandbox_id: pod.id,
        metrics: cadvisor::build(now, &who, &reading),
        container_metrics: readings
            .iter()
            .map(|(who, r)| ContainerMetrics {
                container_id: who.id.clone(),
                metrics: cadvisor::build(now, who, r),
            })
            .collect(),
    })
}

/// Docker's name of a container, without the leading slash (cAdvisor's
/// `name` label).
fn docker_name(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}
