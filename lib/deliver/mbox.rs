//! mbox delivery: append one message under an fcntl lock and a dotlock.
//!
//! Format is mboxrd: a "From sender date" line, the prefix headers, the message
//! with every line matching `^>*From ` quoted by one more '>', and a blank line at
//! the end. If anything fails after the first byte is written, the file is cut back
//! to its old size so readers never see half a message.

use crate::error::{Classify, Kind};
use crate::status::Status;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How long we wait for another writer's lock before failing temporarily.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// A dotlock older than this belongs to a writer that died.
pub const STALE_DOTLOCK: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub enum MboxError {
    Open(PathBuf, io::Error),
    /// Another writer held the lock for longer than LOCK_WAIT.
    Locked(PathBuf),
    Lock(PathBuf, io::Error),
    /// Writing failed; the file was cut back to its old size.
    Write(PathBuf, io::Error),
    Message(io::Error),
}

impl fmt::Display for MboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MboxError::Open(p, e) => write!(f, "cannot open mbox {}: {e}; check the path and its permissions", p.display()),
            MboxError::Locked(p) => write!(
                f,
                "mbox {} stayed locked for {} seconds; another program holds it (remove {}.lock if it is stale)",
                p.display(),
                LOCK_WAIT.as_secs(),
                p.display()
            ),
            MboxError::Lock(p, e) => write!(f, "cannot lock mbox {}: {e}", p.display()),
            MboxError::Write(p, e) => {
                let what =
                    if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) { "disk or quota full" } else { "write failed" };
                write!(f, "mbox {}: {what}: {e}; the file was left as it was", p.display())
            }
            MboxError::Message(e) => write!(f, "cannot read the message: {e}"),
        }
    }
}

impl MboxError {
    pub fn status(&self) -> Status {
        match self {
            MboxError::Open(..) | MboxError::Locked(_) | MboxError::Lock(..) => Status::MAILBOX_UNAVAILABLE,
            MboxError::Write(..) => Status::MAILBOX_FULL,
            MboxError::Message(_) => Status::MAIL_SYSTEM,
        }
    }
}

impl Classify for MboxError {
    fn kind(&self) -> Kind {
        Kind::Temporary
    }
}

/// qmail's UFLINE: `From SENDER DATE\n`, MAILER-DAEMON for the null sender, blanks
/// in the sender replaced so the line still splits into its three fields.
pub fn from_line(sender: &str, t: SystemTime) -> String {
    let s: String = if sender.is_empty() {
        "MAILER-DAEMON".into()
    } else {
        sender.chars().map(|c| if c == ' ' || c == '\t' || c == '\n' { '-' } else { c }).collect()
    };
    format!("From {s} {}\n", crate::message::date::asctime(t))
}

/// Whether a line needs one more '>' (mboxrd).
pub fn needs_quote(line: &[u8]) -> bool {
    let rest = &line[line.iter().take_while(|&&b| b == b'>').count()..];
    rest.starts_with(b"From ")
}

/// Write the message from `r` quoted, ending with a blank line.
pub fn write_quoted(r: &mut dyn BufRead, w: &mut dyn Write) -> io::Result<()> {
    let mut line = Vec::with_capacity(1024);
    let mut last_nl = true;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if needs_quote(&line) {
            w.write_all(b">")?;
        }
        w.write_all(&line)?;
        last_nl = line.ends_with(b"\n");
    }
    if !last_nl {
        w.write_all(b"\n")?;
    }
    w.write_all(b"\n")
}

/// A dotlock we created, removed on drop.
struct DotLock(Option<PathBuf>);

impl Drop for DotLock {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

fn dotlock(path: &Path, deadline: Instant) -> Result<DotLock, MboxError> {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    let mut pause = Duration::from_millis(5);
    loop {
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&lock) {
            Ok(_) => return Ok(DotLock(Some(lock))),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let stale = fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .map(|m| SystemTime::now().duration_since(m).unwrap_or_default() > STALE_DOTLOCK)
                    .unwrap_or(false);
                if stale {
                    let _ = fs::remove_file(&lock);
                    continue;
                }
            }
            // A directory we may not write to (/var/mail without group mail): the
            // fcntl lock alone protects us from writers that use it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS)) => return Ok(DotLock(None)),
            Err(e) => return Err(MboxError::Lock(lock, e)),
        }
        if Instant::now() >= deadline {
            return Err(MboxError::Locked(path.to_path_buf()));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn fcntl_lock(f: &File, path: &Path, deadline: Instant) -> Result<(), MboxError> {
    use nix::fcntl::{fcntl, FcntlArg};
    let fl = libc::flock { l_type: libc::F_WRLCK as _, l_whence: libc::SEEK_SET as _, l_start: 0, l_len: 0, l_pid: 0 };
    let mut pause = Duration::from_millis(5);
    loop {
        match fcntl(f.as_raw_fd(), FcntlArg::F_SETLK(&fl)) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EACCES) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(MboxError::Lock(path.to_path_buf(), e.into())),
        }
        if Instant::now() >= deadline {
            return Err(MboxError::Locked(path.to_path_buf()));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Append one message to the mbox at `path` (created 0600 if missing). `message`
/// is read from its start. Ok only once the data is fsynced.
pub fn deliver(path: &Path, sender: &str, prefix: &[u8], message: &mut File) -> Result<(), MboxError> {
    let deadline = Instant::now() + LOCK_WAIT;
    let _dot = dotlock(path, deadline)?;
    let f = OpenOptions::new().append(true).create(true).mode(0o600).open(path).map_err(|e| MboxError::Open(path.to_path_buf(), e))?;
    fcntl_lock(&f, path, deadline)?;
    let size = f.metadata().map_err(|e| MboxError::Open(path.to_path_buf(), e))?.len();
    message.seek(SeekFrom::Start(0)).map_err(MboxError::Message)?;
    match append(&f, sender, prefix, message) {
        Ok(()) => Ok(()),
        Err(e) => {
            // Cut back to the old size so the mbox holds no partial message.
            let _ = f.set_len(size);
            let _ = f.sync_all();
            match e {
                Failure::Read(e) => Err(MboxError::Message(e)),
                Failure::Write(e) => Err(MboxError::Write(path.to_path_buf(), e)),
            }
        }
    }
    // The fcntl lock goes with the descriptor; the dotlock is dropped after it.
}

/// A reader that remembers whether an error came from it, not from the writer.
struct Flagged<R> {
    inner: R,
    failed: bool,
}

impl<R: BufRead> io::Read for Flagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.failed |= r.is_err();
        r
    }
}

impl<R: BufRead> BufRead for Flagged<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self.inner.fill_buf() {
            Ok(b) => Ok(b),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n)
    }
}

enum Failure {
    Read(io::Error),
    Write(io::Error),
}

fn append(f: &File, sender: &str, prefix: &[u8], message: &mut File) -> Result<(), Failure> {
    let mut w = BufWriter::with_capacity(64 * 1024, f);
    w.write_all(from_line(sender, SystemTime::now()).as_bytes()).map_err(Failure::Write)?;
    w.write_all(prefix).map_err(Failure::Write)?;
    let mut r = Flagged { inner: BufReader::with_capacity(64 * 1024, message), failed: false };
    if let Err(e) = write_quoted(&mut r, &mut w) {
        return Err(if r.failed { Failure::Read(e) } else { Failure::Write(e) });
    }
    w.flush().map_err(Failure::Write)?;
    drop(w);
    f.sync_all().map_err(Failure::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn from_lines_and_quoting() {
        let t = UNIX_EPOCH + Duration::from_secs(1795291106);
        assert_eq!(from_line("", t), "From MAILER-DAEMON Sat Nov 21 19:58:26 2026\n");
        assert_eq!(from_line("a b@c", t), "From a-b@c Sat Nov 21 19:58:26 2026\n");
        let mut out = Vec::new();
        write_quoted(&mut &b"S: x\n\nFrom here\n>From there\nFromage\n >From\nend"[..], &mut out).unwrap();
        assert_eq!(out, b"S: x\n\n>From here\n>>From there\nFromage\n >From\nend\n\n");
    }

    #[test]
    fn appends_and_quotes() {
        let d = crate::testing::scratch_dir("mbox");
        fs::write(d.join("msg"), "Subject: a\n\nFrom me\nbye").unwrap();
        let mut m = File::open(d.join("msg")).unwrap();
        deliver(&d.join("mbox"), "s@x", b"Delivered-To: u@h\n", &mut m).unwrap();
        deliver(&d.join("mbox"), "", b"", &mut m).unwrap();
        let text = String::from_utf8(fs::read(d.join("mbox")).unwrap()).unwrap();
        let parts: Vec<&str> = text.split_inclusive('\n').collect();
        assert!(parts[0].starts_with("From s@x "), "{text}");
        assert_eq!(parts[1..6].concat(), "Delivered-To: u@h\nSubject: a\n\n>From me\nbye\n");
        assert_eq!(parts[6], "\n");
        assert!(parts[7].starts_with("From MAILER-DAEMON "));
        assert!(!d.join("mbox.lock").exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
