//! The master/server protocol (LIB-ZC compatible): fd layout and the child's argv.
//!
//! A server child of the master sees:
//! - fd 3 ([`GENERATION_FD`]): the write end of the master's generation pipe. It reports an
//!   error (EPIPE) or POLLERR/POLLHUP once the master closes the read end — on reload or when the
//!   master dies: the child must softstop.
//! - fd 4 ([`PRIVATE_FD`]): the read end of a pipe private to this child. The master keeps the
//!   write end and polls it: POLLERR there means the child closed fd 4 (it exited or detached).
//! - fds 5, 6, ... ([`FIRST_LISTENER_FD`]): the listeners, in `-server-service` order.
//!
//! argv: `[basename(cmd), "MASTER", "-server-config-path", DIR, "-config", DIR/NAME.cf,
//! "-server-service", "name:Tfd,name:Tfd,..."]`, `T` = `i` inet, `u` unix, `f` fifo.

use std::ffi::OsString;
use std::fmt;
use std::os::fd::RawFd;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result, quoted};

/// fd 3 in a child: the write end of the master's generation pipe.
pub const GENERATION_FD: RawFd = 3;
/// fd 4 in a child: the read end of the pipe private to this child.
pub const PRIVATE_FD: RawFd = 4;
/// fd 5 in a child: the first listener; the next ones follow in order.
pub const FIRST_LISTENER_FD: RawFd = 5;
/// The variable naming a zmaster child's board memfd and its slot, `<fd>:<slot>` (a zmaster
/// extension; LIB-ZC servers ignore it): the open connections of a service generation's
/// processes, one slot each, which their acceptors balance against.
pub const BOARD_ENV: &str = "ZM_BOARD";
/// Slots on a board: the most processes of one service generation that balance.
pub const BOARD_SLOTS: usize = 64;
/// Bytes per board slot (a cache line): the connection count (`u32`, native order) at offset
/// 0, 1 (`u32`) at offset 4 while the process accepts. The master zeroes a reaped child's.
pub const BOARD_SLOT_BYTES: usize = 64;
/// argv[1] of a server started by a master.
pub const MASTER_MARK: &str = "MASTER";
/// argv[1] of a server started by hand, binding its own listeners.
pub const ALONE_MARK: &str = "alone";

/// The kind of an inherited listener: the `T` of `name:Tfd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// A TCP listener (`i`).
    Inet,
    /// A unix stream listener (`u`).
    Unix,
    /// A FIFO opened read-write (`f`).
    Fifo,
}

impl ListenerKind {
    /// The protocol letter.
    pub fn code(self) -> char {
        match self {
            ListenerKind::Inet => 'i',
            ListenerKind::Unix => 'u',
            ListenerKind::Fifo => 'f',
        }
    }

    /// The kind for a protocol letter.
    pub fn from_code(c: char) -> Option<ListenerKind> {
        match c {
            'i' => Some(ListenerKind::Inet),
            'u' => Some(ListenerKind::Unix),
            'f' => Some(ListenerKind::Fifo),
            _ => None,
        }
    }
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenerKind::Inet => "inet",
            ListenerKind::Unix => "unix",
            ListenerKind::Fifo => "fifo",
        })
    }
}

/// One listener a server inherited from its master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InheritedListener {
    /// The service name (may be empty).
    pub name: String,
    /// What kind of socket.
    pub kind: ListenerKind,
    /// The fd number in the child.
    pub fd: RawFd,
}

/// Builds the `-server-service` value: `name:Tfd,name:Tfd,...`.
pub fn format_server_service(listeners: &[InheritedListener]) -> String {
    let parts: Vec<String> = listeners
        .iter()
        .map(|l| format!("{}:{}{}", l.name, l.kind.code(), l.fd))
        .collect();
    parts.join(",")
}

/// Parses a `-server-service` value given by a master.
///
/// # Errors
/// An entry that is not `name:Tfd` with a known `T` and an fd of at least 5 (quoted).
pub fn parse_server_service(text: &str) -> Result<Vec<InheritedListener>> {
    let bad = |entry: &str, why: &str| {
        Error::new(
            ErrorKind::Protocol,
            format!(
                "bad -server-service entry {} from the master: {why}",
                quoted(entry)
            ),
        )
    };
    let mut out: Vec<InheritedListener> = Vec::new();
    for entry in text.split(',').filter(|e| !e.is_empty()) {
        let (name, spec) = entry
            .rsplit_once(':')
            .ok_or_else(|| bad(entry, "expected name:Tfd"))?;
        let mut chars = spec.chars();
        let kind = chars
            .next()
            .and_then(ListenerKind::from_code)
            .ok_or_else(|| bad(entry, "type must be i, u or f"))?;
        let fd: RawFd = chars
            .as_str()
            .parse()
            .map_err(|_| bad(entry, "fd is not a number"))?;
        if fd < FIRST_LISTENER_FD {
            return Err(bad(entry, "listener fds start at 5"));
        }
        if out.iter().any(|l| l.fd == fd) {
            return Err(bad(entry, "fd listed twice"));
        }
        out.push(InheritedListener {
            name: name.to_owned(),
            kind,
            fd,
        });
    }
    if out.is_empty() {
        return Err(Error::new(
            ErrorKind::Protocol,
            "empty -server-service from the master",
        ));
    }
    Ok(out)
}

/// The listeners a child gets for these (name, kind) pairs: fds 5, 6, ... in order.
pub fn assign_listener_fds<'a>(
    services: impl IntoIterator<Item = (&'a str, ListenerKind)>,
) -> Vec<InheritedListener> {
    services
        .into_iter()
        .zip(FIRST_LISTENER_FD..)
        .map(|((name, kind), fd)| InheritedListener {
            name: name.to_owned(),
            kind,
            fd,
        })
        .collect()
}

/// The argv of a server child (argv[0] included): see the module docs.
pub fn child_argv(
    command: &Path,
    config_path: &Path,
    service_file: &Path,
    listeners: &[InheritedListener],
) -> Vec<OsString> {
    let argv0 = command
        .file_name()
        .map_or_else(|| command.as_os_str().to_owned(), |n| n.to_owned());
    vec![
        argv0,
        MASTER_MARK.into(),
        "-server-config-path".into(),
        config_path.as_os_str().to_owned(),
        "-config".into(),
        service_file.as_os_str().to_owned(),
        "-server-service".into(),
        format_server_service(listeners).into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn argv_layout_matches_lib_zc() {
        let listeners = assign_listener_fds([
            ("smtp", ListenerKind::Inet),
            ("", ListenerKind::Unix),
            ("t", ListenerKind::Fifo),
        ]);
        let argv = child_argv(
            Path::new("/usr/sbin/smtpd"),
            Path::new("/etc/svc"),
            Path::new("/etc/svc/smtpd.cf"),
            &listeners,
        );
        let argv: Vec<_> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            argv,
            [
                "smtpd",
                "MASTER",
                "-server-config-path",
                "/etc/svc",
                "-config",
                "/etc/svc/smtpd.cf",
                "-server-service",
                "smtp:i5,:u6,t:f7"
            ]
        );
    }

    #[test]
    fn server_service_round_trips() {
        let listeners = assign_listener_fds([("a", ListenerKind::Inet), ("b", ListenerKind::Unix)]);
        assert_eq!(
            parse_server_service(&format_server_service(&listeners)).unwrap(),
            listeners
        );
        assert_eq!(parse_server_service(":i5").unwrap()[0].name, "");
    }

    #[test]
    fn every_kind_parses_by_its_letter() {
        let parsed = parse_server_service("a:i5,b:u6,t:f7").unwrap();
        let kinds: Vec<_> = parsed
            .iter()
            .map(|l| (l.name.as_str(), l.kind, l.fd))
            .collect();
        assert_eq!(
            kinds,
            [
                ("a", ListenerKind::Inet, 5),
                ("b", ListenerKind::Unix, 6),
                ("t", ListenerKind::Fifo, 7)
            ]
        );
        for kind in [ListenerKind::Inet, ListenerKind::Unix, ListenerKind::Fifo] {
            assert_eq!(ListenerKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(ListenerKind::from_code('x'), None);
        // The name may contain ':' (the spec is after the last one).
        assert_eq!(parse_server_service("a:b:i5").unwrap()[0].name, "a:b");
    }

    #[test]
    fn kinds_display_as_words() {
        assert_eq!(ListenerKind::Inet.to_string(), "inet");
        assert_eq!(ListenerKind::Unix.to_string(), "unix");
        assert_eq!(ListenerKind::Fifo.to_string(), "fifo");
    }

    #[test]
    fn argv0_of_a_bare_command_is_the_command() {
        let argv = child_argv(Path::new("/"), Path::new("d"), Path::new("d/s.cf"), &[]);
        assert_eq!(argv[0], "/");
        assert_eq!(argv.len(), 8);
    }

    #[test]
    fn malformed_server_service() {
        for (bad, why) in [
            ("", "empty"),
            (",", "empty"),
            ("a", "expected name:Tfd"),
            ("a:x5", "type must be"),
            ("a:", "type must be"),
            ("a:i", "not a number"),
            ("a:ix", "not a number"),
            ("a:i4", "start at 5"),
            ("a:i-5", "start at 5"),
            ("a:i5,b:u5", "listed twice"),
        ] {
            let err = parse_server_service(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Protocol, "{bad:?}");
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
        assert_eq!(parse_server_service("a:i5,,b:u6").unwrap().len(), 2);
    }

    proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,60}") {
            let _ = parse_server_service(&s);
        }
    }
}
