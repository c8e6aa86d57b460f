//! SPDY/3.1 as Kubernetes uses it (moby/spdystream under apimachinery's
//! `httpstream/spdy`): the frame codec, zlib-compressed header blocks with
//! the SPDY/3 dictionary (one context per direction per session, sync
//! flush), and a session that multiplexes streams over one connection.
//!
//! Flow control: spdystream never sends or honours WINDOW_UPDATE, so the
//! peer's windows are not enforced on send; we grant the peer more window
//! (per stream and per session) as we consume its data, as SPDY/3.1 asks.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Protocol version in control frames.
pub const VERSION: u16 = 3;
// Control frame types (SPDY/3 §2.6).
pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const SETTINGS: u16 = 4;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;
pub const WINDOW_UPDATE: u16 = 9;
/// Last frame of a stream in this direction.
pub const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status: stream cancelled.
pub const CANCEL: u32 = 5;
/// Largest data frame we send (the wire allows 2^24 - 1).
pub const MAX_DATA: usize = 32 * 1024;
/// Largest header block we inflate.
const MAX_HEADER_BLOCK: usize = 1024 * 1024;
/// Window granted back once this much was consumed.
const WINDOW_STEP: u32 = 32 * 1024;

/// Header pairs with lowercase names, as on the wire.
pub type Headers = Vec<(String, String)>;

/// One SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        id: u32,
        assoc: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        id: u32,
        delta: u32,
    },
    Data {
        id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame type we do not know; skipped.
    Unknown {
        kind: u16,
    },
}

/// The SPDY/3 header compression dictionary (SPDY/3 §2.6.10.1).
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: [&str; 65] = [
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
            "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
            "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
            "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct ",
            "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
            "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
            "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8",
            "charset=iso-8859-1,utf-,*,enq=0."
        );
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

/// The uncompressed header block: count, then length-prefixed names and
/// values; repeated names are joined with NUL as SPDY/3 requires.
pub fn encode_header_block(headers: &[(String, String)]) -> Vec<u8> {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => merged.push((name, value.clone())),
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(merged.len() as u32).to_be_bytes());
    for (name, value) in &merged {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Parses an uncompressed header block (NUL-joined values are split).
pub fn decode_header_block(mut block: &[u8]) -> io::Result<Headers> {
    fn take<'a>(b: &mut &'a [u8]) -> io::Result<&'a [u8]> {
        if b.len() < 4 {
            return Err(bad("short header block"));
        }
        let (len, rest) = b.split_at(4);
        let n = usize::try_from(u32::from_be_bytes([len[0], len[1], len[2], len[3]]))
            .map_err(|_| bad("header block too large"))?;
        if rest.len() < n {
            return Err(bad("short header block"));
        }
        let (item, rest) = rest.split_at(n);
        *b = rest;
        Ok(item)
    }
    if block.len() < 4 {
        return Err(bad("short header block"));
    }
    let count = block.get_u32() as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = String::from_utf8_lossy(take(&mut block)?).to_ascii_lowercase();
        let value = String::from_utf8_lossy(take(&mut block)?).into_owned();
        for v in value.split('\0') {
            headers.push((name.clone(), v.to_string()));
        }
    }
    Ok(headers)
}

/// A frame body's length as the 24-bit length field.
fn frame_len(len: usize) -> io::Result<u32> {
    u32::try_from(len)
        .ok()
        .filter(|n| *n <= 0xff_ffff)
        .ok_or_else(|| bad("frame too large"))
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("spdy: {why}"))
}

/// Encodes frames; owns this direction's header compressor.
pub struct Encoder {
    z: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        // Cannot fail before the first compress call.
        let _ = z.set_dictionary(dictionary());
        Encoder { z }
    }

    fn deflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut pos = 0;
        loop {
            let before = self.z.total_in();
            self.z
                .compress_vec(&input[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| bad(&e.to_string()))?;
            pos += (self.z.total_in() - before) as usize;
            if pos >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(256);
        }
    }

    /// Appends `frame` to `dst`; a frame longer than the 24-bit length
    /// field can say is refused (never truncated into another frame).
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> io::Result<()> {
        let mut control = |kind: u16, flags: u8, body: &[u8]| -> io::Result<()> {
            let len = frame_len(body.len())?;
            dst.put_u16(0x8000 | VERSION);
            dst.put_u16(kind);
            dst.put_u32((u32::from(flags) << 24) | len);
            dst.put_slice(body);
            Ok(())
        };
        match frame {
            Frame::SynStream {
                id,
                assoc,
                priority,
                flags,
                headers,
            } => {
                let mut body = Vec::new();
                body.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
                body.extend_from_slice(&(assoc & 0x7fff_ffff).to_be_bytes());
                body.push((priority & 0x7) << 5);
                body.push(0);
                body.extend(self.deflate(&encode_header_block(headers))?);
                control(SYN_STREAM, *flags, &body)?;
            }
            Frame::SynReply { id, flags, headers } | Frame::Headers { id, flags, headers } => {
                let kind = if matches!(frame, Frame::SynReply { .. }) {
                    SYN_REPLY
                } else {
                    HEADERS
                };
                let mut body = (id & 0x7fff_ffff).to_be_bytes().to_vec();
                body.extend(self.deflate(&encode_header_block(headers))?);
                control(kind, *flags, &body)?;
            }
            Frame::RstStream { id, status } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(RST_STREAM, 0, &body)?;
            }
            Frame::Settings { flags, entries } => {
                let count = u32::try_from(entries.len()).map_err(|_| bad("too many settings"))?;
                let mut body = count.to_be_bytes().to_vec();
                for (f, id, value) in entries {
                    body.extend_from_slice(
                        &((u32::from(*f) << 24) | (id & 0xff_ffff)).to_be_bytes(),
                    );
                    body.extend_from_slice(&value.to_be_bytes());
                }
                control(SETTINGS, *flags, &body)?;
            }
            Frame::Ping { id } => control(PING, 0, &id.to_be_bytes())?,
            Frame::GoAway { last_good, status } => {
                let mut body = last_good.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(GOAWAY, 0, &body)?;
            }
            Frame::WindowUpdate { id, delta } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend_from_slice(&delta.to_be_bytes());
                control(WINDOW_UPDATE, 0, &body)?;
            }
            Frame::Data { id, flags, data } => {
                let len = frame_len(data.len())?;
                dst.put_u32(id & 0x7fff_ffff);
                dst.put_u32((u32::from(*flags) << 24) | len);
                dst.put_slice(data);
            }
            Frame::Unknown { kind } => control(*kind, 0, &[])?,
        }
        Ok(())
    }
}

/// Decodes frames; owns this direction's header decompressor.
pub struct Decoder {
    z: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            z: Decompress::new(true),
        }
    }

    fn inflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(MAX_HEADER_BLOCK) + 64);
        let mut pos = 0;
        for _ in 0..10_000 {
            let before = self.z.total_in();
            match self
                .z
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(dictionary())
                        .map_err(|e| bad(&e.to_string()))?;
                }
                Err(e) => return Err(bad(&e.to_string())),
            }
            pos += (self.z.total_in() - before) as usize;
            if pos >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(bad("header block too large"));
            }
            out.reserve(1024);
        }
        Err(bad("header block does not inflate"))
    }

    /// Takes one whole frame off `src`, or `None` if more bytes are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Frame>> {
        if src.len() < 8 {
            return Ok(None);
        }
        let len = (u32::from_be_bytes([0, src[5], src[6], src[7]])) as usize;
        if src.len() < 8 + len {
            src.reserve(8 + len - src.len());
            return Ok(None);
        }
        let head = src.split_to(8);
        let mut body = src.split_to(len).freeze();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                id,
                flags,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(bad(&format!("unsupported version {version}")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let need = |body: &Bytes, n: usize| {
            if body.len() < n {
                Err(bad("short control frame"))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            SYN_STREAM => {
                need(&body, 10)?;
                let id = body.get_u32() & 0x7fff_ffff;
                let assoc = body.get_u32() & 0x7fff_ffff;
                let priority = body.get_u8() >> 5;
                body.advance(1);
                let headers = decode_header_block(&self.inflate(&body)?)?;
                Frame::SynStream {
                    id,
                    assoc,
                    priority,
                    flags,
                    headers,
                }
            }
            SYN_REPLY | HEADERS => {
                need(&body, 4)?;
                let id = body.get_u32() & 0x7fff_ffff;
                let headers = decode_header_block(&self.inflate(&body)?)?;
                if kind == SYN_REPLY {
                    Frame::SynReply { id, flags, headers }
                } else {
                    Frame::Headers { id, flags, headers }
                }
            }
            RST_STREAM => {
                need(&body, 8)?;
                Frame::RstStream {
                    id: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            SETTINGS => {
                need(&body, 4)?;
                let n = body.get_u32() as usize;
                need(&body, n.saturating_mul(8))?;
                let entries = (0..n)
                    .map(|_| {
                        let head = body.get_u32();
                        ((head >> 24) as u8, head & 0xff_ffff, body.get_u32())
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need(&body, 4)?;
                Frame::Ping { id: body.get_u32() }
            }
            GOAWAY => {
                need(&body, 8)?;
                Frame::GoAway {
                    last_good: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            WINDOW_UPDATE => {
                need(&body, 8)?;
                Frame::WindowUpdate {
                    id: body.get_u32() & 0x7fff_ffff,
                    delta: body.get_u32() & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown { kind },
        };
        Ok(Some(frame))
    }
}

/// The value of header `name` (lowercase) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

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

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert!(d.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(d.ends_with(b"utf-,*,enq=0."));
    }

    #[test]
    fn frames_round_trip_through_one_session_context() {
        let frames = vec![
            Frame::SynStream {
                id: 1,
                assoc: 0,
                priority: 3,
                flags: 0,
                headers: h(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                id: 3,
                assoc: 0,
                priority: 0,
                flags: FLAG_FIN,
                headers: h(&[("streamtype", "stdout"), ("port", "80"), ("port", "81")]),
            },
            Frame::SynReply {
                id: 1,
                flags: 0,
                headers: Vec::new(),
            },
            Frame::Headers {
                id: 1,
                flags: FLAG_FIN,
                headers: h(&[("a", "b")]),
            },
            Frame::RstStream {
                id: 5,
                status: CANCEL,
            },
            Frame::Settings {
                flags: 1,
                entries: vec![(0, 7, 65536)],
            },
            Frame::Ping { id: 2 },
            Frame::GoAway {
                last_good: 9,
                status: 0,
            },
            Frame::WindowUpdate { id: 1, delta: 4096 },
            Frame::Data {
                id: 1,
                flags: 0,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                id: 3,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
        ];
        let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
        let mut wire = BytesMut::new();
        for f in &frames {
            enc.encode(f, &mut wire).unwrap();
        }
        // Feed the wire a few bytes at a time, as a socket would.
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(7) {
            src.extend_from_slice(chunk);
            while let Some(f) = dec.decode(&mut src).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn header_blocks_are_laid_out_as_spdy3() {
        let block = encode_header_block(&h(&[("StreamType", "error"), ("port", "1")]));
        let want: &[u8] = b"\0\0\0\x02\0\0\0\x0astreamtype\0\0\0\x05error\0\0\0\x04port\0\0\0\x011";
        assert_eq!(block, want);
        assert_eq!(
            decode_header_block(want).unwrap(),
            h(&[("streamtype", "error"), ("port", "1")])
        );
        let cases: [&[u8]; 3] = [b"", b"\0\0\0\x01\0\0\0\x09ab", b"\0\0\0\x01\0\0\0\x01a"];
        for bad in cases {
            assert!(decode_header_block(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn control_frames_with_another_version_are_refused() {
        let mut src = BytesMut::from(&b"\x80\x02\0\x06\0\0\0\x04\0\0\0\x01"[..]);
        assert!(Decoder::new().decode(&mut src).is_err());
    }

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
