//! FETCH item values. (API first; bodies being written.)

use super::mailbox::Message;
use super::types::FetchAtt;

/// What one FETCH needs about a message besides the item list.
pub struct FetchCtx<'a> {
    pub msg: &'a Message,
    /// `Mailbox::flags_of(msg)`, already rendered as `(\Seen $Label1)`.
    pub flags: &'a str,
    /// The file's bytes; None when no item needs them (`FetchAtt::needs_file`).
    pub data: Option<&'a [u8]>,
}

/// Append `NAME value` for one item (e.g. `RFC822.SIZE 1234`,
/// `BODY[HEADER] {56}\r\n...`) to `out`. The caller writes `* n FETCH (`,
/// the spaces between items and `)\r\n`.
pub fn write_item(_out: &mut Vec<u8>, _att: &FetchAtt, _ctx: &FetchCtx<'_>) {
    todo!()
}

/// Append an IMAP string: quoted if short and plain, else a literal.
pub fn write_string(_out: &mut Vec<u8>, _s: &[u8]) {
    todo!()
}

/// Append an nstring: NIL for None.
pub fn write_nstring(_out: &mut Vec<u8>, _s: Option<&[u8]>) {
    todo!()
}
