//! The listener set: every bound listener by address, bound all or nothing, kept across reloads;
//! at start it adopts the sockets systemd passed (`LISTEN_FDS`) or an upgrading master handed
//! over (`ZMASTER_UPGRADE_FDS`) instead of binding them, and at an upgrade hands them over.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use zmaster_core::addr::Address;
use zmaster_core::bind::{self, Bound};

use super::activation::{Origin, Passed};
use crate::error::{Error, ErrorKind, Result};
use crate::listeners::{self, Listener};
use crate::services::Service;

/// One listener: bound by this master, passed by systemd (its socket file is systemd's:
/// never removed here), or bound by the master this one replaced in an upgrade (its unix
/// socket file becomes this master's once the upgrade is done: `claimed`; before that a
/// failing start must leave it to the old master, which still serves it).
#[derive(Debug)]
pub(crate) enum Entry {
    Bound(Listener),
    Adopted(OwnedFd),
    Inherited { bound: Bound, claimed: bool },
}

impl Entry {
    /// The listening fd.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Entry::Bound(l) => l.fd(),
            Entry::Adopted(fd) => fd.as_fd(),
            Entry::Inherited { bound, .. } => bound.fd.as_fd(),
        }
    }

    fn close(self) {
        match self {
            Entry::Bound(l) => l.close(),
            Entry::Inherited {
                bound,
                claimed: true,
            } => bound.close(),
            Entry::Adopted(_) | Entry::Inherited { .. } => {}
        }
    }
}

/// An adopted socket as an entry: systemd's stays systemd's; the old master's becomes an
/// inherited listener whose unix socket file (the one at its path now) is claimed later.
fn adopted_entry(addr: &Address, p: Passed) -> Entry {
    match p.origin {
        Origin::Systemd => Entry::Adopted(p.into_fd()),
        Origin::OldMaster => {
            let created = match addr {
                Address::Unix(path) => bind::file_id(path).ok().map(|id| (path.clone(), id)),
                Address::Inet(_) | Address::Fifo(_) => None,
            };
            let fd = p.into_fd();
            Entry::Inherited {
                bound: Bound { fd, created },
                claimed: false,
            }
        }
    }
}

/// The listeners the running configuration uses, keyed by the parsed address so a reload
/// recognises an unchanged one and hands children the same fd.
#[derive(Debug, Default)]
pub(crate) struct ListenerSet {
    by_addr: HashMap<Address, Entry>,
}

impl ListenerSet {
    /// Binds every address of `services` (all or nothing).
    #[cfg(test)]
    pub(crate) fn bind(services: &[Service]) -> Result<ListenerSet> {
        ListenerSet::adopt_and_bind(services, Vec::new())
    }

    /// Adopts each `passed` socket whose address and type equal a configured address, binds
    /// the rest (all or nothing), and closes the passed sockets nothing matches, with a warning.
    pub(crate) fn adopt_and_bind(services: &[Service], passed: Vec<Passed>) -> Result<ListenerSet> {
        let mut adopted = ListenerSet::default();
        let mut unmatched = Vec::new();
        for p in passed {
            let wanted = services
                .iter()
                .flat_map(|s| &s.addrs)
                .find(|sa| !adopted.by_addr.contains_key(&sa.addr) && p.matches(&sa.addr));
            match wanted {
                Some(sa) => {
                    log::info!(
                        "adopted listener {} from {} ({})",
                        sa.addr,
                        p.from(),
                        p.describe()
                    );
                    let entry = adopted_entry(&sa.addr, p);
                    adopted.by_addr.insert(sa.addr.clone(), entry);
                }
                None => unmatched.push(p),
            }
        }
        for p in unmatched {
            match p.origin {
                Origin::Systemd => log::warn!(
                    "LISTEN_FDS: closing passed socket {}: no service is configured for it",
                    p.describe()
                ),
                // Its socket file stays: the old master serves it until the upgrade is done.
                Origin::OldMaster => log::info!(
                    "upgrade: closing listener {} from the old master: the config has no service for it any more",
                    p.describe()
                ),
            }
        }
        bind_all(services, adopted).map_err(|(e, kept)| {
            kept.close();
            e
        })
    }

    /// Moves to `services`: keeps unchanged listeners, binds new ones, closes removed ones.
    ///
    /// # Errors
    /// A bind failed: nothing new stays bound and the set is as it was.
    pub(crate) fn rebind(&mut self, services: &[Service]) -> Result<()> {
        let current = std::mem::take(self);
        let all = match bind_all(services, current) {
            Ok(all) => all,
            Err((e, kept)) => {
                *self = kept;
                return Err(e);
            }
        };
        let (used, removed) = split_listeners(all, services);
        close_listeners(removed);
        *self = used;
        Ok(())
    }

    /// The listener bound to `addr`.
    pub(crate) fn get(&self, addr: &Address) -> Option<&Entry> {
        self.by_addr.get(addr)
    }

    /// How many listeners are bound.
    pub(crate) fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// Closes every listener (removing the unix socket files this master created, and those
    /// it inherited in an upgrade that is done).
    pub(crate) fn close(self) {
        close_listeners(self.by_addr.into_values());
    }

    /// The upgrade is done: the unix socket files of inherited listeners are this master's
    /// now (removed at stop, as its own).
    pub(crate) fn claim_inherited(&mut self) {
        for entry in self.by_addr.values_mut() {
            if let Entry::Inherited { claimed, .. } = entry {
                *claimed = true;
            }
        }
    }

    /// Every listening fd, and whether systemd passed it (its socket file is not ours):
    /// what an upgrade hands to the new master.
    pub(crate) fn handover_fds(&self) -> Vec<(BorrowedFd<'_>, Origin)> {
        let origin = |e: &Entry| match e {
            Entry::Adopted(_) => Origin::Systemd,
            Entry::Bound(_) | Entry::Inherited { .. } => Origin::OldMaster,
        };
        self.by_addr.values().map(|e| (e.fd(), origin(e))).collect()
    }

    /// The new master took over: closes this master's copy of every listener and leaves the
    /// socket files to it (the sockets stay open in the new master: nothing is refused).
    pub(crate) fn hand_over(self) {
        drop(self.by_addr);
    }
}

/// Binds every address of `services`, reusing fds from `existing` for unchanged addresses.
/// On failure nothing new stays bound and `existing` is handed back whole.
fn bind_all(
    services: &[Service],
    mut existing: ListenerSet,
) -> Result<ListenerSet, (Error, ListenerSet)> {
    let mut out = ListenerSet::default();
    let mut fresh: Vec<Address> = Vec::new();
    for s in services {
        for sa in &s.addrs {
            if out.by_addr.contains_key(&sa.addr) {
                continue;
            }
            if let Some(l) = existing.by_addr.remove(&sa.addr) {
                out.by_addr.insert(sa.addr.clone(), l);
                continue;
            }
            match listeners::bind(&sa.addr, s.backlog, s.unix_mode) {
                Ok(l) => {
                    fresh.push(sa.addr.clone());
                    out.by_addr.insert(sa.addr.clone(), Entry::Bound(l));
                }
                Err(e) => {
                    for addr in &fresh {
                        if let Some(l) = out.by_addr.remove(addr) {
                            l.close();
                        }
                    }
                    existing.by_addr.extend(out.by_addr);
                    let e = Error::new(ErrorKind::Io, format!("service {}: {e}", s.name));
                    return Err((e, existing));
                }
            }
        }
    }
    // Whatever is left in `existing` is no longer configured: return it with the rest so the
    // caller decides when to close it.
    out.by_addr.extend(existing.by_addr);
    Ok(out)
}

/// Splits listeners into those some service uses and those none does.
fn split_listeners(mut all: ListenerSet, services: &[Service]) -> (ListenerSet, Vec<Entry>) {
    let mut used = ListenerSet::default();
    for s in services {
        for sa in &s.addrs {
            if let Some(l) = all.by_addr.remove(&sa.addr) {
                used.by_addr.insert(sa.addr.clone(), l);
            }
        }
    }
    (used, all.by_addr.into_values().collect())
}

fn close_listeners(listeners: impl IntoIterator<Item = Entry>) {
    for l in listeners {
        if let Entry::Bound(b) = &l {
            log::debug!("closing listener {}", b.addr());
        }
        l.close();
    }
}

#[cfg(test)]
#[path = "listener_set_tests.rs"]
pub(super) mod tests;
