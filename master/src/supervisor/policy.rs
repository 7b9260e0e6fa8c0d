//! Restart policy: crash-loop backoff, rounds of starts, reset, reload, give-up, detach throttle.
//!
//! Pure logic on the instants the caller passes (`now`, a child's start): no processes, no
//! clock, so the tests below drive it with made-up times.

use std::time::{Duration, Instant};

use super::heartbeat::Exit;

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
    pub(crate) reason: Exit,
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
    #[cfg(test)]
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
    /// or a clean one within 100 ms; a child that said it retired (a SPEC §13 limit) is never
    /// young, however short it lived: `server-max-use = 1` under load is its normal life.
    pub(crate) fn exited(
        &mut self,
        pid: i32,
        reason: Exit,
        started: Instant,
        now: Instant,
    ) -> Duration {
        let lived = self.record_exit(pid, reason, started, now);
        // Clean exits that lived a little are normal for servers that exit after N requests
        // (Postfix's max_use): only one within 100 ms is young.
        let young_under = if reason.status.is_clean() {
            START
        } else {
            HEALTHY
        };
        let gone = match (reason.retired, lived < young_under) {
            (Some(_), _) => Gone::Retired,
            (None, true) => Gone::Young,
            (None, false) => Gone::Healthy,
        };
        self.child_gone(started, gone, now)
    }

    /// Records how a child started at `started` ended at `now` as the last exit, without
    /// counting it (a detached child that retired: its detach was counted); how long it lived.
    pub(crate) fn record_exit(
        &mut self,
        pid: i32,
        reason: Exit,
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
        lived
    }

    /// A serving child started at `started` detached at `now` (`retired`: it said a SPEC §13
    /// limit retired it); returns the delay before its replacement starts. A detach within
    /// 1 s is a young death: a server that closes fd 4 at start-up (a wrapper script,
    /// `closefrom(3)`) must not make the master fork without limit. A retirement never is.
    pub(crate) fn detached(&mut self, started: Instant, now: Instant, retired: bool) -> Duration {
        let gone = if retired {
            Gone::Retired
        } else if now.saturating_duration_since(started) < HEALTHY {
            Gone::Young
        } else {
            Gone::Healthy
        };
        self.child_gone(started, gone, now)
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
    /// start. A young death raises the backoff once per round of starts; a healthy child
    /// resets it; a retirement leaves both the level and the count as they were (a retire
    /// loop, say `server-max-memory` below the baseline, must not hide a crash loop).
    fn child_gone(&mut self, started: Instant, gone: Gone, now: Instant) -> Duration {
        self.restarts += 1;
        match gone {
            Gone::Retired => return self.next_start.saturating_duration_since(now),
            Gone::Healthy => {
                self.backoff = Backoff::default();
                self.young_in_row = 0;
                return self.next_start.saturating_duration_since(now);
            }
            Gone::Young => {}
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

/// How a counted child left, as the backoff sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    /// A young death: counted, and it raises the backoff.
    Young,
    /// It lived: the count and the backoff reset.
    Healthy,
    /// A SPEC §13 limit retired it: neutral, neither counted nor resetting.
    Retired,
}

/// True when a service has so many detached processes that the operator should look: four per
/// `server-proc-count` (at least four).
pub(crate) fn too_many_detached(detached: usize, proc_count: usize) -> bool {
    detached >= 4 * proc_count.max(1)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
