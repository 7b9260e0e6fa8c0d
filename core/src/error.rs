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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}
