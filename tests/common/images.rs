//! Image test helpers: the two local registries `scripts/setup.sh` starts,
//! images unique to one test (committed from the shared busybox images,
//! pushed, then removed locally so that a CRI pull really pulls), and their
//! cleanup; and a registry proxy that stalls downloads. Never removes a
//! shared image.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{ContainerConfig, ContainerCreateBody};
use bollard::query_parameters::{
    CommitContainerOptions, CreateImageOptions, PushImageOptions, RemoveContainerOptions,
    RemoveImageOptions, TagImageOptions,
};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{DOCKER_SOCKET, docker, unique_id};

/// The open registry.
pub const OPEN_REGISTRY: &str = "127.0.0.1:5000";
/// The registry with htpasswd authentication.
pub const AUTH_REGISTRY: &str = "127.0.0.1:5001";
pub const REGISTRY_USER: &str = "dockercri-user";
pub const REGISTRY_PASS: &str = "dockercri-pass";
/// Label that makes each committed image unique.
const UNIQUE_LABEL: &str = "dockercri.test.image";

/// Credentials of [`AUTH_REGISTRY`] for bollard (pushes, checks).
pub fn registry_credentials() -> DockerCredentials {
    DockerCredentials {
        username: Some(REGISTRY_USER.into()),
        password: Some(REGISTRY_PASS.into()),
        serveraddress: Some(AUTH_REGISTRY.into()),
        ..Default::default()
    }
}

/// An image made for one test. Dropping it removes the image (by ID, with
/// every tag) from Docker; what was pushed stays in the registry.
pub struct TestImage {
    /// The image ID (`sha256:...`).
    pub id: String,
    /// `registry/dockercri-test/<unique>`, or the local repository.
    pub repo: String,
    /// The manifest digest in the registry (empty for local-only images).
    pub digest: String,
}

impl TestImage {
    /// `repo:tag`.
    pub fn tagged(&self, tag: &str) -> String {
        format!("{}:{tag}", self.repo)
    }

    /// The repository path without the registry host.
    pub fn path(&self) -> &str {
        self.repo
            .split_once('/')
            .map(|(_, path)| path)
            .unwrap_or_default()
    }

    /// `repo@digest`.
    pub fn by_digest(&self) -> String {
        format!("{}@{}", self.repo, self.digest)
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        remove_images(vec![self.id.clone()]);
    }
}

/// A new image with its own ID: `base` committed with a unique label,
/// tagged `repo:tag` for each tag. Stays local.
pub async fn local_image(base: &str, repo: &str, tags: &[&str]) -> TestImage {
    let d = docker().await;
    let unique = unique_id("img");
    let container = d
        .create_container(
            None,
            ContainerCreateBody {
                image: Some(base.into()),
                cmd: Some(vec!["true".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("create a container to commit")
        .id;
    let committed = d
        .commit_container(
            CommitContainerOptions {
                container: Some(container.clone()),
                repo: Some(repo.into()),
                tag: Some(tags.first().copied().unwrap_or("latest").into()),
                ..Default::default()
            },
            ContainerConfig {
                labels: Some(HashMap::from([(UNIQUE_LABEL.to_string(), unique)])),
                ..Default::default()
            },
        )
        .await;
    let _ = d
        .remove_container(
            &container,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    let id = committed.expect("commit").id;
    let image = TestImage {
        id,
        repo: repo.into(),
        digest: String::new(),
    };
    for tag in tags.iter().skip(1) {
        d.tag_image(
            &image.id,
            Some(TagImageOptions {
                repo: Some(repo.into()),
                tag: Some((*tag).into()),
            }),
        )
        .await
        .expect("tag");
    }
    image
}

/// A new image in `registry` under `dockercri-test/<unique>` with `tags`
/// (the same manifest under each), absent from Docker afterwards.
pub async fn pushed_image(registry: &str, base: &str, tags: &[&str]) -> TestImage {
    let repo = format!("{registry}/dockercri-test/{}", unique_id("pushed"));
    let image = local_image(base, &repo, tags).await;
    publish(image, registry, tags).await
}

/// Like [`pushed_image`], but the image is one layer of its own: a file of
/// `size` random bytes, so a pull must download (and cannot compress) it.
pub async fn pushed_random_image(registry: &str, size: usize, tag: &str) -> TestImage {
    let repo = format!("{registry}/dockercri-test/{}", unique_id("random"));
    let dir = super::tempdir();
    let mut data = vec![0u8; size];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("/dev/urandom"),
        &mut data,
    )
    .expect("random bytes");
    std::fs::write(dir.path().join("random"), data).expect("write random file");
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .args(["-cf", "-", "random"])
        .output()
        .expect("tar (Debian package tar)");
    assert!(tar.status.success(), "tar failed");
    let d = docker().await;
    let mut import = d.create_image(
        Some(CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.clone()),
            tag: Some(tag.into()),
            ..Default::default()
        }),
        Some(bollard::body_full(tonic::codegen::Bytes::from(tar.stdout))),
        None,
    );
    while let Some(item) = import.next().await {
        if let Err(e) = item {
            panic!("import {repo}:{tag}: {e}");
        }
    }
    let id = d
        .inspect_image(&format!("{repo}:{tag}"))
        .await
        .expect("imported image")
        .id
        .expect("an image ID");
    let image = TestImage {
        id,
        repo,
        digest: String::new(),
    };
    publish(image, registry, &[tag]).await
}

/// Pushes `image` under each tag, records its digest and removes the local
/// copy.
async fn publish(mut image: TestImage, registry: &str, tags: &[&str]) -> TestImage {
    let d = docker().await;
    let repo = image.repo.clone();
    let credentials = (registry == AUTH_REGISTRY).then(registry_credentials);
    for tag in tags {
        push(&d, &repo, tag, credentials.clone()).await;
    }
    let inspect = d.inspect_image(&image.id).await.expect("inspect pushed");
    image.digest = inspect
        .repo_digests
        .unwrap_or_default()
        .iter()
        .find_map(|d| d.strip_prefix(&format!("{repo}@")).map(str::to_string))
        .expect("a repo digest after push");
    remove_images(vec![image.id.clone()]);
    assert!(
        d.inspect_image(&image.id).await.is_err(),
        "local copy still there"
    );
    image
}

async fn push(d: &Docker, repo: &str, tag: &str, credentials: Option<DockerCredentials>) {
    let mut stream = d.push_image(
        repo,
        Some(PushImageOptions {
            tag: Some(tag.into()),
            ..Default::default()
        }),
        credentials,
    );
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            panic!("push {repo}:{tag}: {e}");
        }
    }
}

/// Removes images by ID with every tag (force), on a thread of its own so
/// that it works from `Drop`, also while panicking.
pub fn remove_images(ids: Vec<String>) {
    let cleanup = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(d) = Docker::connect_with_unix(DOCKER_SOCKET, 60, bollard::API_DEFAULT_VERSION)
            else {
                return;
            };
            for id in ids {
                let _ = d
                    .remove_image(
                        &id,
                        Some(RemoveImageOptions {
                            force: true,
                            ..Default::default()
                        }),
                        None,
                    )
                    .await;
            }
        });
    });
    let _ = cleanup.join();
}

/// True when Docker has an image by this name or ID.
pub async fn docker_has(name: &str) -> bool {
    docker().await.inspect_image(name).await.is_ok()
}

/// A proxy in front of the open registry that passes each connection's
/// first [`STALL_AFTER`] bytes from the registry and then holds the rest
/// until released: a pull that starts a layer download and then makes no
/// progress.
pub struct StallingRegistry {
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
    stalled: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

/// Manifests, configs and API checks are far smaller; a layer is not.
pub const STALL_AFTER: usize = 256 * 1024;

impl StallingRegistry {
    pub async fn start() -> StallingRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stalled = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let s = stalled.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(stall(conn, s.clone(), released.clone()));
            }
        });
        StallingRegistry {
            addr,
            task,
            stalled,
            release,
        }
    }

    /// How many downloads are being held right now or were.
    pub fn stalled(&self) -> usize {
        self.stalled.load(Ordering::SeqCst)
    }

    /// Lets the stalled downloads finish, then checks that `name` never
    /// appears: Docker's pull was cancelled too, not only dockercri's call
    /// (a live pull completes within milliseconds once released).
    pub async fn release_and_expect_cancelled(&self, name: &str) {
        assert!(
            self.stalled.load(Ordering::SeqCst) > 0,
            "no download stalled"
        );
        self.release.send_replace(true);
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            assert!(
                !docker_has(name).await,
                "the pull went on after the call ended"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for StallingRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn stall(
    client: tokio::net::TcpStream,
    stalled: Arc<AtomicUsize>,
    mut release: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(upstream) = tokio::net::TcpStream::connect(OPEN_REGISTRY).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = upstream.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut up_write).await;
    });
    let mut passed = 0;
    let mut buf = vec![0u8; 16 * 1024];
    while passed < STALL_AFTER {
        let want = buf.len().min(STALL_AFTER - passed);
        match up_read.read(&mut buf[..want]).await {
            Ok(n) if n > 0 => {
                if client_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                passed += n;
            }
            _ => return,
        }
    }
    stalled.fetch_add(1, Ordering::SeqCst);
    if release.wait_for(|go| *go).await.is_ok() {
        let _ = tokio::io::copy(&mut up_read, &mut client_write).await;
    }
    let _ = requests.await;
}
