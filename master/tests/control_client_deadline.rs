//! `control::request`'s timeout is one deadline over the whole exchange: a server that
//! trickles its reply byte by byte, or a listener whose backlog is full, cannot keep the
//! client past it.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};
use zmaster::control::{Request, request};

/// Generous bound that only detects a hang.
const HANG: Duration = Duration::from_secs(30);

/// Runs `request` on a thread and returns its outcome, or panics if it hangs.
fn ask(path: std::path::PathBuf, timeout: Duration) -> std::io::Result<zmaster::control::Reply> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(request(&path, &Request::Status, timeout));
    });
    rx.recv_timeout(HANG).expect("request returned")
}

fn timed_out(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::TimedOut | ErrorKind::WouldBlock)
}

#[test]
fn a_trickled_reply_does_not_extend_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (stop_tx, stop) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
        // One byte every 50 ms, never a newline: each read is quick, the reply never ends.
        // 200 bytes (10 s) and then a close: without one deadline the client reads them all.
        for _ in 0..200 {
            if s.write_all(b"x").is_err() {
                return;
            }
            if stop.recv_timeout(Duration::from_millis(50)).is_ok() {
                return;
            }
        }
    });
    let got = ask(path, Duration::from_millis(500));
    drop(stop_tx);
    let kind = got.map(drop).map_err(|e| e.kind());
    assert!(
        kind.is_err_and(timed_out),
        "the exchange timed out as a whole: {kind:?}"
    );
}

#[test]
fn a_full_backlog_does_not_block_connect_past_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let listener = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    let addr = SockAddr::unix(&path).unwrap();
    listener.bind(&addr).unwrap();
    listener.listen(0).unwrap();
    // Never accepted: fill the backlog until a non-blocking connect is refused.
    let mut queued = Vec::new();
    loop {
        let s = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        match s.connect(&addr) {
            Ok(()) => queued.push(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the backlog: {e}"),
        }
        assert!(queued.len() < 10_000, "the backlog never filled");
    }
    let got = ask(path, Duration::from_millis(300));
    let kind = got.map(drop).map_err(|e| e.kind());
    assert_eq!(
        kind,
        Err(ErrorKind::TimedOut),
        "connect gave up at the deadline"
    );
    drop(queued);
    drop(listener);
}

#[test]
fn connect_errors_other_than_a_full_backlog_come_back_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let missing = ask(dir.path().join("none.sock"), HANG / 2);
    let kind = missing.map(drop).map_err(|e| e.kind());
    assert_eq!(kind, Err(ErrorKind::NotFound), "no socket there");
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let kind = ask(stale, HANG / 2).map(drop).map_err(|e| e.kind());
    assert_eq!(kind, Err(ErrorKind::ConnectionRefused), "nobody serves it");
}

#[test]
fn an_endless_reply_stops_at_max_reply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let chunk = [b'x'; 65536];
        // Until the client hangs up: far more than MAX_REPLY, never a newline.
        while s.write_all(&chunk).is_ok() {}
    });
    let kind = ask(path, HANG / 2).map(drop).map_err(|e| e.kind());
    assert_eq!(
        kind,
        Err(ErrorKind::InvalidData),
        "read stopped at MAX_REPLY, not the deadline"
    );
}
