//! The sandbox image: `--pod-infra-container-image` when it is present or
//! can be pulled, else dockercri's built-in pause image, which it carries
//! as a static program and imports into Docker on first need.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{CreateImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::context::Context;
use crate::error::{Error, Result};

/// Repository of the built-in pause image (pinned like the configured one).
pub const BUILTIN_REPOSITORY: &str = "dockercri/pause";
/// The built-in pause image, one tag per dockercri version.
pub const BUILTIN_IMAGE: &str = concat!("dockercri/pause:", env!("CARGO_PKG_VERSION"));
/// The static pause program built by build.rs from `pause/pause.c`.
static PAUSE_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));
/// After falling back, try the configured image again this much later.
const RETRY_CONFIGURED_AFTER: Duration = Duration::from_secs(300);

/// Remembers a fallback so that every RunPodSandbox on an air-gapped node
/// does not wait for a pull that cannot succeed.
#[derive(Debug, Default)]
pub struct PauseImage {
    fallback_since: Mutex<Option<Instant>>,
    /// The image last found in Docker, and when: trusted without asking
    /// Docker again until a create says it is missing (or, for the
    /// built-in fallback, until the configured image is due for a retry).
    present: std::sync::Mutex<Option<(String, Instant)>>,
}

impl PauseImage {
    fn known(&self, configured: &str) -> Option<String> {
        let present = self.present.lock().unwrap_or_else(|p| p.into_inner());
        let (image, since) = present.as_ref()?;
        let trusted = image == configured
            || (image == BUILTIN_IMAGE && since.elapsed() < RETRY_CONFIGURED_AFTER);
        trusted.then(|| image.clone())
    }

    fn found(&self, image: &str) -> String {
        let mut present = self.present.lock().unwrap_or_else(|p| p.into_inner());
        *present = Some((image.to_string(), Instant::now()));
        image.to_string()
    }

    /// Docker said the image is missing: the next [`ensure`] looks again.
    pub fn forget(&self) {
        *self.present.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The image to run the pause container from.
pub async fn ensure(ctx: &Context) -> Result<String> {
    let configured = ctx.config.pause_image.as_str();
    if let Some(image) = ctx.pause.known(configured) {
        return Ok(image);
    }
    let docker = ctx.docker.get().await?;
    if docker.inspect_image(configured).await.is_ok() {
        return Ok(ctx.pause.found(configured));
    }
    let mut fallback = ctx.pause.fallback_since.lock().await;
    if let Some(since) = *fallback
        && since.elapsed() < RETRY_CONFIGURED_AFTER
    {
        return builtin(ctx, &docker).await.map(|i| ctx.pause.found(&i));
    }
    let spec = crate::proto::ImageSpec {
        image: configured.to_string(),
        ..Default::default()
    };
    match crate::image::pull::pull(ctx, Some(&spec), None).await {
        Ok(_) => {
            *fallback = None;
            info!(image = configured, "pulled the sandbox image");
            Ok(ctx.pause.found(configured))
        }
        Err(why) => {
            warn!(
                image = configured,
                error = %why,
                fallback = BUILTIN_IMAGE,
                "cannot pull the sandbox image; using the built-in pause image"
            );
            *fallback = Some(Instant::now());
            builtin(ctx, &docker).await.map(|i| ctx.pause.found(&i))
        }
    }
}

/// Imports the built-in pause image unless Docker already has it. Other
/// dockercri processes may race us: the image is imported untagged and
/// tagged only while the tag is free, so no loser is left dangling.
async fn builtin(ctx: &Context, docker: &Docker) -> Result<String> {
    if docker.inspect_image(BUILTIN_IMAGE).await.is_ok() {
        return Ok(BUILTIN_IMAGE.to_string());
    }
    let mine = import(ctx, docker).await?;
    let tagged = docker
        .inspect_image(BUILTIN_IMAGE)
        .await
        .ok()
        .and_then(|i| i.id);
    if tagged.is_none() {
        let tag = BUILTIN_IMAGE.rsplit_once(':').map_or("latest", |(_, t)| t);
        let options = TagImageOptionsBuilder::default()
            .repo(BUILTIN_REPOSITORY)
            .tag(tag)
            .build();
        docker
            .tag_image(&mine, Some(options))
            .await
            .map_err(|e| ctx.docker.classify(e, "image", BUILTIN_IMAGE))?;
    }
    let winner = docker
        .inspect_image(BUILTIN_IMAGE)
        .await
        .ok()
        .and_then(|i| i.id);
    if winner.as_deref() != Some(mine.as_str()) {
        let _ = docker
            .remove_image(
                &mine,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    } else {
        info!(image = BUILTIN_IMAGE, id = %mine, "imported the built-in pause image");
    }
    Ok(BUILTIN_IMAGE.to_string())
}

/// Imports the pause rootfs as an untagged image; returns its id.
async fn import(ctx: &Context, docker: &Docker) -> Result<String> {
    let rootfs = rootfs_tar().map_err(|e| Error::io("building the pause image", e))?;
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .changes(vec![r#"ENTRYPOINT ["/pause"]"#.to_string()])
        .build();
    let mut stream =
        docker.create_image(Some(options), Some(bollard::body_full(rootfs.into())), None);
    let mut id = None;
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| ctx.docker.classify(e, "image", BUILTIN_IMAGE))?;
        if let Some(message) = item.error_detail.and_then(|d| d.message) {
            return Err(Error::Internal(format!(
                "importing {BUILTIN_IMAGE}: {message}"
            )));
        }
        if let Some(status) = item.status.filter(|s| s.starts_with("sha256:")) {
            id = Some(status);
        }
    }
    id.ok_or_else(|| {
        Error::Internal(format!(
            "importing {BUILTIN_IMAGE}: docker reported no image id"
        ))
    })
}

/// A rootfs holding only `/pause`.
fn rootfs_tar() -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(PAUSE_PROGRAM.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, "pause", PAUSE_PROGRAM)?;
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_a_static_elf() {
        assert_eq!(&PAUSE_PROGRAM[..4], b"\x7fELF");
        assert!(
            PAUSE_PROGRAM.len() < 2 << 20,
            "{} bytes",
            PAUSE_PROGRAM.len()
        );
    }

    /// build.rs compiles it for the build's TARGET (the cc crate), not for
    /// the build machine: class, byte order and machine match this binary's.
    #[test]
    fn the_program_is_built_for_the_target() {
        let elf = PAUSE_PROGRAM;
        let class = if cfg!(target_pointer_width = "64") {
            2
        } else {
            1
        };
        let (data, half): (u8, fn([u8; 2]) -> u16) = if cfg!(target_endian = "little") {
            (1, u16::from_le_bytes)
        } else {
            (2, u16::from_be_bytes)
        };
        assert_eq!((elf[4], elf[5]), (class, data), "ELF class and byte order");
        let machine = half([elf[18], elf[19]]);
        let want = match std::env::consts::ARCH {
            "x86_64" => 62,
            "x86" => 3,
            "aarch64" => 183,
            "arm" => 40,
            "riscv64" => 243,
            "powerpc64" => 21,
            "s390x" => 22,
            "loongarch64" => 258,
            other => panic!("add the ELF machine number of {other}"),
        };
        assert_eq!(machine, want, "ELF machine of the pause program");
    }

    #[test]
    fn the_rootfs_holds_an_executable_pause() {
        let tar = rootfs_tar().unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries, [("pause".to_string(), 0o755)]);
    }
}
