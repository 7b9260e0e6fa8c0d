//! The master's error type: a config problem (from zmaster-core) or a failed OS operation.

use std::fmt;
use std::io;

/// What kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The config dir or a service file is invalid.
    Config,
    /// The command line is invalid.
    Usage,
    /// Another master holds the pid file.
    AlreadyRunning,
    /// An OS call failed.
    Io,
}

/// An error of the master: one line, saying what was attempted and why it failed.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// `Result` with the master's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a message and no cause.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An OS error: `attempted` says what was tried, e.g. `bind 127.0.0.1:25`.
    pub fn io(attempted: impl Into<String>, source: io::Error) -> Error {
        Error {
            kind: ErrorKind::Io,
            message: attempted.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<zmaster_core::Error> for Error {
    fn from(e: zmaster_core::Error) -> Error {
        let kind = match e.kind() {
            zmaster_core::ErrorKind::Usage => ErrorKind::Usage,
            zmaster_core::ErrorKind::Io => ErrorKind::Io,
            _ => ErrorKind::Config,
        };
        Error {
            kind,
            message: e.to_string(),
            source: None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
