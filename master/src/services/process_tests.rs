//! Unit tests of `run-user`/`run-group`, the rlimit keys and the `run-chroot`/`run-chdir` aliases.

use std::path::Path;

use super::*;

fn config(text: &str) -> Config {
    Config::parse(text, Path::new("x.cf")).unwrap()
}

fn at(config: &Config) -> impl Fn(&str) -> String + '_ {
    |key: &str| {
        config
            .location(key)
            .map_or_else(|| "x.cf".to_owned(), ToString::to_string)
    }
}

fn parsed(text: &str) -> Result<Process> {
    let c = config(text);
    parse(&c, &at(&c))
}

fn error(text: &str) -> String {
    parsed(text).unwrap_err().to_string()
}

#[test]
fn nothing_set_changes_nothing() {
    assert_eq!(parsed("other = 1\n").unwrap(), Process::default());
    assert_eq!(
        parsed("run-user =\nrun-group =\nserver-rlimit-nofile =\n").unwrap(),
        Process::default()
    );
}

#[test]
fn numeric_ids_are_digits_only() {
    assert_eq!(numeric_id("0"), Some(0));
    assert_eq!(numeric_id("65534"), Some(65534));
    assert_eq!(numeric_id("+1"), None);
    assert_eq!(numeric_id("nobody"), None);
    assert_eq!(numeric_id("99999999999"), None);
}

#[test]
fn run_user_takes_the_users_ids_and_groups() {
    let nobody = User::from_name("nobody").unwrap().expect("a nobody user");
    let p = parsed("run-user = nobody\n").unwrap();
    assert_eq!(p.uid, Some(nobody.uid.as_raw()));
    assert_eq!(p.gid, Some(nobody.gid.as_raw()));
    let groups = p.groups.unwrap();
    assert!(groups.contains(&nobody.gid.as_raw()), "{groups:?}");
    assert!(!groups.contains(&0), "{groups:?}");
    // The same user by number.
    let by_id = parsed(&format!("run-user = {}\n", nobody.uid)).unwrap();
    assert_eq!(by_id.uid, Some(nobody.uid.as_raw()));
    assert_eq!(by_id.gid, Some(nobody.gid.as_raw()));
}

#[test]
fn run_group_overrides_the_primary_group() {
    let p = parsed("run-user = nobody\nrun-group = 0\n").unwrap();
    assert_eq!(p.gid, Some(0));
    assert!(p.groups.unwrap().contains(&0));
    let root = Group::from_gid(Gid::from_raw(0)).unwrap().unwrap();
    assert_eq!(
        parsed(&format!("run-group = {}\n", root.name)).unwrap(),
        Process {
            gid: Some(0),
            ..Process::default()
        }
    );
}

#[test]
fn a_numeric_user_without_entry_needs_run_group() {
    let free = (40_000..60_000)
        .find(|id| User::from_uid(Uid::from_raw(*id)).unwrap().is_none())
        .unwrap();
    let err = error(&format!("a = 1\nrun-user = {free}\n"));
    assert!(
        err.contains("x.cf:2: run-user:") && err.contains("set run-group"),
        "{err}"
    );
    let p = parsed(&format!("run-user = {free}\nrun-group = {free}\n")).unwrap();
    assert_eq!((p.uid, p.gid), (Some(free), Some(free)));
    assert_eq!(p.groups, Some(vec![free]));
}

#[test]
fn unknown_names_are_located_errors() {
    let err = error("a = 1\nrun-user = no-such-user-zm\n");
    assert!(
        err.contains("x.cf:2: run-user: no such user \"no-such-user-zm\""),
        "{err}"
    );
    let err = error("run-group = no-such-group-zm\n");
    assert!(
        err.contains("x.cf:1: run-group: no such group \"no-such-group-zm\""),
        "{err}"
    );
    let err = error("run-user = nobody\nrun-group = no-such-group-zm\n");
    assert!(err.contains("x.cf:2: run-group: no such group"), "{err}");
}

#[test]
fn nofile_is_a_positive_integer() {
    assert_eq!(
        parsed("server-rlimit-nofile = 4096\n").unwrap().nofile,
        Some(4096)
    );
    assert_eq!(
        parsed("server-rlimit-nofile = 1\n").unwrap().nofile,
        Some(1)
    );
    let max = i32::MAX;
    assert_eq!(
        parsed(&format!("server-rlimit-nofile = {max}\n"))
            .unwrap()
            .nofile,
        Some(max as u64)
    );
    for bad in ["0", "-1", "lots", "2147483648"] {
        let err = error(&format!("server-rlimit-nofile = {bad}\n"));
        assert!(err.contains("x.cf:1") && err.contains(bad), "{err}");
    }
}

#[test]
fn core_size_is_a_size_or_unlimited() {
    let core = |v: &str| parsed(&format!("server-core-file-size = {v}\n")).map(|p| p.core_size);
    assert_eq!(core("0").unwrap(), Some(0));
    assert_eq!(core("64m").unwrap(), Some(64 << 20));
    assert_eq!(core("unlimited").unwrap(), Some(u64::MAX));
    assert_eq!(core("Unlimited").unwrap(), Some(u64::MAX));
    let err = core("huge").unwrap_err().to_string();
    assert!(err.contains("x.cf:1") && err.contains("huge"), "{err}");
}

#[test]
fn run_keys_and_their_aliases() {
    let path = |text: &str| {
        let c = config(text);
        aliased_path(&c, "run-chdir", "master-chdir", &at(&c))
    };
    assert_eq!(path("a = 1\n").unwrap(), None);
    assert_eq!(
        path("run-chdir = /a\n").unwrap(),
        Some(("run-chdir", PathBuf::from("/a")))
    );
    assert_eq!(
        path("master-chdir = /b\n").unwrap(),
        Some(("master-chdir", PathBuf::from("/b")))
    );
    assert_eq!(
        path("master-chdir = /a\nrun-chdir = /a\n").unwrap(),
        Some(("run-chdir", PathBuf::from("/a")))
    );
    assert_eq!(
        path("master-chdir =\nrun-chdir = /a\n").unwrap(),
        Some(("run-chdir", PathBuf::from("/a")))
    );
    let err = path("master-chdir = /b\nrun-chdir = /a\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.cf:2: run-chdir: \"/a\" conflicts with master-chdir = \"/b\" (x.cf:1)"),
        "{err}"
    );
}

#[test]
fn a_hang_timeout_under_100ms_is_refused() {
    for value in ["5ms", "10ms", "99ms"] {
        assert_eq!(
            error(&format!("\nserver-hang-timeout = {value}\n")),
            format!("x.cf:2: server-hang-timeout = {value}: below the minimum 100ms")
        );
    }
    for (value, want) in [("0", 0), ("100ms", 100), ("2s", 2000)] {
        let p = parsed(&format!("server-hang-timeout = {value}\n")).unwrap();
        assert_eq!(
            p.limits.hang_timeout,
            Duration::from_millis(want),
            "{value}"
        );
    }
}

#[test]
fn the_balance_between_processes_is_opt_in() {
    assert!(!parsed("").unwrap().balance);
    assert!(parsed("server-proc-balance = yes\n").unwrap().balance);
    assert!(!parsed("server-proc-balance = no\n").unwrap().balance);
    let err = parsed("server-proc-balance = maybe\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("server-proc-balance"), "{err}");
}
