//! The server's end of the master's board memfd (`ZM_BOARD=<fd>:<slot>`): the open
//! connections of the service's sibling processes, which the acceptor balances against
//! (`zmaster_pool::board`; docs/servers.md "Between processes").
//!
//! The master stages the memfd after the listeners (and the heartbeat memfd, when there is
//! one) and names it with this process's slot. The fd is adopted, mapped and closed (the
//! mapping keeps the memory) before any fd of ours is opened; the variable is removed so
//! nothing this server execs sees a stale number. A LIB-ZC server never reads it.

use std::os::fd::RawFd;
use std::sync::Arc;

use zmaster_pool::Board;

use super::super::sys;
use super::heartbeat::adopt_master_memfd;

/// The variable the master names the fd and the slot in.
pub(crate) const ENV: &str = zmaster_core::protocol::BOARD_ENV;

/// `fd:slot` as the master writes it.
fn parse(value: &str) -> Option<(RawFd, usize)> {
    let (fd, slot) = value.split_once(':')?;
    let fd: RawFd = fd.parse().ok().filter(|fd| *fd > 2)?;
    Some((fd, slot.parse().ok()?))
}

/// The board `ZM_BOARD` names, mapped; `Ok(None)` when it is not set.
///
/// # Errors
/// The value is not `fd:slot`, the fd is not an inherited memfd of the board's size, or it
/// cannot be mapped: the message says which (the server then takes every connection it can).
pub(crate) fn from_env() -> Result<Option<Arc<Board>>, String> {
    let Some(value) = std::env::var_os(ENV) else {
        return Ok(None);
    };
    sys::remove_env_if_single_threaded(ENV);
    let (fd, slot) = value
        .to_str()
        .and_then(parse)
        .ok_or_else(|| format!("{ENV}={value:?} is not <fd>:<slot>"))?;
    let owned = adopt_master_memfd(fd, zmaster_pool::board::BOARD_SIZE as i64)
        .map_err(|e| format!("{ENV}: fd {fd}: {e}"))?
        .ok_or_else(|| format!("{ENV}: fd {fd} is not the master's board memfd"))?;
    let board = Board::map(&owned, slot).map_err(|e| format!("{ENV}: {e}"))?;
    Ok(Some(Arc::new(board)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_an_fd_above_2_and_a_slot() {
        assert_eq!(parse("7:0"), Some((7, 0)));
        assert_eq!(parse("12:63"), Some((12, 63)));
        assert_eq!(parse("2:1"), None, "stdio is never the board");
        assert_eq!(parse("7"), None);
        assert_eq!(parse("7:"), None);
        assert_eq!(parse(":1"), None);
        assert_eq!(parse("x:1"), None);
        assert_eq!(parse("7:-1"), None);
    }
}
