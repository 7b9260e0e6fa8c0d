//! Loopback ports and addresses for tests.

use std::net::{IpAddr, TcpListener, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

/// A port on 127.0.0.1 that was free a moment ago, outside the kernel's ephemeral range and
/// never handed out twice by one test process.
///
/// Why not bind port 0: the kernel picks that from the ephemeral range
/// (`net.ipv4.ip_local_port_range`), the range every `connect` takes its source port from.
/// Between this call and the bind of the server under test, a client socket of a parallel
/// test (a connect-per-request load takes thousands a second) or another port-0 pick may take
/// the port, and the server fails to bind (or a test talks to another test's server). Ports
/// below the ephemeral range are taken only by explicit binds; this process walks them from a
/// start that differs per process, skipping any it cannot bind now.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let window = pick_window(ephemeral_range());
    if window.is_empty() {
        return kernel_port();
    }
    let len = u32::from(window.end - window.start);
    // The first call sets a start that differs per process (the pid spreads parallel test
    // binaries over the window; the walk takes it modulo the window). `u32::MAX` means "not
    // set yet"; a seed that happens to be `u32::MAX` is as good a start as any.
    let seed = std::process::id().wrapping_mul(7919);
    let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..len {
        let at = NEXT.fetch_add(1, Ordering::Relaxed) % len;
        let port = window.start + at as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    kernel_port()
}

/// Port 0's pick (the fallback when no window is left outside the ephemeral range).
fn kernel_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral 127.0.0.1 port")
}

/// The ephemeral port range, inclusive (Linux's default when it cannot be read).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Where test ports come from, given the ephemeral range `lo..=hi`: the larger of
/// `10000..lo` and `hi+1..65535`; empty when neither holds 1024 ports.
fn pick_window((lo, hi): (u16, u16)) -> Range<u16> {
    let below = 10000..lo.max(10000);
    let above = hi.saturating_add(1).max(10000)..u16::MAX;
    let best = if below.len() >= above.len() {
        below
    } else {
        above
    };
    if best.len() >= 1024 { best } else { 0..0 }
}

/// A 127.0.0.1 port nothing listens on (bound then released): a connect is refused.
pub fn closed_port() -> u16 {
    free_port()
}

/// An address of this host that is not loopback (the source address of the default route),
/// to connect from as a "remote" peer; `None` on a host with no such address.
pub fn non_loopback_ip() -> Option<IpAddr> {
    // A UDP connect sends nothing: it only picks the route and the source address.
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_outside_the_ephemeral_range() {
        let (lo, hi) = ephemeral_range();
        assert!(
            !pick_window((lo, hi)).is_empty(),
            "this host's range {lo}-{hi}"
        );
        for _ in 0..50 {
            let port = free_port();
            assert!(
                !(lo..=hi).contains(&port),
                "{port} in the ephemeral range {lo}-{hi}"
            );
        }
    }

    #[test]
    fn free_port_never_hands_out_a_port_twice_and_the_port_binds() {
        let ports: Vec<u16> = (0..300).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        TcpListener::bind(("127.0.0.1", free_port())).expect("a free port binds");
    }

    #[test]
    fn free_port_skips_a_port_that_is_taken() {
        // Take the next port this process would hand out; the walk must step over it.
        let next = free_port() + 1;
        let Ok(_held) = TcpListener::bind(("127.0.0.1", next)) else {
            return; // someone else holds it already: the walk skips it either way
        };
        let port = free_port();
        assert_ne!(port, next);
    }

    #[test]
    fn the_ephemeral_range_is_read_from_the_kernel() {
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let want: Vec<u16> = text
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(ephemeral_range(), (want[0], want[1]));
    }

    #[test]
    fn the_fallback_is_a_bindable_ephemeral_port() {
        let (lo, hi) = ephemeral_range();
        let port = kernel_port();
        assert!((lo..=hi).contains(&port), "{port} outside {lo}-{hi}");
        TcpListener::bind(("127.0.0.1", port)).expect("the fallback port binds");
    }

    #[test]
    fn a_closed_port_refuses_a_connect() {
        let port = closed_port();
        assert_ne!(port, 0);
        let err = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn the_window_is_the_larger_side_of_the_ephemeral_range() {
        assert_eq!(pick_window((32768, 60999)), 10000..32768);
        assert_eq!(pick_window((10500, 60999)), 61000..u16::MAX);
        assert_eq!(pick_window((12000, 40000)), 40001..u16::MAX);
        assert_eq!(pick_window((30000, 40000)), 40001..u16::MAX);
        assert_eq!(pick_window((40000, 60000)), 10000..40000);
        // Neither side holds 1024 ports: fall back to the kernel's pick.
        assert_eq!(pick_window((10100, 65000)), 0..0);
        assert_eq!(pick_window((1024, 65535)), 0..0);
        // Exactly 1024 ports below is enough.
        assert_eq!(pick_window((11024, 65535)), 10000..11024);
    }
}
