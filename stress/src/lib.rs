//! zmaster-stress: the `zstress` load, chaos and side-by-side benchmark harness.
//!
//! The binary `zstress` is a thin shell over this library:
//!
//! - [`load`] drives N client connections (TCP on loopback or a unix socket) from K client
//!   threads, each sending a line of B bytes and waiting for the echoed line, and returns a
//!   [`report::LoadReport`] (HDR latency histogram, errors by [`report::FailKind`]).
//! - [`chaos`] runs the same load while it SIGKILLs random children of a master and/or sends
//!   the master SIGHUP, and times the respawns and reloads it observes.
//! - [`mod@bench`] starts zmaster with the echo examples and the baseline peers (`echo-tokio`,
//!   `echo-may`, `echo-epoll`) one after another and compares them side by side; [`svg`]
//!   draws its latency chart.
//! - [`args`] parses the command line by hand; [`echo`] is the line-echo core shared by the
//!   baseline peers.
//! - [`fuzz`] holds the fuzz-target bodies for zmaster-core's parsers, shared by the
//!   cargo-fuzz crate in `stress/fuzz/` and the stable corpus replay in `tests/fuzz_corpus.rs`.
//!
//! ```no_run
//! use std::time::Duration;
//! use zmaster_stress::args::{Limit, Target};
//! use zmaster_stress::load::{self, LoadConfig};
//!
//! let mut cfg = LoadConfig::new(Target::parse("127.0.0.1:7000").unwrap());
//! cfg.conns = 8;
//! cfg.limit = Limit::Requests(10_000);
//! let report = load::run(&cfg, None).unwrap();
//! println!("{}", report.summary_table());
//! assert_eq!(report.requests(), 10_000);
//! # let _ = Duration::ZERO;
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod args;
pub mod bench;
pub mod chaos;
mod conn;
pub mod echo;
pub mod fuzz;
pub mod load;
pub mod procs;
pub mod report;
pub mod sockets;
pub mod svg;
pub mod target;
pub mod upgrades;

use std::fmt;

/// What went wrong in a `zstress` command, with context.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    msg: String,
}

/// The class of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad command line: `zstress` prints it and exits 2.
    Usage,
    /// An operating-system call failed (the message says which, on what).
    Io,
    /// A server under test misbehaved (did not start, did not answer the probe).
    Server,
}

impl Error {
    /// A usage error with this message.
    pub fn usage(msg: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Usage,
            msg: msg.into(),
        }
    }

    /// An OS error: `what` says what was attempted (`"bind 127.0.0.1:0"`).
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        Error {
            kind: ErrorKind::Io,
            msg: format!("{what}: {err}"),
        }
    }

    /// A misbehaving server under test.
    pub fn server(msg: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Server,
            msg: msg.into(),
        }
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
