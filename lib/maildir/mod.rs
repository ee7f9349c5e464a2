//! Maildirs: the names of their files (shared by delivery and the mailbox
//! servers) and delivery into one.

pub mod deliver;
pub mod name;

pub use deliver::{deliver, MaildirError};
