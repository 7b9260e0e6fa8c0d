//! `UnixStream::connect` to a listener whose backlog is full waits for room (unix sockets
//! report `EAGAIN`, not `EINPROGRESS`), from coroutines and plain threads, and
//! `connect_timeout` gives up with `TimedOut`.

mod util;

use util::sched;

use std::io::ErrorKind;
use std::os::unix::net as stdnet;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};
use zmaster_coro::net::UnixStream;

/// Coroutine stack size of this file's schedulers (0: the default).
const STACK: usize = 0;

const WAIT: Duration = Duration::from_secs(20);

/// A listener at `path` whose backlog is full: `fillers` hold the queued connections.
fn full_listener(path: &Path) -> (stdnet::UnixListener, Vec<Socket>) {
    let addr = SockAddr::unix(path).unwrap();
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    sock.bind(&addr).unwrap();
    sock.listen(0).unwrap();
    let mut fillers = Vec::new();
    loop {
        let c = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        match c.connect(&addr) {
            Ok(()) => fillers.push(c),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
            Err(e) => panic!("filling the backlog: {e}"),
        }
        assert!(fillers.len() < 1000, "backlog never filled");
    }
    (sock.into(), fillers)
}

#[test]
fn connect_timeout_on_a_full_backlog_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let (_listener, _fillers) = full_listener(&path);
    let s = sched(1, STACK);
    let (tx, rx) = mpsc::channel();
    let p = path.clone();
    s.handle().go(move || {
        let r = UnixStream::connect_timeout(&p, Duration::from_millis(50));
        tx.send(r.map(drop).map_err(|e| e.kind())).unwrap();
    });
    assert_eq!(rx.recv_timeout(WAIT), Ok(Err(ErrorKind::TimedOut)));
    let r = UnixStream::connect_timeout(&path, Duration::from_millis(50));
    assert_eq!(r.map(drop).map_err(|e| e.kind()), Err(ErrorKind::TimedOut));
}

#[test]
fn connect_on_a_full_backlog_waits_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let (listener, _fillers) = full_listener(&path);
    let s = sched(1, STACK);
    let (tx, rx) = mpsc::channel();
    let p = path.clone();
    s.handle().go(move || {
        tx.send(UnixStream::connect(&p).map(drop).map_err(|e| e.kind()))
            .unwrap();
    });
    let p = path.clone();
    let plain = std::thread::spawn(move || UnixStream::connect(&p).map(drop).map_err(|e| e.kind()));
    // Make room for both: accept two queued connections.
    for _ in 0..2 {
        drop(listener.accept().unwrap());
    }
    assert_eq!(rx.recv_timeout(WAIT), Ok(Ok(())), "coroutine connect");
    assert_eq!(plain.join().unwrap(), Ok(()), "plain-thread connect");
}
