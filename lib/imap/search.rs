//! SEARCH. (API first; bodies being written.)

use super::mailbox::Message;
use super::types::SearchKey;

/// What a search key is evaluated against.
pub struct SearchCtx<'a> {
    pub msg: &'a Message,
    /// 1-based sequence number, and the largest MSN and UID (for `*`).
    pub msn: u32,
    pub max_msn: u32,
    pub max_uid: u32,
    /// Keyword names of the folder (index = letter).
    pub keywords: &'a [String],
    /// The message bytes, if the key needs them (`SearchKey::needs_header`).
    pub data: Option<&'a [u8]>,
}

/// Whether the message matches.
pub fn matches(_key: &SearchKey, _ctx: &SearchCtx<'_>) -> bool {
    todo!()
}
