//! Logins: the checkpassword interface (both sides) and postern-auth's checks.

pub mod checkpassword;
pub mod limits;
pub mod verify;
