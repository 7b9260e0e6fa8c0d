//! The server's listeners: inherited from the master as fds 5+ (`MASTER`) or bound here (`alone`).

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};
use zmaster_core::addr::{self, Address, ServiceAddr};
use zmaster_core::protocol::{InheritedListener, ListenerKind};

use super::error::{Error, ErrorKind, Result};
use super::sys;

/// The backlog of listeners bound in `alone` mode (the master's default too).
pub const ALONE_BACKLOG: i32 = 1024;

/// One listening endpoint of the server, before a mode turns it into its own listener type.
#[derive(Debug)]
pub struct ServiceListener {
    /// The service name (`name` of `name:Tfd` or `name://addr`; may be empty).
    pub name: String,
    /// TCP, unix stream socket or FIFO.
    pub kind: ListenerKind,
    /// The listening socket (non-blocking, close-on-exec) or the FIFO opened read-write.
    pub fd: OwnedFd,
    /// The address, when the server bound it itself (`alone`); `None` when inherited.
    pub address: Option<Address>,
}

/// Adopts the listeners a master passed (parsed from `-server-service name:Tfd,...`).
///
/// # Errors
/// An fd that is not open.
pub(crate) fn inherit(listeners: Vec<InheritedListener>) -> Result<Vec<ServiceListener>> {
    listeners
        .into_iter()
        .map(|l| {
            let fd = sys::adopt_inherited_fd(l.fd).map_err(|e| {
                Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "listener fd {} of service {:?} from -server-service",
                        l.fd, l.name
                    ),
                )
                .with_source(e)
            })?;
            Ok(ServiceListener {
                name: l.name,
                kind: l.kind,
                fd,
                address: None,
            })
        })
        .collect()
}

/// Binds every address of an `alone` server's `-server-service` list.
///
/// # Errors
/// A bad address list (the entry is quoted) or a bind that fails (the address is named).
pub(crate) fn bind_all(spec: &str) -> Result<Vec<ServiceListener>> {
    addr::parse_service_list(spec)?
        .iter()
        .map(bind_one)
        .collect()
}

fn bind_one(service: &ServiceAddr) -> Result<ServiceListener> {
    let fd = match &service.addr {
        Address::Inet(sa) => {
            let attempt = |what: &str, e| Error::io(format!("{what} {sa}"), e);
            let socket = Socket::new(Domain::for_address(*sa), Type::STREAM, None)
                .map_err(|e| attempt("socket for", e))?;
            socket
                .set_reuse_address(true)
                .map_err(|e| attempt("SO_REUSEADDR on", e))?;
            // As the master binds (master/src/listeners.rs): `[::]:port` is IPv6 only, so
            // a `0.0.0.0:port` entry beside it binds too, whatever net.ipv6.bindv6only says.
            if sa.is_ipv6() {
                socket
                    .set_only_v6(true)
                    .map_err(|e| attempt("IPV6_V6ONLY on", e))?;
            }
            listen(socket, &SockAddr::from(*sa), &sa.to_string())?
        }
        Address::Unix(path) => {
            remove_stale_socket(path)?;
            let shown = path.display().to_string();
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)
                .map_err(|e| Error::io(format!("socket for {shown}"), e))?;
            let sa = SockAddr::unix(path).map_err(|e| Error::io(format!("address {shown}"), e))?;
            listen(socket, &sa, &shown)?
        }
        Address::Fifo(path) => open_fifo(path)?,
    };
    log::debug!(
        "bound service={:?} address={} fd={}",
        service.name,
        service.addr,
        fd.as_raw_fd()
    );
    Ok(ServiceListener {
        name: service.name.clone(),
        kind: service.addr.kind(),
        fd,
        address: Some(service.addr.clone()),
    })
}

fn listen(socket: Socket, sa: &SockAddr, shown: &str) -> Result<OwnedFd> {
    socket
        .bind(sa)
        .map_err(|e| Error::io(format!("bind {shown}"), e))?;
    socket
        .listen(ALONE_BACKLOG)
        .map_err(|e| Error::io(format!("listen on {shown}"), e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| Error::io(format!("set {shown} non-blocking"), e))?;
    Ok(socket.into())
}

/// Removes `path` if it is a stale socket file; anything else in the way is an error.
fn remove_stale_socket(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("stat {}", path.display()), e)),
        // Replaced only when stale (nobody accepts on it): never steal a running server's path.
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => Err(Error::new(
                ErrorKind::Io,
                format!("bind {}: a server is listening there", path.display()),
            )),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => fs::remove_file(path)
                .map_err(|e| Error::io(format!("remove stale socket {}", path.display()), e)),
            Err(e) => Err(Error::io(format!("probe socket {}", path.display()), e)),
        },
        Ok(_) => Err(Error::new(
            ErrorKind::Io,
            format!("{} exists and is not a socket", path.display()),
        )),
    }
}

/// Creates the FIFO (mode 0666) if needed and opens it read-write, non-blocking.
fn open_fifo(path: &Path) -> Result<OwnedFd> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => {}
        Ok(_) => {
            return Err(Error::new(
                ErrorKind::Io,
                format!("{} exists and is not a FIFO", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o666))
                .map_err(|e| Error::io(format!("mkfifo {}", path.display()), e.into()))?;
            // mkfifo is subject to the umask; FIFOs are created 0666 (SPEC §4), as the
            // master does.
            fs::set_permissions(path, fs::Permissions::from_mode(0o666))
                .map_err(|e| Error::io(format!("chmod 0666 {}", path.display()), e))?;
        }
        Err(e) => return Err(Error::io(format!("stat {}", path.display()), e)),
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(format!("open FIFO {}", path.display()), e))?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn binds_inet_unix_and_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let fifo = dir.path().join("f.fifo");
        // A stale socket file from an earlier run is replaced.
        drop(UnixListener::bind(&sock).unwrap());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = format!(
            "web://127.0.0.1:{port}, ctl://local:{}, fifo:{}",
            sock.display(),
            fifo.display()
        );
        let mut got = bind_all(&spec).unwrap();
        assert_eq!(
            got.iter().map(|l| l.kind).collect::<Vec<_>>(),
            [ListenerKind::Inet, ListenerKind::Unix, ListenerKind::Fifo]
        );
        assert_eq!(got[0].name, "web");
        let fifo_l = got.pop().unwrap();
        let unix_l = UnixListener::from(got.pop().unwrap().fd);
        let tcp_l = TcpListener::from(got.pop().unwrap().fd);
        TcpStream::connect(tcp_l.local_addr().unwrap()).unwrap();
        UnixStream::connect(&sock).unwrap();
        assert!(unix_l.accept().is_ok());
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        drop(fifo_l);
    }

    #[test]
    fn fifo_is_created_0666_whatever_the_umask() {
        // 022 is the usual umask; set it so that mkfifo alone could not give 0666.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.fifo");
        let got = bind_all(&format!("fifo:{}", fifo.display()));
        nix::sys::stat::umask(old);
        drop(got.unwrap());
        let meta = fs::symlink_metadata(&fifo).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!(meta.permissions().mode() & 0o777, 0o666);
        // An existing FIFO is reused as it is.
        fs::set_permissions(&fifo, fs::Permissions::from_mode(0o600)).unwrap();
        drop(bind_all(&format!("fifo:{}", fifo.display())).unwrap());
        assert_eq!(
            fs::metadata(&fifo).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_fifo_path_that_cannot_be_examined_is_a_stat_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, "x").unwrap();
        // stat fails with ENOTDIR (a file used as a directory): reported as a stat error.
        let err = bind_all(&format!("fifo:{}/f.fifo", file.display())).unwrap_err();
        assert!(err.to_string().starts_with("stat "), "{err}");
    }

    #[test]
    fn ipv6_listeners_are_v6_only_so_v4_can_share_the_port() {
        let Ok(probe) = TcpListener::bind("[::]:0") else {
            return; // no IPv6 on this host: nothing to check
        };
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        // Without IPV6_V6ONLY (and net.ipv6.bindv6only = 0, the default) `[::]` takes the
        // IPv4 port too and the second bind fails.
        let mut got = bind_all(&format!("[::]:{port}, 0.0.0.0:{port}")).unwrap();
        assert_eq!(got.len(), 2);
        drop(got.pop());
        let v6 = Socket::from(got.pop().unwrap().fd);
        assert!(v6.only_v6().unwrap(), "IPV6_V6ONLY set, as the master does");
    }

    #[test]
    fn refuses_to_replace_a_regular_file_and_names_the_bind() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, "x").unwrap();
        let err = bind_all(&format!("local:{}", file.display())).unwrap_err();
        assert!(err.to_string().contains("is not a socket"), "{err}");
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        // SO_REUSEADDR does not allow two listeners on one port.
        let err = bind_all(&format!("127.0.0.1:{port}")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("bind 127.0.0.1:{port}: ")),
            "{err}"
        );
        let err = bind_all("127.0.0.1:99999").unwrap_err();
        assert!(err.to_string().contains("127.0.0.1:99999"), "{err}");
    }
}
