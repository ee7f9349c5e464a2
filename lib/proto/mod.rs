//! The protocol kit: the pieces SMTP, POP3 (and IMAP) share, all without I/O.
//! Each takes the bytes that have arrived and says what it needs next, so every
//! one is tested by feeding its input split at every byte.

pub mod base64;
pub mod line;
pub mod sasl;
