//! echo-aio and echo-coroutine run by hand (`alone`): echo, `exit`, usage errors, many
//! connections, partial, large and over-long lines, slow clients (kept under a large
//! `echo-max-pending`, cut at the default) and peer resets.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;

use util::{LineClient, spawn_alone, spawn_alone_on_ports};

const AIO: &str = env!("CARGO_BIN_EXE_echo-aio");
/// Both example echo servers: every behaviour here holds for each mode.
const BINS: [&str; 2] = [AIO, env!("CARGO_BIN_EXE_echo-coroutine")];

/// The binary's file name, for messages.
fn name(bin: &str) -> &str {
    bin.rsplit('/').next().unwrap_or(bin)
}

#[test]
fn echoes_lines_and_exit_closes() {
    for bin in BINS {
        let (_server, addr) = spawn_alone(bin, &[]);
        let mut client = LineClient::connect(addr);
        for line in [
            "hello",
            "",
            "  spaced  ",
            "tab\there",
            "unicode: żółw",
            "exit now",
        ] {
            client.expect_echo(line);
        }
        client.send(b"crlf\r\n");
        assert_eq!(client.read_line().as_deref(), Some("crlf\r"));
        client.send_line("exit");
        client.expect_closed();
    }
}

#[test]
fn bad_argv_prints_usage_and_exits_1() {
    for bin in BINS {
        for args in [&["bogus"][..], &[], &["master", "-server-service", ":i5"]] {
            let out = Command::new(bin)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("run");
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!("usage: {} alone", name(bin))),
                "{args:?}: {stderr}"
            );
        }
    }
}

#[test]
fn start_up_errors_exit_1_with_one_line() {
    for bin in BINS {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let cases: [(&[&str], &str); 4] = [
            (&["alone"], "missing -server-service"),
            (&["alone", "-server-service", &addr], "bind"),
            (
                &["alone", "-server-service", "127.0.0.1:99999"],
                "127.0.0.1:99999",
            ),
            (
                &[
                    "alone",
                    "-server-service",
                    "127.0.0.1:1",
                    "-server-thread-count",
                    "zero",
                ],
                "server-thread-count",
            ),
        ];
        for (args, needle) in cases {
            let out = Command::new(bin)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("run");
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(needle), "{args:?}: {stderr}");
        }
    }
}

#[test]
fn thousand_concurrent_connections_on_two_workers() {
    for bin in BINS {
        const CONNS: usize = 1000;
        let limit = util::raise_fd_limit(3 * CONNS as u64);
        assert!(
            limit > 2 * CONNS as u64 + 50,
            "RLIMIT_NOFILE hard limit {limit} too low"
        );
        let (server, addr) = spawn_alone(bin, &["-server-thread-count", "2"]);
        let mut clients: Vec<LineClient> = (0..CONNS).map(|_| LineClient::connect(addr)).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            c.send_line(&format!("line {i}"));
        }
        for round in 0..2 {
            for (i, c) in clients.iter_mut().enumerate() {
                let expected = format!("line {i}");
                assert_eq!(
                    c.read_line().as_deref(),
                    Some(expected.as_str()),
                    "round {round}"
                );
                if round == 0 {
                    c.send_line(&expected);
                }
            }
        }
        // main, acceptor and 2 workers: no thread per connection.
        let threads = server.threads();
        assert!(threads <= 4, "{threads} threads for 2 workers");
    }
}

#[test]
fn partial_lines_are_assembled() {
    for bin in BINS {
        let (_server, addr) = spawn_alone(bin, &[]);
        let mut client = LineClient::connect(addr);
        client.writer.set_nodelay(true).expect("nodelay");
        for part in [&b"hel"[..], b"lo", b" wor", b"ld\nsecond", b" line\n"] {
            client.send(part);
        }
        assert_eq!(client.read_line().as_deref(), Some("hello world"));
        assert_eq!(client.read_line().as_deref(), Some("second line"));
    }
}

#[test]
fn pipelined_lines_all_come_back_in_order() {
    for bin in BINS {
        let (_server, addr) = spawn_alone(bin, &[]);
        let mut client = LineClient::connect(addr);
        // `exit` at the end: every echo before it still arrives, then the close.
        let batch: String = (0..5000).map(|i| format!("p{i}\n")).collect::<String>() + "exit\n";
        let mut writer = client.writer.try_clone().expect("clone");
        let sender = thread::spawn(move || writer.write_all(batch.as_bytes()));
        for i in 0..5000 {
            assert_eq!(client.read_line(), Some(format!("p{i}")));
        }
        sender.join().expect("join").expect("send");
        client.expect_closed();
    }
}

#[test]
fn large_line_is_echoed_whole() {
    for bin in BINS {
        let (_server, addr) = spawn_alone(bin, &[]);
        let mut client = LineClient::connect(addr);
        let line: String = (0..512 * 1024)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let mut writer = client.writer.try_clone().expect("clone");
        let payload = format!("{line}\n");
        let sender = thread::spawn(move || writer.write_all(payload.as_bytes()));
        assert_eq!(client.read_line().as_deref(), Some(line.as_str()));
        sender.join().expect("join").expect("send");
        client.expect_echo("still here");
    }
}

#[test]
fn over_long_line_gets_an_error_and_a_close() {
    for bin in BINS {
        let (_server, addr) = spawn_alone(bin, &["-echo-max-line", "1k"]);
        let mut client = LineClient::connect(addr);
        client.expect_echo(&"x".repeat(1024));
        client.send_line(&"y".repeat(1025));
        assert_eq!(client.read_line().as_deref(), Some("ERR line too long"));
        client.expect_closed();
    }
}

#[test]
fn slow_reader_gets_everything_and_others_are_served() {
    for bin in BINS {
        const LINES: usize = 20_000;
        // A bound on unsent output above the ~20 MB this client lets pile up (the default
        // 1m cuts it: see the next test).
        let (_server, addr) = spawn_alone(
            bin,
            &["-server-thread-count", "1", "-echo-max-pending", "64m"],
        );
        let mut slow = LineClient::connect(addr);
        let line = "z".repeat(1000);
        let mut writer = slow.writer.try_clone().expect("clone");
        let payload = format!("{line}\n");
        // ~20 MB sent while nobody reads: the slow reader must not stall the worker.
        let sender = thread::spawn(move || {
            for _ in 0..LINES {
                writer.write_all(payload.as_bytes())?;
            }
            Ok::<(), std::io::Error>(())
        });
        // Another connection on the same single worker is served meanwhile.
        let mut other = LineClient::connect(addr);
        for i in 0..100 {
            other.expect_echo(&format!("other {i}"));
        }
        for i in 0..LINES {
            assert_eq!(slow.read_line().as_deref(), Some(line.as_str()), "line {i}");
        }
        sender.join().expect("join").expect("send");
    }
}

#[test]
fn slow_reader_is_cut_at_the_default_pending_bound_and_others_are_served() {
    for bin in BINS {
        let (_server, addr) = spawn_alone(bin, &["-server-thread-count", "1"]);
        let slow = LineClient::connect(addr);
        let mut writer = slow.writer.try_clone().expect("clone");
        // A hang bound: a server that never cuts the peer fails the test with WouldBlock.
        writer
            .set_write_timeout(Some(util::PATIENCE))
            .expect("timeout");
        let payload = format!("{}\n", "z".repeat(1000));
        // Up to ~20 MB sent while nobody reads: far past the default `echo-max-pending` 1m
        // and the kernel's buffers, so the server cuts the connection.
        let sender = thread::spawn(move || {
            for _ in 0..20_000 {
                writer.write_all(payload.as_bytes())?;
            }
            Ok::<(), std::io::Error>(())
        });
        let sent = sender.join().expect("join");
        let kind = sent.as_ref().err().map(std::io::Error::kind);
        assert!(
            matches!(
                kind,
                Some(
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::ConnectionAborted
                )
            ),
            "{}: not cut: {sent:?}",
            name(bin)
        );
        LineClient::connect(addr).expect_echo("others are still served");
    }
}

#[test]
fn peer_reset_does_not_hurt_the_server() {
    for bin in BINS {
        let (mut server, addr) = spawn_alone(bin, &["-server-thread-count", "1"]);
        for _ in 0..50 {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream.write_all(b"some data\nmore").expect("send");
            let mut buf = [0u8; 10];
            stream.read_exact(&mut buf).expect("echo");
            // Unread data + SO_LINGER 0: close sends a RST.
            socket2::SockRef::from(&stream)
                .set_linger(Some(std::time::Duration::ZERO))
                .expect("linger");
            drop(stream);
        }
        assert!(server.is_running());
        let mut client = LineClient::connect(addr);
        client.expect_echo("alive");
    }
}

#[test]
fn serves_unix_sockets_and_logs_fifo_lines() {
    // Both modes serve a FIFO (coroutine mode through `fifo_register`) and log its lines.
    for bin in BINS {
        unix_and_fifo(bin);
    }
}

fn unix_and_fifo(bin: &str) {
    use std::io::BufRead;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("echo.sock");
    let fifo = dir.path().join("echo.fifo");
    let tcp = format!("127.0.0.1:{}", util::free_port());
    let spec = format!(
        "tcp://{tcp}, unix://local:{}, trigger://fifo:{}",
        sock.display(),
        fifo.display()
    );
    let child = Command::new(bin)
        .args(["alone", "-server-service", &spec])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut server = util::Server { child };
    let mut log = std::io::BufReader::new(server.child.stderr.take().expect("stderr"));
    util::wait_answering(&mut server, tcp.parse().expect("addr"));

    // Each listener starts on its own: the TCP one answering does not mean the unix one does.
    let mut stream = None;
    util::wait_for("the unix socket to accept connections", || {
        stream = UnixStream::connect(&sock).ok();
        stream.is_some()
    });
    let stream = stream.expect("connected");
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    (&stream).write_all(b"over unix\n").expect("send");
    let mut line = String::new();
    reader.read_line(&mut line).expect("echo");
    assert_eq!(line, "over unix\n");

    // Non-blocking: with nobody reading the FIFO (a skipped service) the open fails with
    // ENXIO instead of hanging the test.
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .and_then(|mut f| f.write_all(b"poke\n"))
        .expect("write the FIFO");
    let mut seen = String::new();
    while !seen.contains("fifo service=\"trigger\" line=\"poke\"") {
        seen.clear();
        assert!(
            log.read_line(&mut seen).expect("server log") > 0,
            "log ended"
        );
    }
    LineClient::connect(tcp.parse().expect("addr")).expect_echo("still echoing");
}

#[test]
fn largest_max_line_still_echoes() {
    // `echo-max-line` = u64::MAX: the read limit `max + 1` must not overflow (issue 9 item 7).
    // echo-coroutine only: echo-aio passes the limit to the pool's `read_line`, whose own
    // `max + 1` is the pool's part of that item.
    let bin = BINS[1];
    let (_server, addr) = spawn_alone(bin, &["-echo-max-line", "18446744073709551615"]);
    let mut client = LineClient::connect(addr);
    client.expect_echo("no limit");
    client.send(b"last line without newline");
    client
        .writer
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    assert_eq!(
        client.read_line().as_deref(),
        Some("last line without newline"),
        "{}",
        name(bin)
    );
}

/// A client that pipelines a large batch while it reads the echoes back (it keeps up) is never
/// cut by `echo-max-pending`: the server writes what it holds while input keeps arriving,
/// instead of reading everything first (review: cut 9 times of 9 at 1 MiB held, before).
#[test]
fn a_pipelining_client_that_reads_gets_every_echo() {
    for bin in BINS {
        const LINES: usize = 20_000;
        let (_server, addr) = spawn_alone(bin, &["-server-thread-count", "1"]);
        let mut client = LineClient::connect(addr);
        let line = "p".repeat(99);
        let mut writer = client.writer.try_clone().expect("clone");
        let batch = format!("{line}\n").repeat(LINES);
        // 2 MB in one go, while this thread reads the echoes.
        let sender = thread::spawn(move || writer.write_all(batch.as_bytes()));
        for i in 0..LINES {
            assert_eq!(
                client.read_line().as_deref(),
                Some(line.as_str()),
                "{bin}: echo {i} of {LINES}"
            );
        }
        sender.join().expect("join").expect("send");
    }
}

/// A port another process listens on is not the started server's: the helper must not take
/// that listener's answer for the server's (a parallel test's server on the same port made a
/// client here read EOF, in CI), and starts the server again on another port.
#[test]
fn spawn_alone_never_takes_another_listener_for_the_server() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let mut ports = [taken_port].into_iter();
    let (_server, addr) = spawn_alone_on_ports(
        AIO,
        &[],
        |_| {},
        || ports.next().unwrap_or_else(util::free_port),
    );
    assert_ne!(addr.port(), taken_port, "the taken port was accepted");
    LineClient::connect(addr).expect_echo("mine");
}
