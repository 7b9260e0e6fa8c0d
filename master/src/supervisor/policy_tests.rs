//! Unit tests of `policy.rs`.

use nix::sys::signal::Signal;

use super::super::children::ExitReason;
use super::super::heartbeat::Retire;
use super::*;

const KILLED: Exit = Exit {
    status: ExitReason::Killed {
        signal: Signal::SIGKILL,
        core: false,
    },
    retired: None,
    hang: None,
};
const CLEAN: Exit = Exit {
    status: ExitReason::Exited(0),
    retired: None,
    hang: None,
};
/// A server that retired for `server-max-use` and exited cleanly after its drain.
const RETIRED: Exit = Exit {
    retired: Some(Retire::MaxUse),
    ..CLEAN
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn backoff_doubles_caps_and_resets() {
    let mut b = Backoff::default();
    let young = ms(10);
    assert_eq!(b.delay(), Duration::ZERO);
    let delays: Vec<u128> = (0..12)
        .map(|_| {
            let d = b.on_exit(young);
            assert_eq!(b.delay(), d, "delay() is what on_exit returned");
            d.as_millis()
        })
        .collect();
    assert_eq!(
        delays,
        [
            100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
        ]
    );
    assert_eq!(b.on_exit(HEALTHY), Duration::ZERO);
    assert_eq!(b.on_exit(young), START);
}

#[test]
fn starts_in_ten_seconds_of_a_crash_loop_are_few() {
    // A service that dies at once starts at 0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3 s: exactly 7
    // in 10 s. Fewer means it stopped restarting; more means the backoff is too weak.
    let mut b = Backoff::default();
    let (mut t, mut starts) = (Duration::ZERO, 0);
    // Bounded: a backoff stuck at zero must fail here, not spin.
    while t < Duration::from_secs(10) && starts < 100 {
        starts += 1;
        t += b.on_exit(Duration::ZERO);
    }
    assert_eq!(starts, 7);
    assert_eq!(b.delay(), ms(6400));
}

#[test]
fn a_young_abnormal_exit_backs_off_and_a_healthy_one_restarts_at_once() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    assert!(p.is_due(t0));
    assert_eq!(p.phase(t0), Phase::Running);
    // Just under 1 s is young.
    let died = t0 + HEALTHY - ms(1);
    assert_eq!(p.exited(7, KILLED, t0, died), START);
    assert_eq!(p.next_start(), died + START);
    assert!(!p.is_due(died + START - ms(1)));
    assert_eq!(p.phase(died + ms(50)), Phase::Backoff);
    assert!(p.is_due(died + START));
    assert_eq!(p.phase(died + START), Phase::Running);
    // A child that lived exactly 1 s was healthy: no delay, and the level resets.
    let (started, died) = (t0 + ms(2000), t0 + ms(3000));
    assert_eq!(p.exited(8, KILLED, started, died), Duration::ZERO);
    assert_eq!(p.exited(9, KILLED, died, died + ms(10)), START);
}

#[test]
fn a_clean_exit_is_young_only_under_100ms() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    // A server that exits cleanly after serving a while (max_use) restarts at once ...
    assert_eq!(p.exited(1, CLEAN, t0, t0 + START), Duration::ZERO);
    // ... one that exits cleanly at once is crash-looping.
    let started = t0 + ms(500);
    assert_eq!(p.exited(2, CLEAN, started, started + START - ms(1)), START);
    // A clean exit at 500 ms is not young, though an abnormal one would be: it resets.
    let started = t0 + ms(1000);
    assert_eq!(
        p.exited(3, CLEAN, started, started + ms(500)),
        Duration::ZERO
    );
    let started = t0 + ms(2000);
    assert_eq!(p.exited(4, KILLED, started, started + ms(500)), START);
}

#[test]
fn a_reset_keeps_a_pending_start_time() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    p.exited(1, KILLED, t0, t0 + ms(10)); // next start at 110 ms
    // A healthy child of the previous generation dies meanwhile: the level resets, but
    // the start already scheduled stays where it was.
    assert_eq!(p.exited(2, KILLED, t0 - ms(5000), t0 + ms(60)), ms(50));
    assert_eq!(p.next_start(), t0 + ms(110));
    assert_eq!(p.exited(3, KILLED, t0 + ms(110), t0 + ms(120)), START);
}

#[test]
fn a_round_of_young_deaths_raises_the_delay_once() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    // Three children started together die one after another: one bump, and the later
    // deaths report the time left until the scheduled start.
    assert_eq!(p.exited(1, KILLED, t0, t0 + ms(10)), ms(100));
    assert_eq!(p.exited(2, KILLED, t0, t0 + ms(20)), ms(90));
    assert_eq!(p.exited(3, KILLED, t0, t0 + ms(30)), ms(80));
    assert_eq!(p.next_start(), t0 + ms(110));
    // The next round, started after the bump (here exactly at it), counts again.
    assert_eq!(p.exited(4, KILLED, t0 + ms(10), t0 + ms(40)), ms(200));
    assert_eq!(p.next_start(), t0 + ms(240));
    // A child started just before that bump belongs to round 2: no new bump.
    assert_eq!(p.exited(5, KILLED, t0 + ms(39), t0 + ms(50)), ms(190));
    assert_eq!(p.restarts(), 5);
}

#[test]
fn a_bump_never_moves_the_next_start_earlier() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    // Spawning failed five times: the next try is 1.6 s away.
    for _ in 0..5 {
        p.spawn_failed(t0);
    }
    assert_eq!(p.next_start(), t0 + ms(1600));
    // A healthy child resets the level; a young one then bumps to 100 ms, which must not
    // pull the pending try forward.
    p.exited(1, KILLED, t0 - ms(5000), t0);
    assert_eq!(p.exited(2, KILLED, t0, t0 + ms(10)), ms(1590));
    assert_eq!(p.next_start(), t0 + ms(1600));
}

#[test]
fn a_failed_spawn_backs_off_from_now_and_is_no_restart() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    assert_eq!(p.spawn_failed(t0), START);
    assert_eq!(p.next_start(), t0 + START);
    assert_eq!(p.spawn_failed(t0 + ms(1000)), ms(200));
    assert_eq!(p.next_start(), t0 + ms(1200));
    assert_eq!((p.restarts(), p.last_exit()), (0, None));
}

#[test]
fn a_young_detach_counts_as_a_crash() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    assert_eq!(p.detached(t0, t0 + HEALTHY - ms(1), false), START);
    let started = t0 + ms(2000);
    assert_eq!(
        p.detached(started, started + HEALTHY, false),
        Duration::ZERO
    );
    assert_eq!(
        (p.restarts(), p.last_exit()),
        (2, None),
        "a detach is no exit"
    );
}

#[test]
fn reload_starts_at_once_keeps_the_level_and_starts_a_fresh_round() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    p.exited(1, KILLED, t0, t0 + ms(10));
    p.exited(2, KILLED, t0 + ms(200), t0 + ms(210)); // level 200 ms, next at 410 ms
    let hup = t0 + ms(300);
    let mut p = p.reloaded(hup, 0);
    assert!(p.is_due(hup), "the new generation starts at once");
    assert_eq!(p.restarts(), 2);
    assert_eq!(p.last_exit().map(|e| e.pid), Some(2));
    // The first young death after it bumps (doubling on from 200 ms), even for a child
    // started before the last bump.
    assert_eq!(p.exited(3, KILLED, t0 + ms(205), hup + ms(10)), ms(400));
}

#[test]
fn the_last_exit_is_recorded() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    let reason = Exit::plain(ExitReason::Exited(3));
    p.exited(42, reason, t0, t0 + ms(1500));
    let last = *p.last_exit().expect("recorded");
    let want = (42, reason, ms(1500), t0 + ms(1500));
    assert_eq!((last.pid, last.reason, last.lived, last.at), want);
    assert_eq!(last.ago(t0 + ms(4000)), ms(2500));
    assert_eq!(last.ago(t0), Duration::ZERO);
    assert_eq!(p.restarts(), 1);
}

#[test]
fn give_up_after_n_young_deaths_in_a_row_until_a_reload_or_a_scale() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 3);
    // Two young deaths, then a healthy one: the count starts again.
    p.exited(1, KILLED, t0, t0 + ms(10));
    p.detached(t0 + ms(200), t0 + ms(210), false);
    assert_eq!(p.give_up_line("web"), None);
    p.exited(3, KILLED, t0, t0 + ms(5000));
    p.exited(4, KILLED, t0 + ms(5000), t0 + ms(5010));
    p.exited(5, KILLED, t0 + ms(5200), t0 + ms(5210));
    assert_eq!(p.phase(t0 + ms(9000)), Phase::Running);
    // The third in a row (a failed spawn counts as a death at birth): failed, never due.
    p.spawn_failed(t0 + ms(5600));
    let late = t0 + ms(600_000);
    assert_eq!((p.phase(late), p.is_due(late)), (Phase::Failed, false));
    let line = p.give_up_line("web").expect("failed");
    assert!(
        line.starts_with("service=web failed: 3 young deaths"),
        "{line}"
    );
    // A scale revives it at once, with fresh tries.
    p.revive(late);
    assert!(p.is_due(late) && p.give_up_line("web").is_none());
    p.exited(6, KILLED, late, late + ms(1));
    p.exited(7, KILLED, late + ms(200), late + ms(201));
    assert_eq!(p.phase(late + ms(60_000)), Phase::Running);
    p.exited(8, KILLED, late + ms(60_000), late + ms(60_001));
    assert_eq!(p.phase(late + ms(60_001)), Phase::Failed);
    // A reload too, with the new limit; the backoff level and counters carry over.
    let level = p.backoff();
    let p = p.reloaded(late + ms(70_000), 0);
    assert_eq!(p.phase(late + ms(70_000)), Phase::Running);
    assert_eq!((p.backoff(), p.restarts()), (level, 8));
    // Revive does nothing to a service that did not give up.
    let mut q = RestartPolicy::new(t0, 0);
    q.exited(1, KILLED, t0, t0 + ms(10));
    q.revive(t0 + ms(20));
    assert_eq!(q.phase(t0 + ms(20)), Phase::Backoff);
}

#[test]
fn give_up_after_zero_never_gives_up() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    for i in 0..50 {
        p.spawn_failed(t0 + ms(i));
    }
    assert_ne!(p.phase(t0 + ms(3_600_000)), Phase::Failed);
    let mut p = RestartPolicy::new(t0, 1);
    p.exited(1, CLEAN, t0, t0 + ms(99));
    assert_eq!(p.phase(t0 + ms(99)), Phase::Failed);
}

#[test]
fn the_detach_throttle_warns_at_four_per_process() {
    assert!(!too_many_detached(7, 2));
    assert!(too_many_detached(8, 2));
    assert!(!too_many_detached(3, 0), "proc count 0 counts as 1");
    assert!(too_many_detached(4, 0));
    assert!(too_many_detached(4, 1));
}

#[test]
fn a_retirement_is_never_a_young_death() {
    let t0 = Instant::now();
    // give-up-after 1: a single young death would fail the service.
    let mut p = RestartPolicy::new(t0, 1);
    // max-use = 1 under load: a detach 1 ms after the start, and the next, and the next.
    for i in 0..5 {
        let started = t0 + ms(10 * i);
        assert_eq!(p.detached(started, started + ms(1), true), Duration::ZERO);
        assert_eq!(p.phase(started + ms(1)), Phase::Running);
    }
    // One that exits before the detach settled: reaped as a serving exit, 1 ms old.
    assert_eq!(p.exited(9, RETIRED, t0, t0 + ms(1)), Duration::ZERO);
    // A retired child's crash during its drain is not young either: it said why it went.
    let crashed = Exit {
        retired: Some(Retire::Hang),
        ..KILLED
    };
    assert_eq!(p.exited(10, crashed, t0, t0 + ms(2)), Duration::ZERO);
    assert_eq!(
        (p.phase(t0 + ms(2)), p.backoff()),
        (Phase::Running, Duration::ZERO)
    );
    assert_eq!(p.restarts(), 7);
    // And a retirement is neutral: it neither resets a crash loop's level nor its count,
    // whether it detached or exited, young or old.
    let mut q = RestartPolicy::new(t0, 2);
    assert_eq!(q.exited(1, KILLED, t0, t0 + ms(10)), START);
    assert_eq!(q.detached(t0 + ms(100), t0 + ms(120), true), Duration::ZERO);
    assert_eq!(q.backoff(), START, "the level stays");
    assert_eq!(
        q.exited(3, RETIRED, t0 - ms(9000), t0 + ms(130)),
        Duration::ZERO
    );
    assert_eq!(
        q.backoff(),
        START,
        "an old retirement is no healthy child either"
    );
    assert_eq!(q.exited(2, KILLED, t0 + ms(200), t0 + ms(210)), ms(200));
    assert_eq!(
        q.phase(t0 + ms(210)),
        Phase::Failed,
        "two young deaths in a row: the retirements between did not reset the count"
    );
    assert_eq!(q.restarts(), 4, "each was replaced");
}

#[test]
fn a_retire_loop_keeps_the_backoff_of_the_crashes_around_it() {
    // server-max-memory below the baseline: every child retires soon after its start, while
    // a crash now and then must still back off from where it was.
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    let mut t = t0;
    let mut delays = Vec::new();
    for _ in 0..4 {
        // The replacement starts when the backoff allows, and retires, three times over.
        t = t.max(p.next_start());
        for _ in 0..3 {
            assert_eq!(p.detached(t, t + ms(300), true), Duration::ZERO);
            t += ms(300);
        }
        // Then one crashes at once: a new round, backing off from the level before.
        delays.push(p.exited(1, KILLED, t, t + ms(10)).as_millis());
        t += ms(10);
    }
    assert_eq!(delays, [100, 200, 400, 800]);
    assert_eq!(p.backoff(), ms(800));
    // A child that lived and left without retiring still resets it.
    let later = t + ms(10_000);
    assert_eq!(p.exited(2, KILLED, t + ms(1000), later), Duration::ZERO);
    assert_eq!(p.backoff(), Duration::ZERO);
}

#[test]
fn a_recorded_exit_is_shown_but_not_counted() {
    let t0 = Instant::now();
    let mut p = RestartPolicy::new(t0, 0);
    p.exited(1, KILLED, t0, t0 + ms(10)); // level 100 ms, next start at 110 ms
    let lived = p.record_exit(2, RETIRED, t0 + ms(5), t0 + ms(50));
    assert_eq!(lived, ms(45));
    let last = *p.last_exit().expect("recorded");
    assert_eq!(
        (last.pid, last.reason, last.lived, last.at),
        (2, RETIRED, ms(45), t0 + ms(50))
    );
    assert_eq!(p.restarts(), 1, "its detach was the counted event");
    assert_eq!((p.backoff(), p.next_start()), (START, t0 + ms(110)));
}
