//! The per-connection I/O state machine the worker drives: completing reads from the
//! buffer or one `read`, batched writes, deadlines, and the guard against callbacks that
//! spin on a dead connection.

use std::io;
use std::time::Instant;

use super::{Conn, ReadResult};
use crate::buffer::Want;

/// Callbacks one `drive` may run before it yields to the worker's other connections.
const DRIVE_BUDGET: u32 = 64;
/// End-of-stream or error results a connection may get before it is closed for spinning.
const DEAD_ENDS: u32 = 16;
/// Output buffers that grew past this are released once written: an idle connection keeps
/// at most this much output storage (issue 15: a burst of long lines left up to 64 KiB per
/// connection). Small replies (a ping-pong of short lines) keep theirs and allocate nothing.
const KEEP_OUT_CAPACITY: usize = 1024;
/// Output held past this is written before the next read: while input keeps arriving (a
/// pipelining client) echoes go out as they are made, so what the server holds for a peer
/// that reads stays near this bound (one batch of callbacks more at most), and only a peer
/// that does not take its output lets it grow (the caller's bound, e.g. `echo-max-pending`).
const WRITE_BEFORE_READ: usize = 64 * 1024;

impl Conn {
    /// Nothing pending that could ever call back into this connection.
    pub(crate) fn is_idle(&self) -> bool {
        !self.more
            && self.read_op.is_none()
            && self.flush_op.is_none()
            && self.sleep_op.is_none()
            && self.deferred.is_empty()
            && self.cpu_jobs == 0
    }

    /// Completes every operation that can complete now, calling callbacks, until the
    /// connection waits for the kernel (or is closed).
    pub(crate) fn drive(&mut self) {
        let mut budget = DRIVE_BUDGET;
        while !self.closed {
            let held = self.out.len() - self.out_pos;
            if budget == 0 {
                // Let the worker's other connections run; continue in a later turn, with
                // the output made so far on its way.
                if held > 0 && self.writable {
                    self.try_write();
                }
                self.more = true;
                break;
            }
            budget -= 1;
            if held >= WRITE_BEFORE_READ && self.writable {
                self.try_write();
            }
            if let Some(want) = self.read_op.as_ref().map(|op| op.0)
                && let Some(result) = self.try_read(want)
                && let Some((_, cb)) = self.read_op.take()
            {
                self.read_deadline = None;
                if matches!(result, Ok(None) | Err(_)) && self.dead_end() {
                    break;
                }
                cb(self, result);
                continue;
            }
            if self.out_pos < self.out.len() && self.writable {
                self.try_write();
            }
            if self.flush_op.is_some()
                && (self.out_pos == self.out.len() || self.write_err.is_some())
                && let Some(cb) = self.flush_op.take()
            {
                self.flush_deadline = None;
                let result = match &self.write_err {
                    Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
                    None => Ok(()),
                };
                if result.is_err() && self.dead_end() {
                    break;
                }
                cb(self, result);
                continue;
            }
            break;
        }
    }

    /// Counts an end-of-stream or error result; after [`DEAD_ENDS`] of them the callbacks
    /// evidently keep retrying a connection that cannot progress (which would spin the
    /// worker): close it instead. Returns whether it was closed.
    fn dead_end(&mut self) -> bool {
        self.dead_ends += 1;
        if self.dead_ends > DEAD_ENDS {
            log::warn!(
                "connection {}: callbacks keep retrying after end of stream or errors; closing it",
                self.stream.describe_peer()
            );
            self.close();
            return true;
        }
        false
    }

    fn try_read(&mut self, want: Want) -> Option<ReadResult> {
        loop {
            if let Some(done) = self.input.take(want) {
                return Some(done.map(Some));
            }
            if self.eof {
                return Some(self.input.take_at_eof(want));
            }
            if let Some((kind, msg)) = &self.read_err {
                return Some(Err(io::Error::new(*kind, msg.clone())));
            }
            if !self.readable {
                return None;
            }
            let spare = self.input.spare(want);
            let room = spare.len();
            match self.stream.read(spare) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.input.filled(n);
                    if n < room && !self.hup {
                        self.readable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.read_err = Some((e.kind(), e.to_string()));
                    return Some(Err(e));
                }
            }
        }
    }

    fn try_write(&mut self) {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => {
                    self.write_err = Some((io::ErrorKind::WriteZero, "write returned 0".into()));
                    break;
                }
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.write_err = Some((e.kind(), e.to_string()));
                    break;
                }
            }
        }
        self.out_pos = 0;
        emptied(&mut self.out);
    }

    /// Sets the deadlines of newly waiting operations; returns a time for the worker's
    /// timer heap when this connection needs an earlier wake-up than it already has.
    pub(crate) fn arm(&mut self, now: Instant) -> Option<Instant> {
        if let Some(timeout) = self.timeout {
            if self.read_op.is_some() && self.read_deadline.is_none() {
                self.read_deadline = Some(now + timeout);
            }
            if self.flush_op.is_some() && self.flush_deadline.is_none() {
                self.flush_deadline = Some(now + timeout);
            }
        }
        if let Some((duration, _)) = &self.sleep_op
            && self.sleep_deadline.is_none()
        {
            self.sleep_deadline = Some(now + *duration);
        }
        let due = [self.read_deadline, self.flush_deadline, self.sleep_deadline]
            .into_iter()
            .flatten()
            .min()?;
        if self.timer_at.is_none_or(|t| due < t) {
            self.timer_at = Some(due);
            return Some(due);
        }
        None
    }

    /// Completes the operations whose deadline has passed with `TimedOut`, and a due sleep.
    pub(crate) fn fire_timeouts(&mut self, now: Instant) {
        if self.sleep_deadline.is_some_and(|d| d <= now) {
            self.sleep_deadline = None;
            if let Some((_, cb)) = self.sleep_op.take() {
                cb(self);
            }
        }
        if !self.closed && self.read_deadline.is_some_and(|d| d <= now) {
            self.read_deadline = None;
            if let Some((_, cb)) = self.read_op.take() {
                cb(
                    self,
                    Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out")),
                );
            }
        }
        if !self.closed && self.flush_deadline.is_some_and(|d| d <= now) {
            self.flush_deadline = None;
            if let Some(cb) = self.flush_op.take() {
                cb(
                    self,
                    Err(io::Error::new(io::ErrorKind::TimedOut, "flush timed out")),
                );
            }
        }
    }

    /// Before the connection is dropped: one last attempt to send buffered output.
    pub(crate) fn final_write(&mut self) {
        if self.out_pos < self.out.len() && self.write_err.is_none() {
            self.try_write();
        }
    }
}

/// Empties a written output buffer, freeing its storage if it grew past
/// [`KEEP_OUT_CAPACITY`].
fn emptied(out: &mut Vec<u8>) {
    if out.capacity() > KEEP_OUT_CAPACITY {
        *out = Vec::new();
    } else {
        out.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{KEEP_OUT_CAPACITY, emptied};

    #[test]
    fn a_written_burst_gives_its_storage_back() {
        let mut out = vec![7u8; 16 * 1024];
        emptied(&mut out);
        assert!(out.is_empty());
        assert_eq!(
            out.capacity(),
            0,
            "16 KiB of output storage kept after the write"
        );
    }

    #[test]
    fn small_output_storage_is_kept_for_the_next_reply() {
        let mut out = Vec::with_capacity(KEEP_OUT_CAPACITY);
        out.extend_from_slice(b"pong\n");
        let cap = out.capacity();
        emptied(&mut out);
        assert!(out.is_empty());
        assert_eq!(out.capacity(), cap);
        let mut over = Vec::with_capacity(KEEP_OUT_CAPACITY + 1);
        over.push(1);
        emptied(&mut over);
        assert_eq!(over.capacity(), 0);
    }
}
