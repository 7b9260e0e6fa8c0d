//! examples/zmasterctl and echo-aio under the real master: start, status, reload with a held
//! connection (old process drains, idle one exits), stop. Skipped when no zmaster is built.

mod util;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use util::{LineClient, free_port, wait_for};

const ECHO: &str = env!("CARGO_BIN_EXE_echo-aio");

/// `$ZMASTER_BIN`, else a `zmaster` next to echo-aio or in a release dir of the same target.
fn find_master() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("ZMASTER_BIN") {
        return Some(PathBuf::from(bin));
    }
    let dir = Path::new(ECHO).parent()?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    [
        dir.join("zmaster"),
        dir.parent()?.join("release/zmaster"),
        workspace.join("target/release/zmaster"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

struct Ctl {
    script: PathBuf,
    master: PathBuf,
    conf: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
}

impl Ctl {
    fn run(&self, action: &str) -> Output {
        Command::new("sh")
            .arg(&self.script)
            .arg("-C")
            .arg(&self.conf)
            .arg("-p")
            .arg(&self.pid_file)
            .arg("-l")
            .arg(&self.log)
            .arg(action)
            .env("ZMASTER", &self.master)
            .output()
            .expect("run zmasterctl")
    }

    fn master_pid(&self) -> u32 {
        let text = std::fs::read_to_string(&self.pid_file).expect("pid file");
        text.split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .expect("a pid in the pid file")
    }

    fn children(&self) -> BTreeSet<u32> {
        let pid = self.master_pid();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

#[test]
fn start_reload_drain_stop() {
    let Some(master) = find_master() else {
        eprintln!("skipped: no zmaster binary built (cargo build --release -p zmaster)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("etc");
    std::fs::create_dir(&conf).expect("mkdir");
    let port = free_port();
    std::fs::write(
        conf.join("echo.cf"),
        format!(
            "server-command = {ECHO}\nserver-service = 127.0.0.1:{port}\n\
             server-proc-count = 2\nserver-thread-count = 1\n"
        ),
    )
    .expect("write echo.cf");
    let ctl = Ctl {
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("zmasterctl"),
        master,
        conf,
        pid_file: dir.path().join("master.pid"),
        log: dir.path().join("master.log"),
    };
    assert_eq!(ctl.run("status").status.code(), Some(3));
    let started = ctl.run("start");
    assert!(started.status.success(), "{started:?}");
    assert_eq!(ctl.run("status").status.code(), Some(0));
    wait_for("2 servers", || ctl.children().len() == 2);
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let old = ctl.children();
    let mut held = LineClient::connect(addr);
    held.expect_echo("before reload");

    assert!(ctl.run("reload").status.success());
    // 2 new servers; of the old ones only the one holding our connection stays.
    wait_for("the new generation and the drain", || {
        let now = ctl.children();
        now.difference(&old).count() == 2 && now.intersection(&old).count() == 1
    });
    held.expect_echo("after reload");
    LineClient::connect(addr).expect_echo("new connection");
    drop(held);
    wait_for("the old server to exit", || {
        ctl.children().is_disjoint(&old)
    });

    let stopped = ctl.run("stop");
    assert!(stopped.status.success(), "{stopped:?}");
    assert_eq!(ctl.run("status").status.code(), Some(3));
}
