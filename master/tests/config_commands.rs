//! `server-command` validation through the public API: PATH lookup for bare names, files that
//! are not executable, directories, empty values.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn load(dir: &Path) -> Result<Vec<zmaster::Service>, String> {
    zmaster::load_config_from_dir(dir)
        .and_then(|files| zmaster::validate(&files))
        .map_err(|e| e.to_string())
}

fn service(dir: &Path, command: &str, count: usize) {
    fs::write(
        dir.join("x.cf"),
        format!(
            "server-service = 127.0.0.1:7001\nserver-proc-count = {count}\nserver-command = {command}\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_bare_command_is_looked_up_in_path_and_kept_bare() {
    let dir = tempfile::tempdir().unwrap();
    service(dir.path(), "sh", 2);
    let s = load(dir.path()).unwrap();
    // Kept as written: the child's exec does the PATH lookup.
    assert_eq!(s[0].command, PathBuf::from("sh"));
    assert_eq!(s[0].proc_count, 2);
    service(dir.path(), "no-such-zmaster-server", 1);
    let err = load(dir.path()).unwrap_err();
    assert!(
        err.contains("x.cf:3: server-command \"no-such-zmaster-server\": not found in PATH"),
        "{err}"
    );
    // proc-count 0 starts nothing: the command is not checked.
    service(dir.path(), "no-such-zmaster-server", 0);
    assert_eq!(load(dir.path()).unwrap()[0].proc_count, 0);
}

#[test]
fn a_file_that_is_not_executable_or_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    fs::write(&plain, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
    for bad in [&plain, &sub] {
        service(dir.path(), bad.to_str().unwrap(), 1);
        let err = load(dir.path()).unwrap_err();
        let want = format!("x.cf:3: server-command {bad:?}: not an executable file");
        assert!(err.contains(&want), "{err}");
    }
    // Any execute bit will do (exec decides for the user the child runs as).
    for mode in [0o744, 0o654, 0o645] {
        fs::set_permissions(&plain, fs::Permissions::from_mode(mode)).unwrap();
        service(dir.path(), plain.to_str().unwrap(), 1);
        assert_eq!(load(dir.path()).unwrap()[0].command, plain, "{mode:o}");
    }
}

#[test]
fn an_empty_command_is_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("x.cf"),
        "server-service = 127.0.0.1:7001\nserver-command =\n",
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        err.contains("x.cf: missing required key server-command"),
        "{err}"
    );
    fs::write(
        dir.path().join("x.cf"),
        "server-command = /bin/sh\nserver-service =   \n",
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        err.contains("x.cf: missing required key server-service"),
        "{err}"
    );
}

fn write_cf(dir: &Path, text: &str) {
    fs::write(dir.join("x.cf"), text).unwrap();
}

#[test]
fn chdir_and_chroot_are_checked_and_relative_commands_made_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_cf(
        d,
        "server-command = /bin/sh\nserver-service = 127.0.0.1:7001\nmaster-chdir = /no/such/dir\n",
    );
    let err = load(d).unwrap_err();
    assert!(
        err.contains("x.cf:3: master-chdir") && err.contains("/no/such/dir"),
        "{err}"
    );
    write_cf(
        d,
        "server-command = /bin/sh\nserver-service = 127.0.0.1:7001\nmaster-chroot = /no/root\n",
    );
    let err = load(d).unwrap_err();
    assert!(err.contains("x.cf:3: master-chroot"), "{err}");
    // Relative to the master's cwd, not to master-chdir.
    let cwd = std::env::current_dir().unwrap();
    let bin = tempfile::tempdir_in(&cwd).unwrap();
    let exe = bin.path().join("srv");
    fs::write(&exe, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let rel = exe.strip_prefix(&cwd).unwrap();
    write_cf(
        d,
        &format!(
            "server-command = {}\nserver-service = 127.0.0.1:7001\nmaster-chdir = /\n",
            rel.display()
        ),
    );
    let s = load(d).unwrap();
    assert_eq!(s[0].command, exe);
    assert_eq!(s[0].chdir, Some(PathBuf::from("/")));
    assert_eq!(s[0].chroot, None);
}

#[test]
fn under_a_chroot_the_command_is_the_roots_and_is_not_checked_here() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("work")).unwrap();
    // Neither command exists outside the root; the relative one stays relative.
    for command in ["/only-inside-the-root", "bin/only-inside"] {
        write_cf(
            d,
            &format!(
                "server-command = {command}\nserver-service = 127.0.0.1:7001\nmaster-chroot = {}\nmaster-chdir = /work\n",
                root.path().display()
            ),
        );
        if nix::unistd::geteuid().is_root() {
            let s = load(d).unwrap();
            assert_eq!(s[0].command, PathBuf::from(command));
            assert_eq!(s[0].chroot.as_deref(), Some(root.path()));
            assert_eq!(s[0].chdir, Some(PathBuf::from("/work")));
        } else {
            let err = load(d).unwrap_err();
            assert!(
                err.contains("chroot needs the master to run as root"),
                "{err}"
            );
        }
    }
    // master-chdir is looked up inside the root.
    write_cf(
        d,
        &format!(
            "server-command = /x\nserver-service = 127.0.0.1:7001\nmaster-chroot = {}\nmaster-chdir = /tmp\n",
            root.path().display()
        ),
    );
    if nix::unistd::geteuid().is_root() {
        let err = load(d).unwrap_err();
        assert!(
            err.contains("x.cf:4: master-chdir") && err.contains("/tmp"),
            "{err}"
        );
    }
}
