//! zmaster-modes: the server runtime shared by both modes, the aio mode and the coroutine mode.
#![warn(missing_docs)]

pub mod aio;
pub mod coroutine;
