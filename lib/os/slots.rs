//! At most N holders of something across processes: N lock files
//! (`DIR/PREFIX.0` .. `DIR/PREFIX.N-1`), each held with flock(2) by one process.
//! A holder that exits or is killed lets go with its descriptor, so nothing is
//! left to clean up after a crash (unlike a counter in a file or in memory).
//! Used for postern-auth's concurrent password checks and postern-queued's
//! submissions per uid.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often a waiting taker tries the slots again.
const RETRY: Duration = Duration::from_millis(20);

/// N slots named `prefix.I` in `dir` (created, mode 0700, when missing).
pub struct Slots {
    pub dir: PathBuf,
    pub prefix: String,
    pub n: u32,
}

/// A slot held; dropping it (or exiting) lets it go.
pub struct Slot(#[allow(dead_code)] Flock<File>);

impl Slots {
    /// A free slot now, or None when all N are held.
    pub fn take(&self) -> io::Result<Option<Slot>> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        for i in 0..self.n.max(1) {
            let path = self.dir.join(format!("{}.{i}", self.prefix));
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(l) => return Ok(Some(Slot(l))),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
                Err((_, e)) => return Err(io::Error::new(io::Error::from(e).kind(), format!("flock {}: {e}", path.display()))),
            }
        }
        Ok(None)
    }

    /// A free slot, waiting for one until `wait` has passed; None if none freed.
    pub fn take_waiting(&self, wait: Duration) -> io::Result<Option<Slot>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(s) = self.take()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(RETRY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_n_holders_and_dropping_frees() {
        let d = crate::testing::scratch_dir("slots");
        let s = Slots { dir: d.join("sub"), prefix: "slot".into(), n: 2 };
        let a = s.take().unwrap().expect("first");
        let b = s.take().unwrap().expect("second");
        assert!(s.take().unwrap().is_none(), "only two");
        assert!(s.take_waiting(Duration::from_millis(50)).unwrap().is_none());
        drop(a);
        let c = s.take_waiting(Duration::from_secs(5)).unwrap().expect("a freed slot");
        drop((b, c));
        assert!(d.join("sub/slot.0").exists() && d.join("sub/slot.1").exists() && !d.join("sub/slot.2").exists());
    }
}
