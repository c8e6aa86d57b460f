//! Lets clients that name the socket's path as HTTP/2 `:authority` in.
//!
//! grpc-go before 1.51 (kubelet and crictl before Kubernetes 1.26, and
//! critest of that time), grpc-java and the gRPC core libraries send the
//! unix socket's path (`/run/dockercri.sock`, or its %-encoding) as the
//! request's `:authority`. h2, under tonic, refuses such a request with
//! `PROTOCOL_ERROR` before any handler sees it (hyperium/h2#487), so every
//! call of those clients failed.
//!
//! [`AuthorityFix`] sits between the accepted socket and h2. It reads the
//! client's first request header block: when h2 would accept its authority
//! (every current client), the connection passes through untouched from
//! then on. When h2 would refuse it, every request header block of that
//! connection is decoded (the client's HPACK state is followed) and encoded
//! again with `:authority: localhost`, what current clients send, by an
//! encoder whose table stays in step with h2's decoder.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tracing::debug;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// h2's SETTINGS_MAX_FRAME_SIZE (tonic keeps the default): the largest
/// frame we write.
const MAX_FRAME: usize = 16_384;
/// h2's SETTINGS_HEADER_TABLE_SIZE (the default): the largest table a
/// client may use, and the size of h2's decoder table our encoder mirrors.
const HEADER_TABLE: usize = 4_096;
/// Frames and header blocks larger than this are h2's to refuse.
const MAX_BLOCK: usize = 1 << 20;
const AUTHORITY: &[u8] = b":authority";
const LOCALHOST: &[u8] = b"localhost";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Before the client's connection preface.
    Preface,
    /// Until the first request header block.
    Inspect,
    /// The client names its authority in a way h2 refuses.
    Rewrite,
    /// Everything goes to h2 as it came.
    Pass,
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct Block {
    stream: [u8; 4],
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as received, for h2 when the block is not rewritten.
    original: Vec<u8>,
}

/// The client-to-server byte stream's rewriting, without any I/O.
pub struct Rewriter {
    mode: Mode,
    pending: BytesMut,
    block: Option<Block>,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

impl Default for Rewriter {
    fn default() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE);
        Rewriter {
            mode: Mode::Preface,
            pending: BytesMut::new(),
            block: None,
            decoder,
            encoder: Encoder::new(),
        }
    }
}

impl Rewriter {
    /// True once bytes go through untouched and none wait here.
    pub fn passing(&self) -> bool {
        self.mode == Mode::Pass && self.pending.is_empty()
    }

    /// Takes bytes from the client; appends what h2 may read to `out`.
    /// A partial frame waits for the rest.
    pub fn push(&mut self, input: &[u8], out: &mut BytesMut) {
        if self.passing() {
            out.extend_from_slice(input);
            return;
        }
        self.pending.extend_from_slice(input);
        loop {
            match self.mode {
                Mode::Pass => {
                    out.extend_from_slice(&self.pending.split());
                    return;
                }
                Mode::Preface => {
                    let n = self.pending.len().min(PREFACE.len());
                    if self.pending[..n] != PREFACE[..n] {
                        // Not HTTP/2 with prior knowledge: h2 answers it.
                        self.mode = Mode::Pass;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return;
                    }
                    out.extend_from_slice(&self.pending.split_to(PREFACE.len()));
                    self.mode = Mode::Inspect;
                }
                Mode::Inspect | Mode::Rewrite => {
                    if self.pending.len() < FRAME_HEADER {
                        return;
                    }
                    let len =
                        u32::from_be_bytes([0, self.pending[0], self.pending[1], self.pending[2]])
                            as usize;
                    if len > MAX_BLOCK {
                        self.give_up(out);
                        continue;
                    }
                    if self.pending.len() < FRAME_HEADER + len {
                        return;
                    }
                    let frame = self.pending.split_to(FRAME_HEADER + len);
                    self.frame(&frame, out);
                }
            }
        }
    }

    /// The client closed its side: whatever waits goes to h2 as it is.
    pub fn finish(&mut self, out: &mut BytesMut) {
        self.give_up(out);
        out.extend_from_slice(&self.pending.split());
    }

    /// Hands everything held back to h2 unchanged and stops looking.
    fn give_up(&mut self, out: &mut BytesMut) {
        let held = self.block.take().map(|b| b.original).unwrap_or_default();
        self.hand_over(out, &held);
    }

    /// Gives `bytes` to h2 as they came; from now on everything passes.
    fn hand_over(&mut self, out: &mut BytesMut, bytes: &[u8]) {
        out.extend_from_slice(bytes);
        self.mode = Mode::Pass;
    }

    fn frame(&mut self, frame: &[u8], out: &mut BytesMut) {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = [frame[5], frame[6], frame[7], frame[8]];
        let payload = &frame[FRAME_HEADER..];
        match (kind, self.block.take()) {
            (HEADERS, None) => {
                let Some((priority, fragment)) = headers_fragment(flags, payload) else {
                    self.hand_over(out, frame);
                    return;
                };
                let block = Block {
                    stream,
                    flags,
                    priority,
                    fragment: fragment.to_vec(),
                    original: frame.to_vec(),
                };
                self.collect(block, flags, out);
            }
            (CONTINUATION, Some(mut block)) if block.stream == stream => {
                block.fragment.extend_from_slice(payload);
                block.original.extend_from_slice(frame);
                if block.original.len() > MAX_BLOCK {
                    self.hand_over(out, &block.original);
                    return;
                }
                self.collect(block, flags, out);
            }
            (_, Some(block)) => {
                // Not the CONTINUATION h2 waits for: its error to raise.
                out.extend_from_slice(&block.original);
                self.hand_over(out, frame);
            }
            (_, None) => out.extend_from_slice(frame),
        }
    }

    fn collect(&mut self, block: Block, flags: u8, out: &mut BytesMut) {
        if flags & END_HEADERS == 0 {
            self.block = Some(block);
        } else {
            self.complete(block, out);
        }
    }

    fn complete(&mut self, block: Block, out: &mut BytesMut) {
        let Ok(headers) = self.decoder.decode(&block.fragment) else {
            // h2 fails the connection with a COMPRESSION_ERROR.
            self.hand_over(out, &block.original);
            return;
        };
        if self.mode == Mode::Inspect {
            let refused = headers
                .iter()
                .find(|(name, _)| name == AUTHORITY)
                .map(|(_, value)| value)
                .filter(|value| http::uri::Authority::try_from(&value[..]).is_err());
            let Some(authority) = refused else {
                self.hand_over(out, &block.original);
                return;
            };
            debug!(
                authority = %String::from_utf8_lossy(authority),
                "client names a socket path as :authority; its requests get localhost"
            );
            self.mode = Mode::Rewrite;
        }
        let encoded = self.encoder.encode(headers.iter().map(|(name, value)| {
            if name == AUTHORITY {
                (AUTHORITY, LOCALHOST)
            } else {
                (&name[..], &value[..])
            }
        }));
        write_headers(out, &block, &encoded);
    }
}

/// A HEADERS payload without its padding: (priority fields, fragment).
fn headers_fragment(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let padding = if flags & PADDED != 0 {
        let (&n, after) = rest.split_first()?;
        rest = after;
        usize::from(n)
    } else {
        0
    };
    let priority = if flags & PRIORITY != 0 {
        let (fields, after) = rest.split_at_checked(5)?;
        rest = after;
        Some(fields.try_into().ok()?)
    } else {
        None
    };
    let end = rest.len().checked_sub(padding)?;
    Some((priority, &rest[..end]))
}

fn frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: [u8; 4]) {
    let len = (len as u32).to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&stream);
}

/// The block as one HEADERS frame and as many CONTINUATIONs as it needs.
fn write_headers(out: &mut BytesMut, block: &Block, encoded: &[u8]) {
    let priority_len = block.priority.map_or(0, |p| p.len());
    let (first, mut rest) = encoded.split_at(encoded.len().min(MAX_FRAME - priority_len));
    let mut flags = block.flags & END_STREAM;
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    frame_header(
        out,
        priority_len + first.len(),
        HEADERS,
        flags,
        block.stream,
    );
    if let Some(p) = block.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME));
        rest = after;
        let flags = if rest.is_empty() { END_HEADERS } else { 0 };
        frame_header(out, chunk.len(), CONTINUATION, flags, block.stream);
        out.extend_from_slice(chunk);
    }
}

/// An accepted connection as h2 reads it: see the module documentation.
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    ready: BytesMut,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            rewriter: Rewriter::default(),
            ready: BytesMut::new(),
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.rewriter.passing() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                this.rewriter.finish(&mut this.ready);
            } else {
                this.rewriter.push(read.filled(), &mut this.ready);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM_1: [u8; 4] = [0, 0, 0, 1];
    const STREAM_3: [u8; 4] = [0, 0, 0, 3];

    type Headers = Vec<(Vec<u8>, Vec<u8>)>;

    fn request(authority: &str) -> Headers {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/runtime.v1.RuntimeService/Version"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    /// A client's bytes: the preface, SETTINGS, then each request's HEADERS
    /// (encoded by one encoder, so later blocks lean on its table) and a
    /// DATA frame.
    fn client_bytes(requests: &[Headers], flags: u8) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.extend_from_slice(PREFACE);
        frame_header(&mut out, 0, 0x4, 0, [0; 4]);
        let mut encoder = Encoder::new();
        for (n, headers) in requests.iter().enumerate() {
            let stream = (2 * n as u32 + 1).to_be_bytes();
            let block = encoder.encode(headers.iter().map(|(k, v)| (&k[..], &v[..])));
            let mut payload = Vec::new();
            if flags & PADDED != 0 {
                payload.push(3);
            }
            if flags & PRIORITY != 0 {
                payload.extend_from_slice(&[0, 0, 0, 0, 15]);
            }
            payload.extend_from_slice(&block);
            if flags & PADDED != 0 {
                payload.extend_from_slice(&[0, 0, 0]);
            }
            frame_header(
                &mut out,
                payload.len(),
                HEADERS,
                flags | END_HEADERS,
                stream,
            );
            out.extend_from_slice(&payload);
            frame_header(&mut out, 5, 0x0, END_STREAM, stream);
            out.extend_from_slice(&[0, 0, 0, 0, 0]);
        }
        out.to_vec()
    }

    /// What h2 would read: each header block decoded by one decoder.
    fn h2_sees(bytes: &[u8]) -> Vec<([u8; 4], Headers)> {
        assert!(bytes.starts_with(PREFACE));
        let mut rest = &bytes[PREFACE.len()..];
        let mut decoder = Decoder::new();
        let mut blocks = Vec::new();
        let mut fragment = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            let stream = [rest[5], rest[6], rest[7], rest[8]];
            let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
            rest = &rest[FRAME_HEADER + len..];
            match kind {
                HEADERS => {
                    let (_, f) = headers_fragment(flags, payload).unwrap();
                    fragment = f.to_vec();
                }
                CONTINUATION => fragment.extend_from_slice(payload),
                _ => continue,
            }
            if flags & END_HEADERS != 0 {
                blocks.push((stream, decoder.decode(&fragment).unwrap()));
            }
        }
        blocks
    }

    fn through(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut rewriter = Rewriter::default();
        let mut out = BytesMut::new();
        for piece in input.chunks(chunk) {
            rewriter.push(piece, &mut out);
        }
        rewriter.finish(&mut out);
        out.to_vec()
    }

    #[test]
    fn a_valid_authority_passes_byte_for_byte() {
        for authority in ["localhost", "dockercri.sock", "127.0.0.1:10010"] {
            let input = client_bytes(&[request(authority), request(authority)], 0);
            for chunk in [1, 7, input.len()] {
                assert_eq!(through(&input, chunk), input, "{authority} in {chunk}s");
            }
        }
    }

    #[test]
    fn a_socket_path_becomes_localhost_in_every_request() {
        for authority in ["/run/dockercri.sock", "%2Frun%2Fdockercri.sock", ""] {
            for flags in [0, PADDED, PRIORITY, PADDED | PRIORITY] {
                let requests = [request(authority), request(authority), request(authority)];
                let input = client_bytes(&requests, flags);
                for chunk in [1, 5, 64, input.len()] {
                    let seen = h2_sees(&through(&input, chunk));
                    assert_eq!(seen.len(), 3, "{authority:?} flags {flags:#x}");
                    for (n, (stream, headers)) in seen.iter().enumerate() {
                        assert_eq!(stream, &(2 * n as u32 + 1).to_be_bytes());
                        assert_eq!(headers, &request("localhost"), "{authority:?} request {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_large_rewritten_block_is_split_into_continuations() {
        let mut big = request("/run/dockercri.sock");
        for n in 0..40 {
            big.push((format!("x-meta-{n}").into_bytes(), vec![b'v'; 900]));
        }
        let input = client_bytes(&[big.clone()], 0);
        let output = through(&input, 4096);
        let continuations = output
            .windows(4)
            .filter(|w| w[0] == CONTINUATION && w[1] & !END_HEADERS == 0)
            .count();
        assert!(continuations >= 1);
        let seen = h2_sees(&output);
        let mut want = big;
        want[3].1 = LOCALHOST.to_vec();
        assert_eq!(seen, [(STREAM_1, want)]);
    }

    #[test]
    fn continuation_frames_from_the_client_are_joined() {
        let mut encoder = Encoder::new();
        let headers = request("/run/x.sock");
        let block = encoder.encode(headers.iter().map(|(k, v)| (&k[..], &v[..])));
        let (a, b) = block.split_at(block.len() / 2);
        let mut input = BytesMut::new();
        input.extend_from_slice(PREFACE);
        frame_header(&mut input, a.len(), HEADERS, END_STREAM, STREAM_3);
        input.extend_from_slice(a);
        frame_header(&mut input, b.len(), CONTINUATION, END_HEADERS, STREAM_3);
        input.extend_from_slice(b);
        let output = through(&input, 3);
        assert_eq!(h2_sees(&output), [(STREAM_3, request("localhost"))]);
        // END_STREAM stays on the HEADERS frame.
        assert_eq!(output[PREFACE.len() + 4] & END_STREAM, END_STREAM);
    }

    #[test]
    fn what_is_not_http2_or_is_broken_goes_to_h2_unchanged() {
        let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(through(&http1, 2), http1);
        // A header block that does not decode.
        let mut garbage = BytesMut::new();
        garbage.extend_from_slice(PREFACE);
        frame_header(&mut garbage, 3, HEADERS, END_HEADERS, STREAM_1);
        garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert_eq!(through(&garbage, 1), garbage.to_vec());
        // Padding longer than the frame.
        let mut padded = BytesMut::new();
        padded.extend_from_slice(PREFACE);
        frame_header(&mut padded, 2, HEADERS, END_HEADERS | PADDED, STREAM_1);
        padded.extend_from_slice(&[9, 0]);
        assert_eq!(through(&padded, 4), padded.to_vec());
        // A connection cut in the middle of a frame.
        let cut = client_bytes(&[request("/run/x.sock")], 0);
        let cut = &cut[..cut.len() - 20];
        assert!(through(cut, 1).len() <= cut.len());
    }
}
