//! The upgrade state machine with real processes: `/bin/sh` scripts stand in for the new master.

use std::net::TcpListener;
use std::os::unix::net::UnixListener;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::*;

/// The script prologue: `$fd` is the readiness pipe named in the handover variable.
const READY_FD: &str = "fd=${ZMASTER_UPGRADE_FDS#*ready=}; fd=${fd%%;*}; ";

fn launch(script: &str, timeout: Duration) -> Launch {
    Launch {
        program: PathBuf::from("/bin/sh"),
        argv: ["sh", "-c", script].map(OsString::from).to_vec(),
        timeout,
    }
}

fn no_fds() -> Fds<'static> {
    Fds {
        listeners: Vec::new(),
        pidlock: None,
        control: None,
    }
}

/// Serializes the tests: the inheritable copies one test makes for its new master must not
/// slip into another test's.
static SPAWNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SPAWNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Polls the readiness pipe as the supervision loop does until the upgrade is decided.
fn decide(up: &mut NewMaster) -> Progress {
    let guard = Instant::now() + Duration::from_secs(20);
    loop {
        let now = Instant::now();
        assert!(now < guard, "the upgrade was never decided");
        let left = up
            .deadline()
            .saturating_duration_since(now)
            .min(Duration::from_millis(200));
        let mut fds = [PollFd::new(up.fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(left.as_millis().max(1) as u16));
        match up.poll(Instant::now()) {
            Progress::Waiting => {}
            decided => return decided,
        }
    }
}

/// True when `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

#[test]
fn a_new_master_that_reports_ready_gets_every_fd_and_a_group_of_its_own() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
    let unix = UnixListener::bind(dir.path().join("s")).expect("bind");
    let lock = File::create(dir.path().join("pid")).expect("pid file");
    let fds = Fds {
        listeners: vec![
            (tcp.as_fd(), Origin::OldMaster),
            (unix.as_fd(), Origin::Systemd),
        ],
        pidlock: Some(lock.as_fd()),
        control: None,
    };
    let script = format!(
        "{READY_FD}echo \"$ZMASTER_UPGRADE_FDS\" > {out}; ls /proc/$$/fd >> {out}; echo \"ready $$\" > /proc/self/fd/$fd; exec sleep 30",
        out = out.display()
    );
    let mut up = NewMaster::start(
        &launch(&script, Duration::from_secs(10)),
        &fds,
        Instant::now(),
    )
    .expect("start");
    assert_eq!(decide(&mut up), Progress::Ready(up.pid()));
    assert!(up.elapsed(Instant::now()) > Duration::ZERO);
    let text = std::fs::read_to_string(&out).expect("the script's report");
    let (value, open) = text.split_once('\n').expect("two parts");
    let handover = Handover::parse(value).expect("a valid variable");
    assert_eq!(handover.ppid, std::process::id());
    assert_eq!((handover.bound.len(), handover.systemd.len()), (1, 1));
    let open: Vec<RawFd> = open.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let named = [
        handover.bound[0],
        handover.systemd[0],
        handover.pidlock.expect("pidlock"),
    ];
    assert!(
        named.iter().all(|fd| open.contains(fd)),
        "{named:?} not all in {open:?}"
    );
    // Which other fds cross is not checked here: the test process holds whatever its runner
    // left open to it. upgrade_repeat.rs checks that every new master holds the same fds.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", up.pid())).expect("alive");
    let pgrp = stat
        .rsplit_once(") ")
        .and_then(|(_, r)| r.split(' ').nth(2))
        .expect("pgrp");
    assert_eq!(pgrp, up.pid().to_string(), "its own process group");
    // The copies handed over are closed here again: the test process holds only its own.
    let ours = std::fs::read_dir("/proc/self/fd").expect("fds").count();
    let why = up.abort("test done");
    assert!(why.starts_with("test done (killed by SIGKILL"), "{why}");
    assert!(gone(up.pid()));
    assert!(std::fs::read_dir("/proc/self/fd").expect("fds").count() <= ours);
}

#[test]
fn a_new_master_that_exits_is_rolled_back_with_its_exit_status() {
    let _serial = serial();
    let mut up = NewMaster::start(
        &launch("exit 1", Duration::from_secs(10)),
        &no_fds(),
        Instant::now(),
    )
    .expect("start");
    let Progress::Failed(why) = decide(&mut up) else {
        panic!("not a failure");
    };
    assert!(
        why.contains(&format!("new master (pid {})", up.pid())),
        "{why}"
    );
    assert!(
        why.ends_with("exited before it was ready: exit status 1"),
        "{why}"
    );
}

#[test]
fn an_exit_seen_by_the_reaper_first_is_the_reason() {
    let _serial = serial();
    let mut up = NewMaster::start(
        &launch("exec sleep 30", Duration::from_secs(10)),
        &no_fds(),
        Instant::now(),
    )
    .expect("start");
    let other = ExitReason::Exited(2);
    assert!(
        !up.child_exited(up.pid() as i32 + 1, &other),
        "another child"
    );
    assert_eq!(up.poll(Instant::now()), Progress::Waiting);
    assert!(up.child_exited(up.pid() as i32, &ExitReason::Exited(4)));
    let Progress::Failed(why) = up.poll(Instant::now()) else {
        panic!("not a failure");
    };
    assert!(
        why.ends_with("exited before it was ready: exit status 4"),
        "{why}"
    );
    let _ = reap(up.pid, Instant::now() + REAP_WAIT);
}

#[test]
fn a_new_master_not_ready_in_time_is_killed_with_its_group() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bg");
    let script = format!("sleep 30 & echo $! > {}; wait", out.display());
    let mut up = NewMaster::start(
        &launch(&script, Duration::from_millis(300)),
        &no_fds(),
        Instant::now(),
    )
    .expect("start");
    let Progress::Failed(why) = decide(&mut up) else {
        panic!("not a failure");
    };
    assert!(
        why.contains("was not ready within 300ms (-master-upgrade-timeout)"),
        "{why}"
    );
    assert!(why.ends_with("(killed by SIGKILL)"), "{why}");
    let bg: u32 = std::fs::read_to_string(&out)
        .expect("bg pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(gone(up.pid()), "reaped before the failure is reported");
    // SIGKILL is delivered asynchronously to the rest of the group: wait for it to land.
    let until = Instant::now() + Duration::from_secs(10);
    while !gone(bg) {
        assert!(
            Instant::now() < until,
            "the group is killed, the wrapper's child too"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_wrong_readiness_line_and_a_missing_program_fail() {
    let _serial = serial();
    let script = format!("{READY_FD}echo hello > /proc/self/fd/$fd; exec sleep 30");
    let mut up = NewMaster::start(
        &launch(&script, Duration::from_secs(10)),
        &no_fds(),
        Instant::now(),
    )
    .expect("start");
    let Progress::Failed(why) = decide(&mut up) else {
        panic!("not a failure");
    };
    assert!(
        why.contains("sent \"hello\" instead of \"ready PID\""),
        "{why}"
    );
    // A line up to 256 bytes is read whole; more without a newline is refused.
    for (len, want) in [(200, "instead of \"ready PID\""), (300, "sent too much")] {
        let script = format!("{READY_FD}printf '%0{len}d\\n' 0 > /proc/self/fd/$fd; exec sleep 30");
        let mut up = NewMaster::start(
            &launch(&script, Duration::from_secs(10)),
            &no_fds(),
            Instant::now(),
        )
        .expect("start");
        let Progress::Failed(why) = decide(&mut up) else {
            panic!("not a failure");
        };
        assert!(why.contains(want), "{len}: {why}");
    }
    let missing = Launch {
        program: PathBuf::from("/nonexistent/zmaster"),
        ..launch("", Duration::from_secs(1))
    };
    let e = NewMaster::start(&missing, &no_fds(), Instant::now()).expect_err("no such program");
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

#[test]
fn the_program_is_argv0_made_absolute_or_found_in_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let exe = bin.join("zm");
    std::fs::write(&exe, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(bin.join("plain"), "").expect("write");
    let cwd = Path::new("/srv/run");
    let abs = |s: &str| program_path(OsStr::new(s), Some(cwd), None);
    assert_eq!(
        abs("/usr/sbin/zmaster"),
        Some(PathBuf::from("/usr/sbin/zmaster"))
    );
    assert_eq!(
        abs("target/release/zmaster"),
        Some(cwd.join("target/release/zmaster"))
    );
    assert_eq!(
        abs("./zmaster"),
        Some(cwd.join("zmaster")),
        "no `.` component"
    );
    assert_eq!(program_path(OsStr::new("./x"), None, None), None, "no cwd");
    let path = std::env::join_paths([Path::new("/nonexistent"), &bin]).expect("PATH");
    let found = |s: &str| program_path(OsStr::new(s), Some(cwd), Some(&path));
    assert_eq!(found("zm"), Some(exe));
    assert_eq!(found("plain"), None, "not executable");
    assert_eq!(found("nothing"), None);
    assert_eq!(found(""), None);
    assert_eq!(
        program_path(OsStr::new("zm"), Some(cwd), None),
        None,
        "no PATH"
    );
    let relative = std::env::join_paths([Path::new("bin")]).expect("PATH");
    assert_eq!(
        program_path(OsStr::new("zm"), Some(dir.path()), Some(&relative)),
        Some(dir.path().join("bin/zm")),
        "a relative PATH entry is taken from the working dir"
    );
}
