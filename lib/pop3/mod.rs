//! POP3: commands, the login state (postern-popup), the mailbox and the
//! transaction state (postern-pop3d).

pub mod command;
pub mod login;
pub mod mailbox;
pub mod server;
