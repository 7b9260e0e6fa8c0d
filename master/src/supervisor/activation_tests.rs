//! Socket activation and upgrade handover: matching passed sockets, the handover variable's
//! grammar, and adopted fds' flags.

use super::*;

#[test]
fn only_fds_for_our_pid_count() {
    assert_eq!(passed_count(Some("42"), Some("2"), 42), 2);
    assert_eq!(passed_count(Some(" 42\n"), Some("1"), 42), 1);
    assert_eq!(passed_count(Some("41"), Some("2"), 42), 0);
    assert_eq!(passed_count(None, Some("2"), 42), 0);
    assert_eq!(passed_count(Some("42"), None, 42), 0);
    assert_eq!(passed_count(Some("42"), Some("x"), 42), 0);
    assert_eq!(passed_count(Some("42"), Some("99999"), 42), 4096);
}

#[test]
fn a_relative_unix_path_matches_its_absolute_form() {
    let cwd = std::env::current_dir().expect("cwd");
    assert!(same_path(Path::new("run/s.sock"), &cwd.join("run/s.sock")));
    assert!(same_path(
        Path::new("/run/s.sock"),
        Path::new("/run/s.sock")
    ));
    assert!(!same_path(Path::new("run/s.sock"), &cwd.join("run/t.sock")));
}

#[test]
fn a_passed_socket_matches_its_address_and_type_only() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let p = Passed {
        fd: tcp.into(),
        name: Some("web".into()),
        origin: Origin::Systemd,
    };
    assert!(p.matches(&Address::Inet(addr)));
    let mut other = addr;
    other.set_port(addr.port().wrapping_add(1));
    assert!(!p.matches(&Address::Inet(other)));
    assert!(!p.matches(&Address::Unix("/tmp/x".into())));
    assert_eq!(p.describe().split_once(' ').map(|x| x.0), Some("fd"));
    assert!(p.describe().ends_with("\"web\""), "{}", p.describe());
    assert_eq!(p.from(), "systemd");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let uaddr = udp.local_addr().expect("addr");
    let p = Passed {
        fd: udp.into(),
        name: None,
        origin: Origin::Systemd,
    };
    assert!(
        !p.matches(&Address::Inet(uaddr)),
        "a datagram socket is no listener"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s");
    let unix = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let p = Passed {
        fd: unix.into(),
        name: None,
        origin: Origin::OldMaster,
    };
    assert!(p.matches(&Address::Unix(path.clone())));
    assert!(!p.matches(&Address::Unix(dir.path().join("t"))));
    assert!(!p.matches(&Address::Fifo(path)));
}

#[test]
fn an_adopted_fd_is_non_blocking_and_close_on_exec_whatever_it_was() {
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    let flags = |fd: &OwnedFd| {
        let fl = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).expect("getfl"));
        let fd_flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).expect("getfd"));
        (fl, fd_flags)
    };
    for nonblocking in [false, true] {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        tcp.set_nonblocking(nonblocking).expect("nonblocking");
        let fd = OwnedFd::from(tcp);
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::empty())).expect("inheritable");
        let (before, _) = flags(&fd);
        let fd = Passed::new(fd, Origin::OldMaster).into_fd();
        let (fl, fd_flags) = flags(&fd);
        assert!(
            fl.contains(OFlag::O_NONBLOCK),
            "was non-blocking: {nonblocking}"
        );
        assert_eq!(
            fl | OFlag::O_NONBLOCK,
            before | OFlag::O_NONBLOCK,
            "other flags kept"
        );
        assert!(fd_flags.contains(FdFlag::FD_CLOEXEC));
    }
}

#[test]
fn a_fifo_matches_by_its_inode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [f, g] = ["f", "g"].map(|n| dir.path().join(n));
    for p in [&f, &g] {
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    }
    let open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f)
        .expect("open");
    let p = Passed {
        fd: open.into(),
        name: None,
        origin: Origin::OldMaster,
    };
    assert!(p.matches(&Address::Fifo(f.clone())));
    assert!(!p.matches(&Address::Fifo(g)), "another FIFO");
    assert!(!p.matches(&Address::Unix(f)), "a FIFO is no unix socket");
    assert_eq!(p.from(), "the old master");
}

#[test]
fn the_handover_variable_round_trips() {
    let h = Handover {
        ppid: 41,
        ready: 9,
        pidlock: Some(7),
        control: Some(8),
        bound: vec![5, 6],
        systemd: vec![10],
    };
    let text = h.format();
    assert_eq!(
        text,
        "ppid=41;ready=9;pidlock=7;control=8;bound=5,6;systemd=10"
    );
    assert_eq!(Handover::parse(&text), Ok(h));
    let bare = Handover {
        ppid: 1,
        ready: 3,
        ..Handover::default()
    };
    assert_eq!(bare.format(), "ppid=1;ready=3");
    assert_eq!(Handover::parse(" ppid = 1 ; ready=3;;"), Ok(bare));
}

#[test]
fn a_bad_handover_variable_is_refused_with_a_reason() {
    let err = |text: &str| Handover::parse(text).expect_err(text);
    assert!(err("").contains("required"));
    assert!(err("ppid=1").contains("required"));
    assert!(err("ready=3").contains("required"));
    assert!(err("ppid=x;ready=3").contains("not a pid"));
    assert!(err("ppid=1;ready=2").contains("below 3"));
    assert!(err("ppid=1;ready=3;bound=4,3").contains("named twice"));
    assert!(err("ppid=1;ready=3;pidlock=3").contains("named twice"));
    assert!(err("ppid=1;ready=3;ready=4").contains("given twice"));
    assert!(err("ppid=1;ready=3;bound=5,x").contains("not an fd number"));
    assert!(err("ppid=1;ready=3;listen=5").contains("unknown key"));
    assert!(err("ppid=1;ready").contains("not key=value"));
    let many: Vec<String> = (3..3 + MAX_PASSED as i32)
        .map(|fd| fd.to_string())
        .collect();
    let text = format!("ppid=1;ready=99999;bound={}", many.join(","));
    assert!(err(&text).contains("more than 4096"));
    let text = format!("ppid=1;bound={}", many.join(","));
    assert_eq!(
        Handover::parse(&text).map(|h| h.bound.len()).ok(),
        None,
        "ready missing"
    );
}
