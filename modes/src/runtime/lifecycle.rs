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

use super::error::Result;
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
            hang_timeout: config.get_duration("server-hang-timeout", Duration::ZERO)?,
        })
    }

    /// The connection limit for the mode's acceptor (`None`: unlimited).
    pub fn connection_limit(&self) -> Option<usize> {
        (self.max_connections > 0).then_some(self.max_connections)
    }
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
}

impl Watch {
    /// The checks for `limits`, with this process's random jitter drawn.
    pub(crate) fn new(limits: &Limits) -> Watch {
        let jitter = if limits.max_use_jitter == 0 {
            0
        } else {
            // A per-process random key (std seeds RandomState from the OS): good enough to
            // spread siblings, no dependency needed.
            RandomState::new().build_hasher().finish() % (limits.max_use_jitter + 1)
        };
        let max_use = if limits.max_use == 0 {
            0
        } else {
            limits.max_use.saturating_add(jitter)
        };
        if max_use > 0 {
            log::debug!("server-max-use with jitter: {max_use}");
        }
        Watch {
            limits: limits.clone(),
            max_use,
            seen: 0,
            busy: Duration::MAX,
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
    pub(crate) fn check(&mut self, serving: &dyn Serving, now: Instant) -> Option<&'static str> {
        if !self.limits.hang_timeout.is_zero() {
            let stalls = serving.stalled(self.limits.hang_timeout);
            for stall in &stalls {
                let coroutine = stall
                    .coroutine
                    .map_or_else(|| "none".to_owned(), |id| id.to_string());
                log::error!(
                    "hung thread={} busy_for={}ms coroutine={coroutine}",
                    stall.thread_name,
                    stall.busy_for.as_millis()
                );
            }
            if !stalls.is_empty() {
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
mod tests {
    use super::*;
    use zmaster_pool::Stall;

    #[test]
    fn keys_defaults_and_errors() {
        assert_eq!(
            Limits::from_config(&Config::new()).unwrap(),
            Limits::default()
        );
        let mut c = Config::new();
        c.set("server-max-use", "3");
        c.set("server-max-use-jitter", "2");
        c.set("server-max-idle", "5s");
        c.set("server-max-memory", "1m");
        c.set("server-max-connections", "7");
        c.set("server-hang-timeout", "250ms");
        let l = Limits::from_config(&c).unwrap();
        assert_eq!(
            l,
            Limits {
                max_use: 3,
                max_use_jitter: 2,
                max_idle: Duration::from_secs(5),
                max_memory: 1 << 20,
                max_connections: 7,
                hang_timeout: Duration::from_millis(250),
            }
        );
        assert_eq!(l.connection_limit(), Some(7));
        assert_eq!(Limits::default().connection_limit(), None);
        for key in [
            "server-max-use",
            "server-max-use-jitter",
            "server-max-idle",
            "server-max-memory",
            "server-max-connections",
            "server-hang-timeout",
        ] {
            let mut c = Config::new();
            c.set(key, "-1");
            let err = Limits::from_config(&c).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn jitter_stays_in_range_and_tick_is_bounded() {
        let limits = Limits {
            max_use: 10,
            max_use_jitter: 5,
            ..Limits::default()
        };
        let drawn: std::collections::HashSet<u64> =
            (0..200).map(|_| Watch::new(&limits).max_use).collect();
        assert!(drawn.iter().all(|n| (10..=15).contains(n)), "{drawn:?}");
        assert!(drawn.len() > 1, "jitter varies: {drawn:?}");
        assert_eq!(Watch::new(&Limits::default()).tick(), None);
        let no_jitter = Limits {
            max_use: 4,
            ..Limits::default()
        };
        assert_eq!(Watch::new(&no_jitter).max_use, 4);
        assert_eq!(Watch::new(&no_jitter).tick(), Some(Duration::from_secs(1)));
        let short = Limits {
            hang_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        assert_eq!(Watch::new(&short).tick(), Some(Duration::from_millis(100)));
        let idle = Limits {
            max_idle: Duration::from_secs(5),
            ..Limits::default()
        };
        assert_eq!(Watch::new(&idle).tick(), Some(Duration::from_millis(500)));
        let memory = Limits {
            max_memory: 1,
            ..Limits::default()
        };
        assert_eq!(Watch::new(&memory).tick(), Some(Duration::from_secs(1)));
    }

    /// A mode's counters, set by the test.
    #[derive(Default)]
    struct Fake {
        accepted: u64,
        idle_since: Option<Instant>,
        stalls: Vec<Stall>,
    }

    impl Serving for Fake {
        fn stop_accepting(&self) {}
        fn active_connections(&self) -> usize {
            0
        }
        fn wait_idle(&self, _deadline: Instant) -> bool {
            true
        }
        fn accepted_total(&self) -> u64 {
            self.accepted
        }
        fn idle_since(&self) -> Option<Instant> {
            self.idle_since
        }
        fn stalled(&self, timeout: Duration) -> Vec<Stall> {
            assert_eq!(
                timeout,
                Duration::from_millis(300),
                "asked with the configured timeout"
            );
            self.stalls.clone()
        }
    }

    #[test]
    fn each_limit_retires_at_its_threshold_only() {
        let now = Instant::now();
        let off = Fake {
            accepted: 1_000,
            idle_since: Some(now - Duration::from_secs(3600)),
            ..Fake::default()
        };
        assert_eq!(
            Watch::new(&Limits::default()).check(&off, now),
            None,
            "all off"
        );

        let mut use3 = Watch::new(&Limits {
            max_use: 3,
            ..Limits::default()
        });
        let two = Fake {
            accepted: 2,
            ..Fake::default()
        };
        assert_eq!(use3.check(&two, now), None);
        let three = Fake {
            accepted: 3,
            ..Fake::default()
        };
        assert_eq!(use3.check(&three, now), Some("max-use"));

        let mut idle = Watch::new(&Limits {
            max_idle: Duration::from_secs(5),
            ..Limits::default()
        });
        let busy = Fake::default();
        assert_eq!(idle.check(&busy, now), None, "a connection is open");
        let recent = Fake {
            idle_since: Some(now - Duration::from_secs(4)),
            ..Fake::default()
        };
        assert_eq!(idle.check(&recent, now), None);
        let long = Fake {
            idle_since: Some(now - Duration::from_secs(5)),
            ..Fake::default()
        };
        assert_eq!(idle.check(&long, now), Some("idle"));

        let rss = resident_bytes().expect("statm");
        let mut roomy = Watch::new(&Limits {
            max_memory: rss.saturating_mul(64),
            ..Limits::default()
        });
        assert_eq!(roomy.check(&busy, now), None);
        let mut tight = Watch::new(&Limits {
            max_memory: 4096,
            ..Limits::default()
        });
        assert_eq!(tight.check(&busy, now), Some("memory"));

        let mut hang = Watch::new(&Limits {
            hang_timeout: Duration::from_millis(300),
            ..Limits::default()
        });
        assert_eq!(hang.check(&busy, now), None);
        let stuck = Fake {
            stalls: vec![Stall {
                thread_name: "zm-worker-1".into(),
                busy_for: Duration::from_secs(1),
                coroutine: Some(9),
            }],
            ..Fake::default()
        };
        assert_eq!(hang.check(&stuck, now), Some("hang"));
    }

    #[test]
    fn max_use_is_looked_at_often_while_connections_arrive() {
        let mut watch = Watch::new(&Limits {
            max_use: 100,
            ..Limits::default()
        });
        let mut serving = Fake::default();
        let slow = Some(USE_TICK);
        assert_eq!(watch.next_tick(&serving), slow, "nothing accepted yet");
        serving.accepted = 3;
        assert_eq!(watch.next_tick(&serving), Some(BUSY_TICK));
        serving.accepted = 4;
        assert_eq!(watch.next_tick(&serving), Some(BUSY_TICK));
        let quiet: Vec<Option<Duration>> = (0..7).map(|_| watch.next_tick(&serving)).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(quiet, [ms(10), ms(20), ms(40), ms(80), slow, slow, slow]);
        serving.accepted = 5;
        assert_eq!(watch.next_tick(&serving), Some(BUSY_TICK), "busy again");
        // Without max-use the count does not matter.
        let mut idle = Watch::new(&Limits {
            max_idle: Duration::from_secs(5),
            ..Limits::default()
        });
        assert_eq!(idle.next_tick(&serving), ms(500));
        serving.accepted = 6;
        assert_eq!(idle.next_tick(&serving), ms(500));
        assert_eq!(Watch::new(&Limits::default()).next_tick(&serving), None);
    }

    #[test]
    fn resident_size_is_read() {
        let rss = resident_bytes().expect("statm");
        assert!(rss > 0 && rss.is_multiple_of(sys::page_size()), "{rss}");
    }
}
