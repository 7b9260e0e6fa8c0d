//! Conn operations over real sockets: read_exact, read_some, defer, flush, close after write,
//! read/flush timeouts, panics in callbacks.

mod util;

use std::io::{self, Read};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use util::{Client, MAX_LINE, tcp_listener};
use zmaster_pool::{Conn, Handler, Pool};

/// A small command protocol exercising each operation; unknown lines are echoed.
fn on_command(conn: &mut Conn, r: io::Result<Option<Vec<u8>>>) {
    let Ok(Some(line)) = r else {
        conn.close();
        return;
    };
    let line = String::from_utf8_lossy(&line).into_owned();
    let mut words = line.split(' ');
    match (words.next(), words.next()) {
        (Some("exact"), Some(n)) => {
            let n: usize = n.parse().unwrap_or(0);
            conn.read_exact(n, |c, r| {
                match r {
                    Ok(Some(bytes)) => {
                        c.write(b"got ");
                        c.write(&bytes);
                        c.write(b"\n");
                    }
                    other => c.write(format!("exact failed {other:?}\n").as_bytes()),
                }
                c.read_line(MAX_LINE, on_command);
            });
        }
        (Some("line"), Some(n)) => {
            let n: usize = n.parse().unwrap_or(0);
            conn.read_line(n, |c, r| {
                match r {
                    Ok(Some(bytes)) => {
                        c.write(b"line ");
                        c.write(&bytes);
                        c.write(b"\n");
                    }
                    other => c.write(format!("line failed {other:?}\n").as_bytes()),
                }
                c.read_line(MAX_LINE, on_command);
            });
        }
        (Some("some"), _) => conn.read_some(3, |c, r| {
            let n = r.ok().flatten().map_or(0, |b| b.len());
            c.write(format!("some {n}\n").as_bytes());
            c.read_line(MAX_LINE, on_command);
        }),
        (Some("defer"), _) => conn.defer(|c| {
            c.write(b"deferred\n");
            c.read_line(MAX_LINE, on_command);
        }),
        (Some("big"), Some(n)) => {
            let n: usize = n.parse().unwrap_or(0);
            conn.write(&vec![b'b'; n]);
            conn.write(b"\n");
            conn.flush(|c, r| {
                c.write(format!("flushed {}\n", r.is_ok()).as_bytes());
                c.read_line(MAX_LINE, on_command);
            });
        }
        (Some("bye"), _) => {
            conn.write(b"bye\n");
            conn.close();
        }
        (Some("panic"), _) => panic!("handler panic requested by the test"),
        _ => {
            conn.write(line.as_bytes());
            conn.write(b"\n");
            conn.read_line(MAX_LINE, on_command);
        }
    }
}

fn command_pool() -> (Pool, std::net::SocketAddr) {
    let (l, addr) = tcp_listener();
    let h: Handler = Arc::new(|c: &mut Conn| c.read_line(MAX_LINE, on_command));
    (Pool::start(1, vec![(l, h)]).expect("start"), addr)
}

#[test]
fn read_exact_and_read_some() {
    let (pool, addr) = command_pool();
    let mut c = Client::tcp(addr);
    c.send(b"exact 6\nab");
    c.send(b"c\nde");
    assert_eq!(c.recv_line().expect("reply"), b"got abc");
    assert_eq!(c.recv_line().expect("reply"), b"de");
    c.send(b"some\nhello");
    assert_eq!(c.recv_line().expect("reply"), b"some 3");
    // "lo" is still buffered: it prefixes the next line.
    assert_eq!(c.roundtrip(b" there"), b"lo there");
    c.send(b"exact 4\nab");
    c.stream()
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let reply = c.recv_line().expect("reply");
    assert!(
        String::from_utf8_lossy(&reply).contains("UnexpectedEof"),
        "short read_exact at EOF: {}",
        String::from_utf8_lossy(&reply)
    );
    pool.shutdown();
}

#[test]
fn huge_read_exact_and_unlimited_read_line_serve_what_arrives() {
    let (pool, addr) = command_pool();
    let mut c = Client::tcp(addr);
    // No limit on the line: usize::MAX must not overflow.
    c.send(b"line 18446744073709551615\nhello");
    c.send(b" world\n");
    assert_eq!(c.recv_line().expect("reply"), b"line hello world");
    assert_eq!(c.roundtrip(b"still here"), b"still here");
    // A peer-announced length of 1 TiB is not allocated up front: the read waits for the
    // bytes and ends short at EOF, and the worker lives on.
    c.send(b"exact 1099511627776\nabc");
    c.stream()
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let reply = String::from_utf8(c.recv_line().expect("reply")).expect("utf8");
    assert!(
        reply.contains("UnexpectedEof") && reply.contains("after 3 of 1099511627776 bytes"),
        "{reply}"
    );
    assert_eq!(Client::tcp(addr).roundtrip(b"next"), b"next");
    pool.shutdown();
}

#[test]
fn defer_flush_and_close_after_write() {
    let (pool, addr) = command_pool();
    let mut c = Client::tcp(addr);
    assert_eq!(c.roundtrip(b"defer"), b"deferred");
    c.send(b"big 3000000\n");
    assert_eq!(c.recv_line().expect("big").len(), 3_000_000);
    assert_eq!(c.recv_line().expect("flushed"), b"flushed true");
    assert_eq!(c.roundtrip(b"bye"), b"bye");
    assert_eq!(c.recv_line(), None);
    pool.shutdown();
}

#[test]
fn a_panicking_callback_closes_only_its_connection() {
    let (pool, addr) = command_pool();
    let mut other = Client::tcp(addr);
    assert_eq!(other.roundtrip(b"one"), b"one");
    let mut c = Client::tcp(addr);
    c.send(b"panic\n");
    assert_eq!(c.recv_line(), None, "panicking connection is closed");
    assert_eq!(other.roundtrip(b"two"), b"two");
    assert_eq!(Client::tcp(addr).roundtrip(b"new"), b"new");
    pool.shutdown();
}

#[test]
fn read_timeout_fires_and_connection_stays_usable() {
    let (l, addr) = tcp_listener();
    let h: Handler = Arc::new(|c: &mut Conn| {
        c.set_timeout(Some(Duration::from_millis(50)));
        c.read_line(MAX_LINE, |c, r| match r {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                c.write(b"timeout\n");
                c.set_timeout(None);
                c.read_line(MAX_LINE, util::on_line);
            }
            other => {
                c.write(format!("unexpected {other:?}\n").as_bytes());
                c.close();
            }
        });
    });
    let pool = Pool::start(1, vec![(l, h)]).expect("start");
    let mut c = Client::tcp(addr);
    assert_eq!(c.recv_line().expect("timeout notice"), b"timeout");
    assert_eq!(c.roundtrip(b"still here"), b"still here");
    pool.shutdown();
}

#[test]
fn flush_timeout_fires_when_the_peer_does_not_read() {
    let (l, addr) = tcp_listener();
    let (tx, rx) = mpsc::channel::<io::ErrorKind>();
    let h: Handler = Arc::new(move |c: &mut Conn| {
        let tx = tx.clone();
        c.set_timeout(Some(Duration::from_millis(100)));
        // Far more than loopback socket buffers hold.
        c.write(&vec![b'z'; 64 * 1024 * 1024]);
        c.flush(move |c, r| {
            let _ = tx.send(r.err().map_or(io::ErrorKind::Other, |e| e.kind()));
            c.close();
        });
    });
    let pool = Pool::start(1, vec![(l, h)]).expect("start");
    let mut c = Client::tcp(addr);
    let kind = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("flush completed");
    assert_eq!(kind, io::ErrorKind::TimedOut);
    // Drain what was sent; the server closed the connection.
    let mut sink = Vec::new();
    let _ = c.stream().read_to_end(&mut sink);
    assert!(pool.wait_idle(None));
    pool.shutdown();
}

#[test]
fn reading_again_after_end_of_stream_does_not_spin_forever() {
    let (l, addr) = tcp_listener();
    let (tx, rx) = mpsc::channel::<usize>();
    fn stubborn(c: &mut Conn, tx: mpsc::Sender<usize>, n: usize) {
        c.read_line(MAX_LINE, move |c, _| {
            let _ = tx.send(n);
            stubborn(c, tx, n + 1); // ignores EOF: a bug the pool must survive
        });
    }
    let h: Handler = Arc::new(move |c: &mut Conn| stubborn(c, tx.clone(), 0));
    let pool = Pool::start(1, vec![(l, h)]).expect("start");
    drop(Client::tcp(addr));
    rx.recv_timeout(Duration::from_secs(20))
        .expect("first callback (EOF)");
    assert!(
        pool.wait_idle(None),
        "the stubborn connection is eventually closed"
    );
    let calls = 1 + rx.try_iter().count();
    assert!(calls > 1 && calls < 100, "callback ran {calls} times");
    pool.shutdown();
}

#[test]
fn user_data_carries_state_between_fn_callbacks() {
    struct Count(usize);
    fn on_line(c: &mut Conn, r: io::Result<Option<Vec<u8>>>) {
        let Ok(Some(line)) = r else {
            c.close();
            return;
        };
        let Some(count) = c.user_data_mut::<Count>() else {
            c.close();
            return;
        };
        count.0 += 1;
        let n = count.0;
        c.write(format!("{n} {}\n", String::from_utf8_lossy(&line)).as_bytes());
        if line == b"take" {
            assert_eq!(c.take_user_data::<Count>().map(|c| c.0), Some(n));
            assert!(c.user_data::<Count>().is_none());
        }
        c.read_line(MAX_LINE, on_line);
    }
    let (l, addr) = tcp_listener();
    let h: Handler = Arc::new(|c: &mut Conn| {
        c.set_user_data(Count(0));
        assert!(c.user_data::<String>().is_none(), "wrong type gives None");
        c.read_line(MAX_LINE, on_line);
    });
    let pool = Pool::start(1, vec![(l, h)]).expect("start");
    let mut c = Client::tcp(addr);
    assert_eq!(c.roundtrip(b"a"), b"1 a");
    assert_eq!(c.roundtrip(b"b"), b"2 b");
    assert_eq!(c.roundtrip(b"take"), b"3 take");
    c.send(b"gone\n");
    assert_eq!(c.recv_line(), None, "no state left: the handler closes");
    pool.shutdown();
}

#[test]
fn sleep_runs_later_alongside_a_pending_read() {
    fn tick(c: &mut Conn, n: u32) {
        c.write(format!("tick {n}\n").as_bytes());
        if n < 3 {
            c.sleep(Duration::from_millis(10), move |c| tick(c, n + 1));
        }
    }
    let (l, addr) = tcp_listener();
    let h: Handler = Arc::new(|c: &mut Conn| {
        c.sleep(Duration::from_millis(10), |c| tick(c, 1));
        c.read_line(MAX_LINE, util::on_line);
    });
    let pool = Pool::start(1, vec![(l, h)]).expect("start");
    let mut c = Client::tcp(addr);
    for n in 1..=3 {
        assert_eq!(c.recv_line().expect("tick"), format!("tick {n}").as_bytes());
    }
    assert_eq!(c.roundtrip(b"read still pending"), b"read still pending");
    pool.shutdown();
}
