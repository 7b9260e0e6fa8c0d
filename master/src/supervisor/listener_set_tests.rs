//! The listener set: reloads keep, bind and close listeners; inherited listeners' socket files
//! stay the old master's until claimed; systemd's stay systemd's.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use zmaster_core::addr::ServiceAddr;

use super::*;

/// A service on unix sockets at `paths` (other tests of the supervisor use it too).
pub(crate) fn service(name: &str, paths: &[&Path]) -> Service {
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

#[test]
fn an_inherited_socket_file_is_the_old_masters_until_claimed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, b, gone] = ["a", "b", "gone"].map(|n| dir.path().join(n));
    // The old master's listeners, one of which the new config drops.
    let old = ListenerSet::bind(&[service("one", &[&a, &gone])]).expect("bind");
    let passed: Vec<Passed> = old
        .handover_fds()
        .into_iter()
        .map(|(fd, origin)| {
            assert_eq!(origin, Origin::OldMaster);
            Passed::new(fd.try_clone_to_owned().expect("dup"), origin)
        })
        .collect();
    let a_inode = bind::file_id(&a).expect("a");
    old.hand_over();
    assert!(
        a.exists() && gone.exists(),
        "a handover removes no socket file"
    );

    // A start that fails after adopting leaves every file to the old master.
    let bad = dir.path().join("missing/dir/sock");
    let again: Vec<Passed> = passed
        .iter()
        .map(|p| Passed::new(p.fd_for_test(), Origin::OldMaster))
        .collect();
    ListenerSet::adopt_and_bind(&[service("one", &[&a]), service("two", &[&bad])], again)
        .expect_err("cannot bind in a missing dir");
    assert!(a.exists() && gone.exists());

    let mut set = ListenerSet::adopt_and_bind(&[service("one", &[&a, &b])], passed).expect("adopt");
    assert_eq!(set.len(), 2);
    assert!(
        gone.exists(),
        "a dropped listener's file stays until the upgrade is done"
    );
    assert_eq!(
        bind::file_id(&a).ok(),
        Some(a_inode),
        "a is adopted, not bound again"
    );
    let origins: Vec<Origin> = set.handover_fds().into_iter().map(|(_, o)| o).collect();
    assert_eq!(origins, [Origin::OldMaster; 2]);
    set.claim_inherited();
    set.close();
    assert!(
        !a.exists() && !b.exists(),
        "claimed and bound files are removed at stop"
    );
}

#[test]
fn systemds_sockets_stay_systemds_through_an_upgrade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a");
    let unix = std::os::unix::net::UnixListener::bind(&a).expect("bind");
    let mut set = ListenerSet::adopt_and_bind(
        &[service("one", &[&a])],
        vec![Passed::new(unix.into(), Origin::Systemd)],
    )
    .expect("adopt");
    let fds = set.handover_fds();
    assert_eq!(fds.len(), 1);
    assert_eq!(fds[0].1, Origin::Systemd);
    set.claim_inherited();
    set.close();
    assert!(a.exists(), "systemd's socket file is never removed here");
}
