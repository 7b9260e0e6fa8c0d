//! `raise_nofile_limit`: in a child process whose soft `RLIMIT_NOFILE` was lowered, the call
//! puts the soft limit back at the hard one (or `fs.nr_open`) and reports both values.
//!
//! The child is this test binary re-executed with `ZM_POOL_NOFILE_CHILD` set, running only
//! `nofile_child` (the limit is per process: lowering it in the test process would starve
//! the other tests).

use std::process::Command;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use zmaster_pool::raise_nofile_limit;

const CHILD_ENV: &str = "ZM_POOL_NOFILE_CHILD";
const LOWERED: u64 = 64;

/// The child side; does nothing unless run as the child.
#[test]
fn nofile_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, LOWERED, hard).expect("lower the soft limit");
    let (old, new) = raise_nofile_limit().expect("raise");
    let (soft, hard_after) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    println!("ZMNOFILE old={old} new={new} soft={soft} hard={hard} hard_after={hard_after}");
    // Raising again changes nothing and says so.
    let (again_old, again_new) = raise_nofile_limit().expect("raise again");
    println!("ZMAGAIN old={again_old} new={again_new}");
}

#[test]
fn raise_nofile_limit_lifts_the_soft_limit_to_the_hard_one() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["nofile_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |line: &str, key: &str| -> u64 {
        // The test harness may print its own text before ours on the same line.
        let l = stdout
            .lines()
            .find_map(|l| l.find(line).map(|at| &l[at..]))
            .unwrap_or_else(|| panic!("no {line} line in {stdout}"));
        let v = l
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {l}"));
        v.parse().expect("number")
    };
    let (old, new, soft) = (
        field("ZMNOFILE", "old"),
        field("ZMNOFILE", "new"),
        field("ZMNOFILE", "soft"),
    );
    let (hard, hard_after) = (field("ZMNOFILE", "hard"), field("ZMNOFILE", "hard_after"));
    assert_eq!(old, LOWERED, "{stdout}");
    assert_eq!(new, soft, "the value reported is the one set: {stdout}");
    assert_eq!(hard_after, hard, "the hard limit is untouched: {stdout}");
    if hard == libc::RLIM_INFINITY {
        let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .expect("nr_open")
            .trim()
            .parse()
            .expect("number");
        assert_eq!(soft, nr_open, "{stdout}");
    } else {
        assert_eq!(soft, hard, "{stdout}");
    }
    assert!(soft > LOWERED, "{stdout}");
    assert_eq!(field("ZMAGAIN", "old"), soft, "{stdout}");
    assert_eq!(field("ZMAGAIN", "new"), soft, "{stdout}");
}
