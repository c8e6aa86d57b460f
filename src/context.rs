//! What every RPC shares: the validated config, the Docker client, and the
//! little runtime state kubelet hands us (the pod CIDR).

use std::path::PathBuf;
use std::sync::RwLock;

use crate::config::Config;
use crate::docker::DockerClient;
use crate::image::ImageState;

/// Shared by all handlers; cheap to reach through an `Arc`.
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub docker: DockerClient,
    /// Pod CIDR from the last `UpdateRuntimeConfig` (empty until then).
    pub pod_cidr: RwLock<String>,
    /// What the image RPCs cache: image users, filesystem samples.
    pub images: ImageState,
}

impl Context {
    pub fn new(config: Config) -> Self {
        let docker = DockerClient::new(config.docker.clone());
        let pod_cidr = RwLock::new(crate::runtime::status::load_pod_cidr(
            &config.root_directory,
        ));
        Context {
            config,
            docker,
            pod_cidr,
            images: ImageState::default(),
        }
    }

    /// A path under dockercri's root directory.
    pub fn root_path(&self, name: &str) -> PathBuf {
        self.config.root_directory.join(name)
    }
}
