//! Pod networking through CNI plugins (`--network-plugin=cni`): the
//! sandbox runs on Docker's `none` network and dockercri, as the CNI
//! runtime, runs the configured plugin list against the pause container's
//! network namespace: ADD once it runs, DEL when the pod stops. Results
//! are cached in libcni's layout under `--cni-cache-dir`, which is where
//! pod IPs and a later DEL's inputs come from, across restarts too.

pub mod args;
pub mod cache;
pub mod conf;
pub mod exec;
pub mod pod_cidr;
pub mod result;

use std::path::PathBuf;

use serde_json::{Map, Value};
use tracing::{debug, info, warn};

use crate::config::{Config, NetworkPlugin};
use crate::error::{Error, Result};
use crate::proto::{NamespaceMode, PodSandboxConfig};
use cache::Entry;
use conf::NetworkList;
use exec::Invocation;
use pod_cidr::PodCidr;

/// The pod's interface name, as kubelet's CNI code always used.
pub const IFNAME: &str = "eth0";

/// What the pod network is handed: the CNI settings and kubelet's pod
/// CIDR.
#[derive(Debug)]
pub struct Network {
    cni: bool,
    cni_bin_dirs: Vec<PathBuf>,
    cni_conf_dir: PathBuf,
    cni_cache_dir: PathBuf,
    /// The pod CIDR kubelet gives with `UpdateRuntimeConfig`.
    pub pod_cidr: PodCidr,
}

impl Network {
    pub fn new(config: &Config) -> Self {
        Network {
            cni: config.network_plugin == NetworkPlugin::Cni,
            cni_bin_dirs: config.cni_bin_dirs.clone(),
            cni_conf_dir: config.cni_conf_dir.clone(),
            cni_cache_dir: config.cni_cache_dir.clone(),
            pod_cidr: PodCidr::load(&config.root_directory),
        }
    }
}

fn enabled(network: &Network) -> bool {
    network.cni
}

/// Whether the pod gets its network from CNI: CNI mode and not on the
/// node's network.
pub fn applies(network: &Network, config: &PodSandboxConfig) -> bool {
    let host_network = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network() == NamespaceMode::Node);
    enabled(network) && !host_network
}

/// `NetworkReady` in CNI mode: a valid configuration whose plugins are
/// installed. Read afresh on every call (one directory listing and a small
/// JSON parse, at kubelet's few-second `Status` pace), so a config that
/// appears or goes away is seen at the next call, with nothing to miss.
pub fn ready(network: &Network) -> std::result::Result<(), String> {
    conf::load(&network.cni_conf_dir, &network.cni_bin_dirs).map(|_| ())
}

/// The network namespace of a running pause container.
fn netns_path(pid: i64) -> String {
    format!("/proc/{pid}/ns/net")
}

/// CNI ADD for a sandbox whose pause container runs as `pid`. A failed
/// ADD runs DEL for what the plugins made and fails with their message.
pub async fn setup(
    network: &Network,
    sandbox_id: &str,
    config: &PodSandboxConfig,
    pid: i64,
) -> Result<()> {
    if !applies(network, config) {
        return Ok(());
    }
    let net = conf::load(&network.cni_conf_dir, &network.cni_bin_dirs).map_err(|why| {
        Error::FailedPrecondition {
            what: "pod network".into(),
            why: format!("the CNI network plugin is not ready: {why}"),
        }
    })?;
    let caps = args::capability_args(config, &network.pod_cidr.current())
        .map_err(|why| Error::invalid("config.annotations", why))?;
    let mut entry = Entry {
        kind: cache::KIND.into(),
        container_id: sandbox_id.into(),
        config: Entry::encode_config(&net.bytes),
        if_name: IFNAME.into(),
        network_name: net.name.clone(),
        netns: netns_path(pid),
        cni_args: args::cni_args(config, sandbox_id),
        capability_args: caps,
        result: Value::Null,
    };
    let name = net.name.clone();
    let bin_dirs = network.cni_bin_dirs.clone();
    let cache_dir = network.cni_cache_dir.clone();
    // On a task of its own, so that a cancelled RunPodSandbox cannot kill a
    // plugin half-way: ADD ends cached, or undone. The entry is written
    // first without a result, so that if dockercri dies during the ADD, the
    // DEL of a later stop or retry still finds what it needs.
    let attach = tokio::spawn(async move {
        let save = |entry: &Entry| {
            cache::save(&cache_dir, entry).map_err(|e| {
                format!(
                    "cannot write the CNI cache under {}: {e}",
                    cache_dir.display()
                )
            })
        };
        save(&entry)?;
        let added = add(&bin_dirs, &net, &entry).await.and_then(|result| {
            entry.result = result;
            save(&entry)
        });
        match added {
            Ok(()) => Ok(entry.result),
            Err(why) => {
                entry.result = Value::Null;
                if let Err(del) = del(&bin_dirs, &net, &entry, &entry.netns).await {
                    warn!(sandbox = %entry.container_id, error = %del, "CNI DEL after a failed ADD failed too");
                }
                // The sandbox goes too, so nothing would ever stop it again.
                let _ = cache::remove(&cache_dir, &entry);
                Err(why)
            }
        }
    });
    let result = attach
        .await
        .map_err(|e| Error::Internal(format!("the CNI ADD task failed: {e}")))?
        .map_err(|why| Error::Network {
            what: format!("setting up network {name:?} for pod sandbox {sandbox_id}"),
            why,
        })?;
    let ips = result::pod_ips(&result);
    if ips.is_empty() {
        warn!(sandbox = %sandbox_id, network = %name, "the CNI result has no pod IP");
    }
    info!(sandbox = %sandbox_id, network = %name, ips = ?ips, "pod network set up");
    Ok(())
}

/// CNI DEL for a sandbox, from its cached ADD; `pid` is the pause
/// container's while it runs. Nothing cached (never networked, or torn
/// down already) is success, so a second stop is one.
pub async fn teardown(network: &Network, sandbox_id: &str, pid: Option<i64>) -> Result<()> {
    if !enabled(network) {
        return Ok(());
    }
    let cache_dir = &network.cni_cache_dir;
    let Some(entry) = cache::find(cache_dir, sandbox_id, IFNAME, None) else {
        debug!(sandbox = %sandbox_id, "no cached CNI attachment: nothing to tear down");
        return Ok(());
    };
    // The network as it was at ADD, even if the directory changed since.
    let net = entry
        .config_bytes()
        .and_then(|bytes| conf::parse(&bytes, true).ok())
        .map(Ok)
        .unwrap_or_else(|| conf::load(&network.cni_conf_dir, &network.cni_bin_dirs));
    let net = net.map_err(|why| Error::Network {
        what: format!("tearing down the network of pod sandbox {sandbox_id}"),
        why: format!("the cached config is unreadable and {why}"),
    })?;
    // A pid's namespace only while the pause container runs: a cached path
    // may name another process by now.
    let netns = pid
        .filter(|p| *p > 0)
        .map(netns_path)
        .filter(|p| exec::netns_exists(p))
        .unwrap_or_default();
    del(&network.cni_bin_dirs, &net, &entry, &netns)
        .await
        .map_err(|why| Error::Network {
            what: format!(
                "tearing down network {:?} of pod sandbox {sandbox_id}",
                net.name
            ),
            why,
        })?;
    cache::remove(cache_dir, &entry)
        .map_err(|e| Error::io(format!("removing the CNI cache entry of {sandbox_id}"), e))?;
    info!(sandbox = %sandbox_id, network = %net.name, "pod network torn down");
    Ok(())
}

/// Whether a running sandbox has the network it needs: it is not a CNI
/// pod, or its ADD finished (a result is cached). One whose ADD never
/// finished (dockercri died half-way) has to be made again.
pub fn attached(network: &Network, sandbox_id: &str, config: &PodSandboxConfig) -> bool {
    !applies(network, config)
        || cache::find(&network.cni_cache_dir, sandbox_id, IFNAME, None)
            .is_some_and(|e| !e.result.is_null())
}

/// The pod's IPs from the CNI result cache: the primary and the others.
/// `None` when not in CNI mode or nothing is cached for the sandbox.
pub fn pod_ips(network: &Network, sandbox_id: &str) -> Option<(String, Vec<String>)> {
    if !enabled(network) {
        return None;
    }
    let entry = cache::find(&network.cni_cache_dir, sandbox_id, IFNAME, None)?;
    let mut ips = result::pod_ips(&entry.result)
        .into_iter()
        .map(|ip| ip.to_string());
    let primary = ips.next()?;
    Some((primary, ips.collect()))
}

/// The configuration plugin `i` gets on stdin: its own object plus the
/// list's name and version, the previous result and its capabilities.
fn plugin_config(
    net: &NetworkList,
    i: usize,
    prev: Option<&Value>,
    caps: &Map<String, Value>,
) -> std::result::Result<Vec<u8>, String> {
    let mut conf = net.plugins[i].clone();
    conf.insert("name".into(), Value::String(net.name.clone()));
    conf.insert("cniVersion".into(), Value::String(net.cni_version.clone()));
    if let Some(prev) = prev.filter(|p| !p.is_null()) {
        conf.insert("prevResult".into(), prev.clone());
    }
    let runtime = args::runtime_config_for(&net.plugins[i], caps);
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    serde_json::to_vec(&conf).map_err(|e| e.to_string())
}

/// ADD through every plugin in order, each seeing the previous result.
async fn add(
    bin_dirs: &[PathBuf],
    net: &NetworkList,
    entry: &Entry,
) -> std::result::Result<Value, String> {
    let env_args = args::cni_args_env(&entry.cni_args);
    let inv = Invocation {
        command: "ADD",
        container_id: &entry.container_id,
        netns: &entry.netns,
        ifname: &entry.if_name,
        args: &env_args,
        bin_dirs,
    };
    let mut prev = Value::Null;
    for i in 0..net.plugins.len() {
        let stdin = plugin_config(net, i, Some(&prev), &entry.capability_args)?;
        let kind = net.plugin_type(i);
        let out = exec::run(&inv, kind, &stdin).await?;
        prev = serde_json::from_slice(&out).map_err(|e| {
            format!("plugin {kind:?} answered something that is not a CNI result: {e}")
        })?;
    }
    Ok(prev)
}

/// DEL through every plugin in reverse order with the cached result as
/// `prevResult`. Every plugin runs even when one fails (each releases its
/// own part); the first failure is the answer.
async fn del(
    bin_dirs: &[PathBuf],
    net: &NetworkList,
    entry: &Entry,
    netns: &str,
) -> std::result::Result<(), String> {
    let env_args = args::cni_args_env(&entry.cni_args);
    let inv = Invocation {
        command: "DEL",
        container_id: &entry.container_id,
        netns,
        ifname: &entry.if_name,
        args: &env_args,
        bin_dirs,
    };
    let mut first_failure = None;
    for i in (0..net.plugins.len()).rev() {
        let outcome = match plugin_config(net, i, Some(&entry.result), &entry.capability_args) {
            Ok(stdin) => exec::run(&inv, net.plugin_type(i), &stdin)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(why) = outcome {
            warn!(sandbox = %entry.container_id, error = %why, "CNI DEL failed");
            first_failure.get_or_insert(why);
        }
    }
    first_failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plugin_gets_name_version_prev_result_and_its_capabilities() {
        let net = conf::parse(
            br#"{"cniVersion":"1.0.0","name":"pods","plugins":[
                {"type":"bridge","bridge":"cni0"},
                {"type":"portmap","capabilities":{"portMappings":true}}]}"#,
            true,
        )
        .unwrap();
        let caps: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"portMappings":[{"hostPort":80}],"dns":{}}))
                .unwrap();
        let first: Value =
            serde_json::from_slice(&plugin_config(&net, 0, Some(&Value::Null), &caps).unwrap())
                .unwrap();
        assert_eq!(
            first,
            serde_json::json!({"type":"bridge","bridge":"cni0","name":"pods","cniVersion":"1.0.0"})
        );
        let prev = serde_json::json!({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]});
        let second: Value =
            serde_json::from_slice(&plugin_config(&net, 1, Some(&prev), &caps).unwrap()).unwrap();
        assert_eq!(
            second,
            serde_json::json!({
                "type":"portmap","capabilities":{"portMappings":true},"name":"pods","cniVersion":"1.0.0",
                "prevResult": prev, "runtimeConfig": {"portMappings":[{"hostPort":80}]},
            })
        );
    }
}
