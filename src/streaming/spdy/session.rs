//! A SPDY/3.1 session over one connection: streams multiplexed both
//! ways, each with its headers, the peer's data and a writer for ours.
//!
//! Flow control: spdystream never sends or honours WINDOW_UPDATE, so the
//! peer's windows are not enforced on send; we grant the peer more window
//! (per stream and per session) as we consume its data, as SPDY/3.1 asks.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::codec::*;

/// Window granted back once this much was consumed.
const WINDOW_STEP: u32 = 32 * 1024;

enum Out {
    Frame(Frame),
    Finish,
}

/// Writes frames to one stream of a session.
#[derive(Clone)]
pub struct StreamTx {
    pub id: u32,
    out: mpsc::Sender<Out>,
}

impl StreamTx {
    /// Sends `data` in frames of at most [`MAX_DATA`]; false once the
    /// session is gone.
    pub async fn send(&self, data: &[u8]) -> bool {
        for chunk in data.chunks(MAX_DATA) {
            let frame = Frame::Data {
                id: self.id,
                flags: 0,
                data: Bytes::copy_from_slice(chunk),
            };
            if self.out.send(Out::Frame(frame)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Ends our direction of the stream (empty data frame with FIN).
    pub async fn close(&self) {
        let frame = Frame::Data {
            id: self.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        };
        let _ = self.out.send(Out::Frame(frame)).await;
    }

    /// Cancels the stream.
    pub async fn reset(&self) {
        let frame = Frame::RstStream {
            id: self.id,
            status: CANCEL,
        };
        let _ = self.out.send(Out::Frame(frame)).await;
    }
}

/// One stream: its headers, the peer's data (ends at FIN or reset) and a
/// writer for ours.
pub struct SpdyStream {
    pub id: u32,
    pub headers: Headers,
    pub rx: mpsc::Receiver<Bytes>,
    pub tx: StreamTx,
}

type Routes = Arc<Mutex<HashMap<u32, mpsc::Sender<Bytes>>>>;

/// A SPDY session over one connection.
pub struct Session {
    out: mpsc::Sender<Out>,
    routes: Routes,
    next_id: AtomicU32,
    /// Cancelled when the peer's side of the connection ends.
    pub closed: CancellationToken,
    writer: JoinHandle<()>,
    reader: JoinHandle<()>,
}

impl Session {
    /// Starts a session on `io`. A server replies to each stream the peer
    /// opens and hands it over on the returned receiver.
    pub fn start<IO>(io: IO, server: bool) -> (Session, mpsc::Receiver<SpdyStream>)
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (out, out_rx) = mpsc::channel::<Out>(256);
        let routes: Routes = Arc::default();
        let closed = CancellationToken::new();
        let (streams_tx, streams_rx) = mpsc::channel(32);
        let writer = tokio::spawn(write_loop(write, out_rx));
        let reader = tokio::spawn(read_loop(
            read,
            server,
            out.clone(),
            routes.clone(),
            streams_tx,
            closed.clone(),
        ));
        let session = Session {
            out,
            routes,
            next_id: AtomicU32::new(if server { 2 } else { 1 }),
            closed,
            writer,
            reader,
        };
        (session, streams_rx)
    }

    /// Opens a stream with `headers` (clients open the streams in k8s).
    pub async fn open(&self, headers: Headers) -> io::Result<SpdyStream> {
        let id = self.next_id.fetch_add(2, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(id, tx);
        }
        let frame = Frame::SynStream {
            id,
            assoc: 0,
            priority: 0,
            flags: 0,
            headers: headers.clone(),
        };
        self.out
            .send(Out::Frame(frame))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(SpdyStream {
            id,
            headers,
            rx,
            tx: StreamTx {
                id,
                out: self.out.clone(),
            },
        })
    }

    /// Flushes what was queued, says GOAWAY and closes the connection.
    pub async fn shutdown(self) {
        let frame = Frame::GoAway {
            last_good: 0,
            status: 0,
        };
        let _ = self.out.send(Out::Frame(frame)).await;
        let _ = self.out.send(Out::Finish).await;
        let _ = self.writer.await;
        self.reader.abort();
    }
}

async fn write_loop<W: AsyncWrite>(write: W, mut rx: mpsc::Receiver<Out>) {
    tokio::pin!(write);
    let mut enc = Encoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'outer: while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Out::Frame(frame) => {
                    if enc.encode(&frame, &mut buf).is_err() {
                        break 'outer;
                    }
                }
                Out::Finish => {
                    let _ = write.write_all(&buf).await;
                    break 'outer;
                }
            }
            if buf.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if write.write_all(&buf).await.is_err() || write.flush().await.is_err() {
            break;
        }
        buf.clear();
    }
    let _ = write.flush().await;
    let _ = write.shutdown().await;
}

async fn read_loop<R: AsyncRead>(
    read: R,
    server: bool,
    out: mpsc::Sender<Out>,
    routes: Routes,
    streams: mpsc::Sender<SpdyStream>,
    closed: CancellationToken,
) {
    tokio::pin!(read);
    let mut dec = Decoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut consumed: HashMap<u32, u32> = HashMap::new();
    let mut session_consumed = 0u32;
    let route = |id: u32| routes.lock().ok().and_then(|r| r.get(&id).cloned());
    let unroute = |id: u32| {
        if let Ok(mut r) = routes.lock() {
            r.remove(&id);
        }
    };
    'read: loop {
        loop {
            let frame = match dec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "spdy: bad frame; closing");
                    break 'read;
                }
            };
            match frame {
                Frame::SynStream {
                    id, headers, flags, ..
                } => {
                    let (tx, rx) = mpsc::channel(64);
                    if flags & FLAG_FIN == 0
                        && let Ok(mut r) = routes.lock()
                    {
                        r.insert(id, tx);
                    }
                    if server {
                        let reply = Frame::SynReply {
                            id,
                            flags: 0,
                            headers: Vec::new(),
                        };
                        let _ = out.send(Out::Frame(reply)).await;
                    }
                    let stream = SpdyStream {
                        id,
                        headers,
                        rx,
                        tx: StreamTx {
                            id,
                            out: out.clone(),
                        },
                    };
                    let _ = streams.send(stream).await;
                }
                Frame::Data { id, flags, data } => {
                    // At most 2^24 - 1: the frame's length field.
                    let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
                    if !data.is_empty()
                        && let Some(tx) = route(id)
                    {
                        let _ = tx.send(data).await;
                    }
                    if flags & FLAG_FIN != 0 {
                        unroute(id);
                    }
                    // Grant the window back as we consume.
                    let c = consumed.entry(id).or_default();
                    *c = c.saturating_add(n);
                    session_consumed = session_consumed.saturating_add(n);
                    let mut grants = Vec::new();
                    if *c >= WINDOW_STEP && flags & FLAG_FIN == 0 {
                        grants.push(Frame::WindowUpdate { id, delta: *c });
                        *c = 0;
                    }
                    if flags & FLAG_FIN != 0 {
                        consumed.remove(&id);
                    }
                    if session_consumed >= WINDOW_STEP {
                        grants.push(Frame::WindowUpdate {
                            id: 0,
                            delta: session_consumed,
                        });
                        session_consumed = 0;
                    }
                    for g in grants {
                        let _ = out.send(Out::Frame(g)).await;
                    }
                }
                Frame::SynReply { id, flags, .. } | Frame::Headers { id, flags, .. } => {
                    if flags & FLAG_FIN != 0 {
                        unroute(id);
                    }
                }
                Frame::RstStream { id, .. } => unroute(id),
                Frame::Ping { id } => {
                    // Echo the peer's pings (theirs have the other parity).
                    if (id % 2 == 1) == server {
                        let _ = out.send(Out::Frame(Frame::Ping { id })).await;
                    }
                }
                Frame::GoAway { .. } => break 'read,
                Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if let Ok(mut r) = routes.lock() {
        r.clear();
    }
    closed.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::spdy::codec::tests::h;

    #[tokio::test]
    async fn a_session_carries_streams_both_ways() {
        let (a, b) = tokio::io::duplex(1024);
        let (client, _none) = Session::start(a, false);
        let (server, mut incoming) = Session::start(b, true);
        let mut s = client.open(h(&[("streamtype", "stdin")])).await.unwrap();
        s.tx.send(b"ping").await;
        s.tx.close().await;
        let mut theirs = incoming.recv().await.unwrap();
        assert_eq!(header(&theirs.headers, "streamtype"), Some("stdin"));
        assert_eq!(theirs.rx.recv().await.unwrap(), Bytes::from_static(b"ping"));
        assert!(theirs.rx.recv().await.is_none(), "FIN ends the stream");
        theirs.tx.send(b"pong").await;
        theirs.tx.close().await;
        assert_eq!(s.rx.recv().await.unwrap(), Bytes::from_static(b"pong"));
        assert!(s.rx.recv().await.is_none());
        server.shutdown().await;
        client.closed.cancelled().await;
    }
}
