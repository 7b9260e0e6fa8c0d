//! mail-greeter: banners per protocol, QUIT/LOGOUT close, NOOP, echo, a bad greeting.

mod util;

use std::process::{Command, Stdio};

use util::{LineClient, spawn_alone};

const BIN: &str = env!("CARGO_BIN_EXE_mail-greeter");

#[test]
fn smtp_banner_noop_echo_and_quit() {
    let (_server, addr) = spawn_alone(BIN, &[]);
    let mut client = LineClient::connect(addr);
    assert_eq!(
        client.read_line().as_deref(),
        Some("220 mail-greeter ready\r")
    );
    client.send_line("NOOP");
    assert_eq!(client.read_line().as_deref(), Some("250 2.0.0 OK\r"));
    client.expect_echo("anything else");
    client.send_line("QUIT");
    assert_eq!(
        client.read_line().as_deref(),
        Some("221 2.0.0 mail-greeter closing\r")
    );
    client.expect_closed();
}

#[test]
fn imap_and_pop3_styles_name_the_service() {
    let port = util::free_port();
    let (_imap, addr) = spawn_alone(BIN, &["-greeting", "imap"]);
    let mut client = LineClient::connect(addr);
    assert_eq!(
        client.read_line().as_deref(),
        Some("* OK mail-greeter ready\r")
    );
    client.send_line("a1 LOGOUT");
    assert_eq!(
        client.read_line().as_deref(),
        Some("* BYE mail-greeter logging out\r")
    );
    assert_eq!(
        client.read_line().as_deref(),
        Some("a1 OK LOGOUT completed\r")
    );
    client.expect_closed();

    let child = Command::new(BIN)
        .args([
            "alone",
            "-server-service",
            &format!("pop3://127.0.0.1:{port}"),
        ])
        .args(["-greeting", "pop3"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut pop = util::Server { child };
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    util::wait_answering(&mut pop, addr);
    let mut client = LineClient::connect(addr);
    assert_eq!(client.read_line().as_deref(), Some("+OK pop3 ready\r"));
    client.send_line("QUIT");
    assert_eq!(
        client.read_line().as_deref(),
        Some("+OK pop3 signing off\r")
    );
    client.expect_closed();
}

#[test]
fn unknown_greeting_is_a_start_up_error() {
    let out = Command::new(BIN)
        .args([
            "alone",
            "-server-service",
            "127.0.0.1:1",
            "-greeting",
            "gopher",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("greeting"));
}

#[test]
fn a_silent_client_is_cut_at_the_idle_timeout() {
    // The echo examples' `echo-idle-timeout`, read the same way (`zmaster_examples::limits`).
    let (_server, addr) = spawn_alone(BIN, &["-echo-idle-timeout", "1s"]);
    let mut client = LineClient::connect(addr);
    assert_eq!(
        client.read_line().as_deref(),
        Some("220 mail-greeter ready\r")
    );
    client.expect_echo("served until it falls silent");
    // Nothing more is sent: the server closes (LineClient's read gives up only after its
    // hang bound, so a server without the timeout fails here).
    client.expect_closed();
}
