//! Loopback ports and addresses for tests.

use std::net::{IpAddr, TcpListener, UdpSocket};

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral 127.0.0.1 port")
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
