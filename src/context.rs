//! What every RPC shares: the validated config, the Docker client, the
//! little runtime state kubelet hands us (the pod CIDR), and the policies
//! decided once at start-up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::docker::DockerClient;
use crate::docker::oom_score::OomPolicy;
use crate::image::ImageState;
use crate::index::Index;
use crate::kernel_stats::StatsState;
use crate::logs::LogManager;
use crate::network::Network;
use crate::runtime::events::EventHub;
use crate::runtime::locks::KeyedLocks;
use crate::runtime::pause::PauseImage;
use crate::runtime::stats::Facts;
use crate::streaming::Registry;

/// Shared by all handlers; cheap to reach through an `Arc`.
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub docker: Arc<DockerClient>,
    /// The pod network: CNI settings and kubelet's pod CIDR.
    pub network: Network,
    /// Whether and how `oom_score_adj` values are clamped.
    pub oom: OomPolicy,
    /// The sandbox image fallback state.
    pub pause: PauseImage,
    /// Serialises RunPodSandbox/Stop/Remove per pod (keyed by sandbox name).
    pub pod_locks: KeyedLocks,
    /// The CRI log writers of running containers.
    pub logs: LogManager,
    /// What the image RPCs cache: image users, filesystem samples.
    pub images: ImageState,
    /// The streaming server's address and its parked requests.
    pub streaming: Arc<Registry>,
    /// Previous CPU samples and cgroup paths, for stats.
    pub stats: StatsState,
    /// What stats need from `docker inspect`, by container id.
    stats_facts: Mutex<HashMap<String, Facts>>,
    /// Docker's root directory (the writable layers' filesystem).
    docker_root: tokio::sync::OnceCell<String>,
    /// Container events for `GetContainerEvents` subscribers.
    pub events: EventHub,
    /// Our sandboxes and containers, kept from Docker's events.
    pub index: Arc<Index>,
}

impl Context {
    pub fn new(config: Config) -> Self {
        let docker = Arc::new(DockerClient::new(config.docker.clone()));
        let logs = LogManager::new(&config.root_directory);
        let network = Network::new(&config);
        let oom = OomPolicy::new(config.restrict_oom_score_adj);
        let index = Arc::new(Index::new(config.root_directory.clone()));
        Context {
            config,
            docker,
            network,
            oom,
            pause: PauseImage::default(),
            pod_locks: KeyedLocks::default(),
            logs,
            images: ImageState::default(),
            streaming: Arc::default(),
            stats: StatsState::default(),
            stats_facts: Mutex::default(),
            docker_root: tokio::sync::OnceCell::new(),
            events: EventHub::default(),
            index,
        }
    }

    /// A path under dockercri's root directory.
    pub fn root_path(&self, name: &str) -> PathBuf {
        self.config.root_directory.join(name)
    }

    /// Cached inspect facts of a container, for stats.
    pub fn stats_facts(&self, id: &str) -> Option<Facts> {
        self.stats_facts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn remember_stats_facts(&self, id: &str, facts: Facts) {
        self.stats_facts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), facts);
    }

    /// Drops cached facts of containers that are gone.
    pub fn forget_stats_facts(&self, live: &[String]) {
        let live: std::collections::HashSet<&str> = live.iter().map(String::as_str).collect();
        self.stats_facts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| live.contains(k.as_str()));
    }

    /// Docker's root directory, asked once.
    pub async fn docker_root(&self) -> String {
        let ask = async {
            let docker = self.docker.get().await.map_err(|_| ())?;
            docker
                .info()
                .await
                .ok()
                .and_then(|i| i.docker_root_dir)
                .ok_or(())
        };
        self.docker_root
            .get_or_try_init(|| ask)
            .await
            .cloned()
            .unwrap_or_else(|()| "/var/lib/docker".to_string())
    }
}
