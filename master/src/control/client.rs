//! The control socket's client side: one request, one reply, with a deadline (for zmasterctl
//! and other tools).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Reply, Request};

/// The longest reply read (a status document of many services fits easily).
pub const MAX_REPLY: u64 = 16 << 20;

/// Sends `request` to the control socket at `path` and reads its reply, waiting at most
/// `timeout` for each read or write.
///
/// # Errors
/// The socket's connect/read/write errors as they are (`NotFound`: no socket there,
/// `ConnectionRefused`: nobody serves it, `WouldBlock`/`TimedOut`: no reply in time);
/// `InvalidData` for a reply that is not one JSON reply line; `UnexpectedEof` when the
/// server closed without a reply.
pub fn request(path: &Path, request: &Request, timeout: Duration) -> io::Result<Reply> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(request).map_err(io::Error::other)?;
    line.push('\n');
    // A server that refuses early (an error reply, then close) may make this write fail:
    // its reply, if any, is still the better answer.
    let written = stream.write_all(line.as_bytes());
    let mut reply = Vec::new();
    BufReader::new(stream.take(MAX_REPLY)).read_until(b'\n', &mut reply)?;
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
