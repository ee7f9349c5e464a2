//! Constant databases: lookups and atomic rebuilds.
//!
//! A rebuild writes `NAME.tmp`, fsyncs it and renames it over `NAME`, then fsyncs
//! the directory; a reader opens either the old or the new file, never a half-written
//! one.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum CdbError {
    Open(PathBuf, String),
    Write(PathBuf, String),
}

impl fmt::Display for CdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CdbError::Open(p, e) => write!(f, "cannot read the database {}: {e}", p.display()),
            CdbError::Write(p, e) => write!(f, "cannot write the database {}: {e}", p.display()),
        }
    }
}

impl crate::error::Classify for CdbError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Temporary
    }
}

/// An open database: the file mapped read-only (djb's cdb format, which tinycdb
/// writes). Dropping it unmaps the file.
pub struct Db {
    map: memmap2::Mmap,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?).map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

fn hash(key: &[u8]) -> u32 {
    key.iter().fold(5381u32, |h, &c| (h << 5).wrapping_add(h) ^ c as u32)
}

impl Db {
    /// Open `path`; `Ok(None)` when it does not exist.
    pub fn open(path: &Path) -> Result<Option<Db>, CdbError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CdbError::Open(path.to_path_buf(), e.to_string())),
        };
        let map = crate::os::sys::map_file(&file).map_err(|e| CdbError::Open(path.to_path_buf(), e.to_string()))?;
        if map.len() < 2048 {
            return Err(CdbError::Open(path.to_path_buf(), "shorter than a cdb header; rebuild it".into()));
        }
        Ok(Some(Db { map }))
    }

    /// The first value stored under `key`. A damaged file reads as "not found".
    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        get(&self.map[..], key).map(<[u8]>::to_vec)
    }
}

/// The first value stored under `key` in the database bytes `b` (what `Db` maps):
/// any bytes at all read as a database, a damaged one as "not found".
pub fn get<'a>(b: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let h = hash(key);
    let table = (h as usize & 255) * 8;
    let (pos, slots) = (u32_at(b, table)? as usize, u32_at(b, table + 4)? as usize);
    if slots == 0 {
        return None;
    }
    let mut slot = (h as usize >> 8) % slots;
    for _ in 0..slots {
        let at = pos.checked_add(slot * 8)?;
        let (sh, rec) = (u32_at(b, at)?, u32_at(b, at + 4)? as usize);
        if rec == 0 {
            return None;
        }
        if sh == h {
            let (klen, dlen) = (u32_at(b, rec)? as usize, u32_at(b, rec + 4)? as usize);
            let kstart = rec + 8;
            if b.get(kstart..kstart.checked_add(klen)?)? == key {
                let dstart = kstart + klen;
                return b.get(dstart..dstart.checked_add(dlen)?);
            }
        }
        slot = (slot + 1) % slots;
    }
    None
}

/// A whole database in djb's format, as bytes: a 2048-byte header of 256
/// (position, slots) pairs, the records (key length, value length, key, value),
/// then 256 hash tables of (hash, position) slots, each twice as long as the
/// records it holds, probed linearly from (hash >> 8) % slots.
pub fn encode(records: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let too_big = || "the database would be larger than 4 GiB".to_string();
    let mut out = vec![0u8; 2048];
    let mut slots: Vec<Vec<(u32, u32)>> = vec![Vec::new(); 256];
    for (k, v) in records {
        let pos = u32::try_from(out.len()).map_err(|_| too_big())?;
        let h = hash(k);
        slots[h as usize & 255].push((h, pos));
        out.extend_from_slice(&u32::try_from(k.len()).map_err(|_| too_big())?.to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).map_err(|_| too_big())?.to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    for (i, entries) in slots.iter().enumerate() {
        let pos = u32::try_from(out.len()).map_err(|_| too_big())?;
        let len = entries.len() * 2;
        let mut table = vec![(0u32, 0u32); len];
        for &(h, p) in entries {
            let mut at = (h as usize >> 8) % len;
            while table[at].1 != 0 {
                at = (at + 1) % len;
            }
            table[at] = (h, p);
        }
        for (h, p) in table {
            out.extend_from_slice(&h.to_le_bytes());
            out.extend_from_slice(&p.to_le_bytes());
        }
        out[i * 8..i * 8 + 4].copy_from_slice(&pos.to_le_bytes());
        out[i * 8 + 4..i * 8 + 8].copy_from_slice(&(len as u32).to_le_bytes());
    }
    u32::try_from(out.len()).map_err(|_| too_big())?;
    Ok(out)
}

/// Build `path` atomically from `records`, readable by everyone (0644): a cdb
/// with secrets goes through `build_mode`.
pub fn build(path: &Path, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), CdbError> {
    build_mode(path, records, 0o644)
}

/// `build` with the mode the file has from its first byte on.
pub fn build_mode(path: &Path, records: &[(Vec<u8>, Vec<u8>)], mode: u32) -> Result<(), CdbError> {
    let werr = |e: String| CdbError::Write(path.to_path_buf(), e);
    let bytes = encode(records).map_err(werr)?;
    crate::os::fs::write_atomic(path, &bytes, mode).map_err(|e| werr(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn build_and_read_back() {
        let dir = crate::testing::scratch_dir("cdb");
        let p = dir.join("t.cdb");
        build(&p, &[(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]).unwrap();
        let mut db = Db::open(&p).unwrap().unwrap();
        assert_eq!(db.get(b"b"), Some(b"2".to_vec()));
        assert_eq!(db.get(b"c"), None);
        // Duplicate keys: the first one is found, as in every cdb reader.
        build(&p, &[(b"k".to_vec(), b"first".to_vec()), (b"k".to_vec(), b"second".to_vec())]).unwrap();
        assert_eq!(Db::open(&p).unwrap().unwrap().get(b"k"), Some(b"first".to_vec()));
        // Many keys, so tables have collisions and probing is exercised.
        let many: Vec<_> = (0..5000).map(|i| (format!("key{i}").into_bytes(), format!("value{i}").into_bytes())).collect();
        build(&p, &many).unwrap();
        let mut db = Db::open(&p).unwrap().unwrap();
        for i in (0..5000).step_by(7) {
            assert_eq!(db.get(format!("key{i}").as_bytes()), Some(format!("value{i}").into_bytes()));
        }
        assert_eq!(db.get(b"key5000"), None);
        build(&p, &[(b"c".to_vec(), b"3".to_vec())]).unwrap();
        let mut db = Db::open(&p).unwrap().unwrap();
        assert_eq!(db.get(b"a"), None);
        assert_eq!(db.get(b"c"), Some(b"3".to_vec()));
        assert!(Db::open(&dir.join("missing.cdb")).unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
