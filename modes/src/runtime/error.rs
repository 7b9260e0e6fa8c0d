//! The error type of zmaster-modes: a kind plus a one-line message saying what was attempted.

use std::fmt;
use std::io;

/// What went wrong, broadly; the message says exactly what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A bad command line (`argv[1]` neither `MASTER` nor `alone`, a missing value, ...).
    Usage,
    /// A config file or value that does not parse, or a missing key.
    Config,
    /// The master's `-server-service` or fd layout (SPEC §5) is not what it should be.
    Protocol,
    /// An operating-system call failed; the message says what was attempted.
    Io,
    /// A registration that came too late or was refused by the mode.
    Register,
}

/// An error of zmaster-modes; renders as one line, `message: cause`.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An OS error with what was attempted, e.g. `Error::io("bind 127.0.0.1:80", e)`.
    pub fn io(attempted: impl Into<String>, source: io::Error) -> Error {
        Error {
            kind: ErrorKind::Io,
            message: attempted.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The same error with a cause attached (shown after the message).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the cause.
    pub fn message(&self) -> &str {
        &self.message
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

impl From<zmaster_core::Error> for Error {
    fn from(e: zmaster_core::Error) -> Error {
        use zmaster_core::ErrorKind as Core;
        let kind = match e.kind() {
            Core::Usage => ErrorKind::Usage,
            Core::Protocol => ErrorKind::Protocol,
            Core::Io => ErrorKind::Io,
            _ => ErrorKind::Config,
        };
        Error {
            kind,
            message: e.to_string(),
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_with_cause() {
        let e = Error::io(
            "bind 127.0.0.1:1",
            io::Error::from(io::ErrorKind::AddrInUse),
        );
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().starts_with("bind 127.0.0.1:1: "), "{e}");
        let core =
            zmaster_core::Error::new(zmaster_core::ErrorKind::Usage, "option -x needs a value");
        let e = Error::from(core);
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert_eq!(e.to_string(), "option -x needs a value");
    }
}
