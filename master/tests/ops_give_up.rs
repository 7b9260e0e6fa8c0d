//! `server-give-up-after N`: after N young deaths in a row a service is `failed` (one error
//! line), starts nothing more, and starts again after a scale (SIGTTIN) or a reload.

mod util;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use util::*;

const FAILED: &str = "service=crash failed: 3 young deaths in a row";

fn exits(master: &Master) -> usize {
    master
        .log_text()
        .lines()
        .filter(|l| l.contains("service=crash pid=") && l.contains("exited: exit status 3"))
        .count()
}

fn failed_lines(master: &Master) -> usize {
    master.log_text().matches(FAILED).count()
}

/// No new start for `crash` for longer than its backoff could delay one (the third death set
/// it to 400 ms): a negative, so it can only be watched for a while.
fn assert_no_more_starts(master: &Master, want: usize) {
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(exits(master), want, "{}", master.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_crash_loop_gives_up_after_n_young_deaths_until_a_scale_or_a_reload() {
    let s = Setup::new();
    let port = free_port();
    s.probe_service(
        "crash",
        &format!("127.0.0.1:{port}"),
        1,
        "probe-exit-after = 10ms\nserver-give-up-after = 3\n",
    );
    s.probe_service("fine", &format!("127.0.0.1:{}", free_port()), 1, "");
    let mut master = s.start_master(&[]);
    wait_for(Duration::from_secs(10), FAILED, || {
        (failed_lines(&master) == 1).then_some(())
    });
    assert_eq!(exits(&master), 3);
    let line = master
        .log_text()
        .lines()
        .find(|l| l.contains(FAILED))
        .map(str::to_owned)
        .unwrap();
    assert!(
        line.contains("error:") && line.contains("until a reload or a scale"),
        "{line}"
    );
    assert_no_more_starts(&master, 3);
    // The other service is supervised as before.
    assert_eq!(master.children().len(), 1);

    // A scale (SIGTTIN: one more process) makes it start again; it fails again.
    master.signal(Signal::SIGTTIN);
    wait_for(Duration::from_secs(10), "a second give-up", || {
        (failed_lines(&master) == 2).then_some(())
    });
    // Two processes now: the third young death gives up, the other may still die after it.
    assert!((6..=7).contains(&exits(&master)), "{}", master.log_text());
    assert!(
        master
            .log_text()
            .contains("not restarting: the service failed")
    );

    // A reload too. It keeps the backoff level (a reload does not reset a crash loop), so
    // these three young deaths are spaced by the doubled delays: several seconds, more on a
    // loaded machine (flaky in CI at 10 s).
    let before = exits(&master);
    master.signal(Signal::SIGHUP);
    wait_for(Duration::from_secs(40), "a third give-up", || {
        (failed_lines(&master) == 3).then_some(())
    });
    assert!(exits(&master) >= before + 3, "{}", master.log_text());
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn without_give_up_a_crash_loop_goes_on() {
    let s = Setup::new();
    s.probe_service(
        "crash",
        &format!("127.0.0.1:{}", free_port()),
        1,
        "probe-exit-after = 10ms\n",
    );
    let mut master = s.start_master(&[]);
    wait_for(Duration::from_secs(10), "five young deaths", || {
        (exits(&master) >= 5).then_some(())
    });
    assert!(
        !master.log_text().contains("failed:"),
        "{}",
        master.log_text()
    );
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(Duration::from_secs(10)), Some(0));
}
