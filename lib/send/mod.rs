//! The delivery side: postern-send (the scheduler's state machine and the
//! daemon around it), the spawn protocol and the two spawners, bounces, and
//! postern-start's supervision.

pub mod daemon;
pub mod dsn;
pub mod lspawn;
pub mod lworker;
pub mod rspawn;
pub mod rworker;
pub mod scheduler;
pub mod spawn;
pub mod spawner;
pub mod supervisor;
pub mod workers;
