//! runtime::Server::from_args: argv forms, config precedence into Settings, listener kinds.

use std::fs;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use zmaster_modes::runtime::{ErrorKind, Launch, ListenerKind, Server};

#[test]
fn usage_errors() {
    for args in [
        &["srv"][..],
        &["srv", "slave", "-server-service", "127.0.0.1:1"],
        &["srv", "alone", "-server-service"],
        &["srv", "alone", "stray", "-server-service", "127.0.0.1:1"],
        &["srv", "alone"],
    ] {
        let err = Server::from_args(args).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage, "{args:?}: {err}");
    }
}

#[test]
fn alone_binds_unix_and_fifo_and_applies_precedence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    fs::write(
        p.join("a.gcf"),
        "server-thread-count = 3\nserver-stop-on-softstop-after = 1m\nserver-coroutine-stack-size = 64k\n",
    )
    .expect("gcf");
    let sock = p.join("s.sock");
    let fifo = p.join("f.fifo");
    fs::write(
        p.join("svc.cf"),
        format!(
            "server-thread-count = 5\nserver-service = ctl://local:{}, fifo:{}\n",
            sock.display(),
            fifo.display()
        ),
    )
    .expect("cf");
    let dir_s = p.to_str().expect("utf-8 path");
    let cf = p.join("svc.cf");
    let args = [
        "/usr/libexec/srv",
        "alone",
        "-server-config-path",
        dir_s,
        "-config",
        cf.to_str().expect("utf-8 path"),
        "-server-coroutine-stack-size",
        "256k",
    ];
    let mut server = Server::from_args(args).expect("start");
    assert_eq!(server.ident(), "srv");
    assert_eq!(server.launch(), Launch::Alone);
    let s = server.settings();
    // cli > -config > gcf
    assert_eq!(s.coroutine_stack_size, 256 * 1024);
    assert_eq!(s.thread_count, 5);
    assert_eq!(s.stop_on_softstop_after, Duration::from_secs(60));
    let listeners = server.take_listeners();
    assert_eq!(
        listeners
            .iter()
            .map(|l| (l.name.as_str(), l.kind))
            .collect::<Vec<_>>(),
        [("ctl", ListenerKind::Unix), ("", ListenerKind::Fifo)]
    );
    UnixStream::connect(&sock).expect("the unix listener listens");
    assert!(server.take_listeners().is_empty());
}

#[test]
fn bad_values_name_the_key() {
    let err = Server::from_args([
        "srv",
        "alone",
        "-server-service",
        "127.0.0.1:1",
        "-server-stop-on-softstop-after",
        "soon",
    ])
    .unwrap_err();
    assert!(
        err.to_string().contains("server-stop-on-softstop-after"),
        "{err}"
    );
    let err = Server::from_args(["srv", "alone", "-server-service", "nope:x:1"]).unwrap_err();
    assert!(err.to_string().contains("nope:x:1"), "{err}");
    let err = Server::from_args(["srv", "MASTER", "-server-service", "a:z5"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
}
