//! The pid file: an exclusive `flock` held for the master's lifetime, and `--try-lock`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// A locked pid file holding this process's pid; the lock is released when it is dropped
/// (or when the process dies).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

impl PidFile {
    /// Opens or creates `path`, takes `flock(LOCK_EX|LOCK_NB)` and writes the pid.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyRunning`] when another process holds the lock (the file is left as
    /// it is); an I/O error when the file cannot be opened or written.
    pub fn acquire(path: &Path) -> Result<PidFile> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(|e| Error::io(format!("open pid file {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text.split_whitespace().next().unwrap_or("?").to_owned();
                return Err(Error::new(
                    ErrorKind::AlreadyRunning,
                    format!(
                        "the master is already running (pid {holder} holds the lock on {})",
                        path.display()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("lock pid file {}", path.display()), e));
            }
        }
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.flush()
        };
        write(&mut file).map_err(|e| Error::io(format!("write pid file {}", path.display()), e))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _file: file,
        })
    }

    /// The pid file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What `--try-lock` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// No master holds the lock (or there is no pid file).
    NotRunning,
    /// A master holds the lock.
    Running,
    /// The pid file cannot be opened or locked (permissions, a directory, ...).
    Unusable,
}

/// Tests the lock without taking it for long and without changing the file.
pub fn try_lock(path: &Path) -> LockState {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LockState::NotRunning,
        Ok(meta) if meta.is_file() => {}
        _ => return LockState::Unusable,
    }
    // Read-write, as a real start would open it (no create, no truncate): a file a master
    // could not use is reported as unusable, not as free.
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LockState::NotRunning,
        Err(_) => return LockState::Unusable,
    };
    match file.try_lock() {
        Ok(()) => LockState::NotRunning,
        Err(TryLockError::WouldBlock) => LockState::Running,
        Err(TryLockError::Error(_)) => LockState::Unusable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_excludes_and_try_lock_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.pid");
        assert_eq!(try_lock(&path), LockState::NotRunning);
        let held = PidFile::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        assert_eq!(try_lock(&path), LockState::Running);
        let err = PidFile::acquire(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyRunning);
        assert!(err.to_string().contains("already running"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(held);
        assert_eq!(try_lock(&path), LockState::NotRunning);
        assert_eq!(try_lock(dir.path()), LockState::Unusable);
    }
}
