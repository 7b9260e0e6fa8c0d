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
//! waiting for it, or a write the peer does not take for that long, closes the connection.
//! `echo-max-pending` (size, default 1m) is accepted for symmetry with echo-aio: this server
//! writes each echo before reading the next line, so it buffers at most one line (see
//! `zmaster_examples::limits`). `echo-allow-detach` (`yes`, `loopback`
//! or `no`; default `loopback`): who may send `DETACH`: anyone, peers on 127.0.0.0/8, `::1`
//! or a unix socket, or nobody. A refused `DETACH` is answered with `ERR detach not allowed`
//! and the connection stays open (each detach makes the master start one more process, so a
//! remote client must not be able to do it).
//!
//! A FIFO service (`fifo:PATH`) is not echoed (its output would come back in): each line
//! written to it is logged at info level, as echo-aio does.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use zmaster_core::error::quoted;
use zmaster_examples::detach::{self, Peer, Policy};
use zmaster_examples::limits;
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
    // A write the peer does not take for the idle timeout fails with TimedOut: a peer that
    // sends and never reads holds the connection only that long (and this coroutine buffers
    // one line at most).
    if let Err(e) = conn.set_write_timeout(limits.idle_timeout) {
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
            let _ = (&conn).write_all(format!("{}\n", limits::TOO_LONG).as_bytes());
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
                if let Err(e) = (&conn).write_all(refused.as_bytes()) {
                    log::debug!("echo write failed: {e}");
                    return;
                }
                continue;
            }
            coroutine::detach_from_master();
        }
        let result = if complete {
            (&conn).write_all(&line)
        } else {
            // The last line of the stream, without its newline: echo it with one.
            (&conn)
                .write_all(&line)
                .and_then(|()| (&conn).write_all(b"\n"))
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
