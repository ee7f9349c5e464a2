//! All integration tests, in one binary (ripgrep's way). Each module is one area;
//! `fixture` runs the real programs in temporary homes and instances and talks
//! to them.

mod fixture;

mod admin;
mod aliases;
mod authcheck;
mod crash;
mod dane;
mod deb;
mod dkim;
mod groupsync;
mod helpers;
mod inject;
mod install;
mod local;
mod lworker;
mod ops;
mod ports;
mod privs;
mod queue;
mod queue_admin;
mod regression;
mod rworker;
mod send;
mod sendmail;
mod srs;
mod stats;

// SMTP receive
mod listen;
mod smtp;

// POP3
mod auth;
mod pop3;

// IMAP
mod imap;
mod imap_bad;
mod imap_cache;
mod imap_clients;
mod imap_condstore;

// Remote delivery
mod mtasts;
mod remote;
