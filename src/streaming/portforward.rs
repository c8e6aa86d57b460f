//! Port forwarding into a pod's network namespace, over SPDY
//! (`portforward.k8s.io`: a data and an error stream per request id and
//! port) or WebSocket (channels `2i` data and `2i+1` error for the i-th
//! port, each opened with the port as two little-endian bytes).
//!
//! Connections are made from Rust: a dedicated thread enters the sandbox's
//! network namespace with setns(2) (per-thread), connects, and hands the
//! socket back; no `socat` or `nsenter` is needed on the node.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::remotecommand as rc;
use super::spdy::{self, Session, SpdyStream};
use super::websocket::{self, Ws};
use crate::context::Context;

/// The SPDY sub-protocol (kubelet `portforward/httpstream.go`).
pub const PROTOCOL: &str = "portforward.k8s.io";
/// WebSocket sub-protocols (kubelet `portforward/websocket.go`), binary first.
pub const WS_PROTOCOLS: [&str; 5] = [rc::V4, PROTOCOL, rc::V1, rc::V4_BASE64, rc::BASE64];
// SPDY stream headers (k8s.io/api/core/v1 `PortHeader`, `PortForwardRequestIDHeader`,
// `StreamType`).
pub const PORT_HEADER: &str = "port";
pub const REQUEST_ID_HEADER: &str = "requestid";
pub const STREAM_TYPE_DATA: &str = "data";
pub const STREAM_TYPE_ERROR: &str = "error";
/// How long one connection attempt inside the pod may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `port` on the loopback of the network namespace of `pid`.
pub async fn dial(pid: i32, port: u16) -> io::Result<TcpStream> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("netns-dial".into())
        .spawn(move || {
            let _ = tx.send(dial_in_netns(pid, port));
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("netns dial thread died"))??;
    TcpStream::from_std(stream)
}

fn dial_in_netns(pid: i32, port: u16) -> io::Result<std::net::TcpStream> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    // This thread only: it exits right after connecting.
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = std::net::TcpStream::connect_timeout(&v4, DIAL_TIMEOUT).or_else(|e| {
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        std::net::TcpStream::connect_timeout(&v6, DIAL_TIMEOUT).map_err(|_| e)
    })?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// The pid whose network namespace is the sandbox's.
async fn sandbox_pid(ctx: &Context, sandbox_id: &str) -> Result<i32, String> {
    let pod = crate::runtime::sandbox::find(ctx, sandbox_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("pod sandbox {sandbox_id} not found"))?;
    pod.inspect
        .state
        .as_ref()
        .and_then(|s| s.pid)
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("pod sandbox {sandbox_id} is not running"))
}

/// Ports named in the URL query (`port=80&port=81` or `ports=80,81`).
pub fn query_ports(query: &str) -> Option<Vec<i32>> {
    let ports: Vec<i32> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "port" || *k == "ports")
        .flat_map(|(_, v)| v.split(','))
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    (!ports.is_empty()).then_some(ports)
}

/// Copies between a client stream pair and a TCP connection until the pod
/// closes its side (as containerd does); the client's FIN half-closes ours.
async fn splice(
    conn: TcpStream,
    mut from_client: mpsc::Receiver<Bytes>,
    to_client: impl AsyncSend,
) {
    let (mut rd, mut wr) = conn.into_split();
    let upstream = tokio::spawn(async move {
        while let Some(chunk) = from_client.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !to_client.send(&buf[..n]).await {
                    break;
                }
            }
        }
    }
    to_client.close().await;
    upstream.abort();
}

/// Where the pod's bytes go back to the client.
pub trait AsyncSend: Send {
    fn send(&self, data: &[u8]) -> impl std::future::Future<Output = bool> + Send;
    fn close(&self) -> impl std::future::Future<Output = ()> + Send;
}

impl AsyncSend for spdy::StreamTx {
    async fn send(&self, data: &[u8]) -> bool {
        spdy::StreamTx::send(self, data).await
    }
    async fn close(&self) {
        spdy::StreamTx::close(self).await
    }
}

/// Serves a SPDY port-forward session until the client leaves.
pub async fn serve_spdy(ctx: Arc<Context>, upgraded: hyper::upgrade::Upgraded, sandbox_id: &str) {
    let (session, mut incoming) = Session::start(hyper_util::rt::TokioIo::new(upgraded), true);
    let pid = sandbox_pid(&ctx, sandbox_id).await;
    let mut pairs: HashMap<String, (Option<SpdyStream>, Option<SpdyStream>)> = HashMap::new();
    while let Some(stream) = incoming.recv().await {
        let kind = spdy::header(&stream.headers, "streamtype").unwrap_or_default();
        let is_error = kind == STREAM_TYPE_ERROR;
        if !is_error && kind != STREAM_TYPE_DATA {
            stream.tx.reset().await;
            continue;
        }
        // Old clients send no request id: kubelet pairs data stream N+2
        // with error stream N.
        let request = match spdy::header(&stream.headers, REQUEST_ID_HEADER) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ if is_error => stream.id.to_string(),
            _ => stream.id.saturating_sub(2).to_string(),
        };
        let entry = pairs.entry(request.clone()).or_default();
        if is_error {
            entry.1 = Some(stream);
        } else {
            entry.0 = Some(stream);
        }
        if let Some((Some(data), Some(error))) = pairs.remove(&request).map(|p| match p {
            (Some(d), Some(e)) => (Some(d), Some(e)),
            other => {
                pairs.insert(request.clone(), other);
                (None, None)
            }
        }) {
            let pid = pid.clone();
            let sandbox = sandbox_id.to_string();
            tokio::spawn(async move { forward_pair(pid, &sandbox, data, error).await });
        }
    }
    session.shutdown().await;
}

async fn forward_pair(
    pid: Result<i32, String>,
    sandbox: &str,
    data: SpdyStream,
    error: SpdyStream,
) {
    let port: Option<u16> = spdy::header(&data.headers, PORT_HEADER).and_then(|p| p.parse().ok());
    let conn = match (pid, port) {
        (Err(why), _) => Err(why),
        (_, None) => Err("invalid or missing port header".to_string()),
        (Ok(pid), Some(port)) => dial(pid, port)
            .await
            .map_err(|e| format!("error forwarding port {port} to pod {sandbox}: {e}")),
    };
    match conn {
        Ok(conn) => {
            debug!(sandbox, port, "port-forward connection open");
            splice(conn, data.rx, data.tx).await;
        }
        Err(why) => {
            debug!(sandbox, error = %why, "port-forward failed");
            error.tx.send(why.as_bytes()).await;
            data.tx.close().await;
        }
    }
    error.tx.close().await;
}

/// Sends to one WebSocket channel.
struct WsChannel {
    tx: mpsc::Sender<tokio_tungstenite::tungstenite::Message>,
    base64: bool,
    channel: u8,
}

impl AsyncSend for WsChannel {
    async fn send(&self, data: &[u8]) -> bool {
        let msg = websocket::encode(self.base64, self.channel, data);
        self.tx.send(msg).await.is_ok()
    }
    async fn close(&self) {}
}

/// Serves a WebSocket port-forward session: one connection per port.
pub async fn serve_websocket(
    ctx: Arc<Context>,
    ws: Ws,
    protocol: &str,
    sandbox_id: &str,
    ports: Vec<i32>,
) {
    let base64 = websocket::is_base64(protocol);
    let (sink, mut stream) = ws.split();
    let writer = websocket::Writer::start(sink);
    let pid = sandbox_pid(&ctx, sandbox_id).await;
    let mut inputs = HashMap::new();
    let mut tasks = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data_ch, error_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        let Ok(port) = u16::try_from(*port) else {
            continue;
        };
        for ch in [data_ch, error_ch] {
            let _ = writer
                .tx
                .send(websocket::encode(base64, ch, &port.to_le_bytes()))
                .await;
        }
        let (in_tx, in_rx) = mpsc::channel::<Bytes>(16);
        inputs.insert(data_ch, in_tx);
        let data = WsChannel {
            tx: writer.tx.clone(),
            base64,
            channel: data_ch,
        };
        let error = WsChannel {
            tx: writer.tx.clone(),
            base64,
            channel: error_ch,
        };
        let pid = pid.clone();
        tasks.push(tokio::spawn(async move {
            let conn = match pid {
                Ok(pid) => dial(pid, port).await.map_err(|e| e.to_string()),
                Err(why) => Err(why),
            };
            match conn {
                Ok(conn) => splice(conn, in_rx, data).await,
                Err(why) => {
                    let msg = format!("error forwarding port {port}: {why}");
                    error.send(msg.as_bytes()).await;
                }
            }
        }));
    }
    while let Some(Ok(msg)) = stream.next().await {
        if msg.is_close() {
            break;
        }
        if let Some((ch, data)) = websocket::decode(base64, &msg)
            && let Some(tx) = inputs.get(&ch)
            && !data.is_empty()
        {
            let _ = tx.send(Bytes::from(data)).await;
        }
    }
    drop(inputs);
    for t in tasks {
        t.abort();
    }
    writer.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_query() {
        let cases = [
            ("port=80", Some(vec![80])),
            ("port=80&port=8080", Some(vec![80, 8080])),
            ("ports=1,2", Some(vec![1, 2])),
            ("other=1", None),
            ("", None),
        ];
        for (q, want) in cases {
            assert_eq!(query_ports(q), want, "{q}");
        }
    }
}
