//! Container and pod stats read from the kernel: CPU that rises and a rate,
//! memory within its limit, a stopped container, pod network bytes, filters;
//! the list and stream RPCs of container and pod stats.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::pods::*;
use common::*;
use dockercri::proto::{
    ContainerStats, ContainerStatsFilter, ContainerStatsRequest, LinuxContainerResources,
    ListContainerStatsRequest, ListPodSandboxStatsRequest, PodSandboxStats, PodSandboxStatsFilter,
    PodSandboxStatsRequest, StreamContainerStatsRequest, StreamPodSandboxStatsRequest,
};
use tonic::Code;

async fn container_stats(h: &Harness, id: &str) -> dockercri::proto::ContainerStats {
    h.rt()
        .container_stats(ContainerStatsRequest {
            container_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_container_shows_rising_cpu_and_a_rate() {
    let h = Harness::start().await;
    let pod = h.pod("cpu").await;
    let id = h
        .start_container(&pod, container_config(&h, "burn", "while true; do :; done"))
        .await;
    let first = container_stats(&h, &id).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = container_stats(&h, &id).await;
    let total = |s: &dockercri::proto::ContainerStats| {
        s.cpu
            .as_ref()
            .unwrap()
            .usage_core_nano_seconds
            .unwrap()
            .value
    };
    assert!(
        total(&second) > total(&first),
        "{} !> {}",
        total(&second),
        total(&first)
    );
    let rate = second.cpu.as_ref().unwrap().usage_nano_cores.unwrap().value;
    assert!(
        rate > 100_000_000,
        "a busy loop uses more than a tenth of a core: {rate}"
    );
    assert_eq!(second.attributes.as_ref().unwrap().id, id);
    assert_eq!(
        second
            .attributes
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .name,
        "burn"
    );
    let layer = second.writable_layer.unwrap();
    assert!(!layer.fs_id.unwrap().mountpoint.is_empty());

    let err = h
        .rt()
        .container_stats(ContainerStatsRequest {
            container_id: "0123456789abcdef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_held_is_within_its_limit_and_stopped_containers_report() {
    let h = Harness::start().await;
    let pod = h.pod("mem").await;
    let mut c = container_config(
        &h,
        "hold",
        "a=$(head -c 20000000 /dev/zero | tr '\\0' x); echo held; while true; do sleep 1; done",
    );
    c.linux = Some(dockercri::proto::LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            memory_swap_limit_in_bytes: 96 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = h.start_container(&pod, c).await;
    for _ in 0..100 {
        if log_text(&h.container_status(&id).await.log_path).contains("held") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = container_stats(&h, &id).await;
    let m = s.memory.unwrap();
    let ws = m.working_set_bytes.unwrap().value;
    assert!(ws > 15_000_000 && ws < 96 << 20, "working set {ws}");
    assert_eq!(m.available_bytes.unwrap().value, (96u64 << 20) - ws);

    // A stopped container still answers, without live counters.
    let done = h
        .start_container(&pod, container_config(&h, "done", "true"))
        .await;
    h.wait_exited(&done).await;
    let s = container_stats(&h, &done).await;
    assert_eq!(s.attributes.unwrap().id, done);
    assert!(s.memory.is_none());

    // Filters: by sandbox id.
    let listed = h
        .rt()
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: pod.id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let mut ids: Vec<String> = listed
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect();
    ids.sort();
    let mut want = vec![id, done];
    want.sort();
    assert_eq!(ids, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_stats_count_network_bytes_and_hold_the_containers() {
    let h = Harness::start().await;
    let pod = h.pod("net").await;
    let app = h
        .start_container(
            &pod,
            container_config(
                &h,
                "web",
                "mkdir -p /www && head -c 100000 /dev/zero > /www/big && exec httpd -f -p 8080 -h /www",
            ),
        )
        .await;
    let ip = h.pod_status(&pod.id).await.network.unwrap().ip;
    let pod_stats = |h: &Harness| {
        let mut rt = h.rt();
        let id = pod.id.clone();
        async move {
            rt.pod_sandbox_stats(PodSandboxStatsRequest { pod_sandbox_id: id })
                .await
                .unwrap()
                .into_inner()
                .stats
                .unwrap()
        }
    };
    let before = pod_stats(&h).await;
    let tx = |s: &dockercri::proto::PodSandboxStats| {
        let net = s.linux.as_ref().unwrap().network.as_ref().unwrap();
        net.default_interface
            .as_ref()
            .unwrap()
            .tx_bytes
            .unwrap()
            .value
    };
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
    let after = pod_stats(&h).await;
    assert!(
        tx(&after) >= tx(&before) + 100_000,
        "{} -> {}",
        tx(&before),
        tx(&after)
    );
    let linux = after.linux.unwrap();
    assert!(
        linux
            .containers
            .iter()
            .any(|c| c.attributes.as_ref().unwrap().id == app)
    );
    assert!(linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
    assert!(linux.memory.unwrap().working_set_bytes.unwrap().value > 0);
    assert!(linux.process.unwrap().process_count.unwrap().value >= 2);
    assert_eq!(after.attributes.unwrap().metadata.unwrap().name, "net");
}

/// Container stats sorted by container name.
fn by_name(mut stats: Vec<ContainerStats>) -> Vec<ContainerStats> {
    stats.sort_by_key(|s| name_of(s).to_string());
    stats
}

fn name_of(s: &ContainerStats) -> &str {
    &s.attributes
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .name
}

fn cpu_and_memory(s: &ContainerStats) -> (u64, u64) {
    (
        s.cpu
            .as_ref()
            .unwrap()
            .usage_core_nano_seconds
            .unwrap()
            .value,
        s.memory.as_ref().unwrap().working_set_bytes.unwrap().value,
    )
}

async fn stream_container_stats(h: &Harness, filter: ContainerStatsFilter) -> Vec<ContainerStats> {
    let mut stream = h
        .rt()
        .stream_container_stats(StreamContainerStatsRequest {
            filter: Some(filter),
        })
        .await
        .unwrap()
        .into_inner();
    let mut all = Vec::new();
    while let Some(batch) = stream.message().await.unwrap() {
        all.extend(batch.container_stats);
    }
    by_name(all)
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_container_stats_filters_and_reports_usage() {
    let h = Harness::start().await;
    let busy = h.pod("sbusy").await;
    let idle = h.pod("sidle").await;
    let burn = h
        .start_container(
            &busy,
            container_config(&h, "burn", "while true; do :; done"),
        )
        .await;
    let nap = h
        .start_container(&idle, container_config(&h, "nap", "sleep 600"))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every container of this test (others' are left out by the label).
    let all = stream_container_stats(
        &h,
        ContainerStatsFilter {
            label_selector: h.labels(),
            ..Default::default()
        },
    )
    .await;
    let ids: Vec<&str> = all
        .iter()
        .map(|s| s.attributes.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(ids, [burn.as_str(), nap.as_str()]);
    assert_eq!(name_of(&all[0]), "burn");
    let (cpu, memory) = cpu_and_memory(&all[0]);
    assert!(cpu > 0, "a busy loop for 0.5 s: {cpu} ns");
    assert!(memory > 0);

    // By pod, by id.
    let in_idle = stream_container_stats(
        &h,
        ContainerStatsFilter {
            pod_sandbox_id: idle.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(in_idle.len(), 1, "{in_idle:?}");
    assert_eq!(in_idle[0].attributes.as_ref().unwrap().id, nap);
    assert_eq!(name_of(&in_idle[0]), "nap");
    let one = stream_container_stats(
        &h,
        ContainerStatsFilter {
            id: burn.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0].attributes.as_ref().unwrap().id, burn);
    let none = stream_container_stats(
        &h,
        ContainerStatsFilter {
            id: "0123456789abcdef".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty(), "{none:?}");
}

fn pod_name(s: &PodSandboxStats) -> &str {
    &s.attributes
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .name
}

/// `ListPodSandboxStats` and `StreamPodSandboxStats` answer the same pods,
/// filtered by id and labels, with their CPU, memory and containers.
#[tokio::test(flavor = "multi_thread")]
async fn pod_sandbox_stats_list_and_stream_filter_and_report_usage() {
    let h = Harness::start().await;
    let busy = h.pod("pbusy").await;
    let idle = h.pod("pidle").await;
    let burn = h
        .start_container(
            &busy,
            container_config(&h, "burn", "while true; do :; done"),
        )
        .await;
    h.start_container(&idle, container_config(&h, "nap", "sleep 600"))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let list = |filter: PodSandboxStatsFilter| {
        let mut rt = h.rt();
        async move {
            let mut stats = rt
                .list_pod_sandbox_stats(ListPodSandboxStatsRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .stats;
            stats.sort_by_key(|s| pod_name(s).to_string());
            stats
        }
    };
    let stream = |filter: PodSandboxStatsFilter| {
        let mut rt = h.rt();
        async move {
            let mut stream = rt
                .stream_pod_sandbox_stats(StreamPodSandboxStatsRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner();
            let mut stats = Vec::new();
            while let Some(batch) = stream.message().await.unwrap() {
                stats.extend(batch.pod_sandbox_stats);
            }
            stats.sort_by_key(|s| pod_name(s).to_string());
            stats
        }
    };
    let mine = PodSandboxStatsFilter {
        label_selector: h.labels(),
        ..Default::default()
    };
    for (rpc, stats) in [
        ("ListPodSandboxStats", list(mine.clone()).await),
        ("StreamPodSandboxStats", stream(mine.clone()).await),
    ] {
        let names: Vec<&str> = stats.iter().map(pod_name).collect();
        assert_eq!(names, ["pbusy", "pidle"], "{rpc}");
        let busy_stats = &stats[0];
        assert_eq!(busy_stats.attributes.as_ref().unwrap().id, busy.id, "{rpc}");
        let linux = busy_stats.linux.as_ref().unwrap();
        let cpu = linux
            .cpu
            .as_ref()
            .unwrap()
            .usage_core_nano_seconds
            .unwrap()
            .value;
        assert!(cpu > 0, "{rpc}: a busy loop for 0.5 s: {cpu} ns");
        let memory = linux
            .memory
            .as_ref()
            .unwrap()
            .working_set_bytes
            .unwrap()
            .value;
        assert!(memory > 0, "{rpc}");
        let containers: Vec<&str> = linux
            .containers
            .iter()
            .map(|c| c.attributes.as_ref().unwrap().id.as_str())
            .collect();
        assert_eq!(containers, [burn.as_str()], "{rpc}");
        assert_eq!(stats[1].attributes.as_ref().unwrap().id, idle.id, "{rpc}");
    }
    let by_id = PodSandboxStatsFilter {
        id: idle.id.clone(),
        ..Default::default()
    };
    for (rpc, stats) in [
        ("ListPodSandboxStats", list(by_id.clone()).await),
        ("StreamPodSandboxStats", stream(by_id.clone()).await),
    ] {
        let ids: Vec<&str> = stats
            .iter()
            .map(|s| s.attributes.as_ref().unwrap().id.as_str())
            .collect();
        assert_eq!(ids, [idle.id.as_str()], "{rpc}");
    }
    let gone = PodSandboxStatsFilter {
        id: "0123456789abcdef".into(),
        ..Default::default()
    };
    assert!(list(gone.clone()).await.is_empty());
    assert!(stream(gone).await.is_empty());
}

/// The CPU rate of a pod's stats, as the summary API reads it.
async fn pod_cpu_rate(h: &Harness, pod: &str) -> Option<u64> {
    let stats = h
        .rt()
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    stats.linux?.cpu?.usage_nano_cores.map(|v| v.value)
}

#[tokio::test(flavor = "multi_thread")]
async fn back_to_back_stats_callers_each_get_a_cpu_rate() {
    let h = Harness::start().await;
    let pod = h.pod("callers").await;
    let id = h
        .start_container(&pod, container_config(&h, "burn", "while true; do :; done"))
        .await;
    // kubelet's first reading, then a second and more later: its summary
    // API, eviction manager and metrics endpoint, one right after another.
    container_stats(&h, &id).await;
    pod_cpu_rate(&h, &pod.id).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for caller in 0..4 {
        let rate = container_stats(&h, &id)
            .await
            .cpu
            .and_then(|c| c.usage_nano_cores)
            .map(|v| v.value);
        assert!(
            rate.is_some_and(|r| r > 100_000_000),
            "container, caller {caller}: {rate:?}"
        );
        let rate = pod_cpu_rate(&h, &pod.id).await;
        assert!(
            rate.is_some_and(|r| r > 100_000_000),
            "pod, caller {caller}: {rate:?}"
        );
    }
    let listed = h
        .rt()
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                id: id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let rate = listed[0].cpu.as_ref().and_then(|c| c.usage_nano_cores);
    assert!(
        rate.is_some_and(|r| r.value > 100_000_000),
        "listed right after: {rate:?}"
    );
}
