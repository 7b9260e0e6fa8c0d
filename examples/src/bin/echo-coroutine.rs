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
//! `ERR line too long` and the connection is closed. `echo-allow-detach` (`yes`, `loopback`
//! or `no`; default `loopback`): who may send `DETACH`: anyone, peers on 127.0.0.0/8, `::1`
//! or a unix socket, or nobody. A refused `DETACH` is answered with `ERR detach not allowed`
//! and the connection stays open (each detach makes the master start one more process, so a
//! remote client must not be able to do it).
//!
//! A FIFO service (`fifo:PATH`) is not echoed (its output would come back in): each line
//! written to it is logged at info level, as echo-aio does.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use zmaster_core::error::quoted;
use zmaster_examples::detach::{self, Peer, Policy};
use zmaster_modes::coroutine::{self, Connection, Fifo, Hooks, ListenerKind};

/// The longest line echoed (from `echo-max-line`), set once before serving.
static MAX_LINE: AtomicUsize = AtomicUsize::new(1 << 20);

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

/// Echoes lines until `exit`, end of stream or an error.
fn serve(conn: Connection) {
    let max = MAX_LINE.load(Ordering::Relaxed);
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut reader = BufReader::with_capacity(4096, &conn);
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
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
            let _ = (&conn).write_all(b"ERR line too long\n");
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
    let max = MAX_LINE.load(Ordering::Relaxed);
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
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

fn main() -> ExitCode {
    let hooks = Hooks::new()
        .before_service(|config| {
            let n = config.get_size("echo-max-line", 1 << 20)?;
            MAX_LINE.store(usize::try_from(n).unwrap_or(usize::MAX), Ordering::Relaxed);
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
