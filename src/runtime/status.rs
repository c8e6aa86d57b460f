//! `Version`, `Status`, `RuntimeConfig` and `UpdateRuntimeConfig`: what the
//! runtime is, whether it and the pod network are ready, and the node-level
//! settings kubelet exchanges with it.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::SystemInfo;
use tracing::info;

use crate::config::NetworkPlugin;
use crate::context::Context;
use crate::cri::{KUBE_API_VERSION, RUNTIME_API_VERSION, RUNTIME_NAME};
use crate::error::{Error, Result};
use crate::proto::{
    LinuxRuntimeConfiguration, RuntimeCondition, RuntimeConfigResponse, RuntimeFeatures,
    RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StatusResponse, VersionResponse,
};

/// Condition types and reasons, as kubelet spells them.
pub const RUNTIME_READY: &str = "RuntimeReady";
pub const NETWORK_READY: &str = "NetworkReady";
const REASON_DOCKER_NOT_READY: &str = "DockerDaemonNotReady";
const REASON_NETWORK_NOT_READY: &str = "NetworkPluginNotReady";

/// How long `Status` waits for dockerd before calling it not ready:
/// kubelet calls `Status` every few seconds and must not hang on it, and
/// a hung dockerd must show as not ready within 2 s.
const STATUS_PROBE_LIMIT: Duration = Duration::from_millis(1500);

/// `Version`: the engine's own version is the runtime version.
pub async fn version(ctx: &Context) -> Result<VersionResponse> {
    let docker = ctx.docker.get().await?;
    let v = docker
        .version()
        .await
        .map_err(|e| ctx.docker.classify(e, "docker", "version"))?;
    Ok(VersionResponse {
        version: KUBE_API_VERSION.into(),
        runtime_name: RUNTIME_NAME.into(),
        runtime_version: v.version.unwrap_or_default(),
        runtime_api_version: RUNTIME_API_VERSION.into(),
    })
}

/// `Status`: never fails; a dead dockerd is reported as conditions.
pub async fn status(ctx: &Context, verbose: bool) -> Result<StatusResponse> {
    let info = probe_docker(ctx).await;
    let network = match &info {
        Ok(_) => network_ready(ctx).await,
        Err(e) => Err(format!("docker is not ready: {e}")),
    };
    let runtime = info.as_ref().map(|_| ()).map_err(|e| e.to_string());
    let mut response = StatusResponse {
        status: Some(RuntimeStatus {
            conditions: conditions(&runtime, &network),
        }),
        runtime_handlers: info
            .as_ref()
            .map(|info| runtime_handlers(info, ctx.docker.recursive_read_only()))
            .unwrap_or_default(),
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: false,
            user_namespaces_host_network: false,
        }),
        info: HashMap::new(),
    };
    if verbose {
        response.info = verbose_info(ctx, info.as_ref().ok());
    }
    Ok(response)
}

async fn probe_docker(ctx: &Context) -> Result<SystemInfo> {
    let work = async {
        let docker = ctx.docker.get().await?;
        docker
            .info()
            .await
            .map_err(|e| ctx.docker.classify(e, "docker", "info"))
    };
    tokio::time::timeout(STATUS_PROBE_LIMIT, work)
        .await
        .unwrap_or_else(|_| {
            Err(Error::DeadlineExceeded {
                what: format!("docker at {} did not answer", ctx.docker.endpoint()),
            })
        })
}

/// Whether pods can get a network: Docker's bridge network exists, or a
/// CNI configuration is installed.
async fn network_ready(ctx: &Context) -> std::result::Result<(), String> {
    match ctx.config.network_plugin {
        NetworkPlugin::DockerBridge => {
            let docker = ctx.docker.get().await.map_err(|e| e.to_string())?;
            docker
                .inspect_network("bridge", None)
                .await
                .map(|_| ())
                .map_err(|e| format!("docker network \"bridge\" is not usable: {e}"))
        }
        NetworkPlugin::Cni => crate::network::ready(&ctx.network),
    }
}

/// The two conditions kubelet reads, with reason and message when false.
pub fn conditions(
    runtime: &std::result::Result<(), String>,
    network: &std::result::Result<(), String>,
) -> Vec<RuntimeCondition> {
    let condition = |kind: &str, result: &std::result::Result<(), String>, reason: &str| {
        let (status, reason, message) = match result {
            Ok(()) => (true, String::new(), String::new()),
            Err(why) => (false, reason.to_string(), why.clone()),
        };
        RuntimeCondition {
            r#type: kind.into(),
            status,
            reason,
            message,
        }
    };
    vec![
        condition(RUNTIME_READY, runtime, REASON_DOCKER_NOT_READY),
        condition(NETWORK_READY, network, REASON_NETWORK_NOT_READY),
    ]
}

/// Runtime handlers are the OCI runtimes dockerd knows; the empty name is
/// the default one. Their features are what the connected Docker can do:
/// `recursive_read_only` from its API version.
pub fn runtime_handlers(info: &SystemInfo, recursive_read_only: bool) -> Vec<RuntimeHandler> {
    let features = || {
        Some(RuntimeHandlerFeatures {
            recursive_read_only_mounts: recursive_read_only,
            user_namespaces: false,
        })
    };
    let mut names: Vec<String> = info
        .runtimes
        .as_ref()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    std::iter::once(String::new())
        .chain(names)
        .map(|name| RuntimeHandler {
            name,
            features: features(),
        })
        .collect()
}

fn verbose_info(ctx: &Context, info: Option<&SystemInfo>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let config = serde_json::json!({
        "containerRuntimeEndpoint": ctx.config.listen.to_string(),
        "dockerEndpoint": ctx.docker.endpoint(),
        "podInfraContainerImage": ctx.config.pause_image,
        "rootDirectory": ctx.config.root_directory,
        "streamingBindAddr": ctx.config.streaming_bind_addr.to_string(),
        "networkPlugin": match ctx.config.network_plugin {
            NetworkPlugin::DockerBridge => "",
            NetworkPlugin::Cni => "cni",
        },
        "podCIDR": ctx.network.pod_cidr.current(),
    });
    out.insert("config".into(), config.to_string());
    if let Some(info) = info {
        let docker = serde_json::json!({
            "serverVersion": info.server_version,
            "apiVersion": ctx.docker.api_version(),
            "cgroupDriver": info.cgroup_driver.map(|d| d.to_string()),
            "cgroupVersion": info.cgroup_version.map(|v| v.to_string()),
            "storageDriver": info.driver,
            "defaultRuntime": info.default_runtime,
            "kernelVersion": info.kernel_version,
            "operatingSystem": info.operating_system,
        });
        out.insert("docker".into(), docker.to_string());
    }
    out
}

/// `RuntimeConfig`: the cgroup driver dockerd uses, so kubelet can match it.
pub async fn runtime_config(ctx: &Context) -> Result<RuntimeConfigResponse> {
    // The same answer the cgroup parents are converted by.
    let driver = ctx.docker.cgroup_driver().await?;
    Ok(RuntimeConfigResponse {
        linux: Some(LinuxRuntimeConfiguration {
            cgroup_driver: driver as i32,
        }),
    })
}

/// `UpdateRuntimeConfig`: remembers the pod CIDR (also across restarts).
/// Setting the same value again is a no-op; an empty value is ignored, as
/// kubelet sends the config without a CIDR when it has none.
pub fn update_runtime_config(ctx: &Context, pod_cidr: &str) -> Result<()> {
    let pod_cidr = pod_cidr.trim();
    if pod_cidr.is_empty() || ctx.network.pod_cidr.current() == pod_cidr {
        return Ok(());
    }
    validate_cidr(pod_cidr)?;
    ctx.network.pod_cidr.set(pod_cidr).map_err(|e| {
        Error::io(
            format!(
                "saving pod CIDR to {}",
                ctx.network.pod_cidr.file().display()
            ),
            e,
        )
    })?;
    info!(pod_cidr, "pod CIDR updated");
    Ok(())
}

/// Accepts one or more comma-separated CIDRs (dual stack), IPv4 or IPv6.
pub fn validate_cidr(text: &str) -> Result<()> {
    for part in text.split(',') {
        let part = part.trim();
        let bad = || {
            Error::invalid(
                "runtime_config.network_config.pod_cidr",
                format!("{part:?} is not a CIDR"),
            )
        };
        let (addr, bits) = part.split_once('/').ok_or_else(bad)?;
        let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
        let bits: u8 = bits.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_carry_reason_and_message_only_when_false() {
        let ok: std::result::Result<(), String> = Ok(());
        let down: std::result::Result<(), String> = Err("connection refused".into());
        let c = conditions(&ok, &ok);
        assert_eq!(c.len(), 2);
        assert!(
            c.iter()
                .all(|c| c.status && c.reason.is_empty() && c.message.is_empty())
        );
        let c = conditions(&down, &down);
        assert_eq!(c[0].r#type, RUNTIME_READY);
        assert_eq!(c[0].reason, "DockerDaemonNotReady");
        assert_eq!(c[1].r#type, NETWORK_READY);
        assert_eq!(c[1].reason, "NetworkPluginNotReady");
        assert!(
            c.iter()
                .all(|c| !c.status && c.message == "connection refused")
        );
    }

    #[test]
    fn runtime_handlers_start_with_the_default() {
        let mut runtimes = HashMap::new();
        runtimes.insert("runc".to_string(), Default::default());
        runtimes.insert("io.containerd.runc.v2".to_string(), Default::default());
        let info = SystemInfo {
            runtimes: Some(runtimes),
            ..Default::default()
        };
        let names: Vec<_> = runtime_handlers(&info, false)
            .into_iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(names, ["", "io.containerd.runc.v2", "runc"]);
        for rro in [false, true] {
            for handler in runtime_handlers(&info, rro) {
                let features = handler.features.unwrap();
                assert_eq!(features.recursive_read_only_mounts, rro, "{}", handler.name);
            }
        }
    }

    #[test]
    fn cidrs_are_checked() {
        for good in ["10.244.0.0/24", "fd00::/64", "10.0.0.0/16,fd00::/64"] {
            assert!(validate_cidr(good).is_ok(), "{good}");
        }
        for bad in ["10.0.0.0", "10.0.0.0/33", "nope/8", "fd00::/129"] {
            let err = validate_cidr(bad).unwrap_err();
            assert!(err.to_string().contains("pod_cidr"), "{bad}: {err}");
        }
    }
}
