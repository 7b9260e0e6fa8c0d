//! Unit tests of `lifecycle.rs`: the keys, jitter, tick intervals and each limit's threshold.

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
fn a_hang_timeout_under_100ms_is_refused() {
    for value in ["5ms", "10ms", "99ms"] {
        let c = Config::parse(
            &format!("\nserver-hang-timeout = {value}\n"),
            std::path::Path::new("x.cf"),
        )
        .unwrap();
        assert_eq!(
            Limits::from_config(&c).unwrap_err().to_string(),
            format!("x.cf:2: server-hang-timeout = {value}: below the minimum 100ms")
        );
    }
    for (value, want) in [("0", 0), ("100ms", 100)] {
        let mut c = Config::new();
        c.set("server-hang-timeout", value);
        let limits = Limits::from_config(&c).unwrap();
        assert_eq!(limits.hang_timeout, Duration::from_millis(want), "{value}");
    }
}

#[test]
fn jitter_stays_in_range_and_tick_is_bounded() {
    let limits = Limits {
        max_use: 10,
        max_use_jitter: 5,
        ..Limits::default()
    };
    // One draw per process: the acceptor's budget and the retire check agree.
    let budget = limits.accept_budget().expect("max-use is set");
    assert!((10..=15).contains(&budget), "{budget}");
    assert!((0..50).all(|_| Watch::new(&limits).max_use == budget));
    assert_eq!(limits.accept_budget(), Some(budget));
    // Across processes (keys) the jitter covers its whole range.
    let drawn: std::collections::BTreeSet<Option<u64>> =
        (0..60).map(|key| limits.budget_with_key(key)).collect();
    assert_eq!(drawn, (10..=15).map(Some).collect());
    assert_eq!(Limits::default().accept_budget(), None, "max-use 0 is off");
    let huge = Limits {
        max_use: u64::MAX,
        max_use_jitter: u64::MAX,
        ..Limits::default()
    };
    assert_eq!(huge.budget_with_key(7), Some(u64::MAX), "saturates");
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
    assert_eq!(hang.check(&stuck, now), None, "seen once: not yet");
    let tick = hang.tick().unwrap();
    assert_eq!(tick, Duration::from_millis(100));
    let at = |n: u64| now + Duration::from_millis(n);
    assert_eq!(hang.check(&stuck, at(99)), None, "under a tick later");
    assert_eq!(hang.check(&stuck, at(100)), Some("hang"), "a tick later");
}

#[test]
fn a_hang_is_confirmed_a_tick_later_and_never_on_a_late_check() {
    let limits = Limits {
        hang_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let stuck = Fake {
        stalls: vec![Stall {
            thread_name: "zm-worker-0".into(),
            busy_for: Duration::from_secs(2),
            coroutine: None,
        }],
        ..Fake::default()
    };
    let fine = Fake::default();
    let now = Instant::now();
    let at = |n: u64| now + Duration::from_millis(n);
    // Frozen for 2 s after the check at 0 (the tick is 100 ms): the first check after the
    // thaw is late and only looks; the thread ran again before the next one.
    let mut w = Watch::new(&limits);
    assert_eq!(w.check(&fine, at(0)), None);
    assert_eq!(
        w.check(&stuck, at(2000)),
        None,
        "late: the process was not running"
    );
    assert_eq!(
        w.check(&stuck, at(2100)),
        None,
        "the first sighting on time"
    );
    assert_eq!(w.check(&fine, at(2200)), None, "it ran again: no hang");
    assert_eq!(w.check(&stuck, at(2300)), None, "a new first sighting");
    assert_eq!(w.check(&stuck, at(2400)), Some("hang"), "stuck after all");
    // Exactly two ticks after the last check is not late.
    let mut w = Watch::new(&limits);
    assert_eq!(w.check(&fine, at(0)), None);
    assert_eq!(w.check(&stuck, at(200)), None);
    assert_eq!(w.check(&stuck, at(300)), Some("hang"));
    // The very first check is never late.
    let mut w = Watch::new(&limits);
    assert_eq!(w.check(&stuck, at(5000)), None);
    assert_eq!(w.check(&stuck, at(5100)), Some("hang"));
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
