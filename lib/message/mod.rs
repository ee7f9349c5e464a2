//! Messages as bytes: header fields and dates.

pub mod headers;
