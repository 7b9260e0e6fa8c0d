//! Restart policy: crash-loop backoff, rounds of starts, reset, reload, give-up, detach throttle.
//!
//! Pure logic on the instants the caller passes (`now`, a child's start): no processes, no
//! clock, so the tests below drive it with made-up times.

use std::time::{Duration, Instant};

use super::children::ExitReason;

/// The first delay after a young death.
pub(crate) const START: Duration = Duration::from_millis(100);
/// The longest delay.
pub(crate) const CAP: Duration = Duration::from_secs(30);
/// A child that lived this long was healthy: the delay resets.
pub(crate) const HEALTHY: Duration = Duration::from_secs(1);

/// Exponential backoff per service: 100 ms doubling to 30 s, reset by a child that lived 1 s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    delay: Duration,
}

impl Backoff {
    /// Records a child's death after it lived `lived`; returns the delay before the next start.
    pub fn on_exit(&mut self, lived: Duration) -> Duration {
        self.delay = if lived >= HEALTHY {
            Duration::ZERO
        } else if self.delay.is_zero() {
            START
        } else {
            (self.delay * 2).min(CAP)
        };
        self.delay
    }

    /// The current delay (zero when healthy).
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

/// How the last counted child of a service ended (a status report's `last_exit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastExit {
    pub(crate) pid: i32,
    pub(crate) reason: ExitReason,
    pub(crate) lived: Duration,
    /// When it was reaped.
    pub(crate) at: Instant,
}

impl LastExit {
    /// How long ago it was reaped.
    pub(crate) fn ago(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.at)
    }
}

/// Whether a service starts missing children at once (`Running`), waits out its backoff, or
/// gave up (`server-give-up-after` young deaths in a row) until a reload or a scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    Backoff,
    Failed,
}

/// One service's restart policy: when it may next start a child, and what it counted so far.
#[derive(Debug, Clone)]
pub(crate) struct RestartPolicy {
    backoff: Backoff,
    next_start: Instant,
    /// When the backoff was last raised: children started before it belong to a round that
    /// already counted, so a burst of N young deaths raises the delay once, not N times.
    last_bump: Option<Instant>,
    /// Children of this service that exited or detached and so were replaced.
    restarts: u64,
    last_exit: Option<LastExit>,
    /// `server-give-up-after`: this many young deaths in a row make the service `failed`
    /// (0 = never).
    give_up_after: u32,
    /// Young deaths (and failed spawns) since the last healthy child.
    young_in_row: u32,
    failed: bool,
}

impl RestartPolicy {
    /// A new service: starts at once, no backoff; it gives up after `give_up_after` young
    /// deaths in a row (0 = never).
    pub(crate) fn new(now: Instant, give_up_after: u32) -> RestartPolicy {
        RestartPolicy {
            backoff: Backoff::default(),
            next_start: now,
            last_bump: None,
            restarts: 0,
            last_exit: None,
            give_up_after,
            young_in_row: 0,
            failed: false,
        }
    }

    /// The same service after a reload: its new generation starts at once (SPEC §4), but it
    /// keeps its backoff level: if the new children die young too, the delay goes on doubling
    /// from where it was instead of starting again at 100 ms (a HUP from logrotate must not
    /// reset a crash loop). The counters carry over too. A service that gave up starts again
    /// with `give_up_after` (its new value) fresh tries.
    pub(crate) fn reloaded(self, now: Instant, give_up_after: u32) -> RestartPolicy {
        RestartPolicy {
            backoff: self.backoff,
            restarts: self.restarts,
            last_exit: self.last_exit,
            ..RestartPolicy::new(now, give_up_after)
        }
    }

    /// An operator scaled the service: if it had given up, it starts again at once with fresh
    /// tries; otherwise nothing changes.
    pub(crate) fn revive(&mut self, now: Instant) {
        if self.failed {
            self.failed = false;
            self.young_in_row = 0;
            self.next_start = now;
        }
    }

    /// When the next child may start.
    pub(crate) fn next_start(&self) -> Instant {
        self.next_start
    }

    /// True if missing children may start at `now`.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        !self.failed && self.next_start <= now
    }

    /// Running, waiting out a backoff, or given up, at `now`.
    pub(crate) fn phase(&self, now: Instant) -> Phase {
        if self.failed {
            Phase::Failed
        } else if self.is_due(now) {
            Phase::Running
        } else {
            Phase::Backoff
        }
    }

    /// The current backoff level (zero when healthy).
    pub(crate) fn backoff(&self) -> Duration {
        self.backoff.delay()
    }

    /// The error line for a service that just gave up, or `None` if it did not give up.
    pub(crate) fn give_up_line(&self, service: &str) -> Option<String> {
        self.failed.then(|| {
            format!(
                "service={service} failed: {} young deaths in a row (server-give-up-after); \
                 no more starts until a reload or a scale",
                self.young_in_row
            )
        })
    }

    /// How many children were replaced after exiting or detaching.
    pub(crate) fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The last counted exit, if any.
    pub(crate) fn last_exit(&self) -> Option<&LastExit> {
        self.last_exit.as_ref()
    }

    /// A serving child `pid`, started at `started`, was reaped at `now` with `reason`; returns
    /// the delay before its replacement starts. A young death is an abnormal exit within 1 s
    /// or a clean one within 100 ms.
    pub(crate) fn exited(
        &mut self,
        pid: i32,
        reason: ExitReason,
        started: Instant,
        now: Instant,
    ) -> Duration {
        let lived = now.saturating_duration_since(started);
        self.last_exit = Some(LastExit {
            pid,
            reason,
            lived,
            at: now,
        });
        // Clean exits that lived a little are normal for servers that exit after N requests
        // (Postfix's max_use): only one within 100 ms is young.
        let young = lived < if reason.is_clean() { START } else { HEALTHY };
        self.child_gone(started, young, now)
    }

    /// A serving child started at `started` detached at `now`; returns the delay before its
    /// replacement starts. A detach within 1 s is a young death: a server that closes fd 4 at
    /// start-up (a wrapper script, `closefrom(3)`) must not make the master fork without limit.
    pub(crate) fn detached(&mut self, started: Instant, now: Instant) -> Duration {
        let young = now.saturating_duration_since(started) < HEALTHY;
        self.child_gone(started, young, now)
    }

    /// A child could not be started at `now`: back off as after a death at birth; the delay.
    pub(crate) fn spawn_failed(&mut self, now: Instant) -> Duration {
        let delay = self.backoff.on_exit(Duration::ZERO);
        self.next_start = now + delay;
        self.count_young();
        delay
    }

    /// One more young death in a row: give up when there were `give_up_after` of them.
    fn count_young(&mut self) {
        self.young_in_row = self.young_in_row.saturating_add(1);
        if self.give_up_after > 0 && self.young_in_row >= self.give_up_after {
            self.failed = true;
        }
    }

    /// A child stopped counting (it exited or detached); returns the delay before the next
    /// start. A young death raises the backoff once per round of starts; anything older
    /// resets it.
    fn child_gone(&mut self, started: Instant, young: bool, now: Instant) -> Duration {
        self.restarts += 1;
        if !young {
            self.backoff = Backoff::default();
            self.young_in_row = 0;
            return self.next_start.saturating_duration_since(now);
        }
        self.count_young();
        if self.last_bump.is_none_or(|bump| started >= bump) {
            let delay = self.backoff.on_exit(Duration::ZERO);
            self.last_bump = Some(now);
            self.next_start = self.next_start.max(now + delay);
        }
        self.next_start.saturating_duration_since(now)
    }
}

/// True when a service has so many detached processes that the operator should look: four per
/// `server-proc-count` (at least four).
pub(crate) fn too_many_detached(detached: usize, proc_count: usize) -> bool {
    detached >= 4 * proc_count.max(1)
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    use super::*;

    const KILLED: ExitReason = ExitReason::Killed {
        signal: Signal::SIGKILL,
        core: false,
    };
    const CLEAN: ExitReason = ExitReason::Exited(0);

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
        assert_eq!(p.detached(t0, t0 + HEALTHY - ms(1)), START);
        let started = t0 + ms(2000);
        assert_eq!(p.detached(started, started + HEALTHY), Duration::ZERO);
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
        let reason = ExitReason::Exited(3);
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
        p.detached(t0 + ms(200), t0 + ms(210));
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
}
