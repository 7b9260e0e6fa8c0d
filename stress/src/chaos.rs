//! `zstress chaos`: the load of [`crate::load`] while SIGKILLing a master's children and/or
//! sending the master SIGHUP or SIGUSR2 (binary upgrades, followed through the pid file: see
//! [`crate::upgrades`]), with the respawn, reload and upgrade times observed from `/proc`.
//!
//! Only the given master pid and the pids listed as its children in
//! `/proc/MASTER/task/*/children` are ever signalled; a child's parent is checked again in
//! `/proc/CHILD/stat` right before its SIGKILL. A new child pid observed after an event is
//! attributed to the oldest event still waiting: one new pid for a kill (the respawn time is
//! kill → replacement visible), and as many new pids as the master had children for a
//! reload (first new child, and the whole new generation).

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::load::{self, LoadConfig};
use crate::procs;
use crate::report::LoadReport;
use crate::upgrades::Upgrade;
use crate::{Error, Result};

/// Which master to torment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterRef {
    /// Read the pid from this file (the master's `-pid-file`).
    PidFile(PathBuf),
    /// This pid.
    Pid(i32),
}

/// The parameters of a chaos run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// The master.
    pub master: MasterRef,
    /// The load to run meanwhile (its duration is the chaos duration).
    pub load: LoadConfig,
    /// SIGKILLs of a random child per second (`--kill-rate`; 1/s if neither rate is given).
    pub kill_rate: f64,
    /// SIGHUPs to the master per second (`--hup-rate`).
    pub hup_rate: f64,
    /// SIGUSR2s (binary upgrades) per second (`--upgrade-rate`; needs [`MasterRef::PidFile`]).
    /// None is sent while the previous one is undecided.
    pub upgrade_rate: f64,
    /// Before each SIGKILL, SIGSTOP the victim and count its TCP connections on the load's
    /// port ([`ChaosEvent::victim_conns`]): the requests a kill may fail (TCP targets only).
    pub count_victim_conns: bool,
}

/// What chaos did to the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL sent to this child.
    Kill(i32),
    /// SIGHUP sent to the master, which had this many children then.
    Hup(usize),
    /// A signal could not be sent (the message says why).
    Failed(String),
}

/// One chaos action and what was observed after it.
#[derive(Debug, Clone)]
pub struct ChaosEvent {
    /// When, from the start of the run.
    pub at: Duration,
    /// What was done.
    pub action: Action,
    /// New child pids attributed to this event.
    pub new_pids: Vec<i32>,
    /// Time until the first new child appeared.
    pub first: Option<Duration>,
    /// Time until every expected new child appeared (a kill expects 1).
    pub complete: Option<Duration>,
    /// The victim's connections on the load's port, counted while it was stopped right
    /// before the kill (with [`ChaosConfig::count_victim_conns`]).
    pub victim_conns: Option<usize>,
    expect: usize,
}

/// The result of a chaos run.
#[derive(Debug)]
pub struct ChaosReport {
    /// The master pid at the start.
    pub master: i32,
    /// The master pid at the end (another one after completed upgrades).
    pub last_master: i32,
    /// Children at the start.
    pub initial_children: usize,
    /// Every action, in time order.
    pub events: Vec<ChaosEvent>,
    /// The load's own report (its `failures` list every failed request).
    pub load: LoadReport,
    /// The master exited during the run.
    pub master_gone: bool,
    /// Every SIGUSR2 sent, in time order.
    pub upgrades: Vec<Upgrade>,
    /// SIGUSR2 ticks not sent: the previous upgrade was undecided.
    pub upgrades_skipped: usize,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn period(rate: f64) -> Option<Duration> {
    (rate > 0.0).then(|| Duration::from_secs_f64((1.0 / rate).clamp(0.001, 86400.0)))
}

/// Run the chaos described by `cfg`.
///
/// # Errors
/// The pid file is unreadable, the master is not running, or the load could not start.
pub fn run(cfg: &ChaosConfig) -> Result<ChaosReport> {
    let pid_file = match &cfg.master {
        MasterRef::PidFile(f) => Some(f.as_path()),
        MasterRef::Pid(_) => None,
    };
    if cfg.upgrade_rate > 0.0 && pid_file.is_none() {
        return Err(Error::usage(
            "chaos: --upgrade-rate needs --pid-file F (the new master's pid is read from it)",
        ));
    }
    let first = match &cfg.master {
        MasterRef::Pid(p) => *p,
        MasterRef::PidFile(f) => procs::read_pid_file(f)
            .map_err(|e| Error::io(format!("read pid file {}", f.display()), e))?,
    };
    let mut master = first;
    if master <= 1 || !procs::alive(master) {
        return Err(Error::server(format!("master pid {master} is not running")));
    }
    let initial = procs::children_of(master)
        .map_err(|e| Error::io(format!("list children of {master}"), e))?;
    let mut known: BTreeSet<i32> = initial.iter().copied().collect();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(now_ns) ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    let mut rng = Rng(seed | 1);
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let (kill_p, hup_p) = (period(cfg.kill_rate), period(cfg.hup_rate));
    let chaos_start = t0 + cfg.load.warmup;
    let mut next_kill = kill_p.map(|p| chaos_start + p);
    // Offset reloads from kills so that one new child is not claimed by both.
    let stagger = kill_p.map_or(Duration::ZERO, |k| k.mul_f64(0.37));
    let mut next_hup = hup_p.map(|p| chaos_start + p + stagger);
    let up_p = period(cfg.upgrade_rate);
    let mut next_up =
        up_p.map(|p| chaos_start + p + kill_p.map_or(Duration::ZERO, |k| k.mul_f64(0.71)));
    let mut ups: Vec<Upgrade> = Vec::new();
    let mut skipped = 0;
    // Upgrades whose old master has not exited yet; new masters seen as a master's child.
    let mut draining: Vec<usize> = Vec::new();
    let mut new_masters: BTreeSet<i32> = BTreeSet::new();
    let mut events: Vec<ChaosEvent> = Vec::new();
    let mut pending: VecDeque<usize> = VecDeque::new();
    let mut master_gone = false;
    let mut old_gen: BTreeSet<i32> = BTreeSet::new();
    let load = std::thread::scope(|s| {
        let h = s.spawn(|| load::run(&cfg.load, Some(&stop)));
        let mut grace_end = None;
        loop {
            let now = Instant::now();
            if h.is_finished() && grace_end.is_none() {
                grace_end = Some(now + Duration::from_secs(2));
            }
            let settled =
                pending.is_empty() && draining.is_empty() && !ups.iter().any(Upgrade::pending);
            if grace_end.is_some_and(|g| now >= g || settled) {
                break;
            }
            if let Some(u) = ups.last_mut().filter(|u| u.pending()) {
                let in_file = pid_file
                    .and_then(|f| procs::read_pid_file(f).ok())
                    .map(|p| (p, procs::alive(p)));
                let seen_alive = u.seen_new.is_some_and(procs::alive);
                let waited = now.saturating_duration_since(t0).saturating_sub(u.at);
                if let Some(new) = u.judge(in_file, seen_alive, waited) {
                    draining.push(ups.len() - 1);
                    master = new;
                    // Its first generation runs already (it reported ready): not respawns.
                    known.extend(procs::children_of(new).unwrap_or_default());
                    old_gen.clear();
                    // The old master drains: it replaces nothing any more.
                    pending.clear();
                }
            }
            draining.retain(|&i| {
                let u = &mut ups[i];
                if procs::alive(u.old) {
                    return true;
                }
                u.old_gone = Some(now.saturating_duration_since(t0).saturating_sub(u.at));
                false
            });
            let cur = procs::children_of(master)
                .ok()
                .filter(|_| procs::alive(master));
            let Some(cur) = cur else {
                master_gone = true;
                stop.store(true, Ordering::Relaxed);
                break;
            };
            for pid in cur.iter().filter(|p| known.insert(**p)) {
                if cfg.upgrade_rate > 0.0 && procs::is_new_master(master, *pid) {
                    // The new master of an upgrade: not a server, never a victim.
                    new_masters.insert(*pid);
                    if let Some(u) = ups.last_mut().filter(|u| u.pending()) {
                        u.seen_new = Some(*pid);
                    }
                    continue;
                }
                attribute(&mut events, &mut pending, *pid, now, t0);
            }
            let cur: Vec<i32> = cur
                .into_iter()
                .filter(|p| !new_masters.contains(p))
                .collect();
            if grace_end.is_none() {
                if let (Some(at), Some(p)) = (next_kill, kill_p)
                    && now >= at
                {
                    next_kill = Some(at + p);
                    // Prefer the current generation: a softstopping old child is
                    // not replaced, so killing it would time nothing.
                    let mut live: Vec<i32> =
                        cur.iter().copied().filter(|c| procs::alive(*c)).collect();
                    if live.iter().any(|c| !old_gen.contains(c)) {
                        live.retain(|c| !old_gen.contains(c));
                    }
                    let mut conns = None;
                    let action = if live.is_empty() {
                        Action::Failed("no live child to kill".into())
                    } else {
                        let victim = live[(rng.next() % live.len() as u64) as usize];
                        conns = victim_conns(cfg, master, victim);
                        match procs::signal_child(master, victim, Signal::SIGKILL) {
                            Ok(()) => Action::Kill(victim),
                            Err(e) => Action::Failed(format!("SIGKILL {victim}: {e}")),
                        }
                    };
                    push_event(&mut events, &mut pending, now - t0, action, 1);
                    if let Some(e) = events.last_mut() {
                        e.victim_conns = conns;
                    }
                }
                if let (Some(at), Some(p)) = (next_hup, hup_p)
                    && now >= at
                {
                    next_hup = Some(at + p);
                    let n = cur.len().max(initial.len()).max(1);
                    old_gen.extend(cur.iter().copied());
                    let action = match procs::signal(master, Signal::SIGHUP) {
                        Ok(()) => Action::Hup(n),
                        Err(e) => Action::Failed(format!("SIGHUP {master}: {e}")),
                    };
                    push_event(
                        &mut events,
                        &mut pending,
                        now - t0,
                        action,
                        initial.len().max(1),
                    );
                }
                if let (Some(at), Some(p)) = (next_up, up_p)
                    && now >= at
                {
                    next_up = Some(at + p);
                    if ups.iter().any(Upgrade::pending) {
                        // The master would refuse it ("already in progress").
                        skipped += 1;
                    } else {
                        match procs::signal(master, Signal::SIGUSR2) {
                            Ok(()) => ups.push(Upgrade::sent(now - t0, master)),
                            Err(e) => push_event(
                                &mut events,
                                &mut pending,
                                now - t0,
                                Action::Failed(format!("SIGUSR2 {master}: {e}")),
                                1,
                            ),
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        h.join()
            .map_err(|_| Error::server("load thread panicked"))?
    })?;
    Ok(ChaosReport {
        master: first,
        last_master: master,
        initial_children: initial.len(),
        events,
        load,
        master_gone,
        upgrades: ups,
        upgrades_skipped: skipped,
    })
}

/// The victim's connections on a TCP target's port, with it stopped (see the config field).
fn victim_conns(cfg: &ChaosConfig, master: i32, victim: i32) -> Option<usize> {
    let crate::target::Target::Tcp(addr) = &cfg.load.target else {
        return None;
    };
    if !cfg.count_victim_conns {
        return None;
    }
    procs::freeze_and_count_tcp(master, victim, addr.port()).ok()
}

fn push_event(
    events: &mut Vec<ChaosEvent>,
    pending: &mut VecDeque<usize>,
    at: Duration,
    action: Action,
    expect: usize,
) {
    let waits = !matches!(action, Action::Failed(_));
    events.push(ChaosEvent {
        at,
        action,
        new_pids: Vec::new(),
        first: None,
        complete: None,
        victim_conns: None,
        expect,
    });
    if waits {
        pending.push_back(events.len() - 1);
    }
}

fn attribute(
    events: &mut [ChaosEvent],
    pending: &mut VecDeque<usize>,
    pid: i32,
    now: Instant,
    t0: Instant,
) {
    let Some(&i) = pending.front() else { return };
    let e = &mut events[i];
    let dt = now.saturating_duration_since(t0).saturating_sub(e.at);
    e.new_pids.push(pid);
    e.first.get_or_insert(dt);
    if e.new_pids.len() >= e.expect {
        e.complete = Some(dt);
        pending.pop_front();
    }
}

#[path = "chaos_report.rs"]
mod report;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribution_in_order() {
        let t0 = Instant::now();
        let mut ev = Vec::new();
        let mut pend = VecDeque::new();
        push_event(&mut ev, &mut pend, Duration::ZERO, Action::Hup(2), 2);
        push_event(&mut ev, &mut pend, Duration::ZERO, Action::Kill(7), 1);
        push_event(
            &mut ev,
            &mut pend,
            Duration::ZERO,
            Action::Failed("x".into()),
            1,
        );
        for pid in [10, 11, 12] {
            attribute(&mut ev, &mut pend, pid, t0, t0);
        }
        assert_eq!(ev[0].new_pids, vec![10, 11]);
        assert!(ev[0].complete.is_some());
        assert_eq!(ev[1].new_pids, vec![12]);
        assert!(pend.is_empty());
        assert!(ev[2].new_pids.is_empty());
    }

    #[test]
    fn periods() {
        assert_eq!(period(0.0), None);
        assert_eq!(period(2.0), Some(Duration::from_millis(500)));
    }
}
