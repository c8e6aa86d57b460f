//! ImageService against the real dockerd and the two local registries
//! (`scripts/setup.sh`: open on 127.0.0.1:5000, htpasswd on :5001): pulls in
//! every reference form, credentials, errors and deadlines; list, status,
//! remove and filesystem info as kubelet's image manager and GC use them.
//! Every test pulls and removes only images it made itself.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::images::*;
use common::*;
use dockercri::proto::image_service_client::ImageServiceClient;
use dockercri::proto::{
    AuthConfig, Image, ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest,
    ListImagesRequest, PullImageRequest, RemoveImageRequest, StreamImagesRequest,
};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

type Client = ImageServiceClient<Channel>;

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

async fn pull(
    c: &mut Client,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, tonic::Status> {
    c.pull_image(PullImageRequest {
        image: spec(image),
        auth,
        sandbox_config: None,
    })
    .await
    .map(|r| r.into_inner().image_ref)
}

async fn status(c: &mut Client, image: &str) -> Option<Image> {
    c.image_status(ImageStatusRequest {
        image: spec(image),
        verbose: false,
    })
    .await
    .unwrap_or_else(|e| panic!("ImageStatus {image}: {e}"))
    .into_inner()
    .image
}

async fn remove(c: &mut Client, image: &str) -> Result<(), tonic::Status> {
    c.remove_image(RemoveImageRequest { image: spec(image) })
        .await
        .map(|_| ())
}

async fn list(c: &mut Client, filter: Option<&str>) -> Vec<Image> {
    c.list_images(ListImagesRequest {
        filter: filter.map(|f| ImageFilter { image: spec(f) }),
    })
    .await
    .unwrap_or_else(|e| panic!("ListImages {filter:?}: {e}"))
    .into_inner()
    .images
}

fn password(user: &str, pass: &str) -> Option<AuthConfig> {
    Some(AuthConfig {
        username: user.into(),
        password: pass.into(),
        ..Default::default()
    })
}

async fn local_id(name: &str) -> String {
    docker()
        .await
        .inspect_image(name)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .id
        .unwrap()
}

#[tokio::test]
async fn pull_by_tag_answers_the_image_id() {
    let h = Harness::start().await;
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX, &["v1"]).await;
    let mut c = h.img();
    let id = pull(&mut c, &img.tagged("v1"), None).await.unwrap();
    assert_eq!(id, img.id);
    assert_eq!(local_id(&img.tagged("v1")).await, img.id);
    let got = status(&mut c, &id)
        .await
        .expect("pulled image has a status");
    assert_eq!(got.id, img.id);
    assert!(got.repo_tags.contains(&img.tagged("v1")), "{got:?}");
    assert!(got.repo_digests.contains(&img.by_digest()), "{got:?}");
    assert!(h.logs().contains("pulled image"), "{}", h.logs());
}

#[tokio::test]
async fn pull_by_digest_and_by_tag_with_digest() {
    let h = Harness::start().await;
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX, &["v1"]).await;
    let mut c = h.img();
    assert_eq!(pull(&mut c, &img.by_digest(), None).await.unwrap(), img.id);
    assert!(docker_has(&img.by_digest()).await);
    // Pulling by digest creates no tag.
    assert!(!docker_has(&img.tagged("v1")).await);

    remove_images(vec![img.id.clone()]);
    let both = format!("{}:v1@{}", img.repo, img.digest);
    assert_eq!(pull(&mut c, &both, None).await.unwrap(), img.id);
    assert_eq!(
        status(&mut c, &both).await.map(|i| i.id),
        Some(img.id.clone())
    );
}

#[tokio::test]
async fn pull_by_short_name_means_latest() {
    let h = Harness::start().await;
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX, &["latest"]).await;
    let mut c = h.img();
    assert_eq!(pull(&mut c, &img.repo, None).await.unwrap(), img.id);
    assert_eq!(local_id(&img.tagged("latest")).await, img.id);
    assert_eq!(
        status(&mut c, &img.repo).await.map(|i| i.id),
        Some(img.id.clone())
    );
}

#[tokio::test]
async fn pull_with_credentials_from_the_auth_registry() {
    let h = Harness::start().await;
    let img = pushed_image(AUTH_REGISTRY, BUSYBOX, &["v1"]).await;
    let mut c = h.img();
    let name = img.tagged("v1");

    for (what, auth) in [
        ("no credentials", None),
        ("wrong password", password(REGISTRY_USER, "wrong")),
        ("unknown user", password("nobody", REGISTRY_PASS)),
    ] {
        let err = pull(&mut c, &name, auth).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: {err:?}");
        assert!(
            err.message().contains(AUTH_REGISTRY) && err.message().contains("authentication"),
            "{what}: {}",
            err.message()
        );
        assert!(!err.message().contains("wrong"), "{}", err.message());
        assert!(!docker_has(&name).await, "{what}");
    }
    assert!(
        !h.logs().contains(REGISTRY_PASS),
        "a password reached the log"
    );

    // username + password
    assert_eq!(
        pull(&mut c, &name, password(REGISTRY_USER, REGISTRY_PASS))
            .await
            .unwrap(),
        img.id
    );
    remove_images(vec![img.id.clone()]);
    // the `auth` field (base64 user:password) with an explicit server address
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{REGISTRY_USER}:{REGISTRY_PASS}"));
    let auth = Some(AuthConfig {
        auth: encoded,
        server_address: AUTH_REGISTRY.into(),
        ..Default::default()
    });
    assert_eq!(pull(&mut c, &name, auth).await.unwrap(), img.id);
    assert!(docker_has(&name).await);
    assert!(
        !h.logs().contains(REGISTRY_PASS),
        "a password reached the log"
    );
}

#[tokio::test]
async fn pull_of_a_missing_image_is_not_found() {
    let h = Harness::start().await;
    let mut c = h.img();
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX, &["v1"]).await;
    let missing_repo = format!("{OPEN_REGISTRY}/dockercri-test/{}:v1", unique_id("none"));
    let missing_digest = format!("{}@sha256:{}", img.repo, "0".repeat(64));
    for name in [missing_repo, img.tagged("no-such-tag"), missing_digest] {
        let err = pull(&mut c, &name, None).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{name}: {err:?}");
        assert!(err.message().contains(OPEN_REGISTRY), "{}", err.message());
    }
}

#[tokio::test]
async fn an_unreachable_registry_is_unavailable() {
    let h = Harness::start().await;
    let mut c = h.img();
    // Nothing listens on port 1.
    let err = pull(&mut c, "127.0.0.1:1/dockercri-test/x:v1", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("127.0.0.1:1"), "{}", err.message());
}

#[tokio::test]
async fn malformed_references_are_invalid_arguments() {
    let h = Harness::start().await;
    let mut c = h.img();
    let bad = [
        "",
        "Busybox",
        "busybox:",
        ":tag",
        "a::b",
        "with space",
        "x@sha256:abc",
        "-x/y",
        "127.0.0.1:5000/UPPER:v1",
    ];
    for name in bad {
        let err = pull(&mut c, name, None).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "pull {name:?}: {err:?}");
        assert!(err.message().contains("image"), "{}", err.message());
        let err = c
            .image_status(ImageStatusRequest {
                image: spec(name),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "status {name:?}");
        let err = remove(&mut c, name).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "remove {name:?}");
    }
    // No image spec at all.
    let err = c.pull_image(PullImageRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // An image ID cannot be pulled.
    let err = pull(&mut c, &local_id(BUSYBOX).await, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // A list filter is checked too (an empty one means none).
    let err = c
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: spec("a::b"),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(!list(&mut c, Some("")).await.is_empty());
}

#[tokio::test]
async fn a_pull_without_progress_is_cancelled_after_the_deadline() {
    let img = pushed_random_image(OPEN_REGISTRY, 2 << 20, "v1").await;
    let h = Harness::start_with(&["--image-pull-progress-deadline", "2s"]).await;
    let registry = StallingRegistry::start().await;
    let name = format!("{}/{}:v1", registry.addr, img.path());
    let mut c = h.img();
    let started = Instant::now();
    let err = pull(&mut c, &name, None).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("no progress"), "{}", err.message());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "{took:?}"
    );
    registry.release_and_expect_cancelled(&name).await;
}

#[tokio::test]
async fn the_call_deadline_cancels_the_pull_and_long_pulls_log_progress() {
    let img = pushed_random_image(OPEN_REGISTRY, 2 << 20, "v1").await;
    let h = Harness::start().await;
    let registry = StallingRegistry::start().await;
    let name = format!("{}/{}:v1", registry.addr, img.path());
    let mut c = h.img();
    let mut req = tonic::Request::new(PullImageRequest {
        image: spec(&name),
        ..Default::default()
    });
    // Long enough for one progress line (every 10 s), far below the
    // 1m progress deadline.
    req.set_timeout(Duration::from_secs(12));
    let started = Instant::now();
    let err = c.pull_image(req).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    registry.release_and_expect_cancelled(&name).await;
    // The server dropped the call: it is still serving.
    assert!(status(&mut c, BUSYBOX).await.is_some());
    let logs = h.logs();
    let progress = logs
        .lines()
        .find(|l| l.contains("pull in progress"))
        .unwrap_or_else(|| panic!("no progress logged:\n{logs}"));
    assert!(
        progress.contains("INFO") && progress.contains("layers done") && progress.contains("MiB"),
        "{progress}"
    );
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_both_succeed() {
    let h = Harness::start().await;
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX, &["v1"]).await;
    let name = img.tagged("v1");
    let (mut a, mut b) = (h.img(), h.img());
    let (x, y) = tokio::join!(pull(&mut a, &name, None), pull(&mut b, &name, None));
    assert_eq!(x.unwrap(), img.id);
    assert_eq!(y.unwrap(), img.id);
}

#[tokio::test]
async fn list_reports_tags_sizes_and_users() {
    let h = Harness::start().await;
    let mut c = h.img();
    let first = std::time::Instant::now();
    let all = list(&mut c, None).await;
    let cold = first.elapsed();
    let warm_start = std::time::Instant::now();
    let again = list(&mut c, None).await;
    let warm = warm_start.elapsed();
    eprintln!(
        "ListImages of {} images: first {cold:?}, warm {warm:?}",
        all.len()
    );
    assert_eq!(all.len(), again.len());

    let find = |tag: &str| {
        all.iter()
            .find(|i| i.repo_tags.iter().any(|t| t == tag))
            .unwrap_or_else(|| panic!("{tag} not listed"))
            .clone()
    };
    let plain = find(BUSYBOX);
    assert_eq!(plain.id, local_id(BUSYBOX).await);
    assert!(plain.size > 0);
    assert_eq!((plain.uid, plain.username.as_str()), (None, ""));
    assert_eq!(
        plain.spec.as_ref().map(|s| s.image.as_str()),
        Some(plain.id.as_str())
    );
    assert!(!plain.pinned);

    let numeric = find(BUSYBOX_UID);
    assert_eq!(numeric.uid.map(|u| u.value), Some(1234));
    assert_eq!(numeric.username, "");
    let named = find(BUSYBOX_NAMED);
    assert_eq!(named.uid, None);
    assert_eq!(named.username, "app");

    // The same through ImageStatus.
    let s = status(&mut c, BUSYBOX_UID).await.unwrap();
    assert_eq!(s.uid.map(|u| u.value), Some(1234));
    let s = status(&mut c, BUSYBOX_NAMED).await.unwrap();
    assert_eq!(s.username, "app");
}

#[tokio::test]
async fn list_filters_by_name_tag_digest_and_id() {
    let h = Harness::start().await;
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX, &["v1", "v2"]).await;
    let mut c = h.img();
    pull(&mut c, &img.tagged("v1"), None).await.unwrap();
    pull(&mut c, &img.tagged("v2"), None).await.unwrap();
    let ids = |images: Vec<Image>| images.into_iter().map(|i| i.id).collect::<Vec<_>>();
    let only = vec![img.id.clone()];
    assert_eq!(ids(list(&mut c, Some(&img.repo)).await), only);
    assert_eq!(ids(list(&mut c, Some(&img.tagged("v2"))).await), only);
    assert_eq!(ids(list(&mut c, Some(&img.by_digest())).await), only);
    assert_eq!(ids(list(&mut c, Some(&img.id)).await), only);
    assert!(list(&mut c, Some(&img.tagged("v3"))).await.is_empty());
    let listed = list(&mut c, Some(&img.repo)).await;
    let mut tags = listed[0].repo_tags.clone();
    tags.sort();
    assert_eq!(tags, vec![img.tagged("v1"), img.tagged("v2")]);
    // Short names normalise: dockercri-test/busybox is docker.io/dockercri-test/busybox.
    let local = ids(list(&mut c, Some("docker.io/dockercri-test/busybox:latest")).await);
    assert_eq!(local, vec![local_id(BUSYBOX).await]);
    assert!(list(&mut c, None).await.iter().any(|i| i.id == img.id));
}

#[tokio::test]
async fn stream_images_sends_what_list_images_answers() {
    let h = Harness::start().await;
    let mut c = h.img();
    let mut listed: Vec<String> = list(&mut c, None).await.into_iter().map(|i| i.id).collect();
    let mut stream = c
        .stream_images(StreamImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(!chunk.images.is_empty(), "every message carries images");
        streamed.extend(chunk.images.into_iter().map(|i| i.id));
    }
    // Other tests add and remove images meanwhile: compare the images that
    // no test removes (the shared test images).
    let mut stable = Vec::new();
    for image in [BUSYBOX, BUSYBOX_UID, BUSYBOX_NAMED] {
        stable.push(local_id(image).await);
    }
    listed.retain(|id| stable.contains(id));
    streamed.retain(|id| stable.contains(id));
    listed.sort();
    streamed.sort();
    assert_eq!(streamed.len(), stable.len());
    assert_eq!(streamed, listed);
    let mut filtered = c
        .stream_images(StreamImagesRequest {
            filter: Some(ImageFilter {
                image: spec(BUSYBOX_UID),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let chunk = filtered.next().await.unwrap().unwrap();
    assert_eq!(chunk.images.len(), 1);
    assert_eq!(chunk.images[0].uid.map(|u| u.value), Some(1234));
    assert!(filtered.next().await.is_none());
}

#[tokio::test]
async fn sandbox_and_builtin_pause_images_are_pinned() {
    let sandbox_repo = format!("dockercri-test/{}", unique_id("sandbox"));
    let sandbox = local_image(BUSYBOX, &sandbox_repo, &["v1"]).await;
    let pause_tag = unique_id("t");
    let builtin = local_image(BUSYBOX, "dockercri/pause", &[&pause_tag]).await;
    let h = Harness::start_with(&["--pod-infra-container-image", &sandbox.tagged("v1")]).await;
    let mut c = h.img();
    let all = list(&mut c, None).await;
    let pinned = |id: &str| all.iter().find(|i| i.id == id).map(|i| i.pinned);
    assert_eq!(pinned(&sandbox.id), Some(true));
    assert_eq!(pinned(&builtin.id), Some(true));
    assert_eq!(pinned(&local_id(BUSYBOX).await), Some(false));
    assert!(status(&mut c, &sandbox.id).await.unwrap().pinned);
    assert!(
        status(&mut c, &format!("dockercri/pause:{pause_tag}"))
            .await
            .unwrap()
            .pinned
    );
}

#[tokio::test]
async fn status_resolves_every_reference_form() {
    let h = Harness::start().await;
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX_UID, &["v1"]).await;
    let mut c = h.img();
    pull(&mut c, &img.tagged("v1"), None).await.unwrap();
    let hex = img.id.trim_start_matches("sha256:").to_string();
    let forms = [
        img.id.clone(),
        hex.clone(),
        hex[..12].to_string(),
        img.tagged("v1"),
        img.by_digest(),
        format!("{}:v1@{}", img.repo, img.digest),
    ];
    for form in &forms {
        let got = status(&mut c, form).await;
        assert_eq!(
            got.as_ref().map(|i| i.id.as_str()),
            Some(img.id.as_str()),
            "{form}"
        );
        assert_eq!(
            got.and_then(|i| i.uid).map(|u| u.value),
            Some(1234),
            "{form}"
        );
    }
    // Short and fully qualified names of a local image.
    let plain = local_id(BUSYBOX).await;
    for form in [
        "dockercri-test/busybox",
        "dockercri-test/busybox:latest",
        "docker.io/dockercri-test/busybox:latest",
    ] {
        assert_eq!(
            status(&mut c, form).await.map(|i| i.id),
            Some(plain.clone()),
            "{form}"
        );
    }
}

#[tokio::test]
async fn status_of_a_missing_image_is_empty() {
    let h = Harness::start().await;
    let mut c = h.img();
    let missing = [
        format!("{OPEN_REGISTRY}/dockercri-test/{}:v1", unique_id("none")),
        format!("sha256:{}", "f".repeat(64)),
        "dockercri-test/busybox:no-such-tag".to_string(),
        format!("dockercri-test/busybox@sha256:{}", "0".repeat(64)),
    ];
    for name in missing {
        let r = c
            .image_status(ImageStatusRequest {
                image: spec(&name),
                verbose: true,
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_inner();
        assert!(r.image.is_none(), "{name}: {r:?}");
        assert!(r.info.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn verbose_status_carries_the_image_config() {
    let h = Harness::start().await;
    let mut c = h.img();
    let r = c
        .image_status(ImageStatusRequest {
            image: spec(BUSYBOX_NAMED),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&r.info["info"]).unwrap();
    assert_eq!(info["Config"]["User"], "app", "{info}");
    assert_eq!(info["Id"].as_str(), r.image.map(|i| i.id).as_deref());
    let r = c
        .image_status(ImageStatusRequest {
            image: spec(BUSYBOX_NAMED),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.info.is_empty());
}

#[tokio::test]
async fn removing_by_tag_removes_every_tag_and_digest() {
    let h = Harness::start().await;
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX, &["a", "b", "c"]).await;
    let mut c = h.img();
    for tag in ["a", "b", "c"] {
        pull(&mut c, &img.tagged(tag), None).await.unwrap();
    }
    // Also under another repository name.
    docker()
        .await
        .tag_image(
            &img.id,
            Some(bollard::query_parameters::TagImageOptions {
                repo: Some(format!("{}-other", img.repo)),
                tag: Some("x".into()),
            }),
        )
        .await
        .unwrap();
    remove(&mut c, &img.tagged("b")).await.unwrap();
    assert!(!docker_has(&img.id).await, "image still there");
    for name in [
        img.tagged("a"),
        img.tagged("c"),
        img.by_digest(),
        format!("{}-other:x", img.repo),
    ] {
        assert!(!docker_has(&name).await, "{name} still there");
    }
    assert!(status(&mut c, &img.id).await.is_none());
    assert!(list(&mut c, None).await.iter().all(|i| i.id != img.id));
}

#[tokio::test]
async fn removing_by_id_and_by_digest() {
    let h = Harness::start().await;
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX, &["v1"]).await;
    let mut c = h.img();
    pull(&mut c, &img.tagged("v1"), None).await.unwrap();
    remove(&mut c, &img.id).await.unwrap();
    assert!(!docker_has(&img.id).await);

    pull(&mut c, &img.tagged("v1"), None).await.unwrap();
    remove(&mut c, &img.by_digest()).await.unwrap();
    assert!(!docker_has(&img.id).await);
    assert!(!docker_has(&img.tagged("v1")).await);
}

#[tokio::test]
async fn removing_what_is_gone_succeeds() {
    let h = Harness::start().await;
    let mut c = h.img();
    remove(
        &mut c,
        &format!("{OPEN_REGISTRY}/dockercri-test/{}:v1", unique_id("none")),
    )
    .await
    .unwrap();
    remove(&mut c, &format!("sha256:{}", "e".repeat(64)))
        .await
        .unwrap();
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX, &["v1"]).await;
    pull(&mut c, &img.tagged("v1"), None).await.unwrap();
    remove(&mut c, &img.id).await.unwrap();
    remove(&mut c, &img.id).await.unwrap();
    remove(&mut c, &img.tagged("v1")).await.unwrap();
}

#[tokio::test]
async fn concurrent_removes_of_one_image_succeed() {
    let h = Harness::start().await;
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX, &["a", "b"]).await;
    let mut c = h.img();
    pull(&mut c, &img.tagged("a"), None).await.unwrap();
    pull(&mut c, &img.tagged("b"), None).await.unwrap();
    let (mut x, mut y, mut z) = (h.img(), h.img(), h.img());
    let (tag_a, tag_b) = (img.tagged("a"), img.tagged("b"));
    let (r1, r2, r3) = tokio::join!(
        remove(&mut x, &img.id),
        remove(&mut y, &tag_a),
        remove(&mut z, &tag_b)
    );
    r1.unwrap();
    r2.unwrap();
    r3.unwrap();
    assert!(!docker_has(&img.id).await);
}

#[tokio::test]
async fn removing_an_image_in_use_names_the_container() {
    // The image outlives the harness, which removes the container first.
    let img = pushed_image(OPEN_REGISTRY, BUSYBOX, &["v1"]).await;
    let h = Harness::start().await;
    let mut c = h.img();
    pull(&mut c, &img.tagged("v1"), None).await.unwrap();
    let d = docker().await;
    let name = unique_id("uses-image");
    let container = d
        .create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            bollard::models::ContainerCreateBody {
                image: Some(img.tagged("v1")),
                labels: Some(h.labels()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    for by in [img.id.clone(), img.tagged("v1")] {
        let err = remove(&mut c, &by).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(
            err.message().contains(&name) && err.message().contains(&container),
            "{}",
            err.message()
        );
    }
    assert!(
        docker_has(&img.tagged("v1")).await,
        "nothing may be untagged"
    );
    d.remove_container(&container, None).await.unwrap();
    remove(&mut c, &img.id).await.unwrap();
    assert!(!docker_has(&img.id).await);
}

#[tokio::test]
async fn image_fs_info_reports_docker_storage() {
    let h = Harness::start().await;
    let mut c = h.img();
    // A container, so that there is a writable layer to count.
    docker()
        .await
        .create_container(
            None,
            bollard::models::ContainerCreateBody {
                image: Some(BUSYBOX.into()),
                labels: Some(h.labels()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let r = c
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let root = docker()
        .await
        .info()
        .await
        .unwrap()
        .docker_root_dir
        .unwrap();
    assert_eq!(r.image_filesystems.len(), 1);
    let fs = &r.image_filesystems[0];
    let mountpoint = &fs.fs_id.as_ref().unwrap().mountpoint;
    assert_eq!(mountpoint, &root);
    assert!(std::path::Path::new(mountpoint).is_dir());
    // At least the three busybox test images' layers.
    assert!(fs.used_bytes.unwrap().value > 1_000_000, "{fs:?}");
    assert!(fs.inodes_used.unwrap().value > 100, "{fs:?}");
    assert!(fs.timestamp >= before, "{fs:?}");
    assert_eq!(r.container_filesystems.len(), 1);
    let ctr = &r.container_filesystems[0];
    assert_eq!(&ctr.fs_id.as_ref().unwrap().mountpoint, &root);
    assert!(ctr.used_bytes.unwrap().value >= 4096, "{ctr:?}");
    assert!(ctr.inodes_used.unwrap().value >= 1, "{ctr:?}");

    // Later calls answer from the last sample, fast.
    let started = Instant::now();
    for _ in 0..5 {
        let again = c
            .image_fs_info(ImageFsInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(again.image_filesystems[0].timestamp >= fs.timestamp);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
