//! hash-aio: digests are right, CPU-heavy requests run on rayon without stalling the worker,
//! memory stays bounded for any N, and a job whose client left is cancelled (its slot freed,
//! a draining generation not kept alive).

mod util;

use std::thread;

use util::{LineClient, spawn_alone, spawn_under_fake_master, wait_for};
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

/// Rounds of a request that would run for hours: only cancellation ends it.
const ENDLESS: &str = "9223372036854775807";
/// A request big enough to go to rayon (over the inline limit) and quick to answer.
const BIG: u64 = 200_001;

/// Sends `BIG` on a new connection until it is not `ERR busy`; checks the digest.
fn wait_for_a_free_slot(addr: std::net::SocketAddr) {
    let expected = digest::to_hex(digest::digest_serial(BIG));
    let mut client = LineClient::connect(addr);
    wait_for("a free job slot", || {
        client.send_line(&BIG.to_string());
        let reply = client.read_line().expect("an answer");
        assert!(reply == expected || reply == "ERR busy", "{reply}");
        reply == expected
    });
}

/// With `hash-max-jobs 1`: a client whose 10^12-round job holds the only slot (another
/// client got `ERR busy`), and that other client.
fn occupy_the_only_slot(addr: std::net::SocketAddr) -> (LineClient, LineClient) {
    let mut holder = LineClient::connect(addr);
    holder.send_line("1000000000000");
    let mut other = LineClient::connect(addr);
    wait_for("the slot to be taken", || {
        other.send_line(&BIG.to_string());
        if other.read_line().as_deref() == Some("ERR busy") {
            return true;
        }
        // The other request took the slot first and the holder's got `ERR busy`: retry.
        if holder.has_reply_now() {
            assert_eq!(holder.read_line().as_deref(), Some("ERR busy"));
            holder.send_line("1000000000000");
        }
        false
    });
    (holder, other)
}

#[test]
fn huge_round_count_runs_in_bounded_memory() {
    // 2^63 - 1 rounds: a result per chunk collected at once would be ~1 PB (the process
    // aborted on the allocation). The job must run, using CPU, while others are served.
    let (mut server, addr) = spawn_alone(BIN, &["-hash-max-rounds", ENDLESS]);
    let mut endless = LineClient::connect(addr);
    let mut cheap = LineClient::connect(addr);
    let cheap_answer = digest::to_hex(digest::digest_serial(10));
    let before = server.cpu_ticks();
    endless.send_line(ENDLESS);
    // Half a second of CPU (clock ticks are 10 ms) says the job is really computing.
    wait_for("the job to use CPU", || {
        cheap.send_line("10");
        assert_eq!(cheap.read_line(), Some(cheap_answer.clone()), "server died");
        server.cpu_ticks() >= before + 50
    });
    assert!(server.is_running());
}

#[test]
fn a_client_leaving_cancels_its_job_and_frees_the_slot() {
    // 10^12 rounds take many minutes: the slot comes back only if the job is cancelled.
    let (_server, addr) = spawn_alone(
        BIN,
        &["-hash-max-jobs", "1", "-hash-max-rounds", "1000000000000"],
    );
    let (leaving, _other) = occupy_the_only_slot(addr);
    drop(leaving);
    wait_for_a_free_slot(addr);
}

#[test]
fn a_request_sent_during_a_job_is_answered_after_it_in_order() {
    let (_server, addr) = spawn_alone(BIN, &[]);
    let mut client = LineClient::connect(addr);
    client.send(format!("{BIG}\n10\n{BIG}\nexit\n").as_bytes());
    for n in [BIG, 10, BIG] {
        let expected = digest::to_hex(digest::digest_serial(n));
        assert_eq!(client.read_line(), Some(expected), "n={n}");
    }
    client.expect_closed();
}

#[test]
fn a_drain_ends_when_the_busy_client_leaves() {
    let mut fake = spawn_under_fake_master(
        BIN,
        &["-hash-max-jobs", "1", "-hash-max-rounds", "1000000000000"],
    );
    let (leaving, other) = occupy_the_only_slot(fake.addr);
    drop(other);
    drop(fake.generation.take()); // a reload: the old generation drains
    drop(leaving);
    // The job is cancelled, its connection closed: nothing left to drain.
    assert!(fake.server.wait_exit().success());
    let log = fake.log_text();
    assert!(log.contains("drained: every connection finished"), "{log}");
}
