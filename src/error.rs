//! The one error type of the request path, and the only place where a gRPC
//! status code is chosen for it.

use tonic::Status;

/// What went wrong, phrased for the CRI client: each variant says which
/// gRPC code the client gets; the Docker cause stays attached as a source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("invalid {field}: {why}")]
    InvalidArgument { field: &'static str, why: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("{what}: {why}")]
    FailedPrecondition { what: String, why: String },
    #[error("docker is unreachable at {endpoint}: {source}")]
    Unavailable {
        endpoint: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{what}: timed out")]
    DeadlineExceeded { what: String },
    #[error("image {image:?} not found in registry {registry}: {why}")]
    NotInRegistry {
        registry: String,
        image: String,
        why: String,
    },
    #[error("authentication to registry {registry} failed for image {image:?}: {why}")]
    AuthenticationFailed {
        registry: String,
        image: String,
        why: String,
    },
    #[error("registry {registry} is unreachable for image {image:?}: {why}")]
    RegistryUnavailable {
        registry: String,
        image: String,
        why: String,
    },
    #[error("pull of image {image:?} made no progress for {after:?}; cancelled")]
    PullStalled {
        image: String,
        after: std::time::Duration,
    },
    #[error("{what}: too many requests in flight")]
    ResourceExhausted { what: String },
    /// A CRI call dockercri does not carry out, and why.
    #[error("{method} is not implemented by dockercri: {why}")]
    Unimplemented { method: &'static str, why: String },
    #[error("{what}: {source}")]
    Docker {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// A CNI plugin failed, or its configuration cannot be used.
    #[error("{what}: {why}")]
    Network { what: String, why: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

/// Result of a domain function on the request path.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A field of the request is missing or malformed.
    pub fn invalid(field: &'static str, why: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            why: why.into(),
        }
    }

    /// An object the request names does not exist.
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// The gRPC code this error answers with.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::NotFound { .. } | Error::NotInRegistry { .. } => Code::NotFound,
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::Unavailable { .. } | Error::RegistryUnavailable { .. } => Code::Unavailable,
            Error::DeadlineExceeded { .. } | Error::PullStalled { .. } => Code::DeadlineExceeded,
            Error::AuthenticationFailed { .. } => Code::Unauthenticated,
            Error::ResourceExhausted { .. } => Code::ResourceExhausted,
            Error::Unimplemented { .. } => Code::Unimplemented,
            Error::Docker { .. }
            | Error::Network { .. }
            | Error::Io { .. }
            | Error::Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_variant_picks_its_code() {
        let refused = || bollard::errors::Error::SocketNotFoundError("/x.sock".into());
        let cases = [
            (Error::not_found("container", "abc"), Code::NotFound),
            (Error::invalid("metadata", "missing"), Code::InvalidArgument),
            (
                Error::AlreadyExists { what: "x".into() },
                Code::AlreadyExists,
            ),
            (
                Error::Unavailable {
                    endpoint: "unix:///x.sock".into(),
                    source: refused(),
                },
                Code::Unavailable,
            ),
            (
                Error::DeadlineExceeded { what: "x".into() },
                Code::DeadlineExceeded,
            ),
            (
                Error::ResourceExhausted { what: "x".into() },
                Code::ResourceExhausted,
            ),
            (
                Error::Unimplemented {
                    method: "CheckpointContainer",
                    why: "w".into(),
                },
                Code::Unimplemented,
            ),
            (
                Error::Docker {
                    what: "x".into(),
                    source: refused(),
                },
                Code::Internal,
            ),
            (
                Error::Network {
                    what: "x".into(),
                    why: "plugin failed".into(),
                },
                Code::Internal,
            ),
            (
                Error::NotInRegistry {
                    registry: "r".into(),
                    image: "i".into(),
                    why: "w".into(),
                },
                Code::NotFound,
            ),
            (
                Error::AuthenticationFailed {
                    registry: "r".into(),
                    image: "i".into(),
                    why: "w".into(),
                },
                Code::Unauthenticated,
            ),
            (
                Error::RegistryUnavailable {
                    registry: "r".into(),
                    image: "i".into(),
                    why: "w".into(),
                },
                Code::Unavailable,
            ),
            (
                Error::PullStalled {
                    image: "i".into(),
                    after: std::time::Duration::from_secs(60),
                },
                Code::DeadlineExceeded,
            ),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code, "{}", status.message());
        }
    }

    #[test]
    fn messages_name_the_object() {
        let s = Status::from(Error::not_found("container", "abc123"));
        assert_eq!(s.message(), "container \"abc123\" not found");
        let s = Status::from(Error::AuthenticationFailed {
            registry: "127.0.0.1:5001".into(),
            image: "127.0.0.1:5001/x:y".into(),
            why: "unauthorized: authentication required".into(),
        });
        assert_eq!(
            s.message(),
            "authentication to registry 127.0.0.1:5001 failed for image \"127.0.0.1:5001/x:y\": unauthorized: authentication required"
        );
    }
}
