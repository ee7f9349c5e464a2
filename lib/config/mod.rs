//! Configuration: control files and the registry of settings, constant databases,
//! and postern-listen's access rules.

pub mod cdb;
pub mod check;
pub mod control;
pub mod routing;
pub mod rules;
pub mod settings;
