//! What a pod tells its CNI plugins: `CNI_ARGS` (the Kubernetes pod
//! identity) and the `runtimeConfig` capabilities (port mappings,
//! bandwidth, DNS, pod CIDR), each plugin getting only those it declares.

use serde_json::{Map, Value, json};

use crate::proto::{PodSandboxConfig, Protocol};

/// Pod annotations kubelet's bandwidth shaping reads (bits per second).
pub const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

/// Burst when only a rate is given: unlimited, as cri-dockerd sends it.
const UNLIMITED_BURST: i64 = i32::MAX as i64;

/// The `CNI_ARGS` pairs for a pod's sandbox, in the order kubelet's CNI
/// code sent them; `IgnoreUnknown` lets plugins skip keys they do not know.
pub fn cni_args(config: &PodSandboxConfig, sandbox_id: &str) -> Vec<[String; 2]> {
    let meta = config.metadata.clone().unwrap_or_default();
    [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", meta.namespace.as_str()),
        ("K8S_POD_NAME", meta.name.as_str()),
        ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id),
        ("K8S_POD_UID", meta.uid.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| [k.to_string(), v.to_string()])
    .collect()
}

/// `CNI_ARGS` as the environment carries it: `K=V;K=V`.
pub fn cni_args_env(pairs: &[[String; 2]]) -> String {
    pairs
        .iter()
        .map(|[k, v]| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Every capability argument the pod has; `pod_cidr` may hold several
/// comma-separated CIDRs (dual stack), each its own range set.
pub fn capability_args(
    config: &PodSandboxConfig,
    pod_cidr: &str,
) -> Result<Map<String, Value>, String> {
    let mut caps = Map::new();
    let ports: Vec<Value> = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let protocol = match Protocol::try_from(p.protocol) {
                Ok(Protocol::Udp) => "udp",
                Ok(Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            let mut m = json!({
                "hostPort": p.host_port, "containerPort": p.container_port, "protocol": protocol,
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = json!(p.host_ip);
            }
            m
        })
        .collect();
    if !ports.is_empty() {
        caps.insert("portMappings".into(), Value::Array(ports));
    }
    if let Some(bandwidth) = bandwidth(config)? {
        caps.insert("bandwidth".into(), bandwidth);
    }
    if let Some(dns) = &config.dns_config {
        caps.insert(
            "dns".into(),
            json!({"servers": dns.servers, "searches": dns.searches, "options": dns.options}),
        );
    }
    let ranges: Vec<Value> = pod_cidr
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| json!([{ "subnet": c }]))
        .collect();
    if !ranges.is_empty() {
        caps.insert("ipRanges".into(), Value::Array(ranges));
    }
    Ok(caps)
}

/// The `bandwidth` capability from the pod's annotations, if it has any.
fn bandwidth(config: &PodSandboxConfig) -> Result<Option<Value>, String> {
    let rate = |key: &str| -> Result<Option<i64>, String> {
        config
            .annotations
            .get(key)
            .map(|v| parse_quantity(v).map_err(|why| format!("annotation {key}: {why}")))
            .transpose()
    };
    let (ingress, egress) = (rate(INGRESS_BANDWIDTH)?, rate(EGRESS_BANDWIDTH)?);
    if ingress.is_none() && egress.is_none() {
        return Ok(None);
    }
    let mut b = Map::new();
    if let Some(r) = ingress {
        b.insert("ingressRate".into(), json!(r));
        b.insert("ingressBurst".into(), json!(UNLIMITED_BURST));
    }
    if let Some(r) = egress {
        b.insert("egressRate".into(), json!(r));
        b.insert("egressBurst".into(), json!(UNLIMITED_BURST));
    }
    Ok(Some(Value::Object(b)))
}

/// A Kubernetes quantity (`10M`, `1.5Gi`, `500k`, `100000`) as a whole
/// number.
pub fn parse_quantity(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        _ => return Err(format!("{text:?} is not a quantity")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a quantity"))?;
    let whole = (value * multiplier).round();
    if !(1.0..=i64::MAX as f64).contains(&whole) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(whole as i64)
}

/// The `runtimeConfig` a plugin gets: the capabilities it declares with
/// `"capabilities": {"name": true}` that the pod has.
pub fn runtime_config_for(
    plugin: &Map<String, Value>,
    caps: &Map<String, Value>,
) -> Map<String, Value> {
    let Some(Value::Object(declared)) = plugin.get("capabilities") else {
        return Map::new();
    };
    declared
        .iter()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .filter_map(|(name, _)| Some((name.clone(), caps.get(name)?.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{DnsConfig, PodSandboxMetadata, PortMapping};

    fn pod() -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                namespace: "prod".into(),
                uid: "u-1".into(),
                attempt: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cni_args_carry_the_pod_identity() {
        let pairs = cni_args(&pod(), "abc");
        assert_eq!(
            cni_args_env(&pairs),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
    }

    #[test]
    fn capabilities_come_from_the_pod_config() {
        let mut p = pod();
        p.port_mappings = vec![
            PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                host_port: 8080,
                host_ip: String::new(),
            },
            PortMapping {
                protocol: Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            },
            PortMapping {
                protocol: Protocol::Sctp as i32,
                container_port: 9,
                host_port: 9,
                host_ip: String::new(),
            },
            // No host port: nothing to map.
            PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 81,
                host_port: 0,
                host_ip: String::new(),
            },
        ];
        p.dns_config = Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
        p.annotations.insert(INGRESS_BANDWIDTH.into(), "10M".into());
        let caps = capability_args(&p, "10.244.1.0/24, fd00:1::/64").unwrap();
        assert_eq!(
            Value::Object(caps),
            json!({
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
                    {"hostPort": 9, "containerPort": 9, "protocol": "sctp"},
                ],
                "bandwidth": {"ingressRate": 10_000_000, "ingressBurst": 2_147_483_647_i64},
                "dns": {"servers": ["10.96.0.10"], "searches": ["svc.cluster.local"], "options": ["ndots:5"]},
                "ipRanges": [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:1::/64"}]],
            })
        );
        assert!(capability_args(&pod(), "").unwrap().is_empty());
        p.annotations.insert(EGRESS_BANDWIDTH.into(), "lots".into());
        assert!(
            capability_args(&p, "")
                .unwrap_err()
                .contains("egress-bandwidth")
        );
    }

    #[test]
    fn quantities_parse_like_kubernetes() {
        for (text, want) in [
            ("100000", Ok(100_000)),
            ("10M", Ok(10_000_000)),
            ("1.5M", Ok(1_500_000)),
            ("500k", Ok(500_000)),
            ("1Gi", Ok(1 << 30)),
            ("2Ki", Ok(2048)),
            ("0", Err(())),
            ("10X", Err(())),
            ("M", Err(())),
            ("", Err(())),
        ] {
            assert_eq!(parse_quantity(text).map_err(|_| ()), want, "{text:?}");
        }
    }

    #[test]
    fn plugins_get_only_the_capabilities_they_declare() {
        let caps: Map<String, Value> = serde_json::from_value(json!({
            "portMappings": [{"hostPort": 1}], "dns": {"servers": []},
        }))
        .unwrap();
        let plugin = |v: Value| serde_json::from_value::<Map<String, Value>>(v).unwrap();
        for (p, want) in [
            (
                json!({"type": "portmap", "capabilities": {"portMappings": true}}),
                json!({"portMappings": [{"hostPort": 1}]}),
            ),
            (
                json!({"type": "x", "capabilities": {"portMappings": false, "bandwidth": true}}),
                json!({}),
            ),
            (json!({"type": "bridge"}), json!({})),
        ] {
            assert_eq!(
                Value::Object(runtime_config_for(&plugin(p.clone()), &caps)),
                want,
                "{p}"
            );
        }
    }
}
