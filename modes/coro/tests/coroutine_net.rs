//! Coroutine sockets: an echo server in coroutines under 1000+ concurrent connections on two
//! threads, connections handed over from an acceptor thread, timeouts, Unix sockets, connect.

mod util;

use util::sched;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zmaster_coro::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use zmaster_coro::{self as coroutine, Scheduler};

/// Coroutine stack size of this file's schedulers (0: the default).
const STACK: usize = 32 * 1024;

const WAIT: Duration = Duration::from_secs(60);
const LINES: usize = 4096;

/// Echoes lines until EOF.
fn echo<S>(conn: S)
where
    for<'a> &'a S: Read + Write,
{
    let mut r = BufReader::new(&conn);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if (&conn).write_all(line.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

fn spawn_echo_server(s: &Scheduler) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    s.handle().go(move || {
        while let Ok((c, _)) = l.accept() {
            coroutine::go(move || echo(c));
        }
    });
    addr
}

#[test]
fn thousand_concurrent_connections_on_two_threads() {
    let s = sched(2, STACK);
    let addr = spawn_echo_server(&s);
    let conns_per_thread = 150;
    let threads = 8; // 1200 connections open at once
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = crossbeam_channel_like();
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let ready_tx = ready_tx.clone();
            let go_rx = go_rx.clone();
            std::thread::spawn(move || {
                let mut conns: Vec<_> = (0..conns_per_thread)
                    .map(|_| std::net::TcpStream::connect(addr).unwrap())
                    .collect();
                for c in &conns {
                    c.set_read_timeout(Some(WAIT)).unwrap();
                }
                ready_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                let mut buf = String::new();
                for round in 0..5 {
                    for (i, c) in conns.iter_mut().enumerate() {
                        writeln!(c, "t{t} c{i} r{round}").unwrap();
                    }
                    for (i, c) in conns.iter_mut().enumerate() {
                        buf.clear();
                        let mut r = BufReader::new(&*c);
                        r.read_line(&mut buf).unwrap();
                        assert_eq!(buf, format!("t{t} c{i} r{round}\n"));
                    }
                }
                conns.len()
            })
        })
        .collect();
    for _ in 0..threads {
        ready_rx.recv_timeout(WAIT).unwrap();
    }
    // All connections are open now: accept loop + 1200 echo coroutines live.
    let deadline = Instant::now() + WAIT;
    while s.live_coroutines() < 1 + threads * conns_per_thread && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(s.live_coroutines(), 1 + threads * conns_per_thread);
    for _ in 0..threads {
        go_tx.send(()).unwrap();
    }
    let total: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(total, threads * conns_per_thread);
}

/// A tiny multi-consumer "go" signal built from std (each receiver takes one).
fn crossbeam_channel_like() -> (mpsc::Sender<()>, SharedRx) {
    let (tx, rx) = mpsc::channel();
    (tx, SharedRx(std::sync::Arc::new(std::sync::Mutex::new(rx))))
}

#[derive(Clone)]
struct SharedRx(std::sync::Arc<std::sync::Mutex<mpsc::Receiver<()>>>);

impl SharedRx {
    fn recv(&self) -> Result<(), mpsc::RecvError> {
        self.0.lock().unwrap().recv()
    }
}

#[test]
fn acceptor_thread_hands_std_streams_to_coroutines() {
    let s = sched(2, STACK);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = s.handle();
    std::thread::spawn(move || {
        for c in l.incoming().take(20) {
            let c = c.unwrap();
            h.go(move || echo(TcpStream::from_std(c).unwrap()));
        }
    });
    for i in 0..20 {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        writeln!(c, "hello {i}").unwrap();
        let mut line = String::new();
        BufReader::new(&c).read_line(&mut line).unwrap();
        assert_eq!(line, format!("hello {i}\n"));
    }
}

#[test]
fn coroutine_client_large_transfer_and_half_close() {
    let s = sched(2, STACK);
    let addr = spawn_echo_server(&s);
    let (tx, rx) = mpsc::channel();
    s.handle().go(move || {
        let c = TcpStream::connect(addr).unwrap();
        c.set_nodelay(true).unwrap();
        let writer = c.try_clone().unwrap();
        // Write 4 MiB of lines from another coroutine while this one reads: forces both
        // directions through would-block.
        coroutine::go(move || {
            let line = [b'x'; 1023];
            for _ in 0..LINES {
                (&writer).write_all(&line).unwrap();
                (&writer).write_all(b"\n").unwrap();
            }
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut total = 0;
        let mut buf = vec![0; 64 * 1024];
        loop {
            match (&c).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => panic!("read: {e}"),
            }
        }
        tx.send(total).unwrap();
    });
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), LINES * 1024);
}

#[test]
fn read_and_accept_timeouts() {
    let s = sched(1, STACK);
    let (tx, rx) = mpsc::channel();
    s.handle().go(move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_accept_timeout(Some(Duration::from_millis(30)))
            .unwrap();
        let t = Instant::now();
        let e = l.accept().unwrap_err();
        tx.send((e.kind(), t.elapsed())).unwrap();

        // A peer that never writes: the read times out, the stream stays usable.
        let addr = l.local_addr().unwrap();
        let peer = std::net::TcpStream::connect(addr).unwrap();
        l.set_accept_timeout(None).unwrap();
        let (c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        assert_eq!(c.read_timeout(), Some(Duration::from_millis(30)));
        let t = Instant::now();
        let e = (&c).read(&mut [0; 16]).unwrap_err();
        tx.send((e.kind(), t.elapsed())).unwrap();
        (&peer).write_all(b"late").unwrap();
        let mut buf = [0; 4];
        (&c).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"late");
        tx.send((ErrorKind::Other, Duration::ZERO)).unwrap();
    });
    for _ in 0..2 {
        let (kind, took) = rx.recv_timeout(WAIT).unwrap();
        assert_eq!(kind, ErrorKind::TimedOut);
        assert!(took >= Duration::from_millis(30), "{took:?}");
    }
    assert_eq!(rx.recv_timeout(WAIT).unwrap().0, ErrorKind::Other);
    // A zero timeout is rejected as by std.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(l.set_accept_timeout(Some(Duration::ZERO)).is_err());
}

#[test]
fn connect_refused_is_an_error() {
    let s = sched(1, STACK);
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (tx, rx) = mpsc::channel();
    s.handle().go(move || {
        tx.send(TcpStream::connect(addr).map(drop).map_err(|e| e.kind()))
            .unwrap();
    });
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap(),
        Err(ErrorKind::ConnectionRefused)
    );
}

#[test]
fn unix_sockets_echo() {
    let s = sched(2, STACK);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let l = UnixListener::bind(&path).unwrap();
    s.handle().go(move || {
        while let Ok((c, _)) = l.accept() {
            coroutine::go(move || echo(c));
        }
    });
    let (tx, rx) = mpsc::channel();
    for i in 0..50 {
        let (path, tx) = (path.clone(), tx.clone());
        s.handle().go(move || {
            let c = UnixStream::connect(&path).unwrap();
            (&c).write_all(format!("u{i}\n").as_bytes()).unwrap();
            let mut line = String::new();
            BufReader::new(&c).read_line(&mut line).unwrap();
            tx.send(line == format!("u{i}\n")).unwrap();
        });
    }
    for _ in 0..50 {
        assert!(rx.recv_timeout(WAIT).unwrap());
    }
    // From a plain thread the same type blocks the thread.
    let c = UnixStream::connect(&path).unwrap();
    (&c).write_all(b"plain\n").unwrap();
    let mut line = String::new();
    BufReader::new(&c).read_line(&mut line).unwrap();
    assert_eq!(line, "plain\n");
    let (a, b) = UnixStream::pair().unwrap();
    (&a).write_all(b"p").unwrap();
    let mut one = [0];
    (&b).read_exact(&mut one).unwrap();
    assert_eq!(&one, b"p");
}

#[test]
fn stopping_a_listener_ends_its_accept_loop() {
    let s = sched(2, STACK);
    let l = std::sync::Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let l2 = l.clone();
    s.handle().go(move || {
        let mut accepted = 0;
        let err = loop {
            match l2.accept() {
                Ok(_) => accepted += 1,
                Err(e) if l2.is_stopped() => break e,
                Err(e) => panic!("accept: {e}"),
            }
        };
        tx.send((accepted, err.kind())).unwrap();
    });
    let c = std::net::TcpStream::connect(addr).unwrap();
    drop(c);
    // A plain thread stops the loop (parked in accept, or about to be).
    l.stop();
    let (accepted, kind) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(kind, ErrorKind::ConnectionAborted);
    assert!(accepted <= 1);
    assert!(l.is_stopped());
    assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::ConnectionAborted);
}

#[test]
fn shutdown_unwinds_coroutines_parked_in_io() {
    let s = sched(2, STACK);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    s.handle().go(move || {
        while let Ok((c, _)) = l.accept() {
            let tx = tx.clone();
            coroutine::go(move || {
                struct SpawnOnDrop;
                impl Drop for SpawnOnDrop {
                    fn drop(&mut self) {
                        // Spawning from a destructor during shutdown is ignored, not a panic.
                        coroutine::go(|| {});
                    }
                }
                let _guard = SpawnOnDrop;
                tx.send(()).unwrap();
                let mut buf = [0; 16];
                let _ = (&c).read(&mut buf); // parks: the peer never writes
            });
        }
    });
    let peers: Vec<_> = (0..10)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    for _ in 0..10 {
        rx.recv_timeout(WAIT).unwrap();
    }
    assert_eq!(s.live_coroutines(), 11);
    s.shutdown();
    // The server side of each connection was closed by the unwinding: peers read EOF.
    for mut p in peers {
        p.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0; 1];
        assert_eq!(p.read(&mut buf).unwrap(), 0);
    }
}
