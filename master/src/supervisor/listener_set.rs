//! The listener set: every bound listener by address, bound all or nothing, kept across reloads.

use std::collections::HashMap;

use zmaster_core::addr::Address;

use crate::error::{Error, ErrorKind, Result};
use crate::listeners::{self, Listener};
use crate::services::Service;

/// The listeners the running configuration uses, keyed by the parsed address so a reload
/// recognises an unchanged one and hands children the same fd.
#[derive(Debug, Default)]
pub(crate) struct ListenerSet {
    by_addr: HashMap<Address, Listener>,
}

impl ListenerSet {
    /// Binds every address of `services` (all or nothing).
    pub(crate) fn bind(services: &[Service]) -> Result<ListenerSet> {
        bind_all(services, ListenerSet::default()).map_err(|(e, _)| e)
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
    pub(crate) fn get(&self, addr: &Address) -> Option<&Listener> {
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
                    out.by_addr.insert(sa.addr.clone(), l);
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
fn split_listeners(mut all: ListenerSet, services: &[Service]) -> (ListenerSet, Vec<Listener>) {
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

fn close_listeners(listeners: impl IntoIterator<Item = Listener>) {
    for l in listeners {
        log::debug!("closing listener {}", l.addr());
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
