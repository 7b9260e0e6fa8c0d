//! A service's child process settings: `run-user`/`run-group` resolved to ids, and rlimits.
//!
//! Names are resolved here, in the master at load time (so `zmaster -t` reports a missing
//! user), because `getpwnam` and `getgrouplist` are not async-signal-safe: the child between
//! fork and exec only applies the numbers (see `sys::spawn_child`).

use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};
use zmaster_core::config::Config;
use zmaster_core::error::quoted;

use crate::error::{Error, ErrorKind, Result};

/// What the child sets up before exec, after its fds are staged and its chroot/chdir done.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Process {
    /// `run-user`: the uid to `setuid` to.
    pub uid: Option<u32>,
    /// `run-group`, else `run-user`'s primary group: the gid to `setgid` to.
    pub gid: Option<u32>,
    /// `run-user`'s supplementary groups (`initgroups`), computed before the fork; `None` when
    /// no `run-user` is set (a `run-group` alone changes only the gid).
    pub groups: Option<Vec<u32>>,
    /// `server-rlimit-nofile` (soft limit; the hard one is raised to it if lower).
    pub nofile: Option<u64>,
    /// `server-core-file-size` in bytes, `u64::MAX` (`RLIM_INFINITY`) for `unlimited`.
    pub core_size: Option<u64>,
    /// The SPEC §13 server-side limits the master cares about (the child's heartbeat memfd).
    pub limits: ServerLimits,
    /// `server-proc-balance` (a zmaster extension, default off): the children get their
    /// generation's board memfd (`ZM_BOARD`), so their acceptors balance new connections
    /// between them. Off, a child sees exactly SPEC §5's fds, as a LIB-ZC server expects.
    pub balance: bool,
}

/// What the master needs to know of a service's SPEC §13 server-side limits: whether its
/// children get a heartbeat memfd, and whether the master watches it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerLimits {
    /// `server-hang-timeout` (0 = off): the master kills a child whose heartbeat is older.
    pub hang_timeout: Duration,
    /// `server-max-use`, `server-max-idle` or `server-max-memory` is set: a child may retire.
    pub retires: bool,
}

impl ServerLimits {
    /// Reads the keys (typed as `zmaster -t` checks them).
    fn from_config(config: &Config) -> Result<ServerLimits> {
        let max_use = config.get_int_in("server-max-use", 0, 0, i64::MAX)?;
        let max_idle = config.get_duration("server-max-idle", Duration::ZERO)?;
        let max_memory = config.get_size("server-max-memory", 0)?;
        Ok(ServerLimits {
            hang_timeout: crate::keys::hang_timeout(config)?,
            retires: max_use > 0 || !max_idle.is_zero() || max_memory > 0,
        })
    }

    /// Whether a child gets a heartbeat memfd: any of these limits is set.
    pub fn any(&self) -> bool {
        self.retires || !self.hang_timeout.is_zero()
    }
}

/// `text` as a numeric id (digits only, so `+1` or ` 1` stay names).
fn numeric_id(text: &str) -> Option<u32> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// A non-empty value of `key`.
fn value<'a>(config: &'a Config, key: &str) -> Option<&'a str> {
    config.get(key).filter(|v| !v.is_empty())
}

fn config_error(at: &dyn Fn(&str) -> String, key: &str, why: String) -> Error {
    Error::new(ErrorKind::Config, format!("{}: {key}: {why}", at(key)))
}

/// The user `text` names: (uid, primary gid, name) — gid and name are `None` for a numeric id
/// that has no passwd entry.
fn user(text: &str) -> std::result::Result<(u32, Option<u32>, Option<String>), String> {
    let found = match numeric_id(text) {
        Some(id) => User::from_uid(Uid::from_raw(id)),
        None => User::from_name(text),
    }
    .map_err(|e| format!("cannot look up user {}: {e}", quoted(text)))?;
    match (found, numeric_id(text)) {
        (Some(u), _) => Ok((u.uid.as_raw(), Some(u.gid.as_raw()), Some(u.name))),
        (None, Some(id)) => Ok((id, None, None)),
        (None, None) => Err(format!("no such user {}", quoted(text))),
    }
}

/// The gid `text` names (a numeric id need not have a group entry).
fn group(text: &str) -> std::result::Result<u32, String> {
    if let Some(id) = numeric_id(text) {
        return Ok(id);
    }
    match Group::from_name(text) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("no such group {}", quoted(text))),
        Err(e) => Err(format!("cannot look up group {}: {e}", quoted(text))),
    }
}

/// The supplementary groups `initgroups(name, gid)` would set.
fn supplementary(name: &str, gid: u32) -> std::result::Result<Vec<u32>, String> {
    let cname = CString::new(name).map_err(|_| "user name contains NUL".to_owned())?;
    let groups = getgrouplist(&cname, Gid::from_raw(gid))
        .map_err(|e| format!("cannot list the groups of {}: {e}", quoted(name)))?;
    Ok(groups.into_iter().map(Gid::as_raw).collect())
}

/// Parses and resolves a service's process settings; `at(key)` names `file:line` of `key`.
///
/// # Errors
/// An unknown user or group, a numeric user without passwd entry and no `run-group`, or a
/// malformed limit.
pub(super) fn parse(config: &Config, at: &dyn Fn(&str) -> String) -> Result<Process> {
    let mut process = Process::default();
    if let Some(text) = value(config, "run-user") {
        let (uid, gid, name) = user(text).map_err(|why| config_error(at, "run-user", why))?;
        process.uid = Some(uid);
        process.gid = gid;
        if let (Some(name), Some(gid)) = (name, gid) {
            // The supplementary list is based on the gid the child ends up with.
            let base = match value(config, "run-group") {
                Some(g) => group(g).map_err(|why| config_error(at, "run-group", why))?,
                None => gid,
            };
            process.groups =
                Some(supplementary(&name, base).map_err(|why| config_error(at, "run-user", why))?);
        }
    }
    if let Some(text) = value(config, "run-group") {
        process.gid = Some(group(text).map_err(|why| config_error(at, "run-group", why))?);
    }
    if process.uid.is_some() && process.gid.is_none() {
        return Err(config_error(
            at,
            "run-user",
            "the user id has no passwd entry: set run-group too".into(),
        ));
    }
    if process.uid.is_some() && process.groups.is_none() {
        process.groups = process.gid.map(|g| vec![g]);
    }
    if value(config, "server-rlimit-nofile").is_some() {
        let n = config.get_int_in("server-rlimit-nofile", 0, 1, i64::from(i32::MAX))?;
        process.nofile = Some(n as u64);
    }
    process.core_size = match value(config, "server-core-file-size") {
        Some(v) if v.trim().eq_ignore_ascii_case("unlimited") => Some(u64::MAX),
        Some(_) => Some(config.get_size("server-core-file-size", 0)?),
        None => None,
    };
    process.limits = ServerLimits::from_config(config)?;
    process.balance = config.get_bool("server-proc-balance", false)?;
    Ok(process)
}

/// The path of LIB-ZC's key `run_key` or of its zmaster alias `old_key`, with the key used.
///
/// # Errors
/// Both are set to different values: which one wins would depend on the layering.
pub(super) fn aliased_path(
    config: &Config,
    run_key: &'static str,
    old_key: &'static str,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<(&'static str, PathBuf)>> {
    match (value(config, run_key), value(config, old_key)) {
        (Some(new), Some(old)) if new != old => Err(config_error(
            at,
            run_key,
            format!(
                "{} conflicts with {old_key} = {} ({}): set one of them",
                quoted(new),
                quoted(old),
                at(old_key)
            ),
        )),
        (Some(new), _) => Ok(Some((run_key, PathBuf::from(new)))),
        (None, Some(old)) => Ok(Some((old_key, PathBuf::from(old)))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
