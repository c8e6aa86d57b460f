//! AppArmor profiles the kernel has loaded. Docker hands a profile name to
//! runc without looking; a container asking for one that is not loaded
//! must fail (as with containerd), not run unconfined or fail late.

use crate::error::{Error, Result};

/// The kernel's list of loaded profiles (absent when AppArmor is off).
const PROFILES: &str = "/sys/kernel/security/apparmor/profiles";

/// Refuses a Docker `apparmor=<name>` security option whose profile the
/// kernel has not loaded. Without AppArmor on the node nothing is checked:
/// Docker then runs the container without it, as before.
pub fn check_loaded(security_opt: Option<&[String]>, field: &'static str) -> Result<()> {
    let Some(name) = security_opt
        .unwrap_or_default()
        .iter()
        .find_map(|o| o.strip_prefix("apparmor="))
        .filter(|name| *name != "unconfined")
    else {
        return Ok(());
    };
    let Ok(loaded) = std::fs::read_to_string(PROFILES) else {
        return Ok(());
    };
    if is_loaded(&loaded, name) {
        return Ok(());
    }
    Err(Error::invalid(
        field,
        format!("AppArmor profile {name:?} is not loaded on this node"),
    ))
}

/// Whether `name` is among the profiles of the kernel's list, one per
/// line as `<name> (<mode>)`.
fn is_loaded(profiles: &str, name: &str) -> bool {
    profiles
        .lines()
        .map(|line| line.rsplit_once(" (").map_or(line, |(profile, _)| profile))
        .any(|profile| profile == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_matched_by_whole_name() {
        let text = "docker-default (enforce)\n/usr/bin/man (enforce)\ncri-test (complain)\n";
        assert!(is_loaded(text, "docker-default"));
        assert!(is_loaded(text, "cri-test"));
        assert!(is_loaded(text, "/usr/bin/man"));
        assert!(!is_loaded(text, "docker"));
        assert!(!is_loaded(text, "enforce"));
        assert!(!is_loaded("", "docker-default"));
    }

    #[test]
    fn unconfined_and_no_profile_need_nothing_loaded() {
        let f = "config.linux.security_context.apparmor";
        assert!(check_loaded(None, f).is_ok());
        let opts = [
            "apparmor=unconfined".to_string(),
            "seccomp=unconfined".into(),
        ];
        assert!(check_loaded(Some(&opts), f).is_ok());
    }

    #[test]
    fn an_unloaded_profile_is_refused_where_apparmor_runs() {
        let f = "config.linux.security_context.apparmor";
        let opts = ["apparmor=dockercri-no-such-profile".to_string()];
        let checked = check_loaded(Some(&opts), f);
        if std::path::Path::new(PROFILES).exists() {
            let err = checked.unwrap_err();
            assert!(
                err.to_string().contains("dockercri-no-such-profile"),
                "{err}"
            );
        } else {
            assert!(checked.is_ok(), "no AppArmor on this node: Docker decides");
        }
    }
}
