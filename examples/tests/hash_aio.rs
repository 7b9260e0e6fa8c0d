//! hash-aio: digests are right, and CPU-heavy requests run on rayon without stalling the worker.

mod util;

use std::thread;

use util::{LineClient, spawn_alone};
use zmaster_examples::digest;

const BIN: &str = env!("CARGO_BIN_EXE_hash-aio");

#[test]
fn answers_digests_and_errors() {
    let (_server, addr) = spawn_alone(BIN, &["-hash-max-rounds", "1000000"]);
    let mut client = LineClient::connect(addr);
    for n in [0u64, 1, 1000, 100_001, 1_000_000] {
        client.send_line(&n.to_string());
        let expected = digest::to_hex(digest::digest_serial(n));
        assert_eq!(client.read_line(), Some(expected), "n={n}");
    }
    for bad in ["x", "-1", "1000001"] {
        client.send_line(bad);
        let reply = client.read_line().unwrap_or_default();
        assert!(reply.starts_with("ERR "), "{bad}: {reply}");
    }
    client.send_line("exit");
    client.expect_closed();
}

#[test]
fn heavy_request_does_not_stall_cheap_ones_on_the_same_worker() {
    // One worker: if the heavy request ran on it, the cheap client would get no answer
    // until the heavy one is done.
    let (_server, addr) = spawn_alone(BIN, &["-server-thread-count", "1"]);
    let heavy_rounds: u64 = 100_000_000;
    let mut heavy = LineClient::connect(addr);
    let mut cheap = LineClient::connect(addr);
    cheap.send_line("10");
    let cheap_answer = cheap.read_line().expect("cheap answer");
    heavy.send_line(&heavy_rounds.to_string());
    let waiter = thread::spawn(move || heavy.read_line());
    let mut answered_meanwhile = 0u32;
    while !waiter.is_finished() && answered_meanwhile < 1_000_000 {
        cheap.send_line("10");
        assert_eq!(cheap.read_line().as_deref(), Some(cheap_answer.as_str()));
        answered_meanwhile += 1;
    }
    let heavy_answer = waiter.join().expect("join");
    assert_eq!(
        heavy_answer,
        Some(digest::to_hex(digest::digest_parallel(heavy_rounds)))
    );
    assert!(
        answered_meanwhile >= 10,
        "only {answered_meanwhile} cheap answers while the heavy request ran"
    );
}
