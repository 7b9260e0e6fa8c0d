//! A status snapshot of the running master (SPEC §11's `status` fields), as plain structs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Supervisor;
use super::children::ChildState;
use super::heartbeat::Exit;
use super::policy::Phase;
use crate::control;

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
    /// While in backoff, the time left before the next start; else zero.
    pub(crate) backoff: Duration,
    pub(crate) last_exit: Option<LastExitStatus>,
    pub(crate) children: Vec<ChildStatus>,
}

/// How the service's last counted child ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LastExitStatus {
    pub(crate) pid: i32,
    /// Its exit status and, when known, why (retired for a limit, killed as hung).
    pub(crate) reason: Exit,
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
                backoff: match s.policy.phase(now) {
                    Phase::Backoff => s.policy.next_start().saturating_duration_since(now),
                    _ => Duration::ZERO,
                },
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
            .collect::<Vec<_>>();
        let mut services = services;
        services.sort_by(|a, b| a.name.cmp(&b.name));
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

impl Status {
    /// The control protocol's document (SPEC §11's JSON).
    pub(crate) fn to_control(&self) -> control::Status {
        let secs = |d: Duration| d.as_secs_f64();
        let pid = |p: i32| u32::try_from(p).unwrap_or(0);
        control::Status {
            master: control::MasterStatus {
                pid: self.master.pid,
                uptime_s: secs(self.master.uptime),
                generation: self.master.generation,
                config_dir: self.master.config_dir.display().to_string(),
            },
            services: self
                .services
                .iter()
                .map(|s| control::ServiceStatus {
                    name: s.name.clone(),
                    state: match s.state {
                        Phase::Running => control::ServiceState::Running,
                        Phase::Backoff => control::ServiceState::Backoff,
                        Phase::Failed => control::ServiceState::Failed,
                    },
                    proc_count: u32::try_from(s.proc_count).unwrap_or(u32::MAX),
                    restarts: s.restarts,
                    backoff_ms: u64::try_from(s.backoff.as_millis()).unwrap_or(u64::MAX),
                    last_exit: s.last_exit.as_ref().map(|e| control::LastExit {
                        pid: pid(e.pid),
                        reason: e.reason.to_string(),
                        lived_s: secs(e.lived),
                        ago_s: secs(e.ago),
                    }),
                    children: s
                        .children
                        .iter()
                        .map(|c| control::ChildStatus {
                            pid: pid(c.pid),
                            generation: c.generation,
                            uptime_s: secs(c.uptime),
                            state: match c.state {
                                ChildState::Serving => control::ChildState::Serving,
                                ChildState::Draining => control::ChildState::Draining,
                                ChildState::Detached => control::ChildState::Detached,
                            },
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}
