//! The `zmaster` binary: see the `zmaster` library docs and `docs/operations.md`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = zmaster::main(std::env::args().skip(1), zmaster::Hooks::default());
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
