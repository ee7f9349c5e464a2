//! The delivery side: postern-send's scheduler, the spawn protocol and the two
//! spawners, and bounces.

pub mod dsn;
pub mod lspawn;
pub mod rspawn;
pub mod scheduler;
pub mod spawn;
