//! What the unit tests share (compiled for `cargo test` only).

use crate::address::Address;
use std::path::PathBuf;

/// A fresh, empty directory for one test: `postern-TAG-PID` in the temporary
/// directory (emptied first, in case an earlier run with the same pid left it).
pub fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("postern-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

/// An address the test knows to be valid.
pub fn addr(s: &str) -> Address {
    Address::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}
