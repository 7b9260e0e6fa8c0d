//! The control protocol's messages: typed requests, replies and the status document (SPEC §11).

use serde::{Deserialize, Serialize};

/// The longest request line accepted, newline included; a longer one gets an error reply.
pub const MAX_REQUEST: usize = 4096;

/// One request: the JSON object on the client's single line, tagged by `cmd`.
///
/// `{"cmd":"status"}`, `{"cmd":"reload"}`, `{"cmd":"scale","service":"echo","n":3}`,
/// `{"cmd":"stop","mode":"graceful"}` (`mode` is `graceful` or `fast`; default `graceful`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// The status document ([`Status`]).
    Status,
    /// Re-read the config dir and start a new generation; the reply carries the result.
    Reload,
    /// Set `service`'s process count to `n` until the next reload.
    Scale {
        /// The service's name (its `.cf` file stem).
        service: String,
        /// The new process count.
        n: u32,
    },
    /// Binary upgrade (SPEC §14, as SIGUSR2): start the new master and hand everything over;
    /// the reply comes when the new master is ready (`pid`) or was rolled back (`error`).
    Upgrade,
    /// Stop the master.
    Stop {
        /// How: close listeners and drain (`graceful`) or SIGTERM the children now (`fast`).
        #[serde(default)]
        mode: StopMode,
    },
}

/// How the master stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopMode {
    /// Close listeners, softstop children, SIGTERM what is left at the stop timeout.
    #[default]
    Graceful,
    /// SIGTERM every child now (SIGTERM/SIGINT's stop).
    Fast,
}

/// One reply: `{"ok":true, ...}` or `{"ok":false,"error":"..."}`; a status reply carries
/// `status`, a reload reply `generation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not, as one line (a reload refused: `FILE:LINE: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The generation now running (after a reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// The new master's pid (after an upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The status document (after `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Reply {
    /// `{"ok":true}`.
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            error: None,
            generation: None,
            pid: None,
            status: None,
        }
    }

    /// `{"ok":false,"error":message}`.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(message.into()),
            ..Reply::ok()
        }
    }

    /// A successful reload: `{"ok":true,"generation":N}`.
    pub fn reloaded(generation: u64) -> Reply {
        Reply {
            generation: Some(generation),
            ..Reply::ok()
        }
    }

    /// A successful upgrade: `{"ok":true,"pid":N}`, the new master's pid.
    pub fn upgraded(pid: u32) -> Reply {
        Reply {
            pid: Some(pid),
            ..Reply::ok()
        }
    }

    /// A status reply.
    pub fn status(status: Status) -> Reply {
        Reply {
            status: Some(status),
            ..Reply::ok()
        }
    }

    /// The reply as one JSON line, newline included.
    pub fn to_line(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail; an empty object
        // is still a valid line should serde ever disagree.
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        line.push('\n');
        line
    }
}

/// SPEC §11's status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The master itself.
    pub master: MasterStatus,
    /// Every service, in name order.
    pub services: Vec<ServiceStatus>,
}

/// The master's part of [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterStatus {
    /// The master's pid.
    pub pid: u32,
    /// Seconds since the master started.
    pub uptime_s: f64,
    /// The generation now running (1 at start, one more per applied reload).
    pub generation: u64,
    /// The config dir, absolute.
    pub config_dir: String,
}

/// One service's part of [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The `.cf` file stem.
    pub name: String,
    /// Running, waiting in backoff, or given up.
    pub state: ServiceState,
    /// The process count it keeps (`server-proc-count`, or as scaled).
    pub proc_count: u32,
    /// Children started to replace ones that exited.
    pub restarts: u64,
    /// The delay before its next start while in backoff, else 0.
    pub backoff_ms: u64,
    /// The last child that exited, if any.
    pub last_exit: Option<LastExit>,
    /// Its live children.
    pub children: Vec<ChildStatus>,
}

/// A service's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Keeping its process count.
    Running,
    /// Waiting to restart after young deaths.
    Backoff,
    /// Given up (`server-give-up-after`): no starts until a reload or a scale.
    Failed,
}

/// The last exit of one of a service's children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastExit {
    /// The child's pid.
    pub pid: u32,
    /// `exit status 1`, `killed by SIGKILL`.
    pub reason: String,
    /// How long it lived, in seconds.
    pub lived_s: f64,
    /// How long ago it exited, in seconds.
    pub ago_s: f64,
}

/// One live child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildStatus {
    /// Its pid.
    pub pid: u32,
    /// The generation that started it.
    pub generation: u64,
    /// Seconds since it started.
    pub uptime_s: f64,
    /// Serving, draining or detached.
    pub state: ChildState,
}

/// A child's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildState {
    /// A current-generation child taking connections.
    Serving,
    /// An old-generation or retiring child finishing its connections.
    Draining,
    /// A child that closed its status pipe; replaced, left to finish.
    Detached,
}

/// Why a request line was refused: one line naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError(pub String);

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RequestError {}

/// Parses one request line (without or with its trailing `\n`/`\r\n`). Never panics: any
/// input gives a request or an error naming what was wrong.
///
/// # Errors
/// A line over [`MAX_REQUEST`] bytes, not UTF-8, empty, not JSON, or not one of the requests.
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST {
        return Err(RequestError(format!(
            "request longer than {MAX_REQUEST} bytes"
        )));
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|e| {
        RequestError(format!(
            "request is not UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(RequestError("empty request".into()));
    }
    let request: Request = serde_json::from_str(text).map_err(bad_request)?;
    // serde's deny_unknown_fields does not reach unit variants: check those by hand.
    if matches!(
        request,
        Request::Status | Request::Reload | Request::Upgrade
    ) {
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(bad_request)?;
        if let Some(extra) = fields.keys().find(|k| *k != "cmd") {
            return Err(RequestError(format!(
                "bad request: unknown field `{}`, expected only `cmd`",
                one_line(extra)
            )));
        }
    }
    Ok(request)
}

/// serde's message quotes an unknown variant or field decoded, so a JSON `\n` in it would
/// break the one-line error: control characters are escaped.
fn bad_request(e: serde_json::Error) -> RequestError {
    RequestError(format!("bad request: {}", one_line(&e.to_string())))
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`), so it prints as one line.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_request() {
        assert_eq!(
            parse_request(b"{\"cmd\":\"status\"}\n"),
            Ok(Request::Status)
        );
        assert_eq!(
            parse_request(b"{\"cmd\":\"reload\"}\r\n"),
            Ok(Request::Reload)
        );
        assert_eq!(
            parse_request(br#"{"cmd":"scale","service":"echo","n":3}"#),
            Ok(Request::Scale {
                service: "echo".into(),
                n: 3
            })
        );
        assert_eq!(
            parse_request(b"{\"cmd\":\"upgrade\"}"),
            Ok(Request::Upgrade)
        );
        assert_eq!(
            parse_request(br#"{"cmd":"stop","mode":"fast"}"#),
            Ok(Request::Stop {
                mode: StopMode::Fast
            })
        );
        assert_eq!(
            parse_request(br#"{"cmd":"stop"}"#),
            Ok(Request::Stop {
                mode: StopMode::Graceful
            })
        );
    }

    fn error_of(line: &[u8]) -> String {
        let e = parse_request(line).unwrap_err();
        assert_eq!(e.to_string(), e.0, "Display is the message");
        e.0
    }

    #[test]
    fn names_what_was_wrong() {
        assert!(error_of(b"").contains("empty"));
        assert!(error_of(b" \n").contains("empty"));
        assert!(error_of(b"\xff{}").contains("UTF-8"));
        assert!(error_of(b"status").contains("bad request"));
        assert!(error_of(br#"{"cmd":"restart"}"#).contains("unknown variant `restart`"));
        assert!(error_of(br#"{"cmd":"scale","service":"a"}"#).contains("missing field `n`"));
        assert!(error_of(br#"{"cmd":"scale","service":"a","n":-1}"#).contains("invalid value"));
        assert!(error_of(br#"{"cmd":"stop","mode":"slow"}"#).contains("unknown variant `slow`"));
        assert!(error_of(br#"{"cmd":"status","x":1}"#).contains("unknown field `x`"));
        assert!(error_of(br#"{"x":1,"cmd":"reload"}"#).contains("unknown field `x`"));
        assert!(error_of(br#"{"cmd":"upgrade","path":"/x"}"#).contains("unknown field `path`"));
        assert!(error_of(br#"{"cmd":"stop","mod":"fast"}"#).contains("unknown field `mod`"));
        assert!(error_of(br#"{"service":"a"}"#).contains("missing field `cmd`"));
    }

    #[test]
    fn bounds_the_line() {
        let mut long = br#"{"cmd":"status"}"#.to_vec();
        long.resize(MAX_REQUEST, b' ');
        assert_eq!(parse_request(&long), Ok(Request::Status));
        long.push(b' ');
        assert!(error_of(&long).contains("longer than 4096"));
    }

    #[test]
    fn replies_are_one_line_in_the_documented_shape() {
        assert_eq!(Reply::ok().to_line(), "{\"ok\":true}\n");
        assert_eq!(
            Reply::error("a.cf:3: bad").to_line(),
            "{\"ok\":false,\"error\":\"a.cf:3: bad\"}\n"
        );
        assert_eq!(
            Reply::reloaded(4).to_line(),
            "{\"ok\":true,\"generation\":4}\n"
        );
        assert_eq!(Reply::upgraded(77).to_line(), "{\"ok\":true,\"pid\":77}\n");
        let status = Status {
            master: MasterStatus {
                pid: 7,
                uptime_s: 1.5,
                generation: 2,
                config_dir: "/etc/z".into(),
            },
            services: vec![ServiceStatus {
                name: "echo".into(),
                state: ServiceState::Backoff,
                proc_count: 2,
                restarts: 3,
                backoff_ms: 400,
                last_exit: Some(LastExit {
                    pid: 9,
                    reason: "exit status 1".into(),
                    lived_s: 0.1,
                    ago_s: 0.2,
                }),
                children: vec![ChildStatus {
                    pid: 10,
                    generation: 2,
                    uptime_s: 3.0,
                    state: ChildState::Draining,
                }],
            }],
        };
        let line = Reply::status(status.clone()).to_line();
        assert_eq!(
            line,
            concat!(
                r#"{"ok":true,"status":{"master":{"pid":7,"uptime_s":1.5,"generation":2,"config_dir":"/etc/z"},"#,
                r#""services":[{"name":"echo","state":"backoff","proc_count":2,"restarts":3,"backoff_ms":400,"#,
                r#""last_exit":{"pid":9,"reason":"exit status 1","lived_s":0.1,"ago_s":0.2},"#,
                r#""children":[{"pid":10,"generation":2,"uptime_s":3.0,"state":"draining"}]}]}}"#,
                "\n"
            )
        );
        let back: Reply = serde_json::from_str(&line).unwrap();
        assert_eq!(back.status, Some(status));
        let none = r#"{"name":"a","state":"running","proc_count":1,"restarts":0,"backoff_ms":0,"last_exit":null,"children":[]}"#;
        let svc: ServiceStatus = serde_json::from_str(none).unwrap();
        assert_eq!(serde_json::to_string(&svc).unwrap(), none);
    }
}
