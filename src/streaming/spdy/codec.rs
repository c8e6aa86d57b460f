//! The SPDY/3.1 frame codec as Kubernetes uses it (moby/spdystream under
//! apimachinery's `httpstream/spdy`): frames, and header blocks
//! zlib-compressed with the SPDY/3 dictionary (one context per direction
//! per session, sync flush).

use std::io;
use std::sync::OnceLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Header pairs from string pairs.
    pub(in crate::streaming::spdy) fn h(pairs: &[(&str, &str)]) -> Headers {
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
}
