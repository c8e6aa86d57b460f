//! The WebSocket transport (`wsstream` in apimachinery): one binary frame
//! per write, prefixed with its channel number (or, for the base64
//! protocols, a text frame with `'0' + channel` and base64 data).

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_util::sync::CancellationToken;

use super::remotecommand::{self as rc, Io, TermSize};

/// Highest channel of the binary framing: the channel is the first byte,
/// and wsstream reserves 255 (v5 uses it as [`rc::CLOSE_CHANNEL`]).
pub const MAX_BINARY_CHANNEL: u8 = u8::MAX - 1;
/// Highest channel of the base64 framing: `'0' + channel` must stay one
/// ASCII character of the text frame (`'0' + 79` is DEL, 0x7f).
pub const MAX_BASE64_CHANNEL: u8 = 0x7f - b'0';
/// How long a client may take to answer our close frame before the
/// connection is dropped anyway.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The highest channel number the framing can carry.
pub fn max_channel(base64: bool) -> u8 {
    if base64 {
        MAX_BASE64_CHANNEL
    } else {
        MAX_BINARY_CHANNEL
    }
}

/// The close frame every session ends with: code 1000, the only code
/// client-go reads as a normal end (`remotecommand/websocket.go`
/// `readDemuxLoop`, `portforward/tunneling_connection.go`); anything else
/// (1005 for a close frame without a code) fails the client's streams even
/// after a Success status. kubelet's `wsstream` (x/net/websocket) sends
/// 1000 whatever the outcome: errors travel in the status message.
pub fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// The server end of an upgraded WebSocket connection.
pub type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Wraps an upgraded connection (the 101 has been sent).
pub async fn accept(upgraded: Upgraded) -> Ws {
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await
}

/// Picks the first protocol the client offers that we support; a client
/// that offers none gets `""` (wsstream's default, binary, v1 semantics).
pub fn negotiate<'a>(offered: &str, supported: &[&'a str]) -> Option<&'a str> {
    let offered: Vec<&str> = offered
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Some("");
    }
    offered
        .iter()
        .find_map(|o| supported.iter().find(|s| *s == o).copied())
}

/// True for the text/base64 framing.
pub fn is_base64(protocol: &str) -> bool {
    protocol.contains("base64.")
}

/// One outgoing channel message in the negotiated framing. Callers keep
/// base64 channels within [`MAX_BASE64_CHANNEL`]; one beyond it is not
/// wrapped but written as a non-ASCII character, which no client decodes.
pub fn encode(base64: bool, channel: u8, data: &[u8]) -> Message {
    if base64 {
        let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
        let digit = char::from_u32(u32::from(b'0') + u32::from(channel));
        text.push(digit.unwrap_or(char::REPLACEMENT_CHARACTER));
        text.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
        Message::text(text)
    } else {
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(channel);
        frame.extend_from_slice(data);
        Message::binary(frame)
    }
}

/// The channel and data of an incoming message; `None` for control or
/// empty messages and undecodable data.
pub fn decode(base64: bool, msg: &Message) -> Option<(u8, Vec<u8>)> {
    let raw: &[u8] = match msg {
        Message::Binary(b) if !base64 => b,
        Message::Text(t) if base64 => t.as_bytes(),
        Message::Binary(b) => b,
        _ => return None,
    };
    let (&first, rest) = raw.split_first()?;
    if base64 {
        let data = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        Some((first.checked_sub(b'0')?, data))
    } else {
        Some((first, rest.to_vec()))
    }
}

/// The writer side: one task owns the sink, everything else sends to it.
pub struct Writer {
    pub tx: mpsc::Sender<Message>,
    task: JoinHandle<()>,
}

impl Writer {
    pub fn start(mut sink: futures_util::stream::SplitSink<Ws, Message>) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Message>(64);
        let task = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if sink.send(msg).await.is_err() {
                    return;
                }
            }
            let _ = sink.send(normal_close()).await;
            let _ = sink.close().await;
        });
        Writer { tx, task }
    }

    /// Flushes what was queued, sends the close frame (1000) and waits.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// Waits (bounded by [`CLOSE_WAIT`]) for `reader` to see the client's
/// answering close frame, so the connection is not dropped under the
/// client's feet; then stops it.
pub async fn await_close(mut reader: JoinHandle<()>) {
    if tokio::time::timeout(CLOSE_WAIT, &mut reader).await.is_err() {
        reader.abort();
    }
}

/// Forwards one output stream to its channel until the stream's sender drops.
pub fn forward(
    tx: mpsc::Sender<Message>,
    base64: bool,
    channel: u8,
) -> (mpsc::Sender<Bytes>, JoinHandle<()>) {
    let (out, mut rx) = mpsc::channel::<Bytes>(16);
    let task = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if tx.send(encode(base64, channel, &chunk)).await.is_err() {
                return;
            }
        }
    });
    (out, task)
}

/// Serves an exec or attach session (`run`) over WebSocket.
pub async fn serve_remotecommand<F, Fut>(
    ws: Ws,
    protocol: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    run: F,
) where
    F: FnOnce(Io) -> Fut,
    Fut: std::future::Future<Output = rc::Outcome>,
{
    let base64 = is_base64(protocol);
    let v5 = protocol == rc::V5;
    let (sink, mut stream) = ws.split();
    let writer = Writer::start(sink);
    // kubelet writes an empty message on the lowest writable channel to
    // tell the client that the session is open.
    let first = if stdout {
        rc::STDOUT_CHANNEL
    } else if stderr {
        rc::STDERR_CHANNEL
    } else {
        rc::ERROR_CHANNEL
    };
    let _ = writer.tx.send(encode(base64, first, &[])).await;

    let gone = CancellationToken::new();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (size_tx, size_rx) = mpsc::channel::<TermSize>(4);
    let reader_gone = gone.clone();
    let reader = tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        let mut sizes = Vec::new();
        while let Some(Ok(msg)) = stream.next().await {
            if msg.is_close() {
                break;
            }
            let Some((channel, data)) = decode(base64, &msg) else {
                continue;
            };
            match channel {
                rc::STDIN_CHANNEL => {
                    if let Some(tx) = &stdin_tx
                        && !data.is_empty()
                    {
                        let _ = tx.send(Bytes::from(data)).await;
                    }
                }
                rc::RESIZE_CHANNEL => {
                    sizes.extend_from_slice(&data);
                    for size in rc::parse_sizes(&mut sizes) {
                        let _ = size_tx.send(size).await;
                    }
                }
                rc::CLOSE_CHANNEL if v5 && data.first() == Some(&rc::STDIN_CHANNEL) => {
                    stdin_tx = None;
                }
                _ => {}
            }
        }
        reader_gone.cancel();
    });

    let mut forwarders = Vec::new();
    let mut output = |wanted: bool, channel: u8| {
        wanted.then(|| {
            let (tx, task) = forward(writer.tx.clone(), base64, channel);
            forwarders.push(task);
            tx
        })
    };
    let io = Io {
        stdout: output(stdout, rc::STDOUT_CHANNEL),
        stderr: output(stderr, rc::STDERR_CHANNEL),
        stdin: stdin.then_some(stdin_rx),
        resize: tty.then_some(size_rx),
        gone: gone.clone(),
    };
    let outcome = run(io).await;
    for task in forwarders {
        let _ = task.await;
    }
    if let Some(payload) = outcome.payload(protocol) {
        let _ = writer
            .tx
            .send(encode(base64, rc::ERROR_CHANNEL, &payload))
            .await;
    }
    writer.finish().await;
    await_close(reader).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_follow_the_client_preference() {
        let ours = [rc::V5, rc::V4, rc::BASE64];
        let cases = [
            ("v5.channel.k8s.io, v4.channel.k8s.io", Some(rc::V5)),
            ("v4.channel.k8s.io,v5.channel.k8s.io", Some(rc::V4)),
            ("base64.channel.k8s.io", Some(rc::BASE64)),
            ("", Some("")),
            ("v9.channel.k8s.io", None),
        ];
        for (offered, want) in cases {
            assert_eq!(negotiate(offered, &ours), want, "{offered:?}");
        }
    }

    #[test]
    fn frames_round_trip_in_both_codecs() {
        for base64 in [false, true] {
            for (channel, data) in [(1u8, &b"hello"[..]), (3, b""), (0, &[0u8, 255, 10][..])] {
                let msg = encode(base64, channel, data);
                assert_eq!(msg.is_text(), base64);
                assert_eq!(decode(base64, &msg), Some((channel, data.to_vec())));
            }
        }
        assert_eq!(encode(false, 2, b"x"), Message::binary(vec![2u8, b'x']));
        assert_eq!(encode(true, 1, b"hi"), Message::text("1aGk="));
    }
}
