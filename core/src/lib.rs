//! zmaster-core: the config model, service addresses, the master/server protocol, the
//! command-line convention and logging setup shared by the master and the servers.
//!
//! ```
//! use std::path::Path;
//! use zmaster_core::{addr, config::Config};
//!
//! let cf = Config::parse("server-service = smtp://0:25, ctl://local:/run/ctl\n", Path::new("smtpd.cf"))?;
//! let services = addr::parse_service_list(cf.get("server-service").unwrap_or_default())?;
//! assert_eq!(services[0].name, "smtp");
//! # Ok::<(), zmaster_core::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod bind;
pub mod cli;
pub mod config;
pub mod error;
pub mod logging;
pub mod protocol;
pub mod value;

pub use error::{Error, ErrorKind, Result};
