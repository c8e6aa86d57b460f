//! `ContainerStats`, `ListContainerStats`, `PodSandboxStats`,
//! `ListPodSandboxStats` (and their `Stream*` forms): the pod containers
//! from the index (a Docker list while it is not synced), then kernel
//! counters. The index's inspects carry the facts stats need; without it,
//! Docker is inspected once per container process.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum};

use crate::context::Context;
use crate::docker::{container_status, labels, naming, sandbox_status, time};
use crate::error::{Error, Result};
use crate::kernel_stats::{self, cgroup};
use crate::proto::{
    ContainerAttributes, ContainerStats, ContainerStatsFilter, LinuxPodSandboxStats,
    PodSandboxAttributes, PodSandboxStats, PodSandboxStatsFilter,
};

/// What stats need from `docker inspect`, kept per container id.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub pid: i64,
    pub upper_dir: Option<PathBuf>,
    pub cgroup_parent: String,
}

impl Facts {
    fn of(inspect: &ContainerInspectResponse) -> Facts {
        Facts {
            pid: inspect.state.as_ref().and_then(|s| s.pid).unwrap_or(0),
            upper_dir: inspect
                .graph_driver
                .as_ref()
                .and_then(|g| g.data.get("UpperDir").cloned())
                .map(PathBuf::from),
            cgroup_parent: inspect
                .host_config
                .as_ref()
                .and_then(|h| h.cgroup_parent.clone())
                .unwrap_or_default(),
        }
    }
}

/// Docker's pod containers of one kind (`labels::TYPE_SANDBOX` or
/// `TYPE_CONTAINER`) carrying `selector`'s labels, as Docker's list shows
/// them. From the index when it is synced, whose inspects also give the
/// facts: then stats need no Docker call at all.
pub(crate) async fn pod_containers(
    ctx: &Context,
    kind: &str,
    selector: &HashMap<String, String>,
) -> Result<Vec<ContainerSummary>> {
    let Some(all) = ctx.index.snapshot(&ctx.docker).await? else {
        return ctx
            .docker
            .list_containers(&labels::filters(kind, selector))
            .await;
    };
    let wanted = |l: &HashMap<String, String>| {
        l.get(labels::TYPE).map(String::as_str) == Some(kind)
            && selector.iter().all(|(k, v)| l.get(k) == Some(v))
    };
    Ok(all
        .iter()
        .filter(|e| {
            e.inspect
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .is_some_and(wanted)
        })
        .map(|e| {
            ctx.remember_stats_facts(e.id(), Facts::of(&e.inspect));
            container_status::summary_from_inspect(&e.inspect)
        })
        .collect())
}

/// The inspect facts of container `id` (cached while it stays running or
/// stopped).
pub(crate) async fn facts(ctx: &Context, id: &str, running: bool) -> Result<Facts> {
    if let Some(f) = ctx.stats_facts(id).filter(|f| (f.pid > 0) == running) {
        return Ok(f);
    }
    let c = ctx
        .docker
        .inspect_container(id, "container")
        .await?
        .ok_or_else(|| Error::not_found("container", id))?;
    let f = Facts::of(&c);
    ctx.remember_stats_facts(id, f.clone());
    Ok(f)
}

pub(crate) fn running(c: &ContainerSummary) -> bool {
    c.state == Some(ContainerSummaryStateEnum::RUNNING)
}

async fn one_container(
    ctx: &Context,
    c: &ContainerSummary,
    item: crate::proto::Container,
) -> Result<(ContainerStats, cgroup::Sample)> {
    let now = time::now_ns();
    let f = facts(ctx, &item.id, running(c)).await?;
    let sample = if running(c) {
        ctx.stats
            .paths(&item.id, f.pid)
            .map(|p| cgroup::read(&p))
            .unwrap_or_default()
    } else {
        cgroup::Sample::default()
    };
    let mountpoint = ctx.docker_root().await;
    let stats = ContainerStats {
        attributes: Some(ContainerAttributes {
            id: item.id.clone(),
            metadata: item.metadata.clone(),
            labels: item.labels.clone(),
            annotations: item.annotations.clone(),
        }),
        cpu: ctx.stats.cpu(&item.id, now, &sample),
        memory: kernel_stats::memory(now, &sample),
        writable_layer: f
            .upper_dir
            .as_deref()
            .map(|u| ctx.stats.layer(u, &mountpoint, now)),
        swap: kernel_stats::swap(now, &sample),
        io: None,
    };
    Ok((stats, sample))
}

async fn containers(
    ctx: &Context,
    selector: &HashMap<String, String>,
) -> Result<Vec<ContainerSummary>> {
    pod_containers(ctx, labels::TYPE_CONTAINER, selector).await
}

/// `ListContainerStats` with its filter.
pub async fn list_containers(
    ctx: &Context,
    filter: Option<ContainerStatsFilter>,
) -> Result<Vec<ContainerStats>> {
    let filter = filter.unwrap_or_default();
    let all = containers(ctx, &filter.label_selector).await?;
    let live: Vec<String> = all.iter().filter_map(|c| c.id.clone()).collect();
    let picked: Vec<_> = all
        .iter()
        .filter_map(|c| Some((c, container_status::from_summary(c)?)))
        .filter(|(_, item)| item.id.starts_with(&filter.id))
        .filter(|(_, item)| item.pod_sandbox_id.starts_with(&filter.pod_sandbox_id))
        .collect();
    let results = futures_util::future::join_all(
        picked
            .into_iter()
            .map(|(c, item)| one_container(ctx, c, item)),
    )
    .await;
    if filter.id.is_empty() && filter.pod_sandbox_id.is_empty() && filter.label_selector.is_empty()
    {
        ctx.stats.retain(&live);
        ctx.forget_stats_facts(&live);
    }
    // A container removed between the list and its inspect is skipped.
    Ok(results
        .into_iter()
        .filter_map(|r| r.ok().map(|(s, _)| s))
        .collect())
}

/// `ContainerStats`; unknown ids are `NOT_FOUND`.
pub async fn container(ctx: &Context, id: &str) -> Result<ContainerStats> {
    if id.is_empty() {
        return Err(Error::invalid("container_id", "must not be empty"));
    }
    let filter = ContainerStatsFilter {
        id: id.to_string(),
        ..Default::default()
    };
    let mut found = list_containers(ctx, Some(filter)).await?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::not_found("container", id)),
        n => Err(Error::invalid(
            "container_id",
            format!("{id:?} is ambiguous ({n} containers)"),
        )),
    }
}

/// `ListPodSandboxStats` with its filter.
pub async fn list_pods(
    ctx: &Context,
    filter: Option<PodSandboxStatsFilter>,
) -> Result<Vec<PodSandboxStats>> {
    let filter = filter.unwrap_or_default();
    let sandboxes = pod_containers(ctx, labels::TYPE_SANDBOX, &filter.label_selector).await?;
    let app = containers(ctx, &HashMap::new()).await?;
    let mut out = Vec::new();
    for sb in &sandboxes {
        let Some(pod) = sandbox_status::from_summary(sb) else {
            continue;
        };
        if !pod.id.starts_with(&filter.id) {
            continue;
        }
        if let Ok(stats) = one_pod(ctx, sb, pod, &app).await {
            out.push(stats);
        }
    }
    Ok(out)
}

/// `PodSandboxStats`; unknown ids are `NOT_FOUND`.
pub async fn pod(ctx: &Context, id: &str) -> Result<PodSandboxStats> {
    if id.is_empty() {
        return Err(Error::invalid("pod_sandbox_id", "must not be empty"));
    }
    let filter = PodSandboxStatsFilter {
        id: id.to_string(),
        ..Default::default()
    };
    let mut found = list_pods(ctx, Some(filter)).await?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::not_found("pod sandbox", id)),
        n => Err(Error::invalid(
            "pod_sandbox_id",
            format!("{id:?} is ambiguous ({n} sandboxes)"),
        )),
    }
}

async fn one_pod(
    ctx: &Context,
    sb: &ContainerSummary,
    pod: crate::proto::PodSandbox,
    app: &[ContainerSummary],
) -> Result<PodSandboxStats> {
    let now = time::now_ns();
    let mut members = Vec::new();
    let mut samples = Vec::new();
    for c in app {
        let belongs = c.labels.as_ref().and_then(|l| l.get(labels::SANDBOX_ID)) == Some(&pod.id);
        if let (true, Some(item)) = (belongs, container_status::from_summary(c))
            && let Ok((stats, sample)) = one_container(ctx, c, item).await
        {
            members.push(stats);
            samples.push(sample);
        }
    }
    let (pod_sample, f) = pod_sample(ctx, sb, &pod.id, &samples).await?;
    let network = (f.pid > 0 && running(sb))
        .then(|| std::fs::read_to_string(format!("/proc/{}/net/dev", f.pid)).ok())
        .flatten()
        .map(|text| kernel_stats::network(now, &text));
    let key = format!("pod:{}", pod.id);
    Ok(PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: pod.id.clone(),
            metadata: pod
                .metadata
                .clone()
                .or_else(|| naming::parse_sandbox_name(sb.names.as_ref()?.first()?)),
            labels: pod.labels,
            annotations: pod.annotations,
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu: ctx.stats.cpu(&key, now, &pod_sample),
            memory: kernel_stats::memory(now, &pod_sample),
            network,
            process: kernel_stats::processes(now, &pod_sample),
            containers: members,
            io: None,
        }),
        windows: None,
    })
}

/// A pod's own counters with the sandbox's facts: its pod cgroup (kubelet's
/// cgroup parent) read whole, else the pause container's plus `members`'.
pub(crate) async fn pod_sample(
    ctx: &Context,
    sb: &ContainerSummary,
    pod_id: &str,
    members: &[cgroup::Sample],
) -> Result<(cgroup::Sample, Facts)> {
    let f = facts(ctx, pod_id, running(sb)).await?;
    let pause_paths = running(sb)
        .then(|| ctx.stats.paths(pod_id, f.pid))
        .flatten();
    let sample = match (&pause_paths, f.cgroup_parent.is_empty()) {
        (Some(paths), false) => cgroup::read(&paths.parent()),
        (paths, _) => {
            let mut total = paths.as_ref().map(cgroup::read).unwrap_or_default();
            for s in members {
                add(&mut total, s);
            }
            total
        }
    };
    Ok((sample, f))
}

fn add(total: &mut cgroup::Sample, s: &cgroup::Sample) {
    let sum = |a: &mut Option<u64>, b: Option<u64>| {
        if let Some(b) = b {
            *a = Some(a.unwrap_or(0) + b);
        }
    };
    sum(&mut total.cpu_ns, s.cpu_ns);
    sum(&mut total.memory_usage, s.memory_usage);
    sum(&mut total.working_set, s.working_set);
    sum(&mut total.rss, s.rss);
    sum(&mut total.page_faults, s.page_faults);
    sum(&mut total.major_page_faults, s.major_page_faults);
    sum(&mut total.processes, s.processes);
    sum(&mut total.cpu_user_ns, s.cpu_user_ns);
    sum(&mut total.cpu_system_ns, s.cpu_system_ns);
    sum(&mut total.memory_cache, s.memory_cache);
    sum(&mut total.mapped_file, s.mapped_file);
    sum(&mut total.oom_kills, s.oom_kills);
    sum(&mut total.procs, s.procs);
}
