//! The control socket's client side: one request, one reply, within one deadline (for
//! zmasterctl and other tools).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::protocol::{Reply, Request};

/// The longest reply read (a status document of many services fits easily).
pub const MAX_REPLY: u64 = 16 << 20;

/// The longest pause between connect attempts while the listener's backlog is full.
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(50);

/// Sends `request` to the control socket at `path` and reads its reply, all within `timeout`:
/// connecting (retried while the listener's backlog is full), writing and every read share
/// one deadline.
///
/// # Errors
/// The socket's connect/read/write errors as they are (`NotFound`: no socket there,
/// `ConnectionRefused`: nobody serves it, `WouldBlock`/`TimedOut`: no reply in time);
/// `InvalidData` for a reply that is not one JSON reply line; `UnexpectedEof` when the
/// server closed without a reply.
pub fn request(path: &Path, request: &Request, timeout: Duration) -> io::Result<Reply> {
    let deadline = Instant::now().checked_add(timeout);
    let mut stream = connect(path, deadline)?;
    let mut line = serde_json::to_string(request).map_err(io::Error::other)?;
    line.push('\n');
    // A server that refuses early (an error reply, then close) may make this write fail:
    // its reply, if any, is still the better answer.
    let written = write_all(&mut stream, line.as_bytes(), deadline);
    let reply = read_line(&mut stream, deadline)?;
    if reply.is_empty() {
        written?;
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the control socket closed without a reply",
        ));
    }
    serde_json::from_slice(&reply)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad reply: {e}")))
}

/// The time left before `deadline` (`None`: no limit), or `TimedOut` once it passed.
fn left(deadline: Option<Instant>, what: &str) -> io::Result<Option<Duration>> {
    let Some(d) = deadline else {
        return Ok(None);
    };
    let left = d.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} timed out"),
        ));
    }
    Ok(Some(left))
}

/// Connects without blocking: a unix connect to a full backlog fails with `EAGAIN` at once
/// (a blocking one would wait without limit), so it is retried on a fresh socket, sleeping
/// 1 ms, then twice as long up to [`CONNECT_RETRY_MAX`], until the deadline.
fn connect(path: &Path, deadline: Option<Instant>) -> io::Result<UnixStream> {
    let addr = SockAddr::unix(path)?;
    let mut pause = Duration::from_millis(1);
    loop {
        let sock = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
        sock.set_nonblocking(true)?;
        match sock.connect(&addr) {
            Ok(()) => {
                sock.set_nonblocking(false)?;
                return Ok(sock.into());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let left = left(deadline, "connect (control socket backlog full)")?;
        std::thread::sleep(left.map_or(pause, |l| l.min(pause)));
        pause = (pause * 2).min(CONNECT_RETRY_MAX);
    }
}

fn write_all(stream: &mut UnixStream, mut buf: &[u8], deadline: Option<Instant>) -> io::Result<()> {
    while !buf.is_empty() {
        stream.set_write_timeout(left(deadline, "write")?)?;
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads up to and including the first newline (or to end of stream), at most
/// [`MAX_REPLY`] bytes, each read bounded by the time left.
fn read_line(stream: &mut UnixStream, deadline: Option<Instant>) -> io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        stream.set_read_timeout(left(deadline, "reply")?)?;
        let room = (MAX_REPLY as usize - reply.len()).min(chunk.len());
        if room == 0 {
            return Ok(reply);
        }
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Ok(reply),
            Ok(n) => {
                let got = &chunk[..n];
                if let Some(end) = got.iter().position(|&b| b == b'\n') {
                    reply.extend_from_slice(&got[..=end]);
                    return Ok(reply);
                }
                reply.extend_from_slice(got);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
