//! Image references as Docker reads them: parsing and normalisation after
//! `github.com/distribution/reference` (`ParseNormalizedNamed`,
//! `ParseAnyReference`), so that `busybox` means
//! `docker.io/library/busybox:latest` here exactly as it does to dockerd.
//!
//! Hand-written rather than taken from oci-spec's `distribution` feature:
//! that brings derive_builder, darling, getset, strum and const_format for
//! one grammar, and has no way back to Docker's familiar forms, which we need
//! to compare what kubelet sends with what `docker images` reports.

use std::fmt;

/// The registry of short names.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker's other spelling of [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of one-component names on Docker Hub (`busybox`).
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag a reference without tag or digest means.
pub const DEFAULT_TAG: &str = "latest";
/// distribution/reference's `NameTotalLengthMax`.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// distribution/reference's tag grammar: `[\w][\w.-]{0,127}`.
const TAG_LENGTH_MAX: usize = 128;

/// A parsed, normalised image reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// What an image field of a CRI request names: an image ID or a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageName {
    /// A full image ID, always `sha256:<64 hex>`.
    Id(String),
    /// A name reference; a short hex string is one too (and may also be a
    /// short image ID: Docker tries the name first, then the ID prefix).
    Ref(Reference),
}

/// Why a string is not an image reference; the text completes
/// "invalid reference: ...".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceError(pub String);

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReferenceError {}

fn bad(why: impl Into<String>) -> ReferenceError {
    ReferenceError(why.into())
}

impl Reference {
    /// Parses a name reference with Docker's normalisation
    /// (`ParseNormalizedNamed`): the domain defaults to `docker.io`, and
    /// one-component Docker Hub names get `library/`. No default tag is
    /// added (see [`Reference::tag_or_latest`]).
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(bad("empty reference"));
        }
        if is_full_hex_id(input) {
            return Err(bad(
                "a 64-character hexadecimal string is an image ID, not a repository name",
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest)?;
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/'
        // (earlier colons belong to a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &rest[at + 1..];
                validate_tag(tag)?;
                (&rest[..at], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(bad("missing repository name"));
        }
        let (domain, path) = split_domain(name);
        validate_domain(&domain)?;
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        validate_path(&path)?;
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(bad(format!(
                "repository name longer than {NAME_TOTAL_LENGTH_MAX} characters"
            )));
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host (and port): `docker.io`, `127.0.0.1:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry: `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The normalised repository name: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag to pull when the reference names no digest: its own, or
    /// `latest`.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }

    /// The form Docker stores and resolves: `name@digest` when there is a
    /// digest (it wins over a tag, as in Docker's reference store), else
    /// `name:tag` with `latest` by default.
    pub fn canonical(&self) -> String {
        match &self.digest {
            Some(digest) => format!("{}@{digest}", self.name()),
            None => format!("{}:{}", self.name(), self.tag_or_latest()),
        }
    }

    /// True when the reference names neither tag nor digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }
}

impl fmt::Display for Reference {
    /// The full normalised form, as written: `name[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl ImageName {
    /// Reads what a CRI image field may hold (`ParseAnyReference`): a full
    /// ID with or without `sha256:`, else a name reference.
    pub fn parse(input: &str) -> Result<ImageName, ReferenceError> {
        if let Some(hex) = input.strip_prefix("sha256:")
            && is_full_hex_id(hex)
        {
            return Ok(ImageName::Id(input.to_string()));
        }
        if is_full_hex_id(input) {
            return Ok(ImageName::Id(format!("sha256:{input}")));
        }
        Reference::parse(input).map(ImageName::Ref)
    }

    /// The string to hand to dockerd's image lookup (`inspect`, `delete`):
    /// the input itself (Docker also resolves short IDs from it), except
    /// that `name:tag@digest` becomes `name@digest`, as Docker resolves it.
    pub fn lookup(&self, input: &str) -> String {
        match self {
            ImageName::Id(id) => id.clone(),
            ImageName::Ref(r) if r.tag.is_some() && r.digest.is_some() => r.canonical(),
            ImageName::Ref(_) => input.to_string(),
        }
    }
}

/// `[a-f0-9]{64}`: what Docker refuses as a repository name.
fn is_full_hex_id(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

/// True for a non-empty string of lowercase hex digits (a possible short ID).
pub fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `splitDockerDomain`: the first component is a domain when it has a `.`
/// or a `:`, is `localhost`, or has upper case letters.
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path
    };
    (domain, path)
}

/// `domain := host [':' port]`, host a DNS name, IPv4 address or
/// `[IPv6]`.
fn validate_domain(domain: &str) -> Result<(), ReferenceError> {
    let invalid = || bad(format!("invalid registry host {domain:?}"));
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(invalid)?;
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(invalid());
        }
        match after {
            "" => ("", None),
            p => (
                "",
                Some(p.strip_prefix(':').ok_or_else(invalid)?.to_string()),
            ),
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port.to_string())),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid());
    }
    if !domain.starts_with('[') {
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        };
        if !host.split('.').all(component_ok) {
            return Err(invalid());
        }
    }
    Ok(())
}

/// `path-component ['/' path-component]*`, each
/// `[a-z0-9]+ (separator [a-z0-9]+)*` with separator `[_.]|__|-+`.
fn validate_path(path: &str) -> Result<(), ReferenceError> {
    for component in path.split('/') {
        if !path_component_ok(component) {
            return Err(bad(format!(
                "invalid repository path component {component:?} (lowercase letters, digits, and single '.', '_', '__' or dashes between them)"
            )));
        }
    }
    Ok(())
}

fn path_component_ok(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`.
fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = tag.len() <= TAG_LENGTH_MAX
        && tag.as_bytes().first().is_some_and(|&b| word(b))
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid tag {tag:?} (up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-')"
        )))
    }
}

/// go-digest's `Parse`: a known algorithm and lowercase hex of its length.
fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| bad(format!("invalid digest {digest:?} (want sha256:<64 hex>)")))?;
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(bad(format!(
                "unsupported digest algorithm {algorithm:?} in {digest:?}"
            )));
        }
    };
    if hex.len() != want || !is_lower_hex(hex) {
        return Err(bad(format!(
            "invalid digest {digest:?} ({algorithm} wants {want} lowercase hex digits)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:f6b8ff48435b3df92061911bdea5f4e25c7710a6ccf4c52003bbe1662784e430";
    const HEX: &str = "f6b8ff48435b3df92061911bdea5f4e25c7710a6ccf4c52003bbe1662784e430";

    #[test]
    fn references_normalise_like_docker() {
        // input, normalised full form, canonical (what Docker stores)
        let cases = [
            (
                "busybox",
                "docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "docker.io/library/busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "index.docker.io/library/busybox:x",
                "docker.io/library/busybox:x",
                "docker.io/library/busybox:x",
            ),
            (
                "dockercri-test/busybox",
                "docker.io/dockercri-test/busybox",
                "docker.io/dockercri-test/busybox:latest",
            ),
            (
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io/pause:3.10",
            ),
            ("localhost/foo", "localhost/foo", "localhost/foo:latest"),
            (
                "127.0.0.1:5000/a/b/c:v1",
                "127.0.0.1:5000/a/b/c:v1",
                "127.0.0.1:5000/a/b/c:v1",
            ),
            // An upper-case first component is a registry host to Docker.
            ("UPPER/case", "UPPER/case", "UPPER/case:latest"),
            (
                "Registry.Example/x",
                "Registry.Example/x",
                "Registry.Example/x:latest",
            ),
            ("[::1]:5000/x:y", "[::1]:5000/x:y", "[::1]:5000/x:y"),
            (
                "a_b__c-d---e/x.y",
                "docker.io/a_b__c-d---e/x.y",
                "docker.io/a_b__c-d---e/x.y:latest",
            ),
            (
                "8282fd603d02",
                "docker.io/library/8282fd603d02",
                "docker.io/library/8282fd603d02:latest",
            ),
        ];
        for (input, full, canonical) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.canonical(), canonical, "{input}");
        }
    }

    #[test]
    fn digests_and_tags_split_right() {
        let r = Reference::parse(&format!("127.0.0.1:5000/x/y@{D}")).unwrap();
        assert_eq!(
            (r.domain(), r.path(), r.tag(), r.digest()),
            ("127.0.0.1:5000", "x/y", None, Some(D))
        );
        assert_eq!(r.canonical(), format!("127.0.0.1:5000/x/y@{D}"));

        let r = Reference::parse(&format!("127.0.0.1:5000/x/y:v2@{D}")).unwrap();
        assert_eq!((r.tag(), r.digest()), (Some("v2"), Some(D)));
        assert_eq!(r.canonical(), format!("127.0.0.1:5000/x/y@{D}"));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x/y:v2@{D}"));

        let r = Reference::parse("localhost:5000/x").unwrap();
        assert_eq!(
            (r.domain(), r.path(), r.tag()),
            ("localhost:5000", "x", None)
        );
        assert!(r.is_name_only());
        assert_eq!(r.tag_or_latest(), "latest");
    }

    #[test]
    fn malformed_references_are_refused() {
        let cases = [
            "",
            "upper/Case",
            "Busybox",
            "busybox:",
            ":tag",
            "a::b",
            "-leading/x",
            "x/trailing-",
            "a//b",
            "a/b/",
            "name:-tag",
            "name:.tag",
            "name:ta g",
            "with space",
            "x@sha256:abc",
            "x@md5:0123456789abcdef0123456789abcdef",
            "x@sha256:F6B8FF48435B3DF92061911BDEA5F4E25C7710A6CCF4C52003BBE1662784E430",
            "x@",
            "a...b",
            "host_name.example/x",
            "127.0.0.1:port/x",
            "-host.com/x",
            "host-.com/x",
            "[zz]:5000/x",
            HEX,
        ];
        for input in cases {
            assert!(
                Reference::parse(input).is_err(),
                "{input:?} parsed as {:?}",
                Reference::parse(input)
            );
        }
        let long = format!("{}:{}", "a", "t".repeat(129));
        assert!(Reference::parse(&long).is_err());
        let long_name = "a/".repeat(130) + "a";
        assert!(Reference::parse(&long_name).is_err());
    }

    #[test]
    fn image_names_tell_ids_from_references() {
        let id = format!("sha256:{HEX}");
        assert_eq!(ImageName::parse(&id).unwrap(), ImageName::Id(id.clone()));
        assert_eq!(ImageName::parse(HEX).unwrap(), ImageName::Id(id.clone()));
        assert!(matches!(
            ImageName::parse("8282fd603d02").unwrap(),
            ImageName::Ref(_)
        ));
        // Docker resolves `sha256:<short hex>` as an ID prefix; it is a valid
        // name reference too, so it goes to Docker as it is.
        assert!(matches!(
            ImageName::parse("sha256:abc").unwrap(),
            ImageName::Ref(_)
        ));
        for bad in ["", "Busy/Box", "x@sha256:1"] {
            assert!(ImageName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookups_keep_what_docker_resolves_itself() {
        let cases = [
            ("busybox", "busybox".to_string()),
            ("8282fd603d02", "8282fd603d02".to_string()),
            (HEX, format!("sha256:{HEX}")),
            (
                &format!("127.0.0.1:5000/x:v1@{D}"),
                format!("127.0.0.1:5000/x@{D}"),
            ),
            (&format!("x@{D}"), format!("x@{D}")),
        ];
        for (input, want) in cases {
            let name = ImageName::parse(input).unwrap();
            assert_eq!(name.lookup(input), want, "{input}");
        }
    }
}
