//! The board memfd (`server-proc-balance = yes`, `ZM_BOARD=<fd>:<slot>`): every child of a
//! service generation gets the same board with a slot of its own, a respawned child takes the
//! freed slot, and the master zeroes a reaped child's slot (docs/servers.md "Between
//! processes"). Without the key a child sees SPEC §5's fds only (`fd_hygiene.rs`).

mod util;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

/// `ZM_BOARD` of child `pid` as (fd, slot), from the environment it was exec'd with.
fn board_env(pid: i32) -> (i32, usize) {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let value = raw
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("ZM_BOARD="))
        .unwrap_or_else(|| panic!("child {pid} has no ZM_BOARD"))
        .to_owned();
    let (fd, slot) = value.split_once(':').expect("fd:slot");
    (fd.parse().expect("fd"), slot.parse().expect("slot"))
}

/// The board child `pid` holds, opened through /proc (the same memfd, read-write).
fn open_board(pid: i32) -> std::fs::File {
    let (fd, _) = board_env(pid);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/fd/{fd}"))
        .expect("open the child's board")
}

/// A master with a balanced service of two probes; returns it and the probes once both
/// reported (exec'd: a forked child's environment is still the master's until then).
fn balanced_probes(s: &Setup) -> (Master, Vec<i32>) {
    let sock = s.path("p.sock");
    s.probe_service(
        "probe",
        &format!("p://{}", sock.display()),
        2,
        "server-proc-balance = yes\n",
    );
    let master = s.start_master(&[]);
    let kids = master.wait_children(2);
    for &kid in &kids {
        wait_for(Duration::from_secs(10), "the probe's report", || {
            s.report(kid)
        });
    }
    (master, kids)
}

#[test]
fn the_children_of_a_generation_share_one_board_and_each_holds_a_slot() {
    let s = Setup::new();
    let (master, kids) = balanced_probes(&s);
    let mut slots: Vec<usize> = kids.iter().map(|&k| board_env(k).1).collect();
    slots.sort_unstable();
    assert_eq!(slots, [0, 1], "{}", master.log_text());
    for &kid in &kids {
        let (fd, _) = board_env(kid);
        let (_, fds) = s.report(kid).expect("report");
        let target = fds
            .iter()
            .find(|(f, _)| *f == fd)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("fd {fd} of {kid} not open: {fds:?}"));
        assert!(target.contains("memfd:zmaster-board"), "{target}");
        assert_eq!(open_board(kid).metadata().expect("stat").len(), 4096);
    }
    let inode = |pid| open_board(pid).metadata().expect("stat").ino();
    assert_eq!(
        inode(kids[0]),
        inode(kids[1]),
        "one board for the generation"
    );

    // What the slot-1 child "published", and a mark in slot 0 that must stay.
    let (slot1, slot0) = if board_env(kids[0]).1 == 1 {
        (kids[0], kids[1])
    } else {
        (kids[1], kids[0])
    };
    let board = open_board(slot0);
    board.write_all_at(&[9; 8], 64).expect("write slot 1");
    board.write_all_at(&[7; 8], 0).expect("write slot 0");
    zmaster_testkit::kill_pid(slot1);
    let new = wait_for(Duration::from_secs(10), "a replacement child", || {
        let now = master.children();
        (now.len() == 2 && !now.contains(&slot1))
            .then(|| now.into_iter().find(|&k| k != slot0))
            .flatten()
    });
    wait_for(Duration::from_secs(10), "the replacement's report", || {
        s.report(new)
    });
    let mut bytes = [1u8; 8];
    board.read_exact_at(&mut bytes, 64).expect("read slot 1");
    assert_eq!(bytes, [0; 8], "the reaped child's slot is zeroed");
    board.read_exact_at(&mut bytes, 0).expect("read slot 0");
    assert_eq!(bytes, [7; 8], "a living child's slot is not touched");
    assert_eq!(board_env(new).1, 1, "the replacement takes the freed slot");
    assert_eq!(inode(new), inode(slot0), "same generation, same board");
}

/// How many board memfds process `pid` holds open.
fn boards_held(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.to_string_lossy().contains("memfd:zmaster-board"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_reload_gives_the_new_generation_its_own_board_and_the_old_one_is_dropped() {
    let s = Setup::new();
    let (master, old) = balanced_probes(&s);
    let old_board = open_board(old[0]).metadata().expect("stat").ino();
    assert_eq!(boards_held(master.pid()), 1, "{}", master.log_text());
    master.signal(Signal::SIGHUP);
    // The new generation starts while the old one may still be draining.
    let new = wait_for(Duration::from_secs(10), "the new generation", || {
        let now = master.children();
        let fresh: Vec<i32> = now.into_iter().filter(|k| !old.contains(k)).collect();
        (fresh.len() == 2 && fresh.iter().all(|&k| s.report(k).is_some())).then_some(fresh)
    });
    let mut slots: Vec<usize> = new.iter().map(|&k| board_env(k).1).collect();
    slots.sort_unstable();
    assert_eq!(slots, [0, 1], "slots of the old generation do not count");
    let new_board = open_board(new[0]).metadata().expect("stat").ino();
    assert_ne!(new_board, old_board, "a board per generation");
    assert_eq!(
        open_board(new[1]).metadata().expect("stat").ino(),
        new_board
    );
    wait_until(
        Duration::from_secs(10),
        "the old generation to exit",
        || !old.iter().any(|&k| is_alive(k)),
    );
    wait_until(
        Duration::from_secs(10),
        "the old board to be dropped",
        || boards_held(master.pid()) == 1,
    );
}

#[test]
fn a_respawn_that_fails_keeps_the_board_the_living_child_holds() {
    let s = Setup::new();
    // The command is a copy of the probe this test can take away and put back.
    let command = s.path("probe-copy");
    std::fs::copy(PROBE, &command).expect("copy the probe");
    let sock = s.path("p.sock");
    s.write_cf(
        "probe",
        &format!(
            "server-command = {}\nserver-service = p://{}\nserver-proc-count = 2\n\
             server-proc-balance = yes\n",
            command.display(),
            sock.display()
        ),
    );
    let master = s.start_master(&[]);
    let kids = master.wait_children(2);
    for &kid in &kids {
        wait_for(Duration::from_secs(10), "the probe's report", || {
            s.report(kid)
        });
    }
    let board = open_board(kids[1]).metadata().expect("stat").ino();
    std::fs::remove_file(&command).expect("take the command away");
    zmaster_testkit::kill_pid(kids[0]);
    wait_until(Duration::from_secs(10), "a failed respawn", || {
        master.log_text().contains("cannot start a child")
    });
    assert_eq!(boards_held(master.pid()), 1, "the survivor's board stays");
    std::fs::copy(PROBE, &command).expect("put the command back");
    let new = wait_for(Duration::from_secs(30), "the replacement", || {
        let now = master.children();
        now.into_iter()
            .find(|k| !kids.contains(k) && s.report(*k).is_some())
    });
    assert_eq!(
        open_board(new).metadata().expect("stat").ino(),
        board,
        "the replacement joins the survivor's board"
    );
}
