//! The server's listeners: inherited from the master as fds 5+ (`MASTER`) or bound here (`alone`).

use std::os::fd::{AsRawFd, OwnedFd};

use zmaster_core::addr::{self, Address, ServiceAddr};
use zmaster_core::bind;
use zmaster_core::error::quoted;
use zmaster_core::protocol::{InheritedListener, ListenerKind};

use super::error::{Error, ErrorKind, Result};
use super::sys;

/// The backlog of listeners bound in `alone` mode: the master's default.
pub const ALONE_BACKLOG: i32 = bind::DEFAULT_BACKLOG;

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
                        "listener fd {} of service {} from -server-service",
                        l.fd,
                        quoted(&l.name)
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
    // The master's bind: same socket options, stale-socket rule and FIFO mode.
    let fd = bind::bind(&service.addr, ALONE_BACKLOG, None)?.fd;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn binds_inet_unix_and_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let fifo = dir.path().join("f.fifo");
        // A stale socket file from an earlier run is replaced.
        drop(UnixListener::bind(&sock).unwrap());
        let port = zmaster_testkit::free_port();
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
        // A live socket (this server's own, or another's) is never taken over.
        let err = bind_all(&format!("local:{}", sock.display())).unwrap_err();
        assert!(err.to_string().contains("live socket"), "{err}");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        drop(fifo_l);
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
