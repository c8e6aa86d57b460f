//! The pod CIDR kubelet gives with `UpdateRuntimeConfig`: what the CNI
//! plugins' IPAM hands out, kept in memory and in `<root>/pod-cidr` so a
//! restart of dockercri still knows it.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::fsutil::write_atomically;

/// The file under the root directory that holds the pod CIDR.
const FILE: &str = "pod-cidr";

/// The pod CIDR (empty until kubelet sends one).
#[derive(Debug)]
pub struct PodCidr {
    file: PathBuf,
    current: RwLock<String>,
}

impl PodCidr {
    /// The pod CIDR saved under `root` by an earlier run, if any.
    pub fn load(root: &Path) -> Self {
        let file = root.join(FILE);
        let current = std::fs::read_to_string(&file)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        PodCidr {
            file,
            current: RwLock::new(current),
        }
    }

    /// The pod CIDR kubelet last gave.
    pub fn current(&self) -> String {
        self.current.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Saves `cidr` (durably) and makes it the current one.
    pub fn set(&self, cidr: &str) -> std::io::Result<()> {
        write_atomically(&self.file, cidr.as_bytes())?;
        if let Ok(mut slot) = self.current.write() {
            *slot = cidr.to_string();
        }
        Ok(())
    }

    /// Where it is saved.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_cidr_survives_a_reload() {
        let root = tempfile::tempdir().unwrap();
        let cidr = PodCidr::load(root.path());
        assert_eq!(cidr.current(), "");
        cidr.set("10.244.0.0/24").unwrap();
        assert_eq!(cidr.current(), "10.244.0.0/24");
        assert_eq!(PodCidr::load(root.path()).current(), "10.244.0.0/24");
    }
}
