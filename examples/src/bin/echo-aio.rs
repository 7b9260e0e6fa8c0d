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
//! `ERR line too long` and the connection is closed. `echo-allow-detach` (`yes`, `loopback`
//! or `no`; default `loopback`): who may send `DETACH`: anyone, peers on 127.0.0.0/8, `::1`
//! or a unix socket, or nobody. A refused `DETACH` is answered with `ERR detach not allowed`
//! and the connection stays open (each detach makes the master start one more process, so a
//! remote client must not be able to do it).

use std::io;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use zmaster_examples::detach::{self, Peer, Policy};
use zmaster_modes::aio::{self, Conn, Hooks, ListenerKind, Stream};

/// The longest line echoed (from `echo-max-line`), set once before serving.
static MAX_LINE: AtomicUsize = AtomicUsize::new(1 << 20);

fn max_line() -> usize {
    MAX_LINE.load(Ordering::Relaxed)
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

fn on_line(conn: &mut Conn, line: io::Result<Option<Vec<u8>>>) {
    match line {
        Ok(Some(line)) => match command(&line) {
            b"exit" => conn.close(),
            cmd => {
                if cmd != b"DETACH" {
                    conn.write(&line);
                } else if may_detach(conn) {
                    aio::detach_from_master();
                    conn.write(&line);
                } else {
                    log::info!("DETACH refused peer={}", conn.stream().describe_peer());
                    conn.write(detach::REFUSED.as_bytes());
                }
                conn.write(b"\n");
                // Wait for the kernel to take the echo before reading more: a client that
                // sends without reading is slowed down instead of growing our buffer.
                conn.flush(|conn, sent| match sent {
                    Ok(()) => conn.read_line(max_line(), on_line),
                    Err(e) => {
                        log::debug!("echo write failed: {e}");
                        conn.close();
                    }
                });
            }
        },
        Ok(None) => conn.close(),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            conn.write(b"ERR line too long\n");
            conn.flush(|conn, _| conn.close());
        }
        Err(e) => {
            log::debug!("echo read failed: {e}");
            conn.close();
        }
    }
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
                aio::general_register(listener, move |conn| read_fifo(conn, name.clone()))
            }
            _ => aio::general_register(listener, |conn| conn.read_line(max_line(), on_line)),
        })
        // A reload drains: open connections finish, an idle old process exits at once.
        .drain_on_softstop();
    aio::server_main(std::env::args_os(), hooks)
}
