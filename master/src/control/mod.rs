//! The control socket (SPEC §11): its protocol, the non-blocking server the supervision loop
//! drives, and a blocking client.
//!
//! The protocol: a client connects to the unix stream socket (mode 0600), sends one JSON
//! object on one line (at most [`MAX_REQUEST`] bytes, `\n`-terminated or ended by shutting
//! down its write side) and reads one JSON line back; the server then closes. Requests:
//!
//! | request | reply |
//! |---|---|
//! | `{"cmd":"status"}` | `{"ok":true,"status":{...}}` ([`Status`]) |
//! | `{"cmd":"reload"}` | `{"ok":true,"generation":N}` or `{"ok":false,"error":"FILE:LINE: ..."}` |
//! | `{"cmd":"scale","service":"NAME","n":N}` | `{"ok":true}` or an error |
//! | `{"cmd":"upgrade"}` | when the new master is ready: `{"ok":true,"pid":N}`; rolled back: `{"ok":false,"error":"..."}` |
//! | `{"cmd":"stop","mode":"graceful"\|"fast"}` | `{"ok":true}` (sent before the stop starts) |
//!
//! Any refused request gets `{"ok":false,"error":"..."}` naming what was wrong (bad JSON,
//! unknown `cmd`, a missing field, a line over [`MAX_REQUEST`] bytes).

mod client;
mod protocol;
mod render;
mod server;

pub use client::{MAX_REPLY, request};
pub use protocol::{
    ChildState, ChildStatus, LastExit, MAX_REQUEST, MasterStatus, Reply, Request, RequestError,
    ServiceState, ServiceStatus, Status, StopMode, parse_request,
};
pub use render::{human_duration, status_table};
pub use server::{CLIENT_TIMEOUT, ControlServer, MAX_CLIENTS, ReplyToken};
