//! The board memfds the master shares with each service generation's children
//! (`ZM_BOARD`, `zmaster_core::protocol::BOARD_ENV`): one slot per child, in which the child
//! publishes its open connections, whether it accepts and how many it ever accepted (its
//! sign of life), so that an acceptor holding
//! clearly more connections than a sibling leaves new ones to it (`zmaster_pool::board`,
//! docs/servers.md "Between processes").
//!
//! Design notes:
//! - One board per (service, generation), made at its first child's start and dropped with
//!   its last child: a new generation's children never compare themselves with draining ones.
//! - A child gets the lowest slot no child of its generation holds — a child keeps its slot
//!   until it is reaped, detached or not, so a slot is never shared by two living processes.
//!   Past [`protocol::BOARD_SLOTS`] children a child gets no board (it takes every connection
//!   it can, as before the board existed).
//! - The master writes a slot only when it reaps its child: zeroed, so a dead sibling never
//!   looks like an accepting one with few connections.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::uio::pwrite;
use nix::unistd::ftruncate;
use zmaster_core::protocol::{BOARD_SLOT_BYTES, BOARD_SLOTS};

/// The boards of every service generation that has children.
#[derive(Debug, Default)]
pub(crate) struct Boards {
    by_generation: BTreeMap<(String, u64), OwnedFd>,
}

impl Boards {
    /// The board of `service` in `generation` (made now if it has none) and the lowest slot
    /// not in `taken`; `None` when every slot is taken or the memfd cannot be made (logged:
    /// the child then runs without one).
    pub(crate) fn slot_for(
        &mut self,
        service: &str,
        generation: u64,
        taken: &[usize],
    ) -> Option<(&OwnedFd, usize)> {
        let Some(slot) = (0..BOARD_SLOTS).find(|s| !taken.contains(s)) else {
            log::warn!(
                "service={service} generation={generation}: all {BOARD_SLOTS} board slots are \
                 held; this child takes connections without balancing"
            );
            return None;
        };
        let key = (service.to_owned(), generation);
        if !self.by_generation.contains_key(&key) {
            match create() {
                Ok(fd) => {
                    self.by_generation.insert(key.clone(), fd);
                }
                Err(e) => {
                    log::warn!("service={service} cannot make its board memfd: {e}");
                    return None;
                }
            }
        }
        self.by_generation.get(&key).map(|fd| (fd, slot))
    }

    /// Drops the board of `service`'s `generation`: no child of it holds a slot (its only
    /// child failed to start, or the last one was reaped).
    pub(crate) fn release_all(&mut self, service: &str, generation: u64) {
        self.by_generation.remove(&(service.to_owned(), generation));
    }

    /// The child in `slot` of `service`'s `generation` was reaped and others of the generation
    /// remain: its slot is zeroed.
    pub(crate) fn release(&mut self, service: &str, generation: u64, slot: usize) {
        let key = (service.to_owned(), generation);
        if let Some(fd) = self.by_generation.get(&key) {
            let zero = [0u8; BOARD_SLOT_BYTES];
            let at = (slot * BOARD_SLOT_BYTES) as i64;
            if let Err(e) = pwrite(fd.as_fd(), &zero, at) {
                log::warn!("service={service} cannot clear board slot {slot}: {e}");
            }
        }
    }

    /// How many boards exist (one per service generation with children).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_generation.len()
    }
}

/// A zeroed board, sealed at its size: a child maps all of it, and a memfd shrunk under a
/// mapping would make its accesses fault.
fn create() -> nix::Result<OwnedFd> {
    let fd = memfd_create(
        c"zmaster-board",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    ftruncate(&fd, (BOARD_SLOTS * BOARD_SLOT_BYTES) as i64)?;
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::uio::pread;

    fn slot_bytes(fd: &OwnedFd, slot: usize) -> [u8; 8] {
        let mut buf = [0u8; 8];
        assert_eq!(pread(fd, &mut buf, (slot * BOARD_SLOT_BYTES) as i64), Ok(8));
        buf
    }

    #[test]
    fn each_child_gets_the_lowest_free_slot_of_its_generations_board() {
        let mut boards = Boards::default();
        let (fd, slot) = boards.slot_for("echo", 1, &[]).expect("a slot");
        assert_eq!(slot, 0);
        let size = nix::sys::stat::fstat(fd.as_fd()).expect("fstat").st_size;
        assert_eq!(size, 4096);
        let first = fd.try_clone().expect("clone");
        assert_eq!(boards.slot_for("echo", 1, &[0]).map(|(_, s)| s), Some(1));
        assert_eq!(boards.slot_for("echo", 1, &[0, 2]).map(|(_, s)| s), Some(1));
        assert_eq!(boards.slot_for("echo", 1, &[1, 0]).map(|(_, s)| s), Some(2));
        let all: Vec<usize> = (0..BOARD_SLOTS).collect();
        assert!(boards.slot_for("echo", 1, &all).is_none(), "no slot left");
        let (same, _) = boards.slot_for("echo", 1, &[]).expect("a slot");
        assert_eq!(
            nix::sys::stat::fstat(same.as_fd()).expect("fstat").st_ino,
            nix::sys::stat::fstat(first.as_fd()).expect("fstat").st_ino,
            "one board per generation"
        );
        boards
            .slot_for("echo", 2, &[])
            .expect("the next generation");
        boards.slot_for("other", 1, &[]).expect("another service");
        assert_eq!(boards.len(), 3);
    }

    #[test]
    fn a_reaped_childs_slot_is_zeroed_and_the_last_one_drops_the_board() {
        let mut boards = Boards::default();
        let (fd, _) = boards.slot_for("echo", 1, &[]).expect("a slot");
        let fd = fd.try_clone().expect("clone");
        for slot in [0, 1, 5] {
            let at = (slot * BOARD_SLOT_BYTES) as i64;
            assert_eq!(pwrite(&fd, &[7u8; 8], at), Ok(8));
        }
        boards.release("echo", 1, 1);
        assert_eq!(slot_bytes(&fd, 1), [0; 8]);
        assert_eq!(slot_bytes(&fd, 0), [7; 8], "only its own slot");
        assert_eq!(slot_bytes(&fd, 5), [7; 8]);
        boards.release("echo", 2, 0);
        assert_eq!(slot_bytes(&fd, 0), [7; 8], "another generation's board");
        assert_eq!(boards.len(), 1);
        let err = ftruncate(&fd, 64).unwrap_err();
        assert_eq!(err, nix::errno::Errno::EPERM, "sealed at its size");
        boards.release_all("echo", 1);
        assert_eq!(boards.len(), 0);
        boards.slot_for("echo", 3, &[]).expect("a slot");
        boards.release_all("echo", 4);
        assert_eq!(boards.len(), 1, "another generation's board stays");
        boards.release_all("echo", 3);
        assert_eq!(boards.len(), 0);
    }
}
