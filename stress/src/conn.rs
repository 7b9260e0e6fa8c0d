//! One client thread of a load run: a mio (epoll, edge-triggered) loop over its connections.
//!
//! Each connection is a small state machine: `Connecting` → (`Banner`) → `Sending` →
//! `Receiving` → next request (or close and reconnect in connect-per-request mode). A request
//! is admitted by a *ticket* ([`Plan::claim`]): tickets taken after the warm-up are measured,
//! and with `--requests K` only K measured tickets exist, so `ok + errors == K` unless the
//! hard time cap cuts the run. A failure closes the connection, is counted once by kind, and
//! the connection reconnects (after a short pause when the connect was refused).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Registry, Token};

use crate::report::{ErrorCounts, FailKind, Failure, new_histogram};
use crate::target::Target;

/// Counters shared by every client thread and the progress display.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) tickets: AtomicU64,
    pub(crate) stop: AtomicBool,
}

/// The fixed parameters of a run, shared read-only by the client threads.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) target: Target,
    pub(crate) size: usize,
    pub(crate) banner: usize,
    pub(crate) connect_per_request: bool,
    pub(crate) timeout: Duration,
    pub(crate) start: Instant,
    pub(crate) warmup_end: Instant,
    pub(crate) deadline: Instant,
    pub(crate) max_requests: Option<u64>,
    pub(crate) keep_failures: usize,
}

/// Admission for one request: `record` is false during the warm-up.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    record: bool,
}

impl Plan {
    fn claim(&self, shared: &Shared, now: Instant) -> Option<Ticket> {
        if shared.stop.load(Ordering::Relaxed) || now >= self.deadline {
            return None;
        }
        if now < self.warmup_end {
            return Some(Ticket { record: false });
        }
        match self.max_requests {
            Some(k) if shared.tickets.fetch_add(1, Ordering::Relaxed) >= k => None,
            _ => Some(Ticket { record: true }),
        }
    }

    fn backoff(kind: FailKind) -> Duration {
        match kind {
            FailKind::Refused | FailKind::Other => Duration::from_millis(10),
            _ => Duration::ZERO,
        }
    }
}

/// What one client thread measured.
#[derive(Debug)]
pub(crate) struct ThreadResult {
    pub(crate) ok: u64,
    pub(crate) errors: ErrorCounts,
    pub(crate) hist: Histogram<u64>,
    pub(crate) failures: Vec<Failure>,
    pub(crate) dropped: u64,
    pub(crate) end: Instant,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Start a non-blocking connect. `spread` (connect-per-request to an IPv4 loopback
    /// target) binds the client end to `127.0.0.(1 + spread % SOURCES)` first.
    fn connect(target: &Target, spread: Option<usize>) -> io::Result<Stream> {
        match target {
            Target::Tcp(a) => {
                let s = match (spread, a) {
                    (Some(k), SocketAddr::V4(v4)) if v4.ip().is_loopback() => {
                        spread_connect(*v4, k)?
                    }
                    _ => TcpStream::connect(*a)?,
                };
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Target::Unix(p) => Ok(Stream::Unix(UnixStream::connect(p)?)),
        }
    }

    /// `Ok(true)` once connected, `Ok(false)` while the connect is in progress.
    fn connected(&self) -> io::Result<bool> {
        let (err, peer) = match self {
            Stream::Tcp(s) => (s.take_error()?, s.peer_addr().map(|_| ())),
            Stream::Unix(s) => (s.take_error()?, s.peer_addr().map(|_| ())),
        };
        if let Some(e) = err {
            return Err(e);
        }
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn source(&mut self) -> &mut dyn Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
}

/// Source addresses a connect-per-request load spreads its connects over.
///
/// Each closed connection leaves the client end in TIME_WAIT, and Linux reuses such a
/// 4-tuple for a new connect only after `tcp_tw_reuse_delay` (1 s): one source address
/// therefore caps a connect loop at about half the ephemeral port range per second
/// (~14,000 connections/s with the default 32768–60999) whatever the server does. Eight
/// loopback sources lift that cap eightfold.
pub(crate) const SOURCES: usize = 8;

/// A non-blocking connect from `127.0.0.(1 + k % SOURCES)` to `to`, its port chosen by
/// `connect` (`IP_BIND_ADDRESS_NO_PORT`), so the whole 4-tuple space is used.
fn spread_connect(to: SocketAddrV4, k: usize) -> io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)
        .map_err(io::Error::from)?;
    let last = u8::try_from(1 + k % SOURCES).unwrap_or(1);
    let from = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, last), 0);
    sock.bind(&from.into())?;
    match sock.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(sock)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Banner(usize),
    Sending,
    Receiving,
    Backoff(Instant),
    Done,
}

struct Conn {
    id: usize,
    local: usize,
    stream: Option<Stream>,
    state: State,
    ticket: Option<Ticket>,
    started: Instant,
    deadline: Instant,
    wbuf: Vec<u8>,
    wpos: usize,
    rbuf: Vec<u8>,
    seq: u64,
    /// Streams opened so far: tells whether input processing replaced the stream.
    opened: u64,
}

/// The per-thread loop state.
struct Worker<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    registry: &'a Registry,
    res: ThreadResult,
    keep: usize,
    active: usize,
    next_timer: Instant,
    /// Connects started, to rotate the source address ([`SOURCES`]).
    connects: usize,
}

/// Run one client thread over the global connection ids `ids` until the plan ends.
pub(crate) fn run_thread(plan: &Plan, shared: &Shared, ids: &[usize]) -> io::Result<ThreadResult> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let now = Instant::now();
    let mut conns: Vec<Conn> = ids
        .iter()
        .enumerate()
        .map(|(local, &id)| Conn {
            id,
            local,
            stream: None,
            state: State::Backoff(now),
            ticket: None,
            started: now,
            deadline: now,
            wbuf: Vec::with_capacity(plan.size + 1),
            wpos: 0,
            rbuf: Vec::with_capacity(plan.size + 64),
            seq: 0,
            opened: 0,
        })
        .collect();
    let registry = poll.registry().try_clone()?;
    let mut w = Worker {
        plan,
        shared,
        registry: &registry,
        res: ThreadResult {
            ok: 0,
            errors: ErrorCounts::default(),
            hist: new_histogram(),
            failures: Vec::new(),
            dropped: 0,
            end: now,
        },
        keep: plan.keep_failures,
        active: conns.len(),
        next_timer: now,
        connects: 0,
    };
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if now >= w.next_timer {
            w.check_timers(&mut conns, now);
        }
        if w.active == 0 || now >= plan.deadline || shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let wake = w
            .next_timer
            .min(plan.deadline)
            .min(now + Duration::from_millis(50));
        match poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        for ev in events.iter() {
            let Some(c) = conns.get_mut(ev.token().0) else {
                continue;
            };
            if c.stream.is_none() {
                continue;
            }
            if c.state == State::Connecting {
                let r = c.stream.as_ref().map_or(Ok(false), Stream::connected);
                match r {
                    Ok(true) => w.on_connected(c, now),
                    Ok(false) => continue,
                    Err(e) => {
                        w.fail(c, FailKind::classify(&e), format!("connect: {e}"), now);
                        continue;
                    }
                }
            }
            if c.state == State::Sending && ev.is_writable() {
                w.try_write(c, now);
            }
            if c.stream.is_some() {
                let closed = ev.is_read_closed() || ev.is_error();
                w.drain_read(c, &mut scratch, closed, now);
            }
        }
    }
    w.res.end = Instant::now().min(plan.deadline);
    for c in &mut conns {
        w.close(c);
    }
    Ok(w.res)
}

impl Worker<'_> {
    fn check_timers(&mut self, conns: &mut [Conn], now: Instant) {
        let mut next = now + Duration::from_secs(3600);
        for c in conns.iter_mut() {
            match c.state {
                State::Backoff(until) if until <= now => self.start_cycle(c, now),
                State::Connecting | State::Banner(_) | State::Sending | State::Receiving
                    if c.deadline <= now =>
                {
                    let what = match c.state {
                        State::Connecting => "connect",
                        State::Banner(_) => "banner",
                        _ => "reply",
                    };
                    let detail = format!("no {what} within {:?}", self.plan.timeout);
                    self.fail(c, FailKind::Timeout, detail, now);
                }
                _ => {}
            }
            match c.state {
                State::Backoff(until) => next = next.min(until),
                State::Done => {}
                _ => next = next.min(c.deadline),
            }
        }
        self.next_timer = next;
    }

    fn arm(&mut self, at: Instant) {
        self.next_timer = self.next_timer.min(at);
    }

    /// Begin the next request on `c`: connect first if it has no stream.
    fn start_cycle(&mut self, c: &mut Conn, now: Instant) {
        let Some(t) = self.plan.claim(self.shared, now) else {
            self.close(c);
            c.state = State::Done;
            self.active -= 1;
            return;
        };
        c.ticket = Some(t);
        if c.stream.is_some() {
            self.send_request(c, now, true);
            return;
        }
        c.started = now;
        c.deadline = now + self.plan.timeout;
        self.arm(c.deadline);
        c.rbuf.clear();
        let spread = self.plan.connect_per_request.then(|| {
            self.connects += 1;
            self.connects
        });
        let mut s = match Stream::connect(&self.plan.target, spread) {
            Ok(s) => s,
            Err(e) => return self.fail(c, FailKind::classify(&e), format!("connect: {e}"), now),
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.registry.register(s.source(), Token(c.idx()), interest) {
            return self.fail(c, FailKind::Other, format!("epoll register: {e}"), now);
        }
        c.stream = Some(s);
        c.opened += 1;
        c.state = State::Connecting;
    }

    fn on_connected(&mut self, c: &mut Conn, now: Instant) {
        if self.plan.banner > 0 {
            c.state = State::Banner(self.plan.banner);
        } else {
            self.send_request(c, now, !self.plan.connect_per_request);
        }
    }

    fn send_request(&mut self, c: &mut Conn, now: Instant, restart_clock: bool) {
        if restart_clock {
            c.started = now;
        }
        c.deadline = now + self.plan.timeout;
        self.arm(c.deadline);
        c.seq += 1;
        c.wbuf.clear();
        let _ = write!(c.wbuf, "{}:{}:", c.id, c.seq);
        c.wbuf.resize(self.plan.size, b'x');
        c.wbuf.push(b'\n');
        c.wpos = 0;
        c.state = State::Sending;
        self.try_write(c, now);
    }

    fn try_write(&mut self, c: &mut Conn, now: Instant) {
        while c.wpos < c.wbuf.len() {
            let Some(s) = c.stream.as_mut() else { return };
            match s.write(&c.wbuf[c.wpos..]) {
                Ok(0) => return self.fail(c, FailKind::Reset, "write returned 0".into(), now),
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(c, FailKind::classify(&e), format!("write: {e}"), now),
            }
        }
        c.state = State::Receiving;
        self.process_input(c, now);
    }

    fn drain_read(&mut self, c: &mut Conn, scratch: &mut [u8], closed: bool, now: Instant) {
        loop {
            let Some(s) = c.stream.as_mut() else { return };
            match s.read(scratch) {
                Ok(0) => {
                    let opened = c.opened;
                    self.process_input(c, now);
                    // In connect-per-request mode a reply that came with the FIN completes
                    // the request and opens the next connection: that one did not close.
                    if c.stream.is_some() && c.opened == opened {
                        let have = c.rbuf.len();
                        let what = match c.state {
                            State::Banner(n) => {
                                format!("peer closed with {n} banner line(s) to go")
                            }
                            _ => {
                                format!("peer closed after {have} of {} reply bytes", c.wbuf.len())
                            }
                        };
                        self.fail(c, FailKind::Short, what, now);
                    }
                    return;
                }
                Ok(n) => {
                    c.rbuf.extend_from_slice(&scratch[..n]);
                    // A short read emptied the socket buffer; anything arriving later
                    // raises a new edge, so skip the extra read that would say EAGAIN —
                    // unless this event already reported the peer's FIN (data and FIN
                    // in one edge), which must be read to EOF now.
                    if n < scratch.len() && !closed {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(c, FailKind::classify(&e), format!("read: {e}"), now),
            }
        }
        self.process_input(c, now);
    }

    fn process_input(&mut self, c: &mut Conn, now: Instant) {
        loop {
            let Some(nl) = c.rbuf.iter().position(|&b| b == b'\n') else {
                return;
            };
            match c.state {
                State::Banner(n) => {
                    c.rbuf.drain(..=nl);
                    if n > 1 {
                        c.state = State::Banner(n - 1);
                    } else {
                        self.send_request(c, now, !self.plan.connect_per_request);
                        if c.state != State::Receiving {
                            return;
                        }
                    }
                }
                State::Receiving => {
                    let good = c.rbuf[..=nl] == c.wbuf[..];
                    if !good {
                        let got = String::from_utf8_lossy(&c.rbuf[..nl.min(40)]).into_owned();
                        c.rbuf.drain(..=nl);
                        return self.fail(
                            c,
                            FailKind::Wrong,
                            format!("reply {got:?} is not the request"),
                            now,
                        );
                    }
                    c.rbuf.drain(..=nl);
                    self.complete(c, now);
                    return;
                }
                _ => return,
            }
        }
    }

    /// Whether the request holding `t` counts: measured, and finished before the end (a
    /// completion seen only after the deadline — the loop was late — is not counted).
    fn counts(&self, t: Option<Ticket>, now: Instant) -> bool {
        t.is_some_and(|t| t.record) && now <= self.plan.deadline
    }

    fn complete(&mut self, c: &mut Conn, now: Instant) {
        if self.counts(c.ticket.take(), now) {
            let us = now.saturating_duration_since(c.started).as_micros().max(1);
            self.res
                .hist
                .saturating_record(u64::try_from(us).unwrap_or(u64::MAX));
            self.res.ok += 1;
            self.shared.ok.fetch_add(1, Ordering::Relaxed);
        }
        if self.plan.connect_per_request {
            self.close(c);
        }
        self.start_cycle(c, now);
    }

    fn fail(&mut self, c: &mut Conn, kind: FailKind, detail: String, now: Instant) {
        if self.counts(c.ticket.take(), now) {
            self.res.errors.add(kind);
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
            if self.res.failures.len() < self.keep {
                let at = now.saturating_duration_since(self.plan.start);
                self.res.failures.push(Failure {
                    at,
                    conn: c.id,
                    kind,
                    detail,
                });
            } else {
                self.res.dropped += 1;
            }
        }
        self.close(c);
        let until = now + Plan::backoff(kind);
        c.state = State::Backoff(until);
        self.arm(until);
    }

    fn close(&mut self, c: &mut Conn) {
        if let Some(mut s) = c.stream.take() {
            let _ = self.registry.deregister(s.source());
        }
        c.rbuf.clear();
    }
}

impl Conn {
    /// The mio token: this connection's index in its thread's vector.
    fn idx(&self) -> usize {
        self.local
    }
}
