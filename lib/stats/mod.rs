//! Counters and `postern-admin stats`: what the programs count as they work
//! (`counters`, kept in small shared files, `file`) and the report built from
//! them and the queue, as text or in Prometheus's text format (`report`).
//! INTERNALS.md ("Metrics") has the design.

pub mod counters;
pub mod file;
pub mod report;

pub use counters::{smtpd_accepted, smtpd_reply, SendStats};
pub use report::{gather, Report, StatsError};
