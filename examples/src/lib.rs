//! zmaster-examples: code shared by the example servers and their tests.
//!
//! The binaries: `echo-aio` and `echo-coroutine` (line echo; who may `DETACH` is the
//! [`detach`] policy), `hash-aio` (CPU-heavy rayon work inside a handler) and `mail-greeter`
//! (the SMTP/IMAP/POP3 stand-in of `etc/mail/`). The echo servers' bounds on a hostile peer
//! are in [`limits`] (`echo-max-line`, `echo-idle-timeout`, `echo-max-pending`); [`outq`]
//! asks the kernel how much output a socket still holds.
// `unsafe` only in `outq` (one ioctl), which allows it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod detach;
pub mod digest;
pub mod greeting;
pub mod limits;
pub mod outq;
