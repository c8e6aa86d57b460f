//! The cgroup parent kubelet sends, in the form Docker's cgroup driver
//! takes.
//!
//! kubelet writes the pod's cgroup in its own cgroupfs notation. With the
//! systemd driver that is the whole path of slices,
//! `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice`;
//! Docker's systemd driver (runc) takes only a slice's own name and finds
//! its place from the dashes in it (`kubepods-burstable-pod<uid>.slice`
//! lives under `kubepods-burstable.slice` under `kubepods.slice`), and
//! refuses a path with "invalid slice name". dockershim and cri-dockerd
//! pass the path's last element (`convertCgroupFsNameToSystemd`); so do we.

use crate::error::{Error, Result};
use crate::proto::CgroupDriver;

/// The cgroup parent to give Docker for kubelet's `parent` under Docker's
/// `driver`; `None` for none (Docker's default).
pub fn for_docker(
    parent: &str,
    driver: CgroupDriver,
    field: &'static str,
) -> Result<Option<String>> {
    if parent.is_empty() {
        return Ok(None);
    }
    match driver {
        CgroupDriver::Cgroupfs => Ok(Some(parent.to_string())),
        CgroupDriver::Systemd => systemd_slice(parent, field).map(Some),
    }
}

/// The slice's own name: the last element of a path of slices.
fn systemd_slice(parent: &str, field: &'static str) -> Result<String> {
    let name = parent
        .rsplit('/')
        .find(|element| !element.is_empty())
        .unwrap_or_default();
    // runc's rule for a slice name (ExpandSlice): ends in ".slice", no '/',
    // no empty dash-separated part; "-.slice" is the root slice.
    let stem = name.strip_suffix(".slice").unwrap_or_default();
    let valid = !stem.is_empty() && (stem == "-" || stem.split('-').all(|part| !part.is_empty()));
    if !valid {
        return Err(Error::invalid(
            field,
            format!(
                "{parent:?} is not a systemd slice (Docker uses the systemd cgroup driver: \
                 want a path of slices such as /kubepods.slice/kubepods-pod<uid>.slice)"
            ),
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELD: &str = "config.linux.cgroup_parent";

    #[test]
    fn kubelet_paths_become_the_slice_name_under_systemd() {
        for (kubelet, docker) in [
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e.slice",
                "kubepods-burstable-pod1f2e.slice",
            ),
            (
                "/kubepods.slice/kubepods-pod1f2e.slice",
                "kubepods-pod1f2e.slice",
            ),
            ("/test.slice", "test.slice"),
            ("test.slice", "test.slice"),
            (
                "/kubepods.slice/kubepods-besteffort.slice/",
                "kubepods-besteffort.slice",
            ),
            ("-.slice", "-.slice"),
        ] {
            assert_eq!(
                for_docker(kubelet, CgroupDriver::Systemd, FIELD).unwrap(),
                Some(docker.to_string()),
                "{kubelet}"
            );
        }
    }

    #[test]
    fn cgroupfs_paths_pass_unchanged() {
        for parent in ["/kubepods/burstable/pod1f2e", "/kubepods.slice/x.slice"] {
            assert_eq!(
                for_docker(parent, CgroupDriver::Cgroupfs, FIELD).unwrap(),
                Some(parent.to_string())
            );
        }
    }

    #[test]
    fn no_parent_is_dockers_default_under_either_driver() {
        for driver in [CgroupDriver::Systemd, CgroupDriver::Cgroupfs] {
            assert_eq!(for_docker("", driver, FIELD).unwrap(), None);
        }
    }

    #[test]
    fn a_path_that_is_no_slice_is_refused_naming_the_field() {
        for parent in [
            "/kubepods/burstable/pod1",
            "/",
            "/a.slice/.slice",
            "/a--b.slice",
            "x",
        ] {
            let err = for_docker(parent, CgroupDriver::Systemd, FIELD).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(FIELD), "{parent}: {message}");
            assert!(
                matches!(err, Error::InvalidArgument { .. }),
                "{parent}: {err:?}"
            );
        }
    }
}
