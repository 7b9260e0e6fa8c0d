//! cargo-fuzz target: the config parser (`Config::parse`, `Config::load_file` for bytes that are not UTF-8); the body is `zmaster_stress::fuzz::config_target`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zmaster_stress::fuzz;

fuzz_target!(|data: &[u8]| fuzz::config_target(data));
