//! Loopback ports and addresses for tests.

use std::net::{IpAddr, TcpListener, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

/// A port on 127.0.0.1 that was free a moment ago, outside the kernel's ephemeral range and
/// not handed out before by this test process.
///
/// Why not bind port 0: the kernel picks that from the ephemeral range
/// (`net.ipv4.ip_local_port_range`), the range every `connect` takes its source port from.
/// Between this call and the bind of the server under test, a client socket of a parallel
/// test (a connect-per-request load takes thousands a second) or another port-0 pick may take
/// the port, and the server fails to bind (or a test talks to another test's server). Ports
/// below the ephemeral range are taken only by explicit binds; this process walks them from a
/// start that differs per process, skipping any port some IPv4 socket holds now. Two test
/// processes running side by side may still walk the same ports (`cargo test` runs one test
/// binary at a time); where the range leaves no room, port 0 as before.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let window = pick_window(ephemeral_range());
    walk(&window, &NEXT, std::process::id(), unbound).unwrap_or_else(kernel_port)
}

/// The next port of `window` that `free` accepts, walking on from `next` (`u32::MAX`: not
/// started; the first walk starts at an offset derived from `seed`); `None` when the window
/// is empty or `free` refuses every port of it.
fn walk(
    window: &Range<u16>,
    next: &AtomicU32,
    seed: u32,
    mut free: impl FnMut(u16) -> bool,
) -> Option<u16> {
    if window.is_empty() {
        return None;
    }
    let len = u32::from(window.end - window.start);
    // Below `len`: the counter stays far from the `u32::MAX` that means "not started".
    let start = seed.wrapping_mul(7919) % len;
    let _ = next.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    (0..len)
        .map(|_| window.start + (next.fetch_add(1, Ordering::Relaxed) % len) as u16)
        .find(|&port| free(port))
}

/// Whether no IPv4 TCP socket holds `port`: a bind to 0.0.0.0 (without `SO_REUSEADDR`, never
/// listening) clashes with a socket on any address, the loopback one included.
fn unbound(port: u16) -> bool {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, socket};
    let Ok(fd) = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(0, 0, 0, 0, port),
    )
    .is_ok()
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
        .and_then(|s| parse_range(&s))
        .unwrap_or((32768, 60999))
}

/// `ip_local_port_range`'s text: two port numbers.
fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    let range = (it.next()??, it.next()??);
    it.next().is_none().then_some(range)
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

/// A 127.0.0.1 port nothing listens on (one [`free_port`] hands out): a connect is refused.
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
        let window = pick_window((lo, hi));
        if window.is_empty() {
            eprintln!("ephemeral range {lo}-{hi} leaves no window: free_port falls back to port 0");
            return;
        }
        for _ in 0..50 {
            let port = free_port();
            assert!(
                !(lo..=hi).contains(&port),
                "{port} in the ephemeral range {lo}-{hi}"
            );
            assert!(
                window.contains(&port),
                "{port} outside the window {window:?}"
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
    fn a_port_held_on_loopback_or_any_address_is_not_unbound() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!unbound(held.local_addr().unwrap().port()));
        let connected = std::net::TcpStream::connect(held.local_addr().unwrap()).unwrap();
        assert!(
            !unbound(connected.local_addr().unwrap().port()),
            "a client's source port"
        );
        let fresh = free_port();
        assert!(unbound(fresh), "{fresh} was just handed out as free");
    }

    #[test]
    fn the_walk_starts_per_seed_steps_by_one_and_wraps() {
        let window = 20000..20010;
        let next = AtomicU32::new(u32::MAX);
        let start = 20000 + (3u32.wrapping_mul(7919) % 10) as u16;
        let got: Vec<u16> = (0..12)
            .map(|_| walk(&window, &next, 3, |_| true).unwrap())
            .collect();
        let want: Vec<u16> = (0..12).map(|i| 20000 + (start - 20000 + i) % 10).collect();
        assert_eq!(got, want);
        let counter = next.load(Ordering::Relaxed);
        assert!(
            counter < 10 + 12,
            "{counter}: the walk starts below the window's length"
        );
        // Another seed, another start.
        let other = AtomicU32::new(u32::MAX);
        assert_ne!(walk(&window, &other, 4, |_| true), Some(start));
    }

    #[test]
    fn the_walk_skips_taken_ports_and_gives_up_after_one_round() {
        let window = 30000..30004;
        let next = AtomicU32::new(u32::MAX);
        let first = walk(&window, &next, 0, |_| true).unwrap();
        assert_eq!(first, 30000, "seed 0 starts at the window's start");
        assert_eq!(walk(&window, &next, 0, |p| p != 30001), Some(30002));
        let mut asked = Vec::new();
        let none = walk(&window, &next, 0, |p| {
            asked.push(p);
            false
        });
        assert_eq!(none, None);
        assert_eq!(asked, [30003, 30000, 30001, 30002], "each port once");
        assert_eq!(walk(&(0..0), &next, 0, |_| true), None, "an empty window");
    }

    #[test]
    fn the_ephemeral_range_text_is_two_numbers() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("1024 65535"), Some((1024, 65535)));
        assert_eq!(parse_range("32768"), None);
        assert_eq!(parse_range("32768 x"), None);
        assert_eq!(parse_range("1 2 3"), None);
        assert_eq!(parse_range("70000 80000"), None);
        assert_eq!(parse_range(""), None);
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
        assert_eq!(pick_window((10000, 10000)), 10001..u16::MAX);
        // Neither side holds 1024 ports: fall back to the kernel's pick.
        assert_eq!(pick_window((10100, 65000)), 0..0);
        assert_eq!(pick_window((1024, 65535)), 0..0);
        // Exactly 1024 ports below is enough.
        assert_eq!(pick_window((11024, 65535)), 10000..11024);
    }
}
