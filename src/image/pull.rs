//! `PullImage`: pulls a reference through dockerd with the request's
//! credentials and answers the image ID. The call's deadline cancels the
//! pull (dropping the stream closes Docker's request, which cancels it), so
//! does `--image-pull-progress-deadline` without progress; long pulls log
//! their progress at most every [`PROGRESS_LOG_EVERY`].

use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine;
use bollard::auth::DockerCredentials;
use bollard::models::CreateImageInfo;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;
use tracing::info;

use crate::context::Context;
use crate::docker::client::PullTarget;
use crate::docker::reference::{ImageName, Reference};
use crate::error::{Error, Result};
use crate::image::requested;
use crate::proto::{AuthConfig, ImageSpec, PullImageResponse};

/// How often a running pull logs its progress at info level.
pub const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(10);
/// Slack over the progress deadline for bollard's own wait for Docker's
/// first answer, so that ours fires first and says why.
const RESPONSE_SLACK: Duration = Duration::from_secs(30);

/// `PullImage`.
pub async fn pull(
    ctx: &Context,
    spec: Option<&ImageSpec>,
    auth: Option<&AuthConfig>,
) -> Result<PullImageResponse> {
    let (input, name) = requested(spec)?;
    let reference = match name {
        ImageName::Ref(r) => r,
        ImageName::Id(_) => {
            return Err(Error::invalid(
                "image",
                format!("{input:?} is an image ID; a pull needs a repository reference"),
            ));
        }
    };
    let image = reference.canonical();
    let credentials = credentials(auth, reference.domain())?;
    let target = PullTarget {
        image: &image,
        registry: reference.domain(),
        had_credentials: credentials.is_some(),
    };
    let deadline = ctx.config.image_pull_progress_deadline;
    let docker = ctx
        .docker
        .get()
        .await?
        .with_timeout(deadline + RESPONSE_SLACK);
    let options = CreateImageOptions {
        from_image: Some(reference.name()),
        tag: Some(pull_tag(&reference).to_string()),
        ..Default::default()
    };
    info!(reference = %image, "pulling image");
    let started = Instant::now();
    let mut progress = Progress::default();
    let mut stream = docker.create_image(Some(options), None, credentials);
    // Progress is logged on a timer, so that a stalled pull says where it
    // stands too; any line from Docker counts as progress.
    let mut log_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + PROGRESS_LOG_EVERY,
        PROGRESS_LOG_EVERY,
    );
    let stall = tokio::time::sleep(deadline);
    tokio::pin!(stall);
    loop {
        tokio::select! {
            item = stream.next() => {
                let Some(item) = item else { break };
                let update = item.map_err(|e| ctx.docker.classify_pull(e, &target))?;
                progress.observe(&update);
                stall.as_mut().reset(tokio::time::Instant::now() + deadline);
            }
            () = &mut stall => {
                return Err(Error::PullStalled {
                    image,
                    after: deadline,
                });
            }
            _ = log_tick.tick() => {
                info!(reference = %image, progress = %progress, "pull in progress");
            }
        }
    }
    drop(stream);
    let inspect = docker
        .inspect_image(&image)
        .await
        .map_err(|e| ctx.docker.classify(e, "image", &image))?;
    ctx.images.users.remember(&inspect);
    let id = inspect
        .id
        .ok_or_else(|| Error::Internal(format!("docker reported image {image:?} without an ID")))?;
    info!(reference = %image, id = %id, elapsed = ?started.elapsed(), "pulled image");
    Ok(PullImageResponse { image_ref: id })
}

/// Docker's `tag` parameter: the digest when there is one (it wins over a
/// tag), else the tag, `latest` by default. Never empty: an empty tag
/// would pull every tag of the repository.
fn pull_tag(reference: &Reference) -> &str {
    reference
        .digest()
        .unwrap_or_else(|| reference.tag_or_latest())
}

/// The registry credentials of a pull, or `None` when the request has none.
/// `auth` (base64 `user:password`) is decoded, since dockerd only reads
/// username and password; the server address defaults to the reference's
/// registry. Errors never echo a secret.
pub fn credentials(auth: Option<&AuthConfig>, registry: &str) -> Result<Option<DockerCredentials>> {
    let Some(a) = auth else {
        return Ok(None);
    };
    let given = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let (mut username, mut password) = (given(&a.username), given(&a.password));
    if username.is_none() && password.is_none() && !a.auth.is_empty() {
        let bad = || Error::invalid("auth.auth", "not the base64 encoding of user:password");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, pass) = text.split_once(':').ok_or_else(bad)?;
        username = given(user);
        password = given(pass);
    }
    let identitytoken = given(&a.identity_token);
    let registrytoken = given(&a.registry_token);
    if username.is_none()
        && password.is_none()
        && identitytoken.is_none()
        && registrytoken.is_none()
    {
        return Ok(None);
    }
    Ok(Some(DockerCredentials {
        username,
        password,
        serveraddress: Some(given(&a.server_address).unwrap_or_else(|| registry.to_string())),
        identitytoken,
        registrytoken,
        ..Default::default()
    }))
}

/// What Docker said so far about each layer of a pull.
#[derive(Debug, Default)]
pub struct Progress {
    /// In the order Docker first named them.
    layers: Vec<(String, Layer)>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Layer {
    phase: Phase,
    current: u64,
    total: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Waiting,
    Downloading,
    Extracting,
    Done,
}

impl Progress {
    /// Takes one line of Docker's pull stream.
    pub fn observe(&mut self, info: &CreateImageInfo) {
        let (Some(id), Some(status)) = (info.id.as_deref(), info.status.as_deref()) else {
            return;
        };
        let phase = match status {
            "Pulling fs layer" | "Waiting" => Phase::Waiting,
            "Downloading" | "Verifying Checksum" | "Download complete" => Phase::Downloading,
            "Extracting" => Phase::Extracting,
            "Pull complete" | "Already exists" => Phase::Done,
            // "Pulling from <repo>" (id = the tag) and anything new.
            _ => return,
        };
        let layer = match self.layers.iter().position(|(l, _)| l == id) {
            Some(i) => &mut self.layers[i].1,
            None => {
                self.layers.push((id.to_string(), Layer::default()));
                let last = self.layers.len() - 1;
                &mut self.layers[last].1
            }
        };
        layer.phase = phase;
        let detail = info.progress_detail.as_ref();
        let current = detail
            .and_then(|d| d.current)
            .and_then(|c| u64::try_from(c).ok());
        let total = detail
            .and_then(|d| d.total)
            .and_then(|t| u64::try_from(t).ok());
        match status {
            "Downloading" => {
                layer.current = current.unwrap_or(layer.current);
                layer.total = total.unwrap_or(layer.total);
            }
            "Download complete" => layer.current = layer.total,
            _ => {}
        }
    }

    /// (layers done, layers known).
    pub fn layers_done(&self) -> (usize, usize) {
        let done = self
            .layers
            .iter()
            .filter(|(_, l)| l.phase == Phase::Done)
            .count();
        (done, self.layers.len())
    }
}

impl fmt::Display for Progress {
    /// `2/3 layers done; 1a2b3c4d5e6f 1.5MiB/4.0MiB, ...`: bytes downloaded
    /// of each layer not done yet.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (done, known) = self.layers_done();
        write!(f, "{done}/{known} layers done")?;
        let mut sep = "; ";
        for (id, l) in self.layers.iter().filter(|(_, l)| l.phase != Phase::Done) {
            match l.phase {
                Phase::Waiting => write!(f, "{sep}{id} waiting")?,
                Phase::Downloading => {
                    write!(f, "{sep}{id} {}/{}", Bytes(l.current), Bytes(l.total))?
                }
                Phase::Extracting => write!(f, "{sep}{id} extracting {}", Bytes(l.total))?,
                Phase::Done => {}
            }
            sep = ", ";
        }
        Ok(())
    }
}

/// A byte count in binary units.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{}B", self.0)
        } else {
            write!(f, "{value:.1}{}", UNITS[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ProgressDetail;

    fn auth(f: impl FnOnce(&mut AuthConfig)) -> AuthConfig {
        let mut a = AuthConfig::default();
        f(&mut a);
        a
    }

    #[test]
    fn credentials_reach_docker_in_its_shape() {
        assert_eq!(credentials(None, "r").unwrap(), None);
        assert_eq!(
            credentials(Some(&AuthConfig::default()), "r").unwrap(),
            None
        );

        let c = credentials(
            Some(&auth(|a| {
                a.username = "u".into();
                a.password = "p".into();
            })),
            "127.0.0.1:5001",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(c.serveraddress.as_deref(), Some("127.0.0.1:5001"));

        // `auth` is decoded; an explicit server address wins.
        let c = credentials(
            Some(&auth(|a| {
                a.auth = "dXNlcjpwYTpzcw==".into(); // user:pa:ss
                a.server_address = "https://index.docker.io/v1/".into();
            })),
            "docker.io",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("user"), Some("pa:ss"))
        );
        assert_eq!(
            c.serveraddress.as_deref(),
            Some("https://index.docker.io/v1/")
        );

        let c = credentials(
            Some(&auth(|a| {
                a.identity_token = "id".into();
                a.registry_token = "reg".into();
            })),
            "r",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.identitytoken.as_deref(), Some("id"));
        assert_eq!(c.registrytoken.as_deref(), Some("reg"));
        assert_eq!(c.username, None);

        for bad in ["%%%", "bm9jb2xvbg=="] {
            let err = credentials(Some(&auth(|a| a.auth = bad.into())), "r").unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
            assert!(!err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn the_tag_parameter_is_never_empty() {
        let d = "sha256:f6b8ff48435b3df92061911bdea5f4e25c7710a6ccf4c52003bbe1662784e430";
        for (input, want) in [
            ("busybox", "latest"),
            ("busybox:1.36", "1.36"),
            (&format!("busybox@{d}") as &str, d),
            (&format!("busybox:1.36@{d}") as &str, d),
        ] {
            assert_eq!(pull_tag(&Reference::parse(input).unwrap()), want, "{input}");
        }
    }

    fn line(id: &str, status: &str, current: Option<i64>, total: Option<i64>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail { current, total }),
            ..Default::default()
        }
    }

    #[test]
    fn progress_tracks_bytes_per_layer() {
        let mut p = Progress::default();
        for l in [
            line("v1", "Pulling from x/y", None, None),
            line("aaa", "Pulling fs layer", None, None),
            line("bbb", "Pulling fs layer", None, None),
            line("ccc", "Already exists", None, None),
            line("aaa", "Downloading", Some(1024), Some(4 * 1024 * 1024)),
            line("bbb", "Downloading", Some(10), Some(100)),
            line("bbb", "Download complete", None, None),
            line("bbb", "Extracting", Some(50), Some(100)),
        ] {
            p.observe(&l);
        }
        assert_eq!(p.layers_done(), (1, 3));
        assert_eq!(
            p.to_string(),
            "1/3 layers done; aaa 1.0KiB/4.0MiB, bbb extracting 100B"
        );
        p.observe(&line("aaa", "Pull complete", None, None));
        p.observe(&line("bbb", "Pull complete", None, None));
        assert_eq!(p.to_string(), "3/3 layers done");
    }
}
