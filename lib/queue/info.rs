//! `queue/info/ID`: what postern-send knows of a message's recipients beyond
//! the queue file: attempts, the last result and when, the next try. The admin
//! tools and mailq show it.
//!
//! One line per recipient that was tried:
//! `INDEX ATTEMPTS LAST-TRY NEXT-TRY STATUS TEXT` (times in Unix seconds,
//! STATUS an RFC 3463 code, TEXT the rest of the line). postern-send writes it
//! after each round of attempts (a new file, renamed over the old one) and
//! removes it when the message leaves the queue. It is not synced: after a
//! crash it may be older than the file or missing, which costs only what a
//! listing shows until the next attempt. Nothing decides from it.

use super::format::Id;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One recipient's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tried {
    /// Its index among the message's recipients.
    pub index: usize,
    pub attempts: u32,
    pub last_try: u64,
    pub next_try: u64,
    /// "4.4.1" and the text of the last result.
    pub status: String,
    pub text: String,
}

pub fn encode(tried: &[Tried]) -> String {
    let mut s = String::new();
    for t in tried {
        let text: String = t.text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        s.push_str(&format!("{} {} {} {} {} {text}\n", t.index, t.attempts, t.last_try, t.next_try, t.status));
    }
    s
}

/// The records in `bytes`; lines that do not parse are skipped (nothing
/// decides from this file).
pub fn parse(bytes: &[u8]) -> Vec<Tried> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(6, ' ');
            Some(Tried {
                index: f.next()?.parse().ok()?,
                attempts: f.next()?.parse().ok()?,
                last_try: f.next()?.parse().ok()?,
                next_try: f.next()?.parse().ok()?,
                status: f.next().filter(|s| s.bytes().all(|b| b.is_ascii_graphic()))?.to_string(),
                text: f.next().unwrap_or("").chars().map(|c| if c.is_control() { ' ' } else { c }).collect(),
            })
        })
        .collect()
}

pub fn path(queue_root: &Path, id: &Id) -> PathBuf {
    queue_root.join("info").join(id)
}

/// Replace the record of `id` (postern-send).
pub fn write(queue_root: &Path, id: &Id, tried: &[Tried]) -> io::Result<()> {
    let dir = queue_root.join("info");
    let tmp = dir.join(format!(".{id}"));
    {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        // Group postern reads it (postern-queued answers mailq), whatever our umask.
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o640))?;
        f.write_all(encode(tried).as_bytes())?;
    }
    fs::rename(&tmp, dir.join(id))
}

/// The record of `id`; empty when there is none.
pub fn read(queue_root: &Path, id: &Id) -> Vec<Tried> {
    fs::read(path(queue_root, id)).map(|b| parse(&b)).unwrap_or_default()
}

pub fn remove(queue_root: &Path, id: &Id) {
    let _ = fs::remove_file(path(queue_root, id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damaged_lines_skipped() {
        let t = vec![
            Tried { index: 0, attempts: 3, last_try: 100, next_try: 500, status: "4.4.1".into(), text: "connect to mx: refused\nx".into() },
            Tried { index: 2, attempts: 1, last_try: 90, next_try: 90, status: "4.3.0".into(), text: String::new() },
        ];
        let s = encode(&t);
        let back = parse(s.as_bytes());
        assert_eq!(back[0].text, "connect to mx: refused x");
        assert_eq!(back[1], t[1]);
        assert_eq!(parse(b"x 1 2 3 4.0.0 y\n1 1 1\n0 1 2 3 4.0.0 ok\n").len(), 1);
    }
}
