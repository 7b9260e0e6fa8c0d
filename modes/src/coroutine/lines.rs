//! [`LineReader`]: line-at-a-time reads straight into the caller's line buffer, holding no
//! buffer of its own while the connection is idle.
//!
//! Why not `BufReader`: it allocates its buffer (8 KiB by default, 4 KiB in echo-coroutine)
//! when it is created and keeps it for the connection's life, which in coroutine mode is as
//! much memory per idle connection as the coroutine's stack page (issue 15: 8.5 KiB per idle
//! echo-coroutine connection, 4.1 KiB of it the `BufReader`). A `LineReader` reads into the
//! spare capacity of the `Vec` the line is returned in; only bytes read past the end of a line
//! (a peer that pipelines) are kept, and freed as soon as they are consumed. A ping-pong
//! exchange costs the same syscalls as with `BufReader`: one `read` per line.

use std::io::{self, Read};

/// Least free space offered to one `read` (the line buffer grows by doubling past it).
const MIN_ROOM: usize = 256;
/// Most bytes offered to one `read` (they are zero-filled first).
const MAX_ROOM: usize = 64 * 1024;

/// Reads lines from `R` (typically `&Connection`) into a caller-supplied `Vec<u8>`.
///
/// ```no_run
/// use std::io::Write;
/// use zmaster_modes::coroutine::{Connection, LineReader};
///
/// fn serve(conn: Connection) {
///     let mut lines = LineReader::new(&conn);
///     let mut line = Vec::with_capacity(128);
///     loop {
///         line.clear();
///         match lines.read_line(&mut line, 64 * 1024) {
///             Ok(0) | Err(_) => return,
///             Ok(_) if line.last() != Some(&b'\n') && line.len() > 64 * 1024 => return,
///             Ok(_) => {
///                 if (&conn).write_all(&line).is_err() {
///                     return;
///                 }
///             }
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    /// Bytes read past the last line returned; `rest[pos..]` is still unread. Empty (and
    /// unallocated) whenever everything read has been returned.
    rest: Vec<u8>,
    pos: usize,
}

impl<R: Read> LineReader<R> {
    /// A reader over `inner`; allocates nothing.
    pub fn new(inner: R) -> LineReader<R> {
        LineReader {
            inner,
            rest: Vec::new(),
            pos: 0,
        }
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Bytes read from the underlying reader and not returned yet.
    pub fn buffered(&self) -> &[u8] {
        &self.rest[self.pos..]
    }

    /// Appends the next line, with its `\n`, to `line` and returns how many bytes were
    /// appended; 0 at end of stream. At most `max + 1` bytes are appended: a line longer than
    /// `max` bytes comes back cut, without its `\n` (so `line.last() != Some(&b'\n')` and more
    /// than `max` bytes tell it), and the rest of it is what the next call returns. The last
    /// line of a stream may lack its `\n`. The same contract as
    /// `(&mut reader).take(max + 1).read_until(b'\n', line)` on a `BufReader`.
    ///
    /// # Errors
    /// The underlying read failed (`Interrupted` is retried). Bytes of a partial line read
    /// before the error stay appended to `line`.
    pub fn read_line(&mut self, line: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let start = line.len();
        let limit = max.saturating_add(1);
        let stop = start.saturating_add(limit);
        if self.pos < self.rest.len() {
            let avail = &self.rest[self.pos..];
            let window = &avail[..avail.len().min(limit)];
            let take = match window.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => window.len(),
            };
            line.extend_from_slice(&avail[..take]);
            self.consume(take);
            if line.last() == Some(&b'\n') || take == limit {
                return Ok(take);
            }
        }
        loop {
            let got = line.len() - start;
            if got >= limit {
                return Ok(got);
            }
            if line.capacity() - line.len() < MIN_ROOM {
                line.reserve(line.capacity().max(MIN_ROOM));
            }
            let old = line.len();
            // Zero-filled so the read gets an initialised slice.
            let room = (line.capacity() - old).min(MAX_ROOM);
            line.resize(old + room, 0);
            let n = match self.inner.read(&mut line[old..]) {
                Ok(n) => n,
                Err(e) => {
                    line.truncate(old);
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
            };
            line.truncate(old + n);
            if n == 0 {
                return Ok(line.len() - start);
            }
            // The line ends at its first `\n` or at the limit, whichever comes first; what
            // was read past that is kept for the next call.
            let window_end = line.len().min(stop);
            let end = match line[old..window_end].iter().position(|&b| b == b'\n') {
                Some(i) => old + i + 1,
                None => window_end,
            };
            if end < line.len() {
                self.rest.extend_from_slice(&line[end..]);
                line.truncate(end);
            }
            if line.last() == Some(&b'\n') || end == stop {
                return Ok(line.len() - start);
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.rest.len() {
            // Everything returned: free the storage, an idle connection keeps nothing.
            self.rest = Vec::new();
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests;
