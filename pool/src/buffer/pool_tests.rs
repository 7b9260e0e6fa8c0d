//! Unit tests of the per-thread pool of emptied input buffers.

use super::tests::{clear_pool, feed, line, pooled};
use super::*;

#[test]
fn an_emptied_buffer_holds_no_storage_and_the_next_reader_reuses_it() {
    clear_pool();
    let want = Want::Until(b'\n', 100);
    let mut a = InBuf::default();
    feed(&mut a, want, b"ping\n");
    let storage = a.data.as_ptr();
    assert_eq!(line(&mut a, 100).as_deref(), Some(&b"ping"[..]));
    assert_eq!(a.data.capacity(), 0, "an idle connection keeps no buffer");
    assert_eq!(pooled(), (1, MIN_READ));
    // Another connection of this thread reads next: same storage, no allocation.
    let mut b = InBuf::default();
    feed(&mut b, want, b"pong");
    assert_eq!(b.data.as_ptr(), storage);
    assert_eq!(pooled(), (0, 0));
    // A partial line keeps its storage; dropping the connection pools it.
    drop(b);
    assert_eq!(pooled(), (1, MIN_READ));
    drop(a);
    assert_eq!(pooled(), (1, MIN_READ), "nothing to give back");
}

#[test]
fn the_pool_is_bounded() {
    clear_pool();
    let mut bufs: Vec<InBuf> = (0..POOL_BYTES / MIN_READ + 3)
        .map(|_| {
            let mut b = InBuf::default();
            feed(&mut b, Want::Some(10), b"x");
            b
        })
        .collect();
    for b in &mut bufs {
        assert_eq!(b.take(Want::Some(10)).expect("some").expect("ok"), b"x");
    }
    assert_eq!(pooled(), (POOL_BYTES / MIN_READ, POOL_BYTES));
    drop(bufs);
    assert_eq!(pooled(), (POOL_BYTES / MIN_READ, POOL_BYTES));
}
