//! All integration tests, in one binary (ripgrep's way). Each module is one area;
//! `fixture` runs the real programs in temporary homes and instances and talks
//! to them.

mod fixture;

mod admin;
mod authcheck;
mod crash;
mod dane;
mod dkim;
mod helpers;
mod inject;
mod install;
mod local;
mod privs;
mod queue;
mod regression;
mod send;
mod srs;

// SMTP receive
mod listen;
mod smtp;

// POP3
mod auth;
mod pop3;

// IMAP
mod imap;
mod imap_bad;
mod imap_clients;

// Remote delivery
mod mtasts;
mod remote;
