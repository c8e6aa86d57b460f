//! A WebSocket as a byte stream, for client-go's SPDY-over-WebSocket
//! tunnel (`SPDY/3.1+portforward.k8s.io`; client-go
//! `tools/portforward/tunneling_connection.go`): each write is one binary
//! message, reads concatenate binary messages, a close frame is EOF, and
//! shutting down sends close code 1000 (the only code `TunnelingConnection`
//! reads as a normal end). A text message is an error, as it is there.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::websocket::normal_close;

/// A WebSocket read and written as bytes (either role).
pub struct WsBytes<S> {
    ws: WebSocketStream<S>,
    /// What is left of the message being read.
    pending: Bytes,
    eof: bool,
    close_sent: bool,
}

impl<S> WsBytes<S> {
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsBytes {
            ws,
            pending: Bytes::new(),
            eof: false,
            close_sent: false,
        }
    }
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        e => io::Error::other(e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Close(_)))
                | None
                | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => self.eof = true,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message in a binary WebSocket tunnel",
                    )));
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let ws = Pin::new(&mut self.ws);
        ready!(Sink::<Message>::poll_ready(ws, cx)).map_err(io_error)?;
        let msg = Message::binary(Bytes::copy_from_slice(buf));
        Pin::new(&mut self.ws).start_send(msg).map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Sink::<Message>::poll_flush(Pin::new(&mut self.ws), cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_sent {
            let ws = Pin::new(&mut self.ws);
            match ready!(Sink::<Message>::poll_ready(ws, cx)) {
                Ok(()) => {
                    // Queues the close frame; a peer that closed first
                    // already got tungstenite's reply.
                    let _ = Pin::new(&mut self.ws).start_send(normal_close());
                }
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
                Err(e) => return Poll::Ready(Err(io_error(e))),
            }
            self.close_sent = true;
        }
        match ready!(Sink::<Message>::poll_close(Pin::new(&mut self.ws), cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    async fn pair() -> (
        WsBytes<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(4096);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (WsBytes::new(server), client)
    }

    #[tokio::test]
    async fn binary_messages_read_as_one_byte_stream() {
        let (mut bytes, mut peer) = pair().await;
        peer.send(Message::binary(&b"hel"[..])).await.unwrap();
        peer.send(Message::Ping(Bytes::new())).await.unwrap();
        peer.send(Message::binary(&b"lo"[..])).await.unwrap();
        peer.send(normal_close()).await.unwrap();
        let mut got = Vec::new();
        bytes.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
    }

    #[tokio::test]
    async fn writes_are_binary_messages_and_shutdown_closes_with_1000() {
        let (mut bytes, mut peer) = pair().await;
        bytes.write_all(b"abc").await.unwrap();
        bytes.flush().await.unwrap();
        let reader = tokio::spawn(async move {
            let mut msgs = Vec::new();
            while let Some(Ok(m)) = peer.next().await {
                msgs.push(m);
            }
            msgs
        });
        let finish = async {
            bytes.shutdown().await.unwrap();
            // The peer's answering close ends our reads.
            let mut rest = Vec::new();
            bytes.read_to_end(&mut rest).await.unwrap();
            drop(bytes);
            reader.await.unwrap()
        };
        let msgs = tokio::time::timeout(std::time::Duration::from_secs(5), finish)
            .await
            .expect("close handshake within 5s");
        assert_eq!(msgs[0], Message::binary(&b"abc"[..]));
        match &msgs[1] {
            Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Normal),
            other => panic!("want close 1000, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_text_message_is_an_error() {
        let (mut bytes, mut peer) = pair().await;
        peer.send(Message::text("x")).await.unwrap();
        let mut buf = [0u8; 4];
        let err = bytes.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
