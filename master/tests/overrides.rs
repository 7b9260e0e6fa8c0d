//! Command-line `-key value` overrides reach every child, appended after `-server-service`.

mod util;

use std::time::Duration;

use util::*;

#[test]
fn command_line_overrides_are_appended_to_each_childs_argv() {
    let s = Setup::new();
    s.probe_service(
        "a",
        &format!("127.0.0.1:{}", free_port()),
        1,
        "probe-greeting = from-cf\n",
    );
    s.probe_service("b", &format!("127.0.0.1:{}", free_port()), 1, "");
    let master = s.start_master(&[
        "-probe-greeting",
        "from cli",
        "-server-proc-count",
        "2",
        "--verbose",
        "-server-config-path",
        "/nowhere",
    ]);
    let kids = master.wait_children(4);
    for kid in kids {
        let (argv, _) = wait_for(Duration::from_secs(5), "the probe's report", || {
            s.report(kid)
        });
        let at = argv
            .iter()
            .position(|a| a == "-server-service")
            .unwrap_or_else(|| panic!("no -server-service in {argv:?}"));
        // Master options (-C, --verbose) are not passed on, nor protocol keys, which the master
        // sets itself; the rest is, in key order.
        assert_eq!(argv[3], s.etc().display().to_string(), "{argv:?}");
        assert_eq!(
            argv[at + 2..],
            ["-probe-greeting", "from cli", "-server-proc-count", "2"],
            "{argv:?}"
        );
    }
}
