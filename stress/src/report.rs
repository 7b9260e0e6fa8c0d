//! Load results: failure kinds, the HDR latency histogram, the summary table and JSON.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Why one request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailKind {
    /// The connect was refused (nothing listening, or a missing unix socket file).
    Refused,
    /// The connection was reset or the pipe broke.
    Reset,
    /// No full reply (or no connect) within the timeout.
    Timeout,
    /// The peer closed before a full reply line (or banner) arrived.
    Short,
    /// A full reply line arrived but it was not the request echoed back.
    Wrong,
    /// Any other OS error.
    Other,
}

impl FailKind {
    /// Every kind, in report order.
    pub const ALL: [FailKind; 6] = [
        FailKind::Refused,
        FailKind::Reset,
        FailKind::Timeout,
        FailKind::Short,
        FailKind::Wrong,
        FailKind::Other,
    ];

    /// The kind's name as printed and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            FailKind::Refused => "refused",
            FailKind::Reset => "reset",
            FailKind::Timeout => "timeout",
            FailKind::Short => "short",
            FailKind::Wrong => "wrong",
            FailKind::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Classify an I/O error from connect/read/write.
    pub fn classify(err: &std::io::Error) -> FailKind {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::ConnectionRefused | K::NotFound => FailKind::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => FailKind::Reset,
            K::TimedOut => FailKind::Timeout,
            K::UnexpectedEof => FailKind::Short,
            _ => FailKind::Other,
        }
    }
}

/// Failure counts by [`FailKind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; 6]);

impl ErrorCounts {
    /// Count one more failure of `kind`.
    pub fn add(&mut self, kind: FailKind) {
        self.0[kind.index()] += 1;
    }

    /// The count for `kind`.
    pub fn get(&self, kind: FailKind) -> u64 {
        self.0[kind.index()]
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Add another set of counts into this one.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

/// One failed request, for chaos timelines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// When it failed, from the start of the run.
    pub at: Duration,
    /// Which client connection (0-based, global).
    pub conn: usize,
    /// The failure class.
    pub kind: FailKind,
    /// The OS error or what was wrong.
    pub detail: String,
}

/// A new latency histogram in microseconds (1 µs .. 1 h, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// The result of one load run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The address loaded.
    pub target: String,
    /// Client connections.
    pub conns: usize,
    /// Client threads.
    pub threads: usize,
    /// Request payload bytes (the line is this plus `\n`).
    pub size: usize,
    /// A connect per request (connection-rate mode).
    pub connect_per_request: bool,
    /// The measured time (after the warm-up).
    pub elapsed: Duration,
    /// Successful requests (reply equal to the request).
    pub ok: u64,
    /// Failed requests by kind.
    pub errors: ErrorCounts,
    /// Latency of the successful requests, in microseconds.
    pub hist: Histogram<u64>,
    /// Failed requests in time order (kept up to a cap).
    pub failures: Vec<Failure>,
    /// Failures not kept in `failures` because of the cap.
    pub failures_dropped: u64,
    /// The run hit its hard time cap (`--max-time`) before reaching `--requests`.
    pub capped: bool,
    /// The client threads' run-queue wait (runnable, waiting for a CPU) summed over the
    /// threads' whole runs, warm-up included; `None` where the kernel does not report it.
    pub client_runq_wait: Option<Duration>,
    /// The client threads' wall-clock lifetimes summed (the base of
    /// [`Self::client_wait_share`]).
    pub client_thread_time: Duration,
}

impl LoadReport {
    /// An empty report for this run's shape.
    pub fn empty(target: String, conns: usize, threads: usize, size: usize) -> Self {
        LoadReport {
            target,
            conns,
            threads,
            size,
            connect_per_request: false,
            elapsed: Duration::ZERO,
            ok: 0,
            errors: ErrorCounts::default(),
            hist: new_histogram(),
            failures: Vec::new(),
            failures_dropped: 0,
            capped: false,
            client_runq_wait: None,
            client_thread_time: Duration::ZERO,
        }
    }

    /// The share of their time the client threads spent waiting for a CPU (0 to 1): where
    /// the load generator shares the machine with the server, a latency tail can be the
    /// client's own wait rather than the server's.
    pub fn client_wait_share(&self) -> Option<f64> {
        let base = self.client_thread_time.as_secs_f64();
        self.client_runq_wait
            .filter(|_| base > 0.0)
            .map(|w| (w.as_secs_f64() / base).min(1.0))
    }

    /// Measured requests: successful plus failed.
    pub fn requests(&self) -> u64 {
        self.ok + self.errors.total()
    }

    /// Successful requests per second over the measured time.
    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.ok as f64 / s } else { 0.0 }
    }

    /// Latency at quantile `q` (0..=1) in microseconds; 0 if nothing succeeded.
    pub fn percentile_us(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }

    /// Maximum latency in microseconds.
    pub fn max_us(&self) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.max()
        }
    }

    /// The human summary table.
    pub fn summary_table(&self) -> String {
        let mut s = String::new();
        let mode = if self.connect_per_request {
            ", connect per request"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "target {}  conns {}  threads {}  size {} B{}",
            self.target, self.conns, self.threads, self.size, mode
        );
        let _ = writeln!(
            s,
            "  requests {:>10}   ok {:>10}   errors {:>8}   time {:.2} s{}",
            self.requests(),
            self.ok,
            self.errors.total(),
            self.elapsed.as_secs_f64(),
            if self.capped {
                "  (hit --max-time)"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "  throughput {:>12.0} req/s", self.throughput());
        let _ = writeln!(
            s,
            "  latency µs  p50 {:>7}  p90 {:>7}  p99 {:>7}  p99.9 {:>7}  max {:>7}  mean {:>9.1}",
            fmt_us(self.percentile_us(0.5)),
            fmt_us(self.percentile_us(0.9)),
            fmt_us(self.percentile_us(0.99)),
            fmt_us(self.percentile_us(0.999)),
            fmt_us(self.max_us()),
            if self.hist.is_empty() {
                0.0
            } else {
                self.hist.mean()
            },
        );
        let _ = write!(s, "  errors     ");
        for k in FailKind::ALL {
            let _ = write!(s, " {} {}", k.name(), self.errors.get(k));
        }
        s.push('\n');
        s
    }

    /// The JSON members (without braces) shared by `load` and `chaos` output.
    pub fn json_fields(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "\"target\":{},\"conns\":{},\"threads\":{},\"size\":{},\"connect_per_request\":{},\
             \"elapsed_s\":{:.6},\"requests\":{},\"ok\":{},\"errors_total\":{},\"capped\":{},\"errors\":{{",
            json_str(&self.target),
            self.conns,
            self.threads,
            self.size,
            self.connect_per_request,
            self.elapsed.as_secs_f64(),
            self.requests(),
            self.ok,
            self.errors.total(),
            self.capped,
        );
        for (i, k) in FailKind::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(s, "{sep}\"{}\":{}", k.name(), self.errors.get(*k));
        }
        let _ = write!(
            s,
            "}},\"throughput_rps\":{:.1},\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{},\"mean\":{:.1}}}",
            self.throughput(),
            self.percentile_us(0.5),
            self.percentile_us(0.9),
            self.percentile_us(0.99),
            self.percentile_us(0.999),
            self.max_us(),
            if self.hist.is_empty() {
                0.0
            } else {
                self.hist.mean()
            },
        );
        s
    }

    /// The whole report as one JSON object on one line.
    pub fn to_json(&self) -> String {
        format!("{{{}}}", self.json_fields())
    }
}

/// Format microseconds compactly: `87`, `1.2ms`, `3.40s`.
pub fn fmt_us(us: u64) -> String {
    if us < 10_000 {
        format!("{us}")
    } else if us < 10_000_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// A JSON string literal for `s` (quotes, backslashes and control characters escaped).
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_wait_share_is_the_wait_over_the_threads_time() {
        let mut r = LoadReport::empty("t".into(), 1, 2, 64);
        assert_eq!(r.client_wait_share(), None, "nothing measured");
        r.client_runq_wait = Some(Duration::from_millis(500));
        assert_eq!(r.client_wait_share(), None, "no thread time: no share");
        r.client_thread_time = Duration::from_secs(2);
        assert_eq!(r.client_wait_share(), Some(0.25));
        r.client_runq_wait = Some(Duration::from_secs(3));
        assert_eq!(r.client_wait_share(), Some(1.0), "capped at the whole time");
        r.client_runq_wait = None;
        assert_eq!(
            r.client_wait_share(),
            None,
            "a thread could not read its wait"
        );
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn counts_and_percentiles() {
        let mut r = LoadReport::empty("x".into(), 1, 1, 8);
        for v in 1..=1000u64 {
            r.hist.record(v).unwrap();
            r.ok += 1;
        }
        r.errors.add(FailKind::Refused);
        r.errors.add(FailKind::Short);
        r.elapsed = Duration::from_secs(2);
        assert_eq!(r.requests(), 1002);
        assert_eq!(r.errors.total(), 2);
        assert_eq!(r.throughput(), 500.0);
        let p50 = r.percentile_us(0.5);
        assert!((499..=501).contains(&p50), "{p50}");
        assert_eq!(r.max_us(), 1000);
        let j = r.to_json();
        assert!(j.starts_with('{') && j.ends_with('}'));
        assert!(j.contains("\"refused\":1,\"reset\":0,\"timeout\":0,\"short\":1"));
        assert!(r.summary_table().contains("refused 1"));
    }

    #[test]
    fn classify_errors() {
        use std::io::{Error, ErrorKind as K};
        assert_eq!(
            FailKind::classify(&Error::from(K::ConnectionRefused)),
            FailKind::Refused
        );
        assert_eq!(
            FailKind::classify(&Error::from(K::ConnectionReset)),
            FailKind::Reset
        );
        assert_eq!(
            FailKind::classify(&Error::from(K::BrokenPipe)),
            FailKind::Reset
        );
        assert_eq!(
            FailKind::classify(&Error::from(K::TimedOut)),
            FailKind::Timeout
        );
        assert_eq!(
            FailKind::classify(&Error::from(K::PermissionDenied)),
            FailKind::Other
        );
    }
}
