//! The queue's directories and the moves between them: writing a message
//! (postern-queue, postern-queued), taking new ones, retiring finished files into
//! free/ for reuse, and cleaning up. mod.rs writes the protocol down.

use super::format::{trailer, Envelope, Id, QueueError, MAX_ENVELOPE, TRAILER_LEN};
use super::submit::Ask;
use crate::os::fs::{each_chunk, ChunkError};
use crate::os::home::Home;
use crate::os::time::now;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How many finished files free/ keeps for reuse: enough for every postern-queue
/// running at once on a busy server, small enough to hold little disk.
pub const FREE_SLOTS: usize = 128;
/// postern-queue (and each postern-queued worker) gives up on a writer that
/// never finishes after this long (qmail-queue's DEATH): SIGALRM's default
/// action ends it, which its client takes as a temporary failure.
pub const DEATH_SECONDS: u32 = 86400;

/// The queue's directories.
/// The queue's directories.
#[derive(Clone, Debug)]
pub struct Queue {
    root: PathBuf,
}

impl Queue {
    pub fn new(home: &Home) -> Queue {
        Queue { root: home.queue() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn new_dir(&self) -> PathBuf {
        self.root.join("new")
    }
    pub fn mess(&self) -> PathBuf {
        self.root.join("mess")
    }
    /// Damaged files, moved aside by postern-send for a person to look at.
    pub fn bad(&self) -> PathBuf {
        self.root.join("bad")
    }
    pub fn free(&self) -> PathBuf {
        self.root.join("free")
    }
    /// The group-commit lock file of new/ (`os::groupsync`), postern-q's.
    pub fn new_sync_lock(&self) -> PathBuf {
        self.root.join("lock").join("newsync")
    }
    /// Messages held by the administrator.
    pub fn hold(&self) -> PathBuf {
        self.root.join("hold")
    }
    /// postern-send's records of attempts (`queue::info`).
    pub fn info(&self) -> PathBuf {
        self.root.join("info")
    }
    pub fn trigger_path(&self) -> PathBuf {
        self.root.join("lock").join("trigger")
    }

    /// Create the directories and the trigger (install and instance create).
    pub fn create_dirs(&self) -> io::Result<()> {
        for d in [
            self.root.clone(),
            self.tmp(),
            self.new_dir(),
            self.mess(),
            self.free(),
            self.bad(),
            self.hold(),
            self.info(),
            self.root.join("lock"),
        ] {
            fs::create_dir_all(&d)?;
        }
        let t = self.trigger_path();
        if !t.exists() {
            nix::unistd::mkfifo(&t, nix::sys::stat::Mode::from_bits_truncate(0o660)).map_err(io::Error::from)?;
        }
        Ok(())
    }

    /// Write a message durably: the whole of postern-queue's job after reading.
    /// `message` is read to its end first, then `envelope` (qmail-queue's order).
    /// Returns the new id. On error nothing is left in new/.
    pub fn write(&self, message: &mut dyn Read, envelope: &mut dyn Read, received: &[u8]) -> Result<Id, QueueError> {
        self.write_with(message, envelope, received, &mut |_| {})
    }

    /// `write`, with `rewrite` given the parsed envelope before it is stored
    /// (SRS: `queue_one`), so the envelope is read and parsed once.
    pub fn write_with(
        &self,
        message: &mut dyn Read,
        envelope: &mut dyn Read,
        received: &[u8],
        rewrite: &mut dyn FnMut(&mut Envelope),
    ) -> Result<Id, QueueError> {
        let id = Id::generate();
        let tmp = self.tmp().join(&id);
        let (mut f, reused) = match self.reuse(&tmp) {
            Some(f) => (f, true),
            None => {
                let f = OpenOptions::new().write(true).create_new(true).mode(0o660).open(&tmp).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        QueueError::Dir(self.tmp(), e)
                    } else {
                        QueueError::Write(tmp.clone(), e)
                    }
                })?;
                (f, false)
            }
        };
        let r = Queue::write_file(&mut f, &tmp, message, envelope, received, reused, rewrite);
        match r {
            Ok(()) => {}
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        }
        let dst = self.new_dir().join(&id);
        if let Err(e) = fs::rename(&tmp, &dst) {
            let _ = fs::remove_file(&tmp);
            return Err(QueueError::Write(dst, e));
        }
        // The rename is the commit point; it must be on disk before we say 0.
        // Writers at the same time share one fsync of new/ (`os::groupsync`).
        crate::os::groupsync::GroupSync::open(&self.new_dir(), &self.new_sync_lock())
            .and_then(|g| g.sync())
            .map_err(|e| QueueError::Write(self.new_dir(), e))?;
        Ok(id)
    }

    /// A finished file from free/, renamed to `tmp` and opened for writing; None
    /// when there is none to take (or it fails a check: see the module docs).
    fn reuse(&self, tmp: &Path) -> Option<File> {
        use std::os::unix::fs::MetadataExt;
        let names: Vec<_> = fs::read_dir(self.free()).ok()?.flatten().map(|e| e.file_name()).collect();
        // Start at a different name in each process, so concurrent takers seldom
        // race for the same file; a lost race is an ENOENT, and the next name.
        let start = std::process::id() as usize;
        for k in 0..names.len().min(8) {
            let from = self.free().join(&names[(start + k) % names.len()]);
            if fs::rename(&from, tmp).is_err() {
                continue;
            }
            let f = OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(tmp).ok();
            let fit = |f: &File| {
                f.metadata().map(|m| m.is_file() && m.nlink() == 1 && m.uid() == crate::os::sys::effective_uid()).unwrap_or(false)
            };
            match f {
                Some(f) if fit(&f) => return Some(f),
                _ => {
                    let _ = fs::remove_file(tmp);
                    return None;
                }
            }
        }
        None
    }

    /// A finished message's file (send only): emptied, then into an empty slot
    /// of free/ for reuse, else removed. Slots are tried from `slot` on (callers
    /// count up), a few at most, so a full free/ costs little.
    ///
    /// Emptied first, while the file is still send's alone: once it is in free/
    /// a postern-queue may take it and write a new message into it, which a
    /// later truncation would destroy. Neither step is synced: a crash may leave
    /// an empty file in mess/, which send retires again (`is_emptied`), or a
    /// full one in free/, which the next message overwrites.
    pub fn retire(&self, path: &Path, slot: usize) -> io::Result<()> {
        // A symlink is not followed. A file that cannot be emptied is removed
        // rather than kept with its text.
        let emptied = OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path).and_then(|f| f.set_len(0)).is_ok();
        for k in (0..16).filter(|_| emptied) {
            let to = self.free().join(((slot + k) % FREE_SLOTS).to_string());
            match nix::fcntl::renameat2(None, path, None, &to, nix::fcntl::RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EEXIST) => continue,
                Err(_) => break,
            }
        }
        fs::remove_file(path)
    }

    /// Whether `path` is an empty file: a finished one that `retire` emptied
    /// and a crash kept from leaving mess/. Nothing else leaves a file empty
    /// there: every file reached new/ written whole and synced.
    pub fn is_emptied(path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0)
    }

    fn write_file(
        f: &mut File,
        path: &Path,
        message: &mut dyn Read,
        envelope: &mut dyn Read,
        received: &[u8],
        reused: bool,
        rewrite: &mut dyn FnMut(&mut Envelope),
    ) -> Result<(), QueueError> {
        // Permissions are set explicitly: the umask of whoever ran us is not ours.
        let _ = f.set_permissions(fs::Permissions::from_mode(0o660));
        let werr = |e: io::Error| QueueError::Write(path.to_path_buf(), e);
        let mut w = io::BufWriter::with_capacity(64 * 1024, &mut *f);
        w.write_all(received).map_err(werr)?;
        let len = received.len() as u64
            + each_chunk(message, |chunk| w.write_all(chunk)).map_err(|e| match e {
                ChunkError::Read(e) => QueueError::Read(format!("message: {e}")),
                ChunkError::Use(e) => werr(e),
            })?;
        let mut env = Vec::new();
        envelope.take(MAX_ENVELOPE as u64 + 1).read_to_end(&mut env).map_err(|e| QueueError::Read(format!("envelope: {e}")))?;
        if env.len() > MAX_ENVELOPE {
            return Err(QueueError::Envelope(format!("longer than {MAX_ENVELOPE} bytes")));
        }
        let mut parsed = Envelope::parse(&env)?;
        rewrite(&mut parsed);
        let env = parsed.encode();
        w.write_all(&env).map_err(werr)?;
        w.write_all(&trailer(len, now())).map_err(werr)?;
        w.flush().map_err(werr)?;
        drop(w);
        if reused {
            // Cut what is left of the previous message: the trailer must be last.
            f.set_len(len + env.len() as u64 + TRAILER_LEN as u64).map_err(werr)?;
        }
        f.sync_data().map_err(werr)?;
        Ok(())
    }

    /// Wake postern-send. Best effort: if it is not running it scans new/ when it
    /// starts; if the FIFO is full, it already has a wake-up pending.
    pub fn trigger(&self) {
        if let Ok(mut f) = OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(self.trigger_path()) {
            let _ = f.write(b"!");
        }
    }

    /// Ids in a directory (skipping anything that is not a valid id).
    pub fn list(dir: &Path) -> io::Result<Vec<Id>> {
        let mut ids = Vec::new();
        for e in fs::read_dir(dir)? {
            if let Some(id) = e?.file_name().to_str().and_then(Id::parse) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Move everything in new/ to mess/ and return the ids taken (send only).
    pub fn take_new(&self) -> io::Result<Vec<Id>> {
        let mut taken = Vec::new();
        for id in Queue::list(&self.new_dir())? {
            match fs::rename(self.new_dir().join(&id), self.mess().join(&id)) {
                Ok(()) => taken.push(id),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(taken)
    }

    /// Remove files in tmp/ older than `age` seconds: left by a postern-queue that
    /// died. Returns how many.
    pub fn clean_tmp(&self, age: u64) -> usize {
        let mut n = 0;
        let Ok(ids) = Queue::list(&self.tmp()) else { return 0 };
        let limit = SystemTime::now() - std::time::Duration::from_secs(age);
        for id in ids {
            let p = self.tmp().join(&id);
            if let Ok(m) = fs::metadata(&p).and_then(|m| m.modified()) {
                if m < limit && fs::remove_file(&p).is_ok() {
                    n += 1;
                }
            }
        }
        n
    }

    /// Path of a message wherever it is (mess/ first, then new/, then hold/).
    pub fn locate(&self, id: &Id) -> Option<PathBuf> {
        [self.mess(), self.new_dir(), self.hold()].into_iter().map(|d| d.join(id)).find(|p| p.exists())
    }
}

/// postern-queue's whole job once it runs as postern-q: the message from
/// `message`, the envelope from `envelope`, a Received line naming `uid` (who
/// asked), then wake postern-send. Returns the new id, or the exit code
/// (qmail-queue's codes) when nothing was queued.
/// With `sign`, the message is read into memory and DKIM-signed (lib/dkim) before
/// anything is written: the signature fields go after the Received line, then the
/// message, through the same write and fsync steps as any other.
pub fn queue_one(home: &Home, message: &mut dyn Read, envelope: &mut dyn Read, uid: u32, ask: Ask) -> Result<Id, i32> {
    let queue = Queue::new(home);
    let sign = ask == Ask::Sign;
    // SRS senders of forwards, SRS recipients taken back (lib/srs).
    let mut srs = |env: &mut Envelope| {
        crate::srs::apply(home, env, ask == Ask::Forward, &mut |m| crate::os::log::line("postern-queue", m));
    };
    let received = format!(
        "Received: (postern-queue {} invoked by uid {uid}); {}\n",
        std::process::id(),
        crate::message::date::rfc2822(SystemTime::now())
    );
    let result = if sign {
        let mut whole = Vec::new();
        match message.read_to_end(&mut whole) {
            Ok(_) => {
                let mut prefix = received.into_bytes();
                prefix.extend(signatures(home, &whole));
                queue.write_with(&mut &whole[..], envelope, &prefix, &mut srs)
            }
            Err(e) => Err(QueueError::Read(format!("message: {e}"))),
        }
    } else {
        queue.write_with(message, envelope, received.as_bytes(), &mut srs)
    };
    match result {
        Ok(id) => {
            queue.trigger();
            Ok(id)
        }
        Err(e) => {
            crate::os::log::warn("postern-queue", &e.to_string());
            Err(e.exit_code())
        }
    }
}

/// The DKIM-Signature fields for a message; a key that cannot be used is logged
/// and skipped (the message is never refused or lost for it).
fn signatures(home: &Home, message: &[u8]) -> Vec<u8> {
    let signed = crate::dkim::sign_message(&crate::config::control::Control::new(home), message);
    for p in &signed.problems {
        crate::os::log::line("postern-queue", &format!("{p}; the message is queued without that DKIM signature"));
    }
    signed.fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueFile;

    #[test]
    fn write_take_open_mark() {
        let d = crate::testing::scratch_dir("queue");
        let q = Queue::new(&Home::at(&d));
        q.create_dirs().unwrap();
        let id = q.write(&mut &b"Subject: x\n\nhi\n"[..], &mut &b"Fs@x\0Ta@y\0Tb@y\0\0"[..], b"Received: t\n").unwrap();
        assert!(Id::parse(id.as_str()).is_some());
        assert_eq!(q.take_new().unwrap(), vec![id.clone()]);
        let mut f = QueueFile::open(&q.mess().join(&id), true).unwrap();
        assert_eq!(f.read_message().unwrap(), b"Received: t\nSubject: x\n\nhi\n");
        assert_eq!(f.pending().count(), 2);
        f.mark_done(&[1]).unwrap();
        let f = QueueFile::open(&q.mess().join(&id), false).unwrap();
        let p: Vec<_> = f.pending().map(|(_, r)| r.address.as_str().to_string()).collect();
        assert_eq!(p, vec!["a@y"]);
        // a broken envelope leaves nothing behind
        assert!(q.write(&mut &b"x"[..], &mut &b"Fs\0"[..], b"").is_err());
        assert!(Queue::list(&q.tmp()).unwrap().is_empty());
        assert!(Queue::list(&q.new_dir()).unwrap().is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn retired_files_are_reused_whole_and_only_when_safe() {
        use std::os::unix::fs::MetadataExt;
        let d = crate::testing::scratch_dir("queue-reuse");
        let q = Queue::new(&Home::at(&d));
        q.create_dirs().unwrap();
        let long = vec![b'x'; 10_000];
        let id = q.write(&mut &long[..], &mut &b"Fs@x\0Ta@y\0\0"[..], b"").unwrap();
        q.take_new().unwrap();
        let inode = fs::metadata(q.mess().join(&id)).unwrap().ino();
        q.retire(&q.mess().join(&id), 7).unwrap();
        assert_eq!(Queue::list(&q.free()).unwrap(), vec![Id::parse("7").unwrap()]);
        // Kept for its inode, without the finished message's text.
        assert_eq!(fs::metadata(q.free().join("7")).unwrap().len(), 0);
        assert!(Queue::is_emptied(&q.free().join("7")));
        // The next message takes that file, shorter, and reads back exactly.
        let id2 = q.write(&mut &b"short\n"[..], &mut &b"Fs@x\0Tb@y\0\0"[..], b"").unwrap();
        assert!(Queue::list(&q.free()).unwrap().is_empty());
        q.take_new().unwrap();
        let path2 = q.mess().join(&id2);
        assert_eq!(fs::metadata(&path2).unwrap().ino(), inode, "the retired file was reused");
        let f = QueueFile::open(&path2, false).unwrap();
        assert_eq!(f.read_message().unwrap(), b"short\n");
        assert_eq!(f.pending().map(|(_, r)| r.address.as_str().to_string()).collect::<Vec<_>>(), vec!["b@y"]);
        assert_eq!(fs::metadata(&path2).unwrap().len(), 6 + 11 + TRAILER_LEN as u64);
        // An occupied slot is never overwritten: the next free one is taken, and
        // when the slots tried are all taken the file is removed.
        for k in 3..19 {
            fs::write(q.free().join(k.to_string()), b"occupant").unwrap();
        }
        q.retire(&path2, 3).unwrap();
        assert!(!path2.exists());
        assert_eq!(Queue::list(&q.free()).unwrap().len(), 16);
        for k in 4..19 {
            fs::remove_file(q.free().join(k.to_string())).unwrap();
        }
        // (This takes the file in slot 3: free files are anyone's to overwrite.)
        let id4 = q.write(&mut &b"n\n"[..], &mut &b"Fs@x\0Td@y\0\0"[..], b"").unwrap();
        q.take_new().unwrap();
        fs::write(q.free().join("3"), b"occupant").unwrap();
        fs::write(q.free().join("4"), b"occupant").unwrap();
        q.retire(&q.mess().join(&id4), 3).unwrap();
        assert!(Queue::is_emptied(&q.free().join("5")), "slot 5, past the two taken");
        fs::remove_file(q.free().join("5")).unwrap();
        fs::remove_file(q.free().join("4")).unwrap();
        assert_eq!(fs::read(q.free().join("3")).unwrap(), b"occupant");
        // A file with a second name (as a crash can leave one) is not reused.
        fs::hard_link(q.free().join("3"), d.join("other-name")).unwrap();
        let id3 = q.write(&mut &b"m\n"[..], &mut &b"Fs@x\0Tc@y\0\0"[..], b"").unwrap();
        assert_eq!(fs::read(d.join("other-name")).unwrap(), b"occupant");
        assert!(QueueFile::open(&q.new_dir().join(&id3), false).is_ok());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_that_cannot_be_emptied_is_removed_not_kept() {
        let d = crate::testing::scratch_dir("queue-retire-link");
        let q = Queue::new(&Home::at(&d));
        q.create_dirs().unwrap();
        // A symlink in mess/ (not followed): its target keeps its text, and
        // nothing goes to free/.
        fs::write(d.join("target"), b"text").unwrap();
        std::os::unix::fs::symlink(d.join("target"), q.mess().join("1.2.3")).unwrap();
        q.retire(&q.mess().join("1.2.3"), 0).unwrap();
        assert!(fs::symlink_metadata(q.mess().join("1.2.3")).is_err());
        assert!(Queue::list(&q.free()).unwrap().is_empty());
        assert_eq!(fs::read(d.join("target")).unwrap(), b"text");
        assert!(!Queue::is_emptied(&d.join("target")) && !Queue::is_emptied(&d.join("missing")));
        fs::remove_dir_all(&d).unwrap();
    }
}
