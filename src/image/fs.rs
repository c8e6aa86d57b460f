//! `ImageFsInfo`: how much of Docker's filesystem images and container
//! writable layers use. Answered from the last sample (kubelet asks every few
//! seconds, and `docker system df` takes seconds on a busy node); a
//! background task refreshes it by walking the storage driver's directory
//! in a blocking thread. Only the very first call samples inline.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::ListContainersOptionsBuilder;
use futures_util::{StreamExt, TryStreamExt, stream};
use tracing::{debug, warn};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::proto::{FilesystemIdentifier, FilesystemUsage, ImageFsInfoResponse, UInt64Value};

/// Least time between two samples.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// A walk that takes long waits this many times its duration before the
/// next one, so a huge tree does not keep a core busy.
const REFRESH_BACKOFF: u32 = 5;
/// How many containers a sample inspects at once.
const INSPECT_CONCURRENCY: usize = 8;
/// Docker's image metadata directory under its root.
const IMAGE_METADATA_DIR: &str = "image";
/// Key of the writable layer in an overlay-type container's GraphDriver data.
const UPPER_DIR_KEY: &str = "UpperDir";

/// The last sample and what it takes to make the next one.
#[derive(Debug, Default)]
pub struct FsSampler {
    last: Mutex<Option<FsSample>>,
    /// Serialises sampling: concurrent first calls wait for one walk.
    sampling: tokio::sync::Mutex<()>,
    refresher_started: AtomicBool,
    /// Docker's root dir and storage driver (fixed while dockerd runs).
    storage: Mutex<Option<Storage>>,
    /// Container ID → its writable layer dir (fixed per container).
    upper_dirs: Mutex<HashMap<String, Option<PathBuf>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Storage {
    root: PathBuf,
    driver: String,
}

/// Bytes (allocated blocks) and inodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.bytes += other.bytes;
        self.inodes += other.inodes;
    }
}

#[derive(Debug, Clone)]
struct FsSample {
    timestamp_ns: i64,
    mountpoint: String,
    images: Usage,
    containers: Usage,
    took: Duration,
}

/// `ImageFsInfo`.
pub async fn info(ctx: &Arc<Context>) -> Result<ImageFsInfoResponse> {
    let sampler = &ctx.images.fs;
    let sample = match sampler.last() {
        Some(sample) => sample,
        None => {
            let _one_at_a_time = sampler.sampling.lock().await;
            match sampler.last() {
                Some(sample) => sample,
                None => {
                    let sample = take_sample(ctx).await?;
                    sampler.store(sample.clone());
                    sample
                }
            }
        }
    };
    start_refresher(ctx);
    Ok(response(&sample))
}

impl FsSampler {
    fn last(&self) -> Option<FsSample> {
        self.last.lock().ok()?.clone()
    }

    fn store(&self, sample: FsSample) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(sample);
        }
    }
}

fn response(s: &FsSample) -> ImageFsInfoResponse {
    let usage = |u: &Usage| FilesystemUsage {
        timestamp: s.timestamp_ns,
        fs_id: Some(FilesystemIdentifier {
            mountpoint: s.mountpoint.clone(),
        }),
        used_bytes: Some(UInt64Value { value: u.bytes }),
        inodes_used: Some(UInt64Value { value: u.inodes }),
    };
    ImageFsInfoResponse {
        image_filesystems: vec![usage(&s.images)],
        container_filesystems: vec![usage(&s.containers)],
    }
}

/// Starts the background refresher once; it ends with the context.
fn start_refresher(ctx: &Arc<Context>) {
    if ctx.images.fs.refresher_started.swap(true, Ordering::SeqCst) {
        return;
    }
    let weak: Weak<Context> = Arc::downgrade(ctx);
    tokio::spawn(async move {
        let mut wait = REFRESH_EVERY;
        loop {
            tokio::time::sleep(wait).await;
            let Some(ctx) = weak.upgrade() else { return };
            let _one_at_a_time = ctx.images.fs.sampling.lock().await;
            match take_sample(&ctx).await {
                Ok(sample) => {
                    wait = REFRESH_EVERY.max(sample.took * REFRESH_BACKOFF);
                    debug!(
                        image_bytes = sample.images.bytes,
                        container_bytes = sample.containers.bytes,
                        took = ?sample.took,
                        "image filesystem sampled"
                    );
                    ctx.images.fs.store(sample);
                }
                Err(e) => warn!(error = %e, "cannot sample the image filesystem"),
            }
        }
    });
}

async fn take_sample(ctx: &Context) -> Result<FsSample> {
    let storage = storage(ctx).await?;
    let uppers = upper_dirs(ctx).await?;
    let started = Instant::now();
    let driver_dir = storage.root.join(&storage.driver);
    let image_dirs = if driver_dir.is_dir() {
        vec![driver_dir, storage.root.join(IMAGE_METADATA_DIR)]
    } else {
        vec![storage.root.clone()]
    };
    let (images, containers) = tokio::task::spawn_blocking(move || measure(&image_dirs, &uppers))
        .await
        .map_err(|e| Error::Internal(format!("image filesystem walk failed: {e}")))?;
    Ok(FsSample {
        timestamp_ns: now_ns(),
        mountpoint: storage.root.display().to_string(),
        images,
        containers,
        took: started.elapsed(),
    })
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Docker's root dir and storage driver, asked once.
async fn storage(ctx: &Context) -> Result<Storage> {
    if let Some(s) = ctx.images.fs.storage.lock().ok().and_then(|s| s.clone()) {
        return Ok(s);
    }
    let docker = ctx.docker.get().await?;
    let info = docker
        .info()
        .await
        .map_err(|e| ctx.docker.classify(e, "docker", "info"))?;
    let root = info
        .docker_root_dir
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Error::Internal("docker info reports no DockerRootDir".into()))?;
    let storage = Storage {
        root: PathBuf::from(root),
        driver: info.driver.unwrap_or_default(),
    };
    if let Ok(mut slot) = ctx.images.fs.storage.lock() {
        *slot = Some(storage.clone());
    }
    Ok(storage)
}

/// Every container's writable layer directory, inspecting only containers
/// not seen before (a few at a time).
async fn upper_dirs(ctx: &Context) -> Result<Vec<PathBuf>> {
    let docker = ctx.docker.get().await?;
    let options = ListContainersOptionsBuilder::default().all(true).build();
    let ids: Vec<String> = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| ctx.docker.classify(e, "containers", "list"))?
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    let known: HashMap<String, Option<PathBuf>> = ctx
        .images
        .fs
        .upper_dirs
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let mut now = HashMap::new();
    let mut new = Vec::new();
    for id in ids {
        match known.get(&id) {
            Some(dir) => {
                now.insert(id, dir.clone());
            }
            None => new.push(id),
        }
    }
    let docker = &docker;
    let inspected: Vec<Option<(String, Option<PathBuf>)>> = stream::iter(new)
        .map(|id| async move {
            match docker.inspect_container(&id, None).await {
                Ok(c) => {
                    let dir = c
                        .graph_driver
                        .and_then(|g| g.data.get(UPPER_DIR_KEY).cloned())
                        .map(PathBuf::from);
                    Ok(Some((id, dir)))
                }
                Err(e) => match ctx.docker.classify(e, "container", &id) {
                    Error::NotFound { .. } => Ok(None),
                    other => Err(other),
                },
            }
        })
        .buffer_unordered(INSPECT_CONCURRENCY)
        .try_collect()
        .await?;
    now.extend(inspected.into_iter().flatten());
    let dirs = now.values().flatten().cloned().collect();
    if let Ok(mut m) = ctx.images.fs.upper_dirs.lock() {
        *m = now;
    }
    Ok(dirs)
}

/// Measures container writable layers (`upper_dirs`), then everything else
/// under `image_dirs`: each inode once (hard links dedupe by device and
/// inode), allocated blocks × 512, never crossing into another filesystem
/// (a running container's merged mount).
fn measure(image_dirs: &[PathBuf], upper_dirs: &[PathBuf]) -> (Usage, Usage) {
    let mut walker = Walker::default();
    let mut containers = Usage::default();
    for dir in upper_dirs {
        containers += walker.walk(dir, true);
    }
    let mut images = Usage::default();
    for dir in image_dirs {
        images += walker.walk(dir, false);
    }
    (images, containers)
}

#[derive(Default)]
struct Walker {
    /// Files with more than one link, already counted.
    linked: HashSet<(u64, u64)>,
    /// Container layer roots, counted apart from images.
    layers: HashSet<(u64, u64)>,
}

impl Walker {
    /// Usage of the tree at `root`; `layer` marks it as a container layer.
    fn walk(&mut self, root: &Path, layer: bool) -> Usage {
        let mut usage = Usage::default();
        let Ok(meta) = std::fs::symlink_metadata(root) else {
            return usage;
        };
        let dev = meta.dev();
        if layer && !self.layers.insert((dev, meta.ino())) {
            return usage;
        }
        let mut stack = vec![(root.to_path_buf(), meta)];
        while let Some((path, meta)) = stack.pop() {
            let key = (meta.dev(), meta.ino());
            if meta.is_dir() {
                if !layer && self.layers.contains(&key) {
                    continue;
                }
            } else if meta.nlink() > 1 && !self.linked.insert(key) {
                continue;
            }
            usage.bytes += meta.blocks() * 512;
            usage.inodes += 1;
            if !meta.is_dir() {
                continue;
            }
            // Entries may vanish mid-walk: a racing remove is not an error.
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries.flatten() {
                let child = entry.path();
                if let Ok(m) = std::fs::symlink_metadata(&child)
                    && m.dev() == dev
                {
                    stack.push((child, m));
                }
            }
        }
        usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(path: &Path) -> u64 {
        std::fs::symlink_metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn hard_links_count_once_and_layers_apart() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("overlay2");
        let layer = images.join("abc").join("diff");
        let upper = images.join("ctr").join("diff");
        std::fs::create_dir_all(&layer).unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::write(layer.join("big"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::hard_link(layer.join("big"), layer.join("big-link")).unwrap();
        std::fs::write(upper.join("written"), vec![1u8; 16 * 1024]).unwrap();
        std::os::unix::fs::symlink("big", layer.join("sym")).unwrap();

        let (imgs, ctrs) = measure(std::slice::from_ref(&images), std::slice::from_ref(&upper));
        assert_eq!(ctrs.inodes, 2, "upper dir + its file");
        assert_eq!(ctrs.bytes, blocks(&upper) + blocks(&upper.join("written")));
        // overlay2, abc, abc/diff, big (once), sym, ctr — not ctr/diff.
        assert_eq!(imgs.inodes, 6);
        let want: u64 = [
            images.clone(),
            images.join("abc"),
            layer.clone(),
            layer.join("big"),
            layer.join("sym"),
            images.join("ctr"),
        ]
        .iter()
        .map(|p| blocks(p))
        .sum();
        assert_eq!(imgs.bytes, want);
        assert!(imgs.bytes >= 64 * 1024);
    }

    #[test]
    fn missing_dirs_measure_nothing() {
        let (imgs, ctrs) = measure(
            &[PathBuf::from("/nonexistent/dockercri/x")],
            &[PathBuf::from("/nonexistent/dockercri/y")],
        );
        assert_eq!((imgs, ctrs), (Usage::default(), Usage::default()));
    }
}
