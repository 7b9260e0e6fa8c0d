//! Service addresses (`server-service`): `name://addr` lists of inet, unix and fifo endpoints.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::error::{Error, ErrorKind, Result, quoted};
use crate::protocol::ListenerKind;

/// The longest unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
pub const MAX_UNIX_PATH: usize = 107;

/// One endpoint a service listens on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP socket (`HOST:PORT`; `0` or empty host = every IPv4 address; `[v6]:PORT`).
    Inet(SocketAddr),
    /// A unix stream socket (`local:PATH`, or any address without `:`).
    Unix(PathBuf),
    /// A FIFO (`fifo:PATH`).
    Fifo(PathBuf),
}

impl Address {
    /// True when both cannot be bound at once: the same address, a wildcard (`0:P`) and any
    /// address of its family on its port, or the same file system path (a unix socket and a
    /// FIFO cannot share one). IPv4 and IPv6 never conflict: IPv6 sockets are bound
    /// `IPV6_V6ONLY` (see `bind`).
    pub fn conflicts_with(&self, other: &Address) -> bool {
        match (self, other) {
            (Address::Unix(a) | Address::Fifo(a), Address::Unix(b) | Address::Fifo(b)) => a == b,
            (Address::Inet(a), Address::Inet(b)) => {
                a.port() == b.port()
                    && a.is_ipv4() == b.is_ipv4()
                    && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
            }
            _ => false,
        }
    }

    /// The listener kind this address makes (the `T` of the protocol's `name:Tfd`).
    pub fn kind(&self) -> ListenerKind {
        match self {
            Address::Inet(_) => ListenerKind::Inet,
            Address::Unix(_) => ListenerKind::Unix,
            Address::Fifo(_) => ListenerKind::Fifo,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(a) => a.fmt(f),
            Address::Unix(p) => write!(f, "local:{}", p.display()),
            Address::Fifo(p) => write!(f, "fifo:{}", p.display()),
        }
    }
}

/// One `server-service` entry: a name (may be empty) and an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAddr {
    /// The part before `://`, or `""`.
    pub name: String,
    /// The parsed address.
    pub addr: Address,
}

impl fmt::Display for ServiceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            // A nameless address whose text holds `://` (a unix path like `//x` or `/a://b`)
            // would read back as `NAME://...`: spell the empty name out so it parses back.
            let text = self.addr.to_string();
            if text.contains("://") {
                write!(f, "://{text}")
            } else {
                f.write_str(&text)
            }
        } else {
            write!(f, "{}://{}", self.name, self.addr)
        }
    }
}

fn bad(entry: &str, why: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Address,
        format!("bad service address {}: {why}", quoted(entry)),
    )
}

/// Parses a whole `server-service` value: entries separated by `,` `;` space or tab.
///
/// # Errors
/// A bad entry (quoted in the message), or the same address twice.
pub fn parse_service_list(text: &str) -> Result<Vec<ServiceAddr>> {
    let mut out: Vec<ServiceAddr> = Vec::new();
    for entry in text
        .split([',', ';', ' ', '\t', '\r', '\n'])
        .filter(|e| !e.is_empty())
    {
        let parsed = parse_entry(entry)?;
        if out.iter().any(|o| o.addr.conflicts_with(&parsed.addr)) {
            return Err(Error::new(
                ErrorKind::Address,
                format!(
                    "service address {} is listed twice ({})",
                    quoted(entry),
                    quoted(&parsed.addr.to_string())
                ),
            ));
        }
        out.push(parsed);
    }
    if out.is_empty() {
        return Err(Error::new(ErrorKind::Address, "no service address given"));
    }
    Ok(out)
}

/// Parses one entry, `name://addr` or bare `addr`.
///
/// # Errors
/// The entry is malformed; the message quotes it.
pub fn parse_entry(entry: &str) -> Result<ServiceAddr> {
    let (name, addr) = match entry.split_once("://") {
        Some((name, addr)) => {
            if name.contains(':') {
                return Err(bad(entry, "the service name may not contain ':'"));
            }
            (name, addr)
        }
        None => ("", entry),
    };
    if addr.is_empty() {
        return Err(bad(entry, "empty address"));
    }
    let addr = parse_addr(addr).map_err(|why| bad(entry, why))?;
    Ok(ServiceAddr {
        name: name.to_owned(),
        addr,
    })
}

fn parse_path(path: &str) -> std::result::Result<PathBuf, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    Ok(PathBuf::from(path))
}

/// A unix socket path: one that fits `sun_path` with its NUL.
fn unix_path(path: &str) -> std::result::Result<Address, String> {
    let path = parse_path(path)?;
    if path.as_os_str().len() > MAX_UNIX_PATH {
        return Err(format!(
            "unix socket path longer than {MAX_UNIX_PATH} bytes"
        ));
    }
    Ok(Address::Unix(path))
}

fn parse_addr(addr: &str) -> std::result::Result<Address, String> {
    if let Some(path) = addr
        .strip_prefix("local:")
        .or_else(|| addr.strip_prefix("unix:"))
    {
        return unix_path(path);
    }
    if let Some(path) = addr.strip_prefix("fifo:") {
        return parse_path(path).map(Address::Fifo);
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return unix_path(addr);
    };
    let port = parse_port(port)?;
    let ip = parse_host(host)?;
    Ok(Address::Inet(SocketAddr::new(ip, port)))
}

fn parse_port(port: &str) -> std::result::Result<u16, String> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "port {} is not a number from 1 to 65535",
            quoted(port)
        ));
    }
    match port.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!("port {} is out of range (1..65535)", quoted(port))),
    }
}

/// A DNS name is at most 253 bytes of letters, digits, `-` and `.`: anything else is refused
/// before the resolver sees it.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn parse_host(host: &str) -> std::result::Result<IpAddr, String> {
    if host.is_empty() || host == "0" || host == "*" {
        return Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or("unclosed '[' in IPv6 address")?;
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| format!("{} is not an IPv6 address", quoted(inner)));
    }
    if host.contains(':') {
        return Err("an IPv6 address must be written in brackets, e.g. [::1]:8080".into());
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(IpAddr::V4(ip));
    }
    if !is_host_name(host) {
        return Err(format!("{} is not a valid host name", quoted(host)));
    }
    let mut found = (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host {}: {e}", quoted(host)))?;
    let addrs: Vec<SocketAddr> = found.by_ref().collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(|a| a.ip())
        .ok_or_else(|| format!("host {} has no address", quoted(host)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    fn one(entry: &str) -> ServiceAddr {
        parse_entry(entry).unwrap_or_else(|e| panic!("{entry}: {e}"))
    }

    fn inet(ip: [u8; 4], port: u16) -> Address {
        Address::Inet(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
    }

    #[test]
    fn inet_forms() {
        assert_eq!(one("127.0.0.1:25").addr, inet([127, 0, 0, 1], 25));
        assert_eq!(one("0:143").addr, inet([0, 0, 0, 0], 143));
        assert_eq!(one(":110").addr, inet([0, 0, 0, 0], 110));
        assert_eq!(one("0.0.0.0:143").addr, one("0:143").addr);
        assert_eq!(one("localhost:8080").addr, inet([127, 0, 0, 1], 8080));
        let v6 = one("[::1]:9000");
        assert_eq!(
            v6.addr,
            Address::Inet(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 9000))
        );
    }

    #[test]
    fn star_host_is_every_ipv4_address() {
        assert_eq!(one("*:25").addr, inet([0, 0, 0, 0], 25));
        assert_eq!(one("smtp://*:2525").addr, inet([0, 0, 0, 0], 2525));
    }

    #[test]
    fn host_names_may_have_dashes_and_dots() {
        for name in ["localhost", "mail-1.example.com", "a.b-c", "x-", "."] {
            assert!(is_host_name(name), "{name}");
        }
        for name in ["a_b", "bad!host", "a b", "ü.example", "a/b"] {
            assert!(!is_host_name(name), "{name}");
        }
        let longest = format!("{}.example", "a".repeat(245));
        assert_eq!(longest.len(), 253);
        assert!(is_host_name(&longest));
        assert!(!is_host_name(&format!("a{longest}")));
        // Dashes and dots pass the check and reach the resolver; anything else does not.
        let err = parse_entry("bad_host.example:80").unwrap_err().to_string();
        assert!(err.contains("not a valid host name"), "{err}");
    }

    #[test]
    fn unix_paths_up_to_107_bytes_in_both_forms() {
        let fits = format!("/{}", "p".repeat(MAX_UNIX_PATH - 1));
        let over = format!("/{}", "p".repeat(MAX_UNIX_PATH));
        assert_eq!((fits.len(), over.len()), (107, 108));
        for prefix in ["local:", "unix:", ""] {
            assert_eq!(
                one(&format!("{prefix}{fits}")).addr,
                Address::Unix(fits.clone().into()),
                "{prefix}"
            );
            let err = parse_entry(&format!("{prefix}{over}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("longer than 107 bytes"), "{prefix}: {err}");
        }
        // A FIFO path is not a sockaddr: no such limit.
        assert_eq!(
            one(&format!("fifo:{over}")).addr,
            Address::Fifo(over.into())
        );
    }

    #[test]
    fn kinds_and_conflicts() {
        let (i, u, f) = (one("0:1").addr, one("local:/a").addr, one("fifo:/a").addr);
        assert_eq!(
            [i.kind(), u.kind(), f.kind()],
            [ListenerKind::Inet, ListenerKind::Unix, ListenerKind::Fifo]
        );
        assert!(u.conflicts_with(&f) && f.conflicts_with(&u) && f.conflicts_with(&f));
        assert!(!i.conflicts_with(&u) && !u.conflicts_with(&i));
        assert!(i.conflicts_with(&one("0.0.0.0:1").addr));
        assert!(!i.conflicts_with(&one("0:2").addr));
        assert!(!f.conflicts_with(&one("fifo:/b").addr));
    }

    #[test]
    fn a_wildcard_conflicts_with_a_specific_address_of_its_family_on_its_port() {
        let a = |s: &str| one(s).addr;
        for wildcard in ["0:7", "0.0.0.0:7", "*:7"] {
            for specific in ["127.0.0.1:7", "10.1.2.3:7"] {
                assert!(
                    a(wildcard).conflicts_with(&a(specific)),
                    "{wildcard} {specific}"
                );
                assert!(
                    a(specific).conflicts_with(&a(wildcard)),
                    "{specific} {wildcard}"
                );
            }
            assert!(!a(wildcard).conflicts_with(&a("127.0.0.1:8")));
            // IPv6 sockets are bound IPV6_V6ONLY: the families never share a port.
            assert!(!a(wildcard).conflicts_with(&a("[::]:7")));
            assert!(!a("[::1]:7").conflicts_with(&a(wildcard)));
        }
        assert!(a("[::]:7").conflicts_with(&a("[::1]:7")));
        assert!(a("[::1]:7").conflicts_with(&a("[::]:7")));
        assert!(!a("[::]:7").conflicts_with(&a("[::1]:8")));
        assert!(!a("127.0.0.1:7").conflicts_with(&a("127.0.0.2:7")));
        assert!(!a("[::1]:7").conflicts_with(&a("[::2]:7")));
    }

    #[test]
    fn display_forms() {
        assert_eq!(one("smtp://*:25").to_string(), "smtp://0.0.0.0:25");
        assert_eq!(one("/run/x").to_string(), "local:/run/x");
        assert_eq!(one("f://fifo:/run/y").to_string(), "f://fifo:/run/y");
        assert_eq!(one("[::1]:80").to_string(), "[::1]:80");
    }

    #[test]
    fn named_entries() {
        let s = one("smtp://0:25");
        assert_eq!(
            (s.name.as_str(), s.addr.kind()),
            ("smtp", ListenerKind::Inet)
        );
        assert_eq!(
            one("ctl://local:/tmp/ctl.sock").addr,
            Address::Unix("/tmp/ctl.sock".into())
        );
        assert_eq!(
            one("t://fifo:/tmp/t.fifo").addr,
            Address::Fifo("/tmp/t.fifo".into())
        );
        assert_eq!(
            one("/tmp/plain.sock").addr,
            Address::Unix("/tmp/plain.sock".into())
        );
        assert_eq!(
            one("relative/sock").addr,
            Address::Unix("relative/sock".into())
        );
        assert_eq!(one("://127.0.0.1:1").name, "");
    }

    #[test]
    fn lists_with_all_separators() {
        let list = parse_service_list("a://0:1, b://local:/x;c://fifo:/y\t 127.0.0.1:2").unwrap();
        let names: Vec<_> = list.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", ""]);
    }

    #[test]
    fn bad_entries_are_quoted() {
        for (entry, why) in [
            ("echo://127.0.0.1:99999", "out of range"),
            ("127.0.0.1:0", "out of range"),
            ("127.0.0.1:", "not a number"),
            ("127.0.0.1:http", "not a number"),
            ("a:b://0:1", "may not contain ':'"),
            ("x://", "empty address"),
            ("::1:80", "brackets"),
            ("[::1:80", "unclosed"),
            ("[zz]:80", "not an IPv6"),
            ("bad!host:80", "not a valid host"),
            ("local:", "empty path"),
            ("fifo:", "empty path"),
        ] {
            let err = parse_service_list(entry).unwrap_err().to_string();
            assert!(err.contains(&format!("{entry:?}")), "{entry}: {err}");
            assert!(err.contains(why), "{entry}: {err}");
        }
        let long = format!("local:/{}", "x".repeat(200));
        assert!(
            parse_entry(&long)
                .unwrap_err()
                .to_string()
                .contains("longer than")
        );
        assert!(
            parse_service_list("")
                .unwrap_err()
                .to_string()
                .contains("no service address")
        );
        assert!(parse_service_list(" , ;").is_err());
    }

    #[test]
    fn duplicates_compare_parsed_addresses() {
        let err = parse_service_list("a://0:143, b://0.0.0.0:143")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listed twice"), "{err}");
        assert!(parse_service_list("local:/a, /a").is_err());
        assert!(parse_service_list("local:/a, fifo:/a").is_err());
        assert!(parse_service_list("local:/a, fifo:/b").is_ok());
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "smtp://0.0.0.0:25",
            "local:/tmp/x",
            "f://fifo:/tmp/y",
            "[::1]:80",
            // Nameless paths holding `://` (found by the fuzz target): shown as `://...`.
            "://local:/a://b",
            "://fifo:/x://y",
            "//x",
            "///////",
        ] {
            let parsed = one(text);
            assert_eq!(one(&parsed.to_string()), parsed);
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,80}") {
            let _ = parse_service_list(&s);
        }

        #[test]
        fn ports_round_trip(port in 1u16..) {
            prop_assert_eq!(one(&format!("127.0.0.1:{port}")).addr, inet([127, 0, 0, 1], port));
        }
    }
}
