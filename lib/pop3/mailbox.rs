//! A Maildir as POP3 sees it: one session's fixed list of messages.
//!
//! Opening a mailbox takes its lock and lists new/ and cur/ once: mail that
//! arrives later waits for the next session. Messages are numbered in name
//! order, which is delivery order for Maildir names (they start with the
//! delivery time). The listed messages still in new/ move to cur/ (with the
//! `:2,` info, as qmail-pop3d does) in `settle`, once the session has had its
//! last answer: a client polling a large mailbox is not kept waiting for one
//! rename per new message, and a session that dies first leaves them in new/,
//! where the next one finds them.
//!
//! - UIDL: the message's unique name, the part before ':' (and before any
//!   `,S=`/`,W=` size fields Maildir++ writers add). It does not change when the
//!   file moves from new/ to cur/ or gets flags, so it survives restarts without an
//!   index file.
//! - Sizes: as sent, with every bare LF counted as CR LF (dot-stuffing not
//!   counted, as RFC 1939 allows). A name with `,W=` (postern's delivery, and
//!   Dovecot's, write it) gives the size without opening the file; other files
//!   are read once per session to count.
//! - Lock: `Maildir/postern-pop3.lock`, locked with flock(2) for the session. The
//!   kernel drops it when the process ends, however it ends, so there is nothing
//!   stale to clean up; on NFS, Linux maps flock to a lock the server knows.
//!   A second session gets `MailboxError::InUse`.
//! - A file that cannot be opened, or that is not a regular file, is skipped
//!   with a log line; the rest of the mailbox is served.
//! - Deletions happen in `commit` only (QUIT in the UPDATE state).
//! - IMAP sessions share the Maildir without this lock: they may rename a
//!   listed file (flags go in the name) while POP3 holds it, so a file not
//!   found under its listed name is looked up again by its unique part for
//!   RETR, TOP and deletion.

use crate::error::{Classify, Kind};
use crate::maildir::name::{crlf_size, size_in_name, uidl_of};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "postern-pop3.lock";

#[derive(Debug)]
pub enum MailboxError {
    /// The maildir or its cur/ or new/ does not exist.
    Missing(PathBuf),
    /// Another session holds the lock.
    InUse(PathBuf),
    Io(PathBuf, io::Error),
}

impl fmt::Display for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxError::Missing(p) => write!(
                f,
                "maildir {} does not exist or lacks cur/ or new/; create it (mkdir -p {0}/tmp {0}/new {0}/cur) or check the user's home",
                p.display()
            ),
            MailboxError::InUse(p) => write!(f, "mailbox {} is in use by another POP3 session; try again when it ends", p.display()),
            MailboxError::Io(p, e) => write!(f, "cannot read mailbox {}: {e}", p.display()),
        }
    }
}

impl Classify for MailboxError {
    fn kind(&self) -> Kind {
        Kind::Temporary
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// File name in new/ or cur/.
    pub name: String,
    /// Listed in new/ (not yet moved by `settle`).
    pub in_new: bool,
    pub uidl: String,
    /// Octets as sent (bare LF counted as CR LF).
    pub size: u64,
    pub deleted: bool,
}

/// One session's view of a Maildir.
pub struct Mailbox {
    dir: PathBuf,
    pub messages: Vec<Message>,
    _lock: nix::fcntl::Flock<File>,
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

impl Mailbox {
    /// Lock, list new/ and cur/. `log` receives a line per skipped file.
    pub fn open(dir: &Path, log: &mut dyn FnMut(&str)) -> Result<Mailbox, MailboxError> {
        let io_err = |p: &Path, e: io::Error| {
            if is_missing(&e) {
                MailboxError::Missing(dir.to_path_buf())
            } else {
                MailboxError::Io(p.to_path_buf(), e)
            }
        };
        for sub in ["cur", "new"] {
            match fs::metadata(dir.join(sub)) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(MailboxError::Missing(dir.to_path_buf())),
                Err(e) => return Err(io_err(&dir.join(sub), e)),
            }
        }
        let lock_path = dir.join(LOCK_FILE);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            if e == nix::errno::Errno::EWOULDBLOCK {
                MailboxError::InUse(dir.to_path_buf())
            } else {
                MailboxError::Io(lock_path.clone(), e.into())
            }
        })?;
        let mut mb = Mailbox { dir: dir.to_path_buf(), messages: Vec::new(), _lock: lock };
        mb.scan("new", log)?;
        mb.scan("cur", log)?;
        mb.messages.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(mb)
    }

    /// Names in new/ or cur/, sorted, with whether each is a regular file (from
    /// the directory entry's type where the file system records it, so listing
    /// needs no stat per file).
    fn names(&self, sub: &str) -> Result<Vec<(String, bool)>, MailboxError> {
        let path = self.dir.join(sub);
        let mut names = Vec::new();
        for e in fs::read_dir(&path).map_err(|e| MailboxError::Io(path.clone(), e))? {
            let e = e.map_err(|e| MailboxError::Io(path.clone(), e))?;
            match e.file_name().into_string() {
                Ok(n) if !n.starts_with('.') => names.push((n, e.file_type().map(|t| t.is_file()).unwrap_or(false))),
                _ => {}
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// After the session's last answer: new/NAME -> cur/NAME:2, for each
    /// listed message still in new/ and not deleted. A file another reader
    /// moved first is simply gone.
    pub fn settle(&self, log: &mut dyn FnMut(&str)) {
        for m in self.messages.iter().filter(|m| m.in_new && !m.deleted) {
            let from = self.path(m);
            let to = self.dir.join("cur").join(format!("{}:2,", m.name));
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log(&format!("cannot move {} to cur/: {e}; the next session tries again", from.display())),
            }
        }
    }

    fn scan(&mut self, sub: &str, log: &mut dyn FnMut(&str)) -> Result<(), MailboxError> {
        let mut buf = vec![0u8; 64 * 1024];
        let in_new = sub == "new";
        for (name, is_file) in self.names(sub)? {
            if let (Some(size), true) = (size_in_name(&name), is_file) {
                let uidl = uidl_of(&name).to_string();
                self.messages.push(Message { name, in_new, uidl, size, deleted: false });
                continue;
            }
            let path = self.dir.join(sub).join(&name);
            match size_of_file(&path, &mut buf) {
                Ok(size) => {
                    let uidl = uidl_of(&name).to_string();
                    self.messages.push(Message { name, in_new, uidl, size, deleted: false });
                }
                Err(e) => log(&format!("skipping {}: {e}", path.display())),
            }
        }
        Ok(())
    }

    /// The file of a message, as listed.
    pub fn path(&self, m: &Message) -> PathBuf {
        self.dir.join(if m.in_new { "new" } else { "cur" }).join(&m.name)
    }

    /// Where a message's file is now: under its listed name, or, if an IMAP
    /// session moved or renamed it since (to cur/, flags), under the name with
    /// the same unique part.
    fn current(&self, m: &Message) -> Option<PathBuf> {
        ["cur", "new"].iter().find_map(|sub| {
            let d = self.dir.join(sub);
            fs::read_dir(&d).ok()?.flatten().find_map(|e| {
                let n = e.file_name().into_string().ok()?;
                (uidl_of(&n) == m.uidl).then(|| d.join(n))
            })
        })
    }

    /// Open a message's file, following a rename by IMAP.
    pub fn open_message(&self, m: &Message) -> io::Result<File> {
        match File::open(self.path(m)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => File::open(self.current(m).ok_or(e)?),
            r => r,
        }
    }

    /// Remove the messages marked deleted. Returns how many went and the failures
    /// (already gone counts as removed).
    pub fn commit(&self) -> (usize, Vec<String>) {
        let mut n = 0;
        let mut failed = Vec::new();
        for m in self.messages.iter().filter(|m| m.deleted) {
            let p = self.path(m);
            let r = match fs::remove_file(&p) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.current(m).map_or(Ok(()), fs::remove_file),
                r => r,
            };
            match r {
                Err(e) if e.kind() != io::ErrorKind::NotFound => failed.push(format!("cannot remove {}: {e}", p.display())),
                _ => n += 1,
            }
        }
        (n, failed)
    }
}

fn size_of_file(path: &Path, buf: &mut [u8]) -> io::Result<u64> {
    let mut f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut size = 0;
    let mut prev_cr = false;
    loop {
        match f.read(buf) {
            Ok(0) => return Ok(size),
            Ok(n) => size += crlf_size(&buf[..n], &mut prev_cr),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Sends a message the POP3 way, chunk by chunk: bare LF becomes CR LF, a line
/// starting with '.' gets another '.', and the caller ends with ".\r\n".
#[derive(Default)]
pub struct Stuffer {
    prev_cr: bool,
    /// At the start of a line (true before the first byte).
    mid_line: bool,
}

impl Stuffer {
    pub fn new() -> Stuffer {
        Stuffer::default()
    }

    /// Append the encoding of `data` to `out`.
    pub fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.reserve(data.len() + data.len() / 32 + 8);
        let mut start = 0;
        for (i, &b) in data.iter().enumerate() {
            if !self.mid_line && b == b'.' {
                out.extend_from_slice(&data[start..i]);
                out.push(b'.');
                start = i;
            }
            if b == b'\n' {
                if !self.prev_cr {
                    out.extend_from_slice(&data[start..i]);
                    out.push(b'\r');
                    start = i;
                }
                self.mid_line = false;
            } else {
                self.mid_line = true;
            }
            self.prev_cr = b == b'\r';
        }
        out.extend_from_slice(&data[start..]);
    }

    /// The end of the message: a line break if the last line lacked one, then ".".
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.mid_line {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// How much of `data` TOP sends: the header, the blank line, and `lines` lines of
/// the body.
pub fn top_len(data: &[u8], lines: u64) -> usize {
    // The header ends at the first empty line (LF LF or LF CR LF).
    let mut i = 0;
    let body = loop {
        match data[i..].iter().position(|&b| b == b'\n') {
            None => return data.len(),
            Some(p) => {
                let eol = i + p + 1;
                let line = &data[i..eol];
                i = eol;
                if line == b"\n" || line == b"\r\n" {
                    break i;
                }
            }
        }
    };
    let mut end = body;
    for _ in 0..lines {
        match data[end..].iter().position(|&b| b == b'\n') {
            None => return data.len(),
            Some(p) => end += p + 1,
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(parts: &[&[u8]]) -> Vec<u8> {
        let mut s = Stuffer::new();
        let mut out = Vec::new();
        for p in parts {
            s.encode(p, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn stuffing_and_crlf_whatever_the_chunks() {
        let msg: &[u8] = b".starts\nok\r\n..two\n.\nlast";
        let want = b"..starts\r\nok\r\n...two\r\n..\r\nlast\r\n.\r\n".to_vec();
        assert_eq!(stuff(&[msg]), want);
        for at in 0..=msg.len() {
            assert_eq!(stuff(&[&msg[..at], &msg[at..]]), want, "split at {at}");
        }
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert_eq!(stuff(&bytes), want);
        assert_eq!(stuff(&[b""]), b".\r\n");
        assert_eq!(stuff(&[b"a\n"]), b"a\r\n.\r\n");
    }

    #[test]
    fn a_file_renamed_by_imap_is_still_read_and_deleted() {
        let d = crate::imap::uidlist::tests::maildir_at("pop3-renamed");
        fs::write(d.join("new/1.a.h,S=2,W=3"), b"x\n").unwrap();
        let mut mb = Mailbox::open(&d, &mut |l| panic!("{l}")).unwrap();
        assert!(mb.messages[0].in_new, "listed where it is; settle moves it after the session");
        // An IMAP session moves it to cur/ and sets \Seen while POP3 has the mailbox.
        fs::rename(d.join("new/1.a.h,S=2,W=3"), d.join("cur/1.a.h,S=2,W=3:2,S")).unwrap();
        let mut s = String::new();
        mb.open_message(&mb.messages[0]).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "x\n");
        mb.messages[0].deleted = true;
        assert_eq!(mb.commit(), (1, vec![]));
        assert!(fs::read_dir(d.join("cur")).unwrap().next().is_none(), "deleted under its new name");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn listed_in_new_and_cur_in_name_order_and_settled_into_cur_unless_deleted() {
        let d = crate::imap::uidlist::tests::maildir_at("pop3-settle");
        fs::write(d.join("cur/1.a.h,S=2,W=3:2,S"), b"x\n").unwrap();
        fs::write(d.join("new/2.b.h,S=2,W=3"), b"y\n").unwrap();
        fs::write(d.join("new/3.c.h,S=2,W=3"), b"z\n").unwrap();
        let mut mb = Mailbox::open(&d, &mut |l| panic!("{l}")).unwrap();
        let uidls: Vec<&str> = mb.messages.iter().map(|m| m.uidl.as_str()).collect();
        assert_eq!(uidls, ["1.a.h", "2.b.h", "3.c.h"]);
        assert!(fs::read_dir(d.join("new")).unwrap().count() == 2, "open moves nothing");
        mb.messages[2].deleted = true;
        assert_eq!(mb.commit(), (1, vec![]));
        mb.settle(&mut |l| panic!("{l}"));
        assert!(fs::read_dir(d.join("new")).unwrap().next().is_none());
        let mut cur: Vec<String> = fs::read_dir(d.join("cur")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        cur.sort();
        assert_eq!(cur, ["1.a.h,S=2,W=3:2,S", "2.b.h,S=2,W=3:2,"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn top_cuts_after_the_header_and_n_lines() {
        let m = b"A: 1\nB: 2\n\nl1\nl2\nl3\n";
        assert_eq!(&m[..top_len(m, 0)], b"A: 1\nB: 2\n\n");
        assert_eq!(&m[..top_len(m, 2)], b"A: 1\nB: 2\n\nl1\nl2\n");
        assert_eq!(top_len(m, 10), m.len());
        let crlf = b"A: 1\r\n\r\nx\r\ny\r\n";
        assert_eq!(&crlf[..top_len(crlf, 1)], b"A: 1\r\n\r\nx\r\n");
        assert_eq!(top_len(b"no header end", 1), 13);
    }
}
