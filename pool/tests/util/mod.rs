//! Helpers shared by the pool's behaviour tests: listeners, an echo handler, a line client.
#![allow(dead_code, unreachable_pub)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use zmaster_pool::{Conn, Handler, Listener};

/// Longest line the echo handler accepts.
pub const MAX_LINE: usize = 2 * 1024 * 1024;
/// Safety net on every blocking client read so a broken server fails a test, not hangs it.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

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

/// A blocking line client over TCP or unix.
pub struct Client<S: io::Read + Write> {
    reader: BufReader<S>,
}

impl Client<TcpStream> {
    pub fn tcp(addr: SocketAddr) -> Client<TcpStream> {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        Client {
            reader: BufReader::new(s),
        }
    }
}

impl Client<UnixStream> {
    pub fn unix(path: &Path) -> Client<UnixStream> {
        let s = UnixStream::connect(path).expect("connect unix");
        s.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
        Client {
            reader: BufReader::new(s),
        }
    }
}

impl<S: io::Read + Write> Client<S> {
    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("send");
    }

    /// The next line (without `\n`), or `None` at end of stream.
    pub fn recv_line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        let n = self.reader.read_until(b'\n', &mut line).expect("recv");
        if n == 0 {
            return None;
        }
        assert_eq!(line.pop(), Some(b'\n'), "reply line not terminated");
        Some(line)
    }

    /// Sends `line` + `\n` and returns the reply line.
    pub fn roundtrip(&mut self, line: &[u8]) -> Vec<u8> {
        let mut msg = line.to_vec();
        msg.push(b'\n');
        self.send(&msg);
        self.recv_line().expect("reply before end of stream")
    }

    pub fn stream(&mut self) -> &mut S {
        self.reader.get_mut()
    }
}
