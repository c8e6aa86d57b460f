//! The bollard wrapper: connects lazily, negotiates the API version once per
//! connection, and classifies bollard errors into [`crate::Error`]. It is
//! the only module that decides what a Docker failure means for the client.

use std::sync::RwLock;
use std::time::Duration;

use std::collections::HashMap;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerInspectResponse, ContainerSummary, SystemInfoCgroupDriverEnum};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use tracing::{info, warn};

use crate::config::DockerEndpoint;
use crate::error::Error;
use crate::proto::CgroupDriver;

/// How long [`DockerClient::exec_exit_code`] waits for Docker to see an
/// exec's end.
pub const EXEC_EXIT_POLL: Duration = Duration::from_secs(5);

/// Seconds bollard waits for any one Docker answer before giving up. Calls
/// that may legitimately take long (pulls, waits) use their own deadlines.
const DOCKER_TIMEOUT_SECS: u64 = 120;

/// The oldest Docker Engine API dockercri supports (Docker 20.10).
pub const MIN_API_VERSION: (usize, usize) = (1, 41);

/// What a stop found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The container ran and is stopped now, or Docker has no such
    /// container.
    Stopped,
    /// It was not running: Docker changed nothing.
    NotRunning,
}

impl Stop {
    /// Whether Docker answered that there was nothing to stop.
    pub fn changed_nothing(result: &Result<Stop, Error>) -> bool {
        matches!(result, Ok(Stop::NotRunning))
    }
}

/// A shareable handle to Docker Engine that survives dockerd being down:
/// dockercri starts without it and reconnects when it comes back.
#[derive(Debug)]
pub struct DockerClient {
    endpoint: DockerEndpoint,
    /// The negotiated handle; `None` until dockerd first answers, and again
    /// after a call found it unreachable (it may come back upgraded).
    handle: RwLock<Option<Docker>>,
    /// Docker's cgroup driver, asked once per connection (a restarted
    /// dockerd may come back with another).
    /// What `docker info` said, asked once per connection.
    facts: RwLock<Option<EngineFacts>>,
}

impl DockerClient {
    pub fn new(endpoint: DockerEndpoint) -> Self {
        DockerClient {
            endpoint,
            handle: RwLock::new(None),
            facts: RwLock::new(None),
        }
    }

    /// The endpoint as the operator wrote it, for messages.
    pub fn endpoint(&self) -> String {
        match &self.endpoint {
            DockerEndpoint::Unix(path) => format!("unix://{}", path.display()),
            DockerEndpoint::Tcp(addr) => format!("tcp://{addr}"),
        }
    }

    /// A bollard handle with the API version negotiated against the running
    /// daemon. Fails with [`Error::Unavailable`] when dockerd does not answer.
    pub async fn get(&self) -> Result<Docker, Error> {
        if let Some(docker) = self.cached() {
            return Ok(docker);
        }
        let docker = self
            .connect()
            .map_err(|e| self.classify(e, "docker", "connect"))?
            .negotiate_version()
            .await
            .map_err(|e| self.classify(e, "docker", "version negotiation"))?;
        let version = docker.client_version();
        if (version.major_version, version.minor_version) < MIN_API_VERSION {
            warn!(
                api_version = %version,
                "Docker Engine API is older than 1.41 (Docker 20.10); some calls may fail"
            );
        }
        info!(endpoint = %self.endpoint(), api_version = %version, "connected to docker");
        if let Ok(mut slot) = self.handle.write() {
            *slot = Some(docker.clone());
        }
        Ok(docker)
    }

    /// The negotiated API version, if dockerd has answered since the last
    /// time it was found unreachable.
    pub fn api_version(&self) -> Option<String> {
        self.cached().map(|d| d.client_version().to_string())
    }

    /// The negotiated API version as (major, minor).
    pub fn api_version_tuple(&self) -> Option<(usize, usize)> {
        self.cached().map(|d| {
            let v = d.client_version();
            (v.major_version, v.minor_version)
        })
    }

    /// Whether the connected Docker can make bind mounts recursively
    /// read-only (what `CreateContainer` does and `Status` reports).
    pub fn recursive_read_only(&self) -> bool {
        has_recursive_read_only(self.api_version_tuple())
    }

    fn cached(&self) -> Option<Docker> {
        self.handle.read().ok().and_then(|slot| slot.clone())
    }

    fn forget(&self) {
        if let Ok(mut slot) = self.handle.write() {
            *slot = None;
        }
        if let Ok(mut slot) = self.facts.write() {
            *slot = None;
        }
    }

    /// What `docker info` says that translation needs, asked once per
    /// connection.
    async fn facts(&self) -> Result<EngineFacts, Error> {
        if let Some(facts) = self.facts.read().ok().and_then(|f| *f) {
            return Ok(facts);
        }
        let docker = self.get().await?;
        let info = docker
            .info()
            .await
            .map_err(|e| self.classify(e, "docker", "info"))?;
        let facts = EngineFacts {
            cgroup_driver: cgroup_driver_of(info.cgroup_driver),
            selinux: selinux_of(info.security_options.as_deref()),
        };
        if let Ok(mut slot) = self.facts.write() {
            *slot = Some(facts);
        }
        Ok(facts)
    }

    /// Docker's cgroup driver: kubelet's cgroup parents are converted for
    /// it.
    pub async fn cgroup_driver(&self) -> Result<CgroupDriver, Error> {
        Ok(self.facts().await?.cgroup_driver)
    }

    /// Whether Docker labels containers for SELinux (`--selinux-enabled`):
    /// only then does a mount's relabel (`:Z`) do anything.
    pub async fn selinux(&self) -> Result<bool, Error> {
        Ok(self.facts().await?.selinux)
    }

    fn connect(&self) -> Result<Docker, BollardError> {
        let version = bollard::API_DEFAULT_VERSION;
        match &self.endpoint {
            DockerEndpoint::Unix(path) => {
                Docker::connect_with_unix(&path.to_string_lossy(), DOCKER_TIMEOUT_SECS, version)
            }
            DockerEndpoint::Tcp(addr) => {
                Docker::connect_with_http(&format!("tcp://{addr}"), DOCKER_TIMEOUT_SECS, version)
            }
        }
    }

    /// Turns a bollard error into the error the CRI client should see.
    /// `kind` and `id` name the object the call was about, for `NOT_FOUND`.
    /// Docker's 400 ("bad parameter": a value of the request it refuses) is
    /// the client's `INVALID_ARGUMENT`, with Docker's message.
    pub fn classify(&self, err: BollardError, kind: &'static str, id: &str) -> Error {
        match err {
            BollardError::DockerResponseServerError {
                status_code: 400,
                message,
            } => Error::invalid(kind, format!("{id:?}: docker refused it: {message}")),
            BollardError::DockerResponseServerError {
                status_code: 404, ..
            } => Error::not_found(kind, id),
            BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            } => Error::FailedPrecondition {
                what: format!("{kind} {id:?}"),
                why: message,
            },
            BollardError::RequestTimeoutError => Error::DeadlineExceeded {
                what: format!("docker call for {kind} {id:?}"),
            },
            e if is_unreachable(&e) => {
                self.forget();
                Error::Unavailable {
                    endpoint: self.endpoint(),
                    source: e,
                }
            }
            source => Error::Docker {
                what: format!("docker call for {kind} {id:?} failed"),
                source,
            },
        }
    }

    /// Classifies a failed pull of `target.image` from Docker's message:
    /// missing in the registry, refused credentials, registry unreachable.
    /// Docker's messages never carry the credentials, and neither does the
    /// error. Anything else goes through [`DockerClient::classify`].
    pub fn classify_pull(&self, err: BollardError, target: &PullTarget<'_>) -> Error {
        let message = match &err {
            BollardError::DockerResponseServerError { message, .. } => Some(message.as_str()),
            BollardError::DockerStreamError { error } => Some(error.as_str()),
            _ => None,
        };
        let failure = message.and_then(|m| pull_failure(m, target.had_credentials));
        let (registry, image) = (target.registry.to_string(), target.image.to_string());
        let why = message.unwrap_or_default().to_string();
        match failure {
            Some(PullFailure::NotInRegistry) => Error::NotInRegistry {
                registry,
                image,
                why,
            },
            Some(PullFailure::Authentication) => Error::AuthenticationFailed {
                registry,
                image,
                why,
            },
            Some(PullFailure::Unreachable) => Error::RegistryUnavailable {
                registry,
                image,
                why,
            },
            Some(PullFailure::BadReference) => Error::invalid("image", format!("{image:?}: {why}")),
            None => self.classify(err, "image", target.image),
        }
    }

    /// Asks dockerd whether it is alive, within `limit`.
    pub async fn ping(&self, limit: Duration) -> Result<(), Error> {
        let check = async {
            let docker = self.get().await?;
            docker
                .ping()
                .await
                .map(|_| ())
                .map_err(|e| self.classify(e, "docker", "ping"))
        };
        match tokio::time::timeout(limit, check).await {
            Ok(result) => result,
            Err(_) => Err(Error::DeadlineExceeded {
                what: format!("ping of docker at {}", self.endpoint()),
            }),
        }
    }
}

/// The CRI's name for the cgroup driver `docker info` reports (cgroupfs
/// unless Docker says systemd: "none" still takes cgroupfs paths).
/// What `docker info` says that translation needs.
#[derive(Debug, Clone, Copy)]
struct EngineFacts {
    cgroup_driver: CgroupDriver,
    selinux: bool,
}

/// Whether Docker's security options (`name=selinux`, or `selinux` on old
/// engines) include SELinux.
pub fn selinux_of(options: Option<&[String]>) -> bool {
    options
        .unwrap_or_default()
        .iter()
        .any(|o| o == "selinux" || o.split(',').any(|kv| kv == "name=selinux"))
}

pub fn cgroup_driver_of(docker: Option<SystemInfoCgroupDriverEnum>) -> CgroupDriver {
    match docker {
        Some(SystemInfoCgroupDriverEnum::SYSTEMD) => CgroupDriver::Systemd,
        _ => CgroupDriver::Cgroupfs,
    }
}

/// Container calls with the CRI's idempotence built in.
impl DockerClient {
    /// `docker inspect`; `None` when there is no such container.
    pub async fn inspect_container(
        &self,
        id: &str,
        kind: &'static str,
    ) -> Result<Option<ContainerInspectResponse>, Error> {
        let docker = self.get().await?;
        match docker.inspect_container(id, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) => match self.classify(e, kind, id) {
                Error::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Stops a container, giving it `timeout_secs` after SIGTERM; stopping
    /// one that is stopped or gone is success.
    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<Stop, Error> {
        let t = i32::try_from(timeout_secs.max(0)).unwrap_or(i32::MAX);
        // Docker answers only after the grace period: wait that long and more.
        let wait = Duration::from_secs(u64::try_from(t).unwrap_or(0)) + Duration::from_secs(30);
        let docker = self
            .get()
            .await?
            .with_timeout(wait.max(Duration::from_secs(DOCKER_TIMEOUT_SECS)));
        let options = StopContainerOptionsBuilder::default().t(t).build();
        match docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(Stop::Stopped),
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(Stop::NotRunning),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(Stop::Stopped),
            Err(e) => Err(self.classify(e, "container", id)),
        }
    }

    /// Removes a container and its anonymous volumes, running or not;
    /// removing one that is gone (or already being removed) is success.
    pub async fn remove_container(&self, id: &str) -> Result<(), Error> {
        let docker = self.get().await?;
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(self.classify(e, "container", id)),
        }
    }

    /// All containers (running or not) carrying every `key=value` label.
    /// The exit code of a finished exec, waiting briefly (at most
    /// [`EXEC_EXIT_POLL`]) for Docker to see the end: Docker records the
    /// exit a moment after the output ends.
    pub async fn exec_exit_code(&self, exec_id: &str) -> Result<i64, Error> {
        let docker = self.get().await?;
        let deadline = tokio::time::Instant::now() + EXEC_EXIT_POLL;
        // Ask again soon, then less often.
        let mut pause = Duration::from_millis(1);
        loop {
            let inspect = docker
                .inspect_exec(exec_id)
                .await
                .map_err(|e| self.classify(e, "exec", exec_id))?;
            if inspect.running != Some(true) || tokio::time::Instant::now() > deadline {
                return Ok(inspect.exit_code.unwrap_or(-1));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    pub async fn list_containers(&self, labels: &[String]) -> Result<Vec<ContainerSummary>, Error> {
        let docker = self.get().await?;
        let filters: HashMap<&str, Vec<String>> = HashMap::from([("label", labels.to_vec())]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.classify(e, "containers", &labels.join(",")))
    }
}

/// The pull a Docker error is about, for [`DockerClient::classify_pull`].
#[derive(Debug, Clone, Copy)]
pub struct PullTarget<'a> {
    /// The reference as pulled (normalised).
    pub image: &'a str,
    /// The registry host of the reference.
    pub registry: &'a str,
    /// Whether the request carried credentials (Docker Hub answers
    /// "pull access denied" both for missing and for forbidden repositories).
    pub had_credentials: bool,
}

/// What a pull error message says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullFailure {
    NotInRegistry,
    Authentication,
    Unreachable,
    BadReference,
}

/// Reads Docker's (and the registry's) words for a failed pull. Docker 20.10
/// answers e.g. `manifest for X not found: manifest unknown` (404),
/// `no basic auth credentials`, `unauthorized: authentication required`,
/// `dial tcp 127.0.0.1:1: connect: connection refused` (500).
pub fn pull_failure(message: &str, had_credentials: bool) -> Option<PullFailure> {
    let m = message.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if m.contains("pull access denied") {
        return Some(if had_credentials {
            PullFailure::Authentication
        } else {
            PullFailure::NotInRegistry
        });
    }
    if any(&[
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "incorrect username or password",
        "denied:",
        "access denied",
        "authorization failed",
    ]) {
        return Some(PullFailure::Authentication);
    }
    if any(&[
        "manifest unknown",
        "name unknown",
        "not found",
        "repository does not exist",
        "no matching manifest",
    ]) {
        return Some(PullFailure::NotInRegistry);
    }
    if any(&[
        "connection refused",
        "no such host",
        "i/o timeout",
        "dial tcp",
        "network is unreachable",
        "no route to host",
        "connection reset by peer",
        "tls handshake timeout",
        "server misbehaving",
        "temporary failure in name resolution",
        "client.timeout exceeded",
    ]) {
        return Some(PullFailure::Unreachable);
    }
    if m.contains("invalid reference format") {
        return Some(PullFailure::BadReference);
    }
    None
}

/// True when the daemon could not be reached at all (as opposed to a daemon
/// that answered with an error).
/// Docker API version from which bind mounts can be made recursively
/// read-only (`BindOptions.ReadOnlyForceRecursive`, Docker 25).
pub const RECURSIVE_READ_ONLY_API: (usize, usize) = (1, 44);

/// Whether Docker at the negotiated `api` version (`None`: not connected)
/// makes bind mounts recursively read-only.
pub fn has_recursive_read_only(api: Option<(usize, usize)>) -> bool {
    api.is_some_and(|v| v >= RECURSIVE_READ_ONLY_API)
}

pub fn is_unreachable(err: &BollardError) -> bool {
    use std::io::ErrorKind;
    let io_unreachable = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::NotFound
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::PermissionDenied
        )
    };
    match err {
        BollardError::SocketNotFoundError(_) => true,
        BollardError::IOError { err } => io_unreachable(err),
        BollardError::HyperLegacyError { err } => err.is_connect(),
        BollardError::HyperResponseError { err } => {
            err.is_closed() || err.is_incomplete_message() || err.is_canceled()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn cgroup_driver_follows_docker() {
        use SystemInfoCgroupDriverEnum as D;
        for (docker, want) in [
            (Some(D::SYSTEMD), CgroupDriver::Systemd),
            (Some(D::CGROUPFS), CgroupDriver::Cgroupfs),
            (Some(D::NONE), CgroupDriver::Cgroupfs),
            (None, CgroupDriver::Cgroupfs),
        ] {
            assert_eq!(cgroup_driver_of(docker), want, "{docker:?}");
        }
    }

    fn client() -> DockerClient {
        DockerClient::new(DockerEndpoint::Unix("/nonexistent/docker.sock".into()))
    }

    #[test]
    fn selinux_is_read_from_the_security_options() {
        let opts = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(selinux_of(Some(&opts(&[
            "name=seccomp,profile=builtin",
            "name=selinux"
        ]))));
        assert!(selinux_of(Some(&opts(&["selinux"]))));
        assert!(!selinux_of(Some(&opts(&[
            "name=apparmor",
            "name=seccomp,profile=builtin",
            "name=cgroupns"
        ]))));
        assert!(!selinux_of(None));
    }

    #[test]
    fn recursive_read_only_comes_with_api_1_44() {
        for (api, want) in [
            (None, false),
            (Some((1, 41)), false),
            (Some((1, 43)), false),
            (Some((1, 44)), true),
            (Some((1, 53)), true),
            (Some((2, 0)), true),
        ] {
            assert_eq!(has_recursive_read_only(api), want, "{api:?}");
        }
    }

    #[test]
    fn bollard_errors_are_classified_once() {
        let c = client();
        let server = |status_code: u16| BollardError::DockerResponseServerError {
            status_code,
            message: "m".into(),
        };
        type Check = fn(&Error) -> bool;
        let cases: Vec<(BollardError, Check)> = vec![
            (server(404), |e| matches!(e, Error::NotFound { .. })),
            (server(409), |e| {
                matches!(e, Error::FailedPrecondition { .. })
            }),
            (server(400), |e| {
                matches!(e, Error::InvalidArgument { field: "container", why }
                    if why == "\"abc\": docker refused it: m")
            }),
            (server(500), |e| matches!(e, Error::Docker { .. })),
            (BollardError::SocketNotFoundError("/x".into()), |e| {
                matches!(e, Error::Unavailable { .. })
            }),
            (
                BollardError::IOError {
                    err: std::io::ErrorKind::ConnectionRefused.into(),
                },
                |e| matches!(e, Error::Unavailable { .. }),
            ),
            (BollardError::RequestTimeoutError, |e| {
                matches!(e, Error::DeadlineExceeded { .. })
            }),
        ];
        for (err, want) in cases {
            let shown = format!("{err:?}");
            assert!(want(&c.classify(err, "container", "abc")), "{shown}");
        }
    }

    #[test]
    fn pull_messages_say_what_happened() {
        use PullFailure::*;
        let cases = [
            (
                "manifest for 127.0.0.1:5000/probe/bb:nope not found: manifest unknown: manifest unknown",
                false,
                Some(NotInRegistry),
            ),
            (
                "Head \"http://127.0.0.1:5001/v2/probe/none/manifests/x\": no basic auth credentials",
                false,
                Some(Authentication),
            ),
            (
                "unauthorized: authentication required",
                true,
                Some(Authentication),
            ),
            (
                "Get \"https://registry-1.docker.io/v2/\": unauthorized: incorrect username or password",
                true,
                Some(Authentication),
            ),
            (
                "pull access denied for nope, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
                false,
                Some(NotInRegistry),
            ),
            (
                "pull access denied for nope, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
                true,
                Some(Authentication),
            ),
            (
                "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
                false,
                Some(Unreachable),
            ),
            (
                "Get \"https://nosuchhost.invalid/v2/\": dial tcp: lookup nosuchhost.invalid on 10.0.0.53:53: no such host",
                false,
                Some(Unreachable),
            ),
            (
                "Get \"https://r.example/v2/\": net/http: TLS handshake timeout",
                false,
                Some(Unreachable),
            ),
            ("invalid reference format", false, Some(BadReference)),
            (
                "failed to register layer: no space left on device",
                false,
                None,
            ),
        ];
        for (message, creds, want) in cases {
            assert_eq!(pull_failure(message, creds), want, "{message}");
        }
    }

    #[test]
    fn pull_errors_name_registry_and_image() {
        let c = client();
        let target = PullTarget {
            image: "127.0.0.1:5001/x:y",
            registry: "127.0.0.1:5001",
            had_credentials: true,
        };
        let err = c.classify_pull(
            BollardError::DockerResponseServerError {
                status_code: 500,
                message: "unauthorized: authentication required".into(),
            },
            &target,
        );
        assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("127.0.0.1:5001") && text.contains("authentication"),
            "{text}"
        );

        let err = c.classify_pull(
            BollardError::DockerStreamError {
                error: "dial tcp 127.0.0.1:5001: connect: connection refused".into(),
            },
            &target,
        );
        assert!(matches!(err, Error::RegistryUnavailable { .. }), "{err}");

        // Unknown words: the general classification (404 is still not found).
        let err = c.classify_pull(
            BollardError::DockerResponseServerError {
                status_code: 404,
                message: "something new".into(),
            },
            &target,
        );
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_missing_socket_is_unavailable_at_once() {
        let c = client();
        let started = std::time::Instant::now();
        let err = c.get().await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/docker.sock"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
