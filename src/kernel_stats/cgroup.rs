//! Reading a cgroup's counters straight from the kernel's files, for both
//! layouts: cgroup v1 (one hierarchy per controller) and v2 (unified), with
//! either Docker cgroup driver (paths come from `/proc/<pid>/cgroup`, so the
//! driver does not matter). Docker's stats endpoint blocks ~1 s per
//! container to compute a CPU delta; these reads take microseconds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a cgroup's files are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupPaths {
    /// The unified (v2) directory, when the memory controller lives there.
    pub unified: Option<PathBuf>,
    /// v1: controller name → directory.
    pub v1: HashMap<String, PathBuf>,
}

impl CgroupPaths {
    fn v1(&self, controller: &str) -> Option<&Path> {
        self.v1.get(controller).map(PathBuf::as_path)
    }

    /// The same cgroup one level up (a container's pod cgroup).
    pub fn parent(&self) -> CgroupPaths {
        let up = |p: &PathBuf| {
            p.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| p.clone())
        };
        CgroupPaths {
            unified: self.unified.as_ref().map(up),
            v1: self.v1.iter().map(|(k, v)| (k.clone(), up(v))).collect(),
        }
    }
}

/// The cgroup directories of a process, from the text of its
/// `/proc/<pid>/cgroup`, under the cgroup mount `root` (`/sys/fs/cgroup`).
pub fn paths_from_proc(text: &str, root: &Path) -> CgroupPaths {
    let mut paths = CgroupPaths::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            // v2 entry ("0::/path"); on a hybrid v1 host it is /sys/fs/cgroup/unified.
            let base = if root.join("cgroup.controllers").exists() {
                root.to_path_buf()
            } else {
                root.join("unified")
            };
            paths.unified = Some(base.join(rel));
            continue;
        }
        for controller in controllers.split(',') {
            let name = controller.trim_start_matches("name=");
            // Controllers may be co-mounted ("cpu,cpuacct"): find the mount.
            let mount = [controllers, name]
                .iter()
                .map(|m| root.join(m))
                .find(|p| p.exists())
                .unwrap_or_else(|| root.join(name));
            paths.v1.insert(name.to_string(), mount.join(rel));
        }
    }
    paths
}

/// Counters of one cgroup at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// Cumulative CPU time, ns.
    pub cpu_ns: Option<u64>,
    pub memory_usage: Option<u64>,
    pub working_set: Option<u64>,
    pub rss: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    /// Memory limit, when one is set.
    pub memory_limit: Option<u64>,
    pub swap_usage: Option<u64>,
    pub swap_limit: Option<u64>,
    /// Tasks (threads) in the cgroup, `pids.current`.
    pub processes: Option<u64>,
    /// CPU time split by mode, ns.
    pub cpu_user_ns: Option<u64>,
    pub cpu_system_ns: Option<u64>,
    /// Page cache and memory-mapped files, bytes.
    pub memory_cache: Option<u64>,
    pub mapped_file: Option<u64>,
    /// Times usage hit the limit (v1 `memory.failcnt`, v2 `max` events).
    pub memory_failcnt: Option<u64>,
    /// Peak usage (v1 `max_usage_in_bytes`, v2 `memory.peak`).
    pub memory_max_usage: Option<u64>,
    /// OOM kills inside the cgroup.
    pub oom_kills: Option<u64>,
    /// `pids.max`, when one is set.
    pub tasks_limit: Option<u64>,
    /// Processes (thread-group leaders) in the cgroup and below it.
    pub procs: Option<u64>,
    /// CPU shares (v2: from `cpu.weight`), CFS quota (when one is set) and
    /// period, µs.
    pub cpu_shares: Option<u64>,
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: Option<u64>,
    /// CFS enforcement periods, how many were throttled, and for how long (ns).
    pub cfs_periods: Option<u64>,
    pub cfs_throttled_periods: Option<u64>,
    pub cfs_throttled_ns: Option<u64>,
}

/// A cgroup directory opened once: its files are opened relative to it,
/// which spares the kernel the walk down from `/sys/fs/cgroup` for every
/// file (opens were a third of the CPU of a metrics listing in a profile).
/// A directory that is gone reads empty.
struct Dir(Option<std::fs::File>);

impl Dir {
    fn open(path: &Path) -> Dir {
        Dir(std::fs::File::open(path).ok())
    }

    fn text(&self, name: &str) -> Option<String> {
        use nix::fcntl::{OFlag, openat};
        use std::io::Read;
        let dir = self.0.as_ref()?;
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let fd = openat(dir, name, flags, nix::sys::stat::Mode::empty()).ok()?;
        let mut text = String::new();
        std::fs::File::from(fd).read_to_string(&mut text).ok()?;
        Some(text)
    }

    fn u64(&self, name: &str) -> Option<u64> {
        self.text(name)?.trim().parse().ok()
    }

    /// A limit file: `None` when unlimited.
    fn limit(&self, name: &str) -> Option<u64> {
        limit(&self.text(name)?)
    }
}

/// `key value` lines (memory.stat, cpu.stat) as a map.
pub fn parse_flat_keyed(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect()
}

/// v1 reports "no limit" as a huge page-aligned number; v2 as "max".
fn limit(value: &str) -> Option<u64> {
    let v: u64 = value.trim().parse().ok()?;
    (v < (1 << 62)).then_some(v)
}

/// Reads the counters of the cgroup at `paths`. Missing files (a stopped
/// container's cgroup is gone) leave the fields empty.
pub fn read(paths: &CgroupPaths) -> Sample {
    let mut s = Sample::default();
    if let Some(path) = &paths.unified {
        let dir = Dir::open(path);
        // On a hybrid host the unified tree holds no memory controller.
        if let Some(current) = dir.u64("memory.current") {
            s.memory_usage = Some(current);
            read_v2(&dir, path, &mut s);
            return s;
        }
    }
    if let Some(dir) = paths.v1("cpuacct").map(Dir::open) {
        s.cpu_ns = dir.u64("cpuacct.usage");
        s.cpu_user_ns = dir.u64("cpuacct.usage_user");
        s.cpu_system_ns = dir.u64("cpuacct.usage_sys");
        if s.cpu_user_ns.is_none() {
            // Older kernels: only cpuacct.stat, in USER_HZ (100) ticks.
            let text = dir.text("cpuacct.stat").unwrap_or_default();
            let ticks = parse_flat_keyed(&text);
            s.cpu_user_ns = ticks.get("user").map(|t| t * 10_000_000);
            s.cpu_system_ns = ticks.get("system").map(|t| t * 10_000_000);
        }
    }
    if let Some(dir) = paths.v1("cpu").map(Dir::open) {
        s.cpu_shares = dir.u64("cpu.shares");
        // -1 is "no quota": it does not parse as u64.
        s.cpu_quota_us = dir.u64("cpu.cfs_quota_us");
        s.cpu_period_us = dir.u64("cpu.cfs_period_us");
        let text = dir.text("cpu.stat").unwrap_or_default();
        let stat = parse_flat_keyed(&text);
        s.cfs_periods = stat.get("nr_periods").copied();
        s.cfs_throttled_periods = stat.get("nr_throttled").copied();
        s.cfs_throttled_ns = stat.get("throttled_time").copied();
    }
    if let Some(dir) = paths.v1("memory").map(Dir::open) {
        let stat_text = dir.text("memory.stat").unwrap_or_default();
        let stat = parse_flat_keyed(&stat_text);
        let total = |key: &str| {
            stat.get(format!("total_{key}").as_str())
                .or_else(|| stat.get(key))
                .copied()
        };
        s.memory_usage = dir.u64("memory.usage_in_bytes");
        let inactive = total("inactive_file").unwrap_or(0);
        s.working_set = s.memory_usage.map(|u| u.saturating_sub(inactive));
        s.rss = total("rss");
        s.page_faults = total("pgfault");
        s.major_page_faults = total("pgmajfault");
        s.memory_limit = dir.limit("memory.limit_in_bytes");
        // memsw counts memory + swap.
        let memsw = dir.u64("memory.memsw.usage_in_bytes");
        s.swap_usage = memsw.zip(s.memory_usage).map(|(m, u)| m.saturating_sub(u));
        let memsw_limit = dir.limit("memory.memsw.limit_in_bytes");
        s.swap_limit = memsw_limit
            .zip(s.memory_limit)
            .map(|(m, l)| m.saturating_sub(l));
        s.memory_cache = total("cache");
        s.mapped_file = total("mapped_file");
        s.memory_failcnt = dir.u64("memory.failcnt");
        s.memory_max_usage = dir.u64("memory.max_usage_in_bytes");
        let oom = dir.text("memory.oom_control").unwrap_or_default();
        s.oom_kills = parse_flat_keyed(&oom).get("oom_kill").copied();
    }
    if let Some(path) = paths.v1("pids") {
        let dir = Dir::open(path);
        s.processes = dir.u64("pids.current");
        s.tasks_limit = dir.limit("pids.max");
        s.procs = count_procs(&dir, path);
    }
    s
}

/// The v2 counters besides `memory.current` (already in `s`).
fn read_v2(dir: &Dir, path: &Path, s: &mut Sample) {
    let cpu_text = dir.text("cpu.stat").unwrap_or_default();
    let cpu = parse_flat_keyed(&cpu_text);
    s.cpu_ns = cpu.get("usage_usec").map(|u| u * 1000);
    s.cpu_user_ns = cpu.get("user_usec").map(|u| u * 1000);
    s.cpu_system_ns = cpu.get("system_usec").map(|u| u * 1000);
    s.cfs_periods = cpu.get("nr_periods").copied();
    s.cfs_throttled_periods = cpu.get("nr_throttled").copied();
    s.cfs_throttled_ns = cpu.get("throttled_usec").map(|u| u * 1000);
    s.cpu_shares = dir.u64("cpu.weight").map(weight_to_shares);
    if let Some(max) = dir.text("cpu.max") {
        let mut parts = max.split_whitespace();
        s.cpu_quota_us = parts.next().and_then(|q| q.parse().ok());
        s.cpu_period_us = parts.next().and_then(|p| p.parse().ok());
    }
    let stat_text = dir.text("memory.stat").unwrap_or_default();
    let stat = parse_flat_keyed(&stat_text);
    s.working_set = s
        .memory_usage
        .map(|u| u.saturating_sub(stat.get("inactive_file").copied().unwrap_or(0)));
    s.rss = stat.get("anon").copied();
    s.page_faults = stat.get("pgfault").copied();
    s.major_page_faults = stat.get("pgmajfault").copied();
    s.memory_cache = stat.get("file").copied();
    s.mapped_file = stat.get("file_mapped").copied();
    s.memory_limit = dir.limit("memory.max");
    s.memory_max_usage = dir.u64("memory.peak");
    let events_text = dir.text("memory.events").unwrap_or_default();
    let events = parse_flat_keyed(&events_text);
    s.memory_failcnt = events.get("max").copied();
    s.oom_kills = events.get("oom_kill").copied();
    s.swap_usage = dir.u64("memory.swap.current");
    s.swap_limit = dir.limit("memory.swap.max");
    s.processes = dir.u64("pids.current");
    s.tasks_limit = dir.limit("pids.max");
    s.procs = count_procs(dir, path);
}

/// cgroup v2 `cpu.weight` (1..10000) back to v1 shares (2..262144), the
/// conversion runc applies the other way.
fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.clamp(1, 10_000) - 1) * 262_142 / 9_999
}

/// Lines of `cgroup.procs` in `dir` (at `path`) and its sub-cgroups (a pod
/// cgroup holds its processes in the containers' cgroups below it).
fn count_procs(dir: &Dir, path: &Path) -> Option<u64> {
    let text = dir.text("cgroup.procs")?;
    let mut n = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let sub = entry.path();
            n += count_procs(&Dir::open(&sub), &sub).unwrap_or(0);
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn v1_paths_and_counters() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for m in ["cpu,cpuacct", "memory", "pids"] {
            std::fs::create_dir_all(r.join(m)).unwrap();
        }
        let proc_text = "12:pids:/docker/abc\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/docker/abc\n";
        assert_eq!(
            paths_from_proc(proc_text, r).v1["cpu"],
            r.join("cpu,cpuacct/docker/abc"),
            "co-mounted controllers share the directory"
        );
        let p = paths_from_proc(proc_text, r);
        assert_eq!(p.v1["cpuacct"], r.join("cpu,cpuacct/docker/abc"));
        assert_eq!(p.v1["memory"], r.join("memory/docker/abc"));
        write(&p.v1["cpuacct"], "cpuacct.usage", "123456789\n");
        let mem = &p.v1["memory"];
        write(mem, "memory.usage_in_bytes", "10000\n");
        write(mem, "memory.limit_in_bytes", "9223372036854771712\n");
        write(
            mem,
            "memory.stat",
            "cache 1\ntotal_inactive_file 3000\ntotal_rss 5000\ntotal_pgfault 7\ntotal_pgmajfault 1\n",
        );
        write(&p.v1["pids"], "pids.current", "3\n");
        write(&p.v1["pids"], "pids.max", "max\n");
        write(&p.v1["pids"], "cgroup.procs", "10\n11\n");
        write(&p.v1["cpuacct"], "cpuacct.stat", "user 30\nsystem 12\n");
        let cpu = &p.v1["cpu"];
        write(cpu, "cpu.shares", "512\n");
        write(cpu, "cpu.cfs_quota_us", "-1\n");
        write(cpu, "cpu.cfs_period_us", "100000\n");
        write(
            cpu,
            "cpu.stat",
            "nr_periods 20\nnr_throttled 5\nthrottled_time 7000000\n",
        );
        write(mem, "memory.failcnt", "4\n");
        write(mem, "memory.max_usage_in_bytes", "12000\n");
        write(
            mem,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        let s = read(&p);
        assert_eq!(
            (s.cpu_user_ns, s.cpu_system_ns),
            (Some(300_000_000), Some(120_000_000)),
            "cpuacct.stat ticks when usage_user is missing"
        );
        assert_eq!(
            (s.memory_failcnt, s.memory_max_usage, s.oom_kills),
            (Some(4), Some(12_000), Some(2))
        );
        assert_eq!((s.tasks_limit, s.procs), (None, Some(2)));
        assert_eq!(s.memory_cache, Some(1), "cache without total_cache");
        assert_eq!(
            (s.cpu_shares, s.cpu_quota_us, s.cpu_period_us),
            (Some(512), None, Some(100_000)),
            "a quota of -1 is none"
        );
        assert_eq!(
            (s.cfs_periods, s.cfs_throttled_periods, s.cfs_throttled_ns),
            (Some(20), Some(5), Some(7_000_000))
        );
        assert_eq!(s.cpu_ns, Some(123_456_789));
        assert_eq!(
            (s.memory_usage, s.working_set, s.rss),
            (Some(10_000), Some(7_000), Some(5_000))
        );
        assert_eq!((s.page_faults, s.major_page_faults), (Some(7), Some(1)));
        assert_eq!(s.memory_limit, None, "unlimited");
        assert_eq!(s.processes, Some(3));
        assert_eq!(p.parent().v1["memory"], r.join("memory/docker"));
    }

    #[test]
    fn v2_paths_and_counters() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "cgroup.controllers", "cpu memory pids\n");
        let p = paths_from_proc("0::/system.slice/docker-abc.scope\n", r);
        let dir = r.join("system.slice/docker-abc.scope");
        assert_eq!(p.unified.as_deref(), Some(dir.as_path()));
        write(
            &dir,
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nnr_periods 8\nnr_throttled 2\nthrottled_usec 300\n",
        );
        write(&dir, "cpu.weight", "100\n");
        write(&dir, "cpu.max", "50000 100000\n");
        write(&dir, "memory.current", "8192\n");
        write(&dir, "memory.max", "16384\n");
        write(
            &dir,
            "memory.stat",
            "anon 4096\nfile 2048\nfile_mapped 512\ninactive_file 1024\npgfault 9\npgmajfault 2\n",
        );
        write(&dir, "memory.swap.current", "0\n");
        write(&dir, "memory.swap.max", "max\n");
        write(&dir, "pids.current", "5\n");
        write(&dir, "pids.max", "100\n");
        write(&dir, "cgroup.procs", "7\n");
        write(&dir.join("child"), "cgroup.procs", "8\n9\n");
        write(
            &dir,
            "memory.events",
            "low 0\nhigh 0\nmax 6\noom 1\noom_kill 1\n",
        );
        let s = read(&p);
        assert_eq!((s.cpu_user_ns, s.cpu_system_ns), (Some(2_000_000), None));
        assert_eq!((s.memory_cache, s.mapped_file), (Some(2048), Some(512)));
        assert_eq!(
            (s.cpu_shares, s.cpu_quota_us, s.cpu_period_us),
            (Some(2597), Some(50_000), Some(100_000)),
            "weight 100 is 2597 shares (runc's conversion reversed, as cAdvisor does)"
        );
        assert_eq!(
            (s.cfs_periods, s.cfs_throttled_periods, s.cfs_throttled_ns),
            (Some(8), Some(2), Some(300_000))
        );
        assert_eq!((s.memory_failcnt, s.oom_kills), (Some(6), Some(1)));
        assert_eq!(
            (s.tasks_limit, s.procs),
            (Some(100), Some(3)),
            "procs count sub-cgroups too"
        );
        assert_eq!(s.cpu_ns, Some(2_500_000));
        assert_eq!(
            (s.memory_usage, s.working_set, s.rss),
            (Some(8192), Some(7168), Some(4096))
        );
        assert_eq!(
            (s.memory_limit, s.swap_usage, s.swap_limit),
            (Some(16384), Some(0), None)
        );
        assert_eq!(
            (s.page_faults, s.major_page_faults, s.processes),
            (Some(9), Some(2), Some(5))
        );
    }

    #[test]
    fn a_vanished_cgroup_reads_as_empty() {
        let p = paths_from_proc("4:memory:/docker/gone\n", Path::new("/nonexistent"));
        assert_eq!(read(&p), Sample::default());
    }
}
