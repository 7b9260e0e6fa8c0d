//! `zmaster -C DIR -t` / `--check`: validate everything, bind and start nothing, one line out.

mod cli_util;
mod util;

use std::net::TcpListener;
use std::process::Output;

use cli_util::text;
use util::*;

fn zmaster(args: &[&str]) -> Output {
    cli_util::zmaster(ZMASTER, args)
}

fn check(s: &Setup, flag: &str) -> Output {
    let etc = s.etc();
    zmaster(&["-C", etc.to_str().unwrap(), flag])
}

#[test]
fn a_valid_dir_is_ok_and_nothing_is_bound_or_started() {
    let s = Setup::new();
    // Held by the test: a master that tried to bind it would fail; -t must not even try.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let sock = s.path("b.sock");
    s.probe_service("a", &format!("127.0.0.1:{port}"), 2, "");
    s.probe_service(
        "b",
        &format!("x://{},y://127.0.0.1:{}", sock.display(), free_port()),
        1,
        "",
    );
    for flag in ["-t", "--check"] {
        let out = check(&s, flag);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "config ok: 2 services, 3 listeners\n");
        assert_eq!(text(&out.stderr), "");
        assert!(!sock.exists(), "-t created the unix socket {sock:?}");
    }
    // No child ran: the probe writes a report as soon as it starts.
    assert_eq!(std::fs::read_dir(s.path("rep")).unwrap().count(), 0);
    drop(held);
}

#[test]
fn flags_may_come_before_the_config_dir() {
    let s = Setup::new();
    s.probe_service("a", &format!("127.0.0.1:{}", free_port()), 1, "");
    let etc = s.etc();
    let out = zmaster(&["-t", "-C", etc.to_str().unwrap()]);
    assert_eq!(text(&out.stdout), "config ok: 1 services, 1 listeners\n");
    assert_eq!(out.status.code(), Some(0));
}

/// Runs `-t` on a dir and returns the first stderr line, asserting exit 1 and no stdout.
fn first_error(s: &Setup) -> String {
    let out = check(s, "-t");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "");
    text(&out.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn errors_exit_1_with_the_first_error_line() {
    let s = Setup::new();
    let etc = s.etc().display().to_string();
    let port = free_port();
    s.probe_service(
        "a",
        &format!("127.0.0.1:{port}"),
        1,
        "server-max-idle = soon\n",
    );
    assert_eq!(
        first_error(&s),
        format!(
            "zmaster: {etc}/a.cf:4: server-max-idle = \"soon\": expected a duration such as 500ms, 10s, 5m, 1h, 1d or 1w"
        )
    );
    s.probe_service("a", &format!("127.0.0.1:{port}"), 1, "");
    s.probe_service("b", &format!("127.0.0.1:{port}"), 1, "");
    assert_eq!(
        first_error(&s),
        format!(
            "zmaster: {etc}/b.cf:2: address 127.0.0.1:{port} is already used by service a ({etc}/a.cf)"
        )
    );
    std::fs::remove_file(s.etc().join("b.cf")).unwrap();
    s.write_cf(
        "a",
        &format!("server-command = /no/such/server\nserver-service = 127.0.0.1:{port}\n"),
    );
    assert_eq!(
        first_error(&s),
        format!(
            "zmaster: {etc}/a.cf:1: server-command \"/no/such/server\": not an executable file"
        )
    );
    s.write_cf("a", "server-command = sh\nno equals\n");
    assert_eq!(
        first_error(&s),
        format!("zmaster: {etc}/a.cf:2: expected `key = value`, got \"no equals\"")
    );
}

#[test]
fn command_line_values_are_checked_too() {
    let s = Setup::new();
    s.probe_service("a", &format!("127.0.0.1:{}", free_port()), 1, "");
    let etc = s.etc();
    let out = zmaster(&[
        "-C",
        etc.to_str().unwrap(),
        "-t",
        "-server-thread-count",
        "-2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).lines().next(),
        Some("zmaster: command line -server-thread-count \"-2\": expected an integer of 0 or more")
    );
}
