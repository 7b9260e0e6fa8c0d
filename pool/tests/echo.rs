//! Line echo over TCP and unix sockets: basic, many connections, partial and large lines,
//! slow clients, peer resets.

mod util;

use std::net::TcpStream;
use std::time::Duration;

use util::{Client, echo, tcp_listener, unix_listener};
use zmaster_pool::Pool;

#[test]
fn echo_over_tcp_and_exit_closes() {
    let (l, addr) = tcp_listener();
    let pool = Pool::start(2, vec![(l, echo())]).expect("start");
    let mut c = Client::tcp(addr);
    assert_eq!(c.roundtrip(b"hello, zmaster"), b"hello, zmaster");
    assert_eq!(c.roundtrip(b"  blanks\t "), b"  blanks\t ");
    assert_eq!(c.roundtrip(b""), b"");
    c.send(b"exit\n");
    assert_eq!(c.recv_line(), None, "exit closes the connection");
    pool.shutdown();
}

#[test]
fn echo_over_unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("echo.sock");
    let pool = Pool::start(1, vec![(unix_listener(&path), echo())]).expect("start");
    let mut c = Client::unix(&path);
    for i in 0..100 {
        let line = format!("line {i} ünïcødé ✓");
        assert_eq!(c.roundtrip(line.as_bytes()), line.as_bytes());
    }
    drop(c);
    assert!(pool.wait_idle(None));
    pool.shutdown();
}

#[test]
fn pipelined_lines_in_one_segment() {
    let (l, addr) = tcp_listener();
    let pool = Pool::start(1, vec![(l, echo())]).expect("start");
    let mut c = Client::tcp(addr);
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend_from_slice(format!("p{i}\n").as_bytes());
    }
    c.send(&batch);
    for i in 0..500 {
        assert_eq!(c.recv_line().expect("reply"), format!("p{i}").as_bytes());
    }
    pool.shutdown();
}

#[test]
fn a_thousand_concurrent_connections_on_two_workers() {
    let (l, addr) = tcp_listener();
    let pool = Pool::start(2, vec![(l, echo())]).expect("start");
    let mut clients: Vec<Client<TcpStream>> = (0..1000).map(|_| Client::tcp(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("hello {i}\n").as_bytes());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.recv_line().expect("reply"),
            format!("hello {i}").as_bytes()
        );
    }
    assert_eq!(pool.active_connections(), 1000);
    for (i, c) in clients.iter_mut().enumerate().rev() {
        assert_eq!(
            c.roundtrip(format!("again {i}").as_bytes()),
            format!("again {i}").as_bytes()
        );
    }
    drop(clients);
    assert!(pool.wait_idle(None), "all connections closed");
    pool.shutdown();
}

#[test]
fn one_mebibyte_line_and_partial_writes() {
    let (l, addr) = tcp_listener();
    let pool = Pool::start(2, vec![(l, echo())]).expect("start");
    let mut c = Client::tcp(addr);
    let big: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    // Send from another thread: the echo of a 1 MiB line cannot fit the socket buffers while
    // the client is still sending.
    let mut writer = c.stream().try_clone().expect("clone");
    let payload = big.clone();
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        for chunk in payload.chunks(7777) {
            writer.write_all(chunk).expect("send chunk");
        }
        writer.write_all(b"\nsmall\n").expect("send tail");
    });
    assert_eq!(c.recv_line().expect("big reply"), big);
    assert_eq!(c.recv_line().expect("small reply"), b"small");
    sender.join().expect("sender");
    pool.shutdown();
}

#[test]
fn slow_client_trickling_bytes() {
    let (l, addr) = tcp_listener();
    let pool = Pool::start(1, vec![(l, echo())]).expect("start");
    let mut slow = Client::tcp(addr);
    let mut fast = Client::tcp(addr);
    for &b in b"trickled line" {
        slow.send(&[b]);
        // Interleave a full request from another connection between the slow bytes.
        assert_eq!(fast.roundtrip(b"fast"), b"fast");
        std::thread::sleep(Duration::from_millis(1));
    }
    slow.send(b"\n");
    assert_eq!(slow.recv_line().expect("reply"), b"trickled line");
    pool.shutdown();
}

#[test]
fn peer_reset_mid_line_closes_only_that_connection() {
    let (l, addr) = tcp_listener();
    let pool = Pool::start(1, vec![(l, echo())]).expect("start");
    let mut keep = Client::tcp(addr);
    assert_eq!(keep.roundtrip(b"before"), b"before");
    {
        let mut victim = Client::tcp(addr);
        assert_eq!(victim.roundtrip(b"x"), b"x");
        victim.send(b"half a li");
        // SO_LINGER 0: close sends RST.
        socket2::SockRef::from(&*victim.stream())
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pool.active_connections() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "reset connection was never closed: active={}",
            pool.active_connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(keep.roundtrip(b"after"), b"after");
    pool.shutdown();
}

#[test]
fn line_longer_than_the_limit_is_an_error() {
    use std::io;
    use std::sync::Arc;
    use zmaster_pool::{Conn, Handler};
    fn on_short_line(conn: &mut Conn, r: io::Result<Option<Vec<u8>>>) {
        match r {
            Ok(Some(line)) => {
                conn.write(&line);
                conn.write(b"\n");
                conn.read_line(16, on_short_line);
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                conn.write(b"ERR too long\n");
                conn.flush(|c, _| c.close());
            }
            _ => conn.close(),
        }
    }
    let (l, addr) = tcp_listener();
    let h: Handler = Arc::new(|c: &mut Conn| c.read_line(16, on_short_line));
    let pool = Pool::start(1, vec![(l, h)]).expect("start");
    let mut c = Client::tcp(addr);
    assert_eq!(c.roundtrip(b"sixteen bytes ok"), b"sixteen bytes ok");
    c.send(&[b'y'; 100]);
    assert_eq!(c.recv_line().expect("error reply"), b"ERR too long");
    assert_eq!(c.recv_line(), None);
    pool.shutdown();
}
