//! The crate's one error type: a kind, a location in a config file when there is one, and context.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, broadly; the message says exactly what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A config line that is not `key = value`.
    Syntax,
    /// A value that does not parse as the type its key needs (int, bool, duration, size).
    Value,
    /// A bad `server-service` entry.
    Address,
    /// A missing key or an inconsistent config (e.g. a service file without `server-command`).
    Config,
    /// A bad command line.
    Usage,
    /// A malformed master/server protocol argument.
    Protocol,
    /// An operating-system call failed; the message says what was attempted.
    Io,
}

/// Where in a config file something came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line number.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// An error of zmaster-core: renders as one line, `file:line: message` when it has a location.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    location: Option<Location>,
    message: String,
    source: Option<io::Error>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            location: None,
            message: message.into(),
            source: None,
        }
    }

    /// An OS error with what was attempted, e.g. `Error::io("read config dir /etc/x", e)`.
    pub fn io(attempted: impl Into<String>, source: io::Error) -> Error {
        Error {
            kind: ErrorKind::Io,
            location: None,
            message: attempted.into(),
            source: Some(source),
        }
    }

    /// The same error, located at `path:line` (keeps an existing location).
    pub fn at(mut self, path: &Path, line: usize) -> Error {
        if self.location.is_none() {
            self.location = Some(Location {
                path: path.to_path_buf(),
                line,
            });
        }
        self
    }

    /// The same error, located where `location` says (if anywhere).
    pub fn at_location(mut self, location: Option<&Location>) -> Error {
        if self.location.is_none() {
            self.location = location.cloned();
        }
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The config file location, if the error has one.
    pub fn location(&self) -> Option<&Location> {
        self.location.as_ref()
    }

    /// The message without location or OS cause.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

/// At most this many bytes of a user's value are quoted in an error message.
pub const QUOTE_LIMIT: usize = 100;

/// `value` quoted and escaped for an error message (as `{:?}` does), cut to its first
/// [`QUOTE_LIMIT`] bytes with `…(N bytes)` appended when longer: a 2 MB bad value gives a short
/// line, not a 2 MB one.
///
/// ```
/// use zmaster_core::error::quoted;
/// assert_eq!(quoted("a\tb"), r#""a\tb""#);
/// let long = "x".repeat(150);
/// assert_eq!(quoted(&long), format!("{:?}…(150 bytes)", &long[..100]));
/// ```
pub fn quoted(value: &str) -> String {
    if value.len() <= QUOTE_LIMIT {
        return format!("{value:?}");
    }
    let mut cut = QUOTE_LIMIT;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}…({} bytes)", &value[..cut], value.len())
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_escapes_and_cuts_at_the_limit() {
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("a\"b\n"), "\"a\\\"b\\n\"");
        let at_limit = "y".repeat(QUOTE_LIMIT);
        assert_eq!(quoted(&at_limit), format!("{at_limit:?}"));
        let over = "y".repeat(QUOTE_LIMIT + 1);
        assert_eq!(quoted(&over), format!("{at_limit:?}…(101 bytes)"));
        // A cut inside a multi-byte character backs up to its start.
        let wide = format!("{}é", "z".repeat(QUOTE_LIMIT - 1));
        assert_eq!(
            quoted(&wide),
            format!("{:?}…(101 bytes)", "z".repeat(QUOTE_LIMIT - 1))
        );
        let long = "€".repeat(1_000);
        let shown = quoted(&long);
        assert!(shown.ends_with("…(3000 bytes)"), "{shown}");
        assert_eq!(shown.matches('€').count(), 33);
    }

    #[test]
    fn display_has_location_message_and_cause() {
        let e = Error::new(ErrorKind::Value, "bad").at(Path::new("a.cf"), 3);
        assert_eq!(e.to_string(), "a.cf:3: bad");
        assert_eq!(e.kind(), ErrorKind::Value);
        assert_eq!(e.message(), "bad");
        let kept = e.at(Path::new("b.cf"), 9);
        assert_eq!(kept.location().unwrap().line, 3);
        let io = Error::io("read x", io::Error::from(io::ErrorKind::NotFound));
        assert!(io.to_string().starts_with("read x: "), "{io}");
        assert_eq!(io.kind(), ErrorKind::Io);
        assert!(std::error::Error::source(&io).is_some());
        assert!(std::error::Error::source(&kept).is_none());
        let loc = Location {
            path: "c.cf".into(),
            line: 1,
        };
        let moved = Error::new(ErrorKind::Config, "m").at_location(Some(&loc));
        assert_eq!(moved.to_string(), "c.cf:1: m");
        assert_eq!(
            Error::new(ErrorKind::Config, "m")
                .at_location(None)
                .location(),
            None
        );
        let first = Error::new(ErrorKind::Config, "m").at(Path::new("d.cf"), 2);
        assert_eq!(first.at_location(Some(&loc)).to_string(), "d.cf:2: m");
    }
}
