//! The pod's addresses from a CNI result (spec 0.3.0 to 1.1.0: `ips`
//! entries with a CIDR `address` and an optional `interface` index into
//! `interfaces`).

use std::net::IpAddr;

use serde_json::Value;

/// The pod's IPs, IPv4 first (kubelet takes the first as the primary):
/// addresses on interfaces inside the sandbox, or on no named interface.
pub fn pod_ips(result: &Value) -> Vec<IpAddr> {
    let interfaces = result
        .get("interfaces")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let in_sandbox = |entry: &Value| match entry.get("interface").and_then(Value::as_u64) {
        None => true,
        Some(i) => interfaces
            .get(i as usize)
            .and_then(|itf| itf.get("sandbox"))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()),
    };
    let mut ips: Vec<IpAddr> = result
        .get("ips")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|entry| in_sandbox(entry))
        .filter_map(|entry| entry.get("address")?.as_str())
        .filter_map(|cidr| cidr.split('/').next()?.parse().ok())
        .collect();
    ips.dedup();
    // Stable: keeps the plugin's order within each family.
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_of_each_spec_version_give_the_pod_ips() {
        for (result, want) in [
            // 1.0.0 bridge: host-side bridge and veth, pod eth0.
            (
                r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0"},{"name":"veth1"},{"name":"eth0","sandbox":"/proc/9/ns/net"}],
                   "ips":[{"address":"10.22.0.5/24","gateway":"10.22.0.1","interface":2}]}"#,
                vec!["10.22.0.5"],
            ),
            // 0.4.0 dual stack, IPv6 listed first: IPv4 still comes first.
            (
                r#"{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
                   "ips":[{"version":"6","address":"fd00::5/64","interface":0},{"version":"4","address":"10.1.0.5/16","interface":0}]}"#,
                vec!["10.1.0.5", "fd00::5"],
            ),
            // An address on a host-side interface is not the pod's.
            (
                r#"{"cniVersion":"1.1.0","interfaces":[{"name":"cni0"}],"ips":[{"address":"10.9.0.1/24","interface":0},{"address":"10.9.0.7/24"}]}"#,
                vec!["10.9.0.7"],
            ),
            (r#"{"cniVersion":"1.0.0"}"#, vec![]),
            (r#"{"ips":[{"address":"garbage"}]}"#, vec![]),
        ] {
            let value: Value = serde_json::from_str(result).unwrap();
            let got: Vec<String> = pod_ips(&value).iter().map(ToString::to_string).collect();
            assert_eq!(got, want, "{result}");
        }
    }
}
