//! App containers: create, start, stop, remove, status, list, resources.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bollard::models::{ContainerCreateBody, ContainerUpdateBody};
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::docker::client::Stop;
use crate::docker::container_body::{self, ContainerInputs};
use crate::docker::{container_status, labels, naming};
use crate::error::{Error, Result};
use crate::index::oom_watch::OomWatch;
use crate::index::{Entry, View};
use crate::logs::Target;
use crate::proto::{
    Container, ContainerConfig, ContainerFilter, ContainerState, ContainerStatusResponse,
    LinuxContainerResources, PodSandboxConfig,
};
use crate::runtime::{apparmor, sandbox, unified};
use crate::sandbox_record;

/// How long `ContainerStatus` of an exited container waits for its log
/// writer to catch up with the container's last output.
const LOG_DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `CreateContainer` in sandbox `sandbox_id`. Nothing is left behind on error.
pub async fn create(
    ctx: &Context,
    sandbox_id: &str,
    config: ContainerConfig,
    sandbox_config: Option<PodSandboxConfig>,
) -> Result<String> {
    let pod = sandbox::find(ctx, sandbox_id)
        .await?
        .ok_or_else(|| Error::not_found("pod sandbox", sandbox_id))?;
    let pod_id = pod.id().to_string();
    let saved = match &pod.view {
        View::Sandbox { record, .. } => record.as_ref().and_then(|c| c.config.clone()),
        View::Container { .. } | View::Member { .. } => None,
    };
    let pod_config = sandbox_config.or(saved).unwrap_or_default();
    let pod_meta = pod_config
        .metadata
        .clone()
        .or_else(|| naming::parse_sandbox_name(pod.inspect.name.as_deref().unwrap_or_default()))
        .ok_or_else(|| Error::not_found("pod sandbox", sandbox_id))?;

    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    #[allow(deprecated)] // older kubelets still send the path field
    let seccomp = sandbox::read_seccomp_profile(
        sc.seccomp.as_ref(),
        &sc.seccomp_profile_path,
        "config.linux.security_context.seccomp.localhost_ref",
    )?;
    let cgroup_driver = ctx.docker.cgroup_driver().await?;
    let body = container_body::create_body(
        &config,
        &ContainerInputs {
            sandbox_id: &pod_id,
            sandbox: &pod_config,
            seccomp_localhost: seccomp.as_deref(),
            oom: ctx.oom,
            recursive_read_only: ctx.docker.recursive_read_only(),
            selinux: ctx.docker.selinux().await?,
            cgroup_v2: unified::host_is_v2(),
            cgroup_driver,
            docker_log: ctx.config.docker_log.as_ref(),
        },
    )?;
    apparmor::check_loaded(
        body.host_config
            .as_ref()
            .and_then(|h| h.security_opt.as_deref()),
        "config.linux.security_context.apparmor",
    )?;
    let meta = config.metadata.clone().unwrap_or_default();
    let name = naming::container_name(&meta, &pod_meta);
    let id = match create_named(ctx, &name, body.clone()).await {
        Err(Error::FailedPrecondition { .. }) => {
            // The name is taken (a leftover of an earlier attempt): keep
            // both, as dockershim did, with a random suffix.
            let suffixed = format!("{name}_{:08x}", rand_suffix());
            warn!(name, suffixed, "container name in use; adding a suffix");
            create_named(ctx, &suffixed, body).await?
        }
        other => other?,
    };
    info!(container = %id, name, sandbox = %pod_id, "container created");
    Ok(id)
}

async fn create_named(ctx: &Context, name: &str, body: ContainerCreateBody) -> Result<String> {
    let image = body.image.clone().unwrap_or_default();
    let docker = ctx.docker.get().await?;
    let options = bollard::query_parameters::CreateContainerOptionsBuilder::default()
        .name(name)
        .build();
    let id = docker
        .create_container(Some(options), body)
        .await
        .map(|r| r.id)
        .map_err(|e| create_error(ctx, e, name, &image))?;
    ctx.index.settle(&ctx.docker, &id);
    Ok(id)
}

/// What a refused create means: Docker answers 404 both for a missing
/// image and for a sandbox that vanished (the namespaces it joins).
fn create_error(ctx: &Context, e: bollard::errors::Error, name: &str, image: &str) -> Error {
    let missing_image = matches!(
        &e,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, message }
            if message.contains("No such image")
    );
    match ctx.docker.classify(e, "container", name) {
        Error::NotFound { .. } if missing_image => Error::not_found("image", image),
        Error::NotFound { .. } => Error::not_found("pod sandbox", name),
        other => other,
    }
}

/// A random suffix for a name in use (the kernel's randomness; a clock
/// would collide when two creates race).
fn rand_suffix() -> u32 {
    let mut bytes = [0u8; 4];
    // Should the kernel refuse, any suffix still beats failing the create.
    let _ = getrandom::fill(&mut bytes);
    u32::from_ne_bytes(bytes)
}

/// An app container by id; `NOT_FOUND` for sandboxes and strangers.
pub(crate) async fn find(ctx: &Context, id: &str) -> Result<Option<Arc<Entry>>> {
    if id.is_empty() {
        return Err(Error::invalid("container_id", "must not be empty"));
    }
    let found = ctx.index.get(&ctx.docker, id).await?;
    Ok(found.filter(|e| e.is_container()))
}

/// `StartContainer`, then starts writing its CRI log at kubelet's path.
pub async fn start(ctx: &Context, id: &str) -> Result<()> {
    let c = find(ctx, id)
        .await?
        .ok_or_else(|| Error::not_found("container", id))?;
    let full_id = c.id().to_string();
    let (_pod, sandbox_pid) = lock_running_pod(ctx, &c, id).await?;
    // The pod's parent cgroup counts OOM kills from now on (a container
    // killed at once may never be seen running).
    if let Some(pid) = sandbox_pid {
        ctx.index.watch_oom(&full_id, OomWatch::start(pid));
    }
    let docker = ctx.docker.get().await?;
    let started = ctx
        .index
        .writing(
            &ctx.docker,
            &full_id,
            docker.start_container(&full_id, None),
        )
        .await;
    match started {
        Ok(()) => {}
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => {}
        Err(e) => {
            return Err(match ctx.docker.classify(e, "container", id) {
                Error::Docker { source, .. } => Error::FailedPrecondition {
                    what: format!("starting container {id:?}"),
                    why: source.to_string(),
                },
                other => other,
            });
        }
    }
    if let Some(path) = log_label(&c) {
        let target = Target {
            container_id: full_id.clone(),
            path: path.into(),
            start_at: 0,
        };
        ctx.logs.start(ctx.docker.clone(), target, true)?;
    }
    let files = unified::from_labels(c.inspect.config.as_ref().and_then(|c| c.labels.as_ref()));
    if !files.is_empty() {
        write_cgroup_files(ctx, &full_id, files).await;
    }
    info!(container = %full_id, "container started");
    Ok(())
}

/// Writes the cgroup v2 files Docker could not set into a container it has
/// just started. The container runs either way: a failure is logged.
async fn write_cgroup_files(ctx: &Context, id: &str, files: container_body::CgroupFiles) {
    // The entry is out of date after the start: this inspect refreshes it.
    let Some(pid) = find(ctx, id).await.ok().flatten().and_then(|c| c.pid()) else {
        debug!(container = %id, "exited before its cgroup files were written");
        return;
    };
    match unified::write(pid, files).await {
        Ok(()) => debug!(container = %id, "cgroup v2 files written"),
        Err(e) => {
            warn!(container = %id, error = %e, "cannot write the cgroup v2 files kubelet asked for")
        }
    }
}

/// Takes the lock `StopPodSandbox` holds while it stops the pod, then
/// checks with Docker that the pod still runs: a start racing a stop
/// either lands before it (and is stopped with the pod) or is refused, so
/// a stopped pod is never left with a running container.
/// Returns the pod's lock and its pause container's pid.
async fn lock_running_pod(
    ctx: &Context,
    c: &Entry,
    id: &str,
) -> Result<(Option<tokio::sync::OwnedMutexGuard<()>>, Option<i64>)> {
    let sandbox_id = c.pod_id();
    if sandbox_id.is_empty() {
        return Ok((None, None));
    }
    let refused = |why: &str| Error::FailedPrecondition {
        what: format!("starting container {id:?}"),
        why: format!("its pod sandbox {sandbox_id} {why}"),
    };
    let pod = sandbox::find(ctx, sandbox_id)
        .await?
        .ok_or_else(|| refused("is gone"))?;
    let guard = ctx.pod_locks.lock(&sandbox::lock_key(&pod)).await;
    // Asked again under the lock: a stop may have finished while we
    // waited. The index is exact here: a stop marks the sandbox dirty
    // before it lets go of the lock, so this read asks Docker.
    let now = sandbox::find(ctx, sandbox_id).await?;
    let Some(pod) = now.filter(|p| p.running()) else {
        return Err(refused("is not running"));
    };
    Ok((Some(guard), pod.pid()))
}

/// Kubelet's log path of a container, from its label.
fn log_label(c: &Entry) -> Option<String> {
    c.inspect
        .config
        .as_ref()
        .and_then(|cfg| cfg.labels.as_ref())
        .and_then(|l| l.get(labels::LOG_PATH))
        .cloned()
}

/// `StopContainer`: SIGTERM (or the stop signal), SIGKILL after `timeout`
/// seconds; gone or stopped containers are success.
pub async fn stop(ctx: &Context, id: &str, timeout: i64) -> Result<()> {
    let Some(c) = find(ctx, id).await? else {
        return Ok(());
    };
    let full_id = c.id().to_string();
    let stop = ctx.docker.stop_container(&full_id, timeout);
    ctx.index
        .writing_unless(&ctx.docker, &full_id, stop, Stop::changed_nothing)
        .await?;
    info!(container = %full_id, timeout, "container stopped");
    Ok(())
}

/// `RemoveContainer`: the container (whatever its state) and its log file.
pub async fn remove(ctx: &Context, id: &str) -> Result<()> {
    let Some(c) = find(ctx, id).await? else {
        return Ok(());
    };
    let full_id = c.id().to_string();
    let remove = ctx.docker.remove_container(&full_id);
    ctx.index.removing(&ctx.docker, &full_id, remove).await?;
    let log = log_label(&c);
    ctx.logs.remove(&full_id, log.as_deref().map(Path::new));
    info!(container = %full_id, "container removed");
    Ok(())
}

/// `ContainerStatus` as kubelet reads it: for an exited container, only
/// once its log file holds all of its output.
pub async fn status_with_complete_log(
    ctx: &Context,
    id: &str,
    verbose: bool,
) -> Result<ContainerStatusResponse> {
    let reply = status(ctx, id, verbose).await?;
    if let Some(s) = reply.status.as_ref()
        && s.state() == ContainerState::ContainerExited
    {
        ctx.logs.written(&s.id, LOG_DRAIN_WAIT).await;
    }
    Ok(reply)
}

/// A container's status now; unknown ids are `NOT_FOUND`. Events use it
/// too, and must not wait for a log writer.
pub async fn status(ctx: &Context, id: &str, verbose: bool) -> Result<ContainerStatusResponse> {
    let c = find(ctx, id)
        .await?
        .ok_or_else(|| Error::not_found("container", id))?;
    let View::Container { status, .. } = &c.view else {
        return Err(Error::not_found("container", id));
    };
    let pid = c.pid();
    let mut info = HashMap::new();
    if verbose {
        let c = &c.inspect;
        let v = serde_json::json!({
            "pid": pid,
            "sandboxID": c.config.as_ref().and_then(|cfg| cfg.labels.as_ref()).and_then(|l| l.get(labels::SANDBOX_ID)),
            "dockerLogPath": c.log_path,
            "name": c.name,
            "restartCount": c.restart_count,
            "hostConfig": c.host_config.as_ref().map(|h| serde_json::json!({
                "networkMode": h.network_mode, "pidMode": h.pid_mode, "ipcMode": h.ipc_mode,
                "cgroupParent": h.cgroup_parent, "privileged": h.privileged,
                "securityOpt": h.security_opt, "capAdd": h.cap_add, "capDrop": h.cap_drop,
                "binds": h.binds,
            })),
        });
        info.insert("info".to_string(), v.to_string());
    }
    Ok(ContainerStatusResponse {
        status: Some(status.clone()),
        info,
    })
}

/// `ListContainers` with every filter applied; only pod containers.
pub async fn list(ctx: &Context, filter: Option<ContainerFilter>) -> Result<Vec<Container>> {
    let filter = filter.unwrap_or_default();
    let wanted = |c: &Container| {
        c.id.starts_with(&filter.id)
            && c.pod_sandbox_id.starts_with(&filter.pod_sandbox_id)
            && filter.state.as_ref().is_none_or(|v| v.state == c.state)
            && labels::matches_selector(&c.labels, &filter.label_selector)
    };
    if let Some(all) = ctx.index.snapshot(&ctx.docker).await? {
        return Ok(all
            .iter()
            .filter_map(|e| match &e.view {
                View::Container { item, .. } if wanted(item) => Some(item.clone()),
                _ => None,
            })
            .collect());
    }
    let selector = labels::filters(labels::TYPE_CONTAINER, &filter.label_selector);
    let containers = ctx.docker.list_containers(&selector).await?;
    Ok(containers
        .iter()
        .filter_map(container_status::from_summary)
        .filter(|c| wanted(c))
        .collect())
}

/// `UpdateContainerResources`: CPU and memory of a running container.
/// What Docker cannot change is refused with a message that says so.
pub async fn update_resources(
    ctx: &Context,
    id: &str,
    linux: Option<LinuxContainerResources>,
) -> Result<()> {
    let c = find(ctx, id)
        .await?
        .ok_or_else(|| Error::not_found("container", id))?;
    let full_id = c.id().to_string();
    let Some(wanted) = linux else {
        return Ok(());
    };
    let current = c.inspect.host_config.clone().unwrap_or_default();
    let mut host = bollard::models::HostConfig::default();
    let files = container_body::resources(&wanted, ctx.oom, &mut host)?;
    // Checked now, written after Docker's update: Docker (runc) rewrites
    // the cgroup's memory files on an update, and would undo ours.
    let unified_pid = match (files.first(), unified::host_is_v2(), c.pid()) {
        (None, ..) => None,
        (Some((key, _)), false, _) => {
            return Err(Error::invalid(
                "linux.unified",
                format!("{key:?} is a cgroup v2 file; this node runs cgroup v1"),
            ));
        }
        (Some(_), true, None) => {
            return Err(Error::FailedPrecondition {
                what: format!("container {id:?}"),
                why: "is not running: its cgroup files cannot be written".into(),
            });
        }
        (Some(_), true, Some(pid)) => Some(pid),
    };
    if host.oom_score_adj.is_some() && host.oom_score_adj != current.oom_score_adj {
        return Err(Error::invalid(
            "linux.oom_score_adj",
            "Docker Engine cannot change the oom_score_adj of an existing container",
        ));
    }
    // Docker refuses a memory limit above the old swap limit unless the swap
    // limit moves too: keep "no swap" meaning "no swap".
    let memory_swap = host.memory_swap.or_else(|| {
        host.memory
            .filter(|_| current.memory_swap == current.memory && current.memory.is_some())
    });
    let update = ContainerUpdateBody {
        cpu_period: host.cpu_period,
        cpu_quota: host.cpu_quota,
        cpu_shares: host.cpu_shares,
        memory: host.memory,
        memory_swap,
        cpuset_cpus: host.cpuset_cpus,
        cpuset_mems: host.cpuset_mems,
        ..Default::default()
    };
    let docker = ctx.docker.get().await?;
    let update = docker.update_container(&full_id, update);
    let updated = ctx.index.writing(&ctx.docker, &full_id, update).await;
    updated.map_err(|e| match ctx.docker.classify(e, "container", id) {
        Error::Docker { source, .. } => Error::invalid(
            "linux",
            format!("Docker Engine refused the update: {source}"),
        ),
        other => other,
    })?;
    if let Some(pid) = unified_pid {
        unified::write(pid, files).await?;
    }
    debug!(container = %full_id, "container resources updated");
    Ok(())
}

/// `ReopenContainerLog`: the writer starts a new file at the log path.
pub async fn reopen_log(ctx: &Context, id: &str) -> Result<()> {
    let c = find(ctx, id)
        .await?
        .ok_or_else(|| Error::not_found("container", id))?;
    let full_id = c.id().to_string();
    if !c.running() {
        return Err(Error::FailedPrecondition {
            what: format!("container {id:?}"),
            why: "is not running: there is no log being written to reopen".into(),
        });
    }
    if !ctx.logs.is_writing(&full_id)
        && let Some(path) = log_label(&c)
    {
        // A container cri-dockerd started: its log path was a symlink to
        // Docker's own log, which kubelet has just renamed away. From now
        // on dockercri writes the CRI log there, from this moment: what
        // came before stays readable through the renamed link.
        let target = Target {
            container_id: full_id.clone(),
            path: path.into(),
            start_at: crate::docker::time::now_ns(),
        };
        info!(container = %full_id, "writing the CRI log of a container whose log was a symlink");
        return ctx.logs.start(ctx.docker.clone(), target, true);
    }
    ctx.logs.reopen(&full_id).await
}

/// Resumes the log writers of existing containers after a dockercri
/// restart: running ones keep writing; exited ones catch up on output that
/// came while we were away (only where the log file still exists). Only
/// pods this dockercri made (recorded under its root directory) and
/// logs it already writes (with a position under its root directory, as
/// after a rotation of a cri-dockerd container's log) are adopted: a
/// cri-dockerd container keeps its symlinked log until kubelet rotates it,
/// and another runtime's containers are left alone.
pub async fn resume_logs(ctx: &Context) -> Result<()> {
    let wanted = [format!("{}={}", labels::TYPE, labels::TYPE_CONTAINER)];
    for c in ctx.docker.list_containers(&wanted).await? {
        let (Some(id), Some(path)) = (
            c.id.clone(),
            c.labels
                .as_ref()
                .and_then(|l| l.get(labels::LOG_PATH))
                .cloned(),
        ) else {
            continue;
        };
        let ours = c
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::SANDBOX_ID))
            .is_some_and(|sb| sandbox_record::load(&ctx.config.root_directory, sb).is_some());
        if !ours && !ctx.logs.has_position(&id) {
            continue;
        }
        let running = c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
        if !running && c.state != Some(bollard::models::ContainerSummaryStateEnum::EXITED) {
            continue;
        }
        let target = Target {
            container_id: id,
            path: path.into(),
            start_at: 0,
        };
        if let Err(e) = ctx.logs.start(ctx.docker.clone(), target, running) {
            warn!(error = %e, "cannot resume a container log");
        }
    }
    Ok(())
}
