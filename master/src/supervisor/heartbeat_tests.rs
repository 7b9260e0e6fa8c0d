//! Unit tests of `heartbeat.rs`: the memfd layout, staleness, retire reasons, exit lines.

use std::os::fd::AsRawFd;

use nix::sys::uio::pwrite;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn beat(h: &Heartbeat, ns: u64) {
    assert_eq!(pwrite(h.fd(), &ns.to_ne_bytes(), 0), Ok(8));
}

#[test]
fn a_beat_is_stale_only_once_written_and_older_than_the_timeout() {
    let timeout = ms(1000);
    assert_eq!(
        hung_for(0, u64::MAX, timeout),
        None,
        "never beat: not watched"
    );
    let t = 5_000_000_000;
    assert_eq!(
        hung_for(t, t + 1_000_000_000, timeout),
        None,
        "exactly the timeout"
    );
    assert_eq!(
        hung_for(t, t + 1_000_000_001, timeout),
        Some(ms(1000) + Duration::from_nanos(1))
    );
    assert_eq!(
        hung_for(t, t - 1, timeout),
        None,
        "a beat from the future is fresh"
    );
    assert_eq!(hung_for(1, 1, Duration::ZERO), None);
}

#[test]
fn the_memfd_holds_the_beat_and_the_reason() {
    let h = Heartbeat::create(ms(800)).unwrap();
    assert_eq!(
        (h.last_beat(), h.retired(), h.timeout()),
        (0, None, Some(ms(800)))
    );
    let now = sys::monotonic_ns();
    assert_eq!(h.stale(now), None, "no beat yet");
    beat(&h, now - 2_000_000_000);
    assert_eq!(h.last_beat(), now - 2_000_000_000);
    assert_eq!(h.stale(now), Some(ms(2000)));
    beat(&h, now - 500_000_000);
    assert_eq!(h.stale(now), None);
    for (code, reason) in [
        (1, Retire::MaxUse),
        (2, Retire::Idle),
        (3, Retire::Memory),
        (4, Retire::Hang),
    ] {
        assert_eq!(pwrite(h.fd(), &[code], 8), Ok(1));
        assert_eq!(h.retired(), Some(reason));
    }
    assert_eq!(pwrite(h.fd(), &[9], 8), Ok(1));
    assert_eq!(h.retired(), None, "an unknown code is no reason");
    // The fd is the master's own: it reaches a child only through the staging dup2.
    let flags = nix::fcntl::fcntl(h.fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
    assert_ne!(flags & libc::FD_CLOEXEC, 0);
    let link = std::fs::read_link(format!("/proc/self/fd/{}", h.fd().as_raw_fd())).unwrap();
    assert!(
        link.to_string_lossy()
            .starts_with("/memfd:zmaster-heartbeat"),
        "{link:?}"
    );
}

#[test]
fn an_unwatched_heartbeat_is_never_stale() {
    let mut h = Heartbeat::create(Duration::ZERO).unwrap();
    beat(&h, 1);
    assert_eq!((h.timeout(), h.stale(u64::MAX)), (None, None));
    let mut w = Heartbeat::create(ms(100)).unwrap();
    beat(&w, 1);
    assert!(w.stale(u64::MAX).is_some());
    w.unwatch();
    assert_eq!(w.stale(u64::MAX), None);
    h.unwatch();
    assert_eq!(h.timeout(), None);
}

#[test]
fn checks_run_at_a_quarter_of_the_timeout_but_not_under_50ms() {
    assert_eq!(check_interval(ms(1000)), ms(250));
    assert_eq!(check_interval(ms(200)), ms(50));
    assert_eq!(check_interval(ms(100)), ms(50));
    assert_eq!(check_interval(ms(201)), Duration::from_micros(50_250));
    assert_eq!(check_interval(ms(1600)), ms(400));
    assert_eq!(check_interval(ms(1604)), ms(400), "at most 400 ms");
    assert_eq!(check_interval(ms(60_000)), ms(400));
}

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

#[test]
fn a_stale_beat_kills_only_when_confirmed_an_interval_later() {
    // Timeout 1 s: checks every 250 ms.
    let mut h = Heartbeat::create(ms(1000)).unwrap();
    let t = 100 * S;
    beat(&h, t);
    assert_eq!(h.next_check_in(t), Some(ms(250)));
    assert_eq!(h.check(t + 900 * MS), None, "fresh");
    assert_eq!(h.check(t + 1100 * MS), None, "stale once: not yet");
    assert_eq!(h.next_check_in(t + 1100 * MS), Some(ms(250)));
    assert_eq!(
        h.next_check_in(t + 1200 * MS),
        Some(ms(150)),
        "the rest of it"
    );
    assert_eq!(h.next_check_in(t + 1400 * MS), Some(Duration::ZERO));
    assert_eq!(
        h.check(t + 1349 * MS),
        None,
        "stale again, under an interval after"
    );
    assert_eq!(
        h.check(t + 1350 * MS),
        Some(ms(1350)),
        "an interval after: killed"
    );
    // A beat in between clears the first sighting.
    let mut h = Heartbeat::create(ms(1000)).unwrap();
    beat(&h, t);
    assert_eq!(h.check(t + 1100 * MS), None);
    beat(&h, t + 1200 * MS);
    assert_eq!(h.check(t + 1300 * MS), None, "fresh again");
    assert_eq!(h.next_check_in(t + 1300 * MS), Some(ms(250)));
    for at in [1550, 1800, 2050] {
        assert_eq!(h.check(t + at * MS), None, "fresh at {at}");
    }
    assert_eq!(h.check(t + 2250 * MS), None, "stale: a new first sighting");
    assert_eq!(h.check(t + 2450 * MS), None);
    assert_eq!(h.check(t + 2500 * MS), Some(ms(1300)));
}

#[test]
fn a_check_long_after_the_last_one_only_rereads() {
    // The master and the child were frozen together for 2.5 s.
    let mut h = Heartbeat::create(ms(1000)).unwrap();
    let t = 100 * S;
    beat(&h, t);
    assert_eq!(h.check(t + 100 * MS), None);
    assert_eq!(
        h.check(t + 2600 * MS),
        None,
        "late: the master was not running"
    );
    assert_eq!(h.check(t + 2850 * MS), None, "the first sighting on time");
    assert_eq!(
        h.check(t + 3100 * MS),
        Some(ms(3100)),
        "still stale: hung after all"
    );
    // Exactly two intervals after the last check is not late yet.
    let mut h = Heartbeat::create(ms(1000)).unwrap();
    beat(&h, t);
    assert_eq!(h.check(t + 1000 * MS), None);
    assert_eq!(
        h.check(t + 1500 * MS),
        None,
        "two intervals: on time, a first sighting"
    );
    assert_eq!(h.check(t + 2001 * MS), None, "late again: only re-read");
    assert_eq!(h.check(t + 2251 * MS), None);
    assert_eq!(h.check(t + 2501 * MS), Some(ms(2501)));
    // The first check of all is never late.
    let mut h = Heartbeat::create(ms(1000)).unwrap();
    beat(&h, t);
    assert_eq!(h.check(t + 5 * S), None, "a first sighting");
    assert_eq!(h.check(t + 5 * S + 250 * MS), Some(ms(5250)));
    let mut never = Heartbeat::create(ms(1000)).unwrap();
    assert_eq!(
        (never.check(t), never.check(t + 300 * MS)),
        (None, None),
        "never beat"
    );
    never.unwatch();
    assert_eq!(never.next_check_in(t), None);
}

#[test]
fn only_a_service_with_a_limit_gets_a_memfd() {
    let none = ServerLimits::default();
    assert!(for_child("web", &none).is_none());
    let retires = ServerLimits {
        retires: true,
        ..ServerLimits::default()
    };
    let h = for_child("web", &retires).expect("a memfd for the retire reason");
    assert_eq!(h.timeout(), None, "not watched without a hang timeout");
    let hang = ServerLimits {
        hang_timeout: ms(300),
        retires: false,
    };
    assert_eq!(
        for_child("web", &hang).and_then(|h| h.timeout()),
        Some(ms(300))
    );
}

#[test]
fn exits_print_why() {
    let status = ExitReason::Exited(0);
    assert_eq!(Exit::plain(status).to_string(), "exit status 0");
    let retired = Exit {
        retired: Some(Retire::MaxUse),
        ..Exit::plain(status)
    };
    assert_eq!(retired.to_string(), "retired (max-use), exit status 0");
    for (reason, word) in [
        (Retire::Idle, "idle"),
        (Retire::Memory, "memory"),
        (Retire::Hang, "hang"),
    ] {
        assert_eq!(reason.to_string(), word);
    }
    let killed = ExitReason::Killed {
        signal: Signal::SIGKILL,
        core: false,
    };
    let hung = Exit {
        hang: Some(ms(2100)),
        ..Exit::plain(killed)
    };
    assert_eq!(
        hung.to_string(),
        "killed by SIGKILL (hang: no heartbeat for 2.1s)"
    );
}
