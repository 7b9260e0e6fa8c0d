//! The kernel's send queue of a socket (`SIOCOUTQ`): output written but not yet taken by the peer.
//!
//! The example servers count it as unsent output for `echo-max-pending` (see
//! [`limits`](crate::limits)): a peer that never reads first fills the kernel's buffers, and
//! only then the server's own. They ask only once output is already backing up, so a peer
//! that keeps up costs no extra syscall.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd};

/// The bytes in the send queue of `socket` (for TCP: sent and not yet acknowledged, or not
/// yet sent), or 0 where it cannot be asked (not a socket, not Linux).
pub fn send_queue(socket: impl AsFd) -> usize {
    queued(socket.as_fd().as_raw_fd()).unwrap_or(0)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn queued(fd: std::os::fd::RawFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: `fd` is borrowed from a live `AsFd` for this call, so it is open; `TIOCOUTQ`
    // (= `SIOCOUTQ`) writes exactly one `c_int` through the pointer, which points to `n`, a
    // live and aligned `c_int` on this stack frame. On error nothing is written and `n` is
    // not used.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    if rc < 0 {
        return None;
    }
    usize::try_from(n).ok()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn queued(_fd: std::os::fd::RawFd) -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn counts_what_the_peer_has_not_taken() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("conn");
        let (_server, _) = listener.accept().expect("accept");
        assert_eq!(send_queue(&client), 0, "nothing written yet");
        // More than the peer's receive window takes: part of it must stay queued here.
        client.set_nonblocking(true).expect("nonblocking");
        let chunk = vec![b'q'; 64 * 1024];
        let mut written = 0usize;
        while let Ok(n) = client.write(&chunk) {
            written += n;
        }
        let queued = send_queue(&client);
        assert!(queued > 0 && queued <= written, "{queued} of {written}");
    }

    #[test]
    fn is_zero_for_what_is_not_a_socket() {
        let file = tempfile::tempfile().expect("tempfile");
        assert_eq!(send_queue(&file), 0);
    }
}
