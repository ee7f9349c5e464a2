//! Group commit: concurrent writers into one directory share its fsync.
//!
//! A rename or link into a directory is durable once the directory has been
//! fsynced, by anyone, with the fsync *started after the rename returned*.
//! So a writer need not sync the directory itself when another process began
//! a sync after its rename and finished it. Under load (ten SMTP sessions
//! writing into `queue/new/`, deliveries into one Maildir's `new/`) most
//! writers then wait for a sync already under way instead of each queueing
//! its own.
//!
//! The protocol, between any processes that can open the lock file:
//! - the lock file holds two counters, `begun` and `done` (u64, little endian):
//!   syncs of the directory numbered so far, and the highest one finished;
//! - a sync is made only by the holder of flock(LOCK_EX) on the directory
//!   itself (so syncs are numbered in the order they run and never overlap):
//!   it sets `begun` to g = begun + 1, fsyncs, then sets `done` to g;
//! - a writer, after its rename returned, reads `begun` as its ticket t; any
//!   sync numbered t + 1 or later was numbered after that read, so it started
//!   after the rename and covers it. It then takes the directory's lock: if
//!   `done` ≥ t + 1 it is covered and returns; if not it makes the next sync.
//!   The counters are read and written under flock of the lock file (shared
//!   for a read, exclusive for a write), so no read sees half a write.
//!
//! A failed fsync sets no `done`: each waiter then syncs for itself. A syncer
//! killed between `begun` and `done` leaves `done` behind, and the next sync
//! passes it. A lock file that is missing, unwritable or damaged (`done` above
//! `begun`) costs sharing, never durability: the writer then syncs on its own.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::sys::flock;

/// A directory and its group-commit lock file, opened once and kept by
/// processes that write many times (postern-queued's workers, resident
/// delivery workers).
pub struct GroupSync {
    dir: File,
    lock: Option<File>,
}

/// What a writer holds between its rename and its wait: the syncs begun by then.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(Option<u64>);

impl GroupSync {
    /// Open `dir` and the lock file `lock` (created with mode 0600 when
    /// missing). Only `dir` must open: without the lock file every sync is
    /// the writer's own.
    pub fn open(dir: &Path, lock: &Path) -> io::Result<GroupSync> {
        let dir = File::open(dir)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(lock)
            .ok()
            .filter(|f| f.metadata().map(|m| m.is_file()).unwrap_or(false));
        Ok(GroupSync { dir, lock })
    }

    /// After the rename returned: the syncs begun so far.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock.as_ref().and_then(|l| read_locked(l).ok()).map(|(begun, _)| begun))
    }

    /// Return once a sync of the directory that started after `t` was taken
    /// has finished: another writer's, or our own.
    pub fn wait(&self, t: Ticket) -> io::Result<()> {
        let (Some(lock), Some(t)) = (self.lock.as_ref(), t.0) else {
            return self.dir.sync_all();
        };
        if flock(&self.dir, libc::LOCK_EX).is_err() {
            // A file system without flock on directories: no sharing.
            return self.dir.sync_all();
        }
        let r = self.sync_or_skip(lock, t);
        let _ = flock(&self.dir, libc::LOCK_UN);
        r
    }

    /// `ticket` then `wait`: a writer that just renamed.
    pub fn sync(&self) -> io::Result<()> {
        self.wait(self.ticket())
    }

    /// Holding the directory's lock: skip if covered, else sync and record it.
    fn sync_or_skip(&self, lock: &File, t: u64) -> io::Result<()> {
        let g = match read_locked(lock) {
            Ok((begun, done)) if done <= begun && done > t => return Ok(()),
            Ok((begun, done)) if done <= begun => begun + 1,
            // Damaged counters: start them again from this sync.
            Ok(_) | Err(_) => 1,
        };
        if write_locked(lock, 0, g).is_err() {
            return self.dir.sync_all();
        }
        self.dir.sync_all()?;
        let _ = write_locked(lock, 8, g);
        Ok(())
    }
}

/// The counters, read under a shared lock; a short file reads as zeros.
fn read_locked(lock: &File) -> io::Result<(u64, u64)> {
    flock(lock, libc::LOCK_SH)?;
    let mut b = [0u8; 16];
    let r = lock.read_at(&mut b, 0);
    let _ = flock(lock, libc::LOCK_UN);
    r?;
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    Ok((word(0), word(8)))
}

/// One counter (`begun` at 0, `done` at 8), written under an exclusive lock.
fn write_locked(lock: &File, at: u64, v: u64) -> io::Result<()> {
    flock(lock, libc::LOCK_EX)?;
    let r = lock.write_all_at(&v.to_le_bytes(), at);
    let _ = flock(lock, libc::LOCK_UN);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(p: &Path) -> (u64, u64) {
        read_locked(&File::open(p).unwrap()).unwrap()
    }

    #[test]
    fn a_sync_covers_only_renames_before_it_started() {
        let d = crate::testing::scratch_dir("groupsync");
        let lock = d.join("lock");
        let g = GroupSync::open(&d, &lock).unwrap();
        let a = g.ticket();
        g.wait(a).unwrap();
        assert_eq!(counters(&lock), (1, 1));
        // A ticket taken after that sync finished is not covered by it.
        let b = g.ticket();
        g.wait(b).unwrap();
        assert_eq!(counters(&lock), (2, 2));
        // Waiting again on the old ticket costs nothing: sync 2 covers it.
        g.wait(a).unwrap();
        assert_eq!(counters(&lock), (2, 2));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn waiters_queued_behind_a_sync_share_the_next_one() {
        let d = crate::testing::scratch_dir("groupsync-share");
        let lock = d.join("lock");
        // Five writers (each with its own descriptors, as separate processes
        // would have) take their tickets while a sync holds the directory.
        let holder = File::open(&d).unwrap();
        flock(&holder, libc::LOCK_EX).unwrap();
        let writers: Vec<_> = (0..5)
            .map(|_| {
                let g = GroupSync::open(&d, &lock).unwrap();
                let t = g.ticket();
                std::thread::spawn(move || g.wait(t).unwrap())
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        flock(&holder, libc::LOCK_UN).unwrap();
        for w in writers {
            w.join().unwrap();
        }
        // One fsync covered all five.
        assert_eq!(counters(&lock), (1, 1));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn damaged_or_missing_counters_cost_sharing_not_syncs() {
        let d = crate::testing::scratch_dir("groupsync-damaged");
        let lock = d.join("lock");
        // done above begun: never trusted as covering anything.
        let mut bad = [0u8; 16];
        bad[8] = 9;
        std::fs::write(&lock, bad).unwrap();
        let g = GroupSync::open(&d, &lock).unwrap();
        g.sync().unwrap();
        assert_eq!(counters(&lock), (1, 1));
        // No lock file can be made (its directory is missing): plain fsyncs.
        let g = GroupSync::open(&d, &d.join("missing/lock")).unwrap();
        assert!(g.ticket().0.is_none());
        g.sync().unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}
