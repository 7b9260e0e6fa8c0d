//! aio::server_main in-process: serves the listeners the service_register hook registered and
//! returns after stop_notify.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use zmaster_modes::aio::{self, Conn, Hooks, ListenerKind};

fn on_line(conn: &mut Conn, line: std::io::Result<Option<Vec<u8>>>) {
    match line {
        Ok(Some(line)) => {
            conn.write(&line);
            conn.write(b"\n");
            conn.read_line(1024, on_line);
        }
        _ => conn.close(),
    }
}

#[test]
fn serves_then_returns_after_stop_notify() {
    let port = util::free_port();
    let addr = format!("127.0.0.1:{port}");
    let (tx, rx) = mpsc::channel();
    let (config_tx, config_rx) = mpsc::channel();
    let server = {
        let addr = addr.clone();
        thread::spawn(move || {
            let hooks = Hooks::new()
                .before_service(move |config| {
                    let threads = config.get("server-thread-count").map(str::to_owned);
                    config_tx.send(threads).expect("report");
                    Ok(())
                })
                .service_register(move |name, listener, kind| {
                    tx.send((name.to_owned(), kind)).expect("report");
                    aio::general_register(listener, |conn| conn.read_line(1024, on_line))
                });
            let service = format!("echo://{addr}");
            let args = [
                "t",
                "alone",
                "-server-service",
                &service,
                "-server-thread-count",
                "1",
            ];
            aio::server_main(args, hooks)
        })
    };
    let threads = config_rx.recv().expect("before_service ran");
    assert_eq!(threads.as_deref(), Some("1"));
    assert_eq!(
        rx.recv().expect("service_register ran"),
        ("echo".to_owned(), ListenerKind::Inet)
    );
    let mut stream = connect_retrying(&addr);
    stream.write_all(b"ping\n").expect("send");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("echo");
    assert_eq!(line, "ping\n");

    aio::stop_notify(Duration::ZERO);
    assert_eq!(server.join().expect("server thread"), ExitCode::SUCCESS);
    // server_main shut the pool down before returning: no acceptor or worker thread is left.
    assert_eq!(pool_threads(), Vec::<String>::new());
    assert!(aio::config().get("server-service").is_some());
}

/// The names of this process's threads that belong to a pool.
fn pool_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .filter(|name| name.starts_with("zm-acceptor") || name.starts_with("zm-worker"))
        .collect()
}

fn connect_retrying(addr: &str) -> TcpStream {
    for _ in 0..2000 {
        if let Ok(s) = TcpStream::connect(addr) {
            return s;
        }
        thread::sleep(Duration::from_millis(5));
    }
    panic!("server never listened on {addr}");
}
