//! The read path of FETCH and SEARCH: message bytes read with one `read`
//! (not a map: most mail is a few KiB), and a per-folder cache of header
//! blocks, so a client listing subjects or searching a header does not open
//! every file again at every login.
//!
//! `postern-headers` in the folder holds records
//! `BASE SIZE LEN\n` + the header block (LEN bytes, blank line included) +
//! `\n`, appended with O_APPEND, one write per command. A Maildir file never
//! changes once delivered (only its name does), so a record keyed by the
//! base name and RFC822.SIZE stays true while the message exists; records of
//! expunged messages are dropped when the file is rewritten. The file is only
//! appended to or replaced by rename, never truncated, so a map of it stays
//! valid while another session writes. A torn or garbled record (a crash
//! mid-write) ends the readable part; the next writer rewrites the file with
//! what was readable. Losing the cache loses nothing but time.

use super::fetch::mime;
use super::mailbox::{Mailbox, Message};
use super::StoreError;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Deref;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const CACHE_FILE: &str = "postern-headers";
/// Loading the cache costs about what reading a few dozen messages does: a
/// FETCH of fewer (a client asking for the mail that just came) reads them.
pub const MIN_MESSAGES: usize = 32;
/// Larger headers are read from the message each time.
const MAX_HEADER: usize = 64 * 1024;
/// Files up to this size are read; larger ones mapped.
const READ_LIMIT: u64 = 256 * 1024;

/// A message's bytes, or its header block.
pub enum Bytes<'a> {
    Owned(Vec<u8>),
    Map(memmap2::Mmap),
    Cached(&'a [u8]),
}

impl Deref for Bytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Map(m) => m,
            Bytes::Cached(s) => s,
        }
    }
}

/// The whole message: one open, one read, one close for the usual sizes.
pub fn read(mb: &Mailbox, m: &Message) -> Result<Bytes<'static>, StoreError> {
    if m.size > READ_LIMIT {
        return mb.read(m.uid).map(Bytes::Map);
    }
    let p = mb.path(m);
    let mut f = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&p) {
        Ok(f) => f,
        // Renamed by another session: the mailbox follows it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return mb.read(m.uid).map(Bytes::Map),
        Err(e) => return Err(StoreError::Io(p, e)),
    };
    // RFC822.SIZE counts CR LF, so it is at least the file's size: one read
    // that comes back short is the whole file.
    let cap = m.size as usize + 1;
    let mut buf = vec![0u8; cap];
    let mut n = 0;
    loop {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if n < cap {
                    break;
                }
                buf.resize(buf.len() * 2, 0);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StoreError::Io(p, e)),
        }
    }
    buf.truncate(n);
    Ok(Bytes::Owned(buf))
}

/// The header blocks of one folder, for one command.
pub struct Headers {
    dir: PathBuf,
    map: Option<memmap2::Mmap>,
    /// base name -> (RFC822.SIZE, offset, length) in `map`.
    index: HashMap<Box<str>, (u64, usize, usize)>,
    records: usize,
    /// The readable part ended in a garbled record: rewrite, not append.
    broken: bool,
    /// Records to add at `finish`.
    pending: Vec<u8>,
}

impl Headers {
    /// Load the folder's cache; a missing or unreadable one is empty.
    pub fn open(dir: &Path) -> Headers {
        let mut h = Headers { dir: dir.to_path_buf(), map: None, index: HashMap::new(), records: 0, broken: false, pending: Vec::new() };
        let Ok(f) = File::open(dir.join(CACHE_FILE)) else { return h };
        let Ok(map) = crate::os::sys::map_file(&f) else { return h };
        let mut i = 0;
        while i < map.len() {
            match record(&map[i..]) {
                Some((base, size, off, len, next)) => {
                    h.index.insert(base.into(), (size, i + off, len));
                    h.records += 1;
                    i += next;
                }
                None => {
                    // A record still being appended by another session is
                    // short at the end; anything else is damage.
                    h.broken = !torn_tail(&map[i..]);
                    break;
                }
            }
        }
        h.map = Some(map);
        h
    }

    /// The message's header block (through the blank line), from the cache
    /// or else from its file (and then remembered).
    pub fn get(&mut self, mb: &Mailbox, m: &Message) -> Result<Bytes<'_>, StoreError> {
        if let (Some(&(size, off, len)), Some(map)) = (self.index.get(m.base()), &self.map) {
            if size == m.size {
                return Ok(Bytes::Cached(&map[off..off + len]));
            }
        }
        let d = read(mb, m)?;
        let end = mime::split(&d).1;
        let head = d[..end].to_vec();
        if end <= MAX_HEADER && !m.base().contains([' ', '\n']) {
            self.pending.extend_from_slice(format!("{} {} {}\n", m.base(), m.size, end).as_bytes());
            self.pending.extend_from_slice(&head);
            self.pending.push(b'\n');
            self.records += 1;
        }
        Ok(Bytes::Owned(head))
    }

    /// Write what `get` read from files: appended, or the file rewritten with
    /// only the folder's current messages when it is damaged or mostly dead.
    /// Failure is logged by the caller and costs only time.
    pub fn finish(mut self, mb: &Mailbox) -> Result<(), StoreError> {
        let live = mb.messages().len();
        if self.pending.is_empty() && !self.broken {
            return Ok(());
        }
        let p = self.dir.join(CACHE_FILE);
        if !self.broken && self.records <= 2 * live + 256 {
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&p)
                .map_err(StoreError::io(&p))?;
            return f.write_all(&self.pending).map_err(StoreError::io(&p));
        }
        let keep: HashMap<&str, u64> = mb.messages().iter().map(|m| (m.base(), m.size)).collect();
        let mut out = Vec::new();
        if let Some(map) = &self.map {
            for (base, &(size, off, len)) in &self.index {
                if keep.get(&**base) == Some(&size) {
                    out.extend_from_slice(format!("{base} {size} {len}\n").as_bytes());
                    out.extend_from_slice(&map[off..off + len]);
                    out.push(b'\n');
                }
            }
        }
        out.append(&mut self.pending);
        let tmp = self.dir.join(format!("{CACHE_FILE}.{}", std::process::id()));
        let r = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&out))
            .and_then(|_| fs::rename(&tmp, &p));
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r.map_err(StoreError::io(&p))
    }
}

/// One record at the start of `d`: (base, size, header offset, header
/// length, record length).
fn record(d: &[u8]) -> Option<(&str, u64, usize, usize, usize)> {
    let nl = d.iter().take(512).position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&d[..nl]).ok()?;
    let mut it = line.split(' ');
    let (base, size, len) = (it.next()?, it.next()?.parse().ok()?, it.next()?.parse::<usize>().ok()?);
    if base.is_empty() || it.next().is_some() || len > MAX_HEADER {
        return None;
    }
    let off = nl + 1;
    if d.get(off + len) != Some(&b'\n') {
        return None;
    }
    Some((base, size, off, len, off + len + 1))
}

/// Whether `d` is the start of a well-formed record cut short by the end of
/// the file.
fn torn_tail(d: &[u8]) -> bool {
    let Some(nl) = d.iter().position(|&b| b == b'\n') else { return d.len() < 512 };
    let Ok(line) = std::str::from_utf8(&d[..nl]) else { return false };
    let f: Vec<&str> = line.split(' ').collect();
    f.len() == 3 && f[1].parse::<u64>().is_ok() && f[2].parse::<usize>().is_ok_and(|len| d.len() < nl + 1 + len + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_tails_are_told_apart() {
        let d = b"a.b 10 6\nX: 1\n\n\nc.d 3 1\n\n\n";
        let (base, size, off, len, next) = record(d).unwrap();
        assert_eq!((base, size, &d[off..off + len], next), ("a.b", 10, &b"X: 1\n\n"[..], 16));
        assert_eq!(record(&d[next..]).unwrap().0, "c.d");
        // cut anywhere inside the second record: torn, not damage
        for cut in next..d.len() {
            assert!(record(&d[next..cut]).is_none());
            assert!(torn_tail(&d[next..cut]), "cut at {cut}");
        }
        assert!(!torn_tail(b"garbage here\nmore"));
        assert!(record(b"a.b 10 6\nX: 1\n\nZ").is_none());
    }
}
