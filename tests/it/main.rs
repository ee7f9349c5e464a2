//! All integration tests, in one binary (ripgrep's way). Each module is one area;
//! `harness` runs the real programs in temporary instances.

mod harness;

mod admin;
mod crash;
mod helpers;
mod inject;
mod install;
mod local;
mod privs;
mod queue;
mod send;

// SMTP receive (issue 3)
mod listen;
mod smtp;

// POP3 (issue 4)
mod auth;
mod pop3;

// Remote delivery (issue 5)
mod remote;
