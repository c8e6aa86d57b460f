//! OOM score policy. Some hosts refuse to lower `oom_score_adj` (nested or
//! rootless Docker, sandboxed build machines): runc then fails to create the
//! container. Like containerd's `restrict_oom_score_adj`, values below
//! dockercri's own are clamped up to it; unlike it, dockercri detects at
//! start-up whether the host allows lowering and clamps only then.

use std::io::ErrorKind;

use tracing::{info, warn};

/// How `oom_score_adj` values are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OomPolicy {
    /// The lowest value containers may get; `None` = no limit.
    pub floor: Option<i64>,
}

impl OomPolicy {
    /// `restrict`: the operator's choice (`--restrict-oom-score-adj`), or
    /// `None` to probe the host.
    pub fn new(restrict: Option<bool>) -> Self {
        let own = own_score();
        let floor = match restrict {
            Some(true) => Some(own),
            Some(false) => None,
            None if can_lower(own) => None,
            None => {
                warn!(
                    floor = own,
                    "this host refuses to lower oom_score_adj; clamping container values to {own}"
                );
                Some(own)
            }
        };
        if let (Some(true), Some(f)) = (restrict, floor) {
            info!(floor = f, "oom_score_adj restricted by configuration");
        }
        OomPolicy { floor }
    }

    /// The value to give Docker for `wanted`.
    pub fn clamp(&self, wanted: i64) -> i64 {
        match self.floor {
            Some(floor) if wanted < floor => floor,
            _ => wanted,
        }
    }
}

fn own_score() -> i64 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Tries to lower our own score by one (and puts it back): the same
/// permission runc needs for the containers.
fn can_lower(own: i64) -> bool {
    if own <= -1000 {
        return true;
    }
    let path = "/proc/self/oom_score_adj";
    match std::fs::write(path, (own - 1).to_string()) {
        Ok(()) => {
            let _ = std::fs::write(path, own.to_string());
            true
        }
        // EACCES and EPERM both read as PermissionDenied.
        Err(e) => e.kind() != ErrorKind::PermissionDenied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamping_raises_only_values_below_the_floor() {
        let p = OomPolicy { floor: Some(0) };
        for (wanted, got) in [(-998, 0), (-1, 0), (0, 0), (500, 500), (1000, 1000)] {
            assert_eq!(p.clamp(wanted), got, "{wanted}");
        }
        let free = OomPolicy { floor: None };
        assert_eq!(free.clamp(-998), -998);
    }

    #[test]
    fn configuration_overrides_detection() {
        assert_eq!(OomPolicy::new(Some(false)).floor, None);
        assert_eq!(OomPolicy::new(Some(true)).floor, Some(own_score()));
    }
}
