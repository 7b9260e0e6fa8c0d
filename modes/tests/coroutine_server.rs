//! coroutine::server_main in-process: a LIB-ZC-style accept loop (`loop_register`) and an
//! acceptor-thread service (`general_register`) side by side; stop_notify returns.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use zmaster_modes::coroutine::{self, Connection, Hooks};

fn echo(conn: Connection) {
    let mut lines = BufReader::new(&conn);
    let mut line = String::new();
    while lines.read_line(&mut line).unwrap_or(0) > 0 {
        let tag = if coroutine::in_coroutine() {
            "co "
        } else {
            "thread "
        };
        if (&conn)
            .write_all(format!("{tag}{line}").as_bytes())
            .is_err()
        {
            break;
        }
        line.clear();
    }
}

fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    format!("127.0.0.1:{port}")
}

fn ask(addr: &str, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connect {addr}: {e}"),
        }
    };
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("send");
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).expect("reply");
    reply
}

#[test]
fn loop_and_acceptor_services_serve_in_coroutines() {
    let (looped, accepted) = (free_addr(), free_addr());
    let services = format!("loop://{looped}, acc://{accepted}");
    let server = thread::spawn(move || {
        let hooks = Hooks::new().service_register(|name, listener, _kind| match name {
            "loop" => coroutine::loop_register(listener, echo),
            _ => coroutine::general_register(listener, echo),
        });
        let args = [
            "t",
            "alone",
            "-server-service",
            &services,
            "-server-thread-count",
            "2",
        ];
        coroutine::server_main(args, hooks)
    });
    for i in 0..20 {
        assert_eq!(ask(&looped, &format!("l{i}")), format!("co l{i}\n"));
        assert_eq!(ask(&accepted, &format!("a{i}")), format!("co a{i}\n"));
    }
    coroutine::stop_notify(Duration::ZERO);
    assert_eq!(server.join().expect("server thread"), ExitCode::SUCCESS);
}
