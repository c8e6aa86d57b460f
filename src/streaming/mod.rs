//! The streaming server behind `Exec`, `Attach` and `PortForward`: kubelet
//! (or crictl, kubectl) upgrades the URL those calls return to SPDY/3.1 or
//! WebSocket and speaks the Kubernetes stream protocols over it.
//!
//! `tokens` parks requests under single-use URLs, `server` serves HTTP and
//! upgrades, `spdy` and `websocket` are the two transports, and
//! `remotecommand` / `portforward` are the protocols on top of them.

pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod tokens;
pub mod websocket;
pub mod ws_bytes;

use std::sync::{Arc, OnceLock};

use crate::docker::DockerClient;
use crate::error::{Error, Result};
use crate::index::Index;
use tokens::{Pending, TokenCache};

/// What the streaming server is handed: Docker (exec, attach), the index
/// (the sandbox a port-forward enters) and the requests the RPCs issued.
#[derive(Debug, Clone)]
pub struct Backend {
    pub docker: Arc<DockerClient>,
    pub index: Arc<Index>,
    pub registry: Arc<Registry>,
}

/// What the RPC handlers need of the streaming server: where it listens
/// and the requests it has been promised.
#[derive(Debug, Default)]
pub struct Registry {
    pub tokens: TokenCache,
    /// `scheme://host:port` of the running server; unset until it listens.
    base_url: OnceLock<String>,
}

impl Registry {
    /// Records where the server listens (once, at start-up).
    pub fn set_base_url(&self, url: String) {
        let _ = self.base_url.set(url);
    }

    /// The server's base URL, if it is listening.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.get().map(String::as_str)
    }

    /// Parks `req` and returns the absolute URL that serves it.
    pub fn issue(&self, req: Pending) -> Result<String> {
        let base = self
            .base_url()
            .ok_or_else(|| Error::Internal("the streaming server is not running".into()))?;
        let kind = req.kind();
        let token = self.tokens.insert(req)?;
        Ok(format!("{base}/{kind}/{token}"))
    }
}
