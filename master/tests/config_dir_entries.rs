//! Config-dir entries named like config files that cannot be read as one (a directory, a FIFO,
//! a name that is not UTF-8) are errors: a start fails and a reload is refused, naming the path,
//! instead of the service silently disappearing.

mod util;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

fn load(dir: &Path) -> Result<usize, String> {
    zmaster::load_config_from_dir(dir)
        .map(|files| files.len())
        .map_err(|e| e.to_string())
}

fn good_cf(dir: &Path, name: &str) {
    std::fs::write(
        dir.join(name),
        "server-command = /bin/sh\nserver-service = 127.0.0.1:7001\n",
    )
    .unwrap();
}

#[test]
fn entries_named_like_config_files_must_be_readable_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    good_cf(d, "a.cf");
    // Not named like config files: ignored, whatever they are.
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::create_dir(d.join(".hidden.cf")).unwrap();
    std::fs::write(d.join(OsStr::from_bytes(b"\xffnotes.txt")), "x").unwrap();
    std::fs::write(d.join("a.cf.orig"), "junk without equals\n").unwrap();
    assert_eq!(load(d), Ok(1));

    for name in ["b.cf", "B.CF", "all.gcf", "All.GcF"] {
        std::fs::create_dir(d.join(name)).unwrap();
        let err = load(d).unwrap_err();
        let want = format!(
            "{}: named like a config file but a directory",
            d.join(name).display()
        );
        assert!(err.contains(&want), "{name}: {err}");
        std::fs::remove_dir(d.join(name)).unwrap();
    }
    // A symlink is followed: to a directory it is one.
    std::os::unix::fs::symlink("sub", d.join("c.cf")).unwrap();
    let err = load(d).unwrap_err();
    assert!(
        err.contains("c.cf: named like a config file but a directory"),
        "{err}"
    );
    std::fs::remove_file(d.join("c.cf")).unwrap();

    nix::unistd::mkfifo(
        &d.join("f.cf"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let err = load(d).unwrap_err();
    assert!(
        err.contains("f.cf: named like a config file but not a regular file"),
        "{err}"
    );
    std::fs::remove_file(d.join("f.cf")).unwrap();

    std::fs::write(d.join(OsStr::from_bytes(b"caf\xe9.cf")), "x = y\n").unwrap();
    let err = load(d).unwrap_err();
    assert!(
        err.contains(r#"caf\xE9.cf": config file name is not UTF-8"#),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_start_fails_naming_the_directory() {
    let s = Setup::new();
    s.probe_service("a", &format!("127.0.0.1:{}", free_port()), 1, "");
    std::fs::create_dir(s.etc().join("b.cf")).unwrap();
    let mut master = s.start_master(&[]);
    // Without the check this master would run (and be killed on drop): wait with a bound.
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(1));
    let err = master.log_text();
    assert!(
        err.contains("b.cf: named like a config file but a directory"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_reload_is_refused_when_a_cf_became_a_directory_or_a_name_is_not_utf8() {
    let s = Setup::new();
    let (port_a, port_b) = (free_port(), free_port());
    s.probe_service("a", &format!("127.0.0.1:{port_a}"), 1, "");
    s.probe_service("b", &format!("127.0.0.1:{port_b}"), 1, "");
    let master = s.start_master(&[]);
    let kids = master.wait_children(2);
    // Both children have read their .cf once they answer.
    for port in [port_a, port_b] {
        wait_for(Duration::from_secs(5), "an answer", || {
            ask_tcp(port, "up").ok()
        });
    }
    let refused = |n: usize| {
        wait_for(Duration::from_secs(5), "the refused reload", || {
            let log = master.log_text();
            (log.matches("reload failed, keeping the running configuration")
                .count()
                == n)
                .then_some(log)
        })
    };

    std::fs::remove_file(s.etc().join("b.cf")).unwrap();
    std::fs::create_dir(s.etc().join("b.cf")).unwrap();
    master.signal(Signal::SIGHUP);
    let log = refused(1);
    assert!(
        log.contains("b.cf: named like a config file but a directory"),
        "{log}"
    );
    assert_eq!(master.children(), kids, "{log}");
    ask_tcp(port_b, "still b").unwrap();

    std::fs::remove_dir(s.etc().join("b.cf")).unwrap();
    s.probe_service("b", &format!("127.0.0.1:{port_b}"), 1, "");
    let bad = s.etc().join(OsStr::from_bytes(b"\xff.cf"));
    std::fs::copy(s.etc().join("b.cf"), &bad).unwrap();
    master.signal(Signal::SIGHUP);
    let log = refused(2);
    assert!(log.contains("config file name is not UTF-8"), "{log}");
    assert_eq!(master.children(), kids, "{log}");
    ask_tcp(port_a, "still a").unwrap();
    ask_tcp(port_b, "still b").unwrap();
}
