//! Command line and config file: cri-dockerd's flag names, one TOML key per
//! flag (same spelling), flags win over the file, defaults last. The result
//! is a plain, validated [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Default CRI socket.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/dockercri.sock";
/// Default Docker Engine socket.
pub const DEFAULT_DOCKER_ENDPOINT: &str = "unix:///var/run/docker.sock";
/// Default sandbox (pause) image, as cri-dockerd's.
pub const DEFAULT_PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";
/// Default root directory for dockercri's own files.
pub const DEFAULT_ROOT_DIRECTORY: &str = "/var/lib/dockercri";
/// cri-dockerd's default root directory (`--cri-dockerd-root-directory`).
pub const DEFAULT_CRI_DOCKERD_ROOT_DIRECTORY: &str = "/var/lib/cri-dockerd";
/// Default streaming server address: loopback, ephemeral port.
pub const DEFAULT_STREAMING_BIND_ADDR: &str = "127.0.0.1:0";

/// What `--version` prints after the name: the crate's version, the git
/// commit it was built from (`build.rs`) and the CRI API it speaks (the
/// proto is checked against k8s.io/cri-api at this tag by
/// `tests/proto_contract.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DOCKERCRI_GIT_COMMIT"),
    ", CRI v1, k8s.io/cri-api v0.36.3)"
);

/// Command-line flags. Every field is optional so that a flag that was not
/// given can fall back to the config file, then to the default.
#[derive(Debug, Default, Parser)]
#[command(
    name = "dockercri",
    version = VERSION,
    about = "Kubernetes CRI runtime for Docker Engine"
)]
pub struct Flags {
    /// TOML config file; its keys are the flag names without the dashes in front.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where to serve CRI: unix:///path/to.sock, or fd:// for systemd socket activation.
    #[arg(long, value_name = "ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,
    /// Docker Engine endpoint: unix:///path or tcp://host:port.
    #[arg(long, value_name = "ENDPOINT")]
    pub docker_endpoint: Option<String>,
    /// The sandbox (pause) image.
    #[arg(long, value_name = "IMAGE")]
    pub pod_infra_container_image: Option<String>,
    /// Where dockercri keeps its own files.
    #[arg(long, value_name = "DIR")]
    pub root_directory: Option<PathBuf>,
    /// cri-dockerd's root directory, for a node switched from it: removing a
    /// pod cri-dockerd made also deletes its sandbox checkpoint there.
    #[arg(long, value_name = "DIR")]
    pub cri_dockerd_root_directory: Option<PathBuf>,
    /// Address of the exec/attach/port-forward streaming server.
    #[arg(long, value_name = "ADDR")]
    pub streaming_bind_addr: Option<String>,
    /// PEM certificate (chain) for the streaming server; with the key, it serves HTTPS.
    #[arg(long, value_name = "FILE")]
    pub streaming_tls_cert_file: Option<PathBuf>,
    /// PEM private key for the streaming server's certificate.
    #[arg(long, value_name = "FILE")]
    pub streaming_tls_key_file: Option<PathBuf>,
    /// "" for Docker's bridge network, or "cni".
    #[arg(long, value_name = "PLUGIN")]
    pub network_plugin: Option<String>,
    /// Directories of CNI plugin binaries, comma- or colon-separated.
    #[arg(long, value_name = "DIR")]
    pub cni_bin_dir: Option<String>,
    /// Directory of CNI network configurations.
    #[arg(long, value_name = "DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// Directory where CNI results are cached.
    #[arg(long, value_name = "DIR")]
    pub cni_cache_dir: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or a RUST_LOG directive.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log lines as plain text (coloured only on a terminal), or one JSON
    /// object per line for log shippers.
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<String>,
    /// Group that owns the CRI socket (default: docker if it exists, else root).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Cancel an image pull that makes no progress for this long (e.g. 1m, 30s).
    #[arg(long, value_name = "DURATION")]
    pub image_pull_progress_deadline: Option<String>,
    /// Clamp oom_score_adj values below dockercri's own up to it.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub restrict_oom_score_adj: Option<bool>,
    /// How long in-flight calls may run after SIGTERM before dockercri exits.
    #[arg(long, value_name = "DURATION")]
    pub shutdown_grace_period: Option<String>,
    /// How often the container index is compared with Docker's list, to
    /// heal events it missed (e.g. 30s).
    #[arg(long, value_name = "DURATION")]
    pub index_resync_period: Option<String>,
    /// Size of each file of Docker's own json-file log of a container
    /// (Docker's units: 20m, 512k, 1g); 0 leaves Docker's daemon.json log
    /// settings to every container.
    #[arg(long, value_name = "SIZE")]
    pub docker_log_max_size: Option<String>,
    /// Files of Docker's own log kept per container.
    #[arg(long, value_name = "COUNT")]
    pub docker_log_max_files: Option<u32>,
}

/// The config file: the same keys as the flags. Unknown keys are an error so
/// that a typo does not silently fall back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    container_runtime_endpoint: Option<String>,
    docker_endpoint: Option<String>,
    pod_infra_container_image: Option<String>,
    root_directory: Option<PathBuf>,
    cri_dockerd_root_directory: Option<PathBuf>,
    streaming_bind_addr: Option<String>,
    streaming_tls_cert_file: Option<PathBuf>,
    streaming_tls_key_file: Option<PathBuf>,
    network_plugin: Option<String>,
    cni_bin_dir: Option<String>,
    cni_conf_dir: Option<PathBuf>,
    cni_cache_dir: Option<PathBuf>,
    log_level: Option<String>,
    log_format: Option<String>,
    socket_group: Option<String>,
    image_pull_progress_deadline: Option<String>,
    restrict_oom_score_adj: Option<bool>,
    docker_log_max_size: Option<String>,
    docker_log_max_files: Option<u32>,
    shutdown_grace_period: Option<String>,
    index_resync_period: Option<String>,
}

/// Where the CRI server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A socket file dockercri creates (and removes on exit).
    Unix(PathBuf),
    /// The socket systemd passed in (`LISTEN_FDS`).
    Systemd,
}

/// The endpoint as the flag takes it: `unix:///run/dockercri.sock`, `fd://`.
impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(path) => write!(f, "unix://{}", path.display()),
            Listen::Systemd => f.write_str("fd://"),
        }
    }
}

/// How dockercri reaches Docker Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEndpoint {
    Unix(PathBuf),
    /// `tcp://host:port`, plain HTTP.
    Tcp(String),
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Pod networking mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkPlugin {
    /// Docker's own bridge network.
    DockerBridge,
    Cni,
}

/// The validated settings dockercri runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub docker: DockerEndpoint,
    pub pause_image: String,
    pub root_directory: PathBuf,
    /// Where cri-dockerd kept its files (its pods' checkpoints).
    pub cri_dockerd_root_directory: PathBuf,
    pub streaming_bind_addr: SocketAddr,
    /// (certificate, key) PEM files: the streaming server serves HTTPS.
    pub streaming_tls: Option<(PathBuf, PathBuf)>,
    pub network_plugin: NetworkPlugin,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cni_conf_dir: PathBuf,
    pub cni_cache_dir: PathBuf,
    pub log_level: Option<String>,
    pub log_format: LogFormat,
    /// `None`: docker if that group exists, else root.
    pub socket_group: Option<String>,
    pub image_pull_progress_deadline: Duration,
    /// `None`: detect at start-up whether the host allows lowering it.
    pub restrict_oom_score_adj: Option<bool>,
    pub shutdown_grace_period: Duration,
    pub index_resync_period: Duration,
    /// The bound on Docker's own log of each container dockercri creates;
    /// `None`: Docker's daemon.json settings apply.
    pub docker_log: Option<DockerLogLimit>,
}

/// Docker's json-file log, bounded: dockercri copies each container's
/// output into kubelet's CRI log, which kubelet rotates; Docker's copy is
/// only the buffer dockercri reads from (and catches up from after a
/// restart), so it need not keep every byte forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerLogLimit {
    /// Docker's `max-size`, as given (`20m`).
    pub max_size: String,
    /// Docker's `max-file`.
    pub max_files: u32,
}

/// Default size of each file of Docker's log per container.
pub const DEFAULT_DOCKER_LOG_MAX_SIZE: &str = "20m";
/// Default number of Docker log files per container (100 MiB in all).
pub const DEFAULT_DOCKER_LOG_MAX_FILES: u32 = 5;

/// Checks a size in Docker's notation (`units.RAMInBytes`): digits, an
/// optional `k`/`m`/`g`/`t`/`p` (any case), optionally `i` and `b`.
fn docker_size(text: &str) -> Result<(), String> {
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = text.split_at(digits);
    let unit = unit.to_ascii_lowercase();
    let unit_ok = matches!(
        unit.trim_end_matches('b').trim_end_matches('i'),
        "" | "k" | "m" | "g" | "t" | "p"
    ) && (unit.is_empty() || !unit.starts_with(['i', 'b']));
    if number.is_empty() || !unit_ok {
        return Err("expected a size such as 20m, 512k or 1g".into());
    }
    Ok(())
}

/// Why the command line or config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {key} {value:?}: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: String,
    },
}

fn invalid(key: &'static str, value: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        why: why.into(),
    }
}

impl Config {
    /// Reads the config file named by `--config` (if any) and merges it under
    /// the flags.
    pub fn load(flags: Flags) -> Result<Config, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::merge(flags, file)
    }

    /// Parses a config file's text (for tests and `--config`).
    pub fn from_toml(flags: Flags, path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Config::merge(flags, file)
    }

    fn merge(flags: Flags, file: FileConfig) -> Result<Config, ConfigError> {
        let endpoint = flags
            .container_runtime_endpoint
            .or(file.container_runtime_endpoint)
            .unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let docker = flags
            .docker_endpoint
            .or(file.docker_endpoint)
            .unwrap_or_else(|| DEFAULT_DOCKER_ENDPOINT.into());
        let streaming = flags
            .streaming_bind_addr
            .or(file.streaming_bind_addr)
            .unwrap_or_else(|| DEFAULT_STREAMING_BIND_ADDR.into());
        let streaming_tls = match (
            flags
                .streaming_tls_cert_file
                .or(file.streaming_tls_cert_file),
            flags.streaming_tls_key_file.or(file.streaming_tls_key_file),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(cert), None) => {
                return Err(invalid(
                    "streaming-tls-key-file",
                    "",
                    format!("required with streaming-tls-cert-file {}", cert.display()),
                ));
            }
            (None, Some(key)) => {
                return Err(invalid(
                    "streaming-tls-cert-file",
                    "",
                    format!("required with streaming-tls-key-file {}", key.display()),
                ));
            }
        };
        let plugin = flags
            .network_plugin
            .or(file.network_plugin)
            .unwrap_or_default();
        let pause_image = flags
            .pod_infra_container_image
            .or(file.pod_infra_container_image)
            .unwrap_or_else(|| DEFAULT_PAUSE_IMAGE.into());
        if pause_image.trim().is_empty() {
            return Err(invalid(
                "pod-infra-container-image",
                &pause_image,
                "must not be empty",
            ));
        }
        let root_directory = flags
            .root_directory
            .or(file.root_directory)
            .unwrap_or_else(|| DEFAULT_ROOT_DIRECTORY.into());
        if !root_directory.is_absolute() {
            return Err(invalid(
                "root-directory",
                &root_directory.display().to_string(),
                "must be an absolute path",
            ));
        }
        let cri_dockerd_root_directory = flags
            .cri_dockerd_root_directory
            .or(file.cri_dockerd_root_directory)
            .unwrap_or_else(|| DEFAULT_CRI_DOCKERD_ROOT_DIRECTORY.into());
        if !cri_dockerd_root_directory.is_absolute() {
            return Err(invalid(
                "cri-dockerd-root-directory",
                &cri_dockerd_root_directory.display().to_string(),
                "must be an absolute path",
            ));
        }
        let log_level = flags.log_level.or(file.log_level);
        if let Some(level) = &log_level {
            tracing_subscriber::EnvFilter::try_new(level)
                .map_err(|e| invalid("log-level", level, e.to_string()))?;
        }
        let max_size = flags
            .docker_log_max_size
            .or(file.docker_log_max_size)
            .unwrap_or_else(|| DEFAULT_DOCKER_LOG_MAX_SIZE.into());
        let max_files = flags
            .docker_log_max_files
            .or(file.docker_log_max_files)
            .unwrap_or(DEFAULT_DOCKER_LOG_MAX_FILES);
        let docker_log = if max_size.trim_start_matches('0').is_empty() {
            None
        } else {
            docker_size(&max_size).map_err(|why| invalid("docker-log-max-size", &max_size, why))?;
            if max_files == 0 {
                return Err(invalid("docker-log-max-files", "0", "must be at least 1"));
            }
            Some(DockerLogLimit {
                max_size,
                max_files,
            })
        };
        let log_format = match flags.log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid("log-format", other, "expected text or json"));
            }
        };
        let pull_deadline = flags
            .image_pull_progress_deadline
            .or(file.image_pull_progress_deadline)
            .unwrap_or_else(|| "1m".into());
        let grace = flags
            .shutdown_grace_period
            .or(file.shutdown_grace_period)
            .unwrap_or_else(|| "10s".into());
        let resync = flags
            .index_resync_period
            .or(file.index_resync_period)
            .unwrap_or_else(|| "30s".into());
        let index_resync_period = parse_duration(&resync)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                invalid(
                    "index-resync-period",
                    &resync,
                    "expected a duration above zero, e.g. 30s",
                )
            })?;
        Ok(Config {
            listen: parse_listen(&endpoint)?,
            docker: parse_docker_endpoint(&docker)?,
            pause_image,
            root_directory,
            cri_dockerd_root_directory,
            streaming_bind_addr: streaming.parse().map_err(|_| {
                invalid(
                    "streaming-bind-addr",
                    &streaming,
                    "expected IP:PORT, e.g. 127.0.0.1:0",
                )
            })?,
            streaming_tls,
            network_plugin: match plugin.as_str() {
                "" => NetworkPlugin::DockerBridge,
                "cni" => NetworkPlugin::Cni,
                _ => {
                    return Err(invalid(
                        "network-plugin",
                        &plugin,
                        "expected \"\" (Docker bridge) or \"cni\"",
                    ));
                }
            },
            cni_bin_dirs: flags
                .cni_bin_dir
                .or(file.cni_bin_dir)
                .unwrap_or_else(|| "/opt/cni/bin".into())
                // Commas as cri-dockerd, colons as CNI_PATH.
                .split([',', ':'])
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect(),
            cni_conf_dir: flags
                .cni_conf_dir
                .or(file.cni_conf_dir)
                .unwrap_or_else(|| "/etc/cni/net.d".into()),
            cni_cache_dir: flags
                .cni_cache_dir
                .or(file.cni_cache_dir)
                .unwrap_or_else(|| "/var/lib/cni/cache".into()),
            log_level,
            log_format,
            socket_group: flags.socket_group.or(file.socket_group),
            image_pull_progress_deadline: parse_duration(&pull_deadline)
                .map_err(|why| invalid("image-pull-progress-deadline", &pull_deadline, why))?,
            restrict_oom_score_adj: flags.restrict_oom_score_adj.or(file.restrict_oom_score_adj),
            shutdown_grace_period: parse_duration(&grace)
                .map_err(|why| invalid("shutdown-grace-period", &grace, why))?,
            index_resync_period,
            docker_log,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn parse_listen(endpoint: &str) -> Result<Listen, ConfigError> {
    const KEY: &str = "container-runtime-endpoint";
    if endpoint == "fd://" || endpoint == "fd:" {
        return Ok(Listen::Systemd);
    }
    match endpoint.strip_prefix("unix://") {
        Some(path) if path.starts_with('/') => {
            // sun_path holds 108 bytes including the terminating NUL.
            if path.len() > 107 {
                return Err(invalid(KEY, endpoint, "socket path longer than 107 bytes"));
            }
            Ok(Listen::Unix(PathBuf::from(path)))
        }
        Some(_) => Err(invalid(KEY, endpoint, "the socket path must be absolute")),
        None => Err(invalid(
            KEY,
            endpoint,
            "expected unix:///path/to.sock or fd://",
        )),
    }
}

fn parse_docker_endpoint(endpoint: &str) -> Result<DockerEndpoint, ConfigError> {
    const KEY: &str = "docker-endpoint";
    if let Some(path) = endpoint.strip_prefix("unix://") {
        if path.starts_with('/') {
            return Ok(DockerEndpoint::Unix(PathBuf::from(path)));
        }
        return Err(invalid(KEY, endpoint, "the socket path must be absolute"));
    }
    if let Some(addr) = endpoint.strip_prefix("tcp://") {
        if !addr.is_empty() && addr.contains(':') {
            return Ok(DockerEndpoint::Tcp(addr.to_string()));
        }
        return Err(invalid(KEY, endpoint, "expected tcp://host:port"));
    }
    Err(invalid(
        KEY,
        endpoint,
        "expected unix:///path/to/docker.sock or tcp://host:port",
    ))
}

/// Parses Go-style durations as cri-dockerd's flags take them: `90s`, `1m`,
/// `1m30s`, `500ms`, `2h`; a bare number is seconds. Go's limit (about 292
/// years) is the longest: past it a duration is an error, never a panic, and
/// no timer or deadline built from it can overflow a clock.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = sum_duration(text)?;
    if duration > MAX_DURATION {
        return Err(format!(
            "{text:?} is too long a duration (at most {}h)",
            MAX_DURATION.as_secs() / 3600
        ));
    }
    Ok(duration)
}

/// Go's `time.Duration` maximum: 2^63 - 1 nanoseconds.
const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

fn sum_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| format!("missing unit in {text:?}"))?;
        let (number, tail) = rest.split_at(digits);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("bad number in {text:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("unknown unit {unit:?} (use ms, s, m or h)")),
        };
        let too_long = || format!("{text:?} is too long a duration");
        let part = Duration::try_from_secs_f64(value * scale).map_err(|_| too_long())?;
        total = total.checked_add(part).ok_or_else(too_long)?;
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut argv = vec!["dockercri"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn the_version_line_names_the_cri_api_the_version_rpc_reports() {
        let cri = format!("CRI {}", crate::cri::RUNTIME_API_VERSION);
        assert!(VERSION.contains(&cri), "{VERSION}");
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
    }

    #[test]
    fn defaults_match_cri_dockerd_conventions() {
        let c = Config::load(flags(&[])).unwrap();
        assert_eq!(c.listen, Listen::Unix("/run/dockercri.sock".into()));
        assert_eq!(
            c.docker,
            DockerEndpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(c.pause_image, "registry.k8s.io/pause:3.10");
        assert_eq!(c.root_directory, PathBuf::from("/var/lib/dockercri"));
        assert_eq!(
            c.cri_dockerd_root_directory,
            PathBuf::from("/var/lib/cri-dockerd")
        );
        assert_eq!(c.streaming_bind_addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.network_plugin, NetworkPlugin::DockerBridge);
        assert_eq!(c.cni_bin_dirs, vec![PathBuf::from("/opt/cni/bin")]);
        assert_eq!(c.image_pull_progress_deadline, Duration::from_secs(60));
        assert_eq!(c.restrict_oom_score_adj, None);
    }

    #[test]
    fn dockers_own_log_is_bounded_unless_told_otherwise() {
        let c = Config::load(flags(&[])).unwrap();
        assert_eq!(
            c.docker_log,
            Some(DockerLogLimit {
                max_size: "20m".into(),
                max_files: 5
            })
        );
        let c = Config::load(flags(&[
            "--docker-log-max-size",
            "512KiB",
            "--docker-log-max-files",
            "2",
        ]))
        .unwrap();
        assert_eq!(c.docker_log.unwrap().max_size, "512KiB");
        // 0 hands every container Docker's daemon.json settings.
        let c = Config::load(flags(&["--docker-log-max-size", "0"])).unwrap();
        assert_eq!(c.docker_log, None);
        for size in ["1g", "10m", "100", "5MB", "3kb", "7mib"] {
            assert!(docker_size(size).is_ok(), "{size}");
        }
        for bad in ["m", "ten", "10x", "10ib", "-1m", "1.5.2m", ""] {
            let flag = format!("--docker-log-max-size={bad}");
            let err = Config::load(flags(&[&flag]));
            if bad.is_empty() {
                assert!(err.is_ok(), "empty leaves Docker's settings");
                continue;
            }
            let err = err.unwrap_err().to_string();
            assert!(err.contains("docker-log-max-size"), "{bad}: {err}");
        }
        let err = Config::load(flags(&["--docker-log-max-files", "0"])).unwrap_err();
        assert!(err.to_string().contains("docker-log-max-files"), "{err}");
    }

    #[test]
    fn cni_bin_dir_is_a_list() {
        let c = Config::load(flags(&["--cni-bin-dir", "/a,/b:/c,"])).unwrap();
        let want: Vec<PathBuf> = ["/a", "/b", "/c"].iter().map(PathBuf::from).collect();
        assert_eq!(c.cni_bin_dirs, want);
    }

    #[test]
    fn flags_win_over_the_file() {
        let text = r#"
            docker-endpoint = "unix:///from/file.sock"
            pod-infra-container-image = "file/pause:1"
            network-plugin = "cni"
        "#;
        let c = Config::from_toml(
            flags(&["--pod-infra-container-image", "flag/pause:2"]),
            Path::new("x.toml"),
            text,
        )
        .unwrap();
        assert_eq!(c.pause_image, "flag/pause:2");
        assert_eq!(c.docker, DockerEndpoint::Unix("/from/file.sock".into()));
        assert_eq!(c.network_plugin, NetworkPlugin::Cni);
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--container-runtime-endpoint", "tcp://x:1"],
                "container-runtime-endpoint",
            ),
            (
                &["--container-runtime-endpoint", "unix://relative.sock"],
                "container-runtime-endpoint",
            ),
            (&["--docker-endpoint", "http://x"], "docker-endpoint"),
            (&["--streaming-bind-addr", "nope"], "streaming-bind-addr"),
            (
                &["--streaming-tls-cert-file", "/c.pem"],
                "streaming-tls-key-file",
            ),
            (
                &["--streaming-tls-key-file", "/k.pem"],
                "streaming-tls-cert-file",
            ),
            (&["--network-plugin", "calico"], "network-plugin"),
            (&["--root-directory", "rel/dir"], "root-directory"),
            (&["--log-level", "info,[[["], "log-level"),
            (
                &["--image-pull-progress-deadline", "5 parsecs"],
                "image-pull-progress-deadline",
            ),
        ];
        for (args, key) in cases {
            let err = Config::load(flags(args)).unwrap_err().to_string();
            assert!(err.contains(key), "{args:?}: {err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let err = Config::from_toml(flags(&[]), Path::new("c.toml"), "docker-endpont = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.toml") && err.contains("docker-endpont"),
            "{err}"
        );
    }

    #[test]
    fn durations_parse_like_go() {
        for (text, want) in [
            ("1m", 60_000),
            ("90s", 90_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("2h", 7_200_000),
            ("15", 15_000),
            ("1.5s", 1_500),
        ] {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_millis(want),
                "{text}"
            );
        }
        for bad in ["", "s", "5x", "m5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_too_long_are_errors_not_panics() {
        for huge in [
            "99999999999999999999h",
            "18446744073709551615s1s",
            "5124095576030431h1h",
            "2562047788015215h",
            "2562048h",
            "9223372037s",
            "1e400h",
            "99999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999h",
        ] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
        assert!(parse_duration("2562047h").is_ok(), "Go's longest");
        let err = Config::load(flags(&["--shutdown-grace-period", "99999999999999999999h"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("shutdown-grace-period"), "{err}");
        for key in ["image-pull-progress-deadline", "index-resync-period"] {
            let text = format!("{key} = \"99999999999999999999h\"");
            let err = Config::from_toml(Flags::default(), Path::new("x.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn systemd_activation_endpoint() {
        let c = Config::load(flags(&["--container-runtime-endpoint", "fd://"])).unwrap();
        assert_eq!(c.listen, Listen::Systemd);
        assert_eq!(c.listen.to_string(), "fd://");
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(
            Config::load(flags(&[])).unwrap().log_format,
            LogFormat::Text
        );
        let c = Config::load(flags(&["--log-format", "json"])).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let c = Config::from_toml(
            Flags::default(),
            Path::new("x.toml"),
            "log-format = \"text\"",
        );
        assert_eq!(c.unwrap().log_format, LogFormat::Text);
        let err = Config::load(flags(&["--log-format", "logfmt"])).unwrap_err();
        assert!(err.to_string().contains("log-format"), "{err}");
    }

    #[test]
    fn the_endpoint_shows_as_its_url() {
        let c = Config::load(flags(&[])).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_ENDPOINT);
    }
}
