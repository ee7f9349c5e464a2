//! Constant databases: lookups and atomic rebuilds.
//!
//! A rebuild writes `NAME.tmp`, fsyncs it and renames it over `NAME`, then fsyncs
//! the directory; a reader opens either the old or the new file, never a half-written
//! one.

use std::fmt;
use std::fs::{self, File};
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

/// An open database.
pub struct Db {
    inner: Box<tinycdb::Cdb>,
}

impl Db {
    /// Open `path`; `Ok(None)` when it does not exist.
    pub fn open(path: &Path) -> Result<Option<Db>, CdbError> {
        match fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CdbError::Open(path.to_path_buf(), e.to_string())),
            Ok(_) => {}
        }
        tinycdb::Cdb::open(path)
            .map(|inner| Some(Db { inner }))
            .map_err(|e| CdbError::Open(path.to_path_buf(), format!("{e:?}")))
    }

    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.find(key).map(|v| v.to_vec())
    }
}

/// Build `path` atomically from `records`.
pub fn build(path: &Path, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), CdbError> {
    let werr = |e: String| CdbError::Write(path.to_path_buf(), e);
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut failed = None;
    tinycdb::Cdb::new(&tmp, |c| {
        for (k, v) in records {
            if let Err(e) = c.add(k, v) {
                failed.get_or_insert(format!("{e:?}"));
            }
        }
    })
    .map_err(|e| werr(format!("{e:?}")))?;
    if let Some(e) = failed {
        let _ = fs::remove_file(&tmp);
        return Err(werr(e));
    }
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| werr(e.to_string()))?;
    fs::rename(&tmp, path).map_err(|e| werr(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| werr(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_read_back() {
        let dir = std::env::temp_dir().join(format!("postern-cdb-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.cdb");
        build(&p, &[(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]).unwrap();
        let mut db = Db::open(&p).unwrap().unwrap();
        assert_eq!(db.get(b"b"), Some(b"2".to_vec()));
        assert_eq!(db.get(b"c"), None);
        build(&p, &[(b"c".to_vec(), b"3".to_vec())]).unwrap();
        let mut db = Db::open(&p).unwrap().unwrap();
        assert_eq!(db.get(b"a"), None);
        assert_eq!(db.get(b"c"), Some(b"3".to_vec()));
        assert!(Db::open(&dir.join("missing.cdb")).unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
