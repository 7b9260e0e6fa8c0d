//! `zstress load` end to end against in-test servers: counts add up, errors are classified.

mod util;

use util::{Behaviour, closed_port, last_line, num, tcp_server, unix_server, zstress};

#[test]
fn counts_add_up_over_tcp() {
    let addr = tcp_server(Behaviour::Echo { banner: 0 }).to_string();
    let o = zstress(&[
        "load",
        &addr,
        "--requests",
        "500",
        "--conns",
        "4",
        "--threads",
        "2",
        "--json",
    ]);
    let j = last_line(&o);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(num(&j, "requests"), 500.0, "{j}");
    assert_eq!(num(&j, "ok"), 500.0, "{j}");
    assert_eq!(num(&j, "errors_total"), 0.0, "{j}");
    assert!(num(&j, "p50") >= 1.0, "{j}");
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("throughput") && table.contains("p99"),
        "{table}"
    );
}

#[test]
fn closed_port_is_all_refused() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let o = zstress(&["load", &addr, "--requests", "30", "--conns", "3", "--json"]);
    let j = last_line(&o);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(num(&j, "requests"), 30.0, "{j}");
    assert_eq!(num(&j, "refused"), 30.0, "{j}");
    assert_eq!(num(&j, "ok"), 0.0, "{j}");
}

#[test]
fn unix_socket_and_missing_unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("echo.sock");
    unix_server(&path);
    let p = path.to_string_lossy().to_string();
    let o = zstress(&["load", &p, "--requests", "300", "--conns", "3", "--json"]);
    let j = last_line(&o);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(num(&j, "ok"), 300.0, "{j}");
    let missing = dir
        .path()
        .join("nothing.sock")
        .to_string_lossy()
        .to_string();
    let o = zstress(&[
        "load",
        &missing,
        "--requests",
        "10",
        "--conns",
        "1",
        "--json",
    ]);
    let j = last_line(&o);
    assert_eq!(num(&j, "refused"), 10.0, "{j}");
}

#[test]
fn connect_per_request_and_banner() {
    let addr = tcp_server(Behaviour::Echo { banner: 2 }).to_string();
    let o = zstress(&[
        "load",
        &addr,
        "--requests",
        "200",
        "--conns",
        "4",
        "--banner",
        "2",
        "--connect-per-request",
        "--json",
    ]);
    let j = last_line(&o);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(num(&j, "ok"), 200.0, "{j}");
    assert!(j.contains("\"connect_per_request\":true"), "{j}");
}

#[test]
fn wrong_and_short_replies_are_classified() {
    let wrong = tcp_server(Behaviour::Wrong).to_string();
    let j = last_line(&zstress(&[
        "load",
        &wrong,
        "--requests",
        "20",
        "--conns",
        "2",
        "--json",
    ]));
    assert_eq!(num(&j, "wrong"), 20.0, "{j}");
    let short = tcp_server(Behaviour::CloseAfterRead).to_string();
    let j = last_line(&zstress(&[
        "load",
        &short,
        "--requests",
        "20",
        "--conns",
        "2",
        "--json",
    ]));
    assert_eq!(num(&j, "requests"), 20.0, "{j}");
    assert_eq!(num(&j, "short") + num(&j, "reset"), 20.0, "{j}");
}

#[test]
fn duration_mode_ends() {
    let addr = tcp_server(Behaviour::Echo { banner: 0 }).to_string();
    let j = last_line(&zstress(&[
        "load",
        &addr,
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--json",
    ]));
    assert!(num(&j, "ok") > 0.0, "{j}");
    assert_eq!(
        num(&j, "requests"),
        num(&j, "ok") + num(&j, "errors_total"),
        "{j}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["load", "10.1.2.3:80"][..],
        &["load", "127.0.0.1:80", "--duration", "soon"],
        &[
            "load",
            "127.0.0.1:80",
            "--duration",
            "1s",
            "--requests",
            "5",
        ],
        &["load"],
        &["frobnicate"],
        &["chaos", "127.0.0.1:80"],
        &["bench", "--only", "nginx"],
    ] {
        let o = zstress(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("zstress: "), "{err}");
    }
}
