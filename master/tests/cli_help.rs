//! `-h`/`--help` prints usage and exits 0; `-V`/`--version` prints `zmaster VERSION`.

mod cli_util;
mod util;

use cli_util::{text, zmaster, zmaster_in};
use util::*;

#[test]
fn help_and_version() {
    for flag in ["-h", "--help"] {
        let out = zmaster(ZMASTER, &[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let text = text(&out.stdout);
        assert!(
            text.starts_with("usage: zmaster -C CONFIG_DIR [-t|--check]"),
            "{text}"
        );
        assert!(text.contains("\n  -t, --check "), "{text}");
        assert!(text.contains("\n  -master-log TARGET "), "{text}");
        // Every option, the first one indented like the rest (review: `-C` was not, and
        // `-control` was missing).
        for option in ["-C DIR ", "-control SOCK ", "-master-upgrade-timeout D"] {
            assert!(text.contains(&format!("\n  {option}")), "{option}: {text}");
        }
        assert!(out.stderr.is_empty());
    }
    for flag in ["-V", "--version"] {
        // Even with other options: nothing else runs.
        let out = zmaster(ZMASTER, &["-C", "/no/such/dir", flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert_eq!(
            text(&out.stdout),
            format!("zmaster {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn a_flag_in_a_value_position_is_a_value() {
    // `-pid-file -t` names a pid file "-t"; it does not switch to check mode.
    let dir = tempfile::tempdir().unwrap();
    let out = zmaster_in(ZMASTER, dir.path(), &["-pid-file", "-t", "--try-lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}
