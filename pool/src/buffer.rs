//! The connection's input buffer: line splitting, exact-size and any-size reads, with no
//! syscalls (the worker fills it), so the read state machine is tested in isolation.
//!
//! Storage is held only while bytes are buffered: when a buffer empties (every request of a
//! ping-pong protocol) or its connection closes, the storage goes to a small per-thread pool
//! and the next read of any connection on that worker takes it from there. An idle
//! connection thus costs no buffer at all (issue 15: the 4 KiB kept per connection were most
//! of aio mode's memory per idle connection), and a busy worker still allocates nothing per
//! request or per new connection.

use std::cell::RefCell;
use std::io;

/// Smallest free space offered to one `read` syscall.
const MIN_READ: usize = 4096;
/// Emptied storage larger than this is freed, not pooled.
const KEEP_CAPACITY: usize = 64 * 1024;
/// Bytes of emptied storage each thread keeps for reuse.
const POOL_BYTES: usize = 256 * 1024;

/// Emptied buffers of this thread's connections, most recent last.
struct Pool {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bufs: Vec::new(), bytes: 0 }) };
}

/// Keeps `data` for the next reader on this thread if it is reusable and the pool has room;
/// frees it otherwise.
fn give_back(data: Vec<u8>) {
    if data.is_empty() || data.len() > KEEP_CAPACITY {
        return;
    }
    // `try_with`: a buffer dropped while the thread's locals are torn down is just freed.
    let _ = POOL.try_with(move |p| {
        let mut p = p.borrow_mut();
        if p.bytes + data.len() <= POOL_BYTES {
            p.bytes += data.len();
            p.bufs.push(data);
        }
    });
}

/// Pooled storage of this thread, or an empty vector.
fn take_pooled() -> Vec<u8> {
    POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        let data = p.bufs.pop()?;
        p.bytes -= data.len();
        Some(data)
    })
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// What a pending read operation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Bytes up to a delimiter, at most `max` of them before it (the delimiter is consumed,
    /// not returned): `Until(b'\n', max)` reads a line.
    Until(u8, usize),
    /// Exactly `n` bytes.
    Exact(usize),
    /// Whatever is available, 1 to `max` bytes.
    Some(usize),
}

/// Buffered input: `data[start..end]` holds unconsumed bytes; `data.len()` is the storage
/// (empty whenever nothing is buffered, see the module notes).
#[derive(Debug, Default)]
pub(crate) struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// How far past `start` a `\n` has already been searched for.
    scanned: usize,
}

impl InBuf {
    /// Bytes buffered and not yet consumed.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// Completes `want` from buffered bytes if it can: `Some(Ok(bytes))`, `Some(Err)` for a
    /// line longer than its maximum, `None` when more input is needed.
    pub(crate) fn take(&mut self, want: Want) -> Option<io::Result<Vec<u8>>> {
        match want {
            Want::Until(delim, max) => {
                let from = self.start + self.scanned;
                match self.data[from..self.end].iter().position(|&b| b == delim) {
                    Some(i) => {
                        let len = self.scanned + i;
                        if len > max {
                            return Some(Err(too_long(delim, max)));
                        }
                        let line = self.data[self.start..self.start + len].to_vec();
                        self.consume(len + 1);
                        Some(Ok(line))
                    }
                    None => {
                        self.scanned = self.len();
                        if self.len() > max {
                            Some(Err(too_long(delim, max)))
                        } else {
                            None
                        }
                    }
                }
            }
            Want::Exact(n) => (self.len() >= n).then(|| Ok(self.split(n))),
            Want::Some(max) => (self.len() > 0).then(|| Ok(self.split(self.len().min(max.max(1))))),
        }
    }

    /// The result of `want` once the peer has closed: `Ok(None)` when nothing is left, the
    /// unterminated last line for `Line`, what is left for `Some`, `UnexpectedEof` for a
    /// short `Exact`.
    pub(crate) fn take_at_eof(&mut self, want: Want) -> io::Result<Option<Vec<u8>>> {
        if let Some(done) = self.take(want) {
            return done.map(Some);
        }
        if self.len() == 0 {
            return Ok(None);
        }
        match want {
            Want::Until(..) | Want::Some(_) => Ok(Some(self.split(self.len()))),
            Want::Exact(n) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed after {} of {n} bytes", self.len()),
            )),
        }
    }

    /// Free space to read into for `want`, compacting or growing the storage as needed.
    pub(crate) fn spare(&mut self, want: Want) -> &mut [u8] {
        // At most MIN_READ more than is buffered: storage grows (doubling) as bytes arrive,
        // never to a size the peer only announced (`read_exact` of a peer-supplied length).
        let need = match want {
            Want::Until(_, max) => max
                .saturating_add(1)
                .saturating_sub(self.len())
                .clamp(1, MIN_READ),
            Want::Exact(_) => MIN_READ,
            Want::Some(max) => max.clamp(1, MIN_READ),
        };
        if self.data.is_empty() {
            self.data = take_pooled();
        }
        if self.data.len() - self.end < need {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.data.len() - self.end < need {
                // Doubling is enough: storage is empty or at least MIN_READ >= need, so
                // twice it leaves `need` free past `end`.
                let size = (self.data.len() * 2).max(MIN_READ);
                self.data.resize(size, 0);
            }
        }
        &mut self.data[self.end..]
    }

    /// Records that `n` bytes were read into the slice [`spare`](Self::spare) returned.
    pub(crate) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    fn split(&mut self, n: usize) -> Vec<u8> {
        let out = self.data[self.start..self.start + n].to_vec();
        self.consume(n);
        out
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.scanned = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            give_back(std::mem::take(&mut self.data));
        }
    }
}

impl Drop for InBuf {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.data));
    }
}

fn too_long(delim: u8, max: usize) -> io::Error {
    let msg = if delim == b'\n' {
        format!("line longer than {max} bytes")
    } else {
        format!("no delimiter 0x{delim:02x} within {max} bytes")
    };
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod tests;
