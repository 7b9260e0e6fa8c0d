//! The control server's bounds, driven from the test's own thread: the client timeout and the
//! deadlines it sets, the client cap (the oldest silent client is evicted, never a new one
//! refused while one is only sending), and a deferred client's hang-up.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use zmaster::control::{
    ControlServer, MAX_CLIENTS, MasterStatus, Reply, ReplyToken, Request, ServiceState,
    ServiceStatus, Status,
};

/// Runs the server until `done` says so (at most 10 s), answering status and deferring reload.
fn drive(
    server: &mut ControlServer,
    tokens: &mut Vec<ReplyToken>,
    mut done: impl FnMut(&ControlServer, &[ReplyToken]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(server, tokens) {
        assert!(Instant::now() < deadline, "server never got there");
        let mut fds = [PollFd::new(server.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(20u8));
        server.handle_ready(Instant::now(), |request, token| match request {
            Request::Status => Some(Reply::status(big_status())),
            Request::Reload => {
                tokens.push(token);
                None
            }
            _ => Some(Reply::ok()),
        });
    }
}

fn big_status() -> Status {
    Status {
        master: MasterStatus {
            pid: 1,
            uptime_s: 0.0,
            generation: 1,
            config_dir: "/".into(),
        },
        services: (0..40_000)
            .map(|i| ServiceStatus {
                name: format!("s{i:08}"),
                state: ServiceState::Running,
                proc_count: 1,
                restarts: 0,
                backoff_ms: 0,
                last_exit: None,
                children: vec![],
            })
            .collect(),
    }
}

#[test]
fn deadlines_follow_the_client_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ControlServer::bind(&dir.path().join("c.ctl")).unwrap();
    server.set_client_timeout(Duration::from_secs(3600));
    assert_eq!(server.next_deadline(), None);
    let before = Instant::now();
    let mut client = UnixStream::connect(server.path()).unwrap();
    let mut tokens = Vec::new();
    drive(&mut server, &mut tokens, |s, _| s.client_count() == 1);
    let deadline = server
        .next_deadline()
        .expect("a reading client has a deadline");
    assert!(
        deadline > before + Duration::from_secs(1800),
        "{deadline:?}"
    );

    // Deferred: no deadline while waiting; a fresh one once the reply is queued.
    client.write_all(b"{\"cmd\":\"reload\"}\n").unwrap();
    drive(&mut server, &mut tokens, |_, t| !t.is_empty());
    assert_eq!(server.next_deadline(), None);
    assert_eq!(server.client_count(), 1);
    // A reply far bigger than the socket buffers: it stays queued, with a deadline ahead.
    assert!(server.complete(tokens[0], Reply::status(big_status())));
    let deadline = server
        .next_deadline()
        .expect("a writing client has a deadline");
    assert!(
        deadline > Instant::now() + Duration::from_secs(1800),
        "{deadline:?}"
    );
    assert!(
        !server.complete(tokens[0], Reply::ok()),
        "not waiting any more"
    );
    let mut head = [0u8; 12];
    client.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"{\"ok\":true,\"");
}

#[test]
fn a_deferred_client_that_hangs_up_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ControlServer::bind(&dir.path().join("c.ctl")).unwrap();
    let mut client = UnixStream::connect(server.path()).unwrap();
    client.write_all(b"{\"cmd\":\"reload\"}\n").unwrap();
    let mut tokens = Vec::new();
    drive(&mut server, &mut tokens, |_, t| !t.is_empty());
    assert_eq!(server.client_count(), 1);
    drop(client);
    drive(&mut server, &mut tokens, |s, _| s.client_count() == 0);
    assert!(!server.complete(tokens[0], Reply::reloaded(2)));
}

#[test]
fn at_the_cap_the_oldest_silent_client_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ControlServer::bind(&dir.path().join("c.ctl")).unwrap();
    let mut tokens = Vec::new();
    let mut silent = Vec::new();
    for n in 1..=MAX_CLIENTS {
        silent.push(UnixStream::connect(server.path()).unwrap());
        drive(&mut server, &mut tokens, |s, _| s.client_count() == n);
    }
    let mut asker = UnixStream::connect(server.path()).unwrap();
    asker.write_all(b"{\"cmd\":\"stop\"}\n").unwrap();
    asker
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut reader = BufReader::new(asker);
    let mut line = String::new();
    drive(&mut server, &mut tokens, |_, _| {
        reader.read_line(&mut line).is_ok_and(|n| n > 0)
    });
    assert_eq!(line, "{\"ok\":true}\n");
    assert_eq!(server.client_count(), MAX_CLIENTS - 1);
    // The evicted one is the first: it reads EOF.
    let mut rest = Vec::new();
    assert_eq!(silent[0].read_to_end(&mut rest).unwrap(), 0);
}

/// Waits until the server's epoll fd is readable, then runs exactly one `handle_ready`.
fn one_turn(server: &mut ControlServer) {
    let mut fds = [PollFd::new(server.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::from(10_000u16)).unwrap(), 1);
    server.handle_ready(Instant::now(), |_, _| Some(Reply::ok()));
}

#[test]
fn a_request_in_pieces_is_answered_and_an_empty_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ControlServer::bind(&dir.path().join("c.ctl")).unwrap();
    let mut client = UnixStream::connect(server.path()).unwrap();
    one_turn(&mut server); // accept
    client.write_all(b"{\"cmd\":").unwrap();
    one_turn(&mut server); // reads the first half, then would block: keeps the client
    assert_eq!(server.client_count(), 1);
    client.write_all(b"\"stop\"}\n").unwrap();
    one_turn(&mut server);
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "{\"ok\":true}\n");

    // Connected, then closed its side without a byte: closed without a reply.
    let mut client = UnixStream::connect(server.path()).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    one_turn(&mut server);
    if server.client_count() == 1 {
        one_turn(&mut server);
    }
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).unwrap(), 0);
    assert_eq!(server.client_count(), 0);
}

#[test]
fn a_big_reply_read_slowly_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ControlServer::bind(&dir.path().join("c.ctl")).unwrap();
    let mut client = UnixStream::connect(server.path()).unwrap();
    client.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut got = Vec::new();
    let mut tokens = Vec::new();
    drive(&mut server, &mut tokens, |_, _| {
        let mut chunk = [0u8; 65536];
        match client.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => {
                got.extend_from_slice(&chunk[..n]);
                false
            }
            Err(_) => false,
        }
    });
    let reply: Reply = serde_json::from_slice(&got).expect("the whole reply");
    assert_eq!(reply.status.map(|s| s.services.len()), Some(40_000));
}
