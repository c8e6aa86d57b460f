//! Port forwarding into a pod's network namespace, over SPDY
//! (`portforward.k8s.io`: a data and an error stream per request id and
//! port), the same SPDY session tunnelled in WebSocket binary messages
//! (client-go's `SPDY/3.1+portforward.k8s.io`, kubectl's default since
//! 1.31), or WebSocket channels (`2i` data and `2i+1` error for the i-th
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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::Backend;
use super::remotecommand as rc;
use super::spdy::{self, Session, SpdyStream};
use super::websocket::{self, Ws};
use super::ws_bytes::WsBytes;

/// The SPDY sub-protocol (kubelet `portforward/httpstream.go`).
pub const PROTOCOL: &str = "portforward.k8s.io";
/// client-go's SPDY-over-WebSocket tunnel (apimachinery
/// `util/portforward/constants.go` `WebsocketsSPDYTunnelingPortForwardV1`):
/// the binary messages carry a whole SPDY/3.1 port-forward session.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// WebSocket sub-protocols: the tunnel, then kubelet's channel protocols
/// (`portforward/websocket.go`), binary first.
pub const WS_PROTOCOLS: [&str; 6] = [
    TUNNEL_PROTOCOL,
    rc::V4,
    PROTOCOL,
    rc::V1,
    rc::V4_BASE64,
    rc::BASE64,
];
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
async fn sandbox_pid(ctx: &Backend, sandbox_id: &str) -> Result<i32, String> {
    let pod = ctx
        .index
        .sandbox(&ctx.docker, sandbox_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("pod sandbox {sandbox_id} not found"))?;
    pod.pid()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| format!("pod sandbox {sandbox_id} is not running"))
}

/// Ports named in the URL query (`port=80&port=81` or `ports=80,81`), as
/// kubelet's `portforward.NewV4Options`: `None` when the query names none;
/// an empty, non-numeric, zero or out-of-range port refuses the request.
pub fn query_ports(query: &str) -> Result<Option<Vec<u16>>, String> {
    let mut ports = Vec::new();
    for kv in query.split('&') {
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if key != "port" && key != "ports" {
            continue;
        }
        let value = value.replace("%2C", ",").replace("%2c", ",");
        for p in value.split(',') {
            ports.push(parse_port(p)?);
        }
    }
    Ok((!ports.is_empty()).then_some(ports))
}

/// One port: 1 to 65535, digits only (no sign, no spaces).
fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() {
        return Err("query parameter \"port\" cannot be empty".into());
    }
    match p.parse::<u16>() {
        Ok(port) if port > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(format!("unable to parse {p:?} as a port (1-65535)")),
    }
}

/// Most ports one WebSocket port-forward session can number: each takes
/// two channels (data `2i`, error `2i+1`) and the framing numbers channels
/// up to [`websocket::max_channel`]: 127 in binary, 40 in base64.
pub fn max_ports(base64: bool) -> usize {
    let channels = usize::from(websocket::max_channel(base64)) + 1;
    channels / 2
}

/// The data and error channels of the `index`-th port; `None` past what
/// the framing can number (never wrapped).
pub fn channels(index: usize, base64: bool) -> Option<(u8, u8)> {
    let data = index.checked_mul(2)?;
    let error = data.checked_add(1)?;
    if error > usize::from(websocket::max_channel(base64)) {
        return None;
    }
    Some((u8::try_from(data).ok()?, u8::try_from(error).ok()?))
}

/// The ports of a WebSocket (channel protocol) port-forward session: from
/// the query, else from the CRI request; refused (HTTP 400, before the
/// upgrade) when none is named, one is invalid, or there are more than
/// `protocol` can number.
pub fn websocket_ports(query: &str, requested: &[i32], protocol: &str) -> Result<Vec<u16>, String> {
    let ports = match query_ports(query)? {
        Some(ports) => ports,
        None => requested
            .iter()
            .map(|p| {
                u16::try_from(*p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("port {p} is out of range (1-65535)"))
            })
            .collect::<Result<_, _>>()?,
    };
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let max = max_ports(websocket::is_base64(protocol));
    if ports.len() > max {
        return Err(format!(
            "too many ports: {} requested, port-forward over WebSocket ({}) \
             carries at most {max} (two channels per port)",
            ports.len(),
            if protocol.is_empty() {
                "binary"
            } else {
                protocol
            },
        ));
    }
    Ok(ports)
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
pub async fn serve_spdy(ctx: Arc<Backend>, upgraded: hyper::upgrade::Upgraded, sandbox_id: &str) {
    serve_spdy_on(ctx, hyper_util::rt::TokioIo::new(upgraded), sandbox_id).await
}

/// Serves client-go's SPDY-over-WebSocket tunnel ([`TUNNEL_PROTOCOL`]): the
/// same SPDY session as [`serve_spdy`], carried in binary messages.
pub async fn serve_tunnel(ctx: Arc<Backend>, ws: Ws, sandbox_id: &str) {
    serve_spdy_on(ctx, WsBytes::new(ws), sandbox_id).await
}

/// The SPDY port-forward session on any byte stream.
async fn serve_spdy_on<IO>(ctx: Arc<Backend>, io: IO, sandbox_id: &str)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (session, mut incoming) = Session::start(io, true);
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
    let port = spdy::header(&data.headers, PORT_HEADER).and_then(|p| parse_port(p).ok());
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
    ctx: Arc<Backend>,
    ws: Ws,
    protocol: &str,
    sandbox_id: &str,
    ports: Vec<u16>,
) {
    let base64 = websocket::is_base64(protocol);
    let (sink, mut stream) = ws.split();
    let writer = websocket::Writer::start(sink);
    let pid = sandbox_pid(&ctx, sandbox_id).await;
    let mut inputs = HashMap::new();
    let mut tasks = Vec::new();
    for (i, port) in ports.into_iter().enumerate() {
        // `websocket_ports` refused more ports than there are channels.
        let Some((data_ch, error_ch)) = channels(i, base64) else {
            break;
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
            ("port=1%2C2", Some(vec![1, 2])),
            ("other=1", None),
            ("", None),
        ];
        for (q, want) in cases {
            assert_eq!(query_ports(q), Ok(want), "{q}");
        }
        for bad in [
            "port=",
            "port",
            "port=0",
            "port=65536",
            "port=+80",
            "port=8%200",
            "port=a",
        ] {
            assert!(query_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channels_are_numbered_to_the_framings_limit() {
        assert_eq!(channels(0, false), Some((0, 1)));
        assert_eq!(channels(126, false), Some((252, 253)));
        assert_eq!(channels(127, false), None);
        assert_eq!(channels(39, true), Some((78, 79)));
        assert_eq!(channels(40, true), None);
        assert_eq!(channels(usize::MAX, false), None);
        assert_eq!((max_ports(false), max_ports(true)), (127, 40));
    }

    #[test]
    fn websocket_sessions_refuse_more_ports_than_channels() {
        let q = |n: usize| {
            (1..=n)
                .map(|p| format!("port={p}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert_eq!(
            websocket_ports(&q(127), &[], rc::V4).map(|p| p.len()),
            Ok(127)
        );
        let err = websocket_ports(&q(128), &[], rc::V4).unwrap_err();
        assert!(err.contains("128") && err.contains("at most 127"), "{err}");
        let err = websocket_ports(&q(41), &[], rc::BASE64).unwrap_err();
        assert!(err.contains("40"), "{err}");
        assert_eq!(websocket_ports("", &[80, 81], rc::V4), Ok(vec![80, 81]));
        assert!(websocket_ports("", &[70000], rc::V4).is_err());
        assert!(websocket_ports("", &[], rc::V4).is_err());
        let many: Vec<i32> = (1..=128).collect();
        assert!(websocket_ports("", &many, rc::V4).is_err());
    }
}
