//! SPEC §13 `server-hang-timeout` in the master: a zmaster child that stops beating (here
//! `SIGSTOP`ped) is SIGKILLed and replaced within the timeout + 1 s; a LIB-ZC-style child
//! (zmaster-probe: it is given the memfd but never beats) is never killed for silence.

mod lifecycle_util;
mod util;

use std::time::{Duration, Instant};

use lifecycle_util::{echo_servers, echo_service, heartbeat_of, service, status};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use util::{Master, Setup, ask_unix, is_alive, reply_pid, wait_for, wait_until};

const TIMEOUT: Duration = Duration::from_secs(1);
const PATIENCE: Duration = Duration::from_secs(20);

/// The one echo child once it answers and beats; its pid.
fn beating_echo(master: &Master, sock: &std::path::Path, not: Option<i32>) -> i32 {
    wait_for(PATIENCE, "an echo child that answers and beats", || {
        let kid = *master
            .children()
            .iter()
            .find(|&&k| Some(k) != not && is_echo(k))?;
        let answer = ask_unix(sock, "hi").ok()?;
        let beat = heartbeat_of(kid)?.1;
        (answer == "hi" && beat != 0).then_some(kid)
    })
}

fn is_echo(pid: i32) -> bool {
    util::exe_name(pid).starts_with("echo-")
}

/// SIGSTOPs `kid` and waits until the master killed it and a new child answers: (the time to
/// the kill, the time to the answering replacement, its pid).
fn stop_and_wait_replaced(
    master: &Master,
    sock: &std::path::Path,
    kid: i32,
) -> (Duration, Duration, i32) {
    kill(Pid::from_raw(kid), Signal::SIGSTOP).expect("SIGSTOP");
    let stopped = Instant::now();
    wait_until(PATIENCE, "the stopped child to be killed", || {
        !is_alive(kid)
    });
    let killed = stopped.elapsed();
    let new = beating_echo(master, sock, Some(kid));
    (killed, stopped.elapsed(), new)
}

#[test]
fn a_stopped_child_is_killed_and_replaced_within_the_timeout_and_a_second() {
    for bin in echo_servers() {
        let setup = Setup::new();
        let sock = echo_service(&setup, &bin, 1, "server-hang-timeout = 1s\n");
        let control = setup.path("m.ctl");
        let master = setup.start_master(&["-control", control.to_str().unwrap()]);
        let kid = beating_echo(&master, &sock, None);
        let (killed, replaced, new) = stop_and_wait_replaced(&master, &sock, kid);
        let log = master.log_text();
        println!(
            "{}: stopped child killed after {killed:?}, replacement answering after {replaced:?} \
             (server-hang-timeout 1s)",
            bin.display()
        );
        assert!(
            killed <= TIMEOUT + Duration::from_secs(1),
            "{killed:?}; log:\n{log}"
        );
        let line = format!("service=echo pid={kid} heartbeat is ");
        assert!(
            log.lines()
                .any(|l| l.contains(&line) && l.contains("(server-hang-timeout 1s): killing it")),
            "{log}"
        );
        let now = status(&control);
        let last = &service(&now, "echo")["last_exit"];
        assert_eq!(last["pid"], kid, "{last}");
        let reason = last["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("killed by SIGKILL (hang: no heartbeat for "),
            "{reason}"
        );
        assert_ne!(new, kid);
    }
}

#[test]
fn a_child_that_never_beats_is_never_killed_for_silence() {
    let [echo, _] = echo_servers();
    let setup = Setup::new();
    let sock = echo_service(&setup, &echo, 1, "server-hang-timeout = 300ms\n");
    let probe_sock = setup.path("p.sock");
    setup.probe_service(
        "probe",
        &format!("p://{}", probe_sock.display()),
        1,
        "server-hang-timeout = 300ms\n",
    );
    let master = setup.start_master(&[]);
    let probe = wait_for(PATIENCE, "the probe to answer", || {
        ask_unix(&probe_sock, "hi").ok().map(|r| reply_pid(&r))
    });
    let started = Instant::now();
    // It was offered the heartbeat memfd (after its one listener) and never wrote it.
    let (argv, fds) = setup.report(probe).expect("the probe's report");
    let memfd = fds.iter().find(|(fd, _)| *fd == 6);
    assert!(
        memfd.is_some_and(|(_, target)| target.starts_with("/memfd:zmaster-heartbeat")),
        "{argv:?} {fds:?}"
    );
    // Three watched echo children stop in turn and are killed: each kill shows the master
    // checked, and the probe stays silent through all of it.
    let mut kid = beating_echo(&master, &sock, None);
    for _ in 0..3 {
        kid = stop_and_wait_replaced(&master, &sock, kid).2;
    }
    let silent = started.elapsed();
    println!("the probe stayed silent for {silent:?} (server-hang-timeout 300ms)");
    assert!(silent > Duration::from_millis(900), "{silent:?}");
    assert_eq!(
        heartbeat_of(probe).map(|h| h.1),
        Some(0),
        "the probe never beat"
    );
    let reply = ask_unix(&probe_sock, "still there").expect("the probe answers");
    assert_eq!(reply_pid(&reply), probe, "{}", master.log_text());
    let log = master.log_text();
    assert!(!log.contains(&format!("pid={probe} heartbeat")), "{log}");
}

/// CPU time (user + system, in clock ticks) process `pid` used so far.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: state is the 1st, utime the 12th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum()
}

#[test]
fn watching_heartbeats_is_no_busy_loop() {
    let [echo, _] = echo_servers();
    let setup = Setup::new();
    let sock = echo_service(&setup, &echo, 1, "server-hang-timeout = 200ms\n");
    let master = setup.start_master(&[]);
    let kid = beating_echo(&master, &sock, None);
    let first = heartbeat_of(kid).expect("a heartbeat").1;
    let (before, started) = (cpu_ticks(master.pid()), Instant::now());
    // A second of beats (every 25 ms), checked by the master every 50 ms.
    wait_until(PATIENCE, "a second of heartbeats", || {
        heartbeat_of(kid).is_some_and(|(_, beat)| beat >= first + 1_000_000_000)
    });
    let used = cpu_ticks(master.pid()) - before;
    let elapsed = started.elapsed();
    println!("the master used {used} clock ticks in {elapsed:?} watching one child");
    // A master that spins uses every tick (100 a second); one that sleeps, next to none.
    let ticks = (elapsed.as_secs_f64() * 100.0) as u64;
    assert!(used * 2 < ticks, "{used} of {ticks} ticks: a busy loop");
    assert!(is_alive(kid), "{}", master.log_text());
}
