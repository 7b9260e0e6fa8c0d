//! Stopping: fast (SIGTERM every child, SIGKILL after the grace period) or graceful (softstop
//! every child, SIGTERM what is left after the grace period, SIGKILL 5 s later).

use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use super::Supervisor;
use crate::human_duration;

/// How long a graceful stop waits after its SIGTERM before SIGKILL (SPEC §11).
const KILL_AFTER_TERM: Duration = Duration::from_secs(5);
/// How long stop waits for children after SIGKILL before it gives up on them.
const GIVE_UP_AFTER_KILL: Duration = Duration::from_secs(5);

/// The signal a stop sends next, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Term(Instant),
    Kill(Instant),
    GiveUp(Instant),
}

impl Supervisor {
    /// Closes every listener at once, then stops the children: `graceful` softstops them so
    /// open connections finish (SIGTERM after `-master-stop-timeout`, SIGKILL 5 s later);
    /// otherwise SIGTERM at once and SIGKILL after the timeout. A SIGTERM during a graceful
    /// stop makes it fast; a second one during a fast stop sends SIGKILL at once.
    pub(crate) fn stop(&mut self, graceful: bool) {
        self.abort_upgrade("the master is stopping");
        let count = self.children.len();
        self.stopping = true;
        let how = if graceful {
            "graceful stop"
        } else {
            "stopping"
        };
        self.notifier.stopping(&format!("{how}: {count} processes"));
        // New connections are refused from here on: no child accepts one and drops it.
        std::mem::take(&mut self.listeners).close();
        let grace = self.settings.stop_grace;
        let start = Instant::now();
        let mut next = if graceful {
            log::info!(
                "graceful stop: {count} children finish their connections (SIGTERM after {})",
                human_duration(grace)
            );
            self.generation.softstop();
            Next::Term(start + grace)
        } else {
            log::info!("stopping: {count} children");
            self.children.signal_all(Signal::SIGTERM);
            Next::Kill(start + grace)
        };
        loop {
            self.reap();
            if self.children.is_empty() {
                break;
            }
            // A frozen child never drains: its heartbeat still gets it killed (and reaped in
            // the next turn), so a graceful stop need not wait for the stop timeout.
            self.check_heartbeats();
            let now = Instant::now();
            self.notifier.ping_if_due(now);
            let pending = self.signals.take();
            if pending.stop {
                next = match next {
                    Next::Term(_) => Next::Term(now),
                    Next::Kill(_) => Next::Kill(now),
                    give_up => give_up,
                };
            }
            match next {
                Next::Term(t) if now >= t => {
                    let why = if pending.stop {
                        "SIGTERM".to_owned()
                    } else {
                        human_duration(grace)
                    };
                    log::warn!(
                        "{} children still running after {why}; sending SIGTERM: pids {:?}",
                        self.children.len(),
                        self.children.pids()
                    );
                    self.children.signal_all(Signal::SIGTERM);
                    next = Next::Kill(now + KILL_AFTER_TERM);
                }
                Next::Kill(t) if now >= t => {
                    let why = if pending.stop {
                        "a second stop signal".to_owned()
                    } else {
                        human_duration(now.saturating_duration_since(start))
                    };
                    log::warn!(
                        "{} children still running after {why}; sending SIGKILL: pids {:?}",
                        self.children.len(),
                        self.children.pids()
                    );
                    self.children.signal_all(Signal::SIGKILL);
                    next = Next::GiveUp(now + GIVE_UP_AFTER_KILL);
                }
                Next::GiveUp(t) if now >= t => {
                    log::error!(
                        "children {:?} did not exit after SIGKILL (uninterruptible sleep?); giving up on them",
                        self.children.pids()
                    );
                    break;
                }
                _ => {}
            }
            let (Next::Term(t) | Next::Kill(t) | Next::GiveUp(t)) = next;
            let mut wait = t
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            if let Some(ping) = self.notifier.next_ping(now) {
                wait = wait.min(ping.saturating_duration_since(now));
            }
            if let Some(check) = self.next_heartbeat_check(now) {
                wait = wait.min(check.saturating_duration_since(now));
            }
            let mut fds = [PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(wait.as_millis().max(1) as u16));
        }
        log::info!("stopped");
    }
}
