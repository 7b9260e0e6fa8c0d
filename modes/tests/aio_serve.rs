//! `aio::serve`'s hooks in a real server process under a fake master (SPEC §5 fds): every
//! listener is served by the one handler, and a softstop drains the open connection without a
//! `before_softstop` hook; hooks without a drain exit at once (SPEC §6), so the drain is
//! `serve`'s doing.
//!
//! The server process is this test binary run again with `--exact serve_child`: the
//! `serve_child` test serves only when `ZM_AIO_SERVE_CHILD` is set (otherwise it returns at
//! once), with fds 3, 4 and 5 staged by the parent as a master would.

mod util;

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;

use util::{Client, Served};
use zmaster_modes::aio::{self, Conn, Hooks, ReadResult, Registration};

const CHILD_ENV: &str = "ZM_AIO_SERVE_CHILD";

fn on_line(conn: &mut Conn, line: ReadResult) {
    let Ok(Some(line)) = line else {
        return conn.close();
    };
    conn.write(&line);
    conn.write(b"\n");
    conn.read_line(1024, on_line);
}

/// The server side: `drain` = `aio::serve_hooks`; `hook` = plain hooks with a
/// `before_softstop`; `usage` = a bad argv; otherwise plain hooks, no drain.
#[test]
fn serve_child() {
    let Ok(style) = std::env::var(CHILD_ENV) else {
        return;
    };
    let hooks = match style.as_str() {
        "drain" => aio::serve_hooks(|conn| conn.read_line(1024, on_line)),
        "hook" => Hooks::new()
            .service_register(|_name, listener, _kind| {
                aio::general_register(listener, |conn| conn.read_line(1024, on_line))
            })
            .before_softstop(|| log::info!("before_softstop ran")),
        _ => Hooks::new().service_register(|_name, listener, _kind| {
            aio::general_register(listener, |conn| conn.read_line(1024, on_line))
        }),
    };
    let launch = if style == "usage" { "bogus" } else { "MASTER" };
    let args = ["aio-serve", launch, "-server-service", ":i5"];
    let code = aio::server_main(args, hooks);
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

#[test]
fn serve_drains_the_open_connection_on_softstop() {
    util::drains_the_open_connection_on_softstop(CHILD_ENV, "drain");
}

#[test]
fn a_before_softstop_hook_runs_and_drains() {
    let mut served = Served::start(CHILD_ENV, "hook");
    let mut held = Client::connect(served.addr);
    assert_eq!(held.ask("before").as_deref(), Some("before"));
    drop(served.generation.take());
    served.wait_log("before_softstop ran");
    assert_eq!(
        held.ask("during the drain").as_deref(),
        Some("during the drain")
    );
    drop(held);
    assert!(served.wait_exit(), "the server exits 0 once drained");
}

#[test]
fn a_bad_argv_prints_usage_and_exits_1() {
    let mut served = Served::start(CHILD_ENV, "usage");
    served.wait_log("usage");
    assert!(!served.wait_exit(), "exit status 1");
}

#[test]
fn hooks_without_a_drain_exit_at_once_on_softstop() {
    util::exits_at_once_on_softstop(CHILD_ENV, "exit");
}

/// A registration is a value: dropping it instead of returning it closes the listener. (A unix
/// socket: its path cannot be taken over by a concurrent test, as a freed TCP port can.)
#[test]
fn a_dropped_registration_closes_its_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("svc.sock");
    let unix = UnixListener::bind(&path).expect("bind");
    let registration: Registration =
        aio::general_register(aio::Listener::Unix(unix), Conn::close).expect("registration");
    assert_eq!(
        registration.listener().describe(),
        path.display().to_string()
    );
    UnixStream::connect(&path).expect("listening while registered");
    drop(registration);
    let refused = UnixStream::connect(&path).expect_err("nobody listens");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}
