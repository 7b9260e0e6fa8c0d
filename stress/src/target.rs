//! Where a load goes (`Target`) and when it ends (`Limit`): the types every part of zstress
//! shares, below the command line that parses them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, Result};

/// Where the load goes: a loopback TCP address or a unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A TCP address whose IP is a loopback address.
    Tcp(SocketAddr),
    /// A unix stream socket path.
    Unix(PathBuf),
}

impl Target {
    /// Parse `host:port` (IP literal or `localhost`, loopback only) or a unix socket path
    /// (anything with a `/` or without a `:`, or `unix:PATH` / `local:PATH`).
    ///
    /// # Errors
    /// A usage error for a non-loopback IP, an unparsable address or a bad port.
    pub fn parse(s: &str) -> Result<Target> {
        if let Some(p) = s.strip_prefix("unix:").or_else(|| s.strip_prefix("local:")) {
            return Ok(Target::Unix(PathBuf::from(p)));
        }
        if s.is_empty() {
            return Err(Error::usage("empty address"));
        }
        if s.contains('/') || !s.contains(':') {
            return Ok(Target::Unix(PathBuf::from(s)));
        }
        let s2 = s
            .strip_prefix("localhost:")
            .map(|p| format!("127.0.0.1:{p}"));
        let addr: SocketAddr = s2.as_deref().unwrap_or(s).parse().map_err(|_| {
            Error::usage(format!(
                "bad address {s:?}: expected IP:PORT or a unix socket path"
            ))
        })?;
        if !addr.ip().is_loopback() {
            return Err(Error::usage(format!(
                "refusing non-loopback address {s}: zstress only loads 127.0.0.0/8, ::1 or unix sockets"
            )));
        }
        if addr.port() == 0 {
            return Err(Error::usage(format!("bad address {s}: port 0")));
        }
        Ok(Target::Tcp(addr))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "{a}"),
            Target::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// When a load run ends (besides its hard time cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Measure for this long after the warm-up.
    Duration(Duration),
    /// Stop after this many measured requests (successful or failed).
    Requests(u64),
}
