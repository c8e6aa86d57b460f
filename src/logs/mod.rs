//! Container logs at kubelet's path, in the CRI format, written by us.
//!
//! For each started container a writer task follows Docker's log stream
//! (Docker's own per-container log is the durable buffer) and appends CRI
//! records to `log_directory/log_path`. `ReopenContainerLog` swaps the file
//! under the writer; after a dockercri restart each writer resumes after
//! the last record it wrote (found from the file's tail), so nothing is lost
//! or written twice.

pub mod format;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::docker::DockerClient;
use crate::error::{Error, Result};

/// Sub-directory of the root directory for writer positions.
const POSITIONS: &str = "logs";

/// A request to the writer: reopen the file, then answer.
type Reopen = oneshot::Sender<std::io::Result<()>>;

struct Handle {
    reopen: mpsc::Sender<Reopen>,
    task: tokio::task::JoinHandle<()>,
    /// Turns true once the writer has written the container's last output.
    written: watch::Receiver<bool>,
}

/// The log writers of all containers.
pub struct LogManager {
    writers: Arc<Mutex<HashMap<String, Handle>>>,
    positions: PathBuf,
}

impl std::fmt::Debug for LogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogManager")
            .field("positions", &self.positions)
            .finish()
    }
}

/// What a writer needs to know about its container.
#[derive(Debug, Clone)]
pub struct Target {
    pub container_id: String,
    pub path: PathBuf,
    /// Where a writer with nothing written yet (no records in the file, no
    /// saved position) starts in Docker's log, in ns since the epoch: 0
    /// for the beginning.
    pub start_at: i64,
}

impl LogManager {
    pub fn new(root: &Path) -> Self {
        LogManager {
            writers: Arc::default(),
            positions: root.join(POSITIONS),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.writers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (or keeps) the writer of a container. The log file exists
    /// when this returns, unless `create` is false and it did not exist.
    pub fn start(&self, docker: Arc<DockerClient>, target: Target, create: bool) -> Result<()> {
        let mut writers = self.lock();
        if writers
            .get(&target.container_id)
            .is_some_and(|h| !h.task.is_finished())
        {
            return Ok(());
        }
        if !create && !target.path.exists() {
            return Ok(());
        }
        let file = writer::open(&target.path)
            .map_err(|e| Error::io(format!("opening log {}", target.path.display()), e))?;
        if target.start_at > 0 {
            // Also marks the log as ours for `has_position` after a restart.
            writer::save_start(&self.positions, &target.container_id, target.start_at);
        }
        let (reopen, requests) = mpsc::channel(4);
        let (all_written, written) = watch::channel(false);
        let id = target.container_id.clone();
        let registry = Arc::clone(&self.writers);
        let positions = self.positions.clone();
        let task = tokio::spawn(async move {
            let id = target.container_id.clone();
            writer::run(docker, target, file, requests, positions).await;
            all_written.send_replace(true);
            // The writer ended with the container's output: forget it.
            let mut writers = registry.lock().unwrap_or_else(|p| p.into_inner());
            if writers
                .get(&id)
                .is_some_and(|h| h.task.is_finished() || h.reopen.is_closed())
            {
                writers.remove(&id);
            }
        });
        writers.insert(
            id,
            Handle {
                reopen,
                task,
                written,
            },
        );
        Ok(())
    }

    /// True when this dockercri has written the container's log (it keeps
    /// a position for it under its root directory).
    pub fn has_position(&self, container_id: &str) -> bool {
        writer::position_file(&self.positions, container_id).exists()
    }

    /// True while a writer follows the container's output.
    pub fn is_writing(&self, container_id: &str) -> bool {
        self.lock()
            .get(container_id)
            .is_some_and(|h| !h.task.is_finished())
    }

    /// Waits, at most `within`, until the writer of an exited container has
    /// written all of its output. Docker reports the exit before its log
    /// stream has reached us; kubelet reads the file of an exited container
    /// as complete (containerd reports an exit only after its output).
    /// Returns at once when no writer runs for the container.
    pub async fn written(&self, container_id: &str, within: Duration) {
        let Some(mut written) = self
            .lock()
            .get(container_id)
            .filter(|h| !h.task.is_finished())
            .map(|h| h.written.clone())
        else {
            return;
        };
        // An error means the writer was stopped: nothing more will come.
        if tokio::time::timeout(within, written.wait_for(|w| *w))
            .await
            .is_err()
        {
            debug!(container = %container_id, "log writer still behind an exited container");
        }
    }

    /// `ReopenContainerLog`: the writer closes its file and opens a new one
    /// at the same path.
    pub async fn reopen(&self, container_id: &str) -> Result<()> {
        let sender = self
            .lock()
            .get(container_id)
            .filter(|h| !h.task.is_finished())
            .map(|h| h.reopen.clone());
        let not_running = || Error::FailedPrecondition {
            what: format!("container {container_id:?}"),
            why: "is not running: there is no log being written to reopen".into(),
        };
        let sender = sender.ok_or_else(not_running)?;
        let (ack, done) = oneshot::channel();
        sender.send(ack).await.map_err(|_| not_running())?;
        done.await.map_err(|_| not_running())?.map_err(|e| {
            Error::io(
                format!("reopening the log of container {container_id:?}"),
                e,
            )
        })
    }

    /// Stops a container's writer and deletes its log file and position.
    pub fn remove(&self, container_id: &str, path: Option<&Path>) {
        if let Some(h) = self.lock().remove(container_id) {
            h.task.abort();
        }
        if let Some(path) = path {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    warn!(path = %path.display(), error = %e, "cannot remove container log");
                }
                _ => debug!(path = %path.display(), "container log removed"),
            }
        }
        let _ = std::fs::remove_file(writer::position_file(&self.positions, container_id));
    }

    /// Stops every writer (at shutdown); their positions are in the files.
    pub fn stop_all(&self) {
        for (_, h) in self.lock().drain() {
            h.task.abort();
        }
    }
}
