//! Pure translation of Docker's image views into CRI `Image`s, and the
//! matching rules behind `ListImages` filters and pinning. No I/O.

use bollard::models::{ImageInspect, ImageSummary};

use crate::docker::reference::{ImageName, Reference, is_lower_hex};
use crate::proto::{Image, ImageSpec, Int64Value};

/// The repository of dockercri's built-in pause image
/// (`dockercri/pause:<version>`): always pinned.
pub const BUILTIN_PAUSE_REPOSITORY: &str = "docker.io/dockercri/pause";

/// What Docker 20.10 reports for an untagged image's tags and digests.
const NONE_TAG: &str = "<none>:<none>";
const NONE_DIGEST: &str = "<none>@<none>";

/// The image's default user as kubelet reads it (`USER` of the config):
/// `uid[:gid]` gives the uid, `name[:group]` the user name, empty neither.
pub fn user_of(config_user: &str) -> (Option<i64>, String) {
    let user = config_user.split(':').next().unwrap_or_default();
    if user.is_empty() {
        return (None, String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

/// Drops Docker's `<none>` placeholders.
fn real(names: &[String], placeholder: &str) -> Vec<String> {
    names
        .iter()
        .filter(|n| n.as_str() != placeholder && !n.is_empty())
        .cloned()
        .collect()
}

/// The CRI image from a `docker images` entry and its config's `USER`.
pub fn image_from_summary(s: &ImageSummary, user: &str, pinned: &Pinned) -> Image {
    let repo_tags = real(&s.repo_tags, NONE_TAG);
    let repo_digests = real(&s.repo_digests, NONE_DIGEST);
    image(&s.id, repo_tags, repo_digests, s.size, user, pinned)
}

/// The CRI image from `docker image inspect`.
pub fn image_from_inspect(i: &ImageInspect, pinned: &Pinned) -> Image {
    let user = i
        .config
        .as_ref()
        .and_then(|c| c.user.as_deref())
        .unwrap_or_default();
    image(
        i.id.as_deref().unwrap_or_default(),
        real(i.repo_tags.as_deref().unwrap_or_default(), NONE_TAG),
        real(i.repo_digests.as_deref().unwrap_or_default(), NONE_DIGEST),
        i.size.unwrap_or_default(),
        user,
        pinned,
    )
}

fn image(
    id: &str,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    size: i64,
    user: &str,
    pinned: &Pinned,
) -> Image {
    let (uid, username) = user_of(user);
    Image {
        id: id.to_string(),
        pinned: pinned.is_pinned(id, &repo_tags, &repo_digests),
        repo_tags,
        repo_digests,
        size: u64::try_from(size).unwrap_or_default(),
        uid: uid.map(|value| Int64Value { value }),
        username,
        spec: Some(ImageSpec {
            image: id.to_string(),
            ..Default::default()
        }),
    }
}

/// Which images image GC must leave alone: the configured sandbox image and
/// dockercri's built-in pause image (any tag).
#[derive(Debug, Clone)]
pub struct Pinned {
    sandbox: Option<ImageMatcher>,
}

impl Pinned {
    /// `pause_image` is `--pod-infra-container-image`.
    pub fn new(pause_image: &str) -> Pinned {
        Pinned {
            sandbox: ImageMatcher::parse(pause_image).ok(),
        }
    }

    pub fn is_pinned(&self, id: &str, repo_tags: &[String], repo_digests: &[String]) -> bool {
        let builtin = repo_tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .any(|r| r.name() == BUILTIN_PAUSE_REPOSITORY);
        builtin
            || self
                .sandbox
                .as_ref()
                .is_some_and(|m| m.exact(id, repo_tags, repo_digests))
    }
}

/// A `ListImages` filter (or the pause image) against Docker's names for an
/// image, compared in normalised form (`busybox` = `docker.io/library/busybox`).
#[derive(Debug, Clone)]
pub struct ImageMatcher {
    name: ImageName,
    /// The input, when it could also be a short image ID.
    id_prefix: Option<String>,
}

impl ImageMatcher {
    pub fn parse(input: &str) -> Result<ImageMatcher, crate::docker::reference::ReferenceError> {
        let name = ImageName::parse(input)?;
        let hex = input.strip_prefix("sha256:").unwrap_or(input);
        let id_prefix = is_lower_hex(hex).then(|| format!("sha256:{hex}"));
        Ok(ImageMatcher { name, id_prefix })
    }

    /// The filter rule: an ID (or ID prefix) matches that image; a name
    /// without tag or digest matches every tag and digest of the repository
    /// (as `docker images NAME`); a tag or digest matches exactly.
    pub fn matches(&self, id: &str, repo_tags: &[String], repo_digests: &[String]) -> bool {
        if let ImageName::Ref(r) = &self.name
            && r.is_name_only()
        {
            let same_repo = |n: &String| Reference::parse(n).is_ok_and(|p| p.name() == r.name());
            if repo_tags.iter().chain(repo_digests).any(same_repo) {
                return true;
            }
            return self.id_matches(id);
        }
        self.exact(id, repo_tags, repo_digests)
    }

    /// What Docker's lookup would resolve to this image: the ID, a short
    /// ID, the tag (`latest` by default) or the digest.
    pub fn exact(&self, id: &str, repo_tags: &[String], repo_digests: &[String]) -> bool {
        match &self.name {
            ImageName::Id(full) => full == id,
            ImageName::Ref(r) => {
                let canonical = r.canonical();
                let names = if r.digest().is_some() {
                    repo_digests
                } else {
                    repo_tags
                };
                names
                    .iter()
                    .filter_map(|n| Reference::parse(n).ok())
                    .any(|n| n.canonical() == canonical)
                    || self.id_matches(id)
            }
        }
    }

    fn id_matches(&self, id: &str) -> bool {
        self.id_prefix.as_deref().is_some_and(|p| id.starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "sha256:8282fd603d02aaaabbbbccccddddeeeeffff0000111122223333444455556666";
    const DIGEST: &str = "sha256:f6b8ff48435b3df92061911bdea5f4e25c7710a6ccf4c52003bbe1662784e430";

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn user_gives_uid_or_username() {
        let cases = [
            ("", None, ""),
            ("1234", Some(1234), ""),
            ("0", Some(0), ""),
            ("1234:5678", Some(1234), ""),
            ("app", None, "app"),
            ("app:staff", None, "app"),
            (":1234", None, ""),
        ];
        for (user, uid, name) in cases {
            assert_eq!(user_of(user), (uid, name.to_string()), "{user:?}");
        }
    }

    #[test]
    fn summaries_become_cri_images() {
        let s = ImageSummary {
            id: ID.into(),
            repo_tags: strings(&["<none>:<none>"]),
            repo_digests: strings(&["<none>@<none>"]),
            size: 1234,
            ..Default::default()
        };
        let img = image_from_summary(&s, "app", &Pinned::new("registry.k8s.io/pause:3.10"));
        assert_eq!(img.id, ID);
        assert!(img.repo_tags.is_empty() && img.repo_digests.is_empty());
        assert_eq!(img.size, 1234);
        assert_eq!((img.uid, img.username.as_str()), (None, "app"));
        assert_eq!(img.spec.map(|s| s.image).as_deref(), Some(ID));
        assert!(!img.pinned);

        let i = ImageInspect {
            id: Some(ID.into()),
            repo_tags: Some(strings(&["busybox:latest"])),
            size: Some(-1),
            config: Some(bollard::models::ImageConfig {
                user: Some("1234".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let img = image_from_inspect(&i, &Pinned::new("busybox"));
        assert_eq!(img.repo_tags, strings(&["busybox:latest"]));
        assert_eq!(img.size, 0);
        assert_eq!(img.uid, Some(Int64Value { value: 1234 }));
        assert!(img.pinned, "busybox is the sandbox image here");
    }

    #[test]
    fn pinning_covers_the_sandbox_and_builtin_pause_images() {
        let p = Pinned::new("registry.k8s.io/pause:3.10");
        let pinned =
            |tags: &[&str], digests: &[&str]| p.is_pinned(ID, &strings(tags), &strings(digests));
        assert!(pinned(&["registry.k8s.io/pause:3.10"], &[]));
        assert!(!pinned(&["registry.k8s.io/pause:3.9"], &[]));
        assert!(pinned(&["dockercri/pause:3.10-1"], &[]));
        assert!(pinned(&["docker.io/dockercri/pause:x"], &[]));
        assert!(!pinned(&["dockercri/pause-other:1"], &[]));
        assert!(!pinned(&["busybox:latest"], &[]));

        let by_digest = Pinned::new(&format!("registry.k8s.io/pause@{DIGEST}"));
        assert!(by_digest.is_pinned(
            ID,
            &[],
            &strings(&[&format!("registry.k8s.io/pause@{DIGEST}")])
        ));
        assert!(Pinned::new(ID).is_pinned(ID, &[], &[]));
    }

    #[test]
    fn filters_match_like_docker_lookups() {
        let tags = strings(&["busybox:latest", "busybox:1.36", "127.0.0.1:5000/x/y:v1"]);
        let digests = strings(&[&format!("127.0.0.1:5000/x/y@{DIGEST}")]);
        let cases = [
            ("busybox", true),
            ("busybox:latest", true),
            ("docker.io/library/busybox:1.36", true),
            ("busybox:1.37", false),
            ("127.0.0.1:5000/x/y", true),
            ("127.0.0.1:5000/x/y:v1", true),
            ("127.0.0.1:5000/x/y:v2", false),
            (&format!("127.0.0.1:5000/x/y@{DIGEST}") as &str, true),
            (&format!("127.0.0.1:5000/x/y:v9@{DIGEST}") as &str, true),
            (&format!("127.0.0.1:5000/other@{DIGEST}") as &str, false),
            (ID, true),
            (&ID["sha256:".len()..], true),
            ("8282fd603d02", true),
            ("sha256:8282fd", true),
            ("8282fd603d03", false),
            ("alpine", false),
        ];
        for (filter, want) in cases {
            let m = ImageMatcher::parse(filter).unwrap();
            assert_eq!(m.matches(ID, &tags, &digests), want, "{filter}");
        }
    }
}
