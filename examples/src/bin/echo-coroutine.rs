//! echo-coroutine: line echo in coroutine mode (SPEC §9), one coroutine per connection with
//! blocking-style I/O: each line is sent back as is; `exit` closes the connection; `DETACH`
//! detaches the process from its master and keeps echoing, if the peer may
//! (`echo-allow-detach`, below).
//!
//! ```text
//! echo-coroutine alone -server-service 127.0.0.1:7002   # by hand
//! zmaster -C examples/etc/service                        # under the master
//! ```
//!
//! Config keys: `echo-max-line` (size, default 1m): a longer line is answered with
//! `ERR line too long` and the connection is closed. `echo-idle-timeout` (duration, default
//! 5m, 0 = off): a line that has not arrived complete that long after the server started
//! waiting for it, or a write the peer does not take any of for that long, closes the
//! connection. `echo-max-pending` (size, default 1m): a peer whose unsent output passes this
//! is cut off, with one info line `over echo-max-pending`. This server writes each echo
//! before reading the next line, so it holds one line at most: the rest is the socket's
//! kernel send queue, checked each time a write has waited a second (or the idle timeout if
//! shorter) for the peer (see `zmaster_examples::limits`). `echo-allow-detach` (`yes`,
//! `loopback` or `no`; default `loopback`): who may send `DETACH`: anyone, peers on
//! 127.0.0.0/8, `::1` or a unix socket, or nobody. A refused `DETACH` is answered with
//! `ERR detach not allowed` and the connection stays open (each detach makes the master
//! start one more process, so a remote client must not be able to do it).
//!
//! A FIFO service (`fifo:PATH`) is not echoed (its output would come back in): each line
//! written to it is logged at info level, as echo-aio does.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use zmaster_core::error::quoted;
use zmaster_examples::detach::{self, Peer, Policy};
use zmaster_examples::limits::{self, Limits};
use zmaster_examples::outq;
use zmaster_modes::coroutine::{self, Connection, Fifo, Hooks, ListenerKind};

/// Who may send `DETACH` (from `echo-allow-detach`), set once before serving.
static DETACH: OnceLock<Policy> = OnceLock::new();

/// Whether the peer of `conn` may detach this process.
fn may_detach(conn: &Connection) -> bool {
    let peer = match conn {
        Connection::Tcp(s) => Peer::of_tcp(s.peer_addr()),
        Connection::Unix(_) => Peer::Unix,
    };
    let allowed = DETACH
        .get()
        .copied()
        .unwrap_or(Policy::DEFAULT)
        .allows(peer);
    if !allowed {
        log::info!("DETACH refused peer={peer:?}");
    }
    allowed
}

/// The peer of `conn`, for log lines.
fn describe(conn: &Connection) -> String {
    match conn {
        Connection::Tcp(s) => s
            .peer_addr()
            .map_or_else(|_| "tcp".to_owned(), |a| a.to_string()),
        Connection::Unix(_) => "unix".to_owned(),
    }
}

/// Writes all of `buf` (with the write timeout set to `limits.write_slice()`), cutting off
/// a peer that does not take it: each time a write has waited a slice, the output unsent
/// (what is left of `buf` plus the kernel's send queue) is checked against
/// `echo-max-pending`, and the slices waited since the last progress against the idle
/// timeout. A write that completes costs no extra syscall.
fn send(conn: &Connection, mut buf: &[u8], limits: &Limits) -> io::Result<()> {
    let mut stalled = Duration::ZERO;
    let mut out = conn;
    while !buf.is_empty() {
        match out.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = buf.get(n..).unwrap_or_default();
                stalled = Duration::ZERO;
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                let queued = match conn {
                    Connection::Tcp(s) => outq::send_queue(s),
                    Connection::Unix(s) => outq::send_queue(s),
                };
                let unsent = buf.len().saturating_add(queued);
                if limits.over_pending(unsent) {
                    log::info!(
                        "echo peer={} cut: {unsent} bytes unsent, over {} {}",
                        describe(conn),
                        limits::MAX_PENDING_KEY,
                        limits.max_pending
                    );
                    return Err(io::Error::new(e.kind(), "over echo-max-pending"));
                }
                stalled = stalled.saturating_add(limits.write_slice());
                if limits.idle_timeout.is_some_and(|idle| stalled >= idle) {
                    return Err(io::Error::new(e.kind(), "idle timeout"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads from a connection with one deadline for a whole line: each read waits only for
/// what is left of it, so a peer trickling a byte at a time is cut like a silent one.
struct LineDeadline<'a> {
    conn: &'a Connection,
    /// When the line being read must be complete (`None`: no idle timeout).
    deadline: Option<Instant>,
}

impl Read for LineDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
            }
            self.conn.set_read_timeout(Some(left))?;
        }
        self.conn.read(buf)
    }
}

/// Echoes lines until `exit`, end of stream, an error or the idle timeout.
fn serve(conn: Connection) {
    let limits = limits::get();
    let max = limits.max_line;
    let limit = limits.line_read_limit();
    // Writes wait a slice at a time, so that `send` can check the pending bound while the
    // peer does not read (the timeout is kept by the stream, not set in the kernel).
    if let Err(e) = conn.set_write_timeout(Some(limits.write_slice())) {
        log::debug!("echo write timeout not set: {e}");
        return;
    }
    let mut reader = BufReader::with_capacity(
        4096,
        LineDeadline {
            conn: &conn,
            deadline: None,
        },
    );
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        reader.get_mut().deadline = limits.idle_timeout.map(deadline_after);
        // Read at most max + 1 bytes so an endless line cannot grow the buffer without limit
        // (saturating: `echo-max-line` may be as large as u64::MAX).
        match (&mut reader).take(limit).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                log::debug!("echo read failed: {e}");
                return;
            }
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > max {
            let _ = send(&conn, format!("{}\n", limits::TOO_LONG).as_bytes(), &limits);
            return;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let command = text.strip_suffix(b"\r").unwrap_or(text);
        if command == b"exit" {
            return;
        }
        if command == b"DETACH" {
            if !may_detach(&conn) {
                let refused = format!("{}\n", detach::REFUSED);
                if let Err(e) = send(&conn, refused.as_bytes(), &limits) {
                    log::debug!("echo write failed: {e}");
                    return;
                }
                continue;
            }
            coroutine::detach_from_master();
        }
        let result = if complete {
            send(&conn, &line, &limits)
        } else {
            // The last line of the stream, without its newline: echo it with one.
            send(&conn, &line, &limits).and_then(|()| send(&conn, b"\n", &limits))
        };
        if let Err(e) = result {
            log::debug!("echo write failed: {e}");
            return;
        }
    }
}

/// Logs each line written to the FIFO of service `name` until end of stream or an error.
fn read_fifo(fifo: Fifo, name: &str) {
    let limit = limits::get().line_read_limit();
    let mut reader = BufReader::new(fifo);
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        match (&mut reader).take(limit).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                log::info!(
                    "fifo service={} line={}",
                    quoted(name),
                    quoted(&String::from_utf8_lossy(text))
                );
            }
            Err(e) => {
                log::warn!("fifo service={} read failed: {e}", quoted(name));
                return;
            }
        }
    }
}

/// `now + timeout`, or far in the future if that overflows (a timeout of years).
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

fn main() -> ExitCode {
    let hooks = Hooks::new()
        .before_service(|config| {
            limits::load(config)?;
            let _ = DETACH.set(detach::from_config(config)?);
            Ok(())
        })
        .service_register(|name, listener, kind| match kind {
            // A FIFO is read and written through one fd: echoing would feed our own output
            // back to us. Log its lines instead.
            ListenerKind::Fifo => {
                let name = name.to_owned();
                coroutine::fifo_register(listener, move |fifo| read_fifo(fifo, &name))
            }
            _ => coroutine::general_register(listener, serve),
        })
        // A reload drains: open connections finish, an idle old process exits at once.
        .drain_on_softstop();
    coroutine::server_main(std::env::args_os(), hooks)
}
