//! Argument parsing: options, defaults, exclusivity and address checks.

use std::time::Duration;

use zmaster_stress::args::{Command, Limit, Target, parse, parse_duration, parse_rate, parse_size};
use zmaster_stress::bench::ConnectRows;
use zmaster_stress::chaos::MasterRef;

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn load_options() {
    let Ok(Command::Load { cfg, json }) = parse(&argv(
        "load 127.0.0.1:7000 --conns 7 --requests 99 --warmup 250ms --size 1k --threads 3 --banner 1 --connect-per-request --json",
    )) else {
        panic!("parse failed")
    };
    assert!(json);
    assert_eq!(cfg.target, Target::Tcp("127.0.0.1:7000".parse().unwrap()));
    assert_eq!(
        (cfg.conns, cfg.size, cfg.threads, cfg.banner),
        (7, 1024, 3, 1)
    );
    assert_eq!(cfg.limit, Limit::Requests(99));
    assert_eq!(cfg.warmup, Duration::from_millis(250));
    assert!(cfg.connect_per_request);
}

#[test]
fn load_defaults_and_unix() {
    let Ok(Command::Load { cfg, json }) = parse(&argv("load /tmp/x.sock --duration=2")) else {
        panic!()
    };
    assert!(!json);
    assert_eq!(cfg.target, Target::Unix("/tmp/x.sock".into()));
    assert_eq!(cfg.limit, Limit::Duration(Duration::from_secs(2)));
    assert_eq!((cfg.conns, cfg.size), (10, 64));
}

#[test]
fn addresses() {
    assert!(Target::parse("127.0.0.1:80").is_ok());
    assert!(Target::parse("[::1]:80").is_ok());
    assert_eq!(
        Target::parse("localhost:81").ok(),
        Target::parse("127.0.0.1:81").ok()
    );
    assert!(Target::parse("192.168.1.1:80").is_err());
    assert!(Target::parse("0.0.0.0:80").is_err());
    assert!(Target::parse("127.0.0.1:0").is_err());
    assert_eq!(
        Target::parse("echo.sock").ok(),
        Some(Target::Unix("echo.sock".into()))
    );
    assert_eq!(
        Target::parse("unix:a:b").ok(),
        Some(Target::Unix("a:b".into()))
    );
}

#[test]
fn values() {
    assert_eq!(
        parse_duration("1.5s").ok(),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("3").ok(), Some(Duration::from_secs(3)));
    assert!(parse_duration("-1s").is_err());
    assert_eq!(parse_size("4K").ok(), Some(4096));
    assert!(parse_size("lots").is_err());
    assert_eq!(parse_rate("2/s").ok(), Some(2.0));
    assert_eq!(parse_rate("30/m").ok(), Some(0.5));
    assert!(parse_rate("2/h").is_err());
}

#[test]
fn chaos_and_bench() {
    let Ok(Command::Chaos { cfg, .. }) = parse(&argv(
        "chaos --pid-file /run/m.pid 127.0.0.1:9 --hup-rate 0.5/s --duration 3s",
    )) else {
        panic!()
    };
    assert_eq!(cfg.master, MasterRef::PidFile("/run/m.pid".into()));
    assert_eq!((cfg.kill_rate, cfg.hup_rate), (0.0, 0.5));
    assert_eq!(cfg.load.limit, Limit::Duration(Duration::from_secs(3)));
    let Ok(Command::Chaos { cfg, .. }) = parse(&argv("chaos --master-pid 42 127.0.0.1:9")) else {
        panic!()
    };
    assert_eq!((cfg.master, cfg.kill_rate), (MasterRef::Pid(42), 1.0));
    assert!(parse(&argv("chaos --master-pid 42 127.0.0.1:9 --requests 5")).is_err());
    let Ok(Command::Chaos { cfg, .. }) = parse(&argv(
        "chaos --pid-file m.pid 127.0.0.1:9 --upgrade-rate 2/s --duration 1s",
    )) else {
        panic!()
    };
    // An upgrade rate alone is chaos enough: no default kill rate is added.
    assert_eq!(
        (cfg.kill_rate, cfg.hup_rate, cfg.upgrade_rate),
        (0.0, 0.0, 2.0)
    );
    let Err(e) = parse(&argv("chaos --master-pid 42 127.0.0.1:9 --upgrade-rate 1")) else {
        panic!("--upgrade-rate without --pid-file must be refused")
    };
    assert!(
        e.to_string().contains("--upgrade-rate needs --pid-file"),
        "{e}"
    );
    assert!(
        parse(&argv(
            "chaos --pid-file m.pid 127.0.0.1:9 --upgrade-rate 1/h"
        ))
        .is_err()
    );
    let Ok(Command::Bench {
        cfg: b,
        json: false,
    }) = parse(&argv(
        "bench --duration 2 --workers 1,4 --bin-dir bins --out o --only epoll,tokio",
    ))
    else {
        panic!()
    };
    assert_eq!(b.workers, vec![1, 4]);
    assert_eq!(b.bin_dir, std::path::PathBuf::from("bins"));
    assert!(parse(&argv("bench --workers 0")).is_err());
    let Ok(Command::Bench {
        cfg: d,
        json: false,
    }) = parse(&argv("bench"))
    else {
        panic!()
    };
    assert_eq!(d.bin_dir, std::path::PathBuf::from("target/release"));
    assert_eq!((d.procs, d.workers), (vec![1], vec![1, 2]));
    assert_eq!(
        (d.connect, d.connect_conns, d.idle, d.size),
        (ConnectRows::Off, 10, 0, 64)
    );
}

#[test]
fn bench_procs_connect_idle_size_json() {
    let Ok(Command::Bench { cfg, json }) = parse(&argv(
        "bench --procs 1,2 --workers=1,2 --connect-per-request --connect-conns 6 --idle 50 --size 16k --json",
    )) else {
        panic!("parse failed")
    };
    assert!(json);
    assert_eq!((cfg.procs, cfg.workers), (vec![1, 2], vec![1, 2]));
    assert_eq!(cfg.connect, ConnectRows::Also);
    assert_eq!((cfg.connect_conns, cfg.idle, cfg.size), (6, 50, 16 * 1024));
    for (a, want) in [
        ("bench --connect-per-request=only", ConnectRows::Only),
        ("bench --connect-per-request=also", ConnectRows::Also),
        ("bench --procs=2 --size 1m", ConnectRows::Off),
    ] {
        let Ok(Command::Bench { cfg, .. }) = parse(&argv(a)) else {
            panic!("{a} failed")
        };
        assert_eq!(cfg.connect, want, "{a}");
    }
    let Ok(Command::Bench { cfg, .. }) = parse(&argv("bench --procs=2,3 --size 1m")) else {
        panic!()
    };
    assert_eq!((cfg.procs, cfg.size), (vec![2, 3], 1 << 20));
    for a in [
        "bench --procs 0",
        "bench --procs 1,,2",
        "bench --procs",
        "bench --procs 300",
        "bench --idle -1",
        "bench --idle many",
        "bench --idle 100001",
        "bench --connect-per-request=sometimes",
        "bench --connect-per-request only",
        "bench --connect-per-request --connect-conns 0",
        "bench --size 17m",
        "bench --size 0",
        "bench --json=yes",
    ] {
        assert!(parse(&argv(a)).is_err(), "{a:?} should fail");
    }
}

#[test]
fn bad_usage() {
    for a in [
        "",
        "load",
        "load 127.0.0.1:1 --conns 0",
        "load 127.0.0.1:1 --bogus",
        "load a b",
        "load 127.0.0.1:1 --size",
    ] {
        assert!(parse(&argv(a)).is_err(), "{a:?} should fail");
    }
}
