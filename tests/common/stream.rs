//! A streaming client for tests that speaks both transports the way
//! kubectl/kubelet do: SPDY/3.1 (our own frame codec, client side) and
//! WebSocket (tokio-tungstenite), over plain TCP or TLS.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dockercri::streaming::spdy::{Headers, Session, SpdyStream};
use dockercri::streaming::ws_bytes::WsBytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Any byte stream to the server.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// What one remote command session gave back.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The error stream's content (v4+: `Status` JSON).
    pub error: Vec<u8>,
    /// WebSocket only: the code of the server's close frame (1005 for a
    /// close frame without one), if one came.
    pub close_code: Option<u16>,
    /// WebSocket only: a data message arrived after the close frame.
    pub data_after_close: bool,
}

impl Output {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// The `Status` JSON of the error stream.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&self.error).unwrap_or_else(|e| {
            panic!(
                "status json {e}: {:?}",
                String::from_utf8_lossy(&self.error)
            )
        })
    }
    /// The exit code the status reports (0 on success).
    pub fn exit_code(&self) -> i64 {
        let s = self.status();
        if s["status"] == "Success" {
            return 0;
        }
        assert_eq!(s["reason"], "NonZeroExitCode", "{s}");
        s["details"]["causes"][0]["message"]
            .as_str()
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("no exit code in {s}"))
    }
}

/// What the client sends.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub stdin: Option<Vec<u8>>,
    /// Keep stdin open (do not close it after sending).
    pub keep_stdin_open: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub resize: Option<(u16, u16)>,
    /// Stop after this much stdout (attach to a container that runs on).
    pub until_stdout: Option<String>,
}

/// Client settings: the TLS root to trust, if the server is HTTPS.
#[derive(Clone, Default)]
pub struct Client {
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

fn split_url(url: &str) -> (bool, String, String) {
    let (https, rest) = match url.strip_prefix("https://") {
        Some(r) => (true, r),
        None => (
            false,
            url.strip_prefix("http://").expect("absolute http(s) URL"),
        ),
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (https, host.to_string(), path.to_string())
}

impl Client {
    /// A TLS client trusting `cert_pem` only.
    pub fn with_root(cert_pem: &str) -> Client {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client {
            tls: Some(Arc::new(config)),
        }
    }

    /// Opens the byte stream for `url`; returns it with host and path.
    pub async fn connect(&self, url: &str) -> (Box<dyn Conn>, String, String) {
        let (https, host, path) = split_url(url);
        let tcp = TcpStream::connect(&host)
            .await
            .expect("connect streaming server");
        if !https {
            return (Box::new(tcp), host, path);
        }
        let config = self.tls.clone().expect("https URL needs Client::with_root");
        let name = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&host);
        let name =
            rustls::pki_types::ServerName::try_from(name.trim_matches(['[', ']']).to_string())
                .unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        (Box::new(tls), host, path)
    }

    /// A plain GET; returns the HTTP status code.
    pub async fn get_status(&self, url: &str) -> u16 {
        let (mut conn, host, path) = self.connect(url).await;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let head = read_head(&mut conn).await;
        head.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// Upgrades `url` to SPDY/3.1 offering `protocols`; returns the
    /// session and the chosen protocol (panics unless 101).
    pub async fn spdy(&self, url: &str, protocols: &[&str]) -> (Session, String) {
        let (mut conn, host, path) = self.connect(url).await;
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        );
        for p in protocols {
            req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
        }
        req.push_str("Content-Length: 0\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let head = read_head(&mut conn).await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "SPDY upgrade refused:\n{head}"
        );
        let chosen = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-stream-protocol-version")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        let (session, _) = Session::start(conn, false);
        (session, chosen)
    }

    /// Runs a remote command session over SPDY.
    pub async fn spdy_command(&self, url: &str, protocol: &str, input: Input) -> Output {
        let (session, chosen) = self.spdy(url, &[protocol]).await;
        assert_eq!(chosen, protocol);
        let open = |t: &str| {
            let h: Headers = vec![("streamtype".into(), t.into())];
            session.open(h)
        };
        let mut error = open("error").await.unwrap();
        let stdin = match input.stdin.is_some() || input.keep_stdin_open {
            true => Some(open("stdin").await.unwrap()),
            false => None,
        };
        let stdout = match input.stdout {
            true => Some(open("stdout").await.unwrap()),
            false => None,
        };
        let stderr = match input.stderr {
            true => Some(open("stderr").await.unwrap()),
            false => None,
        };
        let resize = match input.tty {
            true => Some(open("resize").await.unwrap()),
            false => None,
        };
        if let (Some(r), Some((w, h))) = (&resize, input.resize) {
            r.tx.send(format!(r#"{{"Width":{w},"Height":{h}}}"#).as_bytes())
                .await;
        }
        if let (Some(s), Some(data)) = (&stdin, &input.stdin) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            s.tx.send(data).await;
            if !input.keep_stdin_open {
                s.tx.close().await;
            }
        }
        let read_all = |s: Option<SpdyStream>, until: Option<String>| async move {
            let mut out = Vec::new();
            if let Some(mut s) = s {
                while let Some(chunk) = s.rx.recv().await {
                    out.extend_from_slice(&chunk);
                    if let Some(u) = &until
                        && String::from_utf8_lossy(&out).contains(u.as_str())
                    {
                        break;
                    }
                }
            }
            out
        };
        let until = input.until_stdout.clone();
        // Attached to a container that runs on, stderr never ends: read
        // only stdout, up to the expected text.
        let stderr = if until.is_some() { None } else { stderr };
        let (out, err) = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(read_all(stdout, until), read_all(stderr, None))
        })
        .await
        .expect("session output within 60s");
        let mut output = Output {
            stdout: out,
            stderr: err,
            ..Output::default()
        };
        if input.until_stdout.is_some() {
            session.shutdown().await;
            return output;
        }
        while let Ok(Some(chunk)) =
            tokio::time::timeout(Duration::from_secs(30), error.rx.recv()).await
        {
            output.error.extend_from_slice(&chunk);
        }
        drop(resize);
        session.shutdown().await;
        output
    }

    /// Opens a WebSocket to `url` offering `protocols`; returns the
    /// socket and the chosen protocol.
    pub async fn websocket(
        &self,
        url: &str,
        protocols: &str,
    ) -> (tokio_tungstenite::WebSocketStream<Box<dyn Conn>>, String) {
        let (conn, host, path) = self.connect(url).await;
        let mut req = format!("ws://{host}{path}").into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
        let (ws, resp) = tokio_tungstenite::client_async(req, conn)
            .await
            .expect("websocket upgrade");
        let chosen = resp
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (ws, chosen)
    }

    /// Runs a remote command session over WebSocket (binary channels).
    pub async fn ws_command(&self, url: &str, protocol: &str, input: Input) -> Output {
        let (mut ws, chosen) = self.websocket(url, protocol).await;
        assert_eq!(chosen, protocol);
        if let Some((w, h)) = input.resize {
            let mut m = vec![4u8];
            m.extend_from_slice(format!(r#"{{"Width":{w},"Height":{h}}}"#).as_bytes());
            ws.send(Message::binary(m)).await.unwrap();
        }
        if let Some(data) = &input.stdin {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut m = vec![0u8];
            m.extend_from_slice(data);
            ws.send(Message::binary(m)).await.unwrap();
            if protocol == "v5.channel.k8s.io" && !input.keep_stdin_open {
                ws.send(Message::binary(vec![255u8, 0])).await.unwrap();
            }
        }
        let mut output = Output::default();
        let read = async {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Close(frame) = &msg {
                    output.close_code = Some(frame.as_ref().map_or(1005, |f| u16::from(f.code)));
                    continue;
                }
                let Message::Binary(b) = msg else { continue };
                output.data_after_close |= output.close_code.is_some();
                let Some((&ch, data)) = b.split_first() else {
                    continue;
                };
                match ch {
                    1 => output.stdout.extend_from_slice(data),
                    2 => output.stderr.extend_from_slice(data),
                    3 => output.error.extend_from_slice(data),
                    _ => {}
                }
                if let Some(u) = &input.until_stdout
                    && output.stdout().contains(u.as_str())
                {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("websocket session within 60s");
        let _ = ws.close(None).await;
        output
    }
}

impl Client {
    /// Sends a WebSocket upgrade request for `url` offering `protocol` and
    /// returns the status code and body of the answer (a refusal's text).
    pub async fn websocket_refusal(&self, url: &str, protocol: &str) -> (u16, String) {
        let (mut conn, host, path) = self.connect(url).await;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let head = read_head(&mut conn).await;
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if code != 101 {
            tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut body))
                .await
                .expect("refusal body within 10s")
                .expect("refusal body");
        }
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    /// Opens client-go's port-forward tunnel: a WebSocket offering
    /// `SPDY/3.1+portforward.k8s.io` whose binary messages carry a SPDY
    /// session (client-go `portforward.NewSPDYOverWebsocketDialer`).
    pub async fn spdy_over_websocket(&self, url: &str) -> Session {
        let (ws, chosen) = self.websocket(url, "SPDY/3.1+portforward.k8s.io").await;
        assert_eq!(chosen, "SPDY/3.1+portforward.k8s.io");
        let (session, _) = Session::start(WsBytes::new(ws), false);
        session
    }
}

/// Reads an HTTP response head byte by byte (nothing past it).
async fn read_head(conn: &mut Box<dyn Conn>) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Data for one port-forward request over SPDY: sends `request` on the
/// data stream, then reads until the pod closes; returns (data, error).
pub async fn spdy_forward(
    session: &Session,
    request_id: u32,
    port: u16,
    request: &[u8],
) -> (Vec<u8>, String) {
    let headers = |t: &str| -> Headers {
        vec![
            ("streamtype".into(), t.into()),
            ("port".into(), port.to_string()),
            ("requestid".into(), request_id.to_string()),
        ]
    };
    let mut error = session.open(headers("error")).await.unwrap();
    let mut data = session.open(headers("data")).await.unwrap();
    data.tx.send(request).await;
    let mut got = Vec::new();
    let mut err = Vec::new();
    let read = async {
        tokio::join!(
            async {
                while let Some(c) = data.rx.recv().await {
                    got.extend_from_slice(&c);
                }
            },
            async {
                while let Some(c) = error.rx.recv().await {
                    err.extend_from_slice(&c);
                }
            }
        )
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("port-forward answer within 30s");
    (got, String::from_utf8_lossy(&err).into_owned())
}

/// Bytes of a WebSocket binary message.
pub fn ws_payload(msg: &Message) -> Option<Bytes> {
    match msg {
        Message::Binary(b) => Some(b.clone()),
        _ => None,
    }
}
