//! Short reads count as "drained": a FIN that arrives with (or right after) the last data must
//! still be seen, on TCP and Unix sockets, whether the reader was parked or not when it came.

mod util;

use util::sched;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::mpsc;
use std::time::Duration;

use zmaster_coro::net::{TcpListener, UnixListener};
use zmaster_coro::{self as coroutine};

/// Coroutine stack size of this file's schedulers (0: the default).
const STACK: usize = 32 * 1024;

/// Client-side wait bound: a server that missed the EOF never answers, and the test fails
/// instead of hanging.
const WAIT: Duration = Duration::from_secs(30);
const ROUNDS: usize = 300;

/// Reads with a buffer bigger than anything the peer sends (every read is short) until EOF,
/// then writes back the byte count as one line. Before its first read it says so on `ready`
/// (when given), so the peer can send while it is parked.
fn count_until_eof<S>(conn: S, ready: Option<mpsc::Sender<()>>)
where
    for<'a> &'a S: Read + Write,
{
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    if let Some(r) = ready {
        let _ = r.send(());
    }
    loop {
        match (&conn).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(_) => return,
        }
    }
    let _ = (&conn).write_all(format!("{total}\n").as_bytes());
}

/// One client exchange: send `pieces` then half-close; expect the total back.
fn exchange<C: Read + Write>(mut c: C, pieces: &[&[u8]], shut: impl Fn(&C)) {
    for p in pieces {
        c.write_all(p).unwrap();
    }
    shut(&c);
    let mut answer = String::new();
    c.read_to_string(&mut answer)
        .expect("server answered before the client's read timeout (EOF not missed)");
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    assert_eq!(answer, format!("{total}\n"));
}

#[test]
fn tcp_fin_with_last_data_is_seen() {
    let s = sched(2, STACK);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    s.handle().go(move || {
        // Even rounds: the server reads at once (data and FIN may already be there); odd
        // rounds: it reports it is about to read first, so it parks before they arrive.
        for i in 0..ROUNDS * 2 {
            let Ok((c, _)) = l.accept() else { return };
            let ready = (i % 2 == 1).then(|| ready_tx.clone());
            coroutine::go(move || count_until_eof(c, ready));
        }
    });
    for i in 0..ROUNDS * 2 {
        let c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c.set_nodelay(true).unwrap();
        if i % 2 == 1 {
            ready_rx
                .recv_timeout(WAIT)
                .expect("server coroutine started");
        }
        let pieces: &[&[u8]] = if i % 4 < 2 {
            &[b"hello"]
        } else {
            &[b"first piece ", b"second piece"]
        };
        exchange(c, pieces, |c| c.shutdown(Shutdown::Write).unwrap());
    }
}

#[test]
fn unix_fin_with_last_data_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eof.sock");
    let s = sched(2, STACK);
    let l = UnixListener::bind(&path).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    s.handle().go(move || {
        for i in 0..ROUNDS * 2 {
            let Ok((c, _)) = l.accept() else { return };
            let ready = (i % 2 == 1).then(|| ready_tx.clone());
            coroutine::go(move || count_until_eof(c, ready));
        }
    });
    for i in 0..ROUNDS * 2 {
        let c = StdUnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        if i % 2 == 1 {
            ready_rx
                .recv_timeout(WAIT)
                .expect("server coroutine started");
        }
        exchange(c, &[b"abc", b"defgh"], |c| {
            c.shutdown(Shutdown::Write).unwrap()
        });
    }
}

#[test]
fn data_after_a_drained_short_read_wakes_the_reader() {
    // The server's first read is short (marks the socket drained); the client sends the rest
    // only after hearing back, so the second read must park and be woken by the new edge.
    let s = sched(2, STACK);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    s.handle().go(move || {
        for _ in 0..ROUNDS {
            let Ok((c, _)) = l.accept() else { return };
            coroutine::go(move || {
                let mut buf = [0u8; 1024];
                let mut got = Vec::new();
                while got.len() < 8 {
                    match (&c).read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    if got.len() == 4 && (&c).write_all(b"more\n").is_err() {
                        return;
                    }
                }
                let _ = (&c).write_all(&got);
            });
        }
    });
    for _ in 0..ROUNDS {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c.set_nodelay(true).unwrap();
        c.write_all(b"abcd").unwrap();
        let mut more = [0u8; 5];
        c.read_exact(&mut more).unwrap();
        assert_eq!(&more, b"more\n");
        c.write_all(b"efgh").unwrap();
        let mut all = [0u8; 8];
        c.read_exact(&mut all).unwrap();
        assert_eq!(&all, b"abcdefgh");
    }
}
