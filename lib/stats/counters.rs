//! What the programs count, and where in their counter files.
//!
//! `run/stats/smtpd` (written by every postern-smtpd session, as postern-d):
//! messages accepted and their bytes, and every refusal (a 4xx or 5xx reply)
//! by its enhanced status code. `run/stats/send` (written by postern-send
//! alone, as postern-s): each delivery's result by channel, the bounces it
//! queued, and remote results per destination domain, for up to
//! `DOMAINS` domains (the rest are summed as "other").

use super::file::{self, CounterFile};
use crate::os::home::Home;
use crate::os::log;
use crate::status::Status;
use std::collections::HashMap;
use std::sync::OnceLock;

// --- run/stats/smtpd ---------------------------------------------------------

pub const SMTPD_FILE: &str = "smtpd";
const ACCEPTED: usize = 1;
const ACCEPTED_BYTES: usize = 2;
/// Refusals by status: 4.S.D and 5.S.D for S < 8 and D < 16 each have a word.
const REFUSED: usize = 8;
const REFUSED_OTHER: usize = REFUSED + 256;
pub const SMTPD_WORDS: usize = REFUSED_OTHER + 8;

/// The word counting replies with `status`.
fn refusal_index(status: Status) -> usize {
    match (status.class(), status.subject(), status.detail()) {
        (c @ (4 | 5), s, d) if s < 8 && d < 16 => REFUSED + (c as usize - 4) * 128 + s as usize * 16 + d as usize,
        _ => REFUSED_OTHER,
    }
}

/// The status a refusal word counts (None: the "other" word).
fn refusal_status(index: usize) -> Option<Status> {
    let i = index.checked_sub(REFUSED).filter(|i| *i < 256)?;
    Some(Status::new(4 + (i / 128) as u8, (i % 128 / 16) as u16, (i % 16) as u16))
}

/// The session's counter file, opened at its first count (a session that
/// neither refuses nor accepts anything costs nothing). A postern-smtpd
/// process serves one session, so the file is held for the process.
fn smtpd_file(home: &Home) -> Option<&'static CounterFile> {
    static FILE: OnceLock<Option<CounterFile>> = OnceLock::new();
    FILE.get_or_init(|| open_for_counting(home, SMTPD_FILE, SMTPD_WORDS, "postern-smtpd")).as_ref()
}

fn open_for_counting(home: &Home, name: &str, words: usize, program: &str) -> Option<CounterFile> {
    let path = file::path(home, name);
    match CounterFile::open_rw(&path, words) {
        Ok(f) => Some(f),
        Err(e) => {
            // Counting never stops mail: say so once and go on without.
            log::line(program, &format!("not counting for postern-admin stats: {}: {e} (scripts/install creates it)", path.display()));
            None
        }
    }
}

/// postern-smtpd accepted a message of `bytes` bytes (it said 250 after DATA).
pub fn smtpd_accepted(home: &Home, bytes: u64) {
    if let Some(f) = smtpd_file(home) {
        f.add(ACCEPTED, 1);
        f.add(ACCEPTED_BYTES, bytes);
    }
}

/// postern-smtpd answered with `code` and `status`: counted when it refuses (4xx, 5xx).
pub fn smtpd_reply(home: &Home, code: u16, status: Status) {
    if code >= 400 {
        if let Some(f) = smtpd_file(home) {
            f.add(refusal_index(status), 1);
        }
    }
}

/// What the smtpd file holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SmtpdCounts {
    pub accepted: u64,
    pub accepted_bytes: u64,
    /// (status, replies), in status order, only those seen; None is "other".
    pub refused: Vec<(Option<Status>, u64)>,
}

pub fn read_smtpd(home: &Home) -> std::io::Result<Option<SmtpdCounts>> {
    let Some(f) = CounterFile::open_ro(&file::path(home, SMTPD_FILE), SMTPD_WORDS)? else { return Ok(None) };
    let refused = (REFUSED..=REFUSED_OTHER).map(|i| (refusal_status(i), f.get(i))).filter(|(_, n)| *n > 0).collect();
    Ok(Some(SmtpdCounts { accepted: f.get(ACCEPTED), accepted_bytes: f.get(ACCEPTED_BYTES), refused }))
}

// --- run/stats/send ----------------------------------------------------------

pub const SEND_FILE: &str = "send";
/// Per channel (local, remote): delivered, deferred, failed.
const RESULTS: usize = 1;
const BOUNCES: usize = 7;
/// The domain table: DOMAINS entries of ENTRY words: the name's length (0: a
/// free entry; stored last, so a reader never sees half a name), the name in
/// NAME_WORDS words, then delivered, deferred, failed.
pub const DOMAINS: usize = 256;
const NAME_WORDS: usize = 32;
const ENTRY: usize = 1 + NAME_WORDS + 3;
const TABLE: usize = 16;
const OTHER_DOMAINS: usize = TABLE + DOMAINS * ENTRY;
pub const SEND_WORDS: usize = OTHER_DOMAINS + 3;

/// A delivery's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered = 0,
    Deferred = 1,
    Failed = 2,
}

impl DeliveryResult {
    pub const ALL: [DeliveryResult; 3] = [DeliveryResult::Delivered, DeliveryResult::Deferred, DeliveryResult::Failed];

    pub fn of(status: Status) -> DeliveryResult {
        match status.class() {
            2 => DeliveryResult::Delivered,
            4 => DeliveryResult::Deferred,
            _ => DeliveryResult::Failed,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::Deferred => "deferred",
            DeliveryResult::Failed => "failed",
        }
    }
}

/// postern-send's counters: one writer, so the domain table needs no lock;
/// `index` remembers where each domain's entry is.
pub struct SendStats {
    file: Option<CounterFile>,
    index: HashMap<String, usize>,
}

impl SendStats {
    pub fn open(home: &Home) -> SendStats {
        let file = open_for_counting(home, SEND_FILE, SEND_WORDS, "postern-send");
        let mut index = HashMap::new();
        if let Some(f) = &file {
            for (i, name) in table_names(f) {
                index.insert(name, i);
            }
        }
        SendStats { file, index }
    }

    /// One recipient's result; `domain` for remote deliveries.
    pub fn delivery(&mut self, domain: Option<&str>, status: Status) {
        let r = DeliveryResult::of(status) as usize;
        let base = domain.map(|d| self.entry(&d.to_ascii_lowercase()).map(|e| e + 1 + NAME_WORDS).unwrap_or(OTHER_DOMAINS));
        let Some(f) = &self.file else { return };
        let channel = if domain.is_some() { 3 } else { 0 };
        f.add(RESULTS + channel + r, 1);
        if let Some(b) = base {
            f.add(b + r, 1);
        }
    }

    /// A bounce (or success notice) was queued.
    pub fn bounce(&mut self) {
        if let Some(f) = &self.file {
            f.add(BOUNCES, 1);
        }
    }

    /// The entry of `domain`, made if there is room.
    fn entry(&mut self, domain: &str) -> Option<usize> {
        if let Some(e) = self.index.get(domain) {
            return Some(*e);
        }
        let f = self.file.as_ref()?;
        let bytes = domain.as_bytes();
        if bytes.is_empty() || bytes.len() > NAME_WORDS * 8 {
            return None;
        }
        let start = fnv(bytes) as usize % DOMAINS;
        let e = (0..DOMAINS).map(|k| TABLE + (start + k) % DOMAINS * ENTRY).find(|e| f.get(*e) == 0)?;
        for (w, chunk) in bytes.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            f.set(e + 1 + w, u64::from_le_bytes(word));
        }
        f.set(e, bytes.len() as u64);
        self.index.insert(domain.to_string(), e);
        Some(e)
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

/// (entry, name) of every used entry of the domain table.
fn table_names(f: &CounterFile) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for k in 0..DOMAINS {
        let e = TABLE + k * ENTRY;
        let len = f.get(e) as usize;
        if len == 0 || len > NAME_WORDS * 8 {
            continue;
        }
        let mut name = Vec::with_capacity(len);
        for w in 0..len.div_ceil(8) {
            name.extend_from_slice(&f.get(e + 1 + w).to_le_bytes());
        }
        name.truncate(len);
        out.push((e, String::from_utf8_lossy(&name).into_owned()));
    }
    out
}

/// What the send file holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendCounts {
    /// [local, remote] x [delivered, deferred, failed]
    pub results: [[u64; 3]; 2],
    pub bounces: u64,
    /// (domain, [delivered, deferred, failed]), sorted by domain.
    pub domains: Vec<(String, [u64; 3])>,
    pub other_domains: [u64; 3],
}

pub fn read_send(home: &Home) -> std::io::Result<Option<SendCounts>> {
    let Some(f) = CounterFile::open_ro(&file::path(home, SEND_FILE), SEND_WORDS)? else { return Ok(None) };
    let three = |base: usize| [f.get(base), f.get(base + 1), f.get(base + 2)];
    let mut domains: Vec<(String, [u64; 3])> = table_names(&f).into_iter().map(|(e, name)| (name, three(e + 1 + NAME_WORDS))).collect();
    domains.sort();
    Ok(Some(SendCounts {
        results: [three(RESULTS), three(RESULTS + 3)],
        bounces: f.get(BOUNCES),
        domains,
        other_domains: three(OTHER_DOMAINS),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_status_has_its_own_word_and_maps_back() {
        let mut seen = std::collections::HashSet::new();
        for class in [4u8, 5] {
            for subject in 0..8u16 {
                for detail in 0..16u16 {
                    let s = Status::new(class, subject, detail);
                    let i = refusal_index(s);
                    assert!(seen.insert(i), "{s} shares word {i}");
                    assert!((REFUSED..REFUSED_OTHER).contains(&i));
                    assert_eq!(refusal_status(i), Some(s));
                }
            }
        }
        assert_eq!(refusal_index(Status::new(5, 7, 26)), REFUSED_OTHER);
        assert_eq!(refusal_index(Status::new(5, 9, 0)), REFUSED_OTHER);
        assert_eq!(refusal_status(REFUSED_OTHER), None);
    }

    #[test]
    fn counts_survive_reopening_and_domains_keep_their_entries() {
        let dir = std::env::temp_dir().join(format!("postern-stats-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let home = Home::at(&dir);
        let mut s = SendStats::open(&home);
        s.delivery(None, Status::OK);
        s.delivery(Some("Example.NET"), Status::OK);
        s.delivery(Some("example.net"), Status::new(4, 4, 1));
        s.delivery(Some(&"x".repeat(300)), Status::new(5, 1, 1));
        s.bounce();
        drop(s);
        let mut s = SendStats::open(&home);
        s.delivery(Some("example.net"), Status::new(5, 1, 1));
        s.delivery(Some("a.example"), Status::OK);
        let c = read_send(&home).unwrap().unwrap();
        assert_eq!(c.results, [[1, 0, 0], [2, 1, 2]]);
        assert_eq!(c.bounces, 1);
        assert_eq!(c.domains, vec![("a.example".to_string(), [1, 0, 0]), ("example.net".to_string(), [1, 1, 1])]);
        assert_eq!(c.other_domains, [0, 0, 1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_domain_table_counts_the_rest_as_other() {
        let dir = std::env::temp_dir().join(format!("postern-stats-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let home = Home::at(&dir);
        let mut s = SendStats::open(&home);
        for i in 0..DOMAINS + 10 {
            s.delivery(Some(&format!("d{i}.example")), Status::OK);
        }
        let c = read_send(&home).unwrap().unwrap();
        assert_eq!(c.domains.len(), DOMAINS);
        assert_eq!(c.other_domains, [10, 0, 0]);
        assert_eq!(c.results[1][0], (DOMAINS + 10) as u64);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
