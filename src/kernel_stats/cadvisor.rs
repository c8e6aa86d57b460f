//! cAdvisor-compatible metrics for `ListMetricDescriptors` and
//! `ListPodSandboxMetrics`: names, help texts, label keys and units as
//! cAdvisor's `/metrics/cadvisor`, built from kernel readings.
//!
//! kubelet turns each descriptor into a Prometheus description whose
//! variable labels are exactly `label_keys`, and adds no labels of its own,
//! so every metric carries all of [`BASE_LABELS`] (cAdvisor's `container`,
//! `id`, `image`, `name`, `namespace`, `pod`) plus its own keys. `id` is the
//! CRI id (container or sandbox), as CRI-O and containerd send it. A pod's
//! own cgroup has empty `container`, `name` and `image`, as in cAdvisor.
//!
//! Units: kubelet exposes `value` as it comes, so `*_seconds*` metrics are
//! in seconds, whole seconds like CRI-O (`Metric.value` is an integer);
//! bytes are bytes, counts are counts.

use crate::proto::{Metric, MetricDescriptor, MetricType, UInt64Value};

use super::Interface;
use super::cgroup::Sample;

/// Label keys every metric starts with, in this order.
pub const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

/// One metric's description.
struct Def {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    /// Label keys after [`BASE_LABELS`].
    extra: &'static [&'static str],
}

const fn counter(name: &'static str, help: &'static str, extra: &'static [&'static str]) -> Def {
    Def {
        name,
        help,
        kind: MetricType::Counter,
        extra,
    }
}

const fn gauge(name: &'static str, help: &'static str, extra: &'static [&'static str]) -> Def {
    Def {
        name,
        help,
        kind: MetricType::Gauge,
        extra,
    }
}

const IFACE: &[&str] = &["interface"];

/// Every metric dockercri reports.
const DEFS: &[Def] = &[
    counter(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        &["cpu"],
    ),
    counter(
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        &[],
    ),
    counter(
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        &[],
    ),
    counter(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        &[],
    ),
    counter(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        &[],
    ),
    counter(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        &[],
    ),
    gauge(
        "container_spec_cpu_period",
        "CPU period of the container.",
        &[],
    ),
    gauge(
        "container_spec_cpu_quota",
        "CPU quota of the container.",
        &[],
    ),
    gauge(
        "container_spec_cpu_shares",
        "CPU share of the container.",
        &[],
    ),
    gauge(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        &[],
    ),
    gauge(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
        &[],
    ),
    gauge(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        &[],
    ),
    gauge("container_memory_rss", "Size of RSS in bytes.", &[]),
    gauge(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        &[],
    ),
    gauge(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
        &[],
    ),
    gauge(
        "container_memory_swap",
        "Container swap usage in bytes.",
        &[],
    ),
    counter(
        "container_memory_failcnt",
        "Number of memory usage hits limits",
        &[],
    ),
    counter(
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
        &["failure_type", "scope"],
    ),
    counter(
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        &[],
    ),
    gauge(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        &[],
    ),
    counter(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        IFACE,
    ),
    counter(
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        IFACE,
    ),
    counter(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        IFACE,
    ),
    counter(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        IFACE,
    ),
    counter(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        IFACE,
    ),
    counter(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        IFACE,
    ),
    counter(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        IFACE,
    ),
    counter(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        IFACE,
    ),
    gauge(
        "container_processes",
        "Number of processes running inside the container.",
        &[],
    ),
    gauge(
        "container_threads",
        "Number of threads running inside the container",
        &[],
    ),
    gauge(
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero",
        &[],
    ),
    gauge(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        &["device"],
    ),
    gauge(
        "container_last_seen",
        "Last time a container was seen by the exporter",
        &[],
    ),
    gauge(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        &[],
    ),
];

/// The descriptors of every metric, for `ListMetricDescriptors`.
pub fn descriptors() -> Vec<MetricDescriptor> {
    DEFS.iter()
        .map(|d| MetricDescriptor {
            name: d.name.to_string(),
            help: d.help.to_string(),
            label_keys: BASE_LABELS
                .iter()
                .chain(d.extra)
                .map(|k| k.to_string())
                .collect(),
        })
        .collect()
}

/// Whose metrics these are: the values of [`BASE_LABELS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// CRI container name; empty for the pod's own cgroup.
    pub container: String,
    /// CRI id of the container or sandbox.
    pub id: String,
    pub image: String,
    /// Docker's container name; empty for the pod's own cgroup.
    pub name: String,
    pub namespace: String,
    pub pod: String,
}

/// A container's writable layer on the filesystem at `device`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    pub device: String,
    pub bytes: u64,
}

/// Everything read about one subject at one moment.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub sample: Sample,
    /// The pod's interfaces (pod level only: containers share them).
    pub interfaces: Vec<Interface>,
    pub layer: Option<Layer>,
    /// Unix seconds.
    pub start_time: Option<i64>,
}

const NS_PER_S: u64 = 1_000_000_000;

/// The metrics of `who` from `r`, stamped `now` (unix ns). Values the
/// kernel did not give are left out, not sent as zero.
pub fn build(now: i64, who: &Subject, r: &Reading) -> Vec<Metric> {
    let base = [
        &who.container,
        &who.id,
        &who.image,
        &who.name,
        &who.namespace,
        &who.pod,
    ];
    let mut out = Vec::with_capacity(DEFS.len() + 8 * r.interfaces.len());
    let mut push = |name: &str, extra: &[&str], value: Option<u64>| {
        let (Some(value), Some(def)) = (value, DEFS.iter().find(|d| d.name == name)) else {
            return;
        };
        out.push(Metric {
            name: def.name.to_string(),
            timestamp: now,
            metric_type: def.kind as i32,
            label_values: base
                .iter()
                .map(|v| v.to_string())
                .chain(extra.iter().map(|v| v.to_string()))
                .collect(),
            value: Some(UInt64Value { value }),
        });
    };
    let s = &r.sample;
    let secs = |ns: Option<u64>| ns.map(|n| n / NS_PER_S);
    push(
        "container_cpu_usage_seconds_total",
        &["total"],
        secs(s.cpu_ns),
    );
    push("container_cpu_user_seconds_total", &[], secs(s.cpu_user_ns));
    push(
        "container_cpu_system_seconds_total",
        &[],
        secs(s.cpu_system_ns),
    );
    // Throttling means something only under a quota (cAdvisor's rule too).
    if s.cpu_quota_us.is_some() {
        push("container_cpu_cfs_periods_total", &[], s.cfs_periods);
        push(
            "container_cpu_cfs_throttled_periods_total",
            &[],
            s.cfs_throttled_periods,
        );
        push(
            "container_cpu_cfs_throttled_seconds_total",
            &[],
            secs(s.cfs_throttled_ns),
        );
    }
    push("container_spec_cpu_period", &[], s.cpu_period_us);
    push("container_spec_cpu_quota", &[], s.cpu_quota_us);
    push("container_spec_cpu_shares", &[], s.cpu_shares);
    push("container_memory_usage_bytes", &[], s.memory_usage);
    push("container_memory_max_usage_bytes", &[], s.memory_max_usage);
    push("container_memory_working_set_bytes", &[], s.working_set);
    push("container_memory_rss", &[], s.rss);
    push("container_memory_cache", &[], s.memory_cache);
    push("container_memory_mapped_file", &[], s.mapped_file);
    push("container_memory_swap", &[], s.swap_usage);
    push("container_memory_failcnt", &[], s.memory_failcnt);
    // The counters are hierarchical; for a container's leaf cgroup that is
    // also its own ("container") scope, for a pod cgroup it is not.
    let scopes: &[&str] = if who.container.is_empty() {
        &["hierarchy"]
    } else {
        &["container", "hierarchy"]
    };
    for scope in scopes {
        let failures = "container_memory_failures_total";
        push(failures, &["pgfault", scope], s.page_faults);
        push(failures, &["pgmajfault", scope], s.major_page_faults);
    }
    push("container_oom_events_total", &[], s.oom_kills);
    // cAdvisor reports "no limit" as 0.
    let has_memory = s.memory_usage.is_some();
    push(
        "container_spec_memory_limit_bytes",
        &[],
        has_memory.then(|| s.memory_limit.unwrap_or(0)),
    );
    for i in &r.interfaces {
        let n = [i.name.as_str()];
        push(
            "container_network_receive_bytes_total",
            &n,
            Some(i.rx_bytes),
        );
        push(
            "container_network_receive_packets_total",
            &n,
            Some(i.rx_packets),
        );
        push(
            "container_network_receive_packets_dropped_total",
            &n,
            Some(i.rx_dropped),
        );
        push(
            "container_network_receive_errors_total",
            &n,
            Some(i.rx_errors),
        );
        push(
            "container_network_transmit_bytes_total",
            &n,
            Some(i.tx_bytes),
        );
        push(
            "container_network_transmit_packets_total",
            &n,
            Some(i.tx_packets),
        );
        push(
            "container_network_transmit_packets_dropped_total",
            &n,
            Some(i.tx_dropped),
        );
        push(
            "container_network_transmit_errors_total",
            &n,
            Some(i.tx_errors),
        );
    }
    push("container_processes", &[], s.procs);
    push("container_threads", &[], s.processes);
    push(
        "container_threads_max",
        &[],
        s.processes.map(|_| s.tasks_limit.unwrap_or(0)),
    );
    if let Some(l) = &r.layer {
        push("container_fs_usage_bytes", &[&l.device], Some(l.bytes));
    }
    push(
        "container_last_seen",
        &[],
        u64::try_from(now).ok().map(|n| n / NS_PER_S),
    );
    push(
        "container_start_time_seconds",
        &[],
        r.start_time.and_then(|t| u64::try_from(t).ok()),
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn full_reading() -> Reading {
        Reading {
            sample: Sample {
                cpu_ns: Some(3_700_000_000),
                cpu_user_ns: Some(2_100_000_000),
                cpu_system_ns: Some(900_000_000),
                memory_usage: Some(10_000),
                working_set: Some(7_000),
                rss: Some(5_000),
                page_faults: Some(70),
                major_page_faults: Some(1),
                memory_limit: None,
                swap_usage: Some(0),
                swap_limit: None,
                processes: Some(4),
                memory_cache: Some(3_000),
                mapped_file: Some(200),
                memory_failcnt: Some(0),
                memory_max_usage: Some(12_000),
                oom_kills: Some(0),
                tasks_limit: Some(1024),
                procs: Some(2),
                cpu_shares: Some(1024),
                cpu_quota_us: Some(50_000),
                cpu_period_us: Some(100_000),
                cfs_periods: Some(40),
                cfs_throttled_periods: Some(30),
                cfs_throttled_ns: Some(2_500_000_000),
            },
            interfaces: vec![Interface {
                name: "eth0".into(),
                rx_bytes: 5000,
                rx_packets: 10,
                rx_errors: 2,
                rx_dropped: 1,
                tx_bytes: 7000,
                tx_packets: 12,
                tx_errors: 3,
                tx_dropped: 4,
            }],
            layer: Some(Layer {
                device: "/var/lib/docker".into(),
                bytes: 8192,
            }),
            start_time: Some(1_700_000_000),
        }
    }

    fn subject(container: &str) -> Subject {
        Subject {
            container: container.into(),
            id: "abc".into(),
            image: if container.is_empty() { "" } else { "busybox" }.into(),
            name: if container.is_empty() {
                String::new()
            } else {
                format!("k8s_{container}_web_default_uid_0")
            },
            namespace: "default".into(),
            pod: "web".into(),
        }
    }

    /// name + extra label values → value.
    fn by_key(metrics: &[Metric]) -> HashMap<String, u64> {
        metrics
            .iter()
            .map(|m| {
                let extra = m.label_values[BASE_LABELS.len()..].join(",");
                (format!("{}{{{extra}}}", m.name), m.value.unwrap().value)
            })
            .collect()
    }

    #[test]
    fn descriptor_names_are_unique_and_cover_cadvisor_core_set() {
        let d = descriptors();
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate names");
        for want in [
            "container_cpu_usage_seconds_total",
            "container_cpu_user_seconds_total",
            "container_cpu_system_seconds_total",
            "container_memory_usage_bytes",
            "container_memory_working_set_bytes",
            "container_memory_rss",
            "container_memory_cache",
            "container_memory_swap",
            "container_memory_failcnt",
            "container_memory_failures_total",
            "container_spec_memory_limit_bytes",
            "container_network_receive_bytes_total",
            "container_network_transmit_bytes_total",
            "container_network_receive_packets_total",
            "container_network_transmit_packets_total",
            "container_network_receive_errors_total",
            "container_network_transmit_errors_total",
            "container_network_receive_packets_dropped_total",
            "container_network_transmit_packets_dropped_total",
            "container_processes",
            "container_threads",
            "container_last_seen",
            "container_start_time_seconds",
            "container_fs_usage_bytes",
        ] {
            assert!(names.contains(&want), "{want} missing");
        }
        for d in &d {
            assert_eq!(&d.label_keys[..BASE_LABELS.len()], BASE_LABELS.as_slice());
            assert!(!d.help.is_empty(), "{}", d.name);
        }
        let iface = d
            .iter()
            .find(|d| d.name == "container_network_receive_bytes_total")
            .unwrap();
        assert_eq!(iface.label_keys.last().unwrap(), "interface");
    }

    #[test]
    fn every_built_metric_matches_its_descriptor() {
        let d = descriptors();
        for who in [subject("app"), subject("")] {
            let metrics = build(1_700_000_123_000_000_000, &who, &full_reading());
            assert!(!metrics.is_empty());
            for m in &metrics {
                let desc = d.iter().find(|d| d.name == m.name).unwrap();
                assert_eq!(
                    m.label_values.len(),
                    desc.label_keys.len(),
                    "{}: {:?} vs {:?}",
                    m.name,
                    m.label_values,
                    desc.label_keys
                );
                let kind = if m.name.ends_with("_total") || m.name.ends_with("failcnt") {
                    MetricType::Counter
                } else {
                    MetricType::Gauge
                };
                assert_eq!(m.metric_type, kind as i32, "{}", m.name);
                assert_eq!(m.timestamp, 1_700_000_123_000_000_000);
                assert_eq!(m.label_values[1], "abc");
                assert_eq!(m.label_values[0], who.container);
            }
        }
    }

    #[test]
    fn values_have_cadvisor_units() {
        let m = by_key(&build(
            1_700_000_123_456_000_000,
            &subject("app"),
            &full_reading(),
        ));
        let cases: &[(&str, u64)] = &[
            // Whole seconds, truncated (3.7 s of CPU is 3).
            ("container_cpu_usage_seconds_total{total}", 3),
            ("container_cpu_user_seconds_total{}", 2),
            ("container_cpu_system_seconds_total{}", 0),
            ("container_cpu_cfs_periods_total{}", 40),
            ("container_cpu_cfs_throttled_periods_total{}", 30),
            ("container_cpu_cfs_throttled_seconds_total{}", 2),
            ("container_spec_cpu_period{}", 100_000),
            ("container_spec_cpu_quota{}", 50_000),
            ("container_spec_cpu_shares{}", 1024),
            ("container_memory_usage_bytes{}", 10_000),
            ("container_memory_max_usage_bytes{}", 12_000),
            ("container_memory_working_set_bytes{}", 7_000),
            ("container_memory_rss{}", 5_000),
            ("container_memory_cache{}", 3_000),
            ("container_memory_mapped_file{}", 200),
            ("container_memory_swap{}", 0),
            ("container_memory_failcnt{}", 0),
            ("container_memory_failures_total{pgfault,container}", 70),
            ("container_memory_failures_total{pgfault,hierarchy}", 70),
            ("container_memory_failures_total{pgmajfault,container}", 1),
            ("container_memory_failures_total{pgmajfault,hierarchy}", 1),
            ("container_oom_events_total{}", 0),
            ("container_spec_memory_limit_bytes{}", 0),
            ("container_network_receive_bytes_total{eth0}", 5000),
            ("container_network_receive_packets_total{eth0}", 10),
            ("container_network_receive_errors_total{eth0}", 2),
            ("container_network_receive_packets_dropped_total{eth0}", 1),
            ("container_network_transmit_bytes_total{eth0}", 7000),
            ("container_network_transmit_packets_total{eth0}", 12),
            ("container_network_transmit_errors_total{eth0}", 3),
            ("container_network_transmit_packets_dropped_total{eth0}", 4),
            ("container_processes{}", 2),
            ("container_threads{}", 4),
            ("container_threads_max{}", 1024),
            ("container_fs_usage_bytes{/var/lib/docker}", 8192),
            ("container_last_seen{}", 1_700_000_123),
            ("container_start_time_seconds{}", 1_700_000_000),
        ];
        for (key, want) in cases {
            assert_eq!(m.get(*key), Some(want), "{key}");
        }
        assert_eq!(m.len(), cases.len(), "no metric beyond the table: {m:?}");
    }

    #[test]
    fn limits_and_pod_scope() {
        let mut r = full_reading();
        r.sample.memory_limit = Some(64 << 20);
        r.sample.tasks_limit = None;
        r.sample.cpu_quota_us = None;
        let m = by_key(&build(1, &subject(""), &r));
        for unset in [
            "container_spec_cpu_quota{}",
            "container_cpu_cfs_periods_total{}",
            "container_cpu_cfs_throttled_periods_total{}",
            "container_cpu_cfs_throttled_seconds_total{}",
        ] {
            assert!(!m.contains_key(unset), "{unset} without a quota");
        }
        assert_eq!(m["container_spec_cpu_period{}"], 100_000);
        assert_eq!(m["container_spec_memory_limit_bytes{}"], 64 << 20);
        assert_eq!(m["container_threads_max{}"], 0, "unlimited is 0");
        assert!(
            !m.contains_key("container_memory_failures_total{pgfault,container}"),
            "a pod cgroup has only the hierarchy scope"
        );
        assert_eq!(m["container_memory_failures_total{pgfault,hierarchy}"], 70);
    }

    #[test]
    fn missing_readings_are_left_out() {
        let r = Reading::default();
        let m = build(2_000_000_000, &subject("stopped"), &r);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["container_last_seen"]);
        assert_eq!(m[0].value.unwrap().value, 2);
    }
}
