//! hash-aio: CPU-heavy work inside an aio handler. A line `N` is answered with the 32-hex-digit
//! digest of N hash rounds (see `zmaster_examples::digest`); `exit` closes the connection.
//!
//! Small requests (at most [`INLINE_ROUNDS`]) are computed on the connection's worker; bigger
//! ones go to rayon with `Conn::spawn_cpu`, split in parallel chunks, and the answer is
//! written from a callback back on the worker, so other connections keep being served.
//!
//! Config keys: `hash-max-rounds` (integer, default 1000000000): larger requests get `ERR`;
//! `hash-max-jobs` (default 16): with that many big requests in progress, another gets
//! `ERR busy` (no unbounded queue of CPU work).

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use zmaster_examples::digest;
use zmaster_modes::aio::{self, Conn, Hooks};

/// Requests up to this many rounds (about 0.1 ms) are answered inline on the worker.
const INLINE_ROUNDS: u64 = 100_000;
/// The longest request line.
const MAX_LINE: usize = 256;

static MAX_ROUNDS: AtomicU64 = AtomicU64::new(1_000_000_000);
/// Jobs on rayon right now, and the most allowed (`hash-max-jobs`): beyond it a request gets
/// `ERR busy` instead of queueing unbounded CPU work.
static JOBS: AtomicU64 = AtomicU64::new(0);
static MAX_JOBS: AtomicU64 = AtomicU64::new(16);

fn answer(conn: &mut Conn, text: &str) {
    conn.write(text.as_bytes());
    conn.write(b"\n");
    conn.flush(|conn, sent| match sent {
        Ok(()) => conn.read_line(MAX_LINE, on_line),
        Err(_) => conn.close(),
    });
}

fn on_line(conn: &mut Conn, line: io::Result<Option<Vec<u8>>>) {
    let line = match line {
        Ok(Some(line)) => line,
        Ok(None) | Err(_) => return conn.close(),
    };
    let text = String::from_utf8_lossy(&line);
    let text = text.trim();
    if text == "exit" {
        return conn.close();
    }
    let max = MAX_ROUNDS.load(Ordering::Relaxed);
    match text.parse::<u64>() {
        Ok(n) if n <= INLINE_ROUNDS => answer(conn, &digest::to_hex(digest::digest_serial(n))),
        Ok(n) if n <= max => {
            if JOBS.fetch_add(1, Ordering::SeqCst) >= MAX_JOBS.load(Ordering::Relaxed) {
                JOBS.fetch_sub(1, Ordering::SeqCst);
                return answer(conn, "ERR busy");
            }
            conn.spawn_cpu(
                move || {
                    let hex = digest::to_hex(digest::digest_parallel(n));
                    JOBS.fetch_sub(1, Ordering::SeqCst);
                    hex
                },
                |conn, hex| answer(conn, &hex),
            )
        }
        _ => answer(conn, &format!("ERR expected a round count 0..={max}")),
    }
}

fn main() -> ExitCode {
    let hooks = Hooks::new()
        .before_service(|config| {
            let max = config.get_int_in("hash-max-rounds", 1_000_000_000, 0, i64::MAX)?;
            MAX_ROUNDS.store(u64::try_from(max).unwrap_or(0), Ordering::Relaxed);
            let jobs = config.get_int_in("hash-max-jobs", 16, 1, 1 << 20)?;
            MAX_JOBS.store(u64::try_from(jobs).unwrap_or(16), Ordering::Relaxed);
            Ok(())
        })
        .service_register(|_name, listener, _kind| {
            aio::general_register(listener, |conn| conn.read_line(MAX_LINE, on_line))
        })
        .before_softstop(|| log::info!("softstop: finishing open connections"));
    aio::server_main(std::env::args_os(), hooks)
}
