//! IMAP: the mailbox and message layer (folders, UIDs, flags, FETCH items,
//! SEARCH) over the Maildirs that delivery writes and POP3 reads.
//!
//! - `types`: what a parsed command carries (sequence sets, flags, search
//!   keys, fetch items).
//! - `utf7`: modified UTF-7 folder names.
//! - `folders`: Maildir++ folders, IMAP name <-> directory, LIST, subscriptions.
//! - `uidlist`: the per-folder UID list (UIDVALIDITY, UIDNEXT, name -> UID).
//! - `mailbox`: a selected folder: its messages, rescan, STORE, EXPUNGE,
//!   APPEND, COPY, MOVE, STATUS.
//! - `fetch`: FETCH item values (ENVELOPE, BODYSTRUCTURE, BODY[section]...).
//! - `search`: SEARCH keys evaluated against a message.
//! - `cache`: reading messages for FETCH and SEARCH, and the per-folder
//!   header cache.

pub mod cache;
pub mod fetch;
pub mod folders;
pub mod mailbox;
pub mod search;
pub mod types;
pub mod uidlist;
pub mod utf7;

// The protocol side (branch imap-core): command input, the pre-login state,
// the authenticated session.
pub mod command;
pub mod idle;
pub mod login;
pub mod parse;
pub mod response;
pub mod session;

use crate::error::{Classify, Kind};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything the mailbox layer can fail with. Temporary ones are answered NO
/// (try again); permanent ones NO as well, but they name what to change.
#[derive(Debug)]
pub enum StoreError {
    /// A folder name that cannot be a directory: `..`, `/`, NUL, bad modified
    /// UTF-7, an empty level, a leading dot.
    BadName(String, &'static str),
    /// The folder does not exist.
    NoFolder(String),
    /// CREATE or RENAME onto a folder that exists.
    Exists(String),
    /// DELETE or RENAME of INBOX, or another operation INBOX does not allow.
    Inbox(&'static str),
    /// A message named by UID is gone (expunged by another session).
    Gone(u32),
    /// Too many keywords for the per-folder keyword file (26).
    TooManyKeywords(String),
    /// STORE, EXPUNGE or MOVE in a folder opened with EXAMINE.
    ReadOnly(String),
    /// The message given to APPEND is empty or otherwise unusable.
    BadMessage(&'static str),
    Io(PathBuf, io::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::BadName(n, why) => write!(f, "bad folder name {n:?}: {why}"),
            StoreError::NoFolder(n) => write!(f, "no folder {n:?}; CREATE it first or check LIST"),
            StoreError::Exists(n) => write!(f, "folder {n:?} already exists; pick another name"),
            StoreError::Inbox(why) => write!(f, "INBOX {why}"),
            StoreError::Gone(uid) => write!(f, "message UID {uid} has been expunged by another session"),
            StoreError::TooManyKeywords(k) => {
                write!(f, "cannot add keyword {k:?}: this folder already uses 26 keywords; remove unused ones first")
            }
            StoreError::ReadOnly(n) => write!(f, "folder {n:?} is open read-only (EXAMINE); SELECT it to change it"),
            StoreError::BadMessage(why) => write!(f, "bad message: {why}"),
            StoreError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for StoreError {}

impl Classify for StoreError {
    fn kind(&self) -> Kind {
        match self {
            StoreError::Io(_, e) => crate::error::io_kind(e),
            _ => Kind::Permanent,
        }
    }
}

impl StoreError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
        let p = path.into();
        move |e| StoreError::Io(p, e)
    }

    /// Whether the IMAP answer carries `[TRYCREATE]` (COPY/APPEND to a missing folder).
    pub fn try_create(&self) -> bool {
        matches!(self, StoreError::NoFolder(_))
    }
}
