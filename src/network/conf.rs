//! CNI network configuration: finding the one in `--cni-conf-dir` and
//! parsing it. A `.conflist` is a list of plugins; a `.conf` or `.json`
//! holds one plugin and is read as a list of one, as libcni does.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Spec versions whose configuration and result formats we speak. The
/// 0.3.x results have the same shape as 0.4.0; earlier ones do not.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A parsed network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    /// Each plugin's configuration object as written, `type` checked.
    pub plugins: Vec<Map<String, Value>>,
    /// The list's bytes, as libcni caches them for a later DEL.
    pub bytes: Vec<u8>,
    /// The file it came from (empty when it came from the cache).
    pub source: PathBuf,
}

impl NetworkList {
    /// The `type` of plugin `i` (checked non-empty at parse time).
    pub fn plugin_type(&self, i: usize) -> &str {
        self.plugins[i]
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Parses a configuration file's bytes; `list` says whether it is a
/// `.conflist` (else a single plugin's configuration).
pub fn parse(bytes: &[u8], list: bool) -> Result<NetworkList, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(top) = value else {
        return Err("not a JSON object".into());
    };
    let name = string_field(&top, "name")?;
    let cni_version = version(&top)?;
    let plugins = if list {
        let Some(Value::Array(items)) = top.get("plugins") else {
            return Err("\"plugins\" must be a list".into());
        };
        items
            .iter()
            .map(|p| match p {
                Value::Object(m) => Ok(m.clone()),
                _ => Err("each entry of \"plugins\" must be an object".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![top.clone()]
    };
    if plugins.is_empty() {
        return Err("\"plugins\" is empty".into());
    }
    for (i, plugin) in plugins.iter().enumerate() {
        string_field(plugin, "type").map_err(|e| format!("plugin {i}: {e}"))?;
    }
    let bytes = if list {
        bytes.to_vec()
    } else {
        // Cache the list form, so a DEL reads the same shape either way.
        serde_json::to_vec(&serde_json::json!({
            "cniVersion": cni_version, "name": name, "plugins": plugins,
        }))
        .map_err(|e| e.to_string())?
    };
    Ok(NetworkList {
        name,
        cni_version,
        plugins,
        bytes,
        source: PathBuf::new(),
    })
}

/// The spec version to speak: the highest supported one of `cniVersions`
/// (spec 1.1.0) when the list has it, else `cniVersion` (0.1.0 if absent).
fn version(top: &Map<String, Value>) -> Result<String, String> {
    let supported = |v: &str| SUPPORTED_VERSIONS.iter().position(|s| *s == v);
    let unsupported = |what: String| {
        format!(
            "{what} not supported (supported: {})",
            SUPPORTED_VERSIONS.join(", ")
        )
    };
    if let Some(Value::Array(listed)) = top.get("cniVersions") {
        return listed
            .iter()
            .filter_map(Value::as_str)
            .filter_map(supported)
            .max()
            .map(|i| SUPPORTED_VERSIONS[i].to_string())
            .ok_or_else(|| unsupported(format!("none of cniVersions {listed:?} is")));
    }
    let v = top
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("0.1.0");
    supported(v)
        .map(|_| v.to_string())
        .ok_or_else(|| unsupported(format!("cniVersion {v:?} is")))
}

fn string_field(map: &Map<String, Value>, key: &str) -> Result<String, String> {
    match map.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(format!("missing {key:?}")),
    }
}

/// The configuration files of `dir` in lexical order.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read CNI config directory {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conf" | "conflist" | "json")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The network to use: the first file of `dir`, in lexical order, that
/// parses and whose plugins are all found in `bin_dirs` (invalid files are
/// skipped, as kubelet's CNI code did). The error says why none fits.
pub fn load(dir: &Path, bin_dirs: &[PathBuf]) -> Result<NetworkList, String> {
    let mut rejected = Vec::new();
    for path in files(dir)? {
        let list = path.extension().and_then(|e| e.to_str()) == Some("conflist");
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| parse(&bytes, list))
            .and_then(|net| {
                for i in 0..net.plugins.len() {
                    crate::network::exec::find_plugin(net.plugin_type(i), bin_dirs)?;
                }
                Ok(net)
            });
        match parsed {
            Ok(mut net) => {
                net.source = path;
                return Ok(net);
            }
            Err(why) => rejected.push(format!("{}: {why}", path.display())),
        }
    }
    if rejected.is_empty() {
        Err(format!("no CNI network config in {}", dir.display()))
    } else {
        Err(format!(
            "no valid CNI network config in {} ({})",
            dir.display(),
            rejected.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_single_plugins_parse() {
        let net = parse(
            br#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge","bridge":"cni0"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
            true,
        )
        .unwrap();
        assert_eq!(net.name, "pods");
        assert_eq!(net.cni_version, "1.0.0");
        assert_eq!(net.plugins.len(), 2);
        assert_eq!(net.plugin_type(1), "portmap");
        assert_eq!(net.plugins[0]["bridge"], "cni0");

        let one = parse(
            br#"{"cniVersion":"0.4.0","name":"one","type":"bridge"}"#,
            false,
        )
        .unwrap();
        assert_eq!(one.plugins.len(), 1);
        assert_eq!(one.plugin_type(0), "bridge");
        // The cached bytes are the list form either way.
        let reparsed = parse(&one.bytes, true).unwrap();
        assert_eq!(reparsed.plugins, one.plugins);
        assert_eq!(reparsed.name, "one");
    }

    #[test]
    fn the_highest_supported_listed_version_wins() {
        for (text, want) in [
            (r#"{"cniVersion":"0.4.0"}"#, "0.4.0"),
            (
                r#"{"cniVersion":"0.4.0","cniVersions":["1.0.0","1.1.0","2.0.0"]}"#,
                "1.1.0",
            ),
            (r#"{"cniVersions":["1.0.0","0.3.1"]}"#, "1.0.0"),
        ] {
            let mut conf: Map<String, Value> = serde_json::from_str(text).unwrap();
            conf.insert("name".into(), "n".into());
            conf.insert("type".into(), "bridge".into());
            let bytes = serde_json::to_vec(&conf).unwrap();
            assert_eq!(parse(&bytes, false).unwrap().cni_version, want, "{text}");
        }
    }

    #[test]
    fn bad_configs_say_why() {
        for (text, list, why) in [
            ("nope", true, "not JSON"),
            ("[]", true, "not a JSON object"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[]}"#,
                true,
                "missing \"name\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"x"}"#,
                true,
                "must be a list",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#,
                true,
                "empty",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"bridge":"b"}]}"#,
                true,
                "plugin 0: missing \"type\"",
            ),
            (
                r#"{"cniVersion":"0.2.0","name":"x","type":"bridge"}"#,
                false,
                "not supported",
            ),
            (
                r#"{"name":"x","type":"bridge"}"#,
                false,
                "\"0.1.0\" is not supported",
            ),
            (
                r#"{"cniVersions":["0.2.0","9.9.9"],"name":"x","type":"bridge"}"#,
                false,
                "none of cniVersions",
            ),
        ] {
            let err = parse(text.as_bytes(), list).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn the_first_valid_file_in_lexical_order_wins() {
        let conf = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let bins = [bin.path().to_path_buf()];
        assert!(
            load(conf.path(), &bins)
                .unwrap_err()
                .contains("no CNI network config")
        );
        let bridge = bin.path().join("bridge");
        std::fs::write(&bridge, "").unwrap();
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&bridge, executable).unwrap();
        let write = |name: &str, text: &str| std::fs::write(conf.path().join(name), text).unwrap();
        write("05-notes.txt", "ignored");
        write("10-broken.conflist", "{");
        write(
            "20-missing.conflist",
            r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"nosuch"}]}"#,
        );
        let err = load(conf.path(), &bins).unwrap_err();
        assert!(err.contains("10-broken.conflist: not JSON"), "{err}");
        assert!(
            err.contains("20-missing.conflist") && err.contains("nosuch"),
            "{err}"
        );
        write(
            "30-b.conf",
            r#"{"cniVersion":"1.0.0","name":"b","type":"bridge"}"#,
        );
        write(
            "40-a.conflist",
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}"#,
        );
        let net = load(conf.path(), &bins).unwrap();
        assert_eq!(net.name, "b");
        assert_eq!(net.source, conf.path().join("30-b.conf"));
        assert!(load(&conf.path().join("gone"), &bins).is_err());
    }
}
