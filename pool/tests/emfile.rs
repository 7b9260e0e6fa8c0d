//! Descriptor exhaustion: a server process under a low `RLIMIT_NOFILE` keeps running, does
//! not spin while the listener stays readable, logs at most about once a second, and serves
//! new connections once descriptors are free again.
//!
//! The server runs in a child process: this test binary re-executed with `ZM_POOL_EMFILE_CHILD`
//! set, running only `emfile_child`.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use util::{ChildGuard, Client, echo, tcp_listener};
use zmaster_pool::Pool;

const CHILD_ENV: &str = "ZM_POOL_EMFILE_CHILD";
/// How many descriptors the child may open beyond those it has when it starts serving.
const HEADROOM: u64 = 16;
/// Connections the parent holds open: well past the child's limit, within the backlog.
const HELD: usize = 60;

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("{} {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// The server side; does nothing unless run as the child.
#[test]
fn emfile_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    log::set_logger(&LOGGER).expect("logger");
    log::set_max_level(log::LevelFilter::Warn);
    let (l, addr) = tcp_listener();
    let pool = Pool::start(1, vec![(l, echo())]).expect("start");
    let open = std::fs::read_dir("/proc/self/fd").expect("fd dir").count() as u64;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, open + HEADROOM, hard).expect("setrlimit");
    println!("ZMPORT {}", addr.port());
    std::io::stdout().flush().expect("flush");
    // Serve until the parent closes our stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    pool.shutdown();
    std::process::exit(0);
}

#[test]
fn emfile_backs_off_without_spinning_and_recovers() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let child = Command::new(exe)
        .args(["--exact", "emfile_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut guard = ChildGuard::new(child);
    let stdout = guard.child.stdout.take().expect("stdout");
    let port = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            let at = l.find("ZMPORT ")?;
            l[at + 7..].trim().parse::<u16>().ok()
        })
        .expect("child printed its port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (warn_tx, warn_rx) = mpsc::channel::<String>();
    let stderr = guard.child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if warn_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut held: Vec<TcpStream> = (0..HELD)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let first = warn_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a warning about accept");
    assert!(
        first.contains("WARN accept") && first.contains("pausing"),
        "unexpected log line: {first}"
    );
    // The accepted connections are served while the listener is paused.
    held[0].write_all(b"held\n").expect("send");
    let mut reply = [0u8; 5];
    held[0]
        .set_read_timeout(Some(util::CLIENT_TIMEOUT))
        .expect("timeout");
    held[0]
        .read_exact(&mut reply)
        .expect("held connection answered");
    assert_eq!(&reply, b"held\n");

    // Over a window while the listener stays readable and the process stays out of fds,
    // the process must mostly sleep (a spin would use ~100% of a core).
    let ticks_per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let c0 = guard.cpu_ticks();
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let cpu = (guard.cpu_ticks() - c0) as f64 / ticks_per_s;
    let wall = w0.elapsed().as_secs_f64();
    assert!(
        cpu < 0.5 * wall,
        "child used {cpu:.2} s CPU in {wall:.2} s while out of descriptors"
    );
    assert!(
        guard.child.try_wait().expect("try_wait").is_none(),
        "child still running"
    );
    let more: Vec<String> = warn_rx.try_iter().collect();
    assert!(
        more.len() <= 3,
        "rate-limited warnings, got {} lines: {more:?}",
        more.len()
    );

    drop(held);
    let mut c = Client::tcp(addr);
    assert_eq!(c.roundtrip(b"recovered"), b"recovered");
    assert!(
        guard.child.try_wait().expect("try_wait").is_none(),
        "child still running"
    );
    drop(guard.child.stdin.take());
    let status = guard.child.wait().expect("wait");
    assert!(status.success(), "child exit: {status}");
}
