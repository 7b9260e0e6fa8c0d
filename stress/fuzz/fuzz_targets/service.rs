//! cargo-fuzz target: the `-server-service` protocol parser (`protocol::parse_server_service`); the body is `zmaster_stress::fuzz::service_target`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zmaster_stress::fuzz;

fuzz_target!(|data: &[u8]| fuzz::service_target(data));
