//! Maildir++ folders. (API first; bodies being written.)

use super::StoreError;
use std::path::PathBuf;

/// A user's mail store: the Maildir (INBOX) and its `.Folder` subdirectories.
pub struct Store {
    pub root: PathBuf,
}

/// One folder as LIST shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    /// The name on the wire (modified UTF-7), `.` between levels.
    pub name: String,
    /// `\HasChildren`/`\HasNoChildren`, `\Noselect`, SPECIAL-USE (`\Sent`...).
    pub attrs: Vec<&'static str>,
    pub subscribed: bool,
}

/// The hierarchy delimiter.
pub const DELIMITER: char = '.';

impl Store {
    pub fn new(root: PathBuf) -> Store {
        Store { root }
    }

    /// Create INBOX's tmp/new/cur if missing and the special folders (Sent,
    /// Drafts, Trash, Junk, Archive), subscribed. Run at each login; cheap when
    /// they exist.
    pub fn ensure_special(&self) -> Result<(), StoreError> {
        todo!()
    }

    /// The directory of a folder (which need not exist), or why the name is refused.
    pub fn dir_of(&self, _name: &str) -> Result<PathBuf, StoreError> {
        todo!()
    }

    /// Every folder, INBOX first, then by name.
    pub fn list(&self) -> Result<Vec<FolderInfo>, StoreError> {
        todo!()
    }

    pub fn create(&self, _name: &str) -> Result<(), StoreError> {
        todo!()
    }

    pub fn delete(&self, _name: &str) -> Result<(), StoreError> {
        todo!()
    }

    /// RENAME, subfolders with it. Renaming INBOX moves its messages.
    pub fn rename(&self, _from: &str, _to: &str) -> Result<(), StoreError> {
        todo!()
    }

    pub fn subscribe(&self, _name: &str) -> Result<(), StoreError> {
        todo!()
    }

    pub fn unsubscribe(&self, _name: &str) -> Result<(), StoreError> {
        todo!()
    }

    pub fn subscriptions(&self) -> Result<Vec<String>, StoreError> {
        todo!()
    }
}
