//! `zstress chaos --upgrade-rate`: SIGUSR2 to the current master, then follow its pid file to
//! the new master (completed) or see the upgrade rolled back, and time each step.
//!
//! An upgrade is judged from what chaos can see from outside: the pid file names another live
//! pid (completed: chaos signals that master from now on), or the new master — the old
//! master's child that leads a process group of its own (SPEC §14; servers share the master's
//! group) — is gone while the pid file still names the old master (rolled back), or nothing
//! changed within [`GIVE_UP`] (rolled back, by the master's `-master-upgrade-timeout`).

use std::fmt::Write as _;
use std::time::Duration;

use crate::report::Failure;

/// How long chaos waits for the pid file to change before it counts the upgrade as rolled
/// back: the master's default `-master-upgrade-timeout` (30 s) and some slack.
pub const GIVE_UP: Duration = Duration::from_secs(35);

/// What became of one SIGUSR2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not decided yet (or not by the end of the run).
    Pending,
    /// The pid file names the new master, this pid.
    Completed(i32),
    /// The old master still serves; why chaos thinks so.
    RolledBack(String),
}

/// One SIGUSR2 sent by chaos and what was observed after it.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// When, from the start of the run.
    pub at: Duration,
    /// The master signalled.
    pub old: i32,
    /// The new master seen as the old one's child, if it was seen.
    pub seen_new: Option<i32>,
    /// What it came to.
    pub outcome: Outcome,
    /// SIGUSR2 → the new pid in the pid file (completed), or → the rollback seen.
    pub took: Option<Duration>,
    /// SIGUSR2 → the old master gone (it drained and exited).
    pub old_gone: Option<Duration>,
}

impl Upgrade {
    /// A SIGUSR2 just sent to `old` at `at`.
    pub fn sent(at: Duration, old: i32) -> Upgrade {
        Upgrade {
            at,
            old,
            seen_new: None,
            outcome: Outcome::Pending,
            took: None,
            old_gone: None,
        }
    }

    /// Whether it is still undecided.
    pub fn pending(&self) -> bool {
        self.outcome == Outcome::Pending
    }

    /// Decide from one look: the pid in the pid file (and whether it is alive), whether the
    /// new master seen earlier is alive, and how long since the SIGUSR2. Returns the new
    /// master's pid when the upgrade just completed.
    pub fn judge(
        &mut self,
        in_file: Option<(i32, bool)>,
        seen_alive: bool,
        waited: Duration,
    ) -> Option<i32> {
        if !self.pending() {
            return None;
        }
        if let Some((pid, true)) = in_file
            && pid != self.old
        {
            self.outcome = Outcome::Completed(pid);
            self.took = Some(waited);
            return Some(pid);
        }
        let why = match self.seen_new {
            Some(n) if !seen_alive => format!("the new master (pid {n}) exited"),
            _ if waited >= GIVE_UP => format!("no new pid in the pid file after {GIVE_UP:?}"),
            _ => return None,
        };
        self.outcome = Outcome::RolledBack(why);
        self.took = Some(waited);
        None
    }

    /// The end of its window for failed requests: the old master gone, the rollback seen, or
    /// (`None`) the end of the run.
    fn window_end(&self) -> Option<Duration> {
        match self.outcome {
            Outcome::Completed(_) => self.old_gone.map(|g| self.at + g),
            Outcome::RolledBack(_) => self.took.map(|t| self.at + t),
            Outcome::Pending => None,
        }
    }

    /// The failed requests inside its window (SIGUSR2 → old master gone or rollback seen).
    pub fn failures_in(&self, failures: &[Failure]) -> usize {
        let end = self.window_end();
        failures
            .iter()
            .filter(|f| f.at >= self.at && end.is_none_or(|e| f.at <= e))
            .count()
    }

    /// Its timeline line.
    pub fn line(&self, failures: &[Failure]) -> String {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        let mut s = format!("SIGUSR2 master {}: ", self.old);
        match (&self.outcome, self.took) {
            (Outcome::Completed(p), Some(t)) => {
                let _ = write!(s, "new master {p} in the pid file after {}", ms(t));
                match self.old_gone {
                    Some(g) => {
                        let _ = write!(s, ", old master gone after {}", ms(g));
                    }
                    None => s.push_str(", old master still draining at the end"),
                }
            }
            (Outcome::RolledBack(why), Some(t)) => {
                let _ = write!(s, "ROLLED BACK after {}: {why}", ms(t));
            }
            _ => s.push_str("undecided at the end of the run"),
        }
        let _ = write!(
            s,
            "; {} failed requests meanwhile",
            self.failures_in(failures)
        );
        s
    }
}

/// Counts and times over every upgrade of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// SIGUSR2 sent.
    pub sent: usize,
    /// The pid file named a new master.
    pub completed: usize,
    /// Rolled back.
    pub rolled_back: usize,
    /// Undecided at the end.
    pub pending: usize,
    /// SIGUSR2 → new pid in the pid file, p50 and max (completed upgrades).
    pub new_pid: Option<(Duration, Duration)>,
    /// Failed requests inside some upgrade's window (each counted once).
    pub failures_during: usize,
    /// SIGUSR2 ticks not sent because the previous upgrade was still undecided.
    pub skipped: usize,
}

/// Summarise `ups` against the run's failed requests (`skipped`: ticks not sent).
pub fn summary(ups: &[Upgrade], failures: &[Failure], skipped: usize) -> Summary {
    let mut times: Vec<Duration> = ups
        .iter()
        .filter(|u| matches!(u.outcome, Outcome::Completed(_)))
        .filter_map(|u| u.took)
        .collect();
    times.sort_unstable();
    let in_some = |f: &Failure| {
        ups.iter()
            .any(|u| u.failures_in(std::slice::from_ref(f)) == 1)
    };
    Summary {
        sent: ups.len(),
        completed: times.len(),
        rolled_back: ups
            .iter()
            .filter(|u| matches!(u.outcome, Outcome::RolledBack(_)))
            .count(),
        pending: ups.iter().filter(|u| u.pending()).count(),
        new_pid: times
            .get(times.len() / 2)
            .zip(times.last())
            .map(|(a, b)| (*a, *b)),
        failures_during: failures.iter().filter(|f| in_some(f)).count(),
        skipped,
    }
}

impl Summary {
    /// The summary line of the text report.
    pub fn line(&self) -> String {
        let times = match self.new_pid {
            Some((p50, max)) => format!(
                "p50 {:.1} ms max {:.1} ms",
                p50.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            ),
            None => "-".into(),
        };
        format!(
            "upgrades {}  completed {}  rolled back {}  undecided {}  skipped {}  new pid {times}  \
             failed requests during upgrades {}",
            self.sent,
            self.completed,
            self.rolled_back,
            self.pending,
            self.skipped,
            self.failures_during
        )
    }

    /// The `upgrades` JSON object.
    pub fn json(&self) -> String {
        let times = match self.new_pid {
            Some((p50, max)) => format!(
                "{{\"count\":{},\"p50_ms\":{:.3},\"max_ms\":{:.3}}}",
                self.completed,
                p50.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            ),
            None => "{\"count\":0}".into(),
        };
        format!(
            "{{\"sent\":{},\"completed\":{},\"rolled_back\":{},\"undecided\":{},\"skipped\":{},\"new_pid\":{times},\"failures_during\":{}}}",
            self.sent,
            self.completed,
            self.rolled_back,
            self.pending,
            self.skipped,
            self.failures_during
        )
    }
}

#[cfg(test)]
#[path = "upgrades_tests.rs"]
mod tests;
