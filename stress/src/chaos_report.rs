//! The text and JSON reports of a `zstress chaos` run ([`ChaosReport::render`],
//! [`ChaosReport::to_json`]): the timeline of actions and failed requests, and the summary.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Action, ChaosReport};
use crate::report::json_str;
use crate::upgrades;

fn stats(v: &mut [Duration]) -> Option<(Duration, Duration)> {
    v.sort_unstable();
    Some((*v.get(v.len() / 2)?, *v.last()?))
}

impl ChaosReport {
    fn times(&self, kill: bool) -> Vec<Duration> {
        self.events
            .iter()
            .filter(|e| {
                matches!(e.action, Action::Kill(_)) == kill
                    && !matches!(e.action, Action::Failed(_))
            })
            .filter_map(|e| if kill { e.complete } else { e.first })
            .collect()
    }

    fn count(&self, kill: bool) -> usize {
        self.events
            .iter()
            .filter(|e| {
                if kill {
                    matches!(e.action, Action::Kill(_))
                } else {
                    matches!(e.action, Action::Hup(_))
                }
            })
            .count()
    }

    /// The timeline (every action and every failed request) and the summary, as text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "chaos on master {} ({} children at start)",
            self.master, self.initial_children
        );
        let mut lines: Vec<(Duration, String)> = Vec::new();
        for e in &self.events {
            let obs = match (e.first, e.complete) {
                (_, Some(c)) if e.expect == 1 => {
                    format!("replacement {:?} after {}", e.new_pids, ms(c))
                }
                (Some(f), Some(c)) => format!(
                    "first new child after {}, all {} after {}",
                    ms(f),
                    e.expect,
                    ms(c)
                ),
                (Some(f), None) => format!(
                    "first new child after {}, {}/{} new children seen",
                    ms(f),
                    e.new_pids.len(),
                    e.expect
                ),
                _ => "no new child observed".to_string(),
            };
            let what = match &e.action {
                Action::Kill(p) => match e.victim_conns {
                    Some(n) => format!("SIGKILL child {p} ({n} load conns): {obs}"),
                    None => format!("SIGKILL child {p}: {obs}"),
                },
                Action::Hup(_) => format!("SIGHUP master: {obs}"),
                Action::Failed(m) => format!("could not signal: {m}"),
            };
            lines.push((e.at, what));
        }
        for u in &self.upgrades {
            lines.push((u.at, u.line(&self.load.failures)));
        }
        for f in &self.load.failures {
            lines.push((
                f.at,
                format!("FAILED conn {} {}: {}", f.conn, f.kind.name(), f.detail),
            ));
        }
        lines.sort_by_key(|l| l.0);
        for (at, l) in lines {
            let _ = writeln!(s, "  {:>9.3}s  {l}", at.as_secs_f64());
        }
        if self.load.failures_dropped > 0 {
            let _ = writeln!(
                s,
                "  ... {} more failures not listed",
                self.load.failures_dropped
            );
        }
        if self.master_gone {
            let _ = writeln!(s, "  the master exited during the run");
        }
        let (mut k, mut h) = (self.times(true), self.times(false));
        let _ = writeln!(
            s,
            "kills {}  respawned {}  respawn {}",
            self.count(true),
            k.len(),
            pct(&mut k)
        );
        let _ = writeln!(
            s,
            "reloads {}  observed {}  first new child {}",
            self.count(false),
            h.len(),
            pct(&mut h)
        );
        if !self.upgrades.is_empty() || self.upgrades_skipped > 0 {
            let _ = writeln!(
                s,
                "{} (master now {})",
                self.upgrade_summary().line(),
                self.last_master
            );
        }
        s.push_str(&self.load.summary_table());
        s
    }

    /// Counts and times over the run's upgrades.
    pub fn upgrade_summary(&self) -> upgrades::Summary {
        upgrades::summary(&self.upgrades, &self.load.failures, self.upgrades_skipped)
    }

    /// One JSON object: the load figures plus `chaos` (counts, timings, failures).
    pub fn to_json(&self) -> String {
        let (mut k, mut h) = (self.times(true), self.times(false));
        let j = |v: &mut [Duration]| match stats(v) {
            Some((p50, max)) => format!(
                "{{\"count\":{},\"p50_ms\":{:.3},\"max_ms\":{:.3}}}",
                v.len(),
                p50.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            ),
            None => "{\"count\":0}".to_string(),
        };
        let mut fails = String::new();
        for (i, f) in self.load.failures.iter().take(1000).enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                fails,
                "{sep}{{\"at_s\":{:.6},\"conn\":{},\"kind\":\"{}\",\"detail\":{}}}",
                f.at.as_secs_f64(),
                f.conn,
                f.kind.name(),
                json_str(&f.detail)
            );
        }
        format!(
            "{{{},\"chaos\":{{\"master\":{},\"last_master\":{},\"kills\":{},\"hups\":{},\"respawn\":{},\"reload_first_child\":{},\"upgrades\":{},\"master_gone\":{},\"failures\":[{}]}}}}",
            self.load.json_fields(),
            self.master,
            self.last_master,
            self.count(true),
            self.count(false),
            j(&mut k),
            j(&mut h),
            // After the older objects: readers that take the first "count" keep theirs.
            self.upgrade_summary().json(),
            self.master_gone,
            fails
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn pct(v: &mut [Duration]) -> String {
    match stats(v) {
        Some((p50, max)) => format!("p50 {} max {}", ms(p50), ms(max)),
        None => "-".to_string(),
    }
}
