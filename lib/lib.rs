//! postern: a mail suite in the qmail tradition.
//!
//! The programs in `programs/` are thin: they read arguments, file descriptors and
//! the environment, drop or check privileges, call into this library, and map the
//! result to their protocol and exit code. Everything shared lives here, one
//! folder per subsystem and one module per concept. INTERNALS.md is the map.

pub mod address;
pub mod error;
pub mod status;

pub mod auth;
pub mod config;
pub mod deliver;
pub mod dkim;
pub mod imap;
pub mod inject;
pub mod mailauth;
pub mod maildir;
pub mod message;
pub mod net;
pub mod os;
pub mod pop3;
pub mod proto;
pub mod queue;
pub mod send;
pub mod smtp;
pub mod srs;
pub mod stats;
pub mod users;
pub mod version;

#[cfg(test)]
mod testing;

/// The suite's programs: the `[[bin]]` entries of Cargo.toml, the one list that
/// scripts/programs.sh and the tests read too.
pub fn programs() -> impl Iterator<Item = &'static str> {
    include_str!("../Cargo.toml")
        .lines()
        .filter_map(|l| l.strip_prefix("name = \"")?.strip_suffix('"'))
        .filter(|n| n.starts_with("postern-"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_program_file_is_built_and_every_program_has_a_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("programs");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".rs").map(str::to_string))
            .collect();
        files.sort();
        let mut listed: Vec<String> = super::programs().map(str::to_string).collect();
        listed.sort();
        assert_eq!(files, listed, "programs/*.rs and Cargo.toml's [[bin]] entries must agree");
        let manifest = include_str!("../Cargo.toml");
        for p in &listed {
            assert!(manifest.contains(&format!("path = \"programs/{p}.rs\"")), "{p} is built from programs/{p}.rs");
        }
    }
}
