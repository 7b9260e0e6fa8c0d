//! The mail-greeter's line protocol: an SMTP, IMAP or POP3 style banner and a few commands.
//!
//! A stand-in for a mail daemon, enough to run the seed's picture of 10 smtpd, 6 imapd and
//! 1 pop3d under one master: the banner says which service answered, `QUIT` (and IMAP's
//! `tag LOGOUT`) says goodbye and closes, `NOOP` answers OK, every other line is echoed as
//! is (so a load generator can ping-pong lines after reading the banner).

use std::fmt;

/// Which protocol's phrasing to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `220 NAME ready`, `250`, `221`.
    Smtp,
    /// `* OK NAME ready`, tagged `OK`, `* BYE`.
    Imap,
    /// `+OK NAME ready`, `+OK`.
    Pop3,
}

/// What to do with one received line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send the line back as received.
    Echo,
    /// Send this text (CRLF-terminated lines) and read the next line.
    Answer(String),
    /// Send this text, then close the connection.
    Close(String),
}

impl Style {
    /// Parses a `greeting` value: `smtp`, `imap` or `pop3` (any case).
    pub fn parse(text: &str) -> Option<Style> {
        match text.trim().to_ascii_lowercase().as_str() {
            "smtp" => Some(Style::Smtp),
            "imap" => Some(Style::Imap),
            "pop3" | "pop" => Some(Style::Pop3),
            _ => None,
        }
    }

    /// The banner sent when a client connects.
    pub fn banner(self, service: &str) -> String {
        match self {
            Style::Smtp => format!("220 {service} ready\r\n"),
            Style::Imap => format!("* OK {service} ready\r\n"),
            Style::Pop3 => format!("+OK {service} ready\r\n"),
        }
    }

    /// The reply to one line (without its `\n`; a trailing `\r` is ignored).
    pub fn reply(self, service: &str, line: &[u8]) -> Reply {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_ascii_whitespace();
        let tag = words.next().unwrap_or_default();
        match (self, tag.to_ascii_uppercase().as_str()) {
            (Style::Smtp, "QUIT") => Reply::Close(format!("221 2.0.0 {service} closing\r\n")),
            (Style::Smtp, "NOOP") => Reply::Answer("250 2.0.0 OK\r\n".into()),
            (Style::Smtp, "HELO" | "EHLO") => Reply::Answer(format!("250 {service}\r\n")),
            (Style::Pop3, "QUIT") => Reply::Close(format!("+OK {service} signing off\r\n")),
            (Style::Pop3, "NOOP") => Reply::Answer("+OK\r\n".into()),
            (Style::Imap, "QUIT") => Reply::Close(format!("* BYE {service} logging out\r\n")),
            (Style::Imap, _) => match words.next().map(str::to_ascii_uppercase).as_deref() {
                Some("LOGOUT") => Reply::Close(format!(
                    "* BYE {service} logging out\r\n{tag} OK LOGOUT completed\r\n"
                )),
                Some("NOOP") => Reply::Answer(format!("{tag} OK NOOP completed\r\n")),
                _ => Reply::Echo,
            },
            _ => Reply::Echo,
        }
    }
}

impl fmt::Display for Style {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Style::Smtp => "smtp",
            Style::Imap => "imap",
            Style::Pop3 => "pop3",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners() {
        assert_eq!(Style::Smtp.banner("smtp"), "220 smtp ready\r\n");
        assert_eq!(Style::Imap.banner("imap"), "* OK imap ready\r\n");
        assert_eq!(Style::Pop3.banner("pop3"), "+OK pop3 ready\r\n");
        assert_eq!(Style::parse(" IMAP "), Some(Style::Imap));
        assert_eq!(Style::parse("x"), None);
    }

    #[test]
    fn commands() {
        let s = "svc";
        assert!(
            matches!(Style::Smtp.reply(s, b"quit\r"), Reply::Close(t) if t.starts_with("221 "))
        );
        assert_eq!(Style::Smtp.reply(s, b"hello"), Reply::Echo);
        assert_eq!(
            Style::Smtp.reply(s, b"NOOP"),
            Reply::Answer("250 2.0.0 OK\r\n".into())
        );
        assert!(
            matches!(Style::Imap.reply(s, b"a1 logout"), Reply::Close(t) if t.ends_with("a1 OK LOGOUT completed\r\n"))
        );
        assert_eq!(
            Style::Imap.reply(s, b"a2 NOOP"),
            Reply::Answer("a2 OK NOOP completed\r\n".into())
        );
        assert_eq!(Style::Imap.reply(s, b""), Reply::Echo);
        assert!(matches!(Style::Pop3.reply(s, b"QUIT"), Reply::Close(t) if t.starts_with("+OK")));
    }
}
