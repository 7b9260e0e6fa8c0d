//! cargo-fuzz target: the `server-service` address parser (`addr::parse_service_list`); the body is `zmaster_stress::fuzz::addr_target`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zmaster_stress::fuzz;

fuzz_target!(|data: &[u8]| fuzz::addr_target(data));
