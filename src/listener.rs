//! The CRI socket: a file dockercri binds itself (replacing a stale one, but
//! never stealing a live one or deleting something that is not a socket),
//! or the socket systemd passes in through socket activation.

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Group, chown};
use tokio::net::UnixListener;
use tracing::{info, warn};

use crate::config::Listen;

/// Mode of the socket file: kubelet (root) and the socket group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("another process is serving on {0}; refusing to replace its socket")]
    InUse(PathBuf),
    #[error("refusing to remove {0}: it exists and is not a socket")]
    NotASocket(PathBuf),
    #[error("socket group {0:?} does not exist")]
    UnknownGroup(String),
    #[error("socket activation: {0}")]
    Activation(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ListenError {
    let path = path.to_path_buf();
    move |source| ListenError::Io { what, path, source }
}

/// The socket file dockercri created; [`SocketFile::remove`] deletes it
/// only if the path still holds that same socket.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket at shutdown, unless someone replaced it meanwhile.
    pub fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    warn!(path = %self.path.display(), error = %e, "cannot remove socket");
                }
            }
            _ => {}
        }
    }
}

/// A listening socket, and the file to remove at exit when we made it.
#[derive(Debug)]
pub struct Bound {
    pub listener: UnixListener,
    pub file: Option<SocketFile>,
}

/// Binds (or takes over from systemd) the CRI socket. Must run inside a
/// tokio runtime.
pub fn bind(listen: &Listen, group: Option<&str>) -> Result<Bound, ListenError> {
    match listen {
        Listen::Unix(path) => bind_path(path, group),
        Listen::Systemd => from_systemd(),
    }
}

fn bind_path(path: &Path, group: Option<&str>) -> Result<Bound, ListenError> {
    let gid = socket_gid(group)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("cannot create directory for", path))?;
    }
    remove_stale(path)?;
    // Bind under a umask that leaves no window in which others may connect.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    umask(old);
    let std_listener = bound.map_err(io_err("cannot bind", path))?;
    chown(path, None, Some(gid)).map_err(|e| io_err("cannot chown", path)(e.into()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(io_err("cannot chmod", path))?;
    let meta = std::fs::symlink_metadata(path).map_err(io_err("cannot stat", path))?;
    std_listener
        .set_nonblocking(true)
        .map_err(io_err("cannot configure", path))?;
    let listener = UnixListener::from_std(std_listener).map_err(io_err("cannot register", path))?;
    info!(path = %path.display(), gid = gid.as_raw(), "serving CRI");
    Ok(Bound {
        listener,
        file: Some(SocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        }),
    })
}

/// Deletes a socket file left by a dead process. A socket someone still
/// answers on, or a path that is not a socket, is left alone.
fn remove_stale(path: &Path) -> Result<(), ListenError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("cannot stat", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket(path.to_path_buf()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ListenError::InUse(path.to_path_buf())),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            warn!(path = %path.display(), "removing stale socket left by a dead process");
            std::fs::remove_file(path).map_err(io_err("cannot remove stale socket", path))
        }
        Err(e) => Err(io_err("cannot probe existing socket", path)(e)),
    }
}

/// The group that owns the socket: the one named, else `docker` when it
/// exists, else root. A number is taken as a gid.
fn socket_gid(group: Option<&str>) -> Result<Gid, ListenError> {
    match group {
        Some(name) => {
            if let Ok(gid) = name.parse::<u32>() {
                return Ok(Gid::from_raw(gid));
            }
            match Group::from_name(name) {
                Ok(Some(g)) => Ok(g.gid),
                _ => Err(ListenError::UnknownGroup(name.to_string())),
            }
        }
        None => Ok(Group::from_name("docker")
            .ok()
            .flatten()
            .map_or(Gid::from_raw(0), |g| g.gid)),
    }
}

/// Takes the first socket systemd passed (`LISTEN_PID`/`LISTEN_FDS`).
fn from_systemd() -> Result<Bound, ListenError> {
    let mut fds = sd_notify::listen_fds().map_err(|e| ListenError::Activation(e.to_string()))?;
    let fd: RawFd = fds.next().ok_or_else(|| {
        ListenError::Activation(
            "fd:// needs a socket from systemd, but LISTEN_FDS passed none".into(),
        )
    })?;
    if fds.len() > 0 {
        warn!("systemd passed more than one socket; serving on the first");
    }
    // SAFETY: `fd` was handed to this process by systemd and stays open;
    // we only borrow it for the check.
    check_unix_stream(unsafe { BorrowedFd::borrow_raw(fd) })
        .map_err(|why| ListenError::Activation(format!("fd {fd} passed by systemd: {why}")))?;
    // SAFETY: systemd passed this fd to us alone; from here the listener owns it.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    std_listener
        .set_nonblocking(true)
        .map_err(|e| ListenError::Activation(e.to_string()))?;
    let listener =
        UnixListener::from_std(std_listener).map_err(|e| ListenError::Activation(e.to_string()))?;
    info!(fd, "serving CRI on the socket passed by systemd");
    Ok(Bound {
        listener,
        file: None,
    })
}

/// CRI is served on a unix stream socket only: a TCP or datagram socket
/// from a mistaken `.socket` unit is refused before anything is served.
fn check_unix_stream(fd: BorrowedFd<'_>) -> Result<(), String> {
    use nix::sys::socket::{AddressFamily, SockType, SockaddrLike, SockaddrStorage, sockopt};
    let kind = nix::sys::socket::getsockopt(&fd, sockopt::SockType)
        .map_err(|e| format!("not a socket: {e}"))?;
    let address = nix::sys::socket::getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .map_err(|e| format!("cannot read its address: {e}"))?;
    match address.family() {
        Some(AddressFamily::Unix) => {}
        family => {
            return Err(format!(
                "not a unix socket (address family {family:?}, address {address}); \
                 set ListenStream= to a path in the .socket unit"
            ));
        }
    }
    if kind != SockType::Stream {
        return Err(format!("not a stream socket ({kind:?}); use ListenStream="));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn only_a_unix_stream_socket_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        assert_eq!(check_unix_stream(unix.as_fd()), Ok(()));

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let why = check_unix_stream(tcp.as_fd()).unwrap_err();
        assert!(why.contains("not a unix socket"), "{why}");

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let why = check_unix_stream(udp.as_fd()).unwrap_err();
        assert!(why.contains("not a unix socket"), "{why}");

        let datagram = std::os::unix::net::UnixDatagram::bind(dir.path().join("d")).unwrap();
        let why = check_unix_stream(datagram.as_fd()).unwrap_err();
        assert!(why.contains("not a stream socket"), "{why}");

        let file = std::fs::File::open("/dev/null").unwrap();
        let why = check_unix_stream(file.as_fd()).unwrap_err();
        assert!(why.contains("not a socket"), "{why}");
    }

    #[tokio::test]
    async fn a_regular_file_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        std::fs::write(&path, "precious").unwrap();
        let err = bind(&Listen::Unix(path.clone()), Some("0")).unwrap_err();
        assert!(matches!(err, ListenError::NotASocket(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[tokio::test]
    async fn stale_is_replaced_live_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cri.sock");
        let first = bind(&Listen::Unix(path.clone()), Some("0")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        let err = bind(&Listen::Unix(path.clone()), Some("0")).unwrap_err();
        assert!(matches!(err, ListenError::InUse(_)), "{err}");
        drop(first); // the file stays behind, like after a crash
        assert!(path.exists());
        let second = bind(&Listen::Unix(path.clone()), Some("0")).unwrap();
        second.file.as_ref().unwrap().remove();
        assert!(!path.exists());
    }

    #[test]
    fn unknown_group_is_named() {
        let err = socket_gid(Some("no-such-group-xyz")).unwrap_err();
        assert!(err.to_string().contains("no-such-group-xyz"));
    }
}
