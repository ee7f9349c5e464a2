//! SMTP: the wire format, the server session (postern-smtpd) and the client
//! (postern-remote) with its DNS and per-domain policy.

pub mod client;
pub mod command;
pub mod dane;
pub mod data;
pub mod mtasts;
pub mod mx;
pub mod outgoing;
pub mod reply;
pub mod server;
pub mod sessionlog;
pub mod submission;
