//! The CNI result cache in libcni's layout:
//! `<cache dir>/results/<network>-<container id>-<ifname>`, a JSON object
//! of kind `cniCacheV1` holding the network config (base64), the runtime
//! args and the result. A restarted dockercri (or any libcni tool) finds a
//! pod's IPs and what its DEL needs there.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// libcni's `CNICacheV1`.
pub const KIND: &str = "cniCacheV1";

/// One cached attachment of a container to a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The network configuration list, base64 (Go's `[]byte` in JSON).
    pub config: String,
    #[serde(rename = "ifName")]
    pub if_name: String,
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<[String; 2]>,
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
}

impl Entry {
    /// The cached network configuration's bytes.
    pub fn config_bytes(&self) -> Option<Vec<u8>> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.config)
            .ok()
    }

    /// Encodes network configuration bytes for the `config` field.
    pub fn encode_config(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

fn results_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("results")
}

/// Where the entry of (`network`, `container_id`, `if_name`) lives.
pub fn path(cache_dir: &Path, network: &str, container_id: &str, if_name: &str) -> PathBuf {
    results_dir(cache_dir).join(format!("{network}-{container_id}-{if_name}"))
}

/// Writes `entry` (through a temporary file and a rename).
pub fn save(cache_dir: &Path, entry: &Entry) -> std::io::Result<()> {
    std::fs::create_dir_all(results_dir(cache_dir))?;
    let target = path(
        cache_dir,
        &entry.network_name,
        &entry.container_id,
        &entry.if_name,
    );
    let bytes = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    let tmp = target.with_file_name(format!(
        ".{}.tmp",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("entry")
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &target)
}

/// Reads one entry file; `None` when absent or not a v1 entry.
fn read(path: &Path) -> Option<Entry> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<Entry>(&bytes)
        .ok()
        .filter(|e| e.kind == KIND)
}

/// The entry of `container_id` on `if_name`: first under the network name
/// `hint` (the current config's, normally right), else any network.
pub fn find(
    cache_dir: &Path,
    container_id: &str,
    if_name: &str,
    hint: Option<&str>,
) -> Option<Entry> {
    if container_id.is_empty() {
        return None;
    }
    if let Some(net) = hint
        && let Some(entry) = read(&path(cache_dir, net, container_id, if_name))
        && entry.container_id == container_id
    {
        return Some(entry);
    }
    let suffix = format!("-{container_id}-{if_name}");
    std::fs::read_dir(results_dir(cache_dir))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(&suffix)))
        .filter_map(|e| read(&e.path()))
        .find(|entry| entry.container_id == container_id && entry.if_name == if_name)
}

/// Removes the entry's file; gone already is fine.
pub fn remove(cache_dir: &Path, entry: &Entry) -> std::io::Result<()> {
    let p = path(
        cache_dir,
        &entry.network_name,
        &entry.container_id,
        &entry.if_name,
    );
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(net: &str, id: &str) -> Entry {
        Entry {
            kind: KIND.into(),
            container_id: id.into(),
            config: Entry::encode_config(br#"{"name":"pods"}"#),
            if_name: "eth0".into(),
            network_name: net.into(),
            netns: "/proc/7/ns/net".into(),
            cni_args: vec![["K8S_POD_NAME".into(), "web".into()]],
            capability_args: Map::new(),
            result: serde_json::json!({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}),
        }
    }

    #[test]
    fn entries_round_trip_in_libcni_layout() {
        let dir = tempfile::tempdir().unwrap();
        let e = entry("pods", "abc123");
        save(dir.path(), &e).unwrap();
        let file = dir.path().join("results/pods-abc123-eth0");
        let raw: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        // The field names and encodings libcni reads.
        assert_eq!(raw["kind"], "cniCacheV1");
        assert_eq!(raw["containerId"], "abc123");
        assert_eq!(raw["ifName"], "eth0");
        assert_eq!(raw["networkName"], "pods");
        assert_eq!(raw["config"], "eyJuYW1lIjoicG9kcyJ9");
        assert_eq!(raw["cniArgs"][0][1], "web");
        assert!(raw.get("capabilityArgs").is_none());
        assert_eq!(e.config_bytes().unwrap(), br#"{"name":"pods"}"#);

        assert_eq!(
            find(dir.path(), "abc123", "eth0", Some("pods")),
            Some(e.clone())
        );
        // Found under another network name too (the config changed since).
        assert_eq!(
            find(dir.path(), "abc123", "eth0", Some("other")),
            Some(e.clone())
        );
        assert_eq!(find(dir.path(), "abc123", "eth0", None), Some(e.clone()));
        assert_eq!(find(dir.path(), "abc", "eth0", None), None);
        assert_eq!(find(dir.path(), "abc123", "eth1", None), None);
        assert_eq!(find(dir.path(), "", "eth0", None), None);
        remove(dir.path(), &e).unwrap();
        remove(dir.path(), &e).unwrap();
        assert!(!file.exists());
        assert_eq!(find(dir.path(), "abc123", "eth0", None), None);
    }

    #[test]
    fn foreign_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("results")).unwrap();
        std::fs::write(dir.path().join("results/pods-abc-eth0"), "{}").unwrap();
        std::fs::write(
            dir.path().join("results/x-abc-eth0"),
            r#"{"kind":"other","containerId":"abc","config":"","ifName":"eth0","networkName":"x"}"#,
        )
        .unwrap();
        assert_eq!(find(dir.path(), "abc", "eth0", Some("pods")), None);
    }
}
