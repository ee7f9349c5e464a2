//! postern: a mail suite in the qmail tradition.
//!
//! The programs in `programs/` are thin: they read arguments, file descriptors and
//! the environment, drop or check privileges, call into this library, and map the
//! result to their protocol and exit code. Everything shared lives here, one module
//! per concept.

pub mod address;
pub mod cdb;
pub mod control;
pub mod dotqmail;
pub mod dsn;
pub mod error;
pub mod headers;
pub mod helpers;
pub mod home;
pub mod inject;
pub mod local;
pub mod log;
pub mod lspawn;
pub mod maildir;
pub mod netio;
pub mod mbox;
pub mod privs;
pub mod queue;
pub mod queued;
pub mod rspawn;
pub mod scheduler;
pub mod settings;
pub mod spawn;
pub mod sys;
pub mod tls;
pub mod users;
pub mod vacation;

// SMTP receive (issue 3): its modules go here.
pub mod listen;
pub mod rules;
pub mod smtp;
pub mod smtpd;

// POP3 (issue 4): its modules go here.
pub mod checkpassword;
pub mod mailbox;
pub mod pop3;
pub mod pop3d;
pub mod popup;
pub mod tlsrelay;

// Remote delivery (issue 5): its modules go here.
pub mod mx;
pub mod outgoing;
pub mod remote;
pub mod smtpreply;
