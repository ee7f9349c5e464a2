//! The per-folder UID list: `postern-uidlist` in the folder's directory.
//!
//! ```text
//! postern-uidlist 2 UIDVALIDITY UIDNEXT HIGHESTMODSEQ PRUNEDMODSEQ
//! UID SIZE MTIME MODSEQ FLAGS BASENAME
//! X UID MODSEQ
//! ```
//! (version 1, without modseqs, flags and tombstones, is read and upgraded).
//! FLAGS are the name's letters after `:2,` as last seen: a name whose
//! flags differ was changed by someone and gets a new CONDSTORE modseq; the
//! `X` lines are expunged UIDs with the modseq of their expunge (QRESYNC).
//! BASENAME is the Maildir name before `:2,` (and before `,S=`/`,W=`), which
//! stays the same when a file moves from new/ to cur/ or changes flags, so a
//! message keeps its UID whoever renames it (IMAP sessions, POP3, another
//! client). SIZE (RFC822.SIZE) and MTIME (INTERNALDATE) are cached so SELECT
//! needs no stat or read per message.
//!
//! Readers read the list without a lock: it is only ever replaced whole by a
//! rename. A writer takes `postern-uidlist.lock` (flock, dropped by the kernel
//! however the process ends), reads the list again, gives the names it does
//! not know the next UIDs in name order (delivery order), writes the list to a
//! temporary file, fsyncs it and renames it over the old one. POP3's lock is a
//! different file: POP3 and IMAP never wait for each other.
//!
//! A missing or unreadable list is rebuilt with a new UIDVALIDITY (clients
//! then forget their cached UIDs); each new UIDVALIDITY is larger than every
//! earlier one of the same user (`postern-uidvalidity` at the Maildir's top),
//! so a folder deleted and created again never reuses one.

use super::StoreError;
use crate::maildir::name::{crlf_size, size_in_name, uidl_of};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const LIST_FILE: &str = "postern-uidlist";
pub const LOCK_FILE: &str = "postern-uidlist.lock";
pub const VALIDITY_FILE: &str = "postern-uidvalidity";
const HEADER: &str = "postern-uidlist 2";
/// The format before modseqs; read, and rewritten as version 2 at the next sync.
const HEADER_V1: &str = "postern-uidlist 1";
/// Expunged UIDs remembered with their modseq (for QRESYNC's VANISHED);
/// the oldest beyond this are dropped and `pruned_modseq` raised.
pub const MAX_TOMBSTONES: usize = 4096;

/// One message the list knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub uid: u32,
    pub size: u64,
    pub mtime: i64,
    /// CONDSTORE mod-sequence of the last change seen (arrival, flags).
    pub modseq: u64,
    /// The flags the list last saw in the file name (`flags_key`); None only
    /// in a version 1 list not yet rewritten.
    pub flags: Option<String>,
    pub base: String,
}

/// The list as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UidList {
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// The largest modseq given in this folder (0: none yet).
    pub highest_modseq: u64,
    /// Expunges at or below this modseq may have been forgotten (tombstones
    /// pruned): VANISHED since an older modseq answers with every absent UID.
    pub pruned_modseq: u64,
    /// Ascending by UID.
    pub entries: Vec<Entry>,
    /// Tombstones (UID, modseq of its expunge), oldest first.
    pub vanished: Vec<(u32, u64)>,
}

impl UidList {
    /// Number a message added under the lock (APPEND, COPY, MOVE): the next
    /// UID and a new modseq. Returns the UID.
    pub fn push(&mut self, size: u64, mtime: i64, base: String, name: &str) -> u32 {
        let uid = self.uidnext;
        self.highest_modseq += 1;
        self.entries.push(Entry { uid, size, mtime, modseq: self.highest_modseq, flags: Some(flags_key(name)), base });
        self.uidnext += 1;
        uid
    }
}

/// The flags of a Maildir name as the list records them: the letters after
/// `:2,` sorted (programs differ in their order), `-` for none.
pub fn flags_key(name: &str) -> String {
    let Some((_, info)) = name.split_once(":2,") else { return "-".into() };
    let mut v: Vec<char> = info.chars().filter(char::is_ascii_alphabetic).collect();
    v.sort_unstable();
    v.dedup();
    if v.is_empty() {
        "-".into()
    } else {
        v.into_iter().collect()
    }
}

/// A file found in new/ or cur/.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    pub in_new: bool,
}

impl Found {
    pub fn base(&self) -> &str {
        uidl_of(&self.name)
    }
}

fn parse(text: &str) -> Option<UidList> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let (v2, head) = match first.strip_prefix(HEADER) {
        Some(h) => (true, h),
        None => (false, first.strip_prefix(HEADER_V1)?),
    };
    let mut h = head.split_ascii_whitespace();
    let uidvalidity: u32 = h.next()?.parse().ok()?;
    let uidnext: u32 = h.next()?.parse().ok()?;
    let (highest_modseq, pruned_modseq): (u64, u64) = if v2 { (h.next()?.parse().ok()?, h.next()?.parse().ok()?) } else { (1, 0) };
    if uidvalidity == 0 || uidnext == 0 || h.next().is_some() || pruned_modseq > highest_modseq {
        return None;
    }
    let mut entries = Vec::new();
    let mut vanished = Vec::new();
    let mut last = 0;
    for l in lines {
        if let Some(t) = l.strip_prefix("X ").filter(|_| v2) {
            let (u, m) = t.split_once(' ')?;
            let (uid, modseq): (u32, u64) = (u.parse().ok()?, m.parse().ok()?);
            if uid == 0 || uid >= uidnext || modseq == 0 || modseq > highest_modseq {
                return None;
            }
            vanished.push((uid, modseq));
            continue;
        }
        if !vanished.is_empty() {
            return None;
        }
        let mut f = l.splitn(if v2 { 6 } else { 4 }, ' ');
        let uid: u32 = f.next()?.parse().ok()?;
        let size: u64 = f.next()?.parse().ok()?;
        let mtime: i64 = f.next()?.parse().ok()?;
        let (modseq, flags) = if v2 { (f.next()?.parse().ok()?, Some(f.next()?.to_string())) } else { (1, None) };
        let base = f.next()?.to_string();
        // UIDs ascend and stay below UIDNEXT, or the list is not to be trusted.
        if uid <= last || uid >= uidnext || base.is_empty() || modseq == 0 || modseq > highest_modseq {
            return None;
        }
        last = uid;
        entries.push(Entry { uid, size, mtime, modseq, flags, base });
    }
    Some(UidList { uidvalidity, uidnext, highest_modseq, pruned_modseq, entries, vanished })
}

fn render(l: &UidList) -> String {
    let mut s = format!("{HEADER} {} {} {} {}\n", l.uidvalidity, l.uidnext, l.highest_modseq, l.pruned_modseq);
    for e in &l.entries {
        let flags = e.flags.as_deref().unwrap_or("-");
        s.push_str(&format!("{} {} {} {} {flags} {}\n", e.uid, e.size, e.mtime, e.modseq, e.base));
    }
    for (uid, m) in &l.vanished {
        s.push_str(&format!("X {uid} {m}\n"));
    }
    s
}

/// Outcome of reading the list file.
enum Read_ {
    Ok(UidList),
    Missing,
    Broken,
}

fn read_list(dir: &Path) -> Result<Read_, StoreError> {
    let p = dir.join(LIST_FILE);
    match fs::read(&p) {
        Ok(b) => Ok(match std::str::from_utf8(&b).ok().and_then(parse) {
            Some(l) => Read_::Ok(l),
            None => Read_::Broken,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Read_::Missing),
        Err(e) => Err(StoreError::Io(p, e)),
    }
}

/// The files in new/ then cur/ (in that order: a file POP3 or a session moves
/// from new/ to cur/ while we list is then seen at least once). Dot files and
/// non-regular files are skipped.
pub fn scan(dir: &Path) -> Result<Vec<Found>, StoreError> {
    let mut out = Vec::new();
    for (sub, in_new) in [("new", true), ("cur", false)] {
        let p = dir.join(sub);
        let rd = match fs::read_dir(&p) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && dir.exists() => continue,
            Err(e) => return Err(StoreError::Io(p, e)),
        };
        for e in rd {
            let e = e.map_err(StoreError::io(&p))?;
            let Ok(name) = e.file_name().into_string() else { continue };
            if name.starts_with('.') || !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                continue;
            }
            out.push(Found { name, in_new });
        }
    }
    Ok(out)
}

/// A held lock on a folder's list.
pub struct Lock {
    _f: nix::fcntl::Flock<File>,
}

/// Take the folder's list lock, waiting for another holder (they hold it
/// only while writing the list).
pub fn lock(dir: &Path) -> Result<Lock, StoreError> {
    lock_file(&dir.join(LOCK_FILE))
}

fn lock_file(p: &Path) -> Result<Lock, StoreError> {
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(p).map_err(StoreError::io(p))?;
    let f = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| StoreError::Io(p.to_path_buf(), e.into()))?;
    Ok(Lock { _f: f })
}

/// The Maildir's top directory for a folder directory (`.Sent` -> its parent).
pub fn root_of(dir: &Path) -> &Path {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some(n) if n.starts_with('.') && n.len() > 1 => dir.parent().unwrap_or(dir),
        _ => dir,
    }
}

/// A UIDVALIDITY larger than every earlier one of this Maildir: the time,
/// or one more than the last given if that is later.
pub fn next_uidvalidity(root: &Path) -> Result<u32, StoreError> {
    // Its own lock: callers hold a folder's list lock, INBOX's among them.
    let _l = lock_file(&root.join(format!("{VALIDITY_FILE}.lock")))?;
    let p = root.join(VALIDITY_FILE);
    let last: u32 = fs::read_to_string(&p).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let now = crate::os::time::now().min(u32::MAX as u64 - 1) as u32;
    let v = now.max(last.saturating_add(1)).max(1);
    crate::os::fs::write_atomic(&p, format!("{v}\n").as_bytes(), 0o600).map_err(StoreError::io(&p))?;
    Ok(v)
}

/// Size as sent and mtime of a file, reading it only if the name carries no `,W=`.
fn measure(path: &Path, name: &str) -> io::Result<(u64, i64)> {
    if let Some(s) = size_in_name(name) {
        // One statx, no open: a first SELECT of a big folder measures every file.
        let md = fs::symlink_metadata(path)?;
        if !md.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        return Ok((s, md.mtime()));
    }
    let mut f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    if let Some(s) = size_in_name(name) {
        return Ok((s, md.mtime()));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let (mut size, mut cr) = (0, false);
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok((size, md.mtime())),
            Ok(n) => size += crlf_size(&buf[..n], &mut cr),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The file of a found message.
pub fn path_of(dir: &Path, f: &Found) -> PathBuf {
    dir.join(if f.in_new { "new" } else { "cur" }).join(&f.name)
}

/// Read the list and give UIDs to the files it does not know; returns the
/// list and the files found (each with a UID in the list, unless it could
/// not be measured: those are logged and left out).
///
/// Every change found is recorded with one new modseq: new files, flags in
/// a name that differ from those the list recorded (whoever renamed it:
/// POP3, another session, another program), and listed names gone from both
/// directories (kept as tombstones for VANISHED).
///
/// The fast path (every file known with the flags recorded, every entry
/// present) takes no lock and writes nothing.
pub fn sync(dir: &Path, log: &mut dyn FnMut(&str)) -> Result<(UidList, Vec<Found>), StoreError> {
    let found = scan(dir)?;
    if let Read_::Ok(list) = read_list(dir)? {
        if up_to_date(&list, &found) {
            return Ok((list, found));
        }
    }
    let _l = lock(dir)?;
    sync_locked(dir, log)
}

/// Whether the list already says all the scan shows.
fn up_to_date(list: &UidList, found: &[Found]) -> bool {
    let mut files: HashMap<&str, &Found> = HashMap::with_capacity(found.len());
    for f in found {
        // cur/ wins over new/, as everywhere (a copy in both is a half-done move).
        if !f.in_new || !files.contains_key(f.base()) {
            files.insert(f.base(), f);
        }
    }
    files.len() == list.entries.len()
        && list
            .entries
            .iter()
            .all(|e| files.get(e.base.as_str()).is_some_and(|f| e.flags.as_deref().is_some_and(|k| same_flags(k, &f.name))))
}

/// `flags_key(name) == recorded`, without building the key for the usual
/// name whose letters are already in order (SELECT of a big folder).
fn same_flags(recorded: &str, name: &str) -> bool {
    let info = name.split_once(":2,").map_or("", |(_, i)| i);
    let b = info.as_bytes();
    if b.is_empty() {
        return recorded == "-";
    }
    if b.iter().all(u8::is_ascii_alphabetic) && b.windows(2).all(|w| w[0] < w[1]) {
        return recorded == info;
    }
    recorded == flags_key(name)
}

/// `sync` for a caller that holds the folder's lock (STORE, which renames
/// and records under it so that UNCHANGEDSINCE sees no change slip between).
pub fn sync_locked(dir: &Path, log: &mut dyn FnMut(&str)) -> Result<(UidList, Vec<Found>), StoreError> {
    // Listed again under the lock: the files another writer numbered meanwhile
    // are in the list we read now.
    let found = scan(dir)?;
    let mut dirty = true;
    let mut list = match read_list(dir)? {
        Read_::Ok(l) => {
            dirty = false;
            l
        }
        other => {
            let v = next_uidvalidity(root_of(dir))?;
            if matches!(other, Read_::Broken) {
                log(&format!(
                    "{}: UID list unreadable; rebuilt with new UIDVALIDITY {v} (clients will reload this folder)",
                    dir.join(LIST_FILE).display()
                ));
            }
            // A new UIDVALIDITY: clients drop what they knew, modseqs start again.
            UidList { uidvalidity: v, uidnext: 1, ..UidList::default() }
        }
    };
    let mut found = found;
    // readdir may miss a file renamed while it reads (another session setting
    // flags); look once more before dropping a UID, or the file would come
    // back with a new one.
    let seen: HashSet<String> = found.iter().map(|f| f.base().to_string()).collect();
    if list.entries.iter().any(|e| !seen.contains(&e.base)) {
        let again = scan(dir)?;
        found.extend(again.into_iter().filter(|f| !seen.contains(f.base())));
    }
    // One modseq for everything this look finds changed.
    let next = list.highest_modseq + 1;
    let mut bumped = false;
    let mut names: HashMap<&str, &Found> = HashMap::with_capacity(found.len());
    for f in &found {
        if !f.in_new || !names.contains_key(f.base()) {
            names.insert(f.base(), f);
        }
    }
    // Names gone from both directories are expunged: remembered as tombstones.
    let before = list.entries.len();
    let mut gone = Vec::new();
    list.entries.retain(|e| {
        let keep = names.contains_key(e.base.as_str());
        if !keep {
            gone.push((e.uid, next));
        }
        keep
    });
    if list.entries.len() != before {
        list.vanished.extend(gone);
        dirty = true;
        bumped = true;
    }
    // Flags changed by anyone since the list last looked.
    for e in &mut list.entries {
        let key = flags_key(&names[e.base.as_str()].name);
        match &e.flags {
            Some(k) if *k == key => {}
            // A version 1 list: record what is there, no change to report.
            None => {
                e.flags = Some(key);
                dirty = true;
            }
            Some(_) => {
                e.flags = Some(key);
                e.modseq = next;
                dirty = true;
                bumped = true;
            }
        }
    }
    let known: HashSet<String> = list.entries.iter().map(|e| e.base.clone()).collect();
    let mut fresh: Vec<&Found> = found.iter().filter(|f| !known.contains(f.base())).collect();
    // Seen in both new/ and cur/ (moved while we listed): cur/ is where it went.
    fresh.sort_by(|a, b| (a.base(), a.in_new).cmp(&(b.base(), b.in_new)));
    fresh.dedup_by(|a, b| a.base() == b.base());
    let mut bad = HashSet::new();
    for f in fresh {
        let p = path_of(dir, f);
        match measure(&p, &f.name) {
            Ok((size, mtime)) => {
                list.entries.push(Entry {
                    uid: list.uidnext,
                    size,
                    mtime,
                    modseq: next,
                    flags: Some(flags_key(&f.name)),
                    base: f.base().to_string(),
                });
                list.uidnext += 1;
                dirty = true;
                bumped = true;
            }
            // Moved away between the listing and now: the next look finds it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                bad.insert(f.base().to_string());
            }
            Err(e) => {
                log(&format!("skipping {}: {e}", p.display()));
                bad.insert(f.base().to_string());
            }
        }
    }
    if bumped {
        list.highest_modseq = next;
    }
    prune(&mut list);
    // Nothing new (only files that cannot be read): no rewrite, no fsync.
    if dirty {
        save(dir, &list)?;
    }
    let found = found.into_iter().filter(|f| !bad.contains(f.base())).collect();
    Ok((list, found))
}

/// Keep at most MAX_TOMBSTONES, forgetting the oldest; `pruned_modseq` says
/// up to where VANISHED can no longer be exact.
fn prune(list: &mut UidList) {
    if list.vanished.len() > MAX_TOMBSTONES {
        let cut = list.vanished.len() - MAX_TOMBSTONES;
        let top = list.vanished[..cut].iter().map(|v| v.1).max().unwrap_or(0);
        list.pruned_modseq = list.pruned_modseq.max(top);
        list.vanished.drain(..cut);
    }
}

/// Write the list (atomically, durably). Call with the lock held.
pub fn save(dir: &Path, list: &UidList) -> Result<(), StoreError> {
    let p = dir.join(LIST_FILE);
    crate::os::fs::write_atomic(&p, render(list).as_bytes(), 0o600).map_err(StoreError::io(&p))
}

/// Read the list as it is now (for writers holding the lock: COPY, APPEND).
/// A missing or broken one is rebuilt by `sync` first.
pub fn load_locked(dir: &Path, log: &mut dyn FnMut(&str)) -> Result<UidList, StoreError> {
    match read_list(dir)? {
        Read_::Ok(l) => Ok(l),
        _ => Err(StoreError::Io(dir.join(LIST_FILE), io::Error::new(io::ErrorKind::NotFound, "UID list missing"))),
    }
    .or_else(|_| {
        let v = next_uidvalidity(root_of(dir))?;
        log(&format!("{}: UID list missing or unreadable; new UIDVALIDITY {v}", dir.join(LIST_FILE).display()));
        Ok(UidList { uidvalidity: v, uidnext: 1, ..UidList::default() })
    })
}

/// Map base name -> entry index.
pub fn index(list: &UidList) -> HashMap<&str, usize> {
    list.entries.iter().enumerate().map(|(i, e)| (e.base.as_str(), i)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn maildir(root: &Path) {
        for s in ["tmp", "new", "cur"] {
            fs::create_dir_all(root.join(s)).unwrap();
        }
    }

    /// A fresh scratch Maildir (for POP3's tests too).
    pub fn maildir_at(tag: &str) -> std::path::PathBuf {
        let d = crate::testing::scratch_dir(tag);
        maildir(&d);
        d
    }

    #[test]
    fn new_files_get_uids_in_name_order_and_keep_them_when_renamed() {
        let d = crate::testing::scratch_dir("uidlist-order");
        maildir(&d);
        fs::write(d.join("new/200.M1P1Q1.h,S=3,W=4"), b"b\nc").unwrap();
        fs::write(d.join("cur/100.M1P1Q1.h:2,S"), b"a\n").unwrap();
        let mut log = |l: &str| panic!("unexpected log {l}");
        let (l, found) = sync(&d, &mut log).unwrap();
        assert_eq!(l.uidnext, 3);
        assert_eq!(found.len(), 2);
        let uid = |l: &UidList, b: &str| l.entries.iter().find(|e| e.base == b).map(|e| e.uid);
        assert_eq!(uid(&l, "100.M1P1Q1.h"), Some(1));
        assert_eq!(uid(&l, "200.M1P1Q1.h"), Some(2));
        assert_eq!(l.entries[0].size, 3, "counted with CRLF");
        assert_eq!(l.entries[1].size, 4, "from ,W=");
        assert_eq!((l.highest_modseq, l.entries[0].modseq, l.entries[1].modseq), (1, 1, 1), "one look, one modseq");
        // POP3 moves new -> cur: same UIDs, no rewrite.
        fs::rename(d.join("new/200.M1P1Q1.h,S=3,W=4"), d.join("cur/200.M1P1Q1.h,S=3,W=4:2,")).unwrap();
        let before = fs::metadata(d.join(LIST_FILE)).unwrap().ino();
        let (l2, _) = sync(&d, &mut log).unwrap();
        assert_eq!(l2, l);
        assert_eq!(fs::metadata(d.join(LIST_FILE)).unwrap().ino(), before, "fast path writes nothing");
        // Another program sets flags: same UID, a new modseq for that one only.
        fs::rename(d.join("cur/200.M1P1Q1.h,S=3,W=4:2,"), d.join("cur/200.M1P1Q1.h,S=3,W=4:2,SF")).unwrap();
        let (l2, _) = sync(&d, &mut log).unwrap();
        assert_eq!((l2.highest_modseq, l2.entries[0].modseq, l2.entries[1].modseq), (2, 1, 2));
        assert_eq!(l2.entries[1].flags.as_deref(), Some("FS"), "letters in any order mean the same");
        assert_eq!(sync(&d, &mut log).unwrap().0, l2, "recorded once");
        // Expunged by POP3, then a new one: UIDs never reused.
        fs::remove_file(d.join("cur/100.M1P1Q1.h:2,S")).unwrap();
        fs::write(d.join("new/050.M1P1Q1.h"), b"x").unwrap();
        let (l3, found) = sync(&d, &mut log).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(uid(&l3, "050.M1P1Q1.h"), Some(3), "an older name found later still gets the next UID");
        assert_eq!(uid(&l3, "100.M1P1Q1.h"), None);
        assert_eq!(l3.uidvalidity, l.uidvalidity);
        // The expunge and the arrival: one new modseq, and a tombstone.
        assert_eq!(l3.highest_modseq, 3);
        assert_eq!(l3.vanished, vec![(1, 3)]);
        assert_eq!(l3.entries.iter().find(|e| e.uid == 3).map(|e| e.modseq), Some(3));
        // It all survives a reread (restart) as written.
        assert_eq!(parse(&render(&l3)), Some(l3.clone()));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn broken_or_missing_list_is_rebuilt_with_a_larger_uidvalidity() {
        let d = crate::testing::scratch_dir("uidlist-broken");
        maildir(&d);
        fs::write(d.join("cur/1.a:2,"), b"x").unwrap();
        let (l1, _) = sync(&d, &mut |_| {}).unwrap();
        fs::write(d.join(LIST_FILE), b"postern-uidlist 1 7 2\n5 1 1 1.a\n").unwrap();
        let mut logged = Vec::new();
        let (l2, _) = sync(&d, &mut |l| logged.push(l.to_string())).unwrap();
        assert!(l2.uidvalidity > l1.uidvalidity, "{} > {}", l2.uidvalidity, l1.uidvalidity);
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(logged[0].contains("postern-uidlist") && logged[0].contains("UIDVALIDITY"), "{}", logged[0]);
        fs::remove_file(d.join(LIST_FILE)).unwrap();
        let (l3, found) = sync(&d, &mut |_| {}).unwrap();
        assert!(l3.uidvalidity > l2.uidvalidity);
        assert_eq!((l3.entries.len(), found.len(), l3.uidnext), (1, 1, 2));
        for bad in ["", "postern-uidlist 1 0 1\n", "postern-uidlist 1 5 2\n2 1 1 a\n", "postern-uidlist 1 5 9\n3 1 1 a\n2 1 1 b\n", "junk"]
        {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn flag_keys_ignore_order_and_non_letters() {
        for (name, key) in
            [("a", "-"), ("a:2,", "-"), ("a:2,S", "S"), ("a:2,SF", "FS"), ("a:2,FFS", "FS"), ("a:2,Sa", "Sa"), ("a:2,S,x", "Sx")]
        {
            assert_eq!(flags_key(name), key, "{name}");
            assert!(same_flags(key, name), "{name}");
            assert!(!same_flags("T", name), "{name}");
        }
    }

    #[test]
    fn version_1_lists_are_upgraded_keeping_uids() {
        let d = crate::testing::scratch_dir("uidlist-v1");
        maildir(&d);
        fs::write(d.join("cur/1.a:2,S"), b"x").unwrap();
        fs::write(d.join("cur/2.b:2,"), b"y").unwrap();
        fs::write(d.join(LIST_FILE), b"postern-uidlist 1 77 9\n4 1 5 1.a\n8 1 5 2.b\n").unwrap();
        let (l, _) = sync(&d, &mut |l| panic!("{l}")).unwrap();
        assert_eq!((l.uidvalidity, l.uidnext, l.highest_modseq), (77, 9, 1));
        assert_eq!(
            l.entries.iter().map(|e| (e.uid, e.modseq, e.flags.clone().unwrap())).collect::<Vec<_>>(),
            vec![(4, 1, "S".into()), (8, 1, "-".into())]
        );
        assert!(fs::read_to_string(d.join(LIST_FILE)).unwrap().starts_with("postern-uidlist 2 77 9 1 0\n"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_rebuilt_list_restarts_modseqs_and_forgets_tombstones() {
        let d = crate::testing::scratch_dir("uidlist-rebuild");
        maildir(&d);
        for i in 0..3 {
            fs::write(d.join(format!("new/{i}.x")), b"m").unwrap();
            sync(&d, &mut |_| {}).unwrap();
        }
        fs::remove_file(d.join("new/0.x")).unwrap();
        let (l, _) = sync(&d, &mut |_| {}).unwrap();
        assert_eq!((l.highest_modseq, l.vanished.clone()), (4, vec![(1, 4)]));
        fs::write(d.join(LIST_FILE), b"postern-uidlist 2 5 9 3 0\n1 1 1 9 - a\n").unwrap();
        let (r, _) = sync(&d, &mut |_| {}).unwrap();
        assert!(r.uidvalidity > l.uidvalidity);
        assert_eq!((r.highest_modseq, r.pruned_modseq, r.vanished.len()), (1, 0, 0));
        assert!(r.entries.iter().all(|e| e.modseq == 1));
        for bad in [
            "postern-uidlist 2 5 9 3\n",
            "postern-uidlist 2 5 9 3 4\n",
            "postern-uidlist 2 5 9 3 0\nX 1 4\n",
            "postern-uidlist 2 5 9 3 0\nX 1 2\n1 1 1 1 - a\n",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn tombstones_are_bounded_and_say_where_they_stop() {
        let mut l = UidList { uidvalidity: 1, uidnext: 10_000, highest_modseq: 9000, ..UidList::default() };
        l.vanished = (1..=MAX_TOMBSTONES as u32 + 10).map(|u| (u, u as u64)).collect();
        prune(&mut l);
        assert_eq!(l.vanished.len(), MAX_TOMBSTONES);
        assert_eq!(l.pruned_modseq, 10);
        assert_eq!(l.vanished[0], (11, 11));
        assert_eq!(parse(&render(&l)), Some(l));
    }

    #[test]
    fn two_writers_at_once_never_give_one_uid_twice() {
        let d = crate::testing::scratch_dir("uidlist-race");
        maildir(&d);
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for i in 0..40 {
                        fs::write(d.join(format!("new/{i:03}.T{t}.h")), b"m\n").unwrap();
                        sync(&d, &mut |_| {}).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (l, found) = sync(&d, &mut |_| {}).unwrap();
        assert_eq!(found.len(), 80);
        assert_eq!(l.entries.len(), 80);
        let uids: HashSet<u32> = l.entries.iter().map(|e| e.uid).collect();
        assert_eq!(uids.len(), 80);
        assert_eq!(l.uidnext, 81);
        fs::remove_dir_all(&d).unwrap();
    }

    /// The same race between processes: the test runs itself twice as children.
    #[test]
    fn two_processes_at_once_never_give_one_uid_twice() {
        const CHILD: &str = "POSTERN_UIDLIST_CHILD";
        if let Ok(dir) = std::env::var(CHILD) {
            let d = PathBuf::from(dir);
            let tag = std::process::id();
            for i in 0..30 {
                fs::write(d.join(format!("new/{i:03}.P{tag}.h")), b"m\n").unwrap();
                sync(&d, &mut |_| {}).unwrap();
            }
            return;
        }
        let d = crate::testing::scratch_dir("uidlist-procs");
        maildir(&d);
        let exe = std::env::current_exe().unwrap();
        let kids: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(["--exact", "imap::uidlist::tests::two_processes_at_once_never_give_one_uid_twice", "--test-threads=1"])
                    .env(CHILD, &d)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut k in kids {
            assert!(k.wait().unwrap().success());
        }
        let (l, found) = sync(&d, &mut |_| {}).unwrap();
        assert_eq!((found.len(), l.entries.len(), l.uidnext), (60, 60, 61));
        let uids: HashSet<u32> = l.entries.iter().map(|e| e.uid).collect();
        assert_eq!(uids.len(), 60);
        fs::remove_dir_all(&d).unwrap();
    }
}
