//! File utilities of every layer: durable writes.

use std::path::Path;

/// Writes through a temporary file and a rename, so a crash never leaves a
/// half-written file behind; and durably: the file is fsynced before the
/// rename and its directory after, so that a power loss of the node leaves
/// either the old file or the whole new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the copy of this test binary that runs under strace.
    const DURABLE_WRITE_TO: &str = "DOCKERCRI_TEST_DURABLE_WRITE_TO";

    /// Runs one `write_atomically` under strace and reads the system calls:
    /// the temporary file is fsynced before the rename, the directory after.
    #[test]
    fn a_write_is_synced_before_and_after_its_rename() {
        if let Some(path) = std::env::var_os(DURABLE_WRITE_TO) {
            write_atomically(Path::new(&path), b"checkpoint").unwrap();
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.ckpt");
        let out = std::process::Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-e",
                "trace=openat,fsync,fdatasync,rename,renameat,renameat2",
            ])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fsutil::tests::a_write_is_synced_before_and_after_its_rename",
            ])
            .env(DURABLE_WRITE_TO, &path)
            .output()
            .expect("strace (scripts/setup.sh installs it)");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"checkpoint");
        let trace = String::from_utf8_lossy(&out.stderr);
        let calls: Vec<&str> = trace
            .lines()
            .filter(|l| l.contains(dir.path().to_str().unwrap()) || l.contains("fsync("))
            .collect();
        let fd_of = |needle: &str| {
            calls
                .iter()
                .position(|l| l.contains("openat(") && l.contains(needle))
                .map(|i| (i, calls[i].rsplit("= ").next().unwrap().trim().to_string()))
                .unwrap_or_else(|| panic!("no open of {needle} in {calls:#?}"))
        };
        let (_, tmp_fd) = fd_of("sandbox.tmp\"");
        let synced = |fd: &str, from: usize| {
            calls[from..]
                .iter()
                .position(|l| l.contains(&format!("fsync({fd})")))
                .map(|i| i + from)
        };
        let rename = calls
            .iter()
            .position(|l| l.contains("rename"))
            .unwrap_or_else(|| panic!("no rename in {calls:#?}"));
        assert!(
            synced(&tmp_fd, 0).is_some_and(|i| i < rename),
            "the file is not fsynced before its rename: {calls:#?}"
        );
        let dir_open = calls[rename..]
            .iter()
            .position(|l| {
                l.contains("openat(") && l.contains(&format!("{}\"", dir.path().display()))
            })
            .map(|i| i + rename)
            .unwrap_or_else(|| panic!("the directory is not opened after the rename: {calls:#?}"));
        let dir_fd = calls[dir_open].rsplit("= ").next().unwrap().trim();
        assert!(
            synced(dir_fd, dir_open).is_some(),
            "the directory is not fsynced after the rename: {calls:#?}"
        );
    }
}
