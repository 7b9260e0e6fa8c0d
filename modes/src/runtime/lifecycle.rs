//! SPEC §13 server-side limits: the keys, and the checks that make a server retire.
//!
//! Design notes. The checks run on the server main thread, which otherwise only waits for a
//! control event: [`Server::run`](super::Server::run) wakes it every [`Watch::tick`] while a
//! limit is set (none set: no wake-ups at all). Each check reads counters the mode keeps anyway
//! (accepted total, idle-since, per-thread loop ticks, `/proc/self/statm`), so a request costs
//! nothing extra. A limit reached *retires* the server: detach (the master starts the
//! replacement at once), stop accepting, finish open connections, exit 0.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use zmaster_core::config::Config;

use super::error::{Error, ErrorKind, Result};
use super::server::Serving;
use super::sys;

/// The §13 keys a server reads, with their defaults applied (0 = off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// `server-max-use`: retire after this many accepted connections.
    pub max_use: u64,
    /// `server-max-use-jitter`: a random 0..=N added to `max_use` per process.
    pub max_use_jitter: u64,
    /// `server-max-idle`: retire when no connection was open for this long.
    pub max_idle: Duration,
    /// `server-max-memory`: retire when the resident size passes this many bytes.
    pub max_memory: u64,
    /// `server-max-connections`: open connections per process.
    pub max_connections: usize,
    /// `server-hang-timeout`: a worker or scheduler thread busy this long is hung.
    pub hang_timeout: Duration,
}

impl Limits {
    /// Reads the §13 keys.
    ///
    /// # Errors
    /// A value that does not parse (the message names the key).
    pub fn from_config(config: &Config) -> Result<Limits> {
        let count = |key: &str| -> Result<u64> {
            Ok(u64::try_from(config.get_int_in(key, 0, 0, i64::MAX)?).unwrap_or(0))
        };
        Ok(Limits {
            max_use: count("server-max-use")?,
            max_use_jitter: count("server-max-use-jitter")?,
            max_idle: config.get_duration("server-max-idle", Duration::ZERO)?,
            max_memory: config.get_size("server-max-memory", 0)?,
            max_connections: usize::try_from(config.get_int_in(
                "server-max-connections",
                0,
                0,
                i64::from(i32::MAX),
            )?)
            .unwrap_or(0),
            hang_timeout: hang_timeout(config)?,
        })
    }

    /// The connection limit for the mode's acceptor (`None`: unlimited).
    pub fn connection_limit(&self) -> Option<usize> {
        (self.max_connections > 0).then_some(self.max_connections)
    }

    /// `server-max-use` plus this process's jitter (`None`: off): the mode's acceptor stops
    /// taking connections exactly there, and the lifecycle check retires the process. The
    /// jitter is drawn once per process, so every caller sees the same budget.
    pub fn accept_budget(&self) -> Option<u64> {
        self.budget_with_key(process_key())
    }

    /// [`accept_budget`](Limits::accept_budget) with the random `key` given.
    pub(crate) fn budget_with_key(&self, key: u64) -> Option<u64> {
        if self.max_use == 0 {
            return None;
        }
        let jitter = key % self.max_use_jitter.saturating_add(1);
        Some(self.max_use.saturating_add(jitter))
    }
}

/// The smallest `server-hang-timeout` besides 0 (off), as the master's: a shorter one would
/// make the master kill healthy children (they beat at most every 10 ms).
pub(crate) const MIN_HANG_TIMEOUT: Duration = Duration::from_millis(100);

/// `server-hang-timeout` (0 = off), refused below [`MIN_HANG_TIMEOUT`] with its `file:line`.
fn hang_timeout(config: &Config) -> Result<Duration> {
    const KEY: &str = "server-hang-timeout";
    let timeout = config.get_duration(KEY, Duration::ZERO)?;
    if timeout.is_zero() || timeout >= MIN_HANG_TIMEOUT {
        return Ok(timeout);
    }
    let value = config.get(KEY).unwrap_or_default().trim();
    Err(Error::new(
        ErrorKind::Config,
        format!(
            "{}{KEY} = {value}: below the minimum 100ms",
            super::args::located(config, KEY)
        ),
    ))
}

/// A random number drawn once per process (std seeds `RandomState` from the OS): good enough
/// to spread siblings' retirements, no dependency needed.
fn process_key() -> u64 {
    static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| RandomState::new().build_hasher().finish())
}

/// The shortest time between two checks: while connections arrive and `server-max-use` is
/// set, the count is looked at this often (every check late lets a busy process overshoot its
/// limit by that many more connections; a look is one atomic load).
pub(crate) const BUSY_TICK: Duration = Duration::from_millis(5);
/// The longest time between two looks at the count while `server-max-use` is set: the first
/// connections after a quiet time are noticed within it.
pub(crate) const USE_TICK: Duration = Duration::from_millis(100);

/// The retirement checks of one running server.
#[derive(Debug)]
pub(crate) struct Watch {
    limits: Limits,
    /// `max_use` plus this process's jitter; 0 = off.
    max_use: u64,
    /// The accepted count at the last [`next_tick`](Watch::next_tick), and the interval it
    /// chose (short while the count moves, doubling back to [`tick`](Watch::tick) when not).
    seen: u64,
    busy: Duration,
    /// When [`check`](Watch::check) last ran, and since when it has seen a thread stalled
    /// (a hang counts when seen on checks a tick apart, never on a late check: see `check`).
    checked: Option<Instant>,
    stalled_since: Option<Instant>,
}

impl Watch {
    /// The checks for `limits`, with this process's jitter ([`Limits::accept_budget`]).
    pub(crate) fn new(limits: &Limits) -> Watch {
        let max_use = limits.accept_budget().unwrap_or(0);
        if max_use > 0 {
            log::debug!("server-max-use with jitter: {max_use}");
        }
        Watch {
            limits: limits.clone(),
            max_use,
            seen: 0,
            busy: Duration::MAX,
            checked: None,
            stalled_since: None,
        }
    }

    /// How long until the next check, given what `serving` accepted so far; `None` when no
    /// limit is set. With `server-max-use`: [`BUSY_TICK`] while connections arrive, doubling
    /// back to [`USE_TICK`] while none do.
    pub(crate) fn next_tick(&mut self, serving: &dyn Serving) -> Option<Duration> {
        let tick = self.tick()?;
        if self.max_use == 0 {
            return Some(tick);
        }
        let accepted = serving.accepted_total();
        self.busy = if accepted != self.seen {
            BUSY_TICK
        } else {
            self.busy.saturating_mul(2)
        };
        self.seen = accepted;
        Some(self.busy.min(tick).min(USE_TICK))
    }

    /// How often to check; `None` when no limit is set (then nothing is ever checked).
    pub(crate) fn tick(&self) -> Option<Duration> {
        let l = &self.limits;
        let any = self.max_use > 0
            || !l.max_idle.is_zero()
            || l.max_memory > 0
            || !l.hang_timeout.is_zero();
        if !any {
            return None;
        }
        // A tenth of the shortest duration limit, within 100 ms .. 1 s.
        let shortest = [l.max_idle, l.hang_timeout]
            .into_iter()
            .filter(|d| !d.is_zero())
            .min()
            .unwrap_or(Duration::from_secs(10));
        Some((shortest / 10).clamp(Duration::from_millis(100), Duration::from_secs(1)))
    }

    /// Why the server should retire now, if it should (logs the reason).
    ///
    /// A hang needs a stall seen on two checks at least a tick apart, and a check more than
    /// two ticks after the previous one sees none: after a freeze of the whole process (SIGSTOP,
    /// docker pause, a cgroup freeze) every busy thread looks stalled by the clock until it
    /// had a chance to run again.
    pub(crate) fn check(&mut self, serving: &dyn Serving, now: Instant) -> Option<&'static str> {
        if let (false, Some(tick)) = (self.limits.hang_timeout.is_zero(), self.tick()) {
            let late = self
                .checked
                .replace(now)
                .is_some_and(|at| now.saturating_duration_since(at) > tick * 2);
            let stalls = if late {
                Vec::new()
            } else {
                serving.stalled(self.limits.hang_timeout)
            };
            let since = if stalls.is_empty() {
                self.stalled_since = None;
                now
            } else {
                *self.stalled_since.get_or_insert(now)
            };
            let confirmed = !stalls.is_empty() && now.saturating_duration_since(since) >= tick;
            for stall in stalls.iter().filter(|_| confirmed) {
                let coroutine = stall
                    .coroutine
                    .map_or_else(|| "none".to_owned(), |id| id.to_string());
                log::error!(
                    "hung thread={} busy_for={}ms coroutine={coroutine}",
                    stall.thread_name,
                    stall.busy_for.as_millis()
                );
            }
            if confirmed {
                return Some("hang");
            }
        }
        if self.max_use > 0 {
            let accepted = serving.accepted_total();
            if accepted >= self.max_use {
                log::info!("server-max-use reached: accepted={accepted}");
                return Some("max-use");
            }
        }
        if !self.limits.max_idle.is_zero()
            && let Some(since) = serving.idle_since()
            && now.saturating_duration_since(since) >= self.limits.max_idle
        {
            log::info!("server-max-idle reached: idle for {:?}", now - since);
            return Some("idle");
        }
        if self.limits.max_memory > 0
            && let Some(rss) = resident_bytes()
            && rss > self.limits.max_memory
        {
            log::warn!(
                "resident size {rss} bytes is above server-max-memory {}",
                self.limits.max_memory
            );
            return Some("memory");
        }
        None
    }
}

/// The resident set size of this process, from `/proc/self/statm` (pages × page size).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(sys::page_size())
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
