//! mail-greeter: a minimal SMTP / IMAP / POP3 style line-protocol greeter (SPEC §9's mail
//! picture): a banner on connect, `QUIT` (IMAP: `tag LOGOUT`) says goodbye and closes,
//! `NOOP` answers OK, other lines are echoed. See `zmaster_examples::greeting`.
//!
//! The banner style comes from `-greeting smtp|imap|pop3` or the config key `greeting`
//! (default `smtp`); the banner names the service (`-server-service` name, else the program).
//! `echo-idle-timeout` (duration, default 5m, 0 = off), read as the echo examples read it
//! (`zmaster_examples::limits`): a client that has not sent a complete line that long after
//! the server started waiting for it, or has not taken a reply for that long, is cut off.

use std::io;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use zmaster_core::cli::program_name;
use zmaster_core::error::quoted;
use zmaster_examples::greeting::{Reply, Style};
use zmaster_examples::limits;
use zmaster_modes::aio::{self, Conn, Hooks};
use zmaster_modes::runtime::{Error, ErrorKind};

const MAX_LINE: usize = 8 * 1024;

static STYLE: OnceLock<Style> = OnceLock::new();

fn style() -> Style {
    STYLE.get().copied().unwrap_or(Style::Smtp)
}

fn on_line(service: Arc<str>, conn: &mut Conn, line: io::Result<Option<Vec<u8>>>) {
    let line = match line {
        Ok(Some(line)) => line,
        Ok(None) | Err(_) => return conn.close(),
    };
    let close = match style().reply(&service, &line) {
        Reply::Echo => {
            conn.write(&line);
            conn.write(b"\n");
            false
        }
        Reply::Answer(text) => {
            conn.write(text.as_bytes());
            false
        }
        Reply::Close(text) => {
            conn.write(text.as_bytes());
            true
        }
    };
    conn.flush(move |conn, sent| {
        if close || sent.is_err() {
            conn.close();
        } else {
            conn.read_line(MAX_LINE, move |c, l| on_line(service, c, l));
        }
    });
}

fn main() -> ExitCode {
    let ident = program_name(std::env::args_os().next().as_deref(), "mail-greeter");
    let hooks = Hooks::new()
        .before_service(|config| {
            limits::load(config)?;
            let text = config.get_str("greeting", "smtp");
            let style = Style::parse(text).ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("greeting = {}: expected smtp, imap or pop3", quoted(text)),
                )
            })?;
            let _ = STYLE.set(style);
            Ok(())
        })
        .service_register(move |name, listener, _kind| {
            let service: Arc<str> = if name.is_empty() {
                ident.as_str()
            } else {
                name
            }
            .into();
            aio::general_register(listener, move |conn| {
                // Every read and flush from now on waits at most the idle timeout.
                conn.set_timeout(limits::get().idle_timeout);
                conn.write(style().banner(&service).as_bytes());
                let service = Arc::clone(&service);
                conn.read_line(MAX_LINE, move |c, l| on_line(service, c, l));
            })
        })
        .before_softstop(|| log::info!("softstop: finishing open sessions"));
    aio::server_main(std::env::args_os(), hooks)
}
