//! The Docker labels dockershim and cri-dockerd put on containers, and how
//! CRI labels and annotations are stored among them.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// `podsandbox` or `container` (`containerTypeLabelKey`).
pub const TYPE: &str = "io.kubernetes.docker.type";
pub const TYPE_SANDBOX: &str = "podsandbox";
pub const TYPE_CONTAINER: &str = "container";
/// On containers: their sandbox's Docker ID.
pub const SANDBOX_ID: &str = "io.kubernetes.sandbox.id";
/// On containers: where kubelet reads the log.
pub const LOG_PATH: &str = "io.kubernetes.container.logpath";
/// On sandboxes: the CRI runtime handler they were run with (ours; empty =
/// dockerd's default runtime).
pub const RUNTIME_HANDLER: &str = "io.dockercri.runtime-handler";
/// On containers: the cgroup v2 files kubelet asked for (`unified`) that
/// Docker has no field for, as a JSON object; dockercri writes them into the
/// container's cgroup once it runs.
pub const CGROUP_UNIFIED: &str = "io.dockercri.cgroup-unified";
/// kubelet's container-name label. cri-dockerd also puts it, as `POD`, on
/// its sandboxes (for cAdvisor's summary) and hides it there from CRI.
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// CRI annotations are stored as labels with this prefix.
pub const ANNOTATION_PREFIX: &str = "annotation.";

/// Most bytes (keys and values) the labels and annotations of one object
/// may hold together. The API server lets far less through (annotations
/// at most 256 KiB, a whole object about 1.5 MiB in etcd); without a bound
/// a huge map would be copied into every Docker list and CRI list reply.
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;

/// Labels that dockercri itself sets: never reported as CRI labels.
const INTERNAL: &[&str] = &[TYPE, SANDBOX_ID, LOG_PATH, RUNTIME_HANDLER, CGROUP_UNIFIED];

/// Docker labels for a CRI object: its labels as they are, its annotations
/// prefixed, then the internal ones (which win).
pub fn to_docker(
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
    internal: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut out = labels.clone();
    for (k, v) in annotations {
        out.insert(format!("{ANNOTATION_PREFIX}{k}"), v.clone());
    }
    for (k, v) in internal {
        out.insert(k.to_string(), v.to_string());
    }
    out
}

/// Refuses labels and annotations above [`MAX_METADATA_BYTES`] together.
pub fn check_size(
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
) -> Result<()> {
    let bytes: usize = labels
        .iter()
        .chain(annotations)
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if bytes > MAX_METADATA_BYTES {
        return Err(Error::invalid(
            "config.labels/annotations",
            format!("{bytes} bytes; at most {MAX_METADATA_BYTES} are accepted"),
        ));
    }
    Ok(())
}

/// Splits Docker labels back into CRI labels and annotations (as
/// cri-dockerd's `extractLabels`).
pub fn from_docker(
    docker: &HashMap<String, String>,
) -> (HashMap<String, String>, HashMap<String, String>) {
    let mut labels = HashMap::new();
    let mut annotations = HashMap::new();
    let sandbox = docker.get(TYPE).map(String::as_str) == Some(TYPE_SANDBOX);
    for (k, v) in docker {
        if let Some(key) = k.strip_prefix(ANNOTATION_PREFIX) {
            annotations.insert(key.to_string(), v.clone());
        } else if sandbox && k == CONTAINER_NAME {
            // cri-dockerd's own mark on its pause containers.
        } else if !INTERNAL.contains(&k.as_str()) {
            labels.insert(k.clone(), v.clone());
        }
    }
    (labels, annotations)
}

/// Docker `label=` filters for objects of type `kind` (sandbox or
/// container) that carry every pair of a CRI label selector.
pub fn filters(kind: &str, selector: &HashMap<String, String>) -> Vec<String> {
    std::iter::once(format!("{TYPE}={kind}"))
        .chain(selector.iter().map(|(k, v)| format!("{k}={v}")))
        .collect()
}

/// True when every `selector` pair is among the CRI labels.
pub fn matches_selector(
    labels: &HashMap<String, String>,
    selector: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pod sandbox a Docker event (or container) with these labels is
/// about: the container itself when it is a sandbox, else its sandbox
/// label. `None` for non-pod containers.
pub fn pod_of(id: &str, attributes: &HashMap<String, String>) -> Option<String> {
    match attributes.get(TYPE).map(String::as_str) {
        Some(TYPE_SANDBOX) => Some(id.to_string()),
        Some(TYPE_CONTAINER) => attributes.get(SANDBOX_ID).cloned(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_and_annotations_round_trip() {
        let labels = map(&[("app", "web"), ("io.kubernetes.pod.name", "web-0")]);
        let annotations = map(&[("kubernetes.io/config.seen", "now"), ("app", "x")]);
        let docker = to_docker(&labels, &annotations, &[(TYPE, TYPE_SANDBOX)]);
        assert_eq!(docker["annotation.app"], "x");
        assert_eq!(docker[TYPE], "podsandbox");
        let (l, a) = from_docker(&docker);
        assert_eq!(l, labels);
        assert_eq!(a, annotations);
    }

    #[test]
    fn cri_dockerd_sandbox_container_name_label_is_hidden() {
        let sandbox = map(&[
            (TYPE, TYPE_SANDBOX),
            (CONTAINER_NAME, "POD"),
            ("app", "web"),
        ]);
        assert_eq!(from_docker(&sandbox).0, map(&[("app", "web")]));
        let container = map(&[(TYPE, TYPE_CONTAINER), (CONTAINER_NAME, "app")]);
        assert_eq!(from_docker(&container).0, map(&[(CONTAINER_NAME, "app")]));
    }

    #[test]
    fn internal_labels_win_over_cri_labels() {
        let labels = map(&[(TYPE, "container")]);
        let docker = to_docker(&labels, &HashMap::new(), &[(TYPE, TYPE_SANDBOX)]);
        assert_eq!(docker[TYPE], TYPE_SANDBOX);
    }

    #[test]
    fn metadata_size_is_bounded() {
        let big = |n: usize| map(&[("k", &"v".repeat(n))]);
        let none = HashMap::new();
        for (labels, annotations, ok) in [
            (none.clone(), none.clone(), true),
            (big(MAX_METADATA_BYTES - 1), none.clone(), true),
            (big(MAX_METADATA_BYTES), none.clone(), false),
            (none.clone(), big(MAX_METADATA_BYTES), false),
            (
                big(MAX_METADATA_BYTES / 2),
                big(MAX_METADATA_BYTES / 2),
                false,
            ),
        ] {
            let got = check_size(&labels, &annotations);
            assert_eq!(got.is_ok(), ok, "{got:?}");
        }
    }

    #[test]
    fn selectors_need_every_pair() {
        let labels = map(&[("a", "1"), ("b", "2")]);
        for (sel, want) in [
            (map(&[]), true),
            (map(&[("a", "1")]), true),
            (map(&[("a", "1"), ("b", "2")]), true),
            (map(&[("a", "2")]), false),
            (map(&[("c", "1")]), false),
        ] {
            assert_eq!(matches_selector(&labels, &sel), want, "{sel:?}");
        }
    }

    #[test]
    fn events_belong_to_pods_only() {
        let attrs = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            pod_of("sb", &attrs(&[(TYPE, TYPE_SANDBOX)])),
            Some("sb".into())
        );
        assert_eq!(
            pod_of("c", &attrs(&[(TYPE, TYPE_CONTAINER), (SANDBOX_ID, "sb")])),
            Some("sb".into())
        );
        assert_eq!(pod_of("x", &attrs(&[("app", "nginx")])), None);
    }
}
