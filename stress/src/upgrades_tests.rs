//! Unit tests of the upgrade judgement, failure windows and summary of `upgrades.rs`.

use super::*;
use crate::report::FailKind;

fn fail_at(ms: u64) -> Failure {
    Failure {
        at: Duration::from_millis(ms),
        conn: 0,
        kind: FailKind::Reset,
        detail: String::new(),
    }
}

const S: Duration = Duration::from_secs(1);

#[test]
fn completed_only_by_another_live_pid() {
    let mut u = Upgrade::sent(S, 10);
    assert_eq!(u.judge(None, false, Duration::from_millis(5)), None);
    assert_eq!(
        u.judge(Some((10, true)), false, Duration::from_millis(6)),
        None
    );
    assert_eq!(
        u.judge(Some((11, false)), false, Duration::from_millis(7)),
        None
    );
    assert!(u.pending());
    assert_eq!(
        u.judge(Some((11, true)), false, Duration::from_millis(8)),
        Some(11)
    );
    assert_eq!(u.outcome, Outcome::Completed(11));
    assert_eq!(u.took, Some(Duration::from_millis(8)));
    // Decided once: a later look changes nothing.
    assert_eq!(u.judge(Some((12, true)), false, GIVE_UP), None);
    assert_eq!(u.outcome, Outcome::Completed(11));
}

#[test]
fn rolled_back_when_the_seen_new_master_is_gone_or_at_the_give_up() {
    let mut u = Upgrade::sent(S, 10);
    u.seen_new = Some(20);
    assert_eq!(
        u.judge(Some((10, true)), true, Duration::from_millis(3)),
        None
    );
    assert!(u.pending());
    assert_eq!(
        u.judge(Some((10, true)), false, Duration::from_millis(4)),
        None
    );
    assert_eq!(
        u.outcome,
        Outcome::RolledBack("the new master (pid 20) exited".into())
    );
    assert_eq!(u.took, Some(Duration::from_millis(4)));
    // Never seen: only the give-up decides; just before it nothing is decided.
    let mut v = Upgrade::sent(S, 10);
    let just_before = GIVE_UP - Duration::from_millis(1);
    assert_eq!(v.judge(Some((10, true)), false, just_before), None);
    assert!(v.pending());
    assert_eq!(v.judge(Some((10, true)), false, GIVE_UP), None);
    assert!(matches!(v.outcome, Outcome::RolledBack(ref w) if w.starts_with("no new pid")));
    // A pid file naming the new master wins over its exit being seen in the same look.
    let mut w = Upgrade::sent(S, 10);
    w.seen_new = Some(20);
    assert_eq!(w.judge(Some((20, true)), false, GIVE_UP), Some(20));
}

#[test]
fn failure_windows() {
    let fails = [
        fail_at(999),
        fail_at(1000),
        fail_at(1500),
        fail_at(2000),
        fail_at(2001),
    ];
    let mut u = Upgrade::sent(S, 10);
    // Undecided: open to the end of the run.
    assert_eq!(u.failures_in(&fails), 4);
    u.judge(Some((11, true)), false, Duration::from_millis(100));
    // Completed, old master not yet gone: still open.
    assert_eq!(u.failures_in(&fails), 4);
    u.old_gone = Some(S);
    assert_eq!(u.failures_in(&fails), 3);
    let mut r = Upgrade::sent(S, 10);
    r.seen_new = Some(20);
    r.judge(Some((10, true)), false, Duration::from_millis(500));
    assert_eq!(r.failures_in(&fails), 2);
    assert!(r.line(&fails).contains("ROLLED BACK after 500.0 ms"));
    assert!(r.line(&fails).ends_with("; 2 failed requests meanwhile"));
}

#[test]
fn summary_counts_and_times() {
    let mut ups = Vec::new();
    for (i, ms) in [30u64, 10, 20].iter().enumerate() {
        let mut u = Upgrade::sent(Duration::from_secs(i as u64 + 1), 10 + i as i32);
        u.judge(Some((50, true)), false, Duration::from_millis(*ms));
        u.old_gone = Some(Duration::from_millis(200));
        ups.push(u);
    }
    let mut rb = Upgrade::sent(Duration::from_secs(5), 13);
    rb.judge(None, false, GIVE_UP);
    ups.push(rb);
    ups.push(Upgrade::sent(Duration::from_secs(50), 13));
    // 1100 in the first window, 1150 too (counted once), 4000 in none, 50 000 in the last.
    let fails = [fail_at(1100), fail_at(1150), fail_at(4000), fail_at(50_000)];
    let s = summary(&ups, &fails, 2);
    assert_eq!(
        (s.sent, s.completed, s.rolled_back, s.pending, s.skipped),
        (5, 3, 1, 1, 2)
    );
    assert_eq!(
        s.new_pid,
        Some((Duration::from_millis(20), Duration::from_millis(30)))
    );
    assert_eq!(s.failures_during, 3);
    assert!(
        s.line()
            .contains("skipped 2  new pid p50 20.0 ms max 30.0 ms")
    );
    assert!(s.line().ends_with("failed requests during upgrades 3"));
    assert!(
        s.json()
            .contains("\"new_pid\":{\"count\":3,\"p50_ms\":20.000,\"max_ms\":30.000}")
    );
    assert!(s.json().starts_with(
        "{\"sent\":5,\"completed\":3,\"rolled_back\":1,\"undecided\":1,\"skipped\":2,"
    ));
    let none = summary(&[], &fails, 0);
    assert_eq!(none, Summary::default());
    assert!(none.json().contains("\"new_pid\":{\"count\":0}"));
    assert!(none.line().contains("new pid -"));
}
