//! SPEC §13 server-side lifecycle in a real coroutine server under a fake master:
//! `server-max-connections` for both accept styles (acceptor thread, accept loop in a
//! coroutine), `server-max-use` and `server-hang-timeout` naming the coroutine.
//!
//! The server process is this test binary run again with `--exact serve_child`; the style in
//! `ZM_LIFECYCLE_CO_CHILD` picks the keys and the accept style.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use util::{Client, PATIENCE, Served, assert_not_served, wait_until};
use zmaster_modes::coroutine::{self, Connection, Hooks};

const CHILD_ENV: &str = "ZM_LIFECYCLE_CO_CHILD";

/// Echoes lines; the line `spin` busy-loops its scheduler thread for 3 s without yielding.
fn echo(conn: Connection) {
    let (mut lines, mut line) = (BufReader::new(&conn), String::new());
    while lines.read_line(&mut line).unwrap_or(0) > 0 {
        if line == "spin\n" {
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        if (&conn).write_all(line.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}

/// The server side: the style names the §13 keys and the accept style (`loop-*`: an accept
/// loop in a coroutine, otherwise the acceptor thread).
#[test]
fn serve_child() {
    let Ok(style) = std::env::var(CHILD_ENV) else {
        return;
    };
    let keys: &[&str] = match style.as_str() {
        "max-connections" | "loop-max-connections" => &[
            "-server-max-connections",
            "2",
            "-server-thread-count",
            "2",
            "-server-log-level",
            "debug",
        ],
        "max-use" => &["-server-max-use", "3"],
        "hang" => &["-server-hang-timeout", "200ms", "-server-thread-count", "1"],
        _ => &[],
    };
    let mut args = vec!["lifecycle-co", "MASTER", "-server-service", ":i5"];
    args.extend_from_slice(keys);
    let in_loop = style.starts_with("loop-");
    let hooks = Hooks::new()
        .service_register(move |_name, listener, _kind| {
            if in_loop {
                coroutine::loop_register(listener, echo)
            } else {
                coroutine::general_register(listener, echo)
            }
        })
        .drain_on_softstop();
    let code = coroutine::server_main(args, hooks);
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

fn holds_a_third_client_until_one_closes(style: &str, paused: &str) {
    let served = Served::start(CHILD_ENV, style);
    let mut first = Client::connect(served.addr);
    let mut second = Client::connect(served.addr);
    assert_eq!(first.ask("one").as_deref(), Some("one"));
    assert_eq!(second.ask("two").as_deref(), Some("two"));
    let mut third = Client::connect(served.addr);
    third.send_line("three");
    served.wait_log(paused);
    assert!(
        !third.has_reply_now(),
        "the third client waits at the limit"
    );
    assert_eq!(second.ask("still").as_deref(), Some("still"));
    drop(first);
    assert_eq!(
        third.read_line().as_deref(),
        Some("three"),
        "served after a close"
    );
}

#[test]
fn max_connections_holds_the_acceptor_at_the_limit() {
    holds_a_third_client_until_one_closes(
        "max-connections",
        "connection limit reached max_connections=2",
    );
}

#[test]
fn max_connections_holds_an_accept_loop_at_the_limit() {
    holds_a_third_client_until_one_closes(
        "loop-max-connections",
        "at the connection limit max_connections=2",
    );
}

#[test]
fn max_use_retires_after_three_connections() {
    let mut served = Served::start(CHILD_ENV, "max-use");
    for n in 1..=2 {
        let mut client = Client::connect(served.addr);
        assert_eq!(client.ask(&format!("use {n}")), Some(format!("use {n}")));
    }
    let mut third = Client::connect(served.addr);
    assert_eq!(third.ask("use 3").as_deref(), Some("use 3"));
    // Exactly three: a fourth connection stays in the backlog (for a sibling or the
    // replacement), even before the retirement is noticed.
    assert_not_served(served.addr, "server-max-use 3");
    wait_until(PATIENCE, "the server to close fd 4 (detach)", || {
        served.detached()
    });
    served.wait_log("retiring reason=max-use");
    assert_eq!(third.ask("draining").as_deref(), Some("draining"));
    drop(third);
    assert!(served.wait_exit(), "exit 0 once the open connection ended");
}

#[test]
fn a_coroutine_stuck_past_the_hang_timeout_is_named_and_the_server_retires() {
    let served = Served::start(CHILD_ENV, "hang");
    let mut client = Client::connect(served.addr);
    assert_eq!(client.ask("alive").as_deref(), Some("alive"));
    client.send_line("spin");
    let line = served.wait_log("hung thread=");
    assert!(
        line.contains(": error: hung"),
        "logged at error level: {line}"
    );
    assert!(line.contains("thread=zm-coro-0 busy_for="), "{line}");
    assert!(
        !line.contains("coroutine=none"),
        "names the coroutine: {line}"
    );
    served.wait_log("retiring reason=hang");
    assert!(served.detached(), "retired through a detach");
}
