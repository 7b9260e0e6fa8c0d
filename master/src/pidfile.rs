//! The pid file: an exclusive `flock` held for the master's lifetime (and handed on to the new
//! master of an upgrade: the lock belongs to the open file, which both hold), and `--try-lock`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};

/// How long a starting master waits for shared locks (`--try-lock` probes, which hold one for
/// an instant) to go away before it gives up.
const SHARED_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens `path` read-write without following a symlink (a pid file in a shared dir must not
/// be redirected onto another file), creating it only when `create` is set.
fn open(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// A locked pid file; the lock is released when it is dropped (or when the process dies).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: File,
}

impl PidFile {
    /// Opens or creates `path` (never through a symlink) and takes `flock(LOCK_EX|LOCK_NB)`.
    /// The file is left as it is: call [`PidFile::write_pid`] once the master is up, so that a
    /// start that fails later (a bind error) does not replace the pid it holds.
    ///
    /// Only an exclusive holder (a master) makes this fail. A shared holder is a `--try-lock`
    /// probe (see [`try_lock`]): the lock is retried until it goes, for up to 5 s.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyRunning`] when another process holds the lock exclusively; an I/O
    /// error when the file cannot be opened (a symlink, permissions) or locked.
    pub fn acquire(path: &Path) -> Result<PidFile> {
        let file = open(path, true)
            .map_err(|e| Error::io(format!("open pid file {}", path.display()), e))?;
        let lock_error = |e| Error::io(format!("lock pid file {}", path.display()), e);
        let deadline = Instant::now() + SHARED_WAIT;
        let mut logged = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(lock_error(e)),
            }
            // Held: exclusively (a master: a shared lock fails too) or only shared (probes).
            match file.try_lock_shared() {
                Ok(()) => file.unlock().map_err(lock_error)?,
                Err(TryLockError::WouldBlock) => return Err(already_running(path, &file)),
                Err(TryLockError::Error(e)) => return Err(lock_error(e)),
            }
            if Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::AlreadyRunning,
                    format!(
                        "pid file {} stayed share-locked by another process for {SHARED_WAIT:?}",
                        path.display()
                    ),
                ));
            }
            if !logged {
                log::info!(
                    "pid file {} is share-locked (a --try-lock probe?); waiting",
                    path.display()
                );
                logged = true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(PidFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The pid file an upgrading master handed over: `fd` is its open file, which holds the
    /// lock (`flock` locks belong to the open file, so the lock stays held while either master
    /// has it open).
    ///
    /// # Errors
    /// `fd` is not the file at `path` (another file is there now), or it does not hold the
    /// lock exclusively.
    pub(crate) fn inherit(path: &Path, fd: OwnedFd) -> Result<PidFile> {
        let file = File::from(fd);
        let wrong = |why: String| {
            Error::new(
                ErrorKind::Io,
                format!("the pid file handed over is not {}: {why}", path.display()),
            )
        };
        let got = file.metadata().map_err(|e| wrong(e.to_string()))?;
        let want = std::fs::symlink_metadata(path).map_err(|e| wrong(e.to_string()))?;
        if (got.dev(), got.ino()) != (want.dev(), want.ino()) {
            return Err(wrong("another file is there".into()));
        }
        // On the open file that holds the lock this succeeds at once (it is already held);
        // on any other it would find the lock taken.
        file.try_lock()
            .map_err(|e| wrong(format!("it does not hold the lock ({e})")))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The open file that holds the lock (handed to the new master in an upgrade).
    pub(crate) fn lock_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Replaces the file's content with this process's pid.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_pid(&mut self) -> Result<()> {
        let file = &mut self.file;
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.flush()
        };
        write(file).map_err(|e| Error::io(format!("write pid file {}", self.path.display()), e))
    }

    /// The pid file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn already_running(path: &Path, mut file: &File) -> Error {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let holder = text.split_whitespace().next().unwrap_or("?").to_owned();
    Error::new(
        ErrorKind::AlreadyRunning,
        format!(
            "the master is already running (pid {holder} holds the lock on {})",
            path.display()
        ),
    )
}

/// What `--try-lock` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// No master holds the lock (or there is no pid file).
    NotRunning,
    /// A master holds the lock.
    Running,
    /// The pid file cannot be opened or locked (permissions, a directory, a symlink, ...).
    Unusable,
}

/// Tests the lock without taking it exclusively and without changing the file.
///
/// The probe is a shared `flock(LOCK_SH|LOCK_NB)`: it fails only when a master holds the
/// exclusive lock. (An `F_GETLK` probe would take no lock at all, but on Linux `fcntl` record
/// locks and `flock` locks do not see each other, so it would always say "not running".) The
/// shared lock lives for an instant; a master starting in that instant finds the lock taken,
/// sees that a shared lock still succeeds (nothing exclusive is held) and retries
/// ([`PidFile::acquire`]): a probe can delay a start by a few milliseconds, never fail it.
pub fn try_lock(path: &Path) -> LockState {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LockState::NotRunning,
        Ok(meta) if meta.is_file() => {}
        _ => return LockState::Unusable,
    }
    // Read-write, as a real start would open it (no create, no truncate): a file a master
    // could not use is reported as unusable, not as free.
    let file = match open(path, false) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LockState::NotRunning,
        Err(_) => return LockState::Unusable,
    };
    match file.try_lock_shared() {
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
        let mut held = PidFile::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "",
            "written before write_pid"
        );
        held.write_pid().unwrap();
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

    #[test]
    fn an_inherited_pid_file_keeps_the_lock_and_takes_the_new_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.pid");
        let other = dir.path().join("other.pid");
        let held = PidFile::acquire(&path).unwrap();
        let handed = held.lock_fd().try_clone_to_owned().unwrap();
        let mut new = PidFile::inherit(&path, handed).unwrap();
        drop(held); // the old master exits: the lock stays with the open file
        assert_eq!(try_lock(&path), LockState::Running);
        new.write_pid().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );

        let stray = open(&other, true).unwrap();
        let err = PidFile::inherit(&path, stray.into()).unwrap_err();
        assert!(err.to_string().contains("another file is there"), "{err}");
        // The right file, but an open file that does not hold the lock: refused.
        let unlocked = open(&path, false).unwrap();
        let err = PidFile::inherit(&path, unlocked.into()).unwrap_err();
        assert!(err.to_string().contains("does not hold the lock"), "{err}");
        drop(new);
        assert_eq!(try_lock(&path), LockState::NotRunning);
    }
}
