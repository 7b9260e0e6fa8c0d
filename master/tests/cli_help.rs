//! `-h`/`--help` prints usage and exits 0; `-V`/`--version` prints `zmaster VERSION`.

mod util;

use std::process::Command;

use util::*;

#[test]
fn help_and_version() {
    for flag in ["-h", "--help"] {
        let out = Command::new(ZMASTER).arg(flag).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("usage: zmaster -C CONFIG_DIR [-t|--check]"),
            "{text}"
        );
        assert!(text.contains("\n  -t, --check "), "{text}");
        assert!(text.contains("\n  -master-log TARGET "), "{text}");
        assert!(out.stderr.is_empty());
    }
    for flag in ["-V", "--version"] {
        // Even with other options: nothing else runs.
        let out = Command::new(ZMASTER)
            .args(["-C", "/no/such/dir", flag])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("zmaster {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn a_flag_in_a_value_position_is_a_value() {
    // `-pid-file -t` names a pid file "-t"; it does not switch to check mode.
    let out = Command::new(ZMASTER)
        .args(["-pid-file", "-t", "--try-lock"])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
