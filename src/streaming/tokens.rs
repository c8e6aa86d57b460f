//! Single-use URL tokens for the streaming server, as kubelet's
//! `cri/streaming/request_cache.go`: each `Exec`, `Attach` or `PortForward`
//! call parks its request under a random 128-bit token that the client's
//! first request consumes; unknown, used or expired tokens are refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::proto::{AttachRequest, ExecRequest, PortForwardRequest};

/// How long a token may wait for its client (kubelet: `CacheTTL`, 1 min).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// Most requests parked at once (kubelet: `MaxInFlight`, 1000).
pub const MAX_IN_FLIGHT: usize = 1000;

/// A request waiting for its client, by URL kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

impl Pending {
    /// The first path segment of URLs for this kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

/// The parked requests, keyed by token.
#[derive(Debug)]
pub struct TokenCache {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(TOKEN_TTL, MAX_IN_FLIGHT)
    }
}

impl TokenCache {
    pub fn new(ttl: Duration, max: usize) -> Self {
        TokenCache {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Parks `req` and returns its fresh token.
    pub fn insert(&self, req: Pending) -> Result<String> {
        self.insert_at(req, Instant::now())
    }

    fn insert_at(&self, req: Pending, now: Instant) -> Result<String> {
        let token = new_token()?;
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| Error::Internal("streaming token cache poisoned".into()))?;
        if entries.len() >= self.max {
            entries.retain(|_, (expires, _)| *expires > now);
        }
        if entries.len() >= self.max {
            return Err(Error::ResourceExhausted {
                what: "streaming server".into(),
            });
        }
        entries.insert(token.clone(), (now + self.ttl, req));
        Ok(token)
    }

    /// Takes the request parked under `token`, once, if it has not expired.
    pub fn consume(&self, token: &str) -> Option<Pending> {
        self.consume_at(token, Instant::now())
    }

    fn consume_at(&self, token: &str, now: Instant) -> Option<Pending> {
        let mut entries = self.entries.lock().ok()?;
        let (expires, req) = entries.remove(token)?;
        (expires > now).then_some(req)
    }
}

/// 128 random bits as 32 lowercase hex digits (URL-safe as it is).
fn new_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for a streaming token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Pending {
        Pending::Exec(ExecRequest {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            ..Default::default()
        })
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let fresh = cache.insert_at(exec(), t0).unwrap();
        let stale = cache.insert_at(exec(), t0).unwrap();
        let cases = [
            (
                "fresh token",
                fresh.clone(),
                t0 + Duration::from_secs(59),
                true,
            ),
            ("used token", fresh, t0 + Duration::from_secs(1), false),
            ("expired token", stale, t0 + Duration::from_secs(60), false),
            ("unknown token", "0".repeat(32), t0, false),
        ];
        for (what, token, at, found) in cases {
            assert_eq!(cache.consume_at(&token, at).is_some(), found, "{what}");
        }
    }

    #[test]
    fn tokens_hold_128_random_bits() {
        let cache = TokenCache::default();
        let a = cache.insert(exec()).unwrap();
        let b = cache.insert(exec()).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_refuses() {
        let cache = TokenCache::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        cache.insert_at(exec(), t0).unwrap();
        cache.insert_at(exec(), t0).unwrap();
        let err = cache.insert_at(exec(), t0).unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted { .. }), "{err}");
        let later = t0 + Duration::from_secs(61);
        cache.insert_at(exec(), later).unwrap();
    }
}
