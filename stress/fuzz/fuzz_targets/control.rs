//! cargo-fuzz target: the control-socket request parser (`zmaster::control::parse_request`);
//! the body is `zmaster_stress::fuzz::control_target`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zmaster_stress::fuzz;

fuzz_target!(|data: &[u8]| fuzz::control_target(data));
