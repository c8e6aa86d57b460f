//! cAdvisor-compatible metrics over CRI: the descriptors kubelet reads once,
//! and the metrics of a running pod (CPU rising for a busy container, memory
//! held, network bytes after traffic, the pod's own cgroup), listed and
//! streamed.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::pods::*;
use common::*;
use dockercri::proto::{
    LinuxContainerResources, ListMetricDescriptorsRequest, ListPodSandboxMetricsRequest, Metric,
    MetricDescriptor, MetricType, PodSandboxMetrics, StreamPodSandboxMetricsRequest,
};
use futures_util::StreamExt;

const BASE: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

async fn descriptors(h: &Harness) -> HashMap<String, MetricDescriptor> {
    h.rt()
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors
        .into_iter()
        .map(|d| (d.name.clone(), d))
        .collect()
}

/// The metrics of sandbox `id` (listed with every other pod on the host).
async fn pod_metrics(h: &Harness, id: &str) -> PodSandboxMetrics {
    let all = h
        .rt()
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    all.into_iter()
        .find(|p| p.pod_sandbox_id == id)
        .unwrap_or_else(|| panic!("pod {id} not in ListPodSandboxMetrics"))
}

fn container<'a>(p: &'a PodSandboxMetrics, id: &str) -> &'a [Metric] {
    &p.container_metrics
        .iter()
        .find(|c| c.container_id == id)
        .unwrap_or_else(|| panic!("container {id} missing"))
        .metrics
}

/// The value of `name` whose labels after the base ones are `extra`.
fn value(metrics: &[Metric], name: &str, extra: &[&str]) -> u64 {
    metrics
        .iter()
        .find(|m| m.name == name && m.label_values[BASE.len()..] == *extra)
        .unwrap_or_else(|| panic!("{name}{extra:?} missing"))
        .value
        .unwrap()
        .value
}

/// Label value `key` of every metric in `metrics` (they all agree).
fn label(metrics: &[Metric], key: &str) -> String {
    let i = BASE.iter().position(|k| *k == key).unwrap();
    let values: HashSet<&str> = metrics.iter().map(|m| m.label_values[i].as_str()).collect();
    assert_eq!(values.len(), 1, "{key}: {values:?}");
    values.into_iter().next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn descriptors_carry_the_cadvisor_names_and_label_keys() {
    let h = Harness::start().await;
    let d = descriptors(&h).await;
    for name in [
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
        let desc = d
            .get(name)
            .unwrap_or_else(|| panic!("{name} not described"));
        assert_eq!(&desc.label_keys[..BASE.len()], BASE, "{name}");
        assert!(!desc.help.is_empty(), "{name}");
    }
    let keys = |n: &str| d[n].label_keys[BASE.len()..].to_vec();
    assert_eq!(keys("container_cpu_usage_seconds_total"), ["cpu"]);
    assert_eq!(
        keys("container_memory_failures_total"),
        ["failure_type", "scope"]
    );
    assert_eq!(keys("container_network_receive_bytes_total"), ["interface"]);
    assert_eq!(keys("container_fs_usage_bytes"), ["device"]);
    assert!(keys("container_memory_working_set_bytes").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_metrics_show_cpu_memory_and_network() {
    let h = Harness::start().await;
    let d = descriptors(&h).await;
    let pod = h.pod("metrics").await;
    // Half a core at most: CFS periods are counted.
    let mut burn = container_config(&h, "burn", "while true; do :; done");
    burn.linux = Some(dockercri::proto::LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    });
    let burn = h.start_container(&pod, burn).await;
    // The shell holds 20 MB while httpd (in the background, so that the
    // shell does not exec it) serves a 100 kB file.
    let mut web = container_config(
        &h,
        "web",
        "a=$(head -c 20000000 /dev/zero | tr '\\0' x); mkdir -p /www && head -c 100000 /dev/zero > /www/big && httpd -p 8080 -h /www && echo held; while true; do sleep 1; done",
    );
    web.linux = Some(dockercri::proto::LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            memory_swap_limit_in_bytes: 96 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let web = h.start_container(&pod, web).await;
    let done = h
        .start_container(&pod, container_config(&h, "done", "true"))
        .await;
    h.wait_exited(&done).await;
    for _ in 0..100 {
        if log_text(&h.container_status(&web).await.log_path).contains("held") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let first = pod_metrics(&h, &pod.id).await;

    // Every metric is described, with one value per label key and its kind.
    let all: Vec<&Metric> = first
        .metrics
        .iter()
        .chain(first.container_metrics.iter().flat_map(|c| &c.metrics))
        .collect();
    for m in &all {
        let desc = d
            .get(&m.name)
            .unwrap_or_else(|| panic!("{} not described", m.name));
        assert_eq!(
            m.label_values.len(),
            desc.label_keys.len(),
            "{}: {:?}",
            m.name,
            m.label_values
        );
        let counter = m.name.ends_with("_total") || m.name == "container_memory_failcnt";
        let kind = if counter {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        assert_eq!(m.metric_type(), kind, "{}", m.name);
        assert!(m.timestamp > 0);
    }

    // Running containers only, each labelled as cAdvisor labels it.
    let mut ids: Vec<&str> = first
        .container_metrics
        .iter()
        .map(|c| c.container_id.as_str())
        .collect();
    ids.sort();
    let mut want = vec![burn.as_str(), web.as_str()];
    want.sort();
    assert_eq!(ids, want, "the exited container is left out");
    let w = container(&first, &web);
    assert_eq!(label(w, "container"), "web");
    assert_eq!(label(w, "id"), web);
    assert_eq!(label(w, "image"), BUSYBOX);
    assert!(label(w, "name").starts_with("k8s_web_metrics_default_"));
    assert_eq!(label(w, "namespace"), "default");
    assert_eq!(label(w, "pod"), "metrics");

    // Memory: the 20 MB held is in the working set, within the limit.
    let ws = value(w, "container_memory_working_set_bytes", &[]);
    assert!(ws > 15_000_000 && ws < 96 << 20, "working set {ws}");
    assert!(value(w, "container_memory_usage_bytes", &[]) >= ws);
    assert!(value(w, "container_memory_rss", &[]) > 15_000_000);
    assert_eq!(value(w, "container_spec_memory_limit_bytes", &[]), 96 << 20);
    assert!(
        value(
            w,
            "container_memory_failures_total",
            &["pgfault", "container"]
        ) > 1000
    );
    assert!(value(w, "container_processes", &[]) >= 2, "sh and httpd");
    assert!(value(w, "container_threads", &[]) >= 2);
    let layer = w
        .iter()
        .find(|m| m.name == "container_fs_usage_bytes")
        .unwrap();
    assert!(layer.value.unwrap().value >= 100_000, "the file written");
    let start = value(w, "container_start_time_seconds", &[]);
    assert!(start <= started && start + 300 > started, "start {start}");
    let seen = value(w, "container_last_seen", &[]);
    assert!(seen >= started && seen < started + 60, "seen {seen}");

    // The pod's own metrics: cAdvisor's pod cgroup, no container name.
    assert_eq!(label(&first.metrics, "container"), "");
    assert_eq!(label(&first.metrics, "name"), "");
    assert_eq!(label(&first.metrics, "id"), pod.id);
    assert_eq!(label(&first.metrics, "pod"), "metrics");
    assert!(value(&first.metrics, "container_memory_working_set_bytes", &[]) > ws);
    assert!(value(&first.metrics, "container_processes", &[]) >= 4);

    // CPU: the busy container's cumulative seconds rise.
    let cpu = |p: &PodSandboxMetrics| {
        value(
            container(p, &burn),
            "container_cpu_usage_seconds_total",
            &["total"],
        )
    };
    let before = cpu(&first);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut latest = pod_metrics(&h, &pod.id).await;
    while cpu(&latest) <= before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        latest = pod_metrics(&h, &pod.id).await;
    }
    assert!(cpu(&latest) > before, "{} !> {before}", cpu(&latest));
    let b = container(&latest, &burn);
    assert!(
        value(b, "container_cpu_user_seconds_total", &[])
            + value(b, "container_cpu_system_seconds_total", &[])
            <= cpu(&latest) + 1
    );
    assert!(
        value(
            &latest.metrics,
            "container_cpu_usage_seconds_total",
            &["total"]
        ) >= cpu(&latest),
        "the pod's CPU includes its containers'"
    );
    assert_eq!(value(b, "container_spec_cpu_quota", &[]), 50_000);
    assert_eq!(value(b, "container_spec_cpu_period", &[]), 100_000);
    assert_eq!(value(b, "container_spec_cpu_shares", &[]), 512);
    assert!(value(b, "container_cpu_cfs_periods_total", &[]) > 5);
    assert!(
        !w.iter().any(|m| m.name == "container_spec_cpu_quota"),
        "no quota, no quota metric"
    );

    // Network: bytes sent by the pod after a 100 kB download.
    let tx = |p: &PodSandboxMetrics| {
        value(
            &p.metrics,
            "container_network_transmit_bytes_total",
            &["eth0"],
        )
    };
    let rx_packets = |p: &PodSandboxMetrics| {
        value(
            &p.metrics,
            "container_network_receive_packets_total",
            &["eth0"],
        )
    };
    let ip = h.pod_status(&pod.id).await.network.unwrap().ip;
    let mut got = 0;
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect((ip.as_str(), 8080)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /big HTTP/1.0\r\n\r\n").unwrap();
            let mut body = Vec::new();
            let _ = s.read_to_end(&mut body);
            got = body.len();
            if got > 100_000 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(got > 100_000, "fetched {got} bytes from {ip}");
    let after = pod_metrics(&h, &pod.id).await;
    assert!(
        tx(&after) >= tx(&latest) + 100_000,
        "{} -> {}",
        tx(&latest),
        tx(&after)
    );
    assert!(rx_packets(&after) > rx_packets(&latest));
    assert!(
        !after
            .metrics
            .iter()
            .any(
                |m| m.label_values.get(BASE.len()).map(String::as_str) == Some("lo")
                    && m.name.starts_with("container_network_")
            ),
        "loopback is left out"
    );
}

/// (name, labels) of every metric of a pod, pod-level and containers'.
fn series(p: &PodSandboxMetrics) -> HashSet<(String, Vec<String>)> {
    p.metrics
        .iter()
        .chain(p.container_metrics.iter().flat_map(|c| &c.metrics))
        .map(|m| (m.name.clone(), m.label_values.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_metrics_match_the_list_and_stopped_pods_are_left_out() {
    let h = Harness::start().await;
    let pod = h.pod("streamed").await;
    let app = h
        .start_container(&pod, container_config(&h, "app", "sleep 3600"))
        .await;
    let gone = h.pod("stopped").await;
    h.stop_pod(&gone.id).await;
    let mut hostnet = h.pod_config("hostnet");
    hostnet.linux = Some(dockercri::proto::LinuxPodSandboxConfig {
        security_context: Some(dockercri::proto::LinuxSandboxSecurityContext {
            namespace_options: Some(dockercri::proto::NamespaceOption {
                network: dockercri::proto::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let hostnet = h.run_pod(hostnet).await;

    let listed = pod_metrics(&h, &pod.id).await;
    let mut stream = h
        .rt()
        .stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    let mut batches = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap().pod_sandbox_metrics;
        assert!(!batch.is_empty(), "no empty batches");
        streamed.extend(batch);
        batches += 1;
    }
    assert!(batches >= 1);
    let ours = streamed
        .iter()
        .find(|p| p.pod_sandbox_id == pod.id)
        .expect("our pod streamed");
    assert_eq!(ours.container_metrics.len(), 1);
    assert_eq!(ours.container_metrics[0].container_id, app);
    assert_eq!(series(ours), series(&listed));
    assert!(
        !streamed.iter().any(|p| p.pod_sandbox_id == gone.id),
        "a stopped pod has no metrics"
    );
    let node = streamed
        .iter()
        .find(|p| p.pod_sandbox_id == hostnet)
        .expect("host-network pod streamed");
    assert!(
        node.metrics
            .iter()
            .all(|m| !m.name.starts_with("container_network_")),
        "a host-network pod reports no interfaces (they are the node's)"
    );
    assert!(
        ours.metrics
            .iter()
            .any(|m| m.name == "container_network_receive_bytes_total"),
        "a pod network reports its interfaces"
    );
    let ids: HashSet<&str> = streamed.iter().map(|p| p.pod_sandbox_id.as_str()).collect();
    assert_eq!(ids.len(), streamed.len(), "each pod once");
}

/// A pod cgroup of our own, named as Docker's cgroup driver wants it (a
/// path for cgroupfs, a slice for systemd), unique per run. It is
/// host-global, so it is removed at the end, after the containers in it:
/// declare it before the harness.
struct PodCgroup(String);

impl PodCgroup {
    async fn new() -> PodCgroup {
        let driver = docker().await.info().await.unwrap().cgroup_driver;
        let n = unique_id("dockercri-metrics-pod");
        if driver == Some(bollard::models::SystemInfoCgroupDriverEnum::SYSTEMD) {
            // A dash in a slice name means nesting: none in ours.
            PodCgroup(format!("{}.slice", n.replace('-', "")))
        } else {
            PodCgroup(format!("/{n}"))
        }
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        fn remove(dir: &std::path::Path) {
            for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if sub.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&sub.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        if self.0.ends_with(".slice") {
            let _ = std::process::Command::new("systemctl")
                .args(["stop", &self.0])
                .status();
        }
        let name = self.0.trim_start_matches('/');
        let root = std::path::Path::new("/sys/fs/cgroup");
        let controllers = std::fs::read_dir(root).into_iter().flatten().flatten();
        for dir in std::iter::once(root.join(name)).chain(controllers.map(|c| c.path().join(name)))
        {
            if dir.is_dir() {
                remove(&dir);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_cgroup_is_read_whole() {
    let cgroup = PodCgroup::new().await;
    let h = Harness::start().await;
    let mut config = h.pod_config("podcg");
    config.linux = Some(dockercri::proto::LinuxPodSandboxConfig {
        cgroup_parent: cgroup.0.clone(),
        ..Default::default()
    });
    let id = h.run_pod(config.clone()).await;
    let pod = Pod { id, config };
    // The loop keeps the shell (and the 10 MB it holds) alive.
    let app = h
        .start_container(
            &pod,
            container_config(
                &h,
                "app",
                "a=$(head -c 10000000 /dev/zero | tr '\\0' x); while true; do sleep 1; done",
            ),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut m = pod_metrics(&h, &pod.id).await;
    while value(container(&m, &app), "container_memory_rss", &[]) < 10_000_000
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        m = pod_metrics(&h, &pod.id).await;
    }
    let c = container(&m, &app);
    let c_ws = value(c, "container_memory_working_set_bytes", &[]);
    assert!(c_ws > 10_000_000, "container working set {c_ws}");
    assert_eq!(label(c, "container"), "app");
    // The pod cgroup holds the pause container and the app: its counters
    // include both, its processes are counted through the sub-cgroups.
    assert_eq!(label(&m.metrics, "container"), "");
    assert!(value(&m.metrics, "container_memory_working_set_bytes", &[]) >= c_ws);
    assert!(
        value(&m.metrics, "container_processes", &[]) >= 3,
        "pause, sh, sleep"
    );
    assert!(value(&m.metrics, "container_threads", &[]) >= 3);
    // Only the pod cgroup itself has seen the app's peak (a sum of the
    // pause container and the app would carry the pause container's).
    let peak = value(&m.metrics, "container_memory_max_usage_bytes", &[]);
    assert!(peak >= c_ws, "pod peak {peak} < {c_ws}");
}
