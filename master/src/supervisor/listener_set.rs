//! The listener set: every bound listener by address, bound all or nothing, kept across reloads;
//! at start it adopts the sockets systemd passed (`LISTEN_FDS`) instead of binding them.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use zmaster_core::addr::Address;

use super::activation::Passed;
use crate::error::{Error, ErrorKind, Result};
use crate::listeners::{self, Listener};
use crate::services::Service;

/// One listener: bound by this master, or passed by systemd (its socket file is systemd's:
/// never removed here).
#[derive(Debug)]
pub(crate) enum Entry {
    Bound(Listener),
    Adopted(OwnedFd),
}

impl Entry {
    /// The listening fd.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Entry::Bound(l) => l.fd(),
            Entry::Adopted(fd) => fd.as_fd(),
        }
    }

    fn close(self) {
        if let Entry::Bound(l) = self {
            l.close();
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
                        "adopted listener {} from systemd ({})",
                        sa.addr,
                        p.describe()
                    );
                    adopted
                        .by_addr
                        .insert(sa.addr.clone(), Entry::Adopted(p.into_fd()));
                }
                None => unmatched.push(p),
            }
        }
        for p in unmatched {
            log::warn!(
                "LISTEN_FDS: closing passed socket {}: no service is configured for it",
                p.describe()
            );
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

    /// Closes every listener (removing the unix socket files this master created).
    pub(crate) fn close(self) {
        close_listeners(self.by_addr.into_values());
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
mod tests {
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};

    use zmaster_core::addr::ServiceAddr;

    use super::*;

    fn service(name: &str, paths: &[&Path]) -> Service {
        Service {
            name: name.to_owned(),
            cf_path: PathBuf::from(format!("{name}.cf")),
            command: PathBuf::from("true"),
            addrs: paths
                .iter()
                .map(|p| ServiceAddr {
                    name: String::new(),
                    addr: Address::Unix(p.to_path_buf()),
                })
                .collect(),
            proc_count: 1,
            chdir: None,
            chroot: None,
            process: Default::default(),
            backlog: 16,
            unix_mode: None,
            give_up_after: 0,
        }
    }

    fn fd(set: &ListenerSet, path: &Path) -> Option<i32> {
        set.get(&Address::Unix(path.to_path_buf()))
            .map(|l| l.fd().as_raw_fd())
    }

    #[test]
    fn a_reload_keeps_unchanged_listeners_binds_new_ones_and_closes_removed_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let [a, b, c] = ["a", "b", "c"].map(|n| dir.path().join(n));
        // Two services may share an address: it is bound once.
        let mut set =
            ListenerSet::bind(&[service("one", &[&a, &b]), service("two", &[&a])]).expect("bind");
        assert_eq!(set.len(), 2);
        let a_fd = fd(&set, &a).expect("a bound");
        assert!(b.exists());

        set.rebind(&[service("one", &[&a, &c])]).expect("rebind");
        assert_eq!(set.len(), 2);
        assert_eq!(
            fd(&set, &a),
            Some(a_fd),
            "an unchanged address keeps its fd"
        );
        assert!(fd(&set, &c).is_some() && c.exists());
        assert_eq!(fd(&set, &b), None);
        assert!(
            !b.exists(),
            "a removed unix socket is closed and its file removed"
        );

        set.close();
        assert!(!a.exists() && !c.exists());
    }

    #[test]
    fn a_failed_bind_leaves_the_set_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let [a, b] = ["a", "b"].map(|n| dir.path().join(n));
        let bad = dir.path().join("missing/dir/sock");
        let mut set = ListenerSet::bind(&[service("one", &[&a])]).expect("bind");
        let a_fd = fd(&set, &a);

        let e = set
            .rebind(&[service("one", &[&b]), service("two", &[&bad])])
            .expect_err("cannot bind in a missing dir");
        assert!(e.to_string().starts_with("service two: "), "{e}");
        assert_eq!(set.len(), 1);
        assert_eq!(fd(&set, &a), a_fd, "the running listener is untouched");
        assert_eq!(fd(&set, &b), None);
        assert!(!b.exists(), "what the failed reload bound is closed again");
        assert!(a.exists());

        let e = ListenerSet::bind(&[service("three", &[&bad])]).expect_err("bad");
        assert!(e.to_string().starts_with("service three: "), "{e}");
        set.close();
    }
}
