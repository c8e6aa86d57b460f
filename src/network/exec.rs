//! Running one CNI plugin: its binary from `--cni-bin-dir`, the `CNI_*`
//! environment, the network configuration on stdin, and the result or the
//! spec's error object on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tracing::debug;

/// How long one plugin may run before it is killed: plugins normally take
/// milliseconds, an IPAM plugin waiting on a lease may take seconds.
const PLUGIN_TIME_LIMIT: Duration = Duration::from_secs(120);

/// What every plugin of one ADD or DEL is told.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// `ADD` or `DEL`.
    pub command: &'static str,
    pub container_id: &'a str,
    /// The network namespace path; empty on a DEL after the pod is gone.
    pub netns: &'a str,
    pub ifname: &'a str,
    /// `CNI_ARGS`: `KEY=VALUE` pairs joined by `;`.
    pub args: &'a str,
    pub bin_dirs: &'a [PathBuf],
}

/// The first `bin_dirs` entry holding an executable named `kind`.
pub fn find_plugin(kind: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    if kind.is_empty() || kind.contains('/') || kind == "." || kind == ".." {
        return Err(format!("plugin type {kind:?} is not a file name"));
    }
    bin_dirs
        .iter()
        .map(|dir| dir.join(kind))
        .find(|path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            let dirs: Vec<_> = bin_dirs.iter().map(|d| d.display().to_string()).collect();
            format!("plugin {kind:?} not found in {}", dirs.join(":"))
        })
}

/// Runs plugin `kind` with `config` on stdin; returns its stdout on
/// success, or a message with the plugin's own error text.
pub async fn run(inv: &Invocation<'_>, kind: &str, config: &[u8]) -> Result<Vec<u8>, String> {
    let binary = find_plugin(kind, inv.bin_dirs)?;
    let path = std::env::join_paths(inv.bin_dirs).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(&binary)
        .env("CNI_COMMAND", inv.command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading its config is judged by its
        // exit status below, not by the broken pipe.
        let _ = stdin.write_all(config).await;
    }
    let output = tokio::time::timeout(PLUGIN_TIME_LIMIT, child.wait_with_output())
        .await
        .map_err(|_| format!("plugin {kind:?} did not finish within {PLUGIN_TIME_LIMIT:?}"))?
        .map_err(|e| format!("waiting for {}: {e}", binary.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        debug!(plugin = kind, command = inv.command, stderr = %stderr.trim(), "CNI plugin stderr");
    }
    if output.status.success() {
        return Ok(output.stdout);
    }
    Err(failure_message(
        kind,
        &output.stdout,
        &stderr,
        &output.status.to_string(),
    ))
}

/// The spec's error object (`code`, `msg`, `details`) as one line; plain
/// output or the exit status when the plugin wrote none.
pub fn failure_message(kind: &str, stdout: &[u8], stderr: &str, status: &str) -> String {
    #[derive(serde::Deserialize)]
    struct PluginError {
        #[serde(default)]
        code: u32,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    if let Ok(e) = serde_json::from_slice::<PluginError>(stdout)
        && !e.msg.is_empty()
    {
        let details = if e.details.is_empty() {
            String::new()
        } else {
            format!(": {}", e.details)
        };
        return format!(
            "plugin {kind:?} failed (code {}): {}{details}",
            e.code, e.msg
        );
    }
    let text = String::from_utf8_lossy(stdout);
    let text = [text.trim(), stderr.trim()]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or(status);
    format!("plugin {kind:?} failed: {text}")
}

/// True when `path` names a network namespace file that still exists.
pub fn netns_exists(path: &str) -> bool {
    !path.is_empty() && Path::new(path).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_errors_read_as_one_line() {
        for (stdout, stderr, want) in [
            (
                r#"{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate","details":"range is full"}"#,
                "",
                r#"plugin "bridge" failed (code 11): failed to allocate: range is full"#,
            ),
            (
                r#"{"code":7,"msg":"invalid config"}"#,
                "",
                r#"plugin "bridge" failed (code 7): invalid config"#,
            ),
            (
                "",
                "panic: oops\n",
                r#"plugin "bridge" failed: panic: oops"#,
            ),
            ("", "", r#"plugin "bridge" failed: exit status: 1"#),
        ] {
            assert_eq!(
                failure_message("bridge", stdout.as_bytes(), stderr, "exit status: 1"),
                want
            );
        }
    }

    #[test]
    fn plugins_are_found_in_the_first_directory_that_has_them() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let make = |dir: &Path, name: &str, mode: u32| {
            let p = dir.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        make(a.path(), "noexec", 0o644);
        make(b.path(), "noexec", 0o755);
        make(a.path(), "bridge", 0o755);
        make(b.path(), "bridge", 0o755);
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(
            find_plugin("bridge", &dirs).unwrap(),
            a.path().join("bridge")
        );
        assert_eq!(
            find_plugin("noexec", &dirs).unwrap(),
            b.path().join("noexec")
        );
        for bad in ["", "../bridge", "/bin/sh", ".."] {
            assert!(
                find_plugin(bad, &dirs)
                    .unwrap_err()
                    .contains("not a file name"),
                "{bad}"
            );
        }
        assert!(
            find_plugin("nosuch", &dirs)
                .unwrap_err()
                .contains("not found")
        );
    }

    #[tokio::test]
    async fn a_plugin_gets_the_environment_and_config() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("echo");
        std::fs::write(
            &p,
            "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|' \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" \"$CNI_NETNS\" \"$CNI_IFNAME\" \"$CNI_ARGS\"\ncat\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let fail = dir.path().join("fail");
        std::fs::write(
            &fail,
            "#!/bin/sh\necho '{\"code\":100,\"msg\":\"no\"}'\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&fail, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dirs = [dir.path().to_path_buf()];
        let inv = Invocation {
            command: "ADD",
            container_id: "abc",
            netns: "/proc/1/ns/net",
            ifname: "eth0",
            args: "K8S_POD_NAME=web",
            bin_dirs: &dirs,
        };
        let out = run(&inv, "echo", b"{\"x\":1}").await.unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ADD|abc|/proc/1/ns/net|eth0|K8S_POD_NAME=web|{\"x\":1}"
        );
        let err = run(&inv, "fail", b"{}").await.unwrap_err();
        assert_eq!(err, "plugin \"fail\" failed (code 100): no");
    }
}
