//! `coroutine::serve`'s hooks in a real server process under a fake master (SPEC §5 fds):
//! every listener is served by the one handler in coroutines, and a softstop drains the open
//! connection without a `before_softstop` hook, and plain hooks exit at once.
//!
//! The server process is this test binary run again with `--exact serve_child`: the
//! `serve_child` test serves only when `ZM_CO_SERVE_CHILD` is set (otherwise it returns at
//! once), with fds 3, 4 and 5 staged by the parent as a master would.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;

use zmaster_modes::coroutine::{self, Connection, Hooks};

const CHILD_ENV: &str = "ZM_CO_SERVE_CHILD";

fn echo(conn: Connection) {
    let (mut lines, mut line) = (BufReader::new(&conn), String::new());
    while lines.read_line(&mut line).unwrap_or(0) > 0 {
        if (&conn).write_all(line.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}

/// The server side: `drain` = `coroutine::serve_hooks`; otherwise plain hooks, no drain.
#[test]
fn serve_child() {
    let Ok(style) = std::env::var(CHILD_ENV) else {
        return;
    };
    let hooks = match style.as_str() {
        "drain" => coroutine::serve_hooks(echo),
        _ => Hooks::new()
            .service_register(|_name, listener, _kind| coroutine::general_register(listener, echo)),
    };
    let args = ["co-serve", "MASTER", "-server-service", ":i5"];
    let code = coroutine::server_main(args, hooks);
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

#[test]
fn serve_drains_the_open_connection_on_softstop() {
    util::drains_the_open_connection_on_softstop(CHILD_ENV, "drain");
}

#[test]
fn hooks_without_a_drain_exit_at_once_on_softstop() {
    util::exits_at_once_on_softstop(CHILD_ENV, "exit");
}
