//! Unit tests of `children.rs`.

use super::*;

fn child(service: &str, generation: u64, started: Instant, detached: bool) -> Child {
    Child {
        service: service.to_owned(),
        generation,
        started,
        private: None,
        detach_check: None,
        detached,
        retiring: false,
        heartbeat: None,
        hung: None,
        board_slot: None,
    }
}

#[test]
fn exit_reasons_print_like_the_log_lines() {
    let show = |r: ExitReason| r.to_string();
    assert_eq!(show(ExitReason::Exited(0)), "exit status 0");
    assert_eq!(show(ExitReason::Exited(1)), "exit status 1");
    let killed = |signal, core| ExitReason::Killed { signal, core };
    assert_eq!(show(killed(Signal::SIGKILL, false)), "killed by SIGKILL");
    let segv = show(killed(Signal::SIGSEGV, true));
    assert_eq!(segv, "killed by SIGSEGV (core dumped)");
}

#[test]
fn only_an_end_is_an_exit_reason_and_only_exit_0_is_clean() {
    let (pid, from) = (Pid::from_raw(42), ExitReason::from_wait);
    let exited = ExitReason::Exited(3);
    assert_eq!(from(WaitStatus::Exited(pid, 3)), Some((pid, exited)));
    let (signal, core) = (Signal::SIGTERM, false);
    let killed = ExitReason::Killed { signal, core };
    assert_eq!(
        from(WaitStatus::Signaled(pid, signal, core)),
        Some((pid, killed))
    );
    assert_eq!(from(WaitStatus::Stopped(pid, Signal::SIGSTOP)), None);
    assert_eq!(from(WaitStatus::Continued(pid)), None);
    assert_eq!(from(WaitStatus::StillAlive), None);
    assert!(ExitReason::Exited(0).is_clean());
    assert!(!exited.is_clean() && !killed.is_clean());
}

#[test]
fn a_child_serves_drains_or_is_detached() {
    let (now, secs) = (Instant::now(), Duration::from_secs);
    let c = child("web", 2, now, false);
    assert_eq!(c.state(2), ChildState::Serving);
    assert_eq!(c.state(3), ChildState::Draining);
    let c = child("web", 2, now, true);
    assert_eq!(c.state(2), ChildState::Detached);
    assert_eq!(c.state(3), ChildState::Detached);
    assert_eq!(c.uptime(now + secs(2)), secs(2));
    assert_eq!(c.uptime(now - secs(1)), Duration::ZERO);
}

#[test]
fn the_table_counts_serving_and_detached_children_per_service() {
    let now = Instant::now();
    let mut t = Children::default();
    assert!(t.is_empty());
    t.insert(10, child("web", 1, now, false));
    t.insert(11, child("web", 2, now, false));
    t.insert(12, child("web", 2, now, false));
    t.insert(13, child("mail", 2, now, false));
    t.insert(14, child("web", 2, now, true));
    t.insert(15, child("web", 1, now, true));
    assert_eq!((t.len(), t.pids()), (6, vec![10, 11, 12, 13, 14, 15]));
    assert_eq!(t.serving("web", 2), 2);
    assert_eq!(t.serving("web", 1), 1);
    assert_eq!(t.serving("mail", 2), 1);
    assert_eq!(t.serving("nope", 2), 0);
    assert_eq!(t.detached("web"), 2);
    assert_eq!(t.detached("mail"), 0);
    assert_eq!(t.remove(13).map(|c| c.service), Some("mail".to_owned()));
    assert!(t.remove(13).is_none());
    assert!(t.get(13).is_none() && t.get(10).is_some() && !t.is_empty());
}

#[test]
fn a_retiring_child_drains_and_the_youngest_retire_first() {
    let (now, ms) = (Instant::now(), Duration::from_millis);
    let mut t = Children::default();
    t.insert(10, child("web", 1, now + ms(5), false));
    t.insert(11, child("web", 1, now + ms(9), false));
    t.insert(12, child("web", 1, now, false));
    t.insert(13, child("mail", 1, now + ms(20), false));
    t.insert(14, child("web", 0, now + ms(30), false));
    assert_eq!(t.serving_youngest_first("web", 1), [11, 10, 12]);
    t.get_mut(11).expect("11").retiring = true;
    assert_eq!(t.get(11).map(|c| c.state(1)), Some(ChildState::Draining));
    assert_eq!(t.serving_youngest_first("web", 1), [10, 12]);
    assert_eq!(t.serving("web", 1), 2);
}

#[test]
fn a_closed_pipe_is_checked_after_the_settle_time() {
    let (now, ms) = (Instant::now(), Duration::from_millis);
    let mut t = Children::default();
    for pid in [1, 2, 3] {
        let (_read, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
        t.insert(pid, Child::new("web", 1, write));
    }
    t.insert(4, child("web", 1, now, false)); // no pipe (detached, reloaded): not watched
    assert_eq!(t.watched(), [1, 2, 3]);
    assert_eq!(t.next_detach_check(), None);
    t.pipe_closed(2, now);
    t.pipe_closed(3, now + ms(10));
    t.pipe_closed(99, now); // reaped meanwhile: nothing to do
    assert_eq!(t.watched(), [1], "a pending check is not polled again");
    assert_eq!(t.next_detach_check(), Some(now + DETACH_SETTLE));
    assert!(t.detach_checks_due(now).is_empty());
    assert!(t.detach_checks_due(now + DETACH_SETTLE - ms(1)).is_empty());
    assert_eq!(t.detach_checks_due(now + DETACH_SETTLE), [2]);
    assert_eq!(t.detach_checks_due(now + ms(1000)), [2, 3]);
}

#[test]
fn a_child_exit_carries_its_retire_reason_and_hang() {
    let status = ExitReason::Exited(0);
    let mut c = child("web", 1, Instant::now(), false);
    assert_eq!(c.exit(status), heartbeat::Exit::plain(status));
    assert_eq!(c.retired(), None, "no memfd: no reason");
    let memfd = Heartbeat::create(Duration::ZERO).unwrap();
    nix::sys::uio::pwrite(memfd.fd(), &[1], 8).unwrap();
    c.heartbeat = Some(memfd);
    c.hung = Some(Duration::from_secs(3));
    let exit = c.exit(status);
    assert_eq!(exit.retired, Some(heartbeat::Retire::MaxUse));
    assert_eq!(exit.hang, Some(Duration::from_secs(3)));
    assert_eq!(exit.status, status);
}
