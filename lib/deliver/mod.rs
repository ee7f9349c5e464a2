//! Local delivery, as the recipient: dot-qmail files, mbox, programs, forwards,
//! and the helper programs run from dot-qmail lines.

pub mod alias;
pub mod dotqmail;
pub mod helpers;
pub mod local;
pub mod mbox;
pub mod program;
pub mod vacation;
