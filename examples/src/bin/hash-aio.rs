//! hash-aio: CPU-heavy work inside an aio handler. A line `N` is answered with the 32-hex-digit
//! digest of N hash rounds (see `zmaster_examples::digest`); `exit` closes the connection.
//!
//! Small requests (at most [`INLINE_ROUNDS`]) are computed on the connection's worker; bigger
//! ones go to rayon with `Conn::spawn_cpu`, split in parallel chunks, and the answer is
//! written from a callback back on the worker, so other connections keep being served.
//!
//! A job is cancelled when its client goes away: while it runs, a read stays pending on the
//! connection, and end of stream (or an error) closes it; the connection's state sets the
//! job's cancel flag when it is dropped (closed, or cut at a drain deadline), the job stops
//! within one chunk and frees its `hash-max-jobs` slot. A request line sent during a job is
//! kept and answered after it (one line: no further read is started until then, so a client
//! that pipelines and leaves is noticed only once the job ends). Memory does not depend on N.
//!
//! Config keys: `hash-max-rounds` (integer, default 1000000000): larger requests get `ERR`;
//! `hash-max-jobs` (default 16): with that many big requests in progress, another gets
//! `ERR busy` (no unbounded queue of CPU work).

use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use zmaster_examples::digest;
use zmaster_modes::aio::{self, Conn};

/// Requests up to this many rounds (about 0.1 ms) are answered inline on the worker.
const INLINE_ROUNDS: u64 = 100_000;
/// The longest request line.
const MAX_LINE: usize = 256;

static MAX_ROUNDS: AtomicU64 = AtomicU64::new(1_000_000_000);
/// Jobs on rayon right now, and the most allowed (`hash-max-jobs`): beyond it a request gets
/// `ERR busy` instead of queueing unbounded CPU work.
static JOBS: AtomicU64 = AtomicU64::new(0);
static MAX_JOBS: AtomicU64 = AtomicU64::new(16);

/// One of the `hash-max-jobs` slots, held by a job until it ends (finished or cancelled).
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        if JOBS.fetch_add(1, Ordering::SeqCst) >= MAX_JOBS.load(Ordering::Relaxed) {
            JOBS.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        JOBS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's state (its user data).
#[derive(Default)]
struct Session {
    /// The cancel flag of the job in progress, until its answer is sent.
    busy: Option<Arc<AtomicBool>>,
    /// A request that arrived during the job, handled once the answer is sent.
    stashed: Option<Vec<u8>>,
}

impl Drop for Session {
    /// The connection is gone (client left, error, drain deadline): stop its job.
    fn drop(&mut self) {
        if let Some(cancel) = &self.busy {
            cancel.store(true, Ordering::Relaxed);
        }
    }
}

/// Writes `text` and, once it is sent, goes on with the next request.
fn answer(conn: &mut Conn, text: &str) {
    conn.write(text.as_bytes());
    conn.write(b"\n");
    conn.flush(|conn, sent| match sent {
        Ok(()) => next(conn),
        Err(_) => conn.close(),
    });
}

/// After an answer: a job's answer leaves the read started with the job pending (unless it
/// delivered a stashed line); an inline answer starts the next read.
fn next(conn: &mut Conn) {
    let (was_busy, stashed) = match conn.user_data_mut::<Session>() {
        Some(session) => (session.busy.take().is_some(), session.stashed.take()),
        None => (false, None),
    };
    match stashed {
        Some(line) => request(conn, &line),
        None if was_busy => {}
        None => conn.read_line(MAX_LINE, on_line),
    }
}

fn on_line(conn: &mut Conn, line: io::Result<Option<Vec<u8>>>) {
    let line = match line {
        Ok(Some(line)) => line,
        // The client left: dropping the connection's Session cancels a job in progress.
        Ok(None) | Err(_) => return conn.close(),
    };
    if let Some(session) = conn.user_data_mut::<Session>()
        && session.busy.is_some()
    {
        session.stashed = Some(line);
        return;
    }
    request(conn, &line);
}

fn request(conn: &mut Conn, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text == "exit" {
        return conn.close();
    }
    let max = MAX_ROUNDS.load(Ordering::Relaxed);
    match text.parse::<u64>() {
        Ok(n) if n <= INLINE_ROUNDS => answer(conn, &digest::to_hex(digest::digest_serial(n))),
        Ok(n) if n <= max => start_job(conn, n),
        _ => answer(conn, &format!("ERR expected a round count 0..={max}")),
    }
}

/// Runs `n` rounds on rayon, watching the connection meanwhile (see the module doc).
fn start_job(conn: &mut Conn, n: u64) {
    let Some(slot) = Slot::take() else {
        return answer(conn, "ERR busy");
    };
    let cancel = Arc::new(AtomicBool::new(false));
    if let Some(session) = conn.user_data_mut::<Session>() {
        session.busy = Some(Arc::clone(&cancel));
    }
    conn.spawn_cpu(
        move || {
            let _slot = slot;
            digest::digest_parallel_cancellable(n, &cancel)
        },
        |conn, digest| match digest {
            Some(digest) => answer(conn, &digest::to_hex(digest)),
            None => conn.close(),
        },
    );
    conn.read_line(MAX_LINE, on_line);
}

fn main() -> ExitCode {
    // serve_hooks: every listener gets the handler, and a reload drains open connections.
    let hooks = aio::serve_hooks(|conn| {
        conn.set_user_data(Session::default());
        conn.read_line(MAX_LINE, on_line);
    })
    .before_service(|config| {
        let max = config.get_int_in("hash-max-rounds", 1_000_000_000, 0, i64::MAX)?;
        MAX_ROUNDS.store(u64::try_from(max).unwrap_or(0), Ordering::Relaxed);
        let jobs = config.get_int_in("hash-max-jobs", 16, 1, 1 << 20)?;
        MAX_JOBS.store(u64::try_from(jobs).unwrap_or(16), Ordering::Relaxed);
        Ok(())
    });
    aio::server_main(std::env::args_os(), hooks)
}
