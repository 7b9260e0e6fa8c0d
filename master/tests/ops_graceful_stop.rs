//! Graceful stop (SIGQUIT): every listener closes at once (new connections are refused), the
//! children finish their open connections, what is left gets SIGTERM at `-master-stop-timeout`.
//!
//! The server here is this test binary itself (`drain_server`, selected by `ZM_OPS_DRAIN`):
//! zmaster-probe exits at softstop, a draining server finishes its connections first.

mod util;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use util::*;

/// Not a test: the server the master starts (fd 3 generation pipe, fd 5 one inet listener).
/// It answers `ECHO <line>` per line; at softstop it closes its listener and exits once every
/// open connection ended.
#[test]
fn drain_server() {
    if std::env::var_os("ZM_OPS_DRAIN").is_none() {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: started by the master (SPEC §5): fd 5 is this process's listener, owned here only.
    let listener = std::net::TcpListener::from(unsafe { OwnedFd::from_raw_fd(5) });
    #[allow(unsafe_code)]
    // SAFETY: fd 3 is the generation pipe the master passed; borrowed for the process's life.
    let generation = unsafe { BorrowedFd::borrow_raw(3) };
    let mut open = Vec::new();
    loop {
        let mut fds = [
            PollFd::new(generation, PollFlags::empty()),
            PollFd::new(std::os::fd::AsFd::as_fd(&listener), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            break;
        }
        if let Ok((stream, _)) = listener.accept() {
            let _ = stream.set_nonblocking(false);
            open.push(std::thread::spawn(move || echo(stream)));
        }
    }
    drop(listener);
    for t in open {
        let _ = t.join();
    }
    std::process::exit(0);
}

fn echo(stream: TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        let reply = format!("ECHO {line}");
        if reader.get_mut().write_all(reply.as_bytes()).is_err() {
            break;
        }
        line.clear();
    }
}

/// A config dir whose one service runs `drain_server` on `port` with `count` processes.
fn drain_setup(port: u16, count: usize) -> Setup {
    let s = Setup::new();
    let exe = std::env::current_exe().expect("test binary");
    let script = s.path("drain.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nZM_OPS_DRAIN=1 exec {} --exact drain_server --test-threads=1 -q\n",
            exe.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    s.write_cf(
        "drain",
        &format!(
            "server-command = {}\nserver-service = 127.0.0.1:{port}\nserver-proc-count = {count}\n",
            script.display()
        ),
    );
    s
}

/// A connection to the drain server, proved to be served.
fn connect(port: u16) -> BufReader<TcpStream> {
    wait_for(Duration::from_secs(10), "the drain server", || {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut conn = BufReader::new(stream);
        (talk(&mut conn, "hello").as_deref() == Some("ECHO hello")).then_some(conn)
    })
}

fn talk(conn: &mut BufReader<TcpStream>, line: &str) -> Option<String> {
    conn.get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .ok()?;
    let mut reply = String::new();
    conn.read_line(&mut reply).ok().filter(|n| *n > 0)?;
    Some(reply.trim_end().to_owned())
}

fn refused(port: u16) -> Option<()> {
    match TcpStream::connect(("127.0.0.1", port)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
        _ => None,
    }
}

#[test]
fn sigquit_refuses_new_connections_and_lets_open_ones_finish() {
    let port = free_port();
    let s = drain_setup(port, 2);
    let mut master = s.start_master(&[]);
    let kids = master.wait_children(2);
    let mut conn = connect(port);
    master.signal(Signal::SIGQUIT);
    wait_for(Duration::from_secs(10), "new connections refused", || {
        refused(port)
    });
    // The open connection still talks, the master and its server wait for it.
    for i in 0..3 {
        let line = format!("after quit {i}");
        assert_eq!(talk(&mut conn, &line), Some(format!("ECHO {line}")));
    }
    assert!(master.child.as_mut().unwrap().try_wait().unwrap().is_none());
    assert!(kids.iter().any(|k| is_alive(*k)));
    let log = master.log_text();
    assert!(log.contains("graceful stop: 2 children"), "{log}");
    assert!(!log.contains("sending SIGTERM"), "{log}");
    // The client is done: everything ends, nobody was killed.
    drop(conn);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(kids.iter().all(|k| !is_alive(*k)));
    let log = master.log_text();
    assert!(!log.contains("sending SIG"), "{log}");
    assert!(!log.contains("restarting"), "{log}");
}

#[test]
fn a_graceful_stop_sends_sigterm_at_the_stop_timeout() {
    let port = free_port();
    let s = drain_setup(port, 1);
    let mut master = s.start_master(&["-master-stop-timeout", "300ms"]);
    let kids = master.wait_children(1);
    let mut conn = connect(port);
    master.signal(Signal::SIGQUIT);
    // The connection is held open: at the timeout the server gets SIGTERM and dies with it.
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!is_alive(kids[0]));
    let log = master.log_text();
    assert!(
        log.contains("1 children still running after 300ms; sending SIGTERM"),
        "{log}"
    );
    assert!(!log.contains("SIGKILL"), "{log}");
    assert_eq!(talk(&mut conn, "gone"), None);
}

#[test]
fn sigterm_during_a_graceful_stop_makes_it_fast() {
    let port = free_port();
    let s = drain_setup(port, 1);
    let mut master = s.start_master(&["-master-stop-timeout", "60s"]);
    master.wait_children(1);
    let _conn = connect(port);
    master.signal(Signal::SIGQUIT);
    wait_for(Duration::from_secs(10), "the graceful stop", || {
        master.log_text().contains("graceful stop").then_some(())
    });
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
    let log = master.log_text();
    assert!(log.contains("after SIGTERM; sending SIGTERM"), "{log}");
}
