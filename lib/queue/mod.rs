//! The queue: its directories, its file format and its protocol.
//!
//! # Layout (under `$POSTERN_HOME/queue`)
//! ```text
//! tmp/ID        being written by postern-queue; removed by postern-send when stale
//! new/ID        complete and durable; postern-send has not taken it yet
//! mess/ID       taken by postern-send; being delivered
//! free/N        a finished message's file, kept for postern-queue to overwrite
//!               (N is a slot number below FREE_SLOTS); never delivered
//! lock/trigger  a FIFO; any byte written to it wakes postern-send
//! ```
//! Owners: queue/ and its directories belong to postern-q, group postern, mode
//! 0750/0770; files are 0660 so postern-send (group postern) can mark and remove them.
//!
//! # One file per message
//! ```text
//! [message bytes][envelope][trailer]
//! envelope = "F" sender NUL, then per recipient: STATE recipient NUL, then NUL
//!            STATE is 'T' (to do) or 'D' (done: delivered, or bounced and the
//!            bounce queued)
//! trailer  = "PQ1:" 16 hex digits (offset of the envelope) ":" 10 decimal digits
//!            (birth, Unix seconds) "\n"                         = 32 bytes
//! ```
//! The message comes first so postern-queue can stream it from fd 0 before it reads
//! the envelope on fd 1 (qmail-queue's order) without holding it in memory.
//!
//! # The crash-safety protocol
//! 1. postern-queue writes `tmp/ID`, fdatasyncs it, renames it to `new/ID` and fsyncs
//!    `new/`. Only then does it exit 0. A crash before that leaves at most a file in
//!    tmp/, which is never delivered and is removed after a day. `tmp/ID` is a new
//!    file, or one taken from free/ by renaming it to `tmp/ID` (only one taker can
//!    win), then written from its start and cut to its new length before the
//!    fdatasync: same steps, same guarantees, and no inode to allocate (on the test
//!    machines a new inode cost as much CPU as the rest of the queue write).
//! 2. postern-send renames `new/ID` to `mess/ID` without a sync: if the rename is
//!    lost in a crash the message is simply taken again from new/. All state that
//!    matters lives inside the file, so the directory it sits in does not.
//! 3. After a recipient's delivery is durable (the delivery program fsynced it), or
//!    its bounce has been queued (step 1 for the bounce), send overwrites its 'T'
//!    with 'D' and fdatasyncs. A crash before that repeats the delivery: a duplicate,
//!    never a loss.
//! 4. When no 'T' is left, send renames the file to an empty slot `free/N`, or
//!    unlinks it when free/ is full (or missing: free/ is optional). A lost rename
//!    or unlink leaves the file in mess/, where the next scan finds no 'T' and
//!    removes it, or finds 'T's not yet marked and delivers them again: a
//!    duplicate, never a loss.
//!
//! A file system without a journal may, after a crash, show one file under two
//! names (free/N and new/ID, or free/N and mess/ID; fsck then counts two links).
//! So postern-queue reuses a file only when it has exactly one link, is a regular
//! file and is its own, and opens it with O_NOFOLLOW.

pub mod daemon;

use crate::address::{Address, AddressError};
use crate::error::{Classify, Kind};
use crate::os::home::Home;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const TRAILER_LEN: usize = 32;
/// How many finished files free/ keeps for reuse: enough for every postern-queue
/// running at once on a busy server, small enough to hold little disk.
pub const FREE_SLOTS: usize = 128;
const MAGIC: &[u8; 4] = b"PQ1:";
/// Largest envelope postern-queue accepts (10,000 recipients of 900 bytes fit).
pub const MAX_ENVELOPE: usize = 16 << 20;
/// postern-queue (and each postern-queued worker) gives up on a writer that
/// never finishes after this long (qmail-queue's DEATH): SIGALRM's default
/// action ends it, which its client takes as a temporary failure.
pub const DEATH_SECONDS: u32 = 86400;

/// qmail-queue's exit codes (see qmail-queue(8)). 11-40 are permanent, the rest
/// temporary.
pub mod exit {
    pub const ADDRESS: i32 = 11;
    pub const NO_MEMORY: i32 = 51;
    pub const TIMEOUT: i32 = 52;
    pub const WRITE: i32 = 53;
    pub const READ: i32 = 54;
    pub const CONFIG: i32 = 55;
    pub const HOME: i32 = 61;
    pub const QUEUE_DIR: i32 = 62;
    pub const BUG: i32 = 81;
    pub const ENVELOPE: i32 = 91;

    pub fn is_permanent(code: i32) -> bool {
        (11..=40).contains(&code)
    }

    /// What a caller tells its client for each code.
    pub fn describe(code: i32) -> &'static str {
        match code {
            0 => "ok",
            ADDRESS => "envelope address too long or invalid",
            31 => "mail server permanently refuses the message",
            NO_MEMORY => "queue out of memory",
            TIMEOUT => "queue timed out",
            WRITE => "queue write error or disk full",
            READ => "queue cannot read the message or envelope",
            CONFIG => "queue cannot read a configuration file",
            HOME | QUEUE_DIR => "queue directory problem",
            71 => "mail server temporarily refuses the message",
            BUG => "queue internal bug",
            ENVELOPE => "queue envelope format error",
            _ => "queue failed",
        }
    }
}

#[derive(Debug)]
pub enum QueueError {
    /// An envelope address is too long or contains control characters.
    Address(AddressError),
    /// The envelope does not follow the protocol.
    Envelope(String),
    /// Reading the message or envelope failed or ended early.
    Read(String),
    /// Writing to the queue failed (including disk full).
    Write(PathBuf, io::Error),
    /// The queue directory is missing or unusable.
    Dir(PathBuf, io::Error),
    /// A queue file is damaged.
    Corrupt(PathBuf, String),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Address(e) => write!(f, "bad envelope address: {e}"),
            QueueError::Envelope(e) => write!(f, "envelope format error: {e}"),
            QueueError::Read(e) => write!(f, "cannot read the message or envelope: {e}"),
            QueueError::Write(p, e) => write!(f, "cannot write {}: {e}", p.display()),
            QueueError::Dir(p, e) => write!(f, "queue directory {} unusable: {e}; check it exists and belongs to postern-q", p.display()),
            QueueError::Corrupt(p, e) => write!(f, "queue file {} is damaged: {e}", p.display()),
        }
    }
}

impl Classify for QueueError {
    fn kind(&self) -> Kind {
        match self {
            QueueError::Address(_) => Kind::Permanent,
            _ => Kind::Temporary,
        }
    }
}

impl QueueError {
    pub fn exit_code(&self) -> i32 {
        match self {
            QueueError::Address(_) => exit::ADDRESS,
            QueueError::Envelope(_) => exit::ENVELOPE,
            QueueError::Read(_) => exit::READ,
            QueueError::Write(..) => exit::WRITE,
            QueueError::Dir(..) => exit::QUEUE_DIR,
            QueueError::Corrupt(..) => exit::BUG,
        }
    }
}

/// A parsed envelope as postern-queue receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub sender: Address,
    pub recipients: Vec<Address>,
}

impl Envelope {
    /// Parse qmail-queue's envelope: `F`sender NUL (`T`recipient NUL)* NUL.
    /// Missing bytes at the end are a read error (the writer went away); anything
    /// else out of shape is a format error.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, QueueError> {
        let mut fields = Vec::new();
        let mut rest = bytes;
        loop {
            match rest.iter().position(|&b| b == 0) {
                None => return Err(QueueError::Read("the envelope ends before its final NUL".into())),
                Some(0) => {
                    rest = &rest[1..];
                    break;
                }
                Some(i) => {
                    fields.push(&rest[..i]);
                    rest = &rest[i + 1..];
                }
            }
        }
        if !rest.is_empty() {
            return Err(QueueError::Envelope("bytes after the final NUL".into()));
        }
        let mut it = fields.into_iter();
        let sender = match it.next() {
            Some(f) if f.first() == Some(&b'F') => Address::parse(&f[1..]).map_err(QueueError::Address)?,
            _ => return Err(QueueError::Envelope("the envelope must start with F and the sender".into())),
        };
        let mut recipients = Vec::new();
        for f in it {
            if f.first() != Some(&b'T') || f.len() < 2 {
                return Err(QueueError::Envelope("each recipient must be T and an address".into()));
            }
            recipients.push(Address::parse(&f[1..]).map_err(QueueError::Address)?);
        }
        if recipients.is_empty() {
            return Err(QueueError::Envelope("no recipients".into()));
        }
        Ok(Envelope { sender, recipients })
    }

    /// The bytes a client writes on postern-queue's fd 1.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.push(b'F');
        v.extend_from_slice(self.sender.as_str().as_bytes());
        v.push(0);
        for r in &self.recipients {
            v.push(b'T');
            v.extend_from_slice(r.as_str().as_bytes());
            v.push(0);
        }
        v.push(0);
        v
    }
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn unique_id() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}.{}", t.as_secs(), t.subsec_micros(), std::process::id())
}

/// A queue id: what a queue file is named. Only [0-9A-Za-z.-], so an id read from a
/// directory or a pipe can be joined to a path safely.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && !id.starts_with('.') && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

fn fsync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| QueueError::Write(dir.to_path_buf(), e))
}

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
    pub fn free(&self) -> PathBuf {
        self.root.join("free")
    }
    pub fn trigger_path(&self) -> PathBuf {
        self.root.join("lock").join("trigger")
    }

    /// Create the directories and the trigger (install and instance create).
    pub fn create_dirs(&self) -> io::Result<()> {
        for d in [self.root.clone(), self.tmp(), self.new_dir(), self.mess(), self.free(), self.root.join("lock")] {
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
    pub fn inject(&self, message: &mut dyn Read, envelope: &mut dyn Read, received: &[u8]) -> Result<String, QueueError> {
        let id = unique_id();
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
        let r = self.write_file(&mut f, &tmp, message, envelope, received, reused);
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
        fsync_dir(&self.new_dir())?;
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

    /// A finished message's file (send only): into an empty slot of free/ for
    /// reuse, else removed. Slots are tried from `slot` on (callers count up),
    /// a few at most, so a full free/ costs little.
    pub fn retire(&self, path: &Path, slot: usize) -> io::Result<()> {
        for k in 0..16 {
            let to = self.free().join(((slot + k) % FREE_SLOTS).to_string());
            match nix::fcntl::renameat2(None, path, None, &to, nix::fcntl::RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EEXIST) => continue,
                Err(_) => break,
            }
        }
        fs::remove_file(path)
    }

    fn write_file(
        &self,
        f: &mut File,
        path: &Path,
        message: &mut dyn Read,
        envelope: &mut dyn Read,
        received: &[u8],
        reused: bool,
    ) -> Result<(), QueueError> {
        // Permissions are set explicitly: the umask of whoever ran us is not ours.
        let _ = f.set_permissions(fs::Permissions::from_mode(0o660));
        let werr = |e: io::Error| QueueError::Write(path.to_path_buf(), e);
        let mut w = io::BufWriter::with_capacity(64 * 1024, &mut *f);
        w.write_all(received).map_err(werr)?;
        let mut len = received.len() as u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match message.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(QueueError::Read(format!("message: {e}"))),
            };
            w.write_all(&buf[..n]).map_err(werr)?;
            len += n as u64;
        }
        let mut env = Vec::new();
        envelope.take(MAX_ENVELOPE as u64 + 1).read_to_end(&mut env).map_err(|e| QueueError::Read(format!("envelope: {e}")))?;
        if env.len() > MAX_ENVELOPE {
            return Err(QueueError::Envelope(format!("longer than {MAX_ENVELOPE} bytes")));
        }
        let parsed = Envelope::parse(&env)?;
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
    pub fn list(dir: &Path) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            if let Some(name) = e.file_name().to_str() {
                if valid_id(name) {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Move everything in new/ to mess/ and return the ids taken (send only).
    pub fn take_new(&self) -> io::Result<Vec<String>> {
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

    /// Path of a message wherever it is (mess/ first, then new/).
    pub fn locate(&self, id: &str) -> Option<PathBuf> {
        [self.mess(), self.new_dir()].into_iter().map(|d| d.join(id)).find(|p| p.exists())
    }
}

fn trailer(envelope_offset: u64, birth: u64) -> [u8; TRAILER_LEN] {
    let s = format!("PQ1:{envelope_offset:016x}:{birth:010}\n");
    let mut t = [0u8; TRAILER_LEN];
    t.copy_from_slice(s.as_bytes());
    t
}

/// One recipient of a queued message.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub address: Address,
    pub done: bool,
    /// Offset of its state byte in the file.
    state_at: u64,
}

/// A message in the queue, opened by postern-send or an admin tool.
#[derive(Debug)]
pub struct QueueFile {
    pub path: PathBuf,
    pub file: File,
    pub sender: Address,
    pub recipients: Vec<Recipient>,
    pub birth: u64,
    /// Length of the message: it occupies bytes 0..message_len.
    pub message_len: u64,
}

impl QueueFile {
    pub fn open(path: &Path, writable: bool) -> Result<QueueFile, QueueError> {
        let file = OpenOptions::new().read(true).write(writable).open(path).map_err(|e| QueueError::Dir(path.to_path_buf(), e))?;
        QueueFile::from_file(file, path)
    }

    /// Parse an open queue file (`path` is for messages only).
    pub fn from_file(file: File, path: &Path) -> Result<QueueFile, QueueError> {
        let corrupt = |e: String| QueueError::Corrupt(path.to_path_buf(), e);
        let size = file.metadata().map_err(|e| QueueError::Dir(path.to_path_buf(), e))?.len();
        if size < TRAILER_LEN as u64 {
            return Err(corrupt("shorter than its trailer".into()));
        }
        let mut t = [0u8; TRAILER_LEN];
        file.read_exact_at(&mut t, size - TRAILER_LEN as u64).map_err(|e| corrupt(e.to_string()))?;
        if &t[..4] != MAGIC || t[20] != b':' || t[31] != b'\n' {
            return Err(corrupt("no valid trailer".into()));
        }
        let off = std::str::from_utf8(&t[4..20])
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| corrupt("bad envelope offset".into()))?;
        let birth =
            std::str::from_utf8(&t[21..31]).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| corrupt("bad birth time".into()))?;
        let env_len = size - TRAILER_LEN as u64;
        if off > env_len || env_len - off > MAX_ENVELOPE as u64 {
            return Err(corrupt("envelope offset out of range".into()));
        }
        let mut env = vec![0u8; (env_len - off) as usize];
        file.read_exact_at(&mut env, off).map_err(|e| corrupt(e.to_string()))?;
        let (sender, recipients) = parse_stored_envelope(&env, off).map_err(corrupt)?;
        Ok(QueueFile { path: path.to_path_buf(), file, sender, recipients, birth, message_len: off })
    }

    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        self.recipients.iter().enumerate().filter(|(_, r)| !r.done)
    }

    /// Durably mark recipients done (step 3 of the protocol).
    pub fn mark_done(&mut self, which: &[usize]) -> Result<(), QueueError> {
        let werr = |e: io::Error| QueueError::Write(self.path.clone(), e);
        for &i in which {
            let r = &self.recipients[i];
            self.file.write_all_at(b"D", r.state_at).map_err(werr)?;
        }
        self.file.sync_data().map_err(werr)?;
        for &i in which {
            self.recipients[i].done = true;
        }
        Ok(())
    }

    /// A memory file holding exactly the message, rewound: what a delivery program
    /// gets on fd 0 (seekable, and without the envelope).
    pub fn message_copy(&self) -> io::Result<File> {
        use std::io::Seek;
        let name = std::ffi::CString::new("postern-message").expect("no NUL");
        let fd = nix::sys::memfd::memfd_create(&name, nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).map_err(io::Error::from)?;
        let mut mem = File::from(fd);
        let mut src = self.file.try_clone()?;
        src.rewind()?;
        // std copies file to file inside the kernel (copy_file_range/sendfile).
        let copied = io::copy(&mut (&mut src).take(self.message_len), &mut mem)?;
        if copied != self.message_len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("copied {copied} of {} bytes", self.message_len)));
        }
        mem.rewind()?;
        Ok(mem)
    }

    /// The message bytes (without envelope and trailer).
    pub fn read_message(&self) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; self.message_len as usize];
        self.file.read_exact_at(&mut v, 0)?;
        Ok(v)
    }
}

fn parse_stored_envelope(env: &[u8], base: u64) -> Result<(Address, Vec<Recipient>), String> {
    let mut pos = 0usize;
    let mut sender = None;
    let mut recipients = Vec::new();
    loop {
        let rest = &env[pos..];
        let end = rest.iter().position(|&b| b == 0).ok_or("envelope without final NUL")?;
        if end == 0 {
            break;
        }
        let field = &rest[..end];
        let addr = Address::parse(&field[1..]).map_err(|e| e.to_string())?;
        match (field[0], sender.is_some()) {
            (b'F', false) => sender = Some(addr),
            (b'T' | b'D', true) => recipients.push(Recipient { address: addr, done: field[0] == b'D', state_at: base + pos as u64 }),
            _ => return Err(format!("unexpected field {:?}", field[0] as char)),
        }
        pos += end + 1;
    }
    Ok((sender.ok_or("no sender")?, recipients))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_errors() {
        let e = Envelope::parse(b"Fa@b\0Tc@d\0Te@f\0\0").unwrap();
        assert_eq!(e.sender.as_str(), "a@b");
        assert_eq!(e.recipients.len(), 2);
        assert_eq!(e.encode(), b"Fa@b\0Tc@d\0Te@f\0\0");
        assert!(matches!(Envelope::parse(b"Fa@b\0Tc@d\0"), Err(QueueError::Read(_))));
        assert!(matches!(Envelope::parse(b""), Err(QueueError::Read(_))));
        assert!(matches!(Envelope::parse(b"Xa@b\0Tc\0\0"), Err(QueueError::Envelope(_))));
        assert!(matches!(Envelope::parse(b"Fa@b\0\0"), Err(QueueError::Envelope(_))));
        assert!(matches!(Envelope::parse(b"Fa@b\0Tc\x01d\0\0"), Err(QueueError::Address(_))));
        assert_eq!(Envelope::parse(b"Fa@b\0Tc\x01d\0\0").unwrap_err().exit_code(), exit::ADDRESS);
        assert!(Envelope::parse(b"F\0Tx@y\0\0").unwrap().sender.is_null());
    }

    #[test]
    fn inject_open_mark() {
        let d = std::env::temp_dir().join(format!("postern-queue-{}", std::process::id()));
        let q = Queue::new(&Home::at(&d));
        q.create_dirs().unwrap();
        let id = q.inject(&mut &b"Subject: x\n\nhi\n"[..], &mut &b"Fs@x\0Ta@y\0Tb@y\0\0"[..], b"Received: t\n").unwrap();
        assert!(valid_id(&id));
        assert_eq!(q.take_new().unwrap(), vec![id.clone()]);
        let mut f = QueueFile::open(&q.mess().join(&id), true).unwrap();
        assert_eq!(f.read_message().unwrap(), b"Received: t\nSubject: x\n\nhi\n");
        assert_eq!(f.pending().count(), 2);
        f.mark_done(&[1]).unwrap();
        let f = QueueFile::open(&q.mess().join(&id), false).unwrap();
        let p: Vec<_> = f.pending().map(|(_, r)| r.address.as_str().to_string()).collect();
        assert_eq!(p, vec!["a@y"]);
        // a broken envelope leaves nothing behind
        assert!(q.inject(&mut &b"x"[..], &mut &b"Fs\0"[..], b"").is_err());
        assert!(Queue::list(&q.tmp()).unwrap().is_empty());
        assert!(Queue::list(&q.new_dir()).unwrap().is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn retired_files_are_reused_whole_and_only_when_safe() {
        use std::os::unix::fs::MetadataExt;
        let d = std::env::temp_dir().join(format!("postern-queue-reuse-{}", std::process::id()));
        let q = Queue::new(&Home::at(&d));
        q.create_dirs().unwrap();
        let long = vec![b'x'; 10_000];
        let id = q.inject(&mut &long[..], &mut &b"Fs@x\0Ta@y\0\0"[..], b"").unwrap();
        q.take_new().unwrap();
        let inode = fs::metadata(q.mess().join(&id)).unwrap().ino();
        q.retire(&q.mess().join(&id), 7).unwrap();
        assert_eq!(Queue::list(&q.free()).unwrap(), vec!["7".to_string()]);
        // The next message takes that file, shorter, and reads back exactly.
        let id2 = q.inject(&mut &b"short\n"[..], &mut &b"Fs@x\0Tb@y\0\0"[..], b"").unwrap();
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
        let id4 = q.inject(&mut &b"n\n"[..], &mut &b"Fs@x\0Td@y\0\0"[..], b"").unwrap();
        q.take_new().unwrap();
        fs::write(q.free().join("3"), b"occupant").unwrap();
        fs::write(q.free().join("4"), b"occupant").unwrap();
        q.retire(&q.mess().join(&id4), 3).unwrap();
        assert!(QueueFile::open(&q.free().join("5"), false).is_ok(), "slot 5, past the two taken");
        fs::remove_file(q.free().join("5")).unwrap();
        fs::remove_file(q.free().join("4")).unwrap();
        assert_eq!(fs::read(q.free().join("3")).unwrap(), b"occupant");
        // A file with a second name (as a crash can leave one) is not reused.
        fs::hard_link(q.free().join("3"), d.join("other-name")).unwrap();
        let id3 = q.inject(&mut &b"m\n"[..], &mut &b"Fs@x\0Tc@y\0\0"[..], b"").unwrap();
        assert_eq!(fs::read(d.join("other-name")).unwrap(), b"occupant");
        assert!(QueueFile::open(&q.new_dir().join(&id3), false).is_ok());
        fs::remove_dir_all(&d).unwrap();
    }
}

/// postern-queue's whole job once it runs as postern-q: the message from
/// `message`, the envelope from `envelope`, a Received line naming `uid` (who
/// asked), then wake postern-send. Returns the exit code (qmail-queue's codes).
pub fn queue_one(home: &Home, message: &mut File, envelope: &mut File, uid: u32) -> i32 {
    let queue = Queue::new(home);
    let received = format!(
        "Received: (postern-queue {} invoked by uid {uid}); {}\n",
        std::process::id(),
        crate::message::headers::rfc2822_date(SystemTime::now())
    );
    match queue.inject(message, envelope, received.as_bytes()) {
        Ok(_id) => {
            queue.trigger();
            0
        }
        Err(e) => {
            crate::os::log::line("postern-queue", &e.to_string());
            e.exit_code()
        }
    }
}

/// The socket of postern-queued (see `queued`).
pub fn daemon_socket(home: &Home) -> PathBuf {
    home.root().join("run").join("queue").join("submit")
}

/// Which program a client runs to queue a message: `$POSTERN_QUEUE`, else
/// `$QMAILQUEUE` (so existing qmail filters wrap us unchanged), else postern-queue.
pub fn queue_program(home: &Home) -> PathBuf {
    queue_override().unwrap_or_else(|| home.bin("postern-queue"))
}

/// The queue program named in the environment, if any.
fn queue_override() -> Option<PathBuf> {
    ["POSTERN_QUEUE", "QMAILQUEUE"].iter().filter_map(std::env::var_os).find(|v| !v.is_empty()).map(PathBuf::from)
}

/// Why a client could not queue a message.
#[derive(Debug)]
pub struct SubmitError {
    /// postern-queue's exit code, or `exit::BUG` if it could not be run or died.
    pub code: i32,
    pub detail: String,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (exit {}){}",
            exit::describe(self.code),
            self.code,
            if self.detail.is_empty() { String::new() } else { format!(": {}", self.detail) }
        )
    }
}

impl Classify for SubmitError {
    fn kind(&self) -> Kind {
        if exit::is_permanent(self.code) {
            Kind::Permanent
        } else {
            Kind::Temporary
        }
    }
}

/// A message on its way into the queue: the queue program runs from `start`, takes
/// the message as it is written, and the envelope at `commit`. Without a commit
/// it sees no envelope and queues nothing (a client that went away mid-message).
pub struct Submission {
    verdict: Verdict,
    stdin: Option<File>,
    envelope: Option<File>,
    broken: bool,
}

/// Where the exit code comes from: the queue program, or postern-queued's worker
/// (one byte on the socket).
enum Verdict {
    Program(std::process::Child),
    Daemon(std::os::unix::net::UnixStream),
}

impl Submission {
    pub fn start(home: &Home) -> Result<Submission, SubmitError> {
        use std::process::{Command, Stdio};
        if let Some(s) = Submission::via_daemon(home) {
            return Ok(s);
        }
        let program = queue_program(home);
        let bug = |detail: String| SubmitError { code: exit::BUG, detail };
        let (env_r, env_w) = crate::os::sys::pipe().map_err(|e| bug(format!("pipe: {e}")))?;
        let mut child = Command::new(&program)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(env_r))
            .env("POSTERN_HOME", home.root())
            .spawn()
            .map_err(|e| bug(format!("cannot run {}: {e}", program.display())))?;
        let stdin = child.stdin.take().map(|s| File::from(std::os::fd::OwnedFd::from(s)));
        Ok(Submission { verdict: Verdict::Program(child), stdin, envelope: Some(File::from(env_w)), broken: false })
    }

    /// postern-queued's socket, when it answers and no other queue program is
    /// asked for: the same fd 0 and fd 1, passed as two pipes, and no program start.
    fn via_daemon(home: &Home) -> Option<Submission> {
        use std::os::fd::AsFd;
        if queue_override().is_some() {
            return None;
        }
        let sock = std::os::unix::net::UnixStream::connect(daemon_socket(home)).ok()?;
        let (msg_r, msg_w) = crate::os::sys::pipe().ok()?;
        let (env_r, env_w) = crate::os::sys::pipe().ok()?;
        crate::os::sys::send_with_fds(&sock, b"Q", &[msg_r.as_fd(), env_r.as_fd()]).ok()?;
        Some(Submission {
            verdict: Verdict::Daemon(sock),
            stdin: Some(File::from(msg_w)),
            envelope: Some(File::from(env_w)),
            broken: false,
        })
    }

    /// More of the message.
    pub fn write(&mut self, data: &[u8]) {
        if let (false, Some(w)) = (self.broken, self.stdin.as_mut()) {
            // A queue program that gave up closed its end (EPIPE); its exit code
            // says why, not this write.
            self.broken = w.write_all(data).is_err();
        }
    }

    /// The message is complete: hand over the envelope and wait for the verdict.
    pub fn commit(mut self, envelope: &Envelope) -> Result<(), SubmitError> {
        drop(self.stdin.take());
        if let Some(mut w) = self.envelope.take() {
            let _ = w.write_all(&envelope.encode());
        }
        self.wait()
    }

    /// Give up: the queue program finds no envelope and queues nothing.
    pub fn abort(mut self) {
        drop(self.stdin.take());
        drop(self.envelope.take());
        let _ = self.wait();
    }

    fn wait(&mut self) -> Result<(), SubmitError> {
        let child = match &mut self.verdict {
            Verdict::Program(child) => child,
            Verdict::Daemon(sock) => {
                let mut code = [0u8; 1];
                return match sock.read(&mut code) {
                    Ok(1) if code[0] == 0 => Ok(()),
                    Ok(1) => Err(SubmitError { code: code[0] as i32, detail: String::new() }),
                    Ok(_) => Err(SubmitError { code: exit::BUG, detail: "postern-queued's worker ended without an answer".into() }),
                    Err(e) => Err(SubmitError { code: exit::BUG, detail: format!("reading postern-queued's answer: {e}") }),
                };
            }
        };
        let status = child.wait().map_err(|e| SubmitError { code: exit::BUG, detail: format!("wait for the queue program: {e}") })?;
        match status.code() {
            Some(0) => Ok(()),
            Some(code) => Err(SubmitError { code, detail: String::new() }),
            None => Err(SubmitError { code: exit::BUG, detail: "the queue program was killed by a signal".into() }),
        }
    }
}

/// Hand a whole message to the queue program: message on its fd 0, envelope on
/// its fd 1. Returns once the program has exited; Ok only for exit 0. If reading
/// `message` fails, nothing is queued.
pub fn submit(home: &Home, message: &mut dyn Read, envelope: &Envelope) -> Result<(), SubmitError> {
    let mut sub = Submission::start(home)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match message.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => sub.write(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                sub.abort();
                return Err(SubmitError { code: exit::READ, detail: format!("reading the message: {e}") });
            }
        }
    }
    sub.commit(envelope)
}
