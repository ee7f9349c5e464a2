//! A selected folder: the session's numbered list of messages, and the
//! operations that change it (STORE, EXPUNGE, APPEND, COPY, MOVE).
//! (API first; bodies being written.)

use super::folders::Store;
use super::types::{Flag, SeqSet, StoreOp};
use super::StoreError;
use std::path::PathBuf;

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
}

pub const SEEN: u8 = 1;
pub const ANSWERED: u8 = 2;
pub const FLAGGED: u8 = 4;
pub const DELETED: u8 = 8;
pub const DRAFT: u8 = 16;

/// What `rescan` found since the last look, for NOOP, IDLE and the end of
/// each command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Sequence numbers to send as `* n EXPUNGE`, in this order (each counts
    /// the removals before it).
    pub expunged: Vec<u32>,
    /// The new message count if messages arrived (`* n EXISTS`), else None.
    pub exists: Option<u32>,
    /// Sequence numbers (after the expunges) whose flags another session or
    /// POP3 changed: send `* n FETCH (FLAGS ...)`.
    pub flags: Vec<u32>,
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
    pub recent: u32,
    pub uidnext: u32,
    pub uidvalidity: u32,
    pub unseen: u32,
    /// Sum of RFC822.SIZE.
    pub size: u64,
}

/// A selected folder.
pub struct Mailbox {
    pub dir: PathBuf,
    /// The folder's name as sent on the wire (mUTF-7), `INBOX` for the Maildir.
    pub name: String,
    pub read_only: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    messages: Vec<Message>,
}

impl Mailbox {
    /// SELECT (read-write) or EXAMINE (read_only). Reads the UID list, gives
    /// UIDs to new files (and, read-write, moves new/ to cur/ marking them
    /// \Recent). `log` receives a line per skipped file or rebuilt list.
    pub fn open(_store: &Store, _name: &str, _read_only: bool, _log: &mut dyn FnMut(&str)) -> Result<Mailbox, StoreError> {
        todo!()
    }

    /// The messages, in sequence number order (MSN n is `messages()[n-1]`).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Flags of a message as FETCH FLAGS lists them (system flags, keywords, \Recent).
    pub fn flags_of(&self, _m: &Message) -> Vec<Flag> {
        todo!()
    }

    /// The keywords this folder knows (for FLAGS and PERMANENTFLAGS).
    pub fn keyword_names(&self) -> Vec<String> {
        todo!()
    }

    /// UIDs of the messages a set names: MSNs if `by_uid` is false, else UIDs
    /// (`*` is the last message's). Ascending.
    pub fn resolve(&self, _set: &SeqSet, _by_uid: bool) -> Vec<u32> {
        todo!()
    }

    /// MSN of a UID.
    pub fn msn(&self, _uid: u32) -> Option<u32> {
        todo!()
    }

    /// The message's file.
    pub fn path(&self, _m: &Message) -> PathBuf {
        todo!()
    }

    /// The message's bytes, memory-mapped (the file never changes, only its name).
    pub fn read(&self, _uid: u32) -> Result<memmap2::Mmap, StoreError> {
        todo!()
    }

    /// Look again: new files get UIDs, renamed ones update flags, vanished ones
    /// are expunges. With `expunge_ok` false (during FETCH, STORE, SEARCH) the
    /// vanished stay listed so sequence numbers hold, and are reported later.
    pub fn rescan(&mut self, _expunge_ok: bool, _log: &mut dyn FnMut(&str)) -> Result<Changes, StoreError> {
        todo!()
    }

    /// STORE: change flags of the messages (renaming their files). Returns the
    /// UIDs whose flags changed.
    pub fn store_flags(&mut self, _uids: &[u32], _op: StoreOp, _flags: &[Flag]) -> Result<Vec<u32>, StoreError> {
        todo!()
    }

    /// EXPUNGE (uids None) or UID EXPUNGE: remove the \Deleted messages.
    /// Returns the sequence numbers to send as `* n EXPUNGE`, in order.
    pub fn expunge(&mut self, _uids: Option<&[u32]>) -> Result<Vec<u32>, StoreError> {
        todo!()
    }

    /// COPY to another folder (hard links where possible, keeping flags).
    pub fn copy(&self, _store: &Store, _uids: &[u32], _dest: &str) -> Result<CopyUids, StoreError> {
        todo!()
    }

    /// MOVE: copy, then expunge the sources. Returns the COPYUID and the
    /// sequence numbers to send as `* n EXPUNGE`.
    pub fn move_to(&mut self, _store: &Store, _uids: &[u32], _dest: &str) -> Result<(CopyUids, Vec<u32>), StoreError> {
        todo!()
    }
}

/// APPEND `bytes` to a folder with flags and internal date (now if None).
/// Returns (UIDVALIDITY, UID) for APPENDUID.
pub fn append(_store: &Store, _folder: &str, _bytes: &[u8], _flags: &[Flag], _date: Option<i64>) -> Result<(u32, u32), StoreError> {
    todo!()
}

/// STATUS of a folder (need not be selected).
pub fn status(_store: &Store, _folder: &str) -> Result<Status, StoreError> {
    todo!()
}
