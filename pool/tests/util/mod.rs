//! Helpers for the pool's behaviour tests: the testkit's shared helpers, plus the pool's own
//! listeners and echo handler.
#![allow(dead_code, unreachable_pub, unused_imports)]

/// The line client (`Client::tcp`, `Client::unix`, `roundtrip`, `recv_line`, ...).
pub use zmaster_testkit::LineClient as Client;
pub use zmaster_testkit::{ChildGuard, free_port, wait_for, wait_until};

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use zmaster_pool::{Conn, Handler, Listener};

/// Longest line the echo handler accepts.
pub const MAX_LINE: usize = 2 * 1024 * 1024;
/// Safety net on every blocking client read so a broken server fails a test, not hangs it.
pub const CLIENT_TIMEOUT: std::time::Duration = zmaster_testkit::PATIENCE;

/// The line echo of the crate docs: every line back as is, `exit` closes.
pub fn on_line(conn: &mut Conn, r: io::Result<Option<Vec<u8>>>) {
    match r {
        Ok(Some(line)) if line != b"exit" => {
            conn.write(&line);
            conn.write(b"\n");
            conn.read_line(MAX_LINE, on_line);
        }
        _ => conn.close(),
    }
}

/// A handler starting the line echo.
pub fn echo() -> Handler {
    Arc::new(|c: &mut Conn| c.read_line(MAX_LINE, on_line))
}

/// A non-blocking TCP listener on an ephemeral 127.0.0.1 port.
pub fn tcp_listener() -> (Listener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.set_nonblocking(true).expect("nonblocking");
    let addr = l.local_addr().expect("local addr");
    (Listener::Tcp(l), addr)
}

/// A non-blocking unix listener at `path`.
pub fn unix_listener(path: &Path) -> Listener {
    let l = UnixListener::bind(path).expect("bind unix socket");
    l.set_nonblocking(true).expect("nonblocking");
    Listener::Unix(l)
}
