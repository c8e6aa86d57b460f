//! Pod sandboxes: run, stop, remove, status, list, resources. A sandbox is
//! a pause container; its CRI config is recorded under the root
//! directory so that a restart of dockercri loses nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::join_all;
use tracing::{debug, info, warn};

use crate::config::NetworkPlugin;
use crate::context::Context;
use crate::docker::client::Stop;
use crate::docker::sandbox_body::{self, PodNetwork, SANDBOX_OOM_SCORE_ADJ, SandboxInputs};
use crate::docker::{labels, sandbox_status, time};
use crate::error::{Error, Result};
use crate::index::{Entry, View};
use crate::network;
use crate::proto::{
    ContainerStatus, LinuxContainerResources, PodIp, PodSandbox, PodSandboxConfig,
    PodSandboxFilter, PodSandboxNetworkStatus, PodSandboxStatusResponse, SecurityProfile,
};
use crate::runtime::{container, pause};
use crate::sandbox_record::{self, SandboxRecord};

/// Seconds a pod's containers get between SIGTERM and SIGKILL when the pod
/// is stopped (kubelet has normally stopped them already, with the pod's
/// own grace period).
const STOP_GRACE_SECS: i64 = 10;

/// What a failed `run` must take back.
#[derive(Default)]
struct Undo {
    container: Option<String>,
    record: Option<String>,
    directory: Option<MadeDirs>,
}

impl Undo {
    async fn run(self, ctx: &Context) {
        if let Some(id) = &self.container {
            let remove = ctx.docker.remove_container(id);
            if let Err(e) = ctx.index.removing(&ctx.docker, id, remove).await {
                warn!(sandbox = %id, error = %e, "cannot remove the half-made sandbox");
            }
        }
        if let Some(id) = &self.record {
            let _ = sandbox_record::remove(&ctx.config.root_directory, id);
        }
        if let Some(made) = &self.directory {
            remove_made_dirs(made);
        }
    }
}

/// `RunPodSandbox`: returns the id once the pause container runs. On any
/// failure everything made so far is removed before the error returns.
pub async fn run(ctx: &Context, config: PodSandboxConfig, runtime_handler: &str) -> Result<String> {
    let name = sandbox_body::name(&config)?;
    let seccomp = read_localhost_seccomp(&config)?;
    let network = match ctx.config.network_plugin {
        NetworkPlugin::DockerBridge => PodNetwork::DockerBridge,
        NetworkPlugin::Cni => PodNetwork::None,
    };
    let runtime = (!runtime_handler.is_empty()).then_some(runtime_handler);
    let inputs = SandboxInputs {
        image: "",
        network,
        runtime,
        seccomp_localhost: seccomp.as_deref(),
        oom_score_adj: ctx.oom.clamp(SANDBOX_OOM_SCORE_ADJ),
        cgroup_driver: ctx.docker.cgroup_driver().await?,
    };
    // Refuse bad input before anything is made.
    sandbox_body::create_body(&config, &inputs)?;

    let _pod = ctx.pod_locks.lock(&name).await;
    if let Some(handler) = runtime {
        check_runtime_handler(ctx, handler).await?;
    }
    // The index answers whether the name is taken; should it not know a
    // container made an instant ago, Docker's conflict sends us to Docker.
    let mut ask_docker = false;
    loop {
        if let Some(id) = reuse_existing(ctx, &name, &config, ask_docker).await? {
            return Ok(id);
        }
        let mut undo = Undo::default();
        match create_and_start(ctx, &name, &config, runtime_handler, &inputs, &mut undo).await {
            Ok(Made::Sandbox(id)) => {
                info!(sandbox = %id, name = %name, "pod sandbox is running");
                return Ok(id);
            }
            Ok(Made::NameTaken) if !ask_docker => {
                undo.run(ctx).await;
                ask_docker = true;
            }
            Ok(Made::NameTaken) => {
                undo.run(ctx).await;
                return Err(Error::FailedPrecondition {
                    what: format!("pod sandbox {name:?}"),
                    why: "another container took its name meanwhile".into(),
                });
            }
            Err(e) => {
                undo.run(ctx).await;
                return Err(e);
            }
        }
    }
}

/// Writes a sandbox's record on a blocking thread: the write waits
/// for the disk (it is synced, to survive a power loss).
async fn save_record(ctx: &Context, id: &str, saved: SandboxRecord) -> Result<()> {
    let root = ctx.config.root_directory.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || sandbox_record::save(&root, &id, &saved))
        .await
        .map_err(|e| Error::Internal(format!("writing a sandbox record: {e}")))?
}

/// What a create attempt came to.
enum Made {
    Sandbox(String),
    /// Docker has a container of that name the index did not know.
    NameTaken,
}

async fn create_and_start(
    ctx: &Context,
    name: &str,
    config: &PodSandboxConfig,
    runtime_handler: &str,
    inputs: &SandboxInputs<'_>,
    undo: &mut Undo,
) -> Result<Made> {
    if !config.log_directory.is_empty() {
        undo.directory = create_dir(Path::new(&config.log_directory))?;
    }
    let docker = ctx.docker.get().await?;
    let options = bollard::query_parameters::CreateContainerOptionsBuilder::default()
        .name(name)
        .build();
    // The sandbox image is trusted to be there until Docker says it is not.
    let mut image = pause::ensure(ctx).await?;
    let mut looked_again = false;
    let created = loop {
        let body = sandbox_body::create_body(
            config,
            &SandboxInputs {
                image: &image,
                ..*inputs
            },
        )?;
        match docker.create_container(Some(options.clone()), body).await {
            Ok(created) => break created,
            Err(e) if is_missing_image(&e) && !looked_again => {
                ctx.pause.forget();
                image = pause::ensure(ctx).await?;
                looked_again = true;
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => return Ok(Made::NameTaken),
            Err(e) => {
                return Err(match ctx.docker.classify(e, "pod sandbox", name) {
                    // A 404 here is the image vanishing under us, not the sandbox.
                    Error::NotFound { .. } => Error::FailedPrecondition {
                        what: format!("pod sandbox {name:?}"),
                        why: "the sandbox image disappeared during creation".into(),
                    },
                    other => other,
                });
            }
        }
    };
    let id = created.id;
    ctx.index.invalidate(&id);
    undo.container = Some(id.clone());

    undo.record = Some(id.clone());
    save_record(
        ctx,
        &id,
        SandboxRecord {
            config: Some(config.clone()),
            runtime_handler: runtime_handler.to_string(),
            ..Default::default()
        },
    )
    .await?;

    let start = docker.start_container(&id, None);
    let started = ctx.index.writing(&ctx.docker, &id, start).await;
    started.map_err(|e| ctx.docker.classify(e, "pod sandbox", name))?;
    // Our built-in pause program stays up and a Docker network needs no
    // pid: nothing more to learn. A pause container that dies at once (a
    // wrong sandbox image) can still look alive right after its start:
    // ask Docker again a moment later.
    let cni = ctx.config.network_plugin == NetworkPlugin::Cni;
    if image == pause::BUILTIN_IMAGE && !cni {
        return Ok(Made::Sandbox(id));
    }
    let mut sandbox = ctx.index.get(&ctx.docker, &id).await?;
    check_running(sandbox.as_deref(), name)?;
    if image != pause::BUILTIN_IMAGE {
        tokio::time::sleep(PAUSE_SETTLE).await;
        sandbox = ctx.index.refresh(&ctx.docker, &id).await?;
    }
    let sandbox = check_running(sandbox.as_deref(), name)?;
    let pid = running_pid(&sandbox.inspect).unwrap_or_default();
    network::setup(ctx, &id, config, pid).await?;
    Ok(Made::Sandbox(id))
}

/// Docker's answer to a create from an image it does not have.
fn is_missing_image(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, message }
            if message.contains("No such image")
    )
}

/// How long a new pause container must stay up before `RunPodSandbox`
/// answers.
const PAUSE_SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

fn check_running<'a>(sandbox: Option<&'a Entry>, name: &str) -> Result<&'a Entry> {
    let sandbox = sandbox.ok_or_else(|| Error::not_found("pod sandbox", name))?;
    if !sandbox.running() {
        let state = sandbox.inspect.state.clone().unwrap_or_default();
        return Err(Error::FailedPrecondition {
            what: format!("pod sandbox {name:?}"),
            why: format!(
                "the pause container exited at once (exit code {}): {}",
                state.exit_code.unwrap_or_default(),
                state.error.unwrap_or_default()
            ),
        });
    }
    Ok(sandbox)
}

/// The log directory and the parents a failed `RunPodSandbox` created.
#[derive(Debug, PartialEq)]
struct MadeDirs {
    /// The log directory itself.
    leaf: PathBuf,
    /// The topmost directory this call created (`leaf` or an ancestor).
    topmost: PathBuf,
}

/// Creates `dir` (and missing parents); returns what it made, for undo, or
/// `None` when it existed.
fn create_dir(dir: &Path) -> Result<Option<MadeDirs>> {
    if dir.is_dir() {
        return Ok(None);
    }
    let mut topmost = dir.to_path_buf();
    while let Some(parent) = topmost.parent() {
        if parent.exists() {
            break;
        }
        topmost = parent.to_path_buf();
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating log directory {}", dir.display()), e))?;
    Ok(Some(MadeDirs {
        leaf: dir.to_path_buf(),
        topmost,
    }))
}

/// Takes back the directories a failed `RunPodSandbox` made, leaf first,
/// each only while it is empty: whatever another writer put there in the
/// meantime stays, and so does every directory above it.
fn remove_made_dirs(made: &MadeDirs) {
    for dir in made.leaf.ancestors() {
        if std::fs::remove_dir(dir).is_err() || dir == made.topmost {
            break;
        }
    }
}

/// The same pod asked for twice: the running sandbox is the answer; a dead
/// one in the way of the name is removed, and so is a CNI pod whose
/// network setup never finished. The index is asked first, Docker when
/// `ask_docker` or the index is not synced.
async fn reuse_existing(
    ctx: &Context,
    name: &str,
    config: &PodSandboxConfig,
    ask_docker: bool,
) -> Result<Option<String>> {
    let known = if ask_docker {
        None
    } else {
        ctx.index.named(name)
    };
    // A dirty entry (one of our writes is not inspected yet) is inspected
    // again by `get`, so a sandbox just started never looks dead.
    let (existing, from_index) = match known {
        Some(Some(id)) => (
            ctx.index
                .get(&ctx.docker, &id)
                .await?
                .map(|e| e.inspect.clone()),
            true,
        ),
        Some(None) => (None, true),
        None => (
            ctx.docker.inspect_container(name, "pod sandbox").await?,
            false,
        ),
    };
    let Some(mut existing) = existing else {
        return Ok(None);
    };
    if from_index && !reusable(ctx, &existing, config) {
        // Removing is for good: only on Docker's word, not the index's.
        match ctx.docker.inspect_container(name, "pod sandbox").await? {
            Some(fresh) => existing = fresh,
            None => return Ok(None),
        }
    }
    let id = existing.id.clone().unwrap_or_default();
    if reusable(ctx, &existing, config) {
        debug!(sandbox = %id, "the pod already has a running sandbox");
        return Ok(Some(id));
    }
    info!(container = %id, name, "removing a dead (or never networked) container in the way of the sandbox name");
    network::teardown(ctx, &id, running_pid(&existing)).await?;
    let remove = ctx.docker.remove_container(&id);
    ctx.index.removing(&ctx.docker, &id, remove).await?;
    let _ = sandbox_record::remove(&ctx.config.root_directory, &id);
    Ok(None)
}

/// Whether `existing` is a running sandbox of this pod with its network set
/// up: the answer to a repeated `RunPodSandbox`.
fn reusable(
    ctx: &Context,
    existing: &bollard::models::ContainerInspectResponse,
    config: &PodSandboxConfig,
) -> bool {
    let id = existing.id.as_deref().unwrap_or_default();
    let running = existing.state.as_ref().and_then(|s| s.running) == Some(true);
    let labels = existing.config.as_ref().and_then(|c| c.labels.as_ref());
    running && sandbox_status::is_sandbox(labels) && network::attached(ctx, id, config)
}

async fn check_runtime_handler(ctx: &Context, handler: &str) -> Result<()> {
    let docker = ctx.docker.get().await?;
    let info = docker
        .info()
        .await
        .map_err(|e| ctx.docker.classify(e, "docker", "info"))?;
    let runtimes = info.runtimes.unwrap_or_default();
    if runtimes.contains_key(handler) {
        return Ok(());
    }
    let mut known: Vec<_> = runtimes.keys().cloned().collect();
    known.sort();
    Err(Error::invalid(
        "runtime_handler",
        format!(
            "{handler:?} is not a runtime dockerd knows (known: {})",
            known.join(", ")
        ),
    ))
}

fn read_localhost_seccomp(config: &PodSandboxConfig) -> Result<Option<String>> {
    let Some(sc) = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
    else {
        return Ok(None);
    };
    // The deprecated path field still comes from older kubelets.
    #[allow(deprecated)]
    let path = &sc.seccomp_profile_path;
    read_seccomp_profile(
        sc.seccomp.as_ref(),
        path,
        "config.linux.security_context.seccomp.localhost_ref",
    )
}

/// Reads the file a `Localhost` seccomp profile names, if it names one.
pub(crate) fn read_seccomp_profile(
    profile: Option<&SecurityProfile>,
    deprecated_path: &str,
    field: &'static str,
) -> Result<Option<String>> {
    let Some(path) = sandbox_body::seccomp_localhost_path(profile, deprecated_path) else {
        return Ok(None);
    };
    if !Path::new(path).is_absolute() {
        return Err(Error::invalid(field, format!("{path:?} is not absolute")));
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| Error::invalid(field, format!("cannot read {path:?}: {e}")))
}

/// The sandbox with this id, if there is one (any other container is not).
pub(crate) async fn find(ctx: &Context, id: &str) -> Result<Option<Arc<Entry>>> {
    if id.is_empty() {
        return Err(Error::invalid("pod_sandbox_id", "must not be empty"));
    }
    let found = ctx.index.get(&ctx.docker, id).await?;
    Ok(found.filter(|e| e.is_sandbox()))
}

/// The containers of sandbox `id` (running or not): from the index, which
/// also holds what joined the pod beside dockercri (labelled as a pod
/// container) once Docker has reported it; from Docker while the index is
/// not synced.
async fn members(ctx: &Context, id: &str) -> Result<Vec<String>> {
    if let Some(ids) = ctx.index.member_ids(&ctx.docker, id).await? {
        return Ok(ids);
    }
    let containers = ctx
        .docker
        .list_containers(&[format!("{}={id}", labels::SANDBOX_ID)])
        .await?;
    Ok(containers.into_iter().filter_map(|c| c.id).collect())
}

/// Stops (or removes) containers at once, each recorded in the index
/// (unless Docker's answer says it `changed_nothing`).
async fn for_each_container<'a, F, Fut, T>(
    ctx: &'a Context,
    ids: &'a [String],
    act: F,
    changed_nothing: fn(&Result<T>) -> bool,
) -> Result<()>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + 'a,
{
    let results = join_all(ids.iter().map(|id| {
        let done = act(id);
        ctx.index
            .writing_unless(&ctx.docker, id, done, changed_nothing)
    }))
    .await;
    results.into_iter().try_for_each(|r| r.map(drop))
}

/// The pause container's pid while it runs.
fn running_pid(sandbox: &bollard::models::ContainerInspectResponse) -> Option<i64> {
    let state = sandbox.state.as_ref()?;
    (state.running == Some(true)).then_some(state.pid?)
}

/// The key of the pod lock: the sandbox's Docker name.
pub(crate) fn lock_key(sandbox: &Entry) -> String {
    sandbox
        .inspect
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string()
}

/// `StopPodSandbox`: stops every container of the pod, then the pause
/// container. Unknown ids and stopped pods are success.
pub async fn stop(ctx: &Context, id: &str) -> Result<()> {
    let Some(sandbox) = find(ctx, id).await? else {
        // The pause container is gone; its pod network may not be.
        network::teardown(ctx, id, None).await?;
        return Ok(());
    };
    let full_id = sandbox.id().to_string();
    let _pod = ctx.pod_locks.lock(&lock_key(&sandbox)).await;
    let containers = members(ctx, &full_id).await?;
    for_each_container(
        ctx,
        &containers,
        |c| ctx.docker.stop_container(c, STOP_GRACE_SECS),
        Stop::changed_nothing,
    )
    .await?;
    network::teardown(ctx, &full_id, running_pid(&sandbox.inspect)).await?;
    let stop = ctx.docker.stop_container(&full_id, STOP_GRACE_SECS);
    ctx.index
        .writing_unless(&ctx.docker, &full_id, stop, Stop::changed_nothing)
        .await?;
    info!(sandbox = %full_id, "pod sandbox stopped");
    Ok(())
}

/// `RemovePodSandbox`: removes every container of the pod, the pause
/// container and the record (not the pod's log directory: kubelet's).
/// Unknown ids are success.
pub async fn remove(ctx: &Context, id: &str) -> Result<()> {
    let sandbox = find(ctx, id).await?;
    let full_id = sandbox
        .as_ref()
        .map_or_else(|| id.to_string(), |s| s.id().to_string());
    let _pod = match &sandbox {
        Some(s) => Some(ctx.pod_locks.lock(&lock_key(s)).await),
        None => None,
    };
    let containers = members(ctx, &full_id).await?;
    for_each_container(
        ctx,
        &containers,
        |c| ctx.docker.remove_container(c),
        |_| false,
    )
    .await?;
    // Normally done by the stop before; a remove alone must not leak it.
    network::teardown(
        ctx,
        &full_id,
        sandbox.as_ref().and_then(|s| running_pid(&s.inspect)),
    )
    .await?;
    let is_id = full_id.chars().all(|c| c.is_ascii_hexdigit()) && !full_id.is_empty();
    // The index holds the record it read with the sandbox; the disk is
    // asked only when it has none.
    let saved = match sandbox.as_ref().map(|s| &s.view) {
        Some(View::Sandbox {
            record: Some(c), ..
        }) => Some(SandboxRecord::clone(c)),
        _ => is_id
            .then(|| sandbox_record::load(&ctx.config.root_directory, &full_id))
            .flatten(),
    };
    // The pod's log directory is not ours to delete: kubelet names it and
    // its garbage collector removes it once the pod is gone (containerd
    // leaves it too). Deleting a path a request named could take anything
    // on the node with it.
    // The record goes while Docker removes the pause container: work
    // that waits on the disk (busy with Docker's own writes) stays off the
    // call's critical path and off the async workers.
    let root = ctx.config.root_directory.clone();
    let roots = (root.clone(), ctx.config.cri_dockerd_root_directory.clone());
    let files_removed = remove_records(roots, is_id.then(|| full_id.clone()));
    if sandbox.is_none() {
        return files_removed.await;
    }
    let remove = ctx.docker.remove_container(&full_id);
    let (removed, files) = tokio::join!(
        ctx.index.removing(&ctx.docker, &full_id, remove),
        files_removed
    );
    if let Err(e) = removed {
        // The pause container is still there: so is its record.
        if let Some(saved) = saved.filter(|_| is_id) {
            let id = full_id.clone();
            let restored =
                tokio::task::spawn_blocking(move || sandbox_record::save(&root, &id, &saved)).await;
            if !matches!(restored, Ok(Ok(()))) {
                warn!(sandbox = %full_id, "cannot put back the record of a sandbox Docker did not remove");
            }
        }
        return Err(e);
    }
    files?;
    info!(sandbox = %full_id, "pod sandbox removed");
    Ok(())
}

/// Deletes a removed pod's record, and cri-dockerd's if it made the
/// pod (on a blocking thread).
async fn remove_records(
    (root, cri_dockerd_root): (std::path::PathBuf, std::path::PathBuf),
    record_of: Option<String>,
) -> Result<()> {
    let removed = tokio::task::spawn_blocking(move || {
        record_of.map_or(Ok(()), |id| {
            sandbox_record::remove_cri_dockerd(&cri_dockerd_root, &id);
            sandbox_record::remove(&root, &id)
        })
    })
    .await;
    removed.map_err(|e| Error::Internal(format!("removing a pod's record: {e}")))?
}

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
    if let Some((ip, others)) = network::pod_ips(ctx, sandbox.id()) {
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

/// `UpdatePodSandboxResources`: kubelet resizes the pod cgroup itself; we
/// record the new values with the sandbox. Unknown ids are `NOT_FOUND`.
pub async fn update_resources(
    ctx: &Context,
    id: &str,
    overhead: Option<LinuxContainerResources>,
    resources: Option<LinuxContainerResources>,
) -> Result<()> {
    let sandbox = find(ctx, id)
        .await?
        .ok_or_else(|| Error::not_found("pod sandbox", id))?;
    let full_id = sandbox.id().to_string();
    let _pod = ctx.pod_locks.lock(&lock_key(&sandbox)).await;
    let root = &ctx.config.root_directory;
    let mut saved = sandbox_record::load(root, &full_id).unwrap_or_default();
    saved.overhead = overhead;
    saved.resources = resources;
    save_record(ctx, &full_id, saved).await?;
    ctx.index.settle(&ctx.docker, &full_id);
    debug!(sandbox = %full_id, "pod sandbox resources recorded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_log_directory_is_not_ours_to_undo() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kept"), "x").unwrap();
        assert_eq!(create_dir(dir.path()).unwrap(), None);
        assert_eq!(create_dir(Path::new("/")).unwrap(), None);
    }

    #[test]
    fn undo_removes_only_the_empty_directories_it_made() {
        let base = tempfile::tempdir().unwrap();
        let leaf = base.path().join("a/b/c");
        let made = create_dir(&leaf).unwrap().unwrap();
        assert_eq!(made.topmost, base.path().join("a"));
        // Someone else wrote beside the leaf meanwhile: it and its parents stay.
        std::fs::write(base.path().join("a/b/other"), "x").unwrap();
        remove_made_dirs(&made);
        assert!(!leaf.exists());
        assert!(base.path().join("a/b/other").exists());

        let made = create_dir(&base.path().join("d/e")).unwrap().unwrap();
        remove_made_dirs(&made);
        assert!(!base.path().join("d").exists());
        assert!(base.path().exists(), "never above what it made");
    }

    #[test]
    fn undo_keeps_a_leaf_that_is_no_longer_empty() {
        let base = tempfile::tempdir().unwrap();
        let leaf = base.path().join("pod");
        let made = create_dir(&leaf).unwrap().unwrap();
        std::fs::write(leaf.join("0.log"), "x").unwrap();
        remove_made_dirs(&made);
        assert!(leaf.join("0.log").exists());
    }
}
