//! Unknown keys: a typo of an owned key in a file warns with `file:line` and "did you mean";
//! a command-line `-key` nobody knows is a usage error, never a silent override.

mod cli_util;
mod util;

use std::time::Duration;

use cli_util::{text, zmaster};
use util::*;

#[test]
fn a_typo_in_a_file_warns_at_its_line_with_the_nearest_key() {
    let s = Setup::new();
    let etc = s.etc().display().to_string();
    s.probe_service(
        "a",
        &format!("127.0.0.1:{}", free_port()),
        1,
        "server-proc-cont = 2\nprobe-greeting = servers' own keys pass silently\n",
    );
    std::fs::write(s.etc().join("all.gcf"), "\nrun-usr = nobody\n").unwrap();
    let out = zmaster(ZMASTER, &["-C", &etc, "-t"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stderr),
        format!(
            "zmaster: warning: {etc}/a.cf:4: unknown key \"server-proc-cont\" (did you mean \"server-proc-count\"?)\n\
             zmaster: warning: {etc}/all.gcf:2: unknown key \"run-usr\" (did you mean \"run-user\"?)\n"
        )
    );
    // A running master logs the same warning (once, though the .gcf key is in every service).
    let master = s.start_master(&[]);
    let want = format!(
        "warning: {etc}/a.cf:4: unknown key \"server-proc-cont\" (did you mean \"server-proc-count\"?)"
    );
    wait_for(Duration::from_secs(10), "the started line", || {
        master.log_text().contains("started:").then_some(())
    });
    let log = master.log_text();
    assert_eq!(log.matches(&want).count(), 1, "{log}");
    assert_eq!(log.matches("\"run-usr\"").count(), 1, "{log}");
    assert!(!log.contains("probe-greeting"), "{log}");
}

#[test]
fn an_unknown_command_line_key_is_a_usage_error_naming_the_nearest_option() {
    let s = Setup::new();
    let port = free_port();
    s.probe_service(
        "a",
        &format!("127.0.0.1:{port}"),
        1,
        "probe-greeting = hi\n",
    );
    let pid_file = s.path("zm.pid");
    let etc = s.etc().display().to_string();
    let run = |args: &[&str]| zmaster(ZMASTER, &[&["-C", etc.as_str()], args].concat());
    let out = run(&["-pidfile", pid_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "zmaster: unknown option \"-pidfile\" (did you mean \"-pid-file\"?); see zmaster -h\n"
    );
    assert!(!pid_file.exists());
    assert_eq!(
        std::fs::read_dir(s.path("rep")).unwrap().count(),
        0,
        "a child ran"
    );
    // -t says the same.
    let out = run(&["-t", "-server-thread-cont", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "zmaster: unknown option \"-server-thread-cont\" (did you mean \"-server-thread-count\"?); see zmaster -h\n"
    );
    // Known keys, and keys some loaded file sets, are overrides.
    let out = run(&["-t", "-server-thread-count", "2", "-probe-greeting", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
