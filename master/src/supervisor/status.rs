//! A status snapshot of the running master (SPEC §11's `status` fields), as plain structs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Supervisor;
use super::children::{ChildState, ExitReason};
use super::policy::Phase;

/// The whole snapshot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Status {
    pub(crate) master: MasterStatus,
    pub(crate) services: Vec<ServiceStatus>,
}

/// The master itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MasterStatus {
    pub(crate) pid: u32,
    pub(crate) uptime: Duration,
    pub(crate) generation: u64,
    pub(crate) config_dir: PathBuf,
}

/// One service (a `.cf` file).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceStatus {
    pub(crate) name: String,
    /// Running, waiting out a backoff, or given up.
    pub(crate) state: Phase,
    /// The process count in force (scaled or as configured).
    pub(crate) proc_count: usize,
    pub(crate) restarts: u64,
    pub(crate) backoff: Duration,
    pub(crate) last_exit: Option<LastExitStatus>,
    pub(crate) children: Vec<ChildStatus>,
}

/// How the service's last counted child ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LastExitStatus {
    pub(crate) pid: i32,
    pub(crate) reason: ExitReason,
    pub(crate) lived: Duration,
    pub(crate) ago: Duration,
}

/// One live child.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChildStatus {
    pub(crate) pid: i32,
    pub(crate) generation: u64,
    pub(crate) uptime: Duration,
    pub(crate) state: ChildState,
}

impl Supervisor {
    /// The snapshot at `now`.
    pub(crate) fn status(&self, now: Instant) -> Status {
        let current = self.generation.number;
        let services = self
            .services
            .iter()
            .map(|s| ServiceStatus {
                name: s.spec.name.clone(),
                state: s.policy.phase(now),
                proc_count: s.proc_count,
                restarts: s.policy.restarts(),
                backoff: s.policy.backoff(),
                last_exit: s.policy.last_exit().map(|e| LastExitStatus {
                    pid: e.pid,
                    reason: e.reason,
                    lived: e.lived,
                    ago: e.ago(now),
                }),
                children: self
                    .children
                    .iter()
                    .filter(|(_, c)| c.service == s.spec.name)
                    .map(|(pid, c)| ChildStatus {
                        pid,
                        generation: c.generation,
                        uptime: c.uptime(now),
                        state: c.state(current),
                    })
                    .collect(),
            })
            .collect();
        Status {
            master: MasterStatus {
                pid: std::process::id(),
                uptime: now.saturating_duration_since(self.started_at),
                generation: current,
                config_dir: self.settings.config_dir.clone(),
            },
            services,
        }
    }

    /// One short line for systemd's `STATUS=` and the logs.
    pub(crate) fn status_line(&self, now: Instant) -> String {
        let status = self.status(now);
        let count = |p: Phase| status.services.iter().filter(|s| s.state == p).count();
        let children: usize = status.services.iter().map(|s| s.children.len()).sum();
        let mut line = format!(
            "generation {}: {} services, {children} processes",
            status.master.generation,
            status.services.len()
        );
        for (phase, word) in [(Phase::Backoff, "in backoff"), (Phase::Failed, "failed")] {
            if count(phase) > 0 {
                line.push_str(&format!(", {} {word}", count(phase)));
            }
        }
        line
    }
}
