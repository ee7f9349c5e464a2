//! postern: a mail suite in the qmail tradition.
//!
//! The programs in `programs/` are thin: they read arguments, file descriptors and
//! the environment, drop or check privileges, call into this library, and map the
//! result to their protocol and exit code. Everything shared lives here, one
//! folder per subsystem and one module per concept. INTERNALS.md is the map.

pub mod address;
pub mod error;
pub mod status;

pub mod auth;
pub mod config;
pub mod deliver;
pub mod inject;
pub mod maildir;
pub mod message;
pub mod net;
pub mod os;
pub mod pop3;
pub mod proto;
pub mod queue;
pub mod send;
pub mod smtp;
pub mod users;
