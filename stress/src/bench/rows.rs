//! What the bench varies and measures: the servers, placements, load kinds, one row's spec
//! and its measurement (plain data shared by the planner, the launcher and the tables).

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// `zmaster` running `echo-aio`.
    ZmasterAio,
    /// `zmaster` running `echo-coroutine`.
    ZmasterCoroutine,
    /// The tokio baseline.
    Tokio,
    /// The `may` baseline.
    May,
    /// The single-threaded epoll baseline (the reference).
    Epoll,
}

impl Server {
    /// Every server, in table order.
    pub const ALL: [Server; 5] = [
        Server::ZmasterAio,
        Server::ZmasterCoroutine,
        Server::Tokio,
        Server::May,
        Server::Epoll,
    ];

    /// The table label.
    pub fn label(self) -> &'static str {
        match self {
            Server::ZmasterAio => "zmaster+echo-aio",
            Server::ZmasterCoroutine => "zmaster+echo-coroutine",
            Server::Tokio => "echo-tokio",
            Server::May => "echo-may",
            Server::Epoll => "echo-epoll",
        }
    }

    /// The `--only` name.
    pub fn short(self) -> &'static str {
        match self {
            Server::ZmasterAio => "aio",
            Server::ZmasterCoroutine => "coroutine",
            Server::Tokio => "tokio",
            Server::May => "may",
            Server::Epoll => "epoll",
        }
    }

    pub(super) fn binaries(self) -> &'static [&'static str] {
        match self {
            Server::ZmasterAio => &["zmaster", "echo-aio"],
            Server::ZmasterCoroutine => &["zmaster", "echo-coroutine"],
            Server::Tokio => &["echo-tokio"],
            Server::May => &["echo-may"],
            Server::Epoll => &["echo-epoll"],
        }
    }
}

/// Where server and client run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Server and client threads all pinned to CPU 0.
    Cpu0,
    /// No pinning (the affinity `zstress` started with).
    Free,
}

impl Placement {
    /// The table label.
    pub fn label(self) -> &'static str {
        match self {
            Placement::Cpu0 => "cpu0",
            Placement::Free => "unpinned",
        }
    }
}

/// What the client connections of a row do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// Persistent connections, one line in flight on each (ping-pong).
    Echo,
    /// Connect, send one line, read the reply, close (`--connect-per-request`): the
    /// connection rate.
    Connect,
}

impl LoadKind {
    /// The table label.
    pub fn label(self) -> &'static str {
        match self {
            LoadKind::Echo => "echo",
            LoadKind::Connect => "connect",
        }
    }
}

/// What one row runs: load kind, server, and its processes × threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowSpec {
    /// The load kind.
    pub load: LoadKind,
    /// The server.
    pub server: Server,
    /// zmaster's `server-proc-count` P (`None` for the peers, which are one process).
    pub procs: Option<usize>,
    /// zmaster's `server-thread-count` W, or a peer's thread count (`None` for the
    /// single-threaded epoll reference).
    pub workers: Option<usize>,
}

impl RowSpec {
    /// Server threads in all: P × W (1 for the epoll reference).
    pub fn total_threads(&self) -> usize {
        self.procs.unwrap_or(1) * self.workers.unwrap_or(1)
    }

    /// The `P×W` cell: `2×1` for zmaster, the thread count for a peer, `1*` for the
    /// single-threaded reference.
    pub fn shape(&self) -> String {
        match (self.procs, self.workers) {
            (Some(p), Some(w)) => format!("{p}×{w}"),
            (None, Some(w)) => w.to_string(),
            (Some(p), None) => format!("{p}×1"),
            (None, None) => "1*".to_string(),
        }
    }
}

/// The figures of one measured run.
#[derive(Debug, Clone)]
pub struct Measure {
    /// Successful requests per second.
    pub rps: f64,
    /// p50 latency in µs.
    pub p50: u64,
    /// p90 in µs.
    pub p90: u64,
    /// p99 in µs.
    pub p99: u64,
    /// p99.9 in µs.
    pub p999: u64,
    /// Highest latency in µs.
    pub max: u64,
    /// Failed requests.
    pub errors: u64,
    /// The chart points.
    pub curve: Vec<(f64, u64)>,
    /// Server CPU time (all its processes) per successful request, in µs: a cost figure
    /// that other load on the machine disturbs much less than req/s.
    pub server_cpu_us: Option<f64>,
    /// The share of their time the client threads waited for a CPU (0 to 1), see
    /// [`LoadReport::client_wait_share`](crate::report::LoadReport::client_wait_share).
    pub client_wait: Option<f64>,
}
