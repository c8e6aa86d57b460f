//! The streaming HTTP server: hyper on TCP (optionally TLS), one route per
//! URL kind (`/exec/<token>`, `/attach/<token>`, `/portforward/<token>`),
//! consuming the token and upgrading to SPDY/3.1 or WebSocket.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, info, warn};

use super::Backend;
use super::tokens::Pending;
use super::{portforward, remotecommand as rc, websocket};

/// SPDY's HTTP upgrade token.
pub const SPDY_UPGRADE: &str = "SPDY/3.1";
/// Header carrying the SPDY sub-protocol (apimachinery `httpstream.HeaderProtocolVersion`).
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// Header listing what we accept when negotiation fails.
pub const ACCEPTED_HEADER: &str = "x-accepted-stream-protocol-versions";

/// Why the streaming server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on streaming address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("streaming TLS: {0}")]
    Tls(String),
}

/// A bound streaming server, ready to serve.
pub struct StreamingServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    base_url: String,
}

impl StreamingServer {
    /// Binds `addr`; with `tls` = (cert, key) PEM files, serves HTTPS.
    pub async fn bind(
        addr: SocketAddr,
        tls: Option<(&Path, &Path)>,
    ) -> Result<StreamingServer, ServeError> {
        let tls = tls.map(|(cert, key)| tls_acceptor(cert, key)).transpose()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{}", reachable(local));
        Ok(StreamingServer {
            listener,
            tls,
            base_url,
        })
    }

    /// `scheme://host:port` that clients on the node can reach.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Serves until `stop` is cancelled; sessions in progress are dropped then.
    pub async fn serve(self, ctx: Arc<Backend>, stop: CancellationToken) {
        info!(url = %self.base_url, "streaming server listening");
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "streaming accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = stop.cancelled() => return,
            };
            let ctx = ctx.clone();
            let tls = self.tls.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| route(ctx.clone(), req));
                let result = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => serve_conn(TokioIo::new(stream), svc, stop).await,
                        Err(e) => {
                            debug!(%peer, error = %e, "streaming TLS handshake failed");
                            return;
                        }
                    },
                    None => serve_conn(TokioIo::new(tcp), svc, stop).await,
                };
                if let Err(e) = result {
                    debug!(%peer, error = %e, "streaming connection ended");
                }
            });
        }
    }
}

async fn serve_conn<I, S>(io: I, svc: S, stop: CancellationToken) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http1::Builder::new()
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => Ok(()),
    }
}

/// The host:port to put in URLs: a wildcard bind is reached on loopback.
pub fn reachable(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("certificate {}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Tls(format!("key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// All values of a (possibly repeated, comma-separated) header, in order.
fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn route(
    ctx: Arc<Backend>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let mut parts = path.trim_matches('/').splitn(2, '/');
    let (kind, token) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default(),
    );
    let pending = match ctx.registry.tokens.consume(token) {
        Some(p) if p.kind() == kind => p,
        _ => {
            return Ok(plain(
                StatusCode::NOT_FOUND,
                "unknown, used or expired token",
            ));
        }
    };
    let upgrade = header_str(req.headers(), header::UPGRADE).to_string();
    let websocket = upgrade.eq_ignore_ascii_case("websocket");
    let spdy = upgrade
        .to_ascii_uppercase()
        .starts_with(&SPDY_UPGRADE.to_ascii_uppercase());
    if !websocket && !spdy {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            "upgrade to SPDY/3.1 or websocket required",
        ));
    }
    let offered = if websocket {
        header_list(req.headers(), "sec-websocket-protocol")
    } else {
        header_list(req.headers(), PROTOCOL_HEADER)
    };
    let supported: &[&str] = match (&pending, websocket) {
        (Pending::PortForward(_), false) => &[portforward::PROTOCOL],
        (Pending::PortForward(_), true) => &portforward::WS_PROTOCOLS,
        (_, false) => &rc::SPDY_VERSIONS,
        (_, true) => &[rc::V5, rc::V4, rc::V4_BASE64, rc::BASE64, rc::V1],
    };
    let chosen = match websocket::negotiate(&offered.join(","), supported) {
        Some(p) => p,
        None => {
            let mut r = plain(
                StatusCode::FORBIDDEN,
                &format!("no supported stream protocol among {offered:?}"),
            );
            for p in supported {
                r.headers_mut()
                    .append(ACCEPTED_HEADER, HeaderValue::from_static(p));
            }
            return Ok(r);
        }
    };
    // The channel protocols number two channels per port: refuse what they
    // cannot number before upgrading, as kubelet refuses a bad port query.
    let query = req.uri().query().unwrap_or_default().to_string();
    let ports = match &pending {
        Pending::PortForward(pf) if websocket && chosen != portforward::TUNNEL_PROTOCOL => {
            match portforward::websocket_ports(&query, &pf.port, chosen) {
                Ok(ports) => ports,
                Err(why) => return Ok(plain(StatusCode::BAD_REQUEST, &why)),
            }
        }
        _ => Vec::new(),
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if websocket {
        let key = header_str(req.headers(), header::SEC_WEBSOCKET_KEY);
        if key.is_empty() {
            return Ok(plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"));
        }
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if !chosen.is_empty() {
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(chosen),
            );
        }
    } else {
        h.insert(header::UPGRADE, HeaderValue::from_static(SPDY_UPGRADE));
        h.insert(PROTOCOL_HEADER, HeaderValue::from_static(chosen));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let span = debug_span!("stream", kind = %kind, protocol = chosen, websocket);
    tokio::spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            debug!("session open");
            session(ctx, pending, upgraded, chosen, websocket, ports).await;
            debug!("session closed");
        }
        .instrument(span),
    );
    Ok(resp)
}

async fn session(
    ctx: Arc<Backend>,
    pending: Pending,
    upgraded: hyper::upgrade::Upgraded,
    protocol: &'static str,
    websocket: bool,
    ports: Vec<u16>,
) {
    match (pending, websocket) {
        (Pending::Exec(req), true) => {
            let ws = websocket::accept(upgraded).await;
            let (i, o, e, t) = (req.stdin, req.stdout, req.stderr, req.tty);
            websocket::serve_remotecommand(ws, protocol, i, o, e, t, |io| {
                let ctx = ctx.clone();
                async move { rc::exec(&ctx, &req, io).await }
            })
            .await
        }
        (Pending::Attach(req), true) => {
            let ws = websocket::accept(upgraded).await;
            let (i, o, e, t) = (req.stdin, req.stdout, req.stderr, req.tty);
            websocket::serve_remotecommand(ws, protocol, i, o, e, t, |io| {
                let ctx = ctx.clone();
                async move { rc::attach(&ctx, &req, io).await }
            })
            .await
        }
        (Pending::Exec(req), false) => {
            let (i, o, e, t) = (req.stdin, req.stdout, req.stderr, req.tty);
            rc::serve_spdy(upgraded, protocol, i, o, e, t, |io| {
                let ctx = ctx.clone();
                async move { rc::exec(&ctx, &req, io).await }
            })
            .await
        }
        (Pending::Attach(req), false) => {
            let (i, o, e, t) = (req.stdin, req.stdout, req.stderr, req.tty);
            rc::serve_spdy(upgraded, protocol, i, o, e, t, |io| {
                let ctx = ctx.clone();
                async move { rc::attach(&ctx, &req, io).await }
            })
            .await
        }
        (Pending::PortForward(req), true) if protocol == portforward::TUNNEL_PROTOCOL => {
            let ws = websocket::accept(upgraded).await;
            portforward::serve_tunnel(ctx, ws, &req.pod_sandbox_id).await
        }
        (Pending::PortForward(req), true) => {
            let ws = websocket::accept(upgraded).await;
            portforward::serve_websocket(ctx, ws, protocol, &req.pod_sandbox_id, ports).await
        }
        (Pending::PortForward(req), false) => {
            portforward::serve_spdy(ctx, upgraded, &req.pod_sandbox_id).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_name_a_reachable_address() {
        let cases = [
            ("0.0.0.0:1234", "127.0.0.1:1234"),
            ("[::]:80", "[::1]:80"),
            ("10.1.2.3:5", "10.1.2.3:5"),
            ("127.0.0.1:9", "127.0.0.1:9"),
        ];
        for (bound, want) in cases {
            let got = reachable(bound.parse().unwrap());
            assert_eq!(got.to_string(), want, "{bound}");
        }
    }

    #[test]
    fn repeated_and_comma_separated_headers_are_listed() {
        let mut h = HeaderMap::new();
        h.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        h.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v3.channel.k8s.io, channel.k8s.io"),
        );
        assert_eq!(
            header_list(&h, PROTOCOL_HEADER),
            ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"]
        );
    }
}
