//! A huge bad value gives a short error line, and a config file is read only up to its cap.

use std::fs;
use std::path::Path;

use zmaster_core::cli::CommandLine;
use zmaster_core::config::{self, Config, Origin};
use zmaster_core::logging::LogTarget;
use zmaster_core::{addr, protocol};

const HUGE: usize = 2_000_000;

/// The error line quotes the start of the value and says how long it was, in a few hundred bytes.
fn assert_short(what: &str, err: &zmaster_core::Error, total: usize) {
    let line = err.to_string();
    assert!(
        line.len() < 500,
        "{what}: {} bytes: {}",
        line.len(),
        &line[..500]
    );
    assert!(
        line.contains(&format!("…({total} bytes)")),
        "{what}: {line}"
    );
}

#[test]
fn service_addresses_quote_at_most_a_hundred_characters() {
    let path = format!("x://{}", "1".repeat(HUGE));
    assert_short(
        "path",
        &addr::parse_service_list(&path).unwrap_err(),
        HUGE + 4,
    );
    let port = format!("127.0.0.1:{}", "9".repeat(HUGE));
    assert_short("port", &addr::parse_entry(&port).unwrap_err(), HUGE + 10);
    let letters = format!("127.0.0.1:{}", "p".repeat(HUGE));
    assert_short("port", &addr::parse_entry(&letters).unwrap_err(), HUGE + 10);
    let host = format!("{}:80", "!".repeat(HUGE));
    assert_short("host", &addr::parse_entry(&host).unwrap_err(), HUGE + 3);
    let long_name = format!("{}:80", "a".repeat(HUGE));
    assert_short(
        "host",
        &addr::parse_entry(&long_name).unwrap_err(),
        HUGE + 3,
    );
    let v6 = format!("[{}]:80", "z".repeat(HUGE));
    assert_short("ipv6", &addr::parse_entry(&v6).unwrap_err(), HUGE + 5);
    let fifo = format!("fifo:/{}", "f".repeat(HUGE));
    let twice = format!("{fifo},{fifo}");
    assert_short(
        "twice",
        &addr::parse_service_list(&twice).unwrap_err(),
        HUGE + 6,
    );
}

#[test]
fn config_values_quote_at_most_a_hundred_characters() {
    let text = format!("n = {}x\n", "1".repeat(HUGE));
    let c = Config::parse(&text, Path::new("t.cf")).unwrap();
    assert_short("int", &c.get_int("n", 0).unwrap_err(), HUGE + 1);
    let mut cli = Config::new();
    cli.set_with_origin("n", &"y".repeat(HUGE), Origin::CommandLine);
    assert_short("cli", &cli.get_bool("n", false).unwrap_err(), HUGE);
    let syntax = format!("{}\n", "w".repeat(HUGE));
    let err = Config::parse(&syntax, Path::new("t.cf")).unwrap_err();
    assert_short("syntax", &err, HUGE);
    assert!(err.to_string().starts_with("t.cf:1: "), "{err}");
}

#[test]
fn other_user_input_is_quoted_short() {
    let entry = format!("a:x{}", "5".repeat(HUGE));
    assert_short(
        "server-service",
        &protocol::parse_server_service(&entry).unwrap_err(),
        HUGE + 3,
    );
    let log = format!("syslog,{}", "m".repeat(HUGE));
    assert_short("server-log", &LogTarget::parse(&log).unwrap_err(), HUGE + 7);
    let flag = format!("-{}", "k".repeat(HUGE));
    assert_short("option", &CommandLine::parse([flag]).unwrap_err(), HUGE + 1);
}

#[test]
fn config_files_are_capped_at_one_mib() {
    let dir = tempfile::tempdir().unwrap();
    let limit = config::MAX_CONFIG_FILE_BYTES;
    assert_eq!(limit, 1 << 20);
    let line = "k = v\n";
    let fits = line.repeat(limit as usize / line.len()) + &"#".repeat(limit as usize % line.len());
    assert_eq!(fits.len() as u64, limit);
    let at_limit = dir.path().join("fits.cf");
    fs::write(&at_limit, &fits).unwrap();
    assert_eq!(Config::load_file(&at_limit).unwrap().get("k"), Some("v"));
    let over = dir.path().join("over.cf");
    fs::write(&over, fits + "\n").unwrap();
    let err = Config::load_file(&over).unwrap_err().to_string();
    assert!(
        err.contains(&over.display().to_string()) && err.contains("1048576 bytes"),
        "{err}"
    );
    let err = Config::load_file(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/dev/zero") && err.contains("1048576 bytes"),
        "{err}"
    );
    let err = CommandLine::parse(["-config", "/dev/zero"])
        .unwrap()
        .server_config()
        .unwrap_err()
        .to_string();
    assert!(err.contains("/dev/zero"), "{err}");
}
