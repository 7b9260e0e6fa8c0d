//! `stop_accepting`: listeners are closed at once (new connects are refused) while open
//! connections keep working; draining with `wait_idle`; the bare `Acceptor` API; FIFOs.

mod util;

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use util::{Client, MAX_LINE, echo, tcp_listener, unix_listener};
use zmaster_pool::{AcceptCallback, Acceptor, Conn, Handler, Listener, ListenerKind, Pool, Stream};

#[test]
fn new_connections_refused_existing_ones_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sock");
    let (tcp, addr) = tcp_listener();
    let pool = Pool::start(2, vec![(tcp, echo()), (unix_listener(&path), echo())]).expect("start");
    let mut held_tcp = Client::tcp(addr);
    let mut held_unix = Client::unix(&path);
    assert_eq!(held_tcp.roundtrip(b"before"), b"before");
    assert_eq!(held_unix.roundtrip(b"before"), b"before");
    assert!(pool.is_accepting());

    pool.stop_accepting();
    pool.stop_accepting(); // idempotent
    assert!(!pool.is_accepting());
    let err = TcpStream::connect(addr).expect_err("tcp listener closed");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    let err = UnixStream::connect(&path).expect_err("unix listener closed");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);

    assert_eq!(held_tcp.roundtrip(b"after"), b"after");
    assert_eq!(held_unix.roundtrip(b"after"), b"after");
    assert_eq!(pool.active_connections(), 2);
    assert!(
        !pool.wait_idle(Some(Instant::now() + Duration::from_millis(10))),
        "not idle yet"
    );
    drop(held_tcp);
    held_unix.send(b"exit\n");
    assert_eq!(held_unix.recv_line(), None);
    assert!(pool.wait_idle(None), "drained");
    assert_eq!(pool.active_connections(), 0);
    pool.shutdown();
}

#[test]
fn bare_acceptor_hands_streams_to_a_callback() {
    let (tcp, addr) = tcp_listener();
    let (tx, rx) = mpsc::channel::<Stream>();
    let cb: AcceptCallback = Box::new(move |s| {
        let _ = tx.send(s);
    });
    let acceptor = Acceptor::spawn(vec![(tcp, cb)]).expect("spawn");
    let _c1 = TcpStream::connect(addr).expect("connect");
    let _c2 = TcpStream::connect(addr).expect("connect");
    for _ in 0..2 {
        let s = rx.recv_timeout(Duration::from_secs(20)).expect("accepted");
        let Stream::Tcp(t) = &s else {
            panic!("tcp stream expected, got {s:?}")
        };
        assert!(t.nodelay().expect("nodelay"), "TCP_NODELAY set");
        // Non-blocking: a read with nothing to read would block.
        assert_eq!(
            s.read(&mut [0u8; 8]).expect_err("nothing yet").kind(),
            io::ErrorKind::WouldBlock
        );
    }
    assert!(acceptor.is_accepting());
    acceptor.stop_accepting();
    assert_eq!(
        TcpStream::connect(addr).expect_err("closed").kind(),
        io::ErrorKind::ConnectionRefused
    );
    acceptor.join();
}

#[test]
fn fifo_stream_is_handed_over_once_and_not_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.fifo");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let fd: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open fifo rw")
        .into();
    let listener = Listener::from_fd(fd, ListenerKind::Fifo).expect("from_fd");
    assert_eq!(listener.kind(), ListenerKind::Fifo);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    fn read_fifo(c: &mut Conn, tx: mpsc::Sender<Vec<u8>>) {
        c.read_line(MAX_LINE, move |c, r| {
            if let Ok(Some(line)) = r {
                let _ = tx.send(line);
                read_fifo(c, tx);
            }
        });
    }
    let h: Handler = Arc::new(move |c: &mut Conn| read_fifo(c, tx.clone()));
    let pool = Pool::start(1, vec![(listener, h)]).expect("start");
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open fifo w");
    w.write_all(b"first\nsecond\n").expect("write fifo");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).expect("line"),
        b"first"
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).expect("line"),
        b"second"
    );
    assert_eq!(pool.active_connections(), 0, "a FIFO is not a connection");
    assert!(pool.wait_idle(None));
    // After stop_accepting the FIFO is left to the next generation: its stream is closed.
    pool.stop_accepting();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)),
        Err(mpsc::RecvTimeoutError::Disconnected),
        "the reader callback (holding the sender) is dropped with the FIFO stream"
    );
    pool.shutdown();
}
