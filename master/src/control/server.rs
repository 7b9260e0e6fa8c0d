//! The control socket's server: a non-blocking unix listener and its clients, driven by the
//! supervision loop through one epoll fd.
//!
//! Design notes: the loop polls [`ControlServer`]'s epoll fd (via `AsFd`) with its own fds and
//! calls [`ControlServer::handle_ready`] when it is readable or [`ControlServer::next_deadline`]
//! has passed. Nothing here ever blocks: every socket is non-blocking, a request is at most
//! [`MAX_REQUEST`] bytes, a client has [`CLIENT_TIMEOUT`] to send its line and again to read its
//! reply, and at most [`MAX_CLIENTS`] are kept (a new one evicts the oldest still reading). A
//! client whose reply is deferred (a reload) waits without a deadline and without readiness
//! interest, so it cannot wake the loop, only its hang-up can (it is then dropped).

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use super::protocol::{MAX_REQUEST, Reply, Request, parse_request};
use crate::error::{Error, ErrorKind, Result};

/// How many clients are kept at once.
pub const MAX_CLIENTS: usize = 16;
/// How long a client has to send its request, and again to read its reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the listener is left out of the epoll interest after a failed accept (`EMFILE`,
/// `ENFILE`, ...): it stays readable, so retrying at once would spin the loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// At most one accept-failure warning per this long (the others are counted in the next one).
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// The epoll key of the listener; clients use their id.
const LISTENER: u64 = u64::MAX;

/// Names a deferred reply: give it back with the reply to [`ControlServer::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyToken(u64);

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Reading,
    Waiting,
    Writing,
}

#[derive(Debug)]
struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    deadline: Option<Instant>,
    phase: Phase,
}

/// What to do with a client after some I/O.
enum Next {
    Keep,
    Drop,
}

/// The control socket: bound at `path` (mode 0600) and removed on drop if it is still ours.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    id: (u64, u64),
    /// Whether drop removes the socket file: not while it is still an old master's (adopted
    /// in an upgrade that is not done), nor after it was handed over to a new master.
    owns_file: bool,
    listener: UnixListener,
    epoll: Epoll,
    clients: HashMap<u64, Client>,
    next_id: u64,
    timeout: Duration,
    /// Set while the listener is out of the epoll interest after a failed accept.
    paused_until: Option<Instant>,
    /// When the last accept failure was logged, and how many failed since without a line.
    warned: Option<Instant>,
    unwarned: u64,
}

impl ControlServer {
    /// Binds the control socket at `path`. A stale socket file there (nothing answers) is
    /// replaced; a live one is an error, and so is anything that is not a socket. The socket
    /// is bound under a temporary name, made 0600, then renamed into place, so nobody can
    /// connect while it has looser permissions.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyRunning`] when a server answers at `path`; an I/O error naming the
    /// path when something else is there or binding fails.
    pub fn bind(path: &Path) -> Result<ControlServer> {
        let what = |verb: &str| format!("{verb} control socket {}", path.display());
        check_free(path)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(|e| Error::io(what("bind"), e))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(what("place"), e));
        }
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(what("stat"), e))?;
        ControlServer::serve(path, (meta.dev(), meta.ino()), listener, true)
    }

    /// Serves the control socket an upgrading master handed over: `fd` must be a unix stream
    /// listener, and the socket file at `path` is still the old master's (not removed on
    /// drop) until [`ControlServer::claim`]. (Its bound name is the temporary one
    /// [`ControlServer::bind`] renamed into place, so it is not compared with `path`.)
    ///
    /// # Errors
    /// `fd` is not a unix stream listener, or nothing is at `path`.
    pub fn adopt(path: &Path, fd: std::os::fd::OwnedFd) -> Result<ControlServer> {
        let sock = socket2::SockRef::from(&fd);
        let listening = sock.r#type().is_ok_and(|t| t == socket2::Type::STREAM)
            && sock.is_listener().unwrap_or(false)
            && sock.local_addr().is_ok_and(|a| a.is_unix());
        if !listening {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "the control socket handed over for {} is not a unix stream listener",
                    path.display()
                ),
            ));
        }
        let listener = UnixListener::from(fd);
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| Error::io(format!("stat control socket {}", path.display()), e))?;
        ControlServer::serve(path, (meta.dev(), meta.ino()), listener, false)
    }

    fn serve(
        path: &Path,
        id: (u64, u64),
        listener: UnixListener,
        owns_file: bool,
    ) -> Result<ControlServer> {
        let what = |verb: &str| format!("{verb} control socket {}", path.display());
        let server = ControlServer {
            path: path.to_owned(),
            id,
            owns_file,
            listener,
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
                .map_err(|e| Error::io("epoll_create", e.into()))?,
            clients: HashMap::new(),
            next_id: 0,
            timeout: CLIENT_TIMEOUT,
            paused_until: None,
            warned: None,
            unwarned: 0,
        };
        server
            .listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(what("set non-blocking"), e))?;
        server
            .epoll
            .add(
                &server.listener,
                EpollEvent::new(EpollFlags::EPOLLIN, LISTENER),
            )
            .map_err(|e| Error::io(what("epoll_ctl"), e.into()))?;
        Ok(server)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket (handed to the new master in an upgrade).
    pub fn listener_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The upgrade that handed this socket over is done: its file is this server's now.
    pub fn claim(&mut self) {
        self.owns_file = true;
    }

    /// A new master took the socket over: closes this server's copy and its clients, and
    /// leaves the socket file (and the listener, open in the new master) to it.
    pub fn hand_over(mut self) {
        self.owns_file = false;
    }

    /// Replaces [`CLIENT_TIMEOUT`].
    pub fn set_client_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// How many clients are connected.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// The earliest client deadline, or the end of an accept pause: call
    /// [`ControlServer::handle_ready`] by then at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients
            .values()
            .filter_map(|c| c.deadline)
            .chain(self.paused_until)
            .min()
    }

    /// Does every I/O that is ready without blocking: accepts, reads requests, writes replies,
    /// drops clients past their deadline. `answer` gets each complete request with its token
    /// and returns the reply, or `None` to defer it: the reply is then sent when it is given
    /// to [`ControlServer::complete`] with that token.
    pub fn handle_ready(
        &mut self,
        now: Instant,
        mut answer: impl FnMut(Request, ReplyToken) -> Option<Reply>,
    ) {
        if self.paused_until.is_some_and(|t| t <= now) {
            self.resume_accepting();
        }
        let mut events = [EpollEvent::empty(); 32];
        let n = self.epoll.wait(&mut events, PollTimeout::ZERO).unwrap_or(0);
        for event in &events[..n] {
            let key = event.data();
            if key == LISTENER {
                self.accept(now);
                continue;
            }
            let Some(client) = self.clients.get_mut(&key) else {
                continue;
            };
            let next = match client.phase {
                Phase::Reading => client.read(now, self.timeout, ReplyToken(key), &mut answer),
                Phase::Writing => client.write(),
                // A waiting client has no interest set: its only events are EPOLLHUP/EPOLLERR,
                // a hang-up while its reply is pending. Nobody to answer.
                Phase::Waiting => Next::Drop,
            };
            self.settle(key, next);
        }
        let late: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(&k, _)| k)
            .collect();
        for key in late {
            self.settle(key, Next::Drop);
        }
    }

    /// Sends a deferred reply. Returns false if the client is gone (hung up or timed out).
    pub fn complete(&mut self, token: ReplyToken, reply: Reply) -> bool {
        let timeout = self.timeout;
        let Some(client) = self.clients.get_mut(&token.0) else {
            return false;
        };
        if client.phase != Phase::Waiting {
            return false;
        }
        client.queue(&reply, Instant::now() + timeout);
        let next = client.write();
        self.settle(token.0, next);
        true
    }

    fn accept(&mut self, now: Instant) {
        // Bounded: a flood of connects cannot keep the loop here.
        for _ in 0..MAX_CLIENTS {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    self.pause_accepting(now, &e);
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS {
                let oldest = self
                    .clients
                    .iter()
                    .filter(|(_, c)| c.phase == Phase::Reading)
                    .map(|(&k, _)| k)
                    .min();
                match oldest {
                    Some(key) => self.settle(key, Next::Drop),
                    None => continue, // every slot has a request in hand: refuse this one
                }
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let key = self.next_id;
            self.next_id += 1;
            let event = EpollEvent::new(EpollFlags::EPOLLIN, key);
            if self.epoll.add(&stream, event).is_err() {
                continue;
            }
            let client = Client {
                stream,
                buf: Vec::new(),
                out: Vec::new(),
                sent: 0,
                deadline: Some(now + self.timeout),
                phase: Phase::Reading,
            };
            self.clients.insert(key, client);
        }
    }

    /// Takes the listener out of the epoll interest for [`ACCEPT_PAUSE`] (it stays readable
    /// while the connection waits in the backlog) and warns, at most once per
    /// [`ACCEPT_WARN_EVERY`].
    fn pause_accepting(&mut self, now: Instant, e: &io::Error) {
        let mut none = EpollEvent::new(EpollFlags::empty(), LISTENER);
        if let Err(err) = self.epoll.modify(&self.listener, &mut none) {
            log::warn!("control socket {}: epoll_ctl: {err}", self.path.display());
        }
        self.paused_until = Some(now + ACCEPT_PAUSE);
        if self.warned.is_some_and(|t| now < t + ACCEPT_WARN_EVERY) {
            self.unwarned += 1;
            return;
        }
        let more = match self.unwarned {
            0 => String::new(),
            n => format!(" ({n} more failures since the last warning)"),
        };
        log::warn!(
            "control socket {}: accept: {e}{more}; retrying in {ACCEPT_PAUSE:?}",
            self.path.display()
        );
        self.warned = Some(now);
        self.unwarned = 0;
    }

    fn resume_accepting(&mut self) {
        self.paused_until = None;
        let mut ev = EpollEvent::new(EpollFlags::EPOLLIN, LISTENER);
        if let Err(err) = self.epoll.modify(&self.listener, &mut ev) {
            log::warn!("control socket {}: epoll_ctl: {err}", self.path.display());
        }
    }

    /// Applies `next` to client `key` and points its epoll interest at what it waits for.
    fn settle(&mut self, key: u64, next: Next) {
        let Some(client) = self.clients.get(&key) else {
            return;
        };
        let flags = match (next, &client.phase) {
            (Next::Drop, _) => {
                let _ = self.epoll.delete(&client.stream);
                self.clients.remove(&key);
                return;
            }
            (Next::Keep, Phase::Reading) => EpollFlags::EPOLLIN,
            (Next::Keep, Phase::Writing) => EpollFlags::EPOLLOUT,
            (Next::Keep, Phase::Waiting) => EpollFlags::empty(),
        };
        let _ = self
            .epoll
            .modify(&client.stream, &mut EpollEvent::new(flags, key));
    }
}

impl Client {
    fn read(
        &mut self,
        now: Instant,
        timeout: Duration,
        token: ReplyToken,
        answer: &mut impl FnMut(Request, ReplyToken) -> Option<Reply>,
    ) -> Next {
        let mut chunk = [0u8; 1024];
        let eof = loop {
            let room = (MAX_REQUEST + 1 - self.buf.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => break true,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if self.buf.contains(&b'\n') || self.buf.len() > MAX_REQUEST {
                        break false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Drop,
            }
        };
        let line = match self.buf.iter().position(|&b| b == b'\n') {
            Some(end) => &self.buf[..=end],
            None if eof && self.buf.is_empty() => return Next::Drop,
            None => &self.buf[..],
        };
        let reply = match parse_request(line) {
            Ok(request) => match answer(request, token) {
                Some(reply) => reply,
                None => {
                    self.phase = Phase::Waiting;
                    self.deadline = None;
                    return Next::Keep;
                }
            },
            Err(e) => Reply::error(e.0),
        };
        self.queue(&reply, now + timeout);
        self.write()
    }

    fn queue(&mut self, reply: &Reply, deadline: Instant) {
        self.out = reply.to_line().into_bytes();
        self.sent = 0;
        self.phase = Phase::Writing;
        self.deadline = Some(deadline);
    }

    fn write(&mut self) -> Next {
        let sock = socket2::SockRef::from(&self.stream);
        while self.sent < self.out.len() {
            match sock.send_with_flags(&self.out[self.sent..], libc::MSG_NOSIGNAL) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Drop,
            }
        }
        // One request per connection: the reply is out, close.
        Next::Drop
    }
}

/// Fails unless `path` is free or a stale socket (nothing accepts on it).
fn check_free(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("stat {}", path.display()), e)),
        Ok(meta) => meta,
    };
    if !meta.file_type().is_socket() {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "control socket {}: exists and is not a socket",
                path.display()
            ),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(Error::new(
            ErrorKind::AlreadyRunning,
            format!(
                "control socket {} is already in use (another master?)",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("probe {}", path.display()), e)),
    }
}

impl AsFd for ControlServer {
    /// The epoll fd: readable when a client or the listener is ready.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

impl Drop for ControlServer {
    /// Removes the socket file if it is still the one bound here (a successor's socket at the
    /// same path is left alone).
    fn drop(&mut self) {
        if self.owns_file
            && let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.id
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
