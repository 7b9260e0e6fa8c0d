//! coroutine::server_main in-process: a LIB-ZC-style accept loop (`loop_register`) and an
//! acceptor-thread service (`general_register`) side by side; stop_notify returns. A
//! registration is a value (its drop closes the listener), and a listener registered with the
//! wrong function is refused. (No test here forks: a forked child would hold a copy of a
//! listener until its exec, so those live in `coroutine_serve.rs`.)

mod util;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use zmaster_modes::coroutine::{self, Connection, Hooks, Registration};

fn echo(conn: Connection) {
    let mut lines = BufReader::new(&conn);
    let mut line = String::new();
    while lines.read_line(&mut line).unwrap_or(0) > 0 {
        let tag = if coroutine::in_coroutine() {
            "co "
        } else {
            "thread "
        };
        if (&conn)
            .write_all(format!("{tag}{line}").as_bytes())
            .is_err()
        {
            break;
        }
        line.clear();
    }
}

fn free_addr() -> String {
    format!("127.0.0.1:{}", util::free_port())
}

/// One line to the server in this process on `addr`, and its reply. Connects only once this
/// process listens there: a parallel test's server may have taken a port `free_port` gave.
fn ask(addr: &str, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let port: u16 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    while !zmaster_testkit::listens_on(std::process::id() as i32, port) {
        assert!(
            Instant::now() < deadline,
            "this process never listened on {addr}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("send");
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).expect("reply");
    reply
}

#[test]
fn loop_and_acceptor_services_serve_in_coroutines() {
    let looped = free_addr();
    // Two ports picked one after the other can be the same one.
    let accepted = loop {
        let a = free_addr();
        if a != looped {
            break a;
        }
    };
    let services = format!("loop://{looped}, acc://{accepted}");
    let server = thread::spawn(move || {
        let hooks = Hooks::new().service_register(|name, listener, _kind| match name {
            "loop" => coroutine::loop_register(listener, echo),
            _ => coroutine::general_register(listener, echo),
        });
        let args = [
            "t",
            "alone",
            "-server-service",
            &services,
            "-server-thread-count",
            "2",
        ];
        coroutine::server_main(args, hooks)
    });
    for i in 0..20 {
        assert_eq!(ask(&looped, &format!("l{i}")), format!("co l{i}\n"));
        assert_eq!(ask(&accepted, &format!("a{i}")), format!("co a{i}\n"));
    }
    coroutine::stop_notify(Duration::ZERO);
    assert_eq!(server.join().expect("server thread"), ExitCode::SUCCESS);
}

/// A registration is a value: dropping it instead of returning it closes the listener. (A unix
/// socket: its path cannot be taken over by a concurrent test, as a freed TCP port can.)
#[test]
fn a_dropped_registration_closes_its_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    for style in ["general", "loop"] {
        let path = dir.path().join(format!("{style}.sock"));
        let unix = coroutine::Listener::Unix(UnixListener::bind(&path).expect("bind"));
        let registration: Registration = match style {
            "general" => coroutine::general_register(unix, echo),
            _ => coroutine::loop_register(unix, echo),
        }
        .expect("registration");
        assert_eq!(
            registration.listener().describe(),
            path.display().to_string()
        );
        UnixStream::connect(&path).expect("listening while registered");
        drop(registration);
        let refused = UnixStream::connect(&path).expect_err("nobody listens");
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }
}

/// A FIFO needs `fifo_register` and a socket the other two: the mismatch is refused with the
/// function to use instead.
#[test]
fn registering_with_the_wrong_function_names_the_right_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("svc.sock");
    let unix = coroutine::Listener::Unix(UnixListener::bind(&path).expect("bind"));
    let err = coroutine::fifo_register(unix, drop).expect_err("a socket is no FIFO");
    assert!(err.to_string().contains("general_register"), "{err}");
    let (read, _write) = nix::unistd::pipe().expect("pipe");
    let fifo = coroutine::Listener::Fifo(read);
    let err = coroutine::general_register(fifo, echo).expect_err("a FIFO is no socket");
    assert!(err.to_string().contains("fifo_register"), "{err}");
}

/// `Connection`'s own I/O calls reach its stream (used from a plain thread: they block it).
#[test]
fn connection_io_timeouts_and_shutdown_reach_the_stream() {
    let (a, b) = coroutine::net::UnixStream::pair().expect("pair");
    let (mut conn, mut peer) = (Connection::Unix(a), Connection::Unix(b));
    // Generous: a read that never completes fails the test instead of hanging it.
    peer.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("peer timeout");
    conn.write_all(b"owned\n").expect("write");
    let mut got = [0u8; 6];
    peer.read_exact(&mut got).expect("read");
    assert_eq!(&got, b"owned\n");
    conn.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("read timeout");
    let err = conn.read(&mut got).expect_err("nothing to read");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    conn.set_write_timeout(Some(Duration::from_millis(20)))
        .expect("write timeout");
    let chunk = vec![0u8; 64 * 1024];
    let err = loop {
        // Nobody reads `peer`: the socket buffer fills and a write times out.
        if let Err(e) = (&conn).write(&chunk) {
            break e;
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    peer.shutdown(std::net::Shutdown::Write).expect("shutdown");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("generous timeout");
    assert_eq!(
        conn.read(&mut got).expect("EOF"),
        0,
        "the peer shut down writing"
    );
}
