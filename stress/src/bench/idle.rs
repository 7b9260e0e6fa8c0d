//! `--idle N`: open N idle connections to a server and measure how much its resident memory
//! (summed over its process tree) grows per connection.
//!
//! Each connection is opened, sends one line and waits for its echo before the next one is
//! opened, so when the last echo arrives every connection has been accepted and served once
//! (its buffers and, in coroutine mode, its stack exist). The RSS is read before the first
//! and after the last; the connections are then closed. The loop is bounded by N and by a
//! time limit, and stops at the first failure (what was opened until then is still used).

use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::procs;

/// The longest an idle measurement may take before it stops opening connections.
pub(super) const TIME_LIMIT: Duration = Duration::from_secs(60);

/// The result of one idle-connection measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleMeasure {
    /// Connections asked for (`--idle N`).
    pub wanted: usize,
    /// Connections that were open (and had echoed a line) when the RSS was read.
    pub opened: usize,
    /// Server tree RSS before the first connection, bytes.
    pub rss_before: u64,
    /// Server tree RSS with `opened` connections open, bytes.
    pub rss_after: u64,
    /// Why fewer than `wanted` were opened, or why the RSS could not be read.
    pub error: Option<String>,
}

impl IdleMeasure {
    /// RSS growth per open connection in bytes (negative if the RSS shrank), if any opened.
    pub fn bytes_per_conn(&self) -> Option<f64> {
        if self.opened == 0 || self.rss_before == 0 || self.rss_after == 0 {
            return None;
        }
        Some((self.rss_after as f64 - self.rss_before as f64) / self.opened as f64)
    }
}

/// Open up to `n` idle connections to `addr` (each echoes one line first), read the RSS of
/// `pid`'s process tree before and after, then close them.
pub fn measure(
    addr: SocketAddr,
    pid: i32,
    n: usize,
    timeout: Duration,
    limit: Duration,
) -> IdleMeasure {
    let mut m = IdleMeasure {
        wanted: n,
        opened: 0,
        rss_before: 0,
        rss_after: 0,
        error: None,
    };
    let Some(before) = procs::tree_rss(pid) else {
        m.error = Some(format!("cannot read the RSS of pid {pid}"));
        return m;
    };
    m.rss_before = before;
    let deadline = Instant::now() + limit;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        if Instant::now() >= deadline {
            m.error = Some(format!("stopped after {limit:?}"));
            break;
        }
        match open_one(addr, i, timeout) {
            Ok(s) => conns.push(s),
            Err(e) => {
                m.error = Some(format!("connection {}: {e}", i + 1));
                break;
            }
        }
    }
    m.opened = conns.len();
    match procs::tree_rss(pid) {
        Some(after) => m.rss_after = after,
        None => m.error = Some(format!("cannot read the RSS of pid {pid}")),
    }
    drop(conns);
    m
}

fn open_one(addr: SocketAddr, i: usize, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let line = format!("zstress-idle {i}\n");
    s.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply)?;
    if reply != line {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("echo {reply:?} differs from {line:?}"),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_conn_needs_readings_and_connections() {
        let mut m = IdleMeasure {
            wanted: 10,
            opened: 4,
            rss_before: 1000,
            rss_after: 9000,
            error: None,
        };
        assert_eq!(m.bytes_per_conn(), Some(2000.0));
        m.rss_after = 600;
        assert_eq!(m.bytes_per_conn(), Some(-100.0));
        for f in [
            |m: &mut IdleMeasure| m.opened = 0,
            |m: &mut IdleMeasure| m.rss_before = 0,
            |m: &mut IdleMeasure| m.rss_after = 0,
        ] {
            let mut c = m.clone();
            f(&mut c);
            assert_eq!(c.bytes_per_conn(), None);
        }
    }
}
