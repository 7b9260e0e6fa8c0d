//! The echo examples' `echo-allow-detach` (issue 9 item 10): `DETACH` from a peer the policy
//! refuses gets `ERR detach not allowed`, the connection stays and the process stays attached
//! (a later reload still softstops it); an allowed peer detaches it (fd 4 closes).

mod util;

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use util::{
    FakeMaster, LineClient, non_loopback_ip, peer_closed, spawn_under_fake_master,
    spawn_under_fake_master_on, spawn_under_fake_master_unix, wait_for,
};

/// Both example echo servers: every behaviour here holds for each mode.
const BINS: [&str; 2] = [
    env!("CARGO_BIN_EXE_echo-aio"),
    env!("CARGO_BIN_EXE_echo-coroutine"),
];

const REFUSED: &str = "ERR detach not allowed";

/// DETACH is refused: the connection keeps echoing, fd 4 stays open, and a reload still
/// softstops the process (a detached one would ignore it).
fn assert_refused(bin: &str, mut fake: FakeMaster, client: &mut LineClient) {
    client.send_line("DETACH");
    assert_eq!(client.read_line().as_deref(), Some(REFUSED), "{bin}");
    client.expect_echo("still attached");
    assert!(
        !peer_closed(&fake.private),
        "{bin}: fd 4 closed: it detached"
    );
    drop(fake.generation.take());
    client.expect_echo("during the drain");
    client.send_line("exit");
    client.expect_closed();
    assert!(fake.server.wait_exit().success(), "{bin}");
    let log = fake.log_text();
    assert!(log.contains("softstop reason="), "{bin}: {log}");
    assert!(!log.contains("detaching from the master"), "{bin}: {log}");
}

/// DETACH is obeyed: fd 4 closes and the connection keeps echoing.
fn assert_detached(bin: &str, fake: &mut FakeMaster, client: &mut LineClient) {
    client.expect_echo("DETACH");
    wait_for("fd 4 to be closed", || peer_closed(&fake.private));
    client.expect_echo("after DETACH");
    assert!(fake.server.is_running(), "{bin}");
}

/// A server under a fake master listening on the wildcard address, and a client connected
/// to it from this host's non-loopback address; `None` when the host has none.
fn remote_client(bin: &str, extra: &[&str]) -> Option<(FakeMaster, LineClient)> {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this host: remote-peer case skipped");
        return None;
    };
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let fake = spawn_under_fake_master_on(bin, listener, extra);
    let mut client = LineClient::connect(SocketAddr::new(ip, port));
    let peer = client.writer.local_addr().expect("local addr");
    assert!(!peer.ip().is_loopback(), "connected from {peer}");
    client.expect_echo("from afar");
    Some((fake, client))
}

#[test]
fn remote_peer_is_refused_by_default() {
    for bin in BINS {
        if let Some((fake, mut client)) = remote_client(bin, &[]) {
            assert_refused(bin, fake, &mut client);
        }
    }
}

#[test]
fn remote_peer_may_detach_with_yes() {
    for bin in BINS {
        if let Some((mut fake, mut client)) = remote_client(bin, &["-echo-allow-detach", "yes"]) {
            assert_detached(bin, &mut fake, &mut client);
        }
    }
}

#[test]
fn no_refuses_even_loopback() {
    for bin in BINS {
        let fake = spawn_under_fake_master(bin, &["-echo-allow-detach", "no"]);
        let mut client = LineClient::connect(fake.addr);
        client.expect_echo("local");
        assert_refused(bin, fake, &mut client);
    }
}

#[test]
fn loopback_allows_tcp_on_127_0_0_1_by_default() {
    for bin in BINS {
        let mut fake = spawn_under_fake_master(bin, &[]);
        let mut client = LineClient::connect(fake.addr);
        assert_detached(bin, &mut fake, &mut client);
    }
}

#[test]
fn loopback_allows_a_unix_socket_peer() {
    use std::io::{BufRead, BufReader, Write};
    for bin in BINS {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("echo.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let fake = spawn_under_fake_master_unix(bin, listener, &["-echo-allow-detach", "loopback"]);
        let stream = UnixStream::connect(&path).expect("connect");
        stream
            .set_read_timeout(Some(util::PATIENCE))
            .expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        for sent in ["DETACH\n", "after DETACH\n"] {
            (&stream).write_all(sent.as_bytes()).expect("send");
            line.clear();
            reader.read_line(&mut line).expect("echo");
            assert_eq!(line, sent, "{bin}");
        }
        wait_for("fd 4 to be closed", || peer_closed(&fake.private));
    }
}

#[test]
fn a_bad_value_is_a_start_up_error() {
    for bin in BINS {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let addr = format!("127.0.0.1:{}", util::free_port());
        let child = Command::new(bin)
            .args(["alone", "-server-service", &addr])
            .args(["-echo-allow-detach", "maybe"])
            .stdin(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("spawn");
        // A server that ignored the value would serve forever: bounded wait, then killed.
        let mut server = util::Server { child };
        assert_eq!(server.wait_exit().code(), Some(1), "{bin}");
        let stderr = std::fs::read_to_string(log.path()).expect("read the log");
        assert!(
            stderr.contains("echo-allow-detach = \"maybe\": expected yes, loopback or no"),
            "{bin}: {stderr}"
        );
    }
}
