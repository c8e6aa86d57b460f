//! `RunPodSandbox`: a pause container made (or an earlier one reused) with
//! the pod's network; everything made is taken back when a step fails.

use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use super::{running_pid, save_record};
use crate::config::NetworkPlugin;
use crate::context::Context;
use crate::docker::sandbox_body::{self, PodNetwork, SANDBOX_OOM_SCORE_ADJ, SandboxInputs};
use crate::docker::sandbox_status;
use crate::error::{Error, Result};
use crate::index::Entry;
use crate::network;
use crate::proto::{PodSandboxConfig, SecurityProfile};
use crate::runtime::pause;
use crate::sandbox_record::{self, SandboxRecord};

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
    network::setup(&ctx.network, &id, config, pid).await?;
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
    network::teardown(&ctx.network, &id, running_pid(&existing)).await?;
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
    running && sandbox_status::is_sandbox(labels) && network::attached(&ctx.network, id, config)
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
