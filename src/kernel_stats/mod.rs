//! Container and pod stats from the kernel's counters (cgroups, the pod's
//! `/proc/<pid>/net/dev`), never from Docker's slow stats endpoint. CPU
//! rates come from a short history of samples of the same container.

pub mod cadvisor;
pub mod cgroup;
pub mod cpu_history;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cgroup::{CgroupPaths, Sample};

use crate::proto::{
    CpuUsage, FilesystemIdentifier, FilesystemUsage, MemoryUsage, NetworkInterfaceUsage,
    NetworkUsage, ProcessUsage, SwapUsage, UInt64Value,
};

/// The cgroup mount.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How long a writable-layer size stays fresh (walking a layer costs I/O).
const LAYER_TTL: Duration = Duration::from_secs(10);

/// What stats remember between calls.
#[derive(Debug, Default)]
pub struct StatsState {
    /// Recent CPU samples by id, for rates over at least a second.
    cpu: Mutex<cpu_history::CpuHistory>,
    /// id → (pid, cgroup paths): found once per process.
    paths: Mutex<HashMap<String, (i64, CgroupPaths)>>,
    /// upper dir → (when, bytes, inodes).
    layers: Mutex<HashMap<PathBuf, (Instant, u64, u64)>>,
}

fn v(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

impl StatsState {
    /// The cgroup paths of process `pid` (cached for `key`).
    pub fn paths(&self, key: &str, pid: i64) -> Option<CgroupPaths> {
        if pid <= 0 {
            return None;
        }
        let mut cache = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached_pid, paths)) = cache.get(key)
            && *cached_pid == pid
        {
            return Some(paths.clone());
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let paths = cgroup::paths_from_proc(&text, Path::new(CGROUP_ROOT));
        cache.insert(key.to_string(), (pid, paths.clone()));
        Some(paths)
    }

    /// Forgets what is cached for ids no longer present.
    pub fn retain(&self, live: &[String]) {
        let live: std::collections::HashSet<&str> = live.iter().map(String::as_str).collect();
        let keep = |k: &String| live.contains(k.as_str());
        self.paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep(k));
        self.cpu
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(keep);
    }

    /// CPU usage with the rate over at least the last second of `key`.
    pub fn cpu(&self, key: &str, now: i64, sample: &Sample) -> Option<CpuUsage> {
        let total = sample.cpu_ns?;
        let rate = self
            .cpu
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rate(key, now, total);
        Some(CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: v(total),
            usage_nano_cores: rate.map(|r| UInt64Value { value: r }),
            psi: None,
        })
    }

    /// Bytes and inodes of a container's writable layer (cached briefly).
    pub fn layer(&self, upper: &Path, mountpoint: &str, now: i64) -> FilesystemUsage {
        let mut layers = self.layers.lock().unwrap_or_else(|p| p.into_inner());
        let (bytes, inodes) = match layers.get(upper) {
            Some((at, b, i)) if at.elapsed() < LAYER_TTL => (*b, *i),
            _ => {
                let (b, i) = dir_usage(upper);
                layers.insert(upper.to_path_buf(), (Instant::now(), b, i));
                (b, i)
            }
        };
        FilesystemUsage {
            timestamp: now,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: mountpoint.to_string(),
            }),
            used_bytes: v(bytes),
            inodes_used: v(inodes),
        }
    }
}

/// Memory usage in CRI terms; `available` only when a limit is set.
pub fn memory(now: i64, s: &Sample) -> Option<MemoryUsage> {
    let working_set = s.working_set?;
    Some(MemoryUsage {
        timestamp: now,
        working_set_bytes: v(working_set),
        available_bytes: s.memory_limit.map(|l| UInt64Value {
            value: l.saturating_sub(working_set),
        }),
        usage_bytes: s.memory_usage.and_then(v),
        rss_bytes: s.rss.and_then(v),
        page_faults: s.page_faults.and_then(v),
        major_page_faults: s.major_page_faults.and_then(v),
        psi: None,
    })
}

/// Swap usage, where the kernel accounts it.
pub fn swap(now: i64, s: &Sample) -> Option<SwapUsage> {
    let usage = s.swap_usage?;
    Some(SwapUsage {
        timestamp: now,
        swap_available_bytes: s.swap_limit.map(|l| UInt64Value {
            value: l.saturating_sub(usage),
        }),
        swap_usage_bytes: v(usage),
    })
}

/// Process count of a cgroup.
pub fn processes(now: i64, s: &Sample) -> Option<ProcessUsage> {
    Some(ProcessUsage {
        timestamp: now,
        process_count: v(s.processes?),
    })
}

/// One interface's counters from `/proc/<pid>/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// The interfaces in the text of `/proc/<pid>/net/dev`, loopback left out.
pub fn interfaces(net_dev: &str) -> Vec<Interface> {
    let mut out = Vec::new();
    for line in net_dev.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let n: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .collect();
        if n.len() < 12 {
            continue;
        }
        out.push(Interface {
            name: name.to_string(),
            rx_bytes: n[0],
            rx_packets: n[1],
            rx_errors: n[2],
            rx_dropped: n[3],
            tx_bytes: n[8],
            tx_packets: n[9],
            tx_errors: n[10],
            tx_dropped: n[11],
        });
    }
    out
}

/// Per-interface counters from the text of `/proc/<pid>/net/dev`; the
/// loopback is left out and `eth0` (else the first) is the default.
pub fn network(now: i64, net_dev: &str) -> NetworkUsage {
    let interfaces: Vec<NetworkInterfaceUsage> = interfaces(net_dev)
        .into_iter()
        .map(|i| NetworkInterfaceUsage {
            name: i.name,
            rx_bytes: v(i.rx_bytes),
            rx_errors: v(i.rx_errors),
            tx_bytes: v(i.tx_bytes),
            tx_errors: v(i.tx_errors),
        })
        .collect();
    let default_interface = interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .or_else(|| interfaces.first())
        .cloned();
    NetworkUsage {
        timestamp: now,
        default_interface,
        interfaces,
    }
}

/// Bytes (allocated blocks) and inodes under `dir`, hard links once.
pub fn dir_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    let (mut bytes, mut inodes) = (0u64, 0u64);
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            inodes += 1;
            bytes += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_comes_from_the_previous_sample() {
        let st = StatsState::default();
        let sample = |ns| Sample {
            cpu_ns: Some(ns),
            ..Default::default()
        };
        let first = st.cpu("c", 1_000_000_000, &sample(100)).unwrap();
        assert_eq!(first.usage_core_nano_seconds.unwrap().value, 100);
        assert!(first.usage_nano_cores.is_none());
        // 0.5 s of CPU over 2 s is a quarter of a core.
        let second = st.cpu("c", 3_000_000_000, &sample(500_000_100)).unwrap();
        assert_eq!(second.usage_nano_cores.unwrap().value, 250_000_000);
    }

    #[test]
    fn network_counters_per_interface() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    5000      10    2    0    0     0          0         0     7000      12    3    0    0     0       0          0\n";
        let n = network(1, text);
        assert_eq!(n.interfaces.len(), 1);
        let eth0 = n.default_interface.unwrap();
        assert_eq!(eth0.name, "eth0");
        assert_eq!(
            (eth0.rx_bytes.unwrap().value, eth0.rx_errors.unwrap().value),
            (5000, 2)
        );
        assert_eq!(
            (eth0.tx_bytes.unwrap().value, eth0.tx_errors.unwrap().value),
            (7000, 3)
        );
    }

    #[test]
    fn interfaces_carry_packets_and_drops() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 5000 10 2 4 0 0 0 0 7000 12 3 5 0 0 0 0\n  short: 1 2 3\n";
        assert_eq!(
            interfaces(text),
            [Interface {
                name: "eth0".into(),
                rx_bytes: 5000,
                rx_packets: 10,
                rx_errors: 2,
                rx_dropped: 4,
                tx_bytes: 7000,
                tx_packets: 12,
                tx_errors: 3,
                tx_dropped: 5,
            }]
        );
    }

    #[test]
    fn memory_available_only_with_a_limit() {
        let s = Sample {
            working_set: Some(100),
            memory_usage: Some(150),
            memory_limit: Some(1000),
            ..Default::default()
        };
        let m = memory(1, &s).unwrap();
        assert_eq!(m.available_bytes.unwrap().value, 900);
        let unlimited = Sample {
            memory_limit: None,
            ..s
        };
        assert!(memory(1, &unlimited).unwrap().available_bytes.is_none());
    }

    #[test]
    fn directory_usage_counts_files_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 10_000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let (bytes, inodes) = dir_usage(dir.path());
        assert_eq!(inodes, 2, "file once, plus the sub directory");
        assert!(bytes >= 10_000, "{bytes}");
    }
}
