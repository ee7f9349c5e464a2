//! Messages as bytes: header fields and dates.

pub mod date;
pub mod file;
pub mod headers;
