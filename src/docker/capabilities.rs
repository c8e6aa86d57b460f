//! CRI capability names to Docker's: checked against the kernel's
//! capability table (the `caps` crate) before anything is created, so a typo
//! is the client's `INVALID_ARGUMENT`, not Docker's refusal half-way.

use std::str::FromStr;

use caps::Capability;

use crate::error::{Error, Result};

/// Docker's and kubelet's name for every capability.
const ALL: &str = "ALL";

/// Translates `names` from the CRI request field `field` into the names
/// Docker takes (`NET_ADMIN`, `ALL`). As Docker and kubelet, it accepts any
/// case, with or without `CAP_`, and `ALL`; anything else is refused.
pub fn to_docker(field: &'static str, names: &[String]) -> Result<Vec<String>> {
    names.iter().map(|name| one(field, name)).collect()
}

fn one(field: &'static str, name: &str) -> Result<String> {
    if name.eq_ignore_ascii_case(ALL) {
        return Ok(ALL.into());
    }
    let canonical = caps::to_canonical(name.trim());
    let known = Capability::from_str(&canonical)
        .map_err(|_| Error::invalid(field, format!("unknown capability {name:?}")))?;
    let text = known.to_string();
    Ok(text.strip_prefix("CAP_").unwrap_or(&text).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELD: &str = "config.linux.security_context.capabilities.add_capabilities";

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_docker_and_kubelet_accept_are_translated() {
        let got = to_docker(
            FIELD,
            &names(&[
                "CAP_NET_ADMIN",
                "sys_time",
                "Cap_Chown",
                "all",
                "ALL",
                "bpf",
            ]),
        )
        .unwrap();
        assert_eq!(got, ["NET_ADMIN", "SYS_TIME", "CHOWN", "ALL", "ALL", "BPF"]);
    }

    #[test]
    fn every_capability_of_the_table_is_known() {
        for cap in caps::all() {
            let name = cap.to_string();
            let bare = name.strip_prefix("CAP_").unwrap_or(&name);
            assert_eq!(to_docker(FIELD, &names(&[&name])).unwrap(), [bare]);
            assert_eq!(
                to_docker(FIELD, &names(&[&bare.to_lowercase()])).unwrap(),
                [bare]
            );
        }
    }

    #[test]
    fn unknown_names_are_refused_naming_field_and_capability() {
        for bad in [
            "NET_ADMN",
            "CAP_",
            "",
            "CAP_ALL",
            "CAP_CAP_CHOWN",
            "chown,kill",
        ] {
            let err = to_docker(FIELD, &names(&["CHOWN", bad])).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument { .. }),
                "{bad:?}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains(FIELD), "{text}");
            assert!(text.contains(&format!("{bad:?}")), "{text}");
        }
    }
}
