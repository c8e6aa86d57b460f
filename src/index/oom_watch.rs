//! OOM kills Docker does not report. With Docker's systemd cgroup driver on
//! cgroup v2, the kernel's kill of a container's child process (its init
//! survives and exits 137) can go unreported: systemd stops the container's
//! scope at once and removes its cgroup, before containerd's shim has read
//! the scope's `memory.events` (seen with critest's OOM spec on Docker 26,
//! where the reason stayed `Error`). The container's parent cgroup (the
//! pod's slice, or Docker's parent) outlives it, and its hierarchical
//! `memory.events` counts every kill beneath it: its `oom_kill` is read
//! when the container is started (through the pod's pause process, which
//! shares the parent; a container killed at once is never seen running),
//! or else when the index first sees it running, and again when the index
//! first sees it exited. A rise, with the container ended by SIGKILL (exit 137),
//! is taken as an OOM kill. A sibling's OOM kill during the container's
//! life, while the container itself was SIGKILLed for another reason
//! (kubelet's stop after the grace period), would be misread so; nothing
//! else is. On cgroup v1 and when the files cannot be read nothing is
//! watched (Docker reports the kill there).

use std::path::{Path, PathBuf};

use crate::kernel_stats::cgroup;

/// Where cgroup v2 is mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The exit code of a process ended by SIGKILL, as Docker reports it.
const KILLED: i64 = 137;

/// One running container's parent `memory.events` and its OOM kill count
/// when the container was first seen running.
#[derive(Debug, Clone)]
pub struct OomWatch {
    parent_events: PathBuf,
    at_start: u64,
    /// Whether the count had risen when the container was first seen
    /// exited (decided once, so a later sibling's kill does not count).
    rose_by_exit: Option<bool>,
}

impl OomWatch {
    /// Starts watching the parent cgroup of process `pid` (the container's
    /// own, or its pod's pause process: they share the parent); `None` off
    /// cgroup v2 or when its files cannot be read.
    pub fn start(pid: i64) -> Option<OomWatch> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let own = cgroup::paths_from_proc(&text, Path::new(CGROUP_ROOT)).unified?;
        let parent_events = own.parent()?.join("memory.events");
        let at_start = oom_kills(&parent_events)?;
        Some(OomWatch {
            parent_events,
            at_start,
            rose_by_exit: None,
        })
    }

    /// Whether the exited container was OOM-killed by what its parent
    /// counted: the count rose while it ran, and it ended with `exit_code`
    /// 137. The first call after the exit reads the count.
    pub fn killed(&mut self, exit_code: Option<i64>) -> bool {
        let rose = *self.rose_by_exit.get_or_insert_with(|| {
            oom_kills(&self.parent_events).is_some_and(|now| now > self.at_start)
        });
        rose && exit_code == Some(KILLED)
    }
}

/// The `oom_kill` count of a cgroup's `memory.events` file.
fn oom_kills(path: &Path) -> Option<u64> {
    parse_oom_kill(&std::fs::read_to_string(path).ok()?)
}

/// `oom_kill` from the text of a `memory.events` file.
fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_kill_count_is_read_from_memory_events() {
        let text = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 3\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(text), Some(3));
        assert_eq!(parse_oom_kill("low 0\n"), None);
    }

    #[test]
    fn a_rise_by_the_exit_and_a_sigkill_make_an_oom_kill() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        let write = |n: u64| std::fs::write(&events, format!("oom 0\noom_kill {n}\n")).unwrap();
        write(1);
        let watch = || OomWatch {
            parent_events: events.clone(),
            at_start: oom_kills(&events).unwrap(),
            rose_by_exit: None,
        };
        let mut quiet = watch();
        assert!(!quiet.killed(Some(137)), "no kill while it ran");
        let mut oom = watch();
        write(2);
        assert!(oom.killed(Some(137)));
        // Decided at the first look after the exit.
        write(5);
        assert!(!quiet.killed(Some(137)), "a later kill is another's");
        let mut other_exit = watch();
        write(6);
        assert!(!other_exit.killed(Some(1)), "not ended by SIGKILL");
    }

    #[test]
    fn nothing_is_watched_without_cgroup_v2_files() {
        assert!(OomWatch::start(i64::from(i32::MAX)).is_none());
    }
}
