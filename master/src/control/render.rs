//! The human status table `zmasterctl status` prints, and durations as people read them.

use std::fmt::Write;

use super::protocol::{ChildState, LastExit, ServiceState, Status};

/// A duration in seconds as people read it: `350ms`, `1.6s`, `42s`, `5m03s`, `2h05m`, `3d04h`.
pub fn human_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    if secs < 1.0 {
        // Truncated like every other unit here: 999.6 ms is not yet a second.
        return format!("{}ms", (secs * 1000.0).floor() as u64);
    }
    if secs < 10.0 {
        return format!("{:.1}s", (secs * 10.0).floor() / 10.0);
    }
    let s = secs as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn service_state(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Running => "running",
        ServiceState::Backoff => "backoff",
        ServiceState::Failed => "failed",
    }
}

fn child_state(state: ChildState) -> &'static str {
    match state {
        ChildState::Serving => "serving",
        ChildState::Draining => "draining",
        ChildState::Detached => "detached",
    }
}

fn last_exit(exit: Option<&LastExit>) -> String {
    match exit {
        None => "-".into(),
        Some(e) => format!(
            "pid {} {} after {}, {} ago",
            e.pid,
            e.reason,
            human_duration(e.lived_s),
            human_duration(e.ago_s)
        ),
    }
}

/// The status as a table: a master line, then one row per service and one indented line per
/// child (pid, generation, uptime, state).
pub fn status_table(status: &Status) -> String {
    let m = &status.master;
    let mut out = format!(
        "master pid {}, up {}, generation {}, config {}\n",
        m.pid,
        human_duration(m.uptime_s),
        m.generation,
        m.config_dir
    );
    let header = [
        "SERVICE",
        "STATE",
        "PROCS",
        "RESTARTS",
        "BACKOFF",
        "LAST EXIT",
    ];
    let rows: Vec<[String; 6]> = status
        .services
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                service_state(s.state).into(),
                format!("{}/{}", s.children.len(), s.proc_count),
                s.restarts.to_string(),
                match s.backoff_ms {
                    0 => "-".into(),
                    ms => human_duration(ms as f64 / 1000.0),
                },
                last_exit(s.last_exit.as_ref()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            let _ = write!(text, "{cell:<w$}  ");
        }
        // The last column's padding goes: no trailing blanks.
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for (row, svc) in rows.iter().zip(&status.services) {
        line(&row.each_ref().map(String::as_str));
        for c in &svc.children {
            let child = format!(
                "  pid {}  gen {}  up {}  {}",
                c.pid,
                c.generation,
                human_duration(c.uptime_s),
                child_state(c.state)
            );
            line(&[child.as_str()]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{ChildStatus, MasterStatus, ServiceStatus};

    #[test]
    fn durations_read_like_people_write_them() {
        let cases = [
            (0.0, "0ms"),
            (0.35, "350ms"),
            (0.9996, "999ms"),
            (1.0, "1.0s"),
            (1.66, "1.6s"),
            (9.99, "9.9s"),
            (10.0, "10s"),
            (59.9, "59s"),
            (60.0, "1m00s"),
            (303.0, "5m03s"),
            (3599.0, "59m59s"),
            (3600.0, "1h00m"),
            (7500.0, "2h05m"),
            (86399.0, "23h59m"),
            (86400.0, "1d00h"),
            (273600.0, "3d04h"),
            (-1.0, "-"),
            (f64::NAN, "-"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn table_shows_states_pids_restarts_backoff_and_last_exit() {
        let status = Status {
            master: MasterStatus {
                pid: 100,
                uptime_s: 75.0,
                generation: 2,
                config_dir: "/etc/z".into(),
            },
            services: vec![
                ServiceStatus {
                    name: "echo".into(),
                    state: ServiceState::Running,
                    proc_count: 2,
                    restarts: 1,
                    backoff_ms: 0,
                    last_exit: None,
                    children: vec![
                        ChildStatus {
                            pid: 101,
                            generation: 2,
                            uptime_s: 12.0,
                            state: ChildState::Serving,
                        },
                        ChildStatus {
                            pid: 99,
                            generation: 1,
                            uptime_s: 80.0,
                            state: ChildState::Draining,
                        },
                    ],
                },
                ServiceStatus {
                    name: "crashy-service".into(),
                    state: ServiceState::Backoff,
                    proc_count: 1,
                    restarts: 7,
                    backoff_ms: 1600,
                    last_exit: Some(LastExit {
                        pid: 98,
                        reason: "exit status 1".into(),
                        lived_s: 0.05,
                        ago_s: 0.5,
                    }),
                    children: vec![ChildStatus {
                        pid: 97,
                        generation: 2,
                        uptime_s: 3.0,
                        state: ChildState::Detached,
                    }],
                },
                ServiceStatus {
                    name: "gone".into(),
                    state: ServiceState::Failed,
                    proc_count: 1,
                    restarts: 3,
                    backoff_ms: 0,
                    last_exit: None,
                    children: vec![],
                },
            ],
        };
        let want = "\
master pid 100, up 1m15s, generation 2, config /etc/z
SERVICE         STATE    PROCS  RESTARTS  BACKOFF  LAST EXIT
echo            running  2/2    1         -        -
  pid 101  gen 2  up 12s  serving
  pid 99  gen 1  up 1m20s  draining
crashy-service  backoff  1/1    7         1.6s     pid 98 exit status 1 after 50ms, 500ms ago
  pid 97  gen 2  up 3.0s  detached
gone            failed   0/1    3         -        -
";
        assert_eq!(status_table(&status), want);
    }

    #[test]
    fn the_table_says_why_the_last_child_left() {
        let service = |reason: &str| ServiceStatus {
            name: "web".into(),
            state: ServiceState::Running,
            proc_count: 2,
            restarts: 40,
            backoff_ms: 0,
            last_exit: Some(LastExit {
                pid: 7,
                reason: reason.into(),
                lived_s: 0.012,
                ago_s: 3.0,
            }),
            children: vec![],
        };
        let status = |reason: &str| Status {
            master: MasterStatus {
                pid: 1,
                uptime_s: 9.0,
                generation: 1,
                config_dir: "/etc/z".into(),
            },
            services: vec![service(reason)],
        };
        let table = status_table(&status("retired (max-use), exit status 0"));
        let row = table.lines().nth(2).unwrap_or_default();
        assert_eq!(
            row,
            "web      running  0/2    40        -        \
             pid 7 retired (max-use), exit status 0 after 12ms, 3.0s ago"
        );
        let table = status_table(&status("killed by SIGKILL (hang: no heartbeat for 2.1s)"));
        assert!(
            table.contains("pid 7 killed by SIGKILL (hang: no heartbeat for 2.1s) after 12ms"),
            "{table}"
        );
    }
}
