//! Sandbox records: what Docker cannot tell us about a sandbox after a
//! restart (its full CRI config: port mappings, host-network flag, DNS; the
//! runtime handler; resources from `UpdatePodSandboxResources`), one small
//! protobuf file per sandbox under `<root>/sandboxes/`, written atomically
//! and durably. (cri-dockerd and dockershim call theirs "checkpoints"; here
//! that word is left to the CRI's `CheckpointContainer`.)

use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::{Error, Result};
use crate::fsutil::write_atomically;
use crate::proto::{LinuxContainerResources, PodSandboxConfig};

/// The directory under the root directory that holds the records.
pub const DIR: &str = "sandboxes";
/// Where cri-dockerd keeps its sandbox checkpoints under its root directory
/// (`sandboxCheckpointDir` in its core/checkpoint.go): one JSON file per
/// sandbox, named by the Docker id. dockercri never reads them (Docker's
/// host config holds the same port mappings and host-network flag).
pub const CRI_DOCKERD_DIR: &str = "sandbox";

/// One sandbox's record.
#[derive(Clone, PartialEq, Message)]
pub struct SandboxRecord {
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
    #[prost(message, optional, tag = "3")]
    pub overhead: Option<LinuxContainerResources>,
    #[prost(message, optional, tag = "4")]
    pub resources: Option<LinuxContainerResources>,
}

fn path(root: &Path, id: &str) -> Result<PathBuf> {
    path_in(root, DIR, id)
}

fn path_in(root: &Path, dir: &str, id: &str) -> Result<PathBuf> {
    // Docker ids are hex; anything else must not become a path.
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Internal(format!("not a Docker id: {id:?}")));
    }
    Ok(root.join(dir).join(id))
}

/// Writes (or replaces) the record of sandbox `id`.
pub fn save(root: &Path, id: &str, record: &SandboxRecord) -> Result<()> {
    let path = path(root, id)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    write_atomically(&path, &record.encode_to_vec())
        .map_err(|e| Error::io(format!("writing record {}", path.display()), e))
}

/// Reads the record of sandbox `id`; `None` when there is none (a
/// sandbox made by cri-dockerd, or one whose file was lost) or it is corrupt.
pub fn load(root: &Path, id: &str) -> Option<SandboxRecord> {
    let bytes = std::fs::read(path(root, id).ok()?).ok()?;
    SandboxRecord::decode(bytes.as_slice()).ok()
}

/// Deletes the record of sandbox `id`; a missing one is fine.
pub fn remove(root: &Path, id: &str) -> Result<()> {
    remove_file(&path(root, id)?)
}

/// Deletes cri-dockerd's checkpoint of sandbox `id` (a pod cri-dockerd made,
/// removed by dockercri), and nothing else of cri-dockerd's: should the
/// node go back to cri-dockerd, it would list a pod whose checkpoint is
/// left as a NOTREADY sandbox. A missing one is fine; one that cannot be
/// deleted is only logged, since no dockercri call depends on it.
pub fn remove_cri_dockerd(cri_dockerd_root: &Path, id: &str) {
    let removed = path_in(cri_dockerd_root, CRI_DOCKERD_DIR, id).and_then(|p| remove_file(&p));
    if let Err(e) = removed {
        tracing::warn!(sandbox = %id, error = %e, "cannot delete cri-dockerd's checkpoint of a removed pod");
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
            format!("removing sandbox record {}", path.display()),
            e,
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{PodSandboxMetadata, PortMapping};

    #[test]
    fn records_round_trip_and_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let cp = SandboxRecord {
            config: Some(PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "p".into(),
                    ..Default::default()
                }),
                port_mappings: vec![PortMapping {
                    container_port: 80,
                    host_port: 8080,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            runtime_handler: "runc".into(),
            ..Default::default()
        };
        save(dir.path(), "abc123", &cp).unwrap();
        assert_eq!(load(dir.path(), "abc123"), Some(cp));
        remove(dir.path(), "abc123").unwrap();
        remove(dir.path(), "abc123").unwrap();
        assert_eq!(load(dir.path(), "abc123"), None);
    }

    #[test]
    fn ids_never_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(save(dir.path(), "../x", &SandboxRecord::default()).is_err());
        assert!(load(dir.path(), "../../etc/passwd").is_none());
        remove_cri_dockerd(dir.path(), "../x");
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn only_the_pods_own_cri_dockerd_checkpoint_goes() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join(CRI_DOCKERD_DIR);
        std::fs::create_dir_all(&sandbox).unwrap();
        for id in ["abc1", "abc2"] {
            std::fs::write(sandbox.join(id), "{}").unwrap();
        }
        remove_cri_dockerd(dir.path(), "abc1");
        remove_cri_dockerd(dir.path(), "abc1");
        assert!(!sandbox.join("abc1").exists());
        assert!(sandbox.join("abc2").exists());
    }
}
