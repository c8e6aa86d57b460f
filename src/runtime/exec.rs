//! `ExecSync`, and the URL issuance of `Exec`, `Attach` and `PortForward`:
//! validate the request, park it under a single-use token and answer the
//! streaming server's URL (the streams themselves are `crate::streaming`'s).

use std::sync::Arc;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use tracing::{debug, warn};

use crate::context::Context;
use crate::cri::MAX_MESSAGE_SIZE;
use crate::error::{Error, Result};
use crate::index::Entry;
use crate::proto::{AttachRequest, ExecRequest, ExecSyncResponse, PortForwardRequest};
use crate::runtime::{container, sandbox};
use crate::streaming::tokens::Pending;

/// Most output bytes an `ExecSync` reply carries, stdout and stderr
/// together: the reply must fit the 16 MiB gRPC message limit kubelet and
/// we use ([`MAX_MESSAGE_SIZE`]); 1 KiB is left for the protobuf framing
/// (two length-delimited fields and the exit code: at most 21 bytes). The
/// rest of the output is read and dropped, so a command that floods its
/// output costs at most twice this in memory.
pub const EXEC_SYNC_OUTPUT_CAP: usize = MAX_MESSAGE_SIZE - 1024;

/// `ExecSync`: runs `cmd` in running container `id` and returns its output
/// (each stream capped) and exit code. `timeout_secs > 0` bounds the run:
/// past it the process and its children are killed and the call answers
/// `DEADLINE_EXCEEDED`.
pub async fn exec_sync(
    ctx: &Context,
    id: &str,
    cmd: Vec<String>,
    timeout_secs: i64,
) -> Result<ExecSyncResponse> {
    if cmd.is_empty() {
        return Err(Error::invalid("cmd", "must not be empty"));
    }
    let c = running_container(ctx, id).await?;
    let full_id = c.id().to_string();
    let docker = ctx.docker.get().await?;
    let options = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(cmd.clone()),
        ..Default::default()
    };
    let exec_id = docker
        .create_exec(&full_id, options)
        .await
        .map_err(|e| ctx.docker.classify(e, "container", id))?
        .id;
    let started = docker
        .start_exec(&exec_id, Some(StartExecOptions::default()))
        .await
        .map_err(|e| ctx.docker.classify(e, "exec", &exec_id))?;
    let StartExecResults::Attached { mut output, input } = started else {
        return Err(Error::Internal("docker started the exec detached".into()));
    };
    drop(input);
    let mut stdout = Capped::default();
    let mut stderr = Capped::default();
    let collect = async {
        while let Some(item) = output.next().await {
            match item {
                Ok(bollard::container::LogOutput::StdOut { message })
                | Ok(bollard::container::LogOutput::Console { message }) => stdout.push(&message),
                Ok(bollard::container::LogOutput::StdErr { message }) => stderr.push(&message),
                Ok(_) => {}
                Err(e) => return Err(ctx.docker.classify(e, "exec", &exec_id)),
            }
        }
        Ok(())
    };
    let finished = match u64::try_from(timeout_secs) {
        Ok(secs) if secs > 0 => tokio::time::timeout(Duration::from_secs(secs), collect).await,
        _ => Ok(collect.await),
    };
    match finished {
        Ok(result) => result?,
        Err(_) => {
            kill_exec(ctx, &exec_id).await;
            return Err(Error::DeadlineExceeded {
                what: format!(
                    "command {cmd:?} in container {id} ran past its {timeout_secs}s timeout"
                ),
            });
        }
    }
    let shared = fit(&mut stdout.bytes, &mut stderr.bytes);
    if stdout.truncated || stderr.truncated || shared {
        debug!(container = %id, "ExecSync output truncated to {EXEC_SYNC_OUTPUT_CAP} bytes");
    }
    let exit_code = ctx.docker.exec_exit_code(&exec_id).await?;
    Ok(ExecSyncResponse {
        stdout: stdout.bytes,
        stderr: stderr.bytes,
        exit_code: i32::try_from(exit_code).unwrap_or(i32::MAX),
    })
}

/// Output kept up to [`EXEC_SYNC_OUTPUT_CAP`], the rest dropped.
#[derive(Debug, Default)]
struct Capped {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Capped {
    fn push(&mut self, chunk: &[u8]) {
        let room = EXEC_SYNC_OUTPUT_CAP.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

/// Shares [`EXEC_SYNC_OUTPUT_CAP`] between the two streams so the reply
/// fits one message: a stream within half of it keeps everything, the
/// other one gets the rest. Returns whether anything was cut.
fn fit(stdout: &mut Vec<u8>, stderr: &mut Vec<u8>) -> bool {
    let cap = EXEC_SYNC_OUTPUT_CAP;
    if stdout.len() + stderr.len() <= cap {
        return false;
    }
    let out_keep = stdout.len().min(cap - stderr.len().min(cap / 2));
    stdout.truncate(out_keep);
    stderr.truncate(cap - out_keep);
    true
}

/// Kills a still-running exec'd process and every descendant (Docker has
/// no exec-kill call, but it reports the process's host PID).
pub async fn kill_exec(ctx: &Context, exec_id: &str) {
    let Ok(docker) = ctx.docker.get().await else {
        return;
    };
    let inspect = match docker.inspect_exec(exec_id).await {
        Ok(i) => i,
        Err(e) => {
            warn!(exec = exec_id, error = %e, "cannot inspect timed-out exec");
            return;
        }
    };
    let pid = inspect.pid.and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    if inspect.running == Some(true) && pid > 1 {
        let killed = kill_tree(pid);
        debug!(exec = exec_id, pid, killed, "killed timed-out exec");
    }
}

/// SIGKILLs `pid` and its descendants (found through /proc); returns how many.
pub fn kill_tree(pid: i32) -> usize {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let mut victims = vec![pid];
    let mut i = 0;
    let parents = proc_parents();
    while i < victims.len() {
        let parent = victims[i];
        victims.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    // Parent first, so that it cannot spawn more meanwhile.
    victims
        .into_iter()
        .filter(|p| kill(Pid::from_raw(*p), Signal::SIGKILL).is_ok())
        .count()
}

/// (pid, parent pid) of every process on the host.
fn proc_parents() -> Vec<(i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parent_of(&stat)?))
        })
        .collect()
}

/// The parent pid from a `/proc/<pid>/stat` line (the command may hold
/// spaces and parentheses: parse after the last `)`).
fn parent_of(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The app container `id`, which must be running.
async fn running_container(ctx: &Context, id: &str) -> Result<Arc<Entry>> {
    let c = container::find(ctx, id)
        .await?
        .ok_or_else(|| Error::not_found("container", id))?;
    if !c.running() {
        return Err(Error::FailedPrecondition {
            what: format!("container {id}"),
            why: "is not running".into(),
        });
    }
    Ok(c)
}

/// The stream choice common to exec and attach.
fn check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<()> {
    if !(stdin || stdout || stderr) {
        return Err(Error::invalid(
            "stdin/stdout/stderr",
            "one of them must be true",
        ));
    }
    if tty && stderr {
        return Err(Error::invalid(
            "stderr",
            "tty and stderr cannot both be true",
        ));
    }
    Ok(())
}

/// `Exec`: the URL where the client runs `req.cmd` interactively.
pub async fn exec(ctx: &Context, req: ExecRequest) -> Result<String> {
    if req.cmd.is_empty() {
        return Err(Error::invalid("cmd", "must not be empty"));
    }
    check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
    running_container(ctx, &req.container_id).await?;
    ctx.streaming.issue(Pending::Exec(req))
}

/// `Attach`: the URL where the client attaches to the container's streams.
pub async fn attach(ctx: &Context, req: AttachRequest) -> Result<String> {
    check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
    running_container(ctx, &req.container_id).await?;
    ctx.streaming.issue(Pending::Attach(req))
}

/// `PortForward`: the URL where the client reaches ports of the pod's
/// network namespace.
pub async fn port_forward(ctx: &Context, req: PortForwardRequest) -> Result<String> {
    let pod = sandbox::find(ctx, &req.pod_sandbox_id)
        .await?
        .ok_or_else(|| Error::not_found("pod sandbox", &req.pod_sandbox_id))?;
    if !pod.running() {
        return Err(Error::FailedPrecondition {
            what: format!("pod sandbox {}", req.pod_sandbox_id),
            why: "is not running".into(),
        });
    }
    if let Some(bad) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(Error::invalid("port", format!("{bad} is not a TCP port")));
    }
    ctx.streaming.issue(Pending::PortForward(req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_not_held_without_bound() {
        let mut c = Capped::default();
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..17 {
            c.push(&chunk);
        }
        assert_eq!(c.bytes.len(), EXEC_SYNC_OUTPUT_CAP);
        assert!(c.truncated);
        let mut small = Capped::default();
        small.push(b"hello");
        assert_eq!(
            (small.bytes.as_slice(), small.truncated),
            (&b"hello"[..], false)
        );
    }

    #[test]
    fn both_streams_together_fit_one_message() {
        let cap = EXEC_SYNC_OUTPUT_CAP;
        let half = cap / 2;
        // (stdout, stderr) lengths -> what each keeps.
        let cases = [
            ((10, 20), (10, 20)),
            ((cap, 0), (cap, 0)),
            ((cap, 6), (cap - 6, 6)),
            ((6, cap), (6, cap - 6)),
            ((cap, cap), (cap - half, half)),
            ((half + 5, half + 5), (cap - half, half)),
            ((cap, half + 7), (cap - half, half)),
            ((half - 1, cap), (half - 1, cap - half + 1)),
        ];
        for ((o, e), want) in cases {
            let (mut out, mut err) = (vec![b'o'; o], vec![b'e'; e]);
            let cut = fit(&mut out, &mut err);
            assert_eq!((out.len(), err.len()), want, "stdout {o}, stderr {e}");
            assert_eq!(cut, o + e > cap, "stdout {o}, stderr {e}");
            let reply = ExecSyncResponse {
                stdout: out,
                stderr: err,
                exit_code: i32::MIN,
            };
            assert!(prost::Message::encoded_len(&reply) <= MAX_MESSAGE_SIZE);
        }
    }

    #[test]
    fn stream_choices_are_checked() {
        let cases = [
            ((false, false, false, false), false),
            ((false, true, true, true), false),
            ((true, false, false, false), true),
            ((false, true, false, true), true),
            ((false, true, true, false), true),
        ];
        for ((i, o, e, t), ok) in cases {
            assert_eq!(check_streams(i, o, e, t).is_ok(), ok, "{i} {o} {e} {t}");
        }
    }

    #[test]
    fn parent_pid_is_read_after_the_command() {
        let cases = [
            ("12 (sh) S 7 12 12 0", Some(7)),
            ("13 (a) b) (c) R 1 13", Some(1)),
            ("garbage", None),
        ];
        for (stat, want) in cases {
            assert_eq!(parent_of(stat), want, "{stat}");
        }
    }
}
