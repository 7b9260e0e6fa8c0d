//! echo-aio: line echo in aio mode (SPEC §9): each line is sent back as is; `exit` closes the
//! connection; `DETACH` detaches the process from its master and keeps echoing, if the peer
//! may (`echo-allow-detach`, below).
//!
//! ```text
//! echo-aio alone -server-service 127.0.0.1:7001      # by hand
//! zmaster -C examples/etc/service                     # under the master
//! ```
//!
//! A FIFO service (`fifo:PATH`) is not echoed (its output would come back in): each line
//! written to it is logged at info level.
//!
//! Config keys: `echo-max-line` (size, default 1m): a longer line is answered with
//! `ERR line too long` and the connection is closed. `echo-idle-timeout` (duration, default
//! 5m, 0 = off): a line that has not arrived complete that long after the server started
//! waiting for it closes the connection. `echo-max-pending` (size, default 1m): echoes are
//! sent while the next lines are read; a peer whose unsent output (what this server holds
//! plus the socket's kernel send queue) passes this bound is cut off, with one info line
//! `over echo-max-pending` (see `zmaster_examples::limits`). `echo-allow-detach` (`yes`,
//! `loopback` or `no`; default `loopback`): who may send `DETACH`: anyone, peers on
//! 127.0.0.0/8, `::1` or a unix socket, or nobody. A refused `DETACH` is answered with
//! `ERR detach not allowed` and the connection stays open (each detach makes the master
//! start one more process, so a remote client must not be able to do it).

use std::io;
use std::process::ExitCode;
use std::sync::OnceLock;

use zmaster_examples::detach::{self, Peer, Policy};
use zmaster_examples::{limits, outq};
use zmaster_modes::aio::{self, Conn, Hooks, ListenerKind, Stream};

fn max_line() -> usize {
    limits::get().max_line
}

/// Starts serving a new connection: every read from now on waits at most the idle timeout.
fn start(conn: &mut Conn) {
    conn.set_timeout(limits::get().idle_timeout);
    conn.read_line(max_line(), on_line);
}

/// Who may send `DETACH` (from `echo-allow-detach`), set once before serving.
static DETACH: OnceLock<Policy> = OnceLock::new();

/// Whether the peer of `conn` may detach this process.
fn may_detach(conn: &Conn) -> bool {
    let peer = match conn.stream() {
        Stream::Tcp(s) => Peer::of_tcp(s.peer_addr()),
        Stream::Unix(_) => Peer::Unix,
        Stream::Fifo(_) => Peer::Unknown,
    };
    DETACH
        .get()
        .copied()
        .unwrap_or(Policy::DEFAULT)
        .allows(peer)
}

/// A line without its trailing `\r` (so `exit\r\n` from telnet also closes).
fn command(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The output unsent when an echo has been queued after `before` bytes still unsent, if it
/// passes `echo-max-pending`: what this server holds before the echo, plus the kernel's send
/// queue once output is backing up (an `ioctl` only then, see `Limits::ask_kernel`).
fn over_pending(conn: &Conn, before: usize) -> Option<usize> {
    let limits = limits::get();
    let mut unsent = before;
    if limits.ask_kernel(before, conn.pending_output()) {
        unsent += outq::send_queue(conn.stream());
    }
    limits.over_pending(unsent).then_some(unsent)
}

fn on_line(conn: &mut Conn, line: io::Result<Option<Vec<u8>>>) {
    // What the kernel has not taken yet (written at the end of each callback turn).
    let before = conn.pending_output();
    let line = match line {
        Ok(Some(line)) => line,
        Ok(None) => return conn.close(),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            conn.write(limits::TOO_LONG.as_bytes());
            conn.write(b"\n");
            return conn.flush(|conn, _| conn.close());
        }
        Err(e) => {
            // TimedOut is `echo-idle-timeout`: the peer is silent or trickling.
            log::debug!(
                "echo read failed peer={}: {e}",
                conn.stream().describe_peer()
            );
            return conn.close();
        }
    };
    match command(&line) {
        // Echoes of earlier pipelined lines go out before the close.
        b"exit" => return conn.flush(|conn, _| conn.close()),
        b"DETACH" if !may_detach(conn) => {
            log::info!("DETACH refused peer={}", conn.stream().describe_peer());
            conn.write(detach::REFUSED.as_bytes());
        }
        cmd => {
            if cmd == b"DETACH" {
                aio::detach_from_master();
            }
            conn.write(&line);
        }
    }
    conn.write(b"\n");
    // Echoes are sent while the next lines are read, so a pipelining client is not slowed
    // down; a peer that lets its output pile up past `echo-max-pending` is cut off.
    if let Some(unsent) = over_pending(conn, before) {
        log::info!(
            "echo peer={} cut: {unsent} bytes unsent, over {} {}",
            conn.stream().describe_peer(),
            limits::MAX_PENDING_KEY,
            limits::get().max_pending
        );
        return conn.close();
    }
    conn.read_line(max_line(), on_line);
}

fn read_fifo(conn: &mut Conn, service: String) {
    conn.read_line(max_line(), move |conn, line| match line {
        Ok(Some(line)) => {
            log::info!(
                "fifo service={service:?} line={:?}",
                String::from_utf8_lossy(&line)
            );
            read_fifo(conn, service);
        }
        Ok(None) => conn.close(),
        Err(e) => {
            log::warn!("fifo service={service:?} read failed: {e}");
            conn.close();
        }
    });
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
                aio::general_register(listener, move |conn| read_fifo(conn, name.clone()))
            }
            _ => aio::general_register(listener, start),
        })
        // A reload drains: open connections finish, an idle old process exits at once.
        .drain_on_softstop();
    aio::server_main(std::env::args_os(), hooks)
}
