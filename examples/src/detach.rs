//! Who may detach an echo server: the `echo-allow-detach` policy of the `DETACH` line.
//!
//! A `DETACH` makes the master start a replacement process while the detached one keeps its
//! connections, so a client allowed to send it can multiply processes. The echo examples
//! therefore accept it only from peers the policy allows; the default, `loopback`, keeps the
//! local tests and demos working without letting remote clients do it.

use std::io;
use std::net::{IpAddr, SocketAddr};

use zmaster_modes::runtime::{Config, Error, ErrorKind};

/// The config key holding the policy.
pub const KEY: &str = "echo-allow-detach";

/// The line a refused `DETACH` is answered with (the connection stays open).
pub const REFUSED: &str = "ERR detach not allowed";

/// The values of `echo-allow-detach`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `yes`: any peer may detach the process.
    Anyone,
    /// `loopback` (the default): peers on 127.0.0.0/8, `::1` (also IPv4-mapped) or a unix
    /// socket.
    Loopback,
    /// `no`: `DETACH` is always refused.
    Never,
}

/// The peer of a connection, as far as the policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer.
    Ip(IpAddr),
    /// A unix socket peer: on this host, like loopback.
    Unix,
    /// A peer whose address is unknown (e.g. `getpeername` failed): never trusted.
    Unknown,
}

impl Policy {
    /// The policy when the key is not set.
    pub const DEFAULT: Policy = Policy::Loopback;

    /// Parses a config value: `yes`, `loopback` or `no` (ASCII case ignored, surrounding
    /// blanks trimmed); `None` for anything else.
    pub fn parse(text: &str) -> Option<Policy> {
        let text = text.trim();
        [
            ("yes", Policy::Anyone),
            ("loopback", Policy::Loopback),
            ("no", Policy::Never),
        ]
        .into_iter()
        .find_map(|(name, policy)| text.eq_ignore_ascii_case(name).then_some(policy))
    }

    /// Whether `peer` may detach the process.
    pub fn allows(self, peer: Peer) -> bool {
        match self {
            Policy::Anyone => true,
            Policy::Never => false,
            Policy::Loopback => match peer {
                Peer::Ip(ip) => ip.to_canonical().is_loopback(),
                Peer::Unix => true,
                Peer::Unknown => false,
            },
        }
    }
}

impl Peer {
    /// The peer of a TCP connection from its `peer_addr()` result.
    pub fn of_tcp(addr: io::Result<SocketAddr>) -> Peer {
        addr.map_or(Peer::Unknown, |a| Peer::Ip(a.ip()))
    }
}

/// The policy set by `echo-allow-detach` in `config` ([`Policy::DEFAULT`] when unset).
///
/// # Errors
/// `ErrorKind::Config` for a value other than `yes`, `loopback` or `no`.
pub fn from_config(config: &Config) -> Result<Policy, Error> {
    let Some(text) = config.get(KEY) else {
        return Ok(Policy::DEFAULT);
    };
    Policy::parse(text).ok_or_else(|| {
        // At most 100 characters of a bad value: the error stays one readable line.
        let shown: String = text.chars().take(100).collect();
        let more = if shown.len() < text.len() { "..." } else { "" };
        Error::new(
            ErrorKind::Config,
            format!("{KEY} = {shown:?}{more}: expected yes, loopback or no"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Peer {
        Peer::Ip(text.parse().expect("an IP address"))
    }

    #[test]
    fn tcp_peer_is_its_ip_and_a_failed_lookup_is_unknown() {
        let addr: SocketAddr = "192.0.2.2:25".parse().expect("addr");
        assert_eq!(Peer::of_tcp(Ok(addr)), Peer::Ip(addr.ip()));
        assert_eq!(
            Peer::of_tcp(Err(io::ErrorKind::NotConnected.into())),
            Peer::Unknown
        );
    }

    #[test]
    fn config_value_or_the_default_and_a_short_error_line() {
        let mut config = Config::default();
        assert_eq!(from_config(&config).ok(), Some(Policy::Loopback));
        config.set(KEY, "no");
        assert_eq!(from_config(&config).ok(), Some(Policy::Never));
        config.set(KEY, &"x".repeat(5000));
        let text = from_config(&config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains(KEY) && text.contains("expected yes, loopback or no"),
            "{text}"
        );
        assert!(text.contains("...") && text.len() < 300, "{text}");
        config.set(KEY, "maybe");
        let text = from_config(&config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains("\"maybe\":") && !text.contains("..."),
            "{text}"
        );
    }

    #[test]
    fn parses_the_three_values_and_nothing_else() {
        assert_eq!(Policy::parse("yes"), Some(Policy::Anyone));
        assert_eq!(Policy::parse("loopback"), Some(Policy::Loopback));
        assert_eq!(Policy::parse("no"), Some(Policy::Never));
        assert_eq!(Policy::parse(" No "), Some(Policy::Never));
        assert_eq!(Policy::parse("LOOPBACK"), Some(Policy::Loopback));
        for bad in ["", "y", "true", "off", "loop back", "yes please", "nope"] {
            assert_eq!(Policy::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Policy::DEFAULT, Policy::Loopback);
    }

    #[test]
    fn loopback_allows_local_peers_only() {
        let local = [
            ip("127.0.0.1"),
            ip("127.255.0.9"),
            ip("::1"),
            ip("::ffff:127.0.0.1"),
            Peer::Unix,
        ];
        let remote = [
            ip("192.0.2.2"),
            ip("10.0.0.1"),
            ip("0.0.0.0"),
            ip("128.0.0.1"),
            ip("fd00::2"),
            ip("::ffff:192.0.2.2"),
            ip("::2"),
            Peer::Unknown,
        ];
        for peer in local {
            assert!(Policy::Loopback.allows(peer), "{peer:?}");
        }
        for peer in remote {
            assert!(!Policy::Loopback.allows(peer), "{peer:?}");
        }
        for peer in local.into_iter().chain(remote) {
            assert!(Policy::Anyone.allows(peer), "{peer:?}");
            assert!(!Policy::Never.allows(peer), "{peer:?}");
        }
    }
}
