//! SIGHUP reloads: listener fds survive, a bad config changes nothing, bursts converge.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

/// The socket inode behind fd 5 of a probe child, from its report.
fn listener_inode(s: &Setup, pid: i32) -> String {
    let (_, fds) = wait_for(Duration::from_secs(5), "the probe report", || s.report(pid));
    fds.iter()
        .find(|(fd, _)| *fd == 5)
        .map(|(_, t)| t.clone())
        .expect("fd 5")
}

#[test]
fn reload_keeps_listener_fds_and_never_refuses_a_connection() {
    let s = Setup::new();
    let port = free_port();
    s.probe_service("probe", &format!("0:{port}"), 2, "");
    let master = s.start_master(&[]);
    let old = master.wait_children(2);
    let inode = listener_inode(&s, old[0]);

    // A client connecting in a loop through the reloads: every connect must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (stop, ok, refused) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&refused));
        std::thread::spawn(move || {
            for _ in 0..100_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match std::net::TcpStream::connect(("127.0.0.1", port)) {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(_) => refused.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
    };
    // Same address written differently: 0:PORT -> 0.0.0.0:PORT is unchanged.
    s.probe_service("probe", &format!("0.0.0.0:{port}"), 2, "");
    for round in 0..3 {
        let before = master.children();
        master.signal(Signal::SIGHUP);
        wait_for(
            Duration::from_secs(10),
            &format!("new generation {round}"),
            || {
                let kids = master.children();
                (kids.len() == 2 && kids.iter().all(|k| !before.contains(k))).then_some(())
            },
        );
    }
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    assert_eq!(
        refused.load(Ordering::SeqCst),
        0,
        "connections refused during reload"
    );
    assert!(ok.load(Ordering::SeqCst) > 0);
    let new = master.children();
    assert_eq!(
        listener_inode(&s, new[0]),
        inode,
        "the listener was re-created"
    );
    let reply = ask_tcp(port, "after").unwrap();
    assert!(new.contains(&reply_pid(&reply)));
}

#[test]
fn reload_with_a_bad_config_keeps_serving() {
    let s = Setup::new();
    let port = free_port();
    s.probe_service("probe", &format!("127.0.0.1:{port}"), 2, "");
    let master = s.start_master(&[]);
    let kids = master.wait_children(2);
    s.write_cf("broken", "this line has no equals sign\n");
    master.signal(Signal::SIGHUP);
    wait_for(
        Duration::from_secs(5),
        "the reload error in the log",
        || {
            master
                .log_text()
                .contains("reload failed, keeping the running configuration")
                .then_some(())
        },
    );
    assert!(
        master.log_text().contains("broken.cf:1"),
        "{}",
        master.log_text()
    );
    assert_eq!(master.children(), kids, "{}", master.log_text());
    ask_tcp(port, "still").unwrap();

    // A reload whose new address cannot be bound changes nothing either.
    std::fs::remove_file(s.etc().join("broken.cf")).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    s.probe_service(
        "probe",
        &format!("127.0.0.1:{port}, 127.0.0.1:{taken_port}"),
        2,
        "",
    );
    master.signal(Signal::SIGHUP);
    wait_for(Duration::from_secs(5), "the bind error in the log", || {
        master
            .log_text()
            .contains(&format!("bind 127.0.0.1:{taken_port}"))
            .then_some(())
    });
    assert_eq!(master.children(), kids);
    ask_tcp(port, "still").unwrap();
}

#[test]
fn a_burst_of_reloads_converges_without_leaks() {
    let s = Setup::new();
    let port = free_port();
    s.probe_service("probe", &format!("127.0.0.1:{port}"), 2, "");
    s.probe_service("gone", &format!("127.0.0.1:{}", free_port()), 1, "");
    let master = s.start_master(&[]);
    let first = master.wait_children(3);
    // Once every child has exec'd and written its report the master's spawn bookkeeping (the
    // child's end of its private pipe, std's exec-status pipe) is closed.
    for kid in &first {
        wait_for(Duration::from_secs(5), "the probe report", || {
            s.report(*kid)
        });
    }
    let fds_before = fd_count(master.pid());
    std::fs::remove_file(s.etc().join("gone.cf")).unwrap();
    // Ten real reloads back to back (each one seen in the log before the next HUP), while the
    // previous generations are still starting and draining, then a burst of twenty at once.
    let reloads = |m: &Master| m.log_text().matches("reloaded: generation=").count();
    for n in 1..=10 {
        master.signal(Signal::SIGHUP);
        wait_for(Duration::from_secs(5), &format!("reload {n}"), || {
            (reloads(&master) >= n).then_some(())
        });
    }
    for _ in 0..20 {
        master.signal(Signal::SIGHUP);
    }
    wait_for(
        Duration::from_secs(10),
        "two children, none from the start",
        || {
            let kids = master.children();
            (kids.len() == 2 && kids.iter().all(|k| !first.contains(k))).then_some(())
        },
    );
    wait_for(Duration::from_secs(5), "an answer", || {
        ask_tcp(port, "x").ok()
    });
    // Exactly one listener and one child's private pipe fewer: no generation pipe, private pipe
    // or listener left behind by the reloads.
    let fd_list = || {
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", master.pid()))
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        format!(
                            "{}->{}",
                            e.file_name().to_string_lossy(),
                            std::fs::read_link(e.path())
                                .map(|p| p.display().to_string())
                                .unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        fds.sort();
        fds
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fd_count(master.pid()) != fds_before - 2 || master.children().len() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "fds: before {fds_before}, now {:?}; children {:?}; log:\n{}",
            fd_list(),
            master.children(),
            master.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reload_adds_and_removes_listeners() {
    let s = Setup::new();
    let (port, added) = (free_port(), free_port());
    let sock = s.path("p.sock");
    s.probe_service(
        "probe",
        &format!("127.0.0.1:{port}, local:{}", sock.display()),
        1,
        "",
    );
    let master = s.start_master(&[]);
    let old = master.wait_children(1);
    wait_for(Duration::from_secs(5), "the unix socket", || {
        ask_unix(&sock, "x").ok()
    });
    s.probe_service(
        "probe",
        &format!("127.0.0.1:{port}, 127.0.0.1:{added}"),
        1,
        "",
    );
    master.signal(Signal::SIGHUP);
    // Only the master's own listener counts: a parallel test's server can hold the port.
    wait_for(
        Duration::from_secs(5),
        "the master to bind the added port",
        || listens_on(master.pid(), added).then_some(()),
    );
    let reply = wait_for(Duration::from_secs(5), "the added listener", || {
        ask_tcp(added, "new").ok()
    });
    let new = master.children();
    assert!(!old.contains(&reply_pid(&reply)));
    assert!(new.contains(&reply_pid(&reply)), "{reply:?} from {new:?}");
    wait_for(
        Duration::from_secs(5),
        "the removed socket file to go",
        || (!sock.exists()).then_some(()),
    );
    assert!(ask_unix(&sock, "x").is_err());
    let master_fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", master.pid()))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        !master_fds.iter().any(|f| f.contains("p.sock")),
        "{master_fds:?}"
    );
}

#[test]
fn reload_terminates_the_children_of_a_removed_service_even_if_they_ignore_softstop() {
    // `sleep` never looks at fd 3: closing the generation pipe does not stop it, only the
    // SIGTERM the master sends to children of a service the new config no longer has.
    let s = Setup::new();
    let script = s.path("deaf.sh");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    s.write_cf(
        "deaf",
        &format!(
            "server-command = {}\nserver-service = 127.0.0.1:{}\nserver-proc-count = 1\n",
            script.display(),
            free_port()
        ),
    );
    s.probe_service("probe", &format!("127.0.0.1:{}", free_port()), 1, "");
    let master = s.start_master(&[]);
    let deaf = wait_for(Duration::from_secs(5), "the sleep child", || {
        let kids = master.wait_children(2);
        kids.into_iter().find(|k| exe_name(*k) == "sleep")
    });
    std::fs::remove_file(s.etc().join("deaf.cf")).unwrap();
    master.signal(Signal::SIGHUP);
    wait_for(
        Duration::from_secs(5),
        "the removed service's child to exit",
        || (!is_alive(deaf)).then_some(()),
    );
    let log = master.log_text();
    assert!(
        log.contains(&format!(
            "service=deaf pid={deaf} stopping: its service was removed"
        )),
        "{log}"
    );
    wait_for(Duration::from_secs(5), "the exit line", || {
        let log = master.log_text();
        log.contains(&format!(
            "service=deaf pid={deaf} (old-generation) exited: killed by SIGTERM"
        ))
        .then_some(())
    });
    assert_eq!(
        master.wait_children(1).len(),
        1,
        "the probe service runs on"
    );
}
