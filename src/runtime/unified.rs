//! cgroup v2 files kubelet asks for that Docker has no field for.
//!
//! kubelet 1.32+ on a cgroup v2 node puts `memory.oom.group=1` in every
//! container's `unified` resources (so an OOM kills the whole container),
//! and features such as MemoryQoS add `memory.min` / `memory.high`. runc
//! writes `unified` keys straight into the container's cgroup; Docker's API
//! cannot carry them. dockercri records them on the container at create (a
//! label, so a restart keeps them) and writes them into the container's
//! cgroup itself, right after Docker starts it and on each update.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::docker::container_body::CgroupFiles;
use crate::docker::labels;
use crate::error::{Error, Result};
use crate::kernel_stats::cgroup;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The node runs cgroup v2 in unified mode (read once).
pub fn host_is_v2() -> bool {
    static V2: OnceLock<bool> = OnceLock::new();
    *V2.get_or_init(|| Path::new(CGROUP_ROOT).join("cgroup.controllers").exists())
}

/// The files recorded on a container at create.
pub fn from_labels(docker_labels: Option<&HashMap<String, String>>) -> CgroupFiles {
    docker_labels
        .and_then(|l| l.get(labels::CGROUP_UNIFIED))
        .and_then(|text| serde_json::from_str::<BTreeMap<String, String>>(text).ok())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default()
}

/// The cgroup v2 directory of process `pid`.
fn directory_of(pid: i64) -> Result<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| Error::io(format!("reading the cgroup of process {pid}"), e))?;
    cgroup::paths_from_proc(&text, Path::new(CGROUP_ROOT))
        .unified
        .ok_or_else(|| Error::Internal(format!("process {pid} has no cgroup v2 directory")))
}

/// Writes `files` into the cgroup of the container whose process is `pid`,
/// on a blocking thread.
pub async fn write(pid: i64, files: CgroupFiles) -> Result<()> {
    tokio::task::spawn_blocking(move || write_into(&directory_of(pid)?, &files))
        .await
        .map_err(|e| Error::Internal(format!("writing the cgroup files of process {pid}: {e}")))?
}

/// Writes each file of `files` in `dir`; the first failure names its file.
pub fn write_into(dir: &Path, files: &CgroupFiles) -> Result<()> {
    for (key, value) in files {
        let path = dir.join(key);
        std::fs::write(&path, value).map_err(|e| {
            Error::io(
                format!("writing {value:?} to the cgroup file {}", path.display()),
                e,
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_through_the_label() {
        let label = r#"{"memory.high":"1000","memory.oom.group":"1"}"#;
        let l = HashMap::from([(labels::CGROUP_UNIFIED.to_string(), label.to_string())]);
        assert_eq!(
            from_labels(Some(&l)),
            [
                ("memory.high".to_string(), "1000".to_string()),
                ("memory.oom.group".to_string(), "1".to_string())
            ]
        );
        assert!(from_labels(None).is_empty());
        let broken = HashMap::from([(labels::CGROUP_UNIFIED.to_string(), "{".to_string())]);
        assert!(from_labels(Some(&broken)).is_empty());
    }

    #[test]
    fn files_are_written_and_a_failure_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![("memory.oom.group".to_string(), "1".to_string())];
        write_into(dir.path(), &files).unwrap();
        let written = std::fs::read_to_string(dir.path().join("memory.oom.group")).unwrap();
        assert_eq!(written, "1");
        let missing = dir.path().join("gone");
        let err = write_into(&missing, &files).unwrap_err().to_string();
        assert!(err.contains("memory.oom.group"), "{err}");
    }
}
