//! SPEC §13 server-side lifecycle in a real aio server under a fake master: the nofile limit,
//! `server-max-connections`, `server-max-use`, `server-max-idle` and `server-hang-timeout`.
//!
//! The server process is this test binary run again with `--exact serve_child`; the style in
//! `ZM_LIFECYCLE_AIO_CHILD` picks the keys it starts with.

mod util;

use std::process::ExitCode;

use util::{Client, PATIENCE, Served, assert_not_served, wait_until};
use zmaster_modes::aio::{self, Conn, ReadResult};

const CHILD_ENV: &str = "ZM_LIFECYCLE_AIO_CHILD";

/// Echoes lines; the line `spin` busy-loops its worker for 3 s (a hung handler).
fn on_line(conn: &mut Conn, line: ReadResult) {
    let Ok(Some(line)) = line else {
        return conn.close();
    };
    if line == b"spin" {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    conn.write(&line);
    conn.write(b"\n");
    conn.read_line(1024, on_line);
}

/// The server side: the style names the §13 keys on its command line.
#[test]
fn serve_child() {
    let Ok(style) = std::env::var(CHILD_ENV) else {
        return;
    };
    let keys: &[&str] = match style.as_str() {
        "max-connections" => &["-server-max-connections", "2", "-server-thread-count", "2"],
        "max-use" => &["-server-max-use", "3"],
        "max-idle" => &["-server-max-idle", "300ms"],
        "max-memory" => &["-server-max-memory", "64k"],
        "hang" => &["-server-hang-timeout", "200ms", "-server-thread-count", "1"],
        _ => &[],
    };
    let mut args = vec!["lifecycle-aio", "MASTER", "-server-service", ":i5"];
    args.extend_from_slice(keys);
    let code = aio::server_main(args, aio::serve_hooks(|conn| conn.read_line(1024, on_line)));
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

fn soft_and_hard_nofile(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

#[test]
fn the_server_raises_its_soft_nofile_limit_to_the_hard_one() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if hard <= 512 {
        eprintln!("skipped: the hard nofile limit is {hard}, too low to lower the soft one");
        return;
    }
    // The child inherits this lowered soft limit, as from a systemd unit.
    setrlimit(Resource::RLIMIT_NOFILE, 512, hard).expect("setrlimit");
    let served = Served::start(CHILD_ENV, "plain");
    let line = served.wait_log("nofile soft limit");
    assert!(line.contains("nofile soft limit 512 -> "), "{line}");
    let (soft, hard) = soft_and_hard_nofile(served.pid());
    assert_eq!(soft, hard, "the soft limit was raised to the hard one");
    assert_ne!(soft, "512");
}

#[test]
fn max_connections_holds_a_third_client_until_one_closes() {
    let served = Served::start(CHILD_ENV, "max-connections");
    let mut first = Client::connect(served.addr);
    let mut second = Client::connect(served.addr);
    assert_eq!(first.ask("one").as_deref(), Some("one"));
    assert_eq!(second.ask("two").as_deref(), Some("two"));
    // The third connection completes in the kernel's backlog, but is not accepted.
    let mut third = Client::connect(served.addr);
    third.send_line("three");
    served.wait_log("connection limit reached max_connections=2");
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
fn max_use_retires_after_three_connections_and_finishes_the_open_one() {
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
    let line = served.wait_log("retiring reason=max-use");
    // The third is open; the first two may not have been seen closing yet (the retirement
    // comes as soon as the third is accepted).
    assert!(line.contains("open=") && !line.contains("open=0"), "{line}");
    assert!(
        served.server.child.try_wait().expect("try_wait").is_none(),
        "still serving the open connection"
    );
    assert_eq!(third.ask("draining").as_deref(), Some("draining"));
    drop(third);
    served.wait_log("drained: every connection finished");
    assert!(served.wait_exit(), "exit 0 once the open connection ended");
}

#[test]
fn max_idle_retires_a_server_nobody_uses() {
    let mut served = Served::start(CHILD_ENV, "max-idle");
    let mut client = Client::connect(served.addr);
    assert_eq!(client.ask("once").as_deref(), Some("once"));
    drop(client);
    served.wait_log("retiring reason=idle");
    assert!(
        served.detached(),
        "detached first: the master replaces it at once"
    );
    assert!(served.wait_exit(), "exit 0");
}

#[test]
fn max_memory_warns_and_retires_a_server_above_it() {
    // No server's resident size is under 64 KiB: the first check retires it.
    let mut served = Served::start(CHILD_ENV, "max-memory");
    let warned = served.wait_log("above server-max-memory 65536");
    assert!(warned.contains("resident size"), "{warned}");
    served.wait_log("retiring reason=memory");
    assert!(served.detached(), "retired through a detach");
    assert!(served.wait_exit(), "exit 0");
}

#[test]
fn a_handler_stuck_past_the_hang_timeout_is_named_and_the_server_retires() {
    let mut served = Served::start(CHILD_ENV, "hang");
    let mut client = Client::connect(served.addr);
    assert_eq!(client.ask("alive").as_deref(), Some("alive"));
    client.send_line("spin");
    let line = served.wait_log("hung thread=");
    assert!(
        line.contains(": error: hung"),
        "logged at error level: {line}"
    );
    assert!(line.contains("thread=zm-worker-0 busy_for="), "{line}");
    assert!(
        line.contains("coroutine=none"),
        "aio mode: no coroutine: {line}"
    );
    served.wait_log("retiring reason=hang");
    assert!(served.detached(), "retired through a detach");
    // The handler comes back after its loop; the connection then finishes normally.
    assert_eq!(client.read_line().as_deref(), Some("spin"));
    drop(client);
    assert!(served.wait_exit(), "exit 0 once drained");
}
