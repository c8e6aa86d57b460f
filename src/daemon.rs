//! The daemon's life: prepare the root directory and the socket, serve CRI,
//! tell systemd when ready, and on SIGTERM/SIGINT stop accepting, let
//! in-flight calls finish (bounded), remove our socket and return.
//! Pods and containers are Docker's: they keep running.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::context::Context;
use crate::listener;
use crate::server::{self, Cri};
use crate::streaming::server::StreamingServer;

/// Why the daemon could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create root directory {path}: {source}")]
    RootDirectory {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Listen(#[from] listener::ListenError),
    #[error("cannot install signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Streaming(#[from] crate::streaming::server::ServeError),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Runs dockercri until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    // Before the socket exists: a client may connect, and send a signal, as
    // soon as it does, and a signal without a handler kills at once,
    // leaving the socket file behind.
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let root = config.root_directory.clone();
    std::fs::create_dir_all(&root)
        .and_then(|()| std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711)))
        .map_err(|source| DaemonError::RootDirectory {
            path: root.clone(),
            source,
        })?;
    let bound = listener::bind(&config.listen, config.socket_group.as_deref())?;
    let grace = config.shutdown_grace_period;
    let tls = config
        .streaming_tls
        .as_ref()
        .map(|(c, k)| (c.as_path(), k.as_path()));
    let streaming = StreamingServer::bind(config.streaming_bind_addr, tls).await?;
    let ctx = Arc::new(Context::new(config));
    ctx.streaming.set_base_url(streaming.base_url().to_string());

    let stop = CancellationToken::new();

    // Say hello to dockerd early so the log tells the operator at once, and
    // pick up the logs of containers that ran on while we were away.
    let probe = ctx.clone();
    tokio::spawn(async move {
        if let Err(e) = probe.docker.get().await {
            warn!(error = %e, "docker is not reachable yet; will retry on each call");
            return;
        }
        if let Err(e) = crate::runtime::container::resume_logs(&probe).await {
            warn!(error = %e, "cannot resume container logs");
        }
    });

    let backend = crate::streaming::Backend {
        docker: ctx.docker.clone(),
        index: ctx.index.clone(),
        registry: ctx.streaming.clone(),
    };
    tokio::spawn(streaming.serve(Arc::new(backend), stop.clone()));
    let subscribers = ctx.clone();
    let events = tokio::spawn(crate::index::watch::run(crate::index::watch::Watcher {
        index: ctx.index.clone(),
        docker: ctx.docker.clone(),
        resync_period: ctx.config.index_resync_period,
        publish: crate::runtime::events::publisher(ctx.clone()),
        subscribed: Box::new(move || subscribers.events.has_subscribers()),
    }));
    let shutdown = stop.clone();
    let mut serving = tokio::spawn(server::serve(
        bound.listener,
        Cri::new(ctx.clone()),
        async move { shutdown.cancelled().await },
    ));
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready]) {
        warn!(error = %e, "cannot notify systemd");
    }
    info!(version = env!("CARGO_PKG_VERSION"), "dockercri is ready");

    let early_exit = tokio::select! {
        _ = sigterm.recv() => { info!("SIGTERM: shutting down"); None }
        _ = sigint.recv() => { info!("SIGINT: shutting down"); None }
        result = &mut serving => Some(result),
    };
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    stop.cancel();
    let result = match early_exit {
        Some(result) => result,
        None => match tokio::time::timeout(grace, &mut serving).await {
            Ok(result) => result,
            Err(_) => {
                warn!(grace = ?grace, "in-flight calls did not finish in time; exiting anyway");
                serving.abort();
                Ok(Ok(()))
            }
        },
    };
    // Writers flush as they stop; they resume from the files next time.
    ctx.logs.stop_all();
    events.abort();
    if let Some(file) = &bound.file {
        file.remove();
    }
    match result {
        Ok(served) => served.map_err(DaemonError::from),
        Err(join) => {
            warn!(error = %join, "server task ended abnormally");
            Ok(())
        }
    }
}
