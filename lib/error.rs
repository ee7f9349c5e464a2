//! Temporary versus permanent failure, decided once where it is known.
//!
//! Every error type in the library says which kind it is; the programs map the kind
//! to their protocol: 4xx/5xx in SMTP, -ERR in POP3, exit 111/100 for delivery
//! programs, and qmail-queue's codes for postern-queue.

use std::fmt;

/// Whether retrying later can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Retry later: disk full, a missing file, a peer that did not answer.
    Temporary,
    /// Retrying cannot help: no such user, a malformed address.
    Permanent,
}

impl Kind {
    /// The exit code a delivery program uses for this kind (qmail's 111/100).
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Temporary => EXIT_TEMP,
            Kind::Permanent => EXIT_PERM,
        }
    }
}

pub const EXIT_OK: i32 = 0;
pub const EXIT_PERM: i32 = 100;
pub const EXIT_TEMP: i32 = 111;

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Temporary => "temporary",
            Kind::Permanent => "permanent",
        })
    }
}

/// Implemented by every subsystem's error enum.
pub trait Classify {
    fn kind(&self) -> Kind;
}

/// Format an io::Error together with the path it concerns, so every message names
/// the file at fault.
pub fn io_context(what: &str, path: &std::path::Path, e: &std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// An I/O error is temporary unless it plainly cannot improve.
pub fn io_kind(e: &std::io::Error) -> Kind {
    use std::io::ErrorKind::*;
    match e.kind() {
        InvalidInput | InvalidData => Kind::Permanent,
        _ => Kind::Temporary,
    }
}
