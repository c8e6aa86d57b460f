//! Docker container names for sandboxes and containers, as dockershim and
//! cri-dockerd spell them, so that either runtime recognises the other's:
//! `k8s_POD_<pod>_<namespace>_<uid>_<attempt>` and
//! `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`.

use crate::proto::{ContainerMetadata, PodSandboxMetadata};

/// Every name starts with this (`kubePrefix` in dockershim).
pub const KUBE_PREFIX: &str = "k8s";
/// The container-name slot of a sandbox (`PodInfraContainerName`).
pub const SANDBOX_CONTAINER_NAME: &str = "POD";
const SEPARATOR: char = '_';

/// `k8s_POD_<pod>_<namespace>_<uid>_<attempt>`.
pub fn sandbox_name(m: &PodSandboxMetadata) -> String {
    format!(
        "{KUBE_PREFIX}_{SANDBOX_CONTAINER_NAME}_{}_{}_{}_{}",
        m.name, m.namespace, m.uid, m.attempt
    )
}

/// `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`.
pub fn container_name(c: &ContainerMetadata, pod: &PodSandboxMetadata) -> String {
    format!(
        "{KUBE_PREFIX}_{}_{}_{}_{}_{}",
        c.name, pod.name, pod.namespace, pod.uid, c.attempt
    )
}

/// The parts of a name; `None` when it is not one of ours (or cri-dockerd's).
/// Docker reports names with a leading `/`; a random `_<suffix>` added on a
/// name conflict is ignored.
fn parts(name: &str) -> Option<Vec<&str>> {
    let name = name.strip_prefix('/').unwrap_or(name);
    let parts: Vec<&str> = name.split(SEPARATOR).collect();
    if parts.first() != Some(&KUBE_PREFIX) || !(6..=7).contains(&parts.len()) {
        return None;
    }
    Some(parts)
}

/// Sandbox metadata from a sandbox container's name.
pub fn parse_sandbox_name(name: &str) -> Option<PodSandboxMetadata> {
    let p = parts(name)?;
    Some(PodSandboxMetadata {
        name: p[2].to_string(),
        namespace: p[3].to_string(),
        uid: p[4].to_string(),
        attempt: p[5].parse().ok()?,
    })
}

/// Container metadata (and its pod's) from a container's name.
pub fn parse_container_name(name: &str) -> Option<(ContainerMetadata, PodSandboxMetadata)> {
    let p = parts(name)?;
    let attempt = p[5].parse().ok()?;
    Some((
        ContainerMetadata {
            name: p[1].to_string(),
            attempt,
        },
        PodSandboxMetadata {
            name: p[2].to_string(),
            namespace: p[3].to_string(),
            uid: p[4].to_string(),
            attempt: 0,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ns: &str, uid: &str, attempt: u32) -> PodSandboxMetadata {
        PodSandboxMetadata {
            name: name.into(),
            namespace: ns.into(),
            uid: uid.into(),
            attempt,
        }
    }

    #[test]
    fn sandbox_names_round_trip() {
        for m in [
            pod("web", "default", "0f1e-22", 0),
            pod("db-0", "kube-system", "abc", 7),
        ] {
            let name = sandbox_name(&m);
            assert!(name.starts_with("k8s_POD_"), "{name}");
            assert_eq!(parse_sandbox_name(&format!("/{name}")), Some(m.clone()));
            assert_eq!(parse_sandbox_name(&format!("{name}_1a2b3c4d")), Some(m));
        }
    }

    #[test]
    fn container_names_round_trip() {
        let p = pod("web", "default", "uid-1", 0);
        let c = ContainerMetadata {
            name: "nginx".into(),
            attempt: 3,
        };
        let name = container_name(&c, &p);
        assert_eq!(name, "k8s_nginx_web_default_uid-1_3");
        let (cm, pm) = parse_container_name(&name).unwrap();
        assert_eq!(cm, c);
        assert_eq!(
            (pm.name, pm.namespace, pm.uid),
            (p.name, p.namespace, p.uid)
        );
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            "/nginx",
            "k8s_POD_a_b",
            "k9s_POD_a_b_c_0",
            "k8s_POD_a_b_c_x",
            "",
        ] {
            assert_eq!(parse_sandbox_name(name), None, "{name}");
        }
    }
}
