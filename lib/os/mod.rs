//! The operating system: the one module with `unsafe` (sys), service users and
//! privileges, where an installation lives, and log lines.

pub mod fs;
pub mod groupsync;
pub mod home;
pub mod log;
pub mod notify;
pub mod out;
pub mod privs;
pub mod random;
pub mod slots;
pub mod sys;
pub mod time;
