//! The remote command protocol (`exec` and `attach`) on top of either
//! transport: protocol names, the terminal-size messages, the `Status`
//! written on the error stream, and the copying between the client's
//! streams and Docker's exec or attach connection.

use std::collections::HashMap;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{AttachContainerOptions, ResizeContainerTTYOptions};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Backend;
use crate::error::{Error, Result};
use crate::proto::{AttachRequest, ExecRequest};

// Protocol versions, from client-go `tools/remotecommand` and kubelet
// `cri/streaming/remotecommand/httpstream.go`.
/// Original protocol: error stream carries plain text.
pub const V1: &str = "channel.k8s.io";
/// Adds separate stderr handling.
pub const V2: &str = "v2.channel.k8s.io";
/// Adds the resize stream.
pub const V3: &str = "v3.channel.k8s.io";
/// The error stream carries a `Status` JSON with the exit code.
pub const V4: &str = "v4.channel.k8s.io";
/// WebSocket only: v4 plus the close signal ([`CLOSE_CHANNEL`]).
pub const V5: &str = "v5.channel.k8s.io";
/// WebSocket only: frames are text, `'0' + channel` then base64.
pub const BASE64: &str = "base64.channel.k8s.io";
/// WebSocket only: v4 semantics with base64 frames.
pub const V4_BASE64: &str = "v4.base64.channel.k8s.io";

/// Versions offered over SPDY, most preferred first.
pub const SPDY_VERSIONS: [&str; 4] = [V4, V3, V2, V1];

// WebSocket channel numbers (kube-rs `remote_command.rs`, wsstream).
pub const STDIN_CHANNEL: u8 = 0;
pub const STDOUT_CHANNEL: u8 = 1;
pub const STDERR_CHANNEL: u8 = 2;
pub const ERROR_CHANNEL: u8 = 3;
pub const RESIZE_CHANNEL: u8 = 4;
/// v5: a message `[255, channel]` closes that channel (stdin).
pub const CLOSE_CHANNEL: u8 = 255;

// SPDY `streamType` header values (client-go `remotecommand/constants.go`).
pub const STREAM_TYPE_HEADER: &str = "streamtype";
pub const STREAM_ERROR: &str = "error";
pub const STREAM_STDIN: &str = "stdin";
pub const STREAM_STDOUT: &str = "stdout";
pub const STREAM_STDERR: &str = "stderr";
pub const STREAM_RESIZE: &str = "resize";

/// How long a SPDY client has to open the streams it promised (kubelet's
/// `streamCreationTimeout` default).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// True for versions whose error stream carries `Status` JSON.
pub fn wants_status_json(version: &str) -> bool {
    matches!(version, V4 | V5 | V4_BASE64)
}

/// A terminal size message (`remotecommand.TerminalSize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Longest partial size message kept between chunks; a client that sends
/// more without completing one loses it (a real one is ~30 bytes).
pub const MAX_PARTIAL_SIZE: usize = 4096;

/// Splits complete JSON size messages off `buf`, keeping a partial tail
/// (at most [`MAX_PARTIAL_SIZE`] bytes of it).
pub fn parse_sizes(buf: &mut Vec<u8>) -> Vec<TermSize> {
    let mut sizes = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<TermSize>();
    let mut used = 0;
    loop {
        match it.next() {
            Some(Ok(size)) => {
                sizes.push(size);
                used = it.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                used = buf.len();
                break;
            }
            None => {
                used = buf.len();
                break;
            }
        }
    }
    buf.drain(..used);
    if buf.len() > MAX_PARTIAL_SIZE {
        buf.clear();
    }
    sizes
}

/// The client's side of a session, whatever the transport.
#[derive(Debug)]
pub struct Io {
    /// Client stdin; ends when the client closes it.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    pub stderr: Option<mpsc::Sender<Bytes>>,
    pub resize: Option<mpsc::Receiver<TermSize>>,
    /// Cancelled when the client goes away.
    pub gone: CancellationToken,
}

/// How a session ended, for the error stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command exited with this non-zero code.
    Exit(i64),
    Failed(String),
}

impl Outcome {
    /// The v4 `Status` JSON (kubelet `remotecommand/httpstream.go`
    /// `v4WriteStatusFunc`; client-go reads `NonZeroExitCode`/`ExitCode`).
    pub fn status_json(&self) -> Vec<u8> {
        let value = match self {
            Outcome::Success => serde_json::json!({"metadata": {}, "status": "Success"}),
            Outcome::Exit(code) => serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Outcome::Failed(why) => serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": why,
                "reason": "InternalError",
                "code": 500,
            }),
        };
        value.to_string().into_bytes()
    }

    /// The plain-text error of versions before v4 (nothing on success).
    pub fn text(&self) -> Option<Vec<u8>> {
        match self {
            Outcome::Success => None,
            Outcome::Exit(code) => Some(
                format!("command terminated with non-zero exit code: exit status {code}")
                    .into_bytes(),
            ),
            Outcome::Failed(why) => Some(why.clone().into_bytes()),
        }
    }

    /// The error stream payload for `version`, if any.
    pub fn payload(&self, version: &str) -> Option<Vec<u8>> {
        if wants_status_json(version) {
            Some(self.status_json())
        } else {
            self.text()
        }
    }
}

/// Serves an exec or attach session (`run`) over SPDY: waits (bounded)
/// for the streams the request promised, runs, then writes the error
/// stream and closes the session.
pub async fn serve_spdy<F, Fut>(
    upgraded: hyper::upgrade::Upgraded,
    protocol: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    run: F,
) where
    F: FnOnce(Io) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    use super::spdy::{self, Session, SpdyStream};
    let (session, mut incoming) = Session::start(hyper_util::rt::TokioIo::new(upgraded), true);
    let resize_wanted = tty && !matches!(protocol, V1 | V2 | "");
    let mut streams: HashMap<String, SpdyStream> = HashMap::new();
    let mut extra = Vec::new();
    let wanted = |t: &str| match t {
        STREAM_ERROR => true,
        STREAM_STDIN => stdin,
        STREAM_STDOUT => stdout,
        STREAM_STDERR => stderr,
        STREAM_RESIZE => resize_wanted,
        _ => false,
    };
    let expected = 1 + [stdin, stdout, stderr, resize_wanted]
        .iter()
        .filter(|b| **b)
        .count();
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while streams.len() < expected {
        tokio::select! {
            s = incoming.recv() => match s {
                Some(s) => {
                    let kind = spdy::header(&s.headers, STREAM_TYPE_HEADER).unwrap_or_default().to_string();
                    if wanted(&kind) && !streams.contains_key(&kind) {
                        streams.insert(kind, s);
                    } else {
                        extra.push(s);
                    }
                }
                None => break,
            },
            () = &mut deadline => break,
        }
    }
    let Some(error) = streams.remove(STREAM_ERROR) else {
        debug!("spdy client sent no error stream; closing");
        session.shutdown().await;
        return;
    };
    let mut tasks = Vec::new();
    let mut output = |kind: &str| {
        let s = streams.remove(kind)?;
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        tasks.push(tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if !s.tx.send(&chunk).await {
                    return;
                }
            }
            s.tx.close().await;
        }));
        Some(tx)
    };
    let out = output(STREAM_STDOUT);
    let err = output(STREAM_STDERR);
    let resize = streams.remove(STREAM_RESIZE).map(|mut s| {
        let (tx, rx) = mpsc::channel::<TermSize>(4);
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(chunk) = s.rx.recv().await {
                buf.extend_from_slice(&chunk);
                for size in parse_sizes(&mut buf) {
                    let _ = tx.send(size).await;
                }
            }
        });
        rx
    });
    let io = Io {
        stdin: streams.remove(STREAM_STDIN).map(|s| s.rx),
        stdout: out,
        stderr: err,
        resize,
        gone: session.closed.clone(),
    };
    let outcome = run(io).await;
    for t in tasks {
        let _ = t.await;
    }
    if let Some(payload) = outcome.payload(protocol) {
        error.tx.send(&payload).await;
    }
    error.tx.close().await;
    drop(extra);
    session.shutdown().await;
}

/// Runs an interactive exec session.
pub async fn exec(ctx: &Backend, req: &ExecRequest, io: Io) -> Outcome {
    match exec_inner(ctx, req, io).await {
        Ok(0) => Outcome::Success,
        Ok(code) => Outcome::Exit(code),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

async fn exec_inner(ctx: &Backend, req: &ExecRequest, io: Io) -> Result<i64> {
    let id = &req.container_id;
    let docker = ctx.docker.get().await?;
    let options = CreateExecOptions {
        attach_stdin: Some(req.stdin),
        attach_stdout: Some(req.stdout),
        attach_stderr: Some(req.stderr),
        tty: Some(req.tty),
        cmd: Some(req.cmd.clone()),
        ..Default::default()
    };
    let exec_id = docker
        .create_exec(id, options)
        .await
        .map_err(|e| ctx.docker.classify(e, "container", id))?
        .id;
    let start = StartExecOptions {
        detach: false,
        tty: req.tty,
        output_capacity: None,
    };
    let started = docker
        .start_exec(&exec_id, Some(start))
        .await
        .map_err(|e| ctx.docker.classify(e, "exec", &exec_id))?;
    let StartExecResults::Attached { output, input } = started else {
        return Err(Error::Internal("docker started the exec detached".into()));
    };
    debug!(container = %id, exec = %exec_id, "exec session started");
    let resize_docker = docker.clone();
    let resize_id = exec_id.clone();
    let resize = move |size: TermSize| {
        let docker = resize_docker.clone();
        let id = resize_id.clone();
        async move {
            let options = bollard::exec::ResizeExecOptions {
                height: size.height,
                width: size.width,
            };
            if let Err(e) = docker.resize_exec(&id, options).await {
                debug!(exec = %id, error = %e, "resize failed");
            }
        }
    };
    pump(io, output, input, resize).await;
    ctx.docker.exec_exit_code(&exec_id).await
}

/// Runs an attach session; detaching (the client leaving) leaves the
/// container running.
pub async fn attach(ctx: &Backend, req: &AttachRequest, io: Io) -> Outcome {
    let id = req.container_id.clone();
    let docker = match ctx.docker.get().await {
        Ok(d) => d,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let options = AttachContainerOptions {
        stream: true,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
        logs: false,
        detach_keys: None,
    };
    let attached = match docker.attach_container(&id, Some(options)).await {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(ctx.docker.classify(e, "container", &id).to_string()),
    };
    let resize = move |size: TermSize| {
        let docker = docker.clone();
        let id = id.clone();
        async move {
            let options = ResizeContainerTTYOptions {
                h: i32::from(size.height),
                w: i32::from(size.width),
            };
            if let Err(e) = docker.resize_container_tty(&id, options).await {
                debug!(container = %id, error = %e, "resize failed");
            }
        }
    };
    pump(io, attached.output, attached.input, resize).await;
    Outcome::Success
}

/// Copies between the client and Docker until Docker's output ends or the
/// client goes away. Client stdin EOF half-closes Docker's stdin.
async fn pump<O, W, R, F>(io: Io, mut output: O, mut input: W, resize: R)
where
    O: Stream<Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>>
        + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
    R: Fn(TermSize) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    let Io {
        stdin,
        stdout,
        stderr,
        resize: sizes,
        gone,
    } = io;
    let stdin_task = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            while let Some(chunk) = stdin.recv().await {
                if input.write_all(&chunk).await.is_err() {
                    return;
                }
                let _ = input.flush().await;
            }
            let _ = input.shutdown().await;
        }
        // Without stdin the write half stays open until the session ends,
        // so that Docker does not take our silence for a detach.
        std::future::pending::<()>().await;
    });
    let resize_task = tokio::spawn(async move {
        if let Some(mut sizes) = sizes {
            while let Some(size) = sizes.recv().await {
                resize(size).await;
            }
        }
    });
    use bollard::container::LogOutput;
    loop {
        let item = tokio::select! {
            item = output.next() => item,
            () = gone.cancelled() => break,
        };
        let (sink, message) = match item {
            Some(Ok(LogOutput::StdOut { message })) | Some(Ok(LogOutput::Console { message })) => {
                (stdout.as_ref(), message)
            }
            Some(Ok(LogOutput::StdErr { message })) => {
                (stderr.as_ref().or(stdout.as_ref()), message)
            }
            Some(Ok(LogOutput::StdIn { .. })) => continue,
            Some(Err(e)) => {
                debug!(error = %e, "docker stream ended with an error");
                break;
            }
            None => break,
        };
        if let Some(sink) = sink {
            let _ = sink.send(message).await;
        }
    }
    stdin_task.abort();
    resize_task.abort();
    // Give an in-flight resize no chance to outlive the session.
    let _ = tokio::time::timeout(Duration::from_millis(1), resize_task).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_messages_parse_across_chunks() {
        let cases: [(&[u8], usize, usize); 4] = [
            (br#"{"Width":80,"Height":24}"#, 1, 0),
            (
                br#"{"Width":80,"Height":24}{"Width":100,"Height":50}"#,
                2,
                0,
            ),
            (br#"{"Width":80,"Height":24}{"Wid"#, 1, 5),
            (br#"not json"#, 0, 0),
        ];
        for (input, count, rest) in cases {
            let mut buf = input.to_vec();
            let sizes = parse_sizes(&mut buf);
            assert_eq!((sizes.len(), buf.len()), (count, rest), "{input:?}");
        }
        let mut buf = br#"{"Width":120,"Height":40}"#.to_vec();
        assert_eq!(
            parse_sizes(&mut buf),
            vec![TermSize {
                width: 120,
                height: 40
            }]
        );
    }

    #[test]
    fn error_stream_payload_follows_the_version() {
        let exit3 = Outcome::Exit(3);
        let status: serde_json::Value =
            serde_json::from_slice(&exit3.payload(V4).unwrap()).unwrap();
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        let ok: serde_json::Value =
            serde_json::from_slice(&Outcome::Success.payload(V5).unwrap()).unwrap();
        assert_eq!(ok["status"], "Success");
        assert_eq!(Outcome::Success.payload(V3), None);
        assert!(exit3.payload(V2).is_some());
    }
}
