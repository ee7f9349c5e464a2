//! Group commit (lib/os/groupsync.rs) in the real write paths: the queue's
//! writes into queue/new/ and the deliveries into a Maildir's new/ number their
//! syncs in the lock files, and every sync begun was finished.

use crate::fixture::*;

fn counters(path: &std::path::Path) -> (u64, u64) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(b.len(), 16, "{}", path.display());
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    (word(0), word(8))
}

#[test]
fn queue_and_maildir_writes_count_their_shared_syncs() {
    let i = Instance::create("groupsync");
    let md = i.adduser("u", "x");
    i.start();
    let msgs: Vec<Vec<u8>> = (0..4).map(|n| message(&format!("sync {n}"), "body")).collect();
    i.deliver("u", &msgs);
    i.wait_empty();
    // One sync at least, never more than one per write, none left unfinished.
    for lock in [i.path().join("queue/lock/newsync"), md.join(".postern-newsync")] {
        let (begun, done) = counters(&lock);
        assert!((1..=4).contains(&begun), "{}: {begun} syncs for 4 writes", lock.display());
        assert_eq!(begun, done, "{}", lock.display());
    }
    assert_eq!(maildir_new(&md).len(), 4);
}
