//! A selected folder: the session's numbered list of messages, and the
//! operations that change it (STORE, EXPUNGE, APPEND, COPY, MOVE, STATUS).
//!
//! - Flags live in the file names: `BASE,S=n,W=n:2,DFRST` with the system
//!   flags in ASCII order, then keyword letters `a`..`z`; `postern-keywords`
//!   in the folder maps each letter to its keyword (`a $Forwarded`), as
//!   Dovecot's `dovecot-keywords` does. A letter, once given, keeps its
//!   keyword (a folder holds at most 26).
//! - \Recent is "found in new/": a read-write session moves new/ to cur/ and
//!   the messages it moved are recent to it alone. EXAMINE moves nothing.
//! - The session's list changes only in `rescan` and in its own EXPUNGE and
//!   MOVE; files POP3 or another session removed are expunges, renamed ones
//!   flag changes (see `uidlist` for why UIDs survive both).
//! - Nothing here takes POP3's lock (`pop3::mailbox::LOCK_FILE`): IMAP and
//!   POP3 share the Maildir, each seeing the other's changes as they happen.
//! - APPEND writes tmp/, fsyncs, links into cur/ and fsyncs cur/, as delivery
//!   does; COPY hard-links (the file never changes) and MOVE renames, so a
//!   message is never lost half-way.

use super::folders::Store;
use super::types::{Flag, SeqSet, StoreOp};
use super::uidlist::{self, Found};
use super::StoreError;
use crate::maildir::name::{crlf_size, uidl_of, unique};
use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// One message as the session sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub uid: u32,
    /// The file's name in cur/ (or new/ if `in_new`).
    pub name: String,
    pub in_new: bool,
    /// System flags, bits of `SEEN`.. `DRAFT`.
    pub flags: u8,
    /// Keyword letters a..z as bits 0..25 (see `Mailbox::keyword_names`).
    pub keywords: u32,
    /// RFC822.SIZE: octets with every bare LF counted as CR LF.
    pub size: u64,
    /// INTERNALDATE: the file's mtime, seconds since the epoch.
    pub internal_date: i64,
    /// \Recent: this session is the first to see it.
    pub recent: bool,
    /// CONDSTORE MODSEQ, from the UID list.
    pub modseq: u64,
}

pub const SEEN: u8 = 1;
pub const ANSWERED: u8 = 2;
pub const FLAGGED: u8 = 4;
pub const DELETED: u8 = 8;
pub const DRAFT: u8 = 16;

/// Maildir letters in ASCII order, with their bits.
const LETTERS: [(char, u8); 5] = [('D', DRAFT), ('F', FLAGGED), ('R', ANSWERED), ('S', SEEN), ('T', DELETED)];
pub const KEYWORDS_FILE: &str = "postern-keywords";
const MAX_KEYWORDS: usize = 26;

impl Message {
    /// A message as the UID list and its file's name give it.
    fn listed(e: &uidlist::Entry, f: &uidlist::Found, recent: bool) -> Message {
        let (flags, keywords) = parse_info(&f.name);
        Message {
            uid: e.uid,
            name: f.name.clone(),
            in_new: f.in_new,
            flags,
            keywords,
            size: e.size,
            internal_date: e.mtime,
            recent,
            modseq: e.modseq,
        }
    }

    pub fn has(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }

    /// The base name (the part that never changes).
    pub fn base(&self) -> &str {
        uidl_of(&self.name)
    }
}

/// System flags and keyword bits from a Maildir name's `:2,` info.
pub fn parse_info(name: &str) -> (u8, u32) {
    let Some((_, info)) = name.split_once(":2,") else { return (0, 0) };
    let (mut f, mut k) = (0, 0);
    for c in info.chars() {
        if let Some((_, b)) = LETTERS.iter().find(|(l, _)| *l == c) {
            f |= b;
        } else if c.is_ascii_lowercase() {
            k |= 1 << (c as u32 - 'a' as u32);
        }
    }
    (f, k)
}

/// The file name with these flags: the part before ':' kept, `:2,` info
/// rebuilt in ASCII order.
pub fn with_info(name: &str, flags: u8, keywords: u32) -> String {
    let head = name.split(':').next().unwrap_or(name);
    let mut s = format!("{head}:2,");
    for (c, b) in LETTERS {
        if flags & b != 0 {
            s.push(c);
        }
    }
    for i in 0..MAX_KEYWORDS as u32 {
        if keywords & (1 << i) != 0 {
            s.push((b'a' + i as u8) as char);
        }
    }
    s
}

fn bit_of(f: &Flag) -> u8 {
    match f {
        Flag::Seen => SEEN,
        Flag::Answered => ANSWERED,
        Flag::Flagged => FLAGGED,
        Flag::Deleted => DELETED,
        Flag::Draft => DRAFT,
        _ => 0,
    }
}

/// What `rescan` found since the last look, for NOOP, IDLE and the end of
/// each command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Sequence numbers to send as `* n EXPUNGE`, in this order (highest
    /// first, so none needs adjusting for the ones before it).
    pub expunged: Vec<u32>,
    /// The new message count if it changed (`* n EXISTS`), else None.
    pub exists: Option<u32>,
    /// Sequence numbers (after the expunges) whose flags another session or
    /// POP3 changed: send `* n FETCH (FLAGS ...)`.
    pub flags: Vec<u32>,
    /// The UIDs of `expunged`, ascending (QRESYNC's `* VANISHED`).
    pub vanished: Vec<u32>,
}

/// Messages EXPUNGE or MOVE removed from the session's list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expunged {
    /// Sequence numbers for `* n EXPUNGE`, highest first.
    pub msns: Vec<u32>,
    /// Their UIDs, ascending, for `* VANISHED`.
    pub uids: Vec<u32>,
}

/// The UIDs COPY or MOVE gave the copies (UIDPLUS COPYUID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyUids {
    pub uidvalidity: u32,
    /// (source UID, destination UID), in source UID order.
    pub pairs: Vec<(u32, u32)>,
}

/// STATUS of a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub messages: u32,
    /// Messages still in new/.
    pub recent: u32,
    pub uidnext: u32,
    pub uidvalidity: u32,
    pub unseen: u32,
    /// Sum of RFC822.SIZE.
    pub size: u64,
    pub highest_modseq: u64,
}

/// A selected folder.
pub struct Mailbox {
    pub dir: PathBuf,
    /// The folder's canonical name (mUTF-7), `INBOX` for the Maildir.
    pub name: String,
    pub read_only: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    messages: Vec<Message>,
    keywords: Vec<String>,
    /// UIDs whose files vanished while expunges could not be reported.
    gone: HashSet<u32>,
    /// The folder's HIGHESTMODSEQ as last read.
    pub highest_modseq: u64,
    /// Tombstones and how far they are exact (see `uidlist::UidList`).
    vanished: Vec<(u32, u64)>,
    pruned_modseq: u64,
}

fn read_keywords(dir: &Path) -> Result<Vec<String>, StoreError> {
    let p = dir.join(KEYWORDS_FILE);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::Io(p, e)),
    };
    let mut out = vec![String::new(); MAX_KEYWORDS];
    for l in text.lines() {
        let mut it = l.splitn(2, ' ');
        let (Some(letter), Some(kw)) = (it.next(), it.next()) else { continue };
        let b = letter.as_bytes();
        if b.len() == 1 && b[0].is_ascii_lowercase() && Flag::parse(kw.as_bytes()).is_ok() {
            out[(b[0] - b'a') as usize] = kw.to_string();
        }
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    Ok(out)
}

/// Letters for the keywords, adding unknown ones to the folder's file
/// (under the folder's list lock, rereading the file first).
fn keyword_bits(dir: &Path, names: &[&str], known: &mut Vec<String>) -> Result<u32, StoreError> {
    if names.iter().all(|n| find_keyword(known, n).is_some()) {
        return Ok(names.iter().filter_map(|n| find_keyword(known, n)).fold(0, |acc, i| acc | 1 << i));
    }
    let _l = uidlist::lock(dir)?;
    *known = read_keywords(dir)?;
    keyword_bits_locked(dir, names, known)
}

fn find_keyword(known: &[String], n: &str) -> Option<usize> {
    known.iter().position(|k| !k.is_empty() && k.eq_ignore_ascii_case(n))
}

/// Move every file in new/ to cur/ (adding `:2,`); returns the base names moved.
fn claim_new(dir: &Path, log: &mut dyn FnMut(&str)) -> HashSet<String> {
    let mut moved = HashSet::new();
    let Ok(rd) = fs::read_dir(dir.join("new")) else { return moved };
    for e in rd.flatten() {
        let Ok(name) = e.file_name().into_string() else { continue };
        if name.starts_with('.') || !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let to = if name.contains(':') { name.clone() } else { format!("{name}:2,") };
        match fs::rename(e.path(), dir.join("cur").join(&to)) {
            Ok(()) => {
                moved.insert(uidl_of(&name).to_string());
            }
            // POP3 or another session took it first.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => log(&format!("cannot move {} to cur/: {err}", e.path().display())),
        }
    }
    moved
}

/// base -> file, cur/ preferred over new/ (a copy in both is a half-done move).
fn by_base(found: Vec<Found>) -> HashMap<String, Found> {
    let mut m: HashMap<String, Found> = HashMap::with_capacity(found.len());
    for f in found {
        let b = f.base().to_string();
        match m.get(&b) {
            Some(old) if !old.in_new => {}
            _ => {
                m.insert(b, f);
            }
        }
    }
    m
}

impl Mailbox {
    /// SELECT (read-write) or EXAMINE (read_only). Reads the UID list, gives
    /// UIDs to new files (and, read-write, moves new/ to cur/ marking them
    /// \Recent). `log` receives a line per skipped file or rebuilt list.
    pub fn open(store: &Store, name: &str, read_only: bool, log: &mut dyn FnMut(&str)) -> Result<Mailbox, StoreError> {
        let canonical = store.canonical(name)?;
        let dir = store.existing(&canonical)?;
        let recent = if read_only { HashSet::new() } else { claim_new(&dir, log) };
        let (list, found) = uidlist::sync(&dir, log)?;
        let files = by_base(found);
        let mut messages = Vec::with_capacity(list.entries.len());
        for e in &list.entries {
            if let Some(f) = files.get(&e.base) {
                messages.push(Message::listed(e, f, recent.contains(&e.base)));
            }
        }
        Ok(Mailbox {
            highest_modseq: list.highest_modseq,
            vanished: list.vanished,
            pruned_modseq: list.pruned_modseq,
            keywords: read_keywords(&dir)?,
            dir,
            name: canonical,
            read_only,
            uidvalidity: list.uidvalidity,
            uidnext: list.uidnext,
            messages,
            gone: HashSet::new(),
        })
    }

    /// The messages, in sequence number order (MSN n is `messages()[n-1]`).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Whether another session or POP3 removed this message's file (it stays
    /// listed until an expunge can be reported; FETCH of its body fails).
    pub fn is_gone(&self, uid: u32) -> bool {
        self.gone.contains(&uid)
    }

    /// Flags of a message as FETCH FLAGS lists them (system flags, keywords, \Recent).
    pub fn flags_of(&self, m: &Message) -> Vec<Flag> {
        let mut out: Vec<Flag> =
            [(SEEN, Flag::Seen), (ANSWERED, Flag::Answered), (FLAGGED, Flag::Flagged), (DELETED, Flag::Deleted), (DRAFT, Flag::Draft)]
                .into_iter()
                .filter(|(b, _)| m.flags & b != 0)
                .map(|(_, f)| f)
                .collect();
        for (i, k) in self.keywords.iter().enumerate() {
            if m.keywords & (1 << i) != 0 && !k.is_empty() {
                out.push(Flag::Keyword(k.clone()));
            }
        }
        if m.recent {
            out.push(Flag::Recent);
        }
        out
    }

    /// `(\Seen $Label)`: flags_of as FETCH writes them.
    pub fn flags_text(&self, m: &Message) -> String {
        let fs: Vec<String> = self.flags_of(m).iter().map(Flag::to_string).collect();
        format!("({})", fs.join(" "))
    }

    /// The keywords this folder knows, by letter index (for FLAGS,
    /// PERMANENTFLAGS and SEARCH); an empty string is an unused letter.
    pub fn keyword_names(&self) -> Vec<String> {
        self.keywords.clone()
    }

    /// UIDs of the messages a set names: MSNs if `by_uid` is false, else UIDs
    /// (`*` is the last message's). Ascending.
    pub fn resolve(&self, set: &SeqSet, by_uid: bool) -> Vec<u32> {
        if by_uid {
            let max = self.messages.last().map_or(0, |m| m.uid);
            self.messages.iter().filter(|m| set.contains(m.uid, max)).map(|m| m.uid).collect()
        } else {
            let max = self.messages.len() as u32;
            self.messages.iter().enumerate().filter(|(i, _)| set.contains(*i as u32 + 1, max)).map(|(_, m)| m.uid).collect()
        }
    }

    fn index(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// MSN of a UID.
    pub fn msn(&self, uid: u32) -> Option<u32> {
        self.index(uid).map(|i| i as u32 + 1)
    }

    /// The message with this UID.
    pub fn get(&self, uid: u32) -> Option<&Message> {
        self.index(uid).map(|i| &self.messages[i])
    }

    /// The message's file.
    pub fn path(&self, m: &Message) -> PathBuf {
        self.dir.join(if m.in_new { "new" } else { "cur" }).join(&m.name)
    }

    /// Find a message's file again after someone renamed it; updates the name.
    fn refind(&mut self, i: usize) -> Result<bool, StoreError> {
        let base = self.messages[i].base().to_string();
        let files = by_base(uidlist::scan(&self.dir)?);
        Ok(match files.get(&base) {
            Some(f) => {
                self.messages[i].name = f.name.clone();
                self.messages[i].in_new = f.in_new;
                true
            }
            None => false,
        })
    }

    /// Where message i's file is now, if someone renamed it (flags, new/ to cur/).
    fn locate(&self, i: usize) -> Result<Option<PathBuf>, StoreError> {
        let base = self.messages[i].base();
        let files = by_base(uidlist::scan(&self.dir)?);
        Ok(files.get(base).map(|f| uidlist::path_of(&self.dir, f)))
    }

    /// The message's bytes, memory-mapped (the file never changes, only its
    /// name; a rename by another session is followed).
    pub fn read(&self, uid: u32) -> Result<memmap2::Mmap, StoreError> {
        let i = self.index(uid).ok_or(StoreError::Gone(uid))?;
        let open = |p: &Path| OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(p);
        let p = self.path(&self.messages[i]);
        let f = match open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let p = self.locate(i)?.ok_or(StoreError::Gone(uid))?;
                open(&p)
                    .map_err(|e| if e.kind() == io::ErrorKind::NotFound { StoreError::Gone(uid) } else { StoreError::Io(p.clone(), e) })?
            }
            Err(e) => return Err(StoreError::Io(p, e)),
        };
        crate::os::sys::map_file(&f).map_err(StoreError::io(&p))
    }

    /// Look again: new files get UIDs, renamed ones update flags, vanished ones
    /// are expunges. With `expunge_ok` false (during FETCH, STORE, SEARCH) the
    /// vanished stay listed so sequence numbers hold, and are reported later.
    ///
    /// A folder another session deleted or renamed gives `NoFolder` (the
    /// session ends with BYE or unselects; its messages are not expunged).
    pub fn rescan(&mut self, expunge_ok: bool, log: &mut dyn FnMut(&str)) -> Result<Changes, StoreError> {
        if !self.dir.join("cur").is_dir() {
            return Err(StoreError::NoFolder(self.name.clone()));
        }
        let recent = if self.read_only { HashSet::new() } else { claim_new(&self.dir, log) };
        let (list, found) = uidlist::sync(&self.dir, log)?;
        let mut files = by_base(found);
        // A file renamed while we listed may be missed by readdir; look once
        // more before calling anything expunged.
        if self.messages.iter().any(|m| !files.contains_key(m.base()) && !self.gone.contains(&m.uid)) {
            for (b, f) in by_base(uidlist::scan(&self.dir)?) {
                files.entry(b).or_insert(f);
            }
        }
        self.uidvalidity = list.uidvalidity;
        self.uidnext = list.uidnext;
        self.highest_modseq = list.highest_modseq;
        self.pruned_modseq = list.pruned_modseq;
        self.vanished = list.vanished.clone();
        let entries = uidlist::index(&list);
        let mut changed = Vec::new();
        for m in &mut self.messages {
            match files.get(m.base()) {
                Some(f) => {
                    // A change undone since the last look still has a new modseq.
                    if let Some(&i) = entries.get(m.base()) {
                        if list.entries[i].modseq != m.modseq {
                            m.modseq = list.entries[i].modseq;
                            changed.push(m.uid);
                        }
                    }
                    if f.name != m.name || f.in_new != m.in_new {
                        let (flags, kw) = parse_info(&f.name);
                        if (flags, kw) != (m.flags, m.keywords) && changed.last() != Some(&m.uid) {
                            changed.push(m.uid);
                        }
                        m.name = f.name.clone();
                        m.in_new = f.in_new;
                        m.flags = flags;
                        m.keywords = kw;
                    }
                }
                None => {
                    self.gone.insert(m.uid);
                }
            }
        }
        if !changed.is_empty() {
            // A keyword letter another session added.
            self.keywords = read_keywords(&self.dir)?;
        }
        let mut ch = Changes::default();
        let before = self.messages.len();
        if expunge_ok && !self.gone.is_empty() {
            let x = self.drop_gone();
            ch.expunged = x.msns;
            ch.vanished = x.uids;
        }
        let max = self.messages.last().map_or(0, |m| m.uid);
        for e in list.entries.iter().filter(|e| e.uid > max) {
            if let Some(f) = files.get(&e.base) {
                self.messages.push(Message::listed(e, f, recent.contains(&e.base)));
            }
        }
        if self.messages.len() != before || !ch.expunged.is_empty() {
            ch.exists = Some(self.messages.len() as u32);
        }
        ch.flags = changed.iter().filter_map(|&u| self.msn(u)).collect();
        Ok(ch)
    }

    /// Remove the vanished from the list.
    fn drop_gone(&mut self) -> Expunged {
        let mut x = Expunged::default();
        for i in (0..self.messages.len()).rev() {
            if self.gone.remove(&self.messages[i].uid) {
                x.msns.push(i as u32 + 1);
                x.uids.push(self.messages[i].uid);
                self.messages.remove(i);
            }
        }
        self.gone.clear();
        x.uids.reverse();
        x
    }

    /// Take the modseqs (and HIGHESTMODSEQ) the list now gives the
    /// session's messages, after a change made here was recorded.
    fn refresh_modseqs(&mut self, list: &uidlist::UidList) {
        let entries = uidlist::index(list);
        for m in &mut self.messages {
            if let Some(&i) = entries.get(m.base()) {
                m.modseq = list.entries[i].modseq;
            }
        }
        self.highest_modseq = list.highest_modseq;
        self.vanished = list.vanished.clone();
        self.pruned_modseq = list.pruned_modseq;
    }

    /// The UIDs expunged after `modseq` (QRESYNC), as ranges, limited to
    /// `within` if given. When tombstones that old were pruned, every UID
    /// below UIDNEXT that the folder no longer holds is named instead (RFC
    /// 7162 lets VANISHED (EARLIER) name more than was expunged; clients
    /// ignore UIDs they do not know).
    pub fn vanished_since(&self, modseq: u64, within: Option<&SeqSet>) -> Vec<(u32, u32)> {
        let max = self.uidnext.saturating_sub(1);
        let ok = |u: u32| within.is_none_or(|s| s.contains(u, max)) && self.index(u).is_none();
        if modseq >= self.pruned_modseq {
            let mut uids: Vec<u32> = self.vanished.iter().filter(|v| v.1 > modseq && ok(v.0)).map(|v| v.0).collect();
            uids.sort_unstable();
            uids.dedup();
            return ranges(&uids);
        }
        // Absent UIDs: the gaps between the messages held, cut to `within`.
        let mut gaps = Vec::new();
        let mut next = 1u32;
        for m in &self.messages {
            if m.uid > next {
                gaps.push((next, m.uid - 1));
            }
            next = m.uid + 1;
        }
        if next <= max {
            gaps.push((next, max));
        }
        let Some(set) = within else { return gaps };
        let mut out = Vec::new();
        for &(a, z) in &set.0 {
            let (a, z) = (a.value(max), z.value(max));
            let (lo, hi) = if a <= z { (a, z) } else { (z, a) };
            for &(g0, g1) in &gaps {
                let (x, y) = (g0.max(lo), g1.min(hi));
                if x <= y && x > 0 {
                    out.push((x, y));
                }
            }
        }
        out.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for r in out {
            match merged.last_mut() {
                Some(l) if r.0 <= l.1.saturating_add(1) => l.1 = l.1.max(r.1),
                _ => merged.push(r),
            }
        }
        merged
    }

    /// STORE: change flags of the messages (renaming their files). Returns the
    /// UIDs whose flags changed. \Recent is ignored; messages another session
    /// expunged meanwhile are skipped.
    pub fn store_flags(&mut self, uids: &[u32], op: StoreOp, flags: &[Flag]) -> Result<Vec<u32>, StoreError> {
        Ok(self.store_flags_if(uids, op, flags, None)?.0)
    }

    /// STORE with CONDSTORE's UNCHANGEDSINCE: messages whose modseq is above
    /// it are left alone and returned second (the MODIFIED code). The renames
    /// and the new modseq are made under the folder's list lock, after
    /// recording any change made elsewhere, so two sessions' conditional
    /// STOREs cannot both pass. Returns (changed, modified).
    pub fn store_flags_if(
        &mut self,
        uids: &[u32],
        op: StoreOp,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Result<(Vec<u32>, Vec<u32>), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly(self.name.clone()));
        }
        let bits = flags.iter().fold(0u8, |a, f| a | bit_of(f));
        let names: Vec<&str> = flags.iter().filter_map(|f| if let Flag::Keyword(k) = f { Some(k.as_str()) } else { None }).collect();
        let kw = if op == StoreOp::Remove {
            let mut found = 0;
            for n in &names {
                if let Some(i) = self.keywords.iter().position(|k| !k.is_empty() && k.eq_ignore_ascii_case(n)) {
                    found |= 1 << i;
                }
            }
            found
        } else {
            keyword_bits(&self.dir, &names, &mut self.keywords)?
        };
        let _l = uidlist::lock(&self.dir)?;
        let mut modified = Vec::new();
        if let Some(limit) = unchanged_since {
            let (list, _) = uidlist::sync_locked(&self.dir, &mut |_| {})?;
            self.refresh_modseqs(&list);
            for &uid in uids {
                if self.get(uid).is_some_and(|m| m.modseq > limit) {
                    modified.push(uid);
                }
            }
        }
        let mut changed = Vec::new();
        let mut renamed = false;
        for &uid in uids {
            let Some(i) = self.index(uid) else { continue };
            if self.gone.contains(&uid) || modified.contains(&uid) {
                continue;
            }
            let m = &self.messages[i];
            let (nf, nk) = match op {
                StoreOp::Add => (m.flags | bits, m.keywords | kw),
                StoreOp::Remove => (m.flags & !bits, m.keywords & !kw),
                StoreOp::Replace => (bits, kw),
            };
            if (nf, nk) == (m.flags, m.keywords) && !m.in_new {
                continue;
            }
            if self.rename_flags(i, nf, nk)? {
                renamed = true;
                if (nf, nk) != (self.messages[i].flags, self.messages[i].keywords) {
                    changed.push(uid);
                }
                self.messages[i].flags = nf;
                self.messages[i].keywords = nk;
            }
        }
        if renamed {
            // Recorded now, with a new modseq, while no other STORE can run.
            let (list, _) = uidlist::sync_locked(&self.dir, &mut |_| {})?;
            self.refresh_modseqs(&list);
        }
        Ok((changed, modified))
    }

    /// Rename message i's file for new flags (into cur/). False if it is gone.
    fn rename_flags(&mut self, i: usize, flags: u8, kw: u32) -> Result<bool, StoreError> {
        for attempt in 0..2 {
            let from = self.path(&self.messages[i]);
            let to_name = with_info(&self.messages[i].name, flags, kw);
            let to = self.dir.join("cur").join(&to_name);
            match fs::rename(&from, &to) {
                Ok(()) => {
                    self.messages[i].name = to_name;
                    self.messages[i].in_new = false;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt == 0 => {
                    if !self.refind(i)? {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(StoreError::Io(from, e)),
            }
        }
        Ok(false)
    }

    /// EXPUNGE (uids None) or UID EXPUNGE: remove the \Deleted messages (and
    /// drop those others removed). Returns the sequence numbers to send as
    /// `* n EXPUNGE`, highest first.
    pub fn expunge(&mut self, uids: Option<&[u32]>) -> Result<Expunged, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly(self.name.clone()));
        }
        let wanted: Option<HashSet<u32>> = uids.map(|u| u.iter().copied().collect());
        let doomed: Vec<usize> = (0..self.messages.len())
            .filter(|&i| {
                let m = &self.messages[i];
                m.has(DELETED) && wanted.as_ref().is_none_or(|w| w.contains(&m.uid))
            })
            .collect();
        for i in doomed {
            let uid = self.messages[i].uid;
            let p = self.path(&self.messages[i]);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Renamed (flags) by another session: remove it under its new name.
                    if self.refind(i)? {
                        let p = self.path(&self.messages[i]);
                        match fs::remove_file(&p) {
                            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(StoreError::Io(p, e)),
                            _ => {}
                        }
                    }
                }
                Err(e) => return Err(StoreError::Io(p, e)),
            }
            self.gone.insert(uid);
        }
        self.record_expunges()?;
        Ok(self.drop_gone())
    }

    /// Give the expunges just made their tombstones and modseq now.
    fn record_expunges(&mut self) -> Result<(), StoreError> {
        let (list, _) = uidlist::sync(&self.dir, &mut |_| {})?;
        self.refresh_modseqs(&list);
        Ok(())
    }

    /// COPY to another folder (hard links, flags and internal date kept).
    pub fn copy(&self, store: &Store, uids: &[u32], dest: &str) -> Result<CopyUids, StoreError> {
        Ok(self.transfer(store, uids, dest, false)?.0)
    }

    /// MOVE: each file renamed into the other folder (never in both, never in
    /// neither). Returns the COPYUID and the sequence numbers to send as
    /// `* n EXPUNGE`.
    pub fn move_to(&mut self, store: &Store, uids: &[u32], dest: &str) -> Result<(CopyUids, Expunged), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly(self.name.clone()));
        }
        let (c, moved) = self.transfer(store, uids, dest, true)?;
        self.gone.extend(moved);
        self.record_expunges()?;
        Ok((c, self.drop_gone()))
    }

    /// Link (or, moving, rename) the messages into `dest`; the COPYUID and the UIDs moved.
    fn transfer(&self, store: &Store, uids: &[u32], dest: &str, moving: bool) -> Result<(CopyUids, Vec<u32>), StoreError> {
        let ddir = store.existing(dest)?;
        let mut log = |_: &str| {};
        // Numbers what is waiting there, so our copies follow it.
        uidlist::sync(&ddir, &mut log)?;
        let _l = uidlist::lock(&ddir)?;
        let mut dkw = read_keywords(&ddir)?;
        let mut list = uidlist::load_locked(&ddir, &mut log)?;
        let (mut pairs, mut moved) = (Vec::new(), Vec::new());
        let mut result = Ok(());
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        for uid in sorted {
            let Some(i) = self.index(uid) else { continue };
            if self.gone.contains(&uid) {
                continue;
            }
            let m = self.messages[i].clone();
            let names: Vec<String> =
                self.flags_of(&m).into_iter().filter_map(|f| if let Flag::Keyword(k) = f { Some(k) } else { None }).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let kw = match keyword_bits_locked(&ddir, &refs, &mut dkw) {
                Ok(k) => k,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let mut src = self.path(&m);
            let file_size = match fs::metadata(&src) {
                Ok(md) => md.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => match self.locate(i)? {
                    Some(p) => {
                        src = p;
                        fs::metadata(&src).map(|md| md.len()).unwrap_or(0)
                    }
                    None => continue,
                },
                Err(e) => {
                    result = Err(StoreError::Io(src, e));
                    break;
                }
            };
            let base = unique();
            let name = with_info(&format!("{base},S={file_size},W={}", m.size), m.flags, kw);
            let to = ddir.join("cur").join(&name);
            let r = if moving {
                fs::rename(&src, &to)
            } else {
                fs::hard_link(&src, &to).or_else(|_| copy_file(&src, &ddir, &to, m.internal_date))
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    result = Err(StoreError::Io(to, e));
                    break;
                }
            }
            pairs.push((uid, list.push(m.size, m.internal_date, base, &name)));
            if moving {
                moved.push(uid);
            }
        }
        // What was linked is numbered and durable even if a later one failed.
        if !pairs.is_empty() {
            let cur = ddir.join("cur");
            crate::os::fs::sync_dir(&cur).map_err(StoreError::io(&cur))?;
            if moving {
                let src = self.dir.join("cur");
                crate::os::fs::sync_dir(&src).map_err(StoreError::io(&src))?;
            }
            uidlist::save(&ddir, &list)?;
        }
        result?;
        Ok((CopyUids { uidvalidity: list.uidvalidity, pairs }, moved))
    }
}

/// Ascending numbers as ranges: [1, 2, 3, 7] -> [(1, 3), (7, 7)].
pub fn ranges(sorted: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &u in sorted {
        match out.last_mut() {
            Some(l) if l.1.checked_add(1) == Some(u) => l.1 = u,
            _ => out.push((u, u)),
        }
    }
    out
}

/// keyword_bits for a caller already holding the folder's list lock.
fn keyword_bits_locked(dir: &Path, names: &[&str], known: &mut Vec<String>) -> Result<u32, StoreError> {
    let find = find_keyword;
    let mut added = false;
    for n in names {
        if find(known, n).is_none() {
            if known.len() >= MAX_KEYWORDS {
                return Err(StoreError::TooManyKeywords(n.to_string()));
            }
            known.push(n.to_string());
            added = true;
        }
    }
    if added {
        let body: String =
            known.iter().enumerate().filter(|(_, k)| !k.is_empty()).map(|(i, k)| format!("{} {k}\n", (b'a' + i as u8) as char)).collect();
        let p = dir.join(KEYWORDS_FILE);
        crate::os::fs::write_atomic(&p, body.as_bytes(), 0o600).map_err(StoreError::io(&p))?;
    }
    Ok(names.iter().filter_map(|n| find(known, n)).fold(0, |acc, i| acc | 1 << i))
}

/// A copy where a hard link is refused: tmp/, fsync, mtime, link into cur/.
fn copy_file(src: &Path, ddir: &Path, to: &Path, mtime: i64) -> io::Result<()> {
    let tmp = ddir.join("tmp").join(unique());
    let r = (|| {
        fs::copy(src, &tmp)?;
        let f = OpenOptions::new().write(true).open(&tmp)?;
        f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64))?;
        f.sync_all()?;
        fs::hard_link(&tmp, to)
    })();
    let _ = fs::remove_file(&tmp);
    r
}

/// APPEND `bytes` to a folder with flags and internal date (now if None).
/// Returns (UIDVALIDITY, UID) for APPENDUID. The bytes are stored as sent.
pub fn append(store: &Store, folder: &str, bytes: &[u8], flags: &[Flag], date: Option<i64>) -> Result<(u32, u32), StoreError> {
    if bytes.is_empty() {
        return Err(StoreError::BadMessage("an empty message cannot be appended"));
    }
    let dir = store.existing(folder)?;
    let mut log = |_: &str| {};
    uidlist::sync(&dir, &mut log)?;
    let names: Vec<&str> = flags.iter().filter_map(|f| if let Flag::Keyword(k) = f { Some(k.as_str()) } else { None }).collect();
    let _l = uidlist::lock(&dir)?;
    let mut known = read_keywords(&dir)?;
    let kw = keyword_bits_locked(&dir, &names, &mut known)?;
    let bits = flags.iter().fold(0u8, |a, f| a | bit_of(f));
    let mut list = uidlist::load_locked(&dir, &mut log)?;
    let base = unique();
    let tmp = dir.join("tmp").join(&base);
    let mut cr = false;
    let wire = crlf_size(bytes, &mut cr);
    let name = with_info(&format!("{base},S={},W={wire}", bytes.len()), bits, kw);
    let to = dir.join("cur").join(&name);
    let mtime = date.unwrap_or_else(|| crate::os::time::now() as i64);
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64))?;
        f.sync_all()?;
        fs::hard_link(&tmp, &to)
    })();
    let _ = fs::remove_file(&tmp);
    written.map_err(StoreError::io(&to))?;
    let cur = dir.join("cur");
    crate::os::fs::sync_dir(&cur).map_err(StoreError::io(&cur))?;
    let uid = list.push(wire, mtime, base, &name);
    uidlist::save(&dir, &list)?;
    Ok((list.uidvalidity, uid))
}

/// STATUS of a folder (need not be selected; gives UIDs to new files).
pub fn status(store: &Store, folder: &str) -> Result<Status, StoreError> {
    let dir = store.existing(folder)?;
    let (list, found) = uidlist::sync(&dir, &mut |_| {})?;
    let files = by_base(found);
    let mut s = Status {
        messages: 0,
        recent: 0,
        uidnext: list.uidnext,
        uidvalidity: list.uidvalidity,
        unseen: 0,
        size: 0,
        highest_modseq: list.highest_modseq,
    };
    for e in &list.entries {
        if let Some(f) = files.get(&e.base) {
            s.messages += 1;
            s.size += e.size;
            if f.in_new {
                s.recent += 1;
            }
            if parse_info(&f.name).0 & SEEN == 0 {
                s.unseen += 1;
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::types::SeqSet;

    fn setup(tag: &str) -> Store {
        let s = Store::new(crate::testing::scratch_dir(tag));
        s.ensure_special().unwrap();
        s
    }

    fn deliver(s: &Store, body: &[u8]) -> PathBuf {
        let mut f = tempfile(body);
        crate::maildir::deliver(&s.root, b"", &mut f).unwrap()
    }

    fn tempfile(body: &[u8]) -> fs::File {
        let p = std::env::temp_dir().join(format!("postern-imap-msg-{}-{}", std::process::id(), unique()));
        fs::write(&p, body).unwrap();
        let f = fs::File::open(&p).unwrap();
        fs::remove_file(&p).unwrap();
        f
    }

    fn nolog(l: &str) {
        panic!("unexpected log line: {l}");
    }

    #[test]
    fn names_carry_flags_in_order() {
        assert_eq!(parse_info("1.a,S=3:2,DSabz"), (DRAFT | SEEN, 1 | 2 | 1 << 25));
        assert_eq!(with_info("1.a,S=3:2,S", SEEN | FLAGGED | DELETED, 0b101), "1.a,S=3:2,FSTac");
        assert_eq!(with_info("1.a", 0, 0), "1.a:2,");
        assert_eq!(parse_info("1.a"), (0, 0));
    }

    #[test]
    fn select_store_and_another_session_sees_it() {
        let s = setup("mb-store");
        deliver(&s, b"Subject: one\n\nbody\n");
        deliver(&s, b"Subject: two\n\nbody\n");
        let mut a = Mailbox::open(&s, "inbox", false, &mut nolog).unwrap();
        assert_eq!(a.name, "INBOX");
        assert_eq!(a.messages().len(), 2);
        assert!(a.messages().iter().all(|m| m.recent && !m.in_new), "claimed from new/ as recent");
        assert_eq!(a.messages()[0].size, 22, "CRLF size from ,W=");
        let mut b = Mailbox::open(&s, "INBOX", false, &mut nolog).unwrap();
        assert!(b.messages().iter().all(|m| !m.recent), "recent to one session only");
        let uids = a.resolve(&SeqSet::parse(b"1:*").unwrap(), false);
        assert_eq!(uids, vec![1, 2]);
        let kw = Flag::Keyword("$Forwarded".into());
        let changed = a.store_flags(&[2], StoreOp::Add, &[Flag::Seen, Flag::Flagged, kw.clone()]).unwrap();
        assert_eq!(changed, vec![2]);
        assert_eq!(a.flags_of(&a.messages()[1].clone()), vec![Flag::Seen, Flag::Flagged, kw.clone(), Flag::Recent]);
        assert!(a.path(&a.messages()[1]).to_str().unwrap().ends_with(":2,FSa"));
        assert_eq!(fs::read_to_string(s.root.join(KEYWORDS_FILE)).unwrap(), "a $Forwarded\n");
        // Storing the same again changes nothing.
        assert!(a.store_flags(&[2], StoreOp::Add, &[Flag::Seen]).unwrap().is_empty());
        let ch = b.rescan(true, &mut nolog).unwrap();
        assert_eq!(ch, Changes { flags: vec![2], ..Changes::default() });
        assert_eq!(b.flags_text(&b.messages()[1].clone()), "(\\Seen \\Flagged $Forwarded)");
        // b reads message 2 under its new name without a rescan.
        a.store_flags(&[2], StoreOp::Replace, &[Flag::Answered]).unwrap();
        assert_eq!(&b.read(2).unwrap()[..], b"Subject: two\n\nbody\n");
        a.store_flags(&[1, 2], StoreOp::Remove, &[Flag::Answered, Flag::Keyword("$forwarded".into())]).unwrap();
        assert_eq!(a.messages()[1].flags, 0);
        // EXAMINE moves nothing and may not change anything.
        deliver(&s, b"x\n");
        let mut ro = Mailbox::open(&s, "INBOX", true, &mut nolog).unwrap();
        assert!(ro.messages()[2].in_new && !ro.messages()[2].recent);
        assert!(matches!(ro.store_flags(&[1], StoreOp::Add, &[Flag::Seen]), Err(StoreError::ReadOnly(_))));
        assert!(matches!(ro.expunge(None), Err(StoreError::ReadOnly(_))));
        assert_eq!(ro.rescan(true, &mut nolog).unwrap(), Changes::default());
        fs::remove_dir_all(&s.root).unwrap();
    }

    #[test]
    fn expunge_here_and_there() {
        let s = setup("mb-expunge");
        for i in 0..5 {
            deliver(&s, format!("Subject: {i}\n\nx\n").as_bytes());
        }
        let mut a = Mailbox::open(&s, "INBOX", false, &mut nolog).unwrap();
        let mut b = Mailbox::open(&s, "INBOX", false, &mut nolog).unwrap();
        a.store_flags(&[2, 4, 5], StoreOp::Add, &[Flag::Deleted]).unwrap();
        assert_eq!(a.expunge(Some(&[2, 4])).unwrap(), Expunged { msns: vec![4, 2], uids: vec![2, 4] }, "UID EXPUNGE: only those");
        assert_eq!(a.messages().iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 3, 5]);
        // During a FETCH b may not renumber: the vanished stay until it may.
        let ch = b.rescan(false, &mut nolog).unwrap();
        assert!(ch.expunged.is_empty() && b.messages().len() == 5 && b.is_gone(2));
        assert_eq!(ch.flags, vec![5], "UID 5 got \\Deleted");
        assert!(matches!(b.read(2), Err(StoreError::Gone(2))));
        assert!(b.store_flags(&[2], StoreOp::Add, &[Flag::Seen]).unwrap().is_empty(), "gone: skipped");
        let ch = b.rescan(true, &mut nolog).unwrap();
        assert_eq!(ch.expunged, vec![4, 2]);
        assert_eq!(ch.exists, Some(3));
        assert!(ch.flags.is_empty());
        assert_eq!(a.expunge(None).unwrap().msns, vec![3]);
        // New mail after an expunge: UIDs go on, never reused.
        deliver(&s, b"new\n");
        let ch = b.rescan(true, &mut nolog).unwrap();
        assert_eq!(ch.expunged, vec![3]);
        assert_eq!(b.messages().iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 3, 6]);
        assert_eq!(ch.exists, Some(3));
        fs::remove_dir_all(&s.root).unwrap();
    }

    #[test]
    fn append_copy_move_and_status() {
        let s = setup("mb-copy");
        let (v, uid) =
            append(&s, "Drafts", b"Subject: d\r\n\r\ndraft\r\n", &[Flag::Draft, Flag::Keyword("$Todo".into())], Some(1_000_000_000))
                .unwrap();
        assert_eq!(uid, 1);
        let st = status(&s, "Drafts").unwrap();
        assert_eq!(st, Status { messages: 1, recent: 0, uidnext: 2, uidvalidity: v, unseen: 1, size: 21, highest_modseq: 1 });
        let mut d = Mailbox::open(&s, "Drafts", false, &mut nolog).unwrap();
        assert_eq!(d.messages()[0].internal_date, 1_000_000_000);
        assert_eq!(&d.read(1).unwrap()[..], b"Subject: d\r\n\r\ndraft\r\n", "stored as sent");
        assert_eq!(d.flags_of(&d.messages()[0].clone()), vec![Flag::Draft, Flag::Keyword("$Todo".into())]);
        // COPY keeps flags, keywords (by name: letters differ per folder) and the date.
        append(&s, "Sent", b"x\n", &[Flag::Keyword("$Other".into())], None).unwrap();
        let c = d.copy(&s, &[1], "Sent").unwrap();
        assert_eq!(c.pairs, vec![(1, 2)]);
        let sent = Mailbox::open(&s, "Sent", false, &mut nolog).unwrap();
        let m = sent.get(2).unwrap().clone();
        assert_eq!(sent.flags_of(&m), vec![Flag::Draft, Flag::Keyword("$Todo".into())]);
        assert_eq!((m.internal_date, m.size), (1_000_000_000, 21));
        assert_eq!(c.uidvalidity, sent.uidvalidity);
        assert!(matches!(d.copy(&s, &[1], "Nope"), Err(e) if e.try_create()));
        // MOVE: gone here, there with the next UID.
        let (c, msns) = d.move_to(&s, &[1], "Trash").unwrap();
        assert_eq!((c.pairs, msns.msns), (vec![(1, 1)], vec![1]));
        assert!(d.messages().is_empty());
        assert_eq!(status(&s, "Drafts").unwrap().messages, 0);
        assert_eq!(status(&s, "Trash").unwrap().messages, 1);
        assert!(matches!(append(&s, "INBOX", b"", &[], None), Err(StoreError::BadMessage(_))));
        // Another session deletes the folder this one has selected.
        s.delete("Trash").unwrap();
        let mut t = Mailbox::open(&s, "Sent", false, &mut nolog).unwrap();
        s.rename("Sent", "Sent2").unwrap();
        assert!(matches!(t.rescan(true, &mut nolog), Err(StoreError::NoFolder(n)) if n == "Sent"));
        fs::remove_dir_all(&s.root).unwrap();
    }

    #[test]
    fn pop3_beside_imap_on_one_maildir() {
        let s = setup("mb-pop3");
        deliver(&s, b"Subject: 1\n\na\n");
        deliver(&s, b"Subject: 2\n\nb\n");
        let mut imap = Mailbox::open(&s, "INBOX", true, &mut nolog).unwrap();
        assert!(imap.messages().iter().all(|m| m.in_new));
        // POP3 takes its lock and moves new/ to cur/ while IMAP has the folder open.
        let mut pop = crate::pop3::mailbox::Mailbox::open(&s.root, &mut |l| panic!("{l}")).unwrap();
        assert_eq!(pop.messages.len(), 2);
        let mut other = Mailbox::open(&s, "INBOX", false, &mut nolog).unwrap();
        assert_eq!(other.messages().len(), 2, "IMAP is not shut out by POP3's lock");
        let ch = imap.rescan(true, &mut nolog).unwrap();
        assert_eq!(ch, Changes::default(), "the move to cur/ keeps UIDs and adds no flags");
        assert!(imap.messages().iter().all(|m| !m.in_new));
        // POP3 deletes message 1: an expunge for IMAP.
        pop.messages[0].deleted = true;
        assert_eq!(pop.commit().0, 1);
        drop(pop);
        let ch = other.rescan(true, &mut nolog).unwrap();
        assert_eq!((ch.expunged, ch.exists), (vec![1], Some(1)));
        assert_eq!(other.messages()[0].uid, 2);
        // IMAP's flags show in the names POP3 reads; POP3's UIDL is unchanged.
        other.store_flags(&[2], StoreOp::Add, &[Flag::Seen]).unwrap();
        let pop = crate::pop3::mailbox::Mailbox::open(&s.root, &mut |l| panic!("{l}")).unwrap();
        assert_eq!(pop.messages.len(), 1);
        assert!(pop.messages[0].name.ends_with(":2,S"));
        assert_eq!(pop.messages[0].uidl, other.messages()[0].base());
        fs::remove_dir_all(&s.root).unwrap();
    }

    #[test]
    fn modseqs_follow_every_change_and_unchangedsince_refuses_stale_stores() {
        let s = setup("mb-modseq");
        for i in 0..4 {
            deliver(&s, format!("Subject: {i}\n\nx\n").as_bytes());
        }
        let mut a = Mailbox::open(&s, "INBOX", false, &mut nolog).unwrap();
        let mut b = Mailbox::open(&s, "INBOX", false, &mut nolog).unwrap();
        let h0 = a.highest_modseq;
        assert!(h0 >= 1 && a.messages().iter().all(|m| m.modseq <= h0));
        // STORE here: a new modseq on the changed message only.
        a.store_flags(&[2], StoreOp::Add, &[Flag::Flagged]).unwrap();
        let h1 = a.highest_modseq;
        assert!(h1 > h0);
        assert_eq!(a.get(2).unwrap().modseq, h1);
        assert!(a.get(1).unwrap().modseq < h1);
        // b's conditional STORE on 2 with the modseq it saw fails; on 1 it passes.
        let seen_by_b = b.get(2).unwrap().modseq;
        let (changed, modified) = b.store_flags_if(&[1, 2], StoreOp::Add, &[Flag::Seen], Some(seen_by_b)).unwrap();
        assert_eq!((changed, modified), (vec![1], vec![2]));
        assert!(!b.get(2).unwrap().has(SEEN), "the refused one is left alone");
        // A rename by another program (POP3, a client on another server) is a change too.
        let p = a.path(&a.get(3).unwrap().clone());
        fs::rename(&p, p.with_file_name(with_info(p.file_name().unwrap().to_str().unwrap(), ANSWERED, 0))).unwrap();
        let ch = a.rescan(true, &mut nolog).unwrap();
        assert_eq!(ch.flags, vec![1, 3], "b's \\Seen on 1 and the outside \\Answered on 3");
        let h2 = a.highest_modseq;
        assert_eq!(a.get(3).unwrap().modseq, h2);
        // EXPUNGE: tombstones with a modseq; VANISHED since h2 names them.
        a.store_flags(&[4], StoreOp::Add, &[Flag::Deleted]).unwrap();
        let x = a.expunge(None).unwrap();
        assert_eq!(x.uids, vec![4]);
        assert!(a.highest_modseq > h2);
        assert_eq!(a.vanished_since(h2, None), vec![(4, 4)]);
        assert_eq!(a.vanished_since(a.highest_modseq, None), vec![]);
        assert_eq!(a.vanished_since(h2, Some(&SeqSet::parse(b"1:3").unwrap())), vec![], "outside known-uids");
        let ch = b.rescan(true, &mut nolog).unwrap();
        assert_eq!((ch.expunged, ch.vanished), (vec![4], vec![4]));
        // Pruned tombstones: every absent UID below UIDNEXT, within the known set.
        a.pruned_modseq = a.highest_modseq;
        assert_eq!(a.vanished_since(1, None), vec![(4, 4)]);
        deliver(&s, b"5\n");
        deliver(&s, b"6\n");
        a.rescan(true, &mut nolog).unwrap();
        a.store_flags(&[5], StoreOp::Add, &[Flag::Deleted]).unwrap();
        a.expunge(None).unwrap();
        a.pruned_modseq = a.highest_modseq;
        assert_eq!(a.vanished_since(1, None), vec![(4, 5)]);
        assert_eq!(a.vanished_since(1, Some(&SeqSet::parse(b"1,5:*").unwrap())), vec![(5, 5)]);
        // Persisted: a fresh open (a restarted imapd) sees the same modseqs.
        let c = Mailbox::open(&s, "INBOX", true, &mut nolog).unwrap();
        assert_eq!(c.highest_modseq, a.highest_modseq);
        assert_eq!(c.messages().iter().map(|m| m.modseq).collect::<Vec<_>>(), a.messages().iter().map(|m| m.modseq).collect::<Vec<_>>());
        // STATUS tells it too; APPEND and COPY get new modseqs there.
        let before = status(&s, "Sent").unwrap().highest_modseq;
        append(&s, "Sent", b"x\n", &[], None).unwrap();
        let after = status(&s, "Sent").unwrap().highest_modseq;
        assert!(after > before);
        a.copy(&s, &[1], "Sent").unwrap();
        assert!(status(&s, "Sent").unwrap().highest_modseq > after);
        fs::remove_dir_all(&s.root).unwrap();
    }

    /// Four sessions saw the same modseq and all try a conditional STORE at
    /// once: exactly one wins, the others get MODIFIED.
    #[test]
    fn racing_conditional_stores_let_exactly_one_through() {
        let s = setup("mb-race-cond");
        deliver(&s, b"x\n");
        let n = 4;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|t| {
                let (root, barrier) = (s.root.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let s = Store::new(root);
                    let mut mb = Mailbox::open(&s, "INBOX", false, &mut nolog).unwrap();
                    let seen = mb.get(1).unwrap().modseq;
                    barrier.wait();
                    let kw = Flag::Keyword(format!("k{t}"));
                    mb.store_flags_if(&[1], StoreOp::Add, &[kw], Some(seen)).unwrap().1.is_empty()
                })
            })
            .collect();
        let won = threads.into_iter().map(|t| t.join().unwrap()).filter(|&w| w).count();
        assert_eq!(won, 1);
        let mb = Mailbox::open(&s, "INBOX", true, &mut nolog).unwrap();
        let kws = mb.flags_of(&mb.messages()[0].clone()).into_iter().filter(|f| matches!(f, Flag::Keyword(_))).count();
        assert_eq!(kws, 1, "only the winner's keyword is on the message");
        fs::remove_dir_all(&s.root).unwrap();
    }

    #[test]
    fn keywords_stop_at_26_with_a_clear_error() {
        let s = setup("mb-kw");
        deliver(&s, b"x\n");
        let mut a = Mailbox::open(&s, "INBOX", false, &mut nolog).unwrap();
        let many: Vec<Flag> = (0..26).map(|i| Flag::Keyword(format!("k{i}"))).collect();
        a.store_flags(&[1], StoreOp::Add, &many).unwrap();
        assert_eq!(a.flags_of(&a.messages()[0].clone()).len(), 27, "26 keywords and \\Recent");
        let e = a.store_flags(&[1], StoreOp::Add, &[Flag::Keyword("one-more".into())]).unwrap_err();
        assert!(e.to_string().contains("26 keywords"), "{e}");
        fs::remove_dir_all(&s.root).unwrap();
    }

    #[test]
    fn a_broken_file_or_list_is_logged_and_the_rest_served() {
        let s = setup("mb-broken");
        deliver(&s, b"ok\n");
        std::os::unix::fs::symlink("/etc/passwd", s.root.join("cur/2.evil:2,")).unwrap();
        fs::write(s.root.join(uidlist::LIST_FILE), b"garbage").unwrap();
        let mut logged = Vec::new();
        let mb = Mailbox::open(&s, "INBOX", false, &mut |l| logged.push(l.to_string())).unwrap();
        assert_eq!(mb.messages().len(), 1, "the symlink is not a message");
        assert!(logged.iter().any(|l| l.contains("UIDVALIDITY")), "{logged:?}");
        fs::remove_dir_all(&s.root).unwrap();
    }

    /// Delivery, a session setting flags and a session rescanning, all at
    /// once: every message ends up listed once, UIDs ascending, none lost.
    #[test]
    fn delivery_and_two_sessions_at_once() {
        let s = setup("mb-concurrent");
        let root = s.root.clone();
        let delivering = std::thread::spawn(move || {
            let s = Store::new(root);
            for i in 0..60 {
                deliver(&s, format!("Subject: {i}\n\nx\n").as_bytes());
            }
        });
        let root = s.root.clone();
        let flagging = std::thread::spawn(move || {
            let s = Store::new(root);
            let mut a = Mailbox::open(&s, "INBOX", false, &mut nolog).unwrap();
            for _ in 0..40 {
                a.rescan(true, &mut nolog).unwrap();
                let uids: Vec<u32> = a.messages().iter().map(|m| m.uid).collect();
                a.store_flags(&uids, StoreOp::Add, &[Flag::Seen]).unwrap();
            }
        });
        let mut b = Mailbox::open(&s, "INBOX", true, &mut nolog).unwrap();
        for _ in 0..40 {
            let ch = b.rescan(true, &mut nolog).unwrap();
            assert!(ch.expunged.is_empty(), "nothing was expunged: {ch:?}");
            let uids: Vec<u32> = b.messages().iter().map(|m| m.uid).collect();
            assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
        }
        delivering.join().unwrap();
        flagging.join().unwrap();
        b.rescan(true, &mut nolog).unwrap();
        let uids: Vec<u32> = b.messages().iter().map(|m| m.uid).collect();
        assert_eq!(uids, (1..=60).collect::<Vec<u32>>());
        let mut a = Mailbox::open(&s, "INBOX", false, &mut nolog).unwrap();
        let all: Vec<u32> = a.messages().iter().map(|m| m.uid).collect();
        a.store_flags(&all, StoreOp::Add, &[Flag::Seen]).unwrap();
        b.rescan(true, &mut nolog).unwrap();
        assert!(b.messages().iter().all(|m| m.has(SEEN)));
        fs::remove_dir_all(&s.root).unwrap();
    }
}
