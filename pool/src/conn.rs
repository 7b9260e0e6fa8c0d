//! The callback-style async connection [`Conn`]: its public operations and the per-connection
//! I/O state machine the worker drives.
//!
//! Design notes:
//! - A `Conn` lives in one slab slot of its worker and never leaves that thread. Operations
//!   only record what the user wants; the worker's `drive` loop then completes them: it
//!   tries the syscall first and registers no interest (the fd is registered once,
//!   edge-triggered), completes the read from buffered bytes when it can, and calls the
//!   callback, looping until nothing more can progress without the kernel.
//! - A read shorter than the free space means the socket is drained: the connection is
//!   marked not readable and no `EAGAIN` read is attempted; the next edge says when to read.
//! - Writes are appended to one output buffer and written with one syscall at the end of
//!   the callback turn (so `write(line); write(b"\n")` costs one `send`), in the same turn.
//! - A connection with nothing pending (no read, flush, sleep, deferred closure or CPU job)
//!   after a callback returns is closed: nothing could ever call back into it again.

use std::any::Any;
use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::buffer::{InBuf, Want};
use crate::listener::Stream;
use crate::reactor::Waker;
use crate::stall::LoopTick;

mod drive;
mod trim;

/// The closure a new connection starts with (see [`Workers::assign`](crate::Workers::assign)).
pub type InitFn = Box<dyn FnOnce(&mut Conn) + Send>;

/// A message to a worker's inbox.
pub(crate) enum Msg {
    /// Serve a new connection.
    Assign {
        stream: Stream,
        init: InitFn,
        counted: bool,
    },
    /// A `spawn_cpu` job finished (`None`: it panicked).
    Cpu { key: u64, f: Option<InitFn> },
    /// Close the FIFO streams (the pool stopped accepting).
    CloseFifos,
    /// Close every connection and end the thread.
    Shutdown,
}

/// The part of a worker other threads (acceptor, rayon jobs) talk to.
pub(crate) struct WorkerShared {
    pub(crate) index: usize,
    pub(crate) tx: Sender<Msg>,
    pub(crate) waker: Waker,
    pub(crate) load: AtomicUsize,
    /// The worker loop's hang-detection tick.
    pub(crate) tick: LoopTick,
}

impl WorkerShared {
    /// Queues `msg` and wakes the worker; returns the message if the worker is gone.
    pub(crate) fn send(&self, msg: Msg) -> Result<(), Msg> {
        self.tx.send(msg).map_err(|e| e.0)?;
        self.waker.wake();
        Ok(())
    }
}

/// The result handed to a read callback: `Ok(Some(bytes))`, `Ok(None)` at end of stream, or
/// an error (`TimedOut`, `InvalidData` for a line over its limit, `UnexpectedEof` for a
/// short [`Conn::read_exact`], `ConnectionReset`, ...).
pub type ReadResult = io::Result<Option<Vec<u8>>>;

type ReadCallback = Box<dyn FnOnce(&mut Conn, ReadResult)>;
type FlushCallback = Box<dyn FnOnce(&mut Conn, io::Result<()>)>;
pub(crate) type Deferred = Box<dyn FnOnce(&mut Conn)>;

/// An accepted connection served by one worker thread with callback-style I/O.
///
/// Every callback runs on the connection's worker with `&mut Conn`; start the next
/// operation from inside the callback. At most one read and one flush can be pending.
/// If a callback returns and nothing is pending any more (no read, flush, sleep, deferred
/// closure or CPU job), the connection is closed.
///
/// There is no unbounded read: each read names its limit ([`read_line`](Self::read_line) and
/// [`read_until`](Self::read_until) `max_len`, [`read_exact`](Self::read_exact) `n`,
/// [`read_some`](Self::read_some) `max`), and the input buffer grows only as bytes arrive,
/// never to a length the peer merely announced. Output is the caller's to bound: check
/// [`pending_output`](Self::pending_output) and either wait on [`flush`](Self::flush) before
/// reading more (back-pressure) or close a peer that lets it pass a bound (as `echo-aio` does
/// with `echo-max-pending`), and use [`set_timeout`](Self::set_timeout) so that a silent peer
/// cannot hold a read forever.
///
/// ```no_run
/// use std::io;
/// use zmaster_pool::Conn;
///
/// fn on_line(conn: &mut Conn, r: io::Result<Option<Vec<u8>>>) {
///     match r {
///         Ok(Some(line)) if line != b"exit" => {
///             conn.write(&line);
///             conn.write(b"\n");
///             conn.read_line(64 * 1024, on_line);
///         }
///         _ => conn.close(),
///     }
/// }
/// ```
pub struct Conn {
    stream: Stream,
    pub(crate) key: u64,
    worker: Arc<WorkerShared>,
    input: InBuf,
    out: Vec<u8>,
    out_pos: usize,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The kernel reported hang-up or error (sticky): a short read no longer means drained,
    /// since the EOF or error behind the data comes with no further edge.
    pub(crate) hup: bool,
    eof: bool,
    read_err: Option<(io::ErrorKind, String)>,
    write_err: Option<(io::ErrorKind, String)>,
    read_op: Option<(Want, ReadCallback)>,
    flush_op: Option<FlushCallback>,
    timeout: Option<Duration>,
    read_deadline: Option<Instant>,
    flush_deadline: Option<Instant>,
    sleep_op: Option<(Duration, Deferred)>,
    sleep_deadline: Option<Instant>,
    pub(crate) timer_at: Option<Instant>,
    pub(crate) deferred: Vec<Deferred>,
    pub(crate) queued: bool,
    pub(crate) cpu_jobs: usize,
    /// `drive` stopped on its budget with work left: the worker queues it for a later turn.
    pub(crate) more: bool,
    user_data: Option<Box<dyn Any>>,
    /// End-of-stream / error results delivered so far (see `dead_end`).
    dead_ends: u32,
    closed: bool,
    pub(crate) counted: bool,
}

impl Conn {
    pub(crate) fn new(stream: Stream, key: u64, worker: Arc<WorkerShared>, counted: bool) -> Conn {
        // Created and dropped on its worker thread: the burst count there sees both.
        trim::opened(worker.load.load(Ordering::Relaxed));
        Conn {
            stream,
            key,
            worker,
            input: InBuf::default(),
            out: Vec::new(),
            out_pos: 0,
            readable: true,
            writable: true,
            hup: false,
            eof: false,
            read_err: None,
            write_err: None,
            read_op: None,
            flush_op: None,
            timeout: None,
            read_deadline: None,
            flush_deadline: None,
            sleep_op: None,
            sleep_deadline: None,
            timer_at: None,
            deferred: Vec::new(),
            queued: false,
            cpu_jobs: 0,
            more: false,
            user_data: None,
            dead_ends: 0,
            closed: false,
            counted,
        }
    }

    /// Reads one line of at most `max_len` bytes (not counting the `\n`, which is consumed
    /// and not returned; a `\r` before it is kept). At end of stream an unterminated last
    /// line is returned as is, then `Ok(None)`. A longer line fails with `InvalidData`.
    pub fn read_line(&mut self, max_len: usize, cb: impl FnOnce(&mut Conn, ReadResult) + 'static) {
        self.start_read(Want::Until(b'\n', max_len), Box::new(cb));
    }

    /// Reads up to `delim`: like [`read_line`](Self::read_line) with another delimiter (the
    /// delimiter is consumed and not returned; at most `max_len` bytes before it).
    pub fn read_until(
        &mut self,
        delim: u8,
        max_len: usize,
        cb: impl FnOnce(&mut Conn, ReadResult) + 'static,
    ) {
        self.start_read(Want::Until(delim, max_len), Box::new(cb));
    }

    /// Reads exactly `n` bytes. `Ok(None)` if the stream ends before the first byte,
    /// `UnexpectedEof` if it ends in the middle. `n` is the limit: the buffer grows as bytes
    /// arrive (up to `n`), so check a length the peer sent before passing it here.
    pub fn read_exact(&mut self, n: usize, cb: impl FnOnce(&mut Conn, ReadResult) + 'static) {
        self.start_read(Want::Exact(n), Box::new(cb));
    }

    /// Reads whatever is available, 1 to `max` bytes (`Ok(None)` at end of stream).
    pub fn read_some(&mut self, max: usize, cb: impl FnOnce(&mut Conn, ReadResult) + 'static) {
        self.start_read(Want::Some(max), Box::new(cb));
    }

    fn start_read(&mut self, want: Want, cb: ReadCallback) {
        if self.closed {
            return;
        }
        if self.read_op.is_some() {
            let err = io::Error::other("a read is already pending on this connection");
            self.defer(move |c| cb(c, Err(err)));
            return;
        }
        self.read_op = Some((want, cb));
    }

    /// Appends `data` to the output buffer. It is written (one syscall for everything
    /// buffered) when the current callback returns; use [`flush`](Self::flush) to learn when
    /// it has all been handed to the kernel (and to apply back-pressure). After a write
    /// error, further data is discarded and the error is reported by the next `flush`.
    pub fn write(&mut self, data: &[u8]) {
        if !self.closed && self.write_err.is_none() {
            self.out.extend_from_slice(data);
        }
    }

    /// Calls `cb` once everything written so far has been handed to the kernel, or with the
    /// write error (or `TimedOut` after the [timeout](Self::set_timeout)).
    pub fn flush(&mut self, cb: impl FnOnce(&mut Conn, io::Result<()>) + 'static) {
        if self.closed {
            return;
        }
        if self.flush_op.is_some() {
            let err = io::Error::other("a flush is already pending on this connection");
            self.defer(move |c| cb(c, Err(err)));
            return;
        }
        self.flush_op = Some(Box::new(cb));
    }

    /// Sets the time limit of each read and flush started from now on (`None`: no limit,
    /// the default). A read or flush still waiting when it expires completes with
    /// `ErrorKind::TimedOut`; the connection stays usable.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The current per-operation timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Closes the connection once the current callback returns: pending callbacks are
    /// dropped without being called, and buffered output gets one last non-blocking write
    /// attempt (use [`flush`](Self::flush) first to be sure it is all sent).
    pub fn close(&mut self) {
        self.closed = true;
        self.read_op = None;
        self.flush_op = None;
        self.deferred.clear();
        self.read_deadline = None;
        self.flush_deadline = None;
        self.sleep_op = None;
        self.sleep_deadline = None;
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Calls `cb` after `duration` (on the connection's worker), keeping the connection open
    /// meanwhile; reads and flushes may be pending at the same time. At most one sleep is
    /// pending: a new one replaces (and drops) the previous one.
    pub fn sleep(&mut self, duration: Duration, cb: impl FnOnce(&mut Conn) + 'static) {
        if !self.closed {
            self.sleep_op = Some((duration, Box::new(cb)));
            self.sleep_deadline = None;
        }
    }

    /// Runs `f` on this connection's worker in a later turn of its event loop (after the
    /// current callback and the events already due), keeping the connection open until then.
    pub fn defer(&mut self, f: impl FnOnce(&mut Conn) + 'static) {
        if !self.closed {
            self.deferred.push(Box::new(f));
        }
    }

    /// Runs `work` on rayon's global thread pool, then `then(conn, result)` back on this
    /// connection's worker. The worker keeps serving its other connections meanwhile, and
    /// this one stays open (even with nothing else pending) until `then` has run. If the
    /// connection is closed before, the result is dropped; if `work` panics, the panic is
    /// logged and the connection closed.
    pub fn spawn_cpu<T, W, F>(&mut self, work: W, then: F)
    where
        T: Send + 'static,
        W: FnOnce() -> T + Send + 'static,
        F: FnOnce(&mut Conn, T) + Send + 'static,
    {
        if self.closed {
            return;
        }
        self.cpu_jobs += 1;
        let key = self.key;
        let worker = Arc::clone(&self.worker);
        rayon::spawn(move || {
            let f: Option<InitFn> = match catch_unwind(AssertUnwindSafe(work)) {
                Ok(value) => Some(Box::new(move |c: &mut Conn| then(c, value))),
                Err(_) => {
                    log::error!("spawn_cpu: job panicked; closing its connection");
                    None
                }
            };
            // If the worker is gone the connection is too; the result is dropped.
            let _ = worker.send(Msg::Cpu { key, f });
        });
    }

    /// The underlying stream (for addresses or socket options; do not read or write it).
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Bytes written with [`write`](Self::write) and not yet handed to the kernel.
    pub fn pending_output(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Bytes received and not yet consumed by a read operation.
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// Attaches a per-connection value (replacing any previous one), so that state can live
    /// with the connection while the callbacks stay plain `fn` items (no allocation per
    /// operation). Dropped when the connection is.
    pub fn set_user_data<T: Any>(&mut self, value: T) {
        self.user_data = Some(Box::new(value));
    }

    /// The value set with [`set_user_data`](Self::set_user_data), if it is a `T`.
    pub fn user_data<T: Any>(&self) -> Option<&T> {
        self.user_data.as_ref()?.downcast_ref()
    }

    /// Mutable access to the value set with [`set_user_data`](Self::set_user_data).
    pub fn user_data_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.user_data.as_mut()?.downcast_mut()
    }

    /// Removes and returns the value, if it is a `T` (otherwise it stays).
    pub fn take_user_data<T: Any>(&mut self) -> Option<T> {
        match self.user_data.take()?.downcast::<T>() {
            Ok(value) => Some(*value),
            Err(other) => {
                self.user_data = Some(other);
                None
            }
        }
    }

    /// The index (0-based) of the worker thread serving this connection.
    pub fn worker_index(&self) -> usize {
        self.worker.index
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("stream", &self.stream)
            .field("worker", &self.worker.index)
            .field("closed", &self.closed)
            .field("pending_output", &self.pending_output())
            .field("buffered_input", &self.input.len())
            .finish()
    }
}
