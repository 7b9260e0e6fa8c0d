//! `echo-epoll ADDR`: minimal single-threaded epoll (mio, edge-triggered) line echo — the "limit".
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::process::ExitCode;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use zmaster_stress::echo::{echo_lines, parse_peer_args};

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    s: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    closing: bool,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let addr = match parse_peer_args("echo-epoll", &argv, 1) {
        Ok((a, _threads_ignored_single_threaded)) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match serve(&addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-epoll: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str) -> io::Result<()> {
    let sa = addr
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad address {addr}")))?;
    let mut l =
        TcpListener::bind(sa).map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut l, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            let _ = s.set_nodelay(true);
                            let idx = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            if poll
                                .registry()
                                .register(
                                    &mut s,
                                    Token(idx),
                                    Interest::READABLE | Interest::WRITABLE,
                                )
                                .is_ok()
                            {
                                conns[idx] = Some(Conn {
                                    s,
                                    inbuf: Vec::new(),
                                    out: Vec::new(),
                                    closing: false,
                                });
                            } else {
                                free.push(idx);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // Minimal by design: on EMFILE the pending connection waits in the
                        // backlog until the next accept edge (a new connection) arrives.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let idx = ev.token().0;
            let Some(Some(c)) = conns.get_mut(idx) else {
                continue;
            };
            let closed = ev.is_read_closed() || ev.is_error();
            if !serve_conn(c, &mut chunk, closed) {
                if let Some(mut c) = conns[idx].take() {
                    let _ = poll.registry().deregister(&mut c.s);
                }
                free.push(idx);
            }
        }
    }
}

/// Read everything available, echo complete lines, flush what fits. `false` = close.
fn serve_conn(c: &mut Conn, chunk: &mut [u8], closed: bool) -> bool {
    let mut eof = false;
    while !c.closing {
        match c.s.read(chunk) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => {
                c.inbuf.extend_from_slice(&chunk[..n]);
                c.closing = echo_lines(&mut c.inbuf, &mut c.out);
                // A short read emptied the socket buffer: new data raises a new edge
                // (but a FIN reported in this same event must be read now).
                if n < chunk.len() && !closed {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    while !c.out.is_empty() {
        match c.s.write(&c.out) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    !(eof || c.closing)
}
