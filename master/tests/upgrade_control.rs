//! The control socket across a binary upgrade: the new master adopts only a unix stream
//! listener; the socket file stays the old master's until the new one claims it, and an old
//! master that handed it over leaves the file to its successor.

use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};
use zmaster::control::{self, ControlServer, Request};

#[test]
fn only_a_unix_stream_listener_is_adopted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ctl");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let datagram = UnixDatagram::bind(dir.path().join("dgram")).expect("datagram");
    let unbound = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
    let not_listening = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
    not_listening
        .bind(&SockAddr::unix(dir.path().join("quiet")).expect("addr"))
        .expect("bind");
    let refused: [(&str, OwnedFd); 4] = [
        ("an inet listener", tcp.into()),
        ("a datagram socket", datagram.into()),
        ("an unbound stream socket", unbound.into()),
        ("a stream socket that does not listen", not_listening.into()),
    ];
    for (what, fd) in refused {
        let e = ControlServer::adopt(&path, fd).expect_err(what);
        assert!(
            e.to_string().contains("is not a unix stream listener"),
            "{what}: {e}"
        );
    }
    let listener = UnixListener::bind(&path).expect("bind");
    let server = ControlServer::adopt(&path, listener.into()).expect("a listener");
    assert_eq!(server.path(), path);
}

#[test]
fn the_socket_file_passes_from_the_old_master_to_the_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ctl");
    // The old master hands its socket over: its file stays.
    let old = ControlServer::bind(&path).expect("bind");
    let handed = old.listener_fd().try_clone_to_owned().expect("dup");
    let new = ControlServer::adopt(&path, handed).expect("adopt");
    old.hand_over();
    assert!(path.exists(), "handing over removes no file");
    // The new master serves it (the same socket: a client connects to the file as before).
    UnixStream::connect(&path).expect("connect");
    // A new master that never claimed it (it failed before ready) leaves the file alone.
    let again = new.listener_fd().try_clone_to_owned().expect("dup");
    drop(new);
    assert!(
        path.exists(),
        "an unclaimed socket file is the old master's"
    );
    let mut claimed = ControlServer::adopt(&path, again).expect("adopt");
    claimed.claim();
    drop(claimed);
    assert!(!path.exists(), "a claimed socket file is removed at stop");
    let e = control::request(&path, &Request::Status, Duration::from_secs(1)).expect_err("gone");
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
}
