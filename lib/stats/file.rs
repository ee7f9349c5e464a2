//! A counter file: a fixed number of 64-bit words, the first a magic number,
//! mapped shared by every process that counts and added to atomically. No
//! lock, no fsync: a counter is one atomic add in memory that the kernel
//! writes back when it likes, so a crash of the machine (never of a program)
//! may lose the last seconds of counts.

use crate::os::sys::SharedWords;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// "pstrnst1": the layout's version. A file with another first word is not
/// ours (or an older layout) and is neither read nor added to.
pub const MAGIC: u64 = u64::from_be_bytes(*b"pstrnst1");

pub struct CounterFile {
    words: SharedWords,
}

impl CounterFile {
    /// For counting: open `path` (creating it, and its directory, when we
    /// may), grow it to `words` words, stamp the magic number on a new file.
    pub fn open_rw(path: &Path, words: usize) -> io::Result<CounterFile> {
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o644).open(path)?;
        // Blocks for every word now, not holes: a store into a hole of a mapped
        // file on a full disk is SIGBUS, which would kill the counting program.
        // Growing touches no data, so concurrent openers do no harm.
        use std::os::fd::AsRawFd;
        nix::fcntl::posix_fallocate(f.as_raw_fd(), 0, (words * 8) as libc::off_t).map_err(io::Error::from)?;
        let words = SharedWords::map(&f, words, true)?;
        // Zero (new) becomes MAGIC; whoever comes second sees MAGIC already.
        let _ = words.word_mut(0).compare_exchange(0, MAGIC, std::sync::atomic::Ordering::AcqRel, std::sync::atomic::Ordering::Acquire);
        let c = CounterFile { words };
        c.check(path)?;
        Ok(c)
    }

    /// For reading: None when the file does not exist (nothing counted yet).
    pub fn open_ro(path: &Path, words: usize) -> io::Result<Option<CounterFile>> {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if f.metadata()?.len() == 0 {
            return Ok(None);
        }
        let c = CounterFile { words: SharedWords::map(&f, words, false)? };
        c.check(path)?;
        Ok(Some(c))
    }

    fn check(&self, path: &Path) -> io::Result<()> {
        match self.words.load(0) {
            MAGIC => Ok(()),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is not a postern counter file of this version (first word {other:#x}); remove it and the programs start it again",
                    path.display()
                ),
            )),
        }
    }

    pub fn add(&self, i: usize, n: u64) {
        self.words.word_mut(i).fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self, i: usize) -> u64 {
        self.words.load(i)
    }

    /// Set a word that only one process writes (postern-send's domain table).
    pub fn set(&self, i: usize, v: u64) {
        self.words.word_mut(i).store(v, std::sync::atomic::Ordering::Release);
    }
}

/// Where the counter files live: HOME/run/stats/NAME.
pub fn path(home: &crate::os::home::Home, name: &str) -> PathBuf {
    home.root().join("run").join("stats").join(name)
}
