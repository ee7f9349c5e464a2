//! tcp.smtp access rules: the text compiler, then lookups in the cdb it builds.
//! Any text: no panic. A rule's address is looked up and finds a decision; for
//! the first line, exactly its own (the first line for a prefix wins).
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::config::{cdb, rules};
use std::net::IpAddr;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = rules::parse(Path::new("control/tcp.smtp"), text) else { return };
    let db = cdb::encode(&rules::records(&parsed)).expect("small");
    let get = |k: &[u8]| cdb::get(&db, k).map(<[u8]>::to_vec);
    for line in text.lines() {
        // A whole address (no prefix or range) finds a decision, and it is one
        // of the file's: decisions survive the cdb's encoding.
        let line = line.trim();
        let Some(cut) = [":allow", ":deny"].iter().filter_map(|w| line.find(w)).min() else { continue };
        let Ok(ip) = line[..cut].parse::<IpAddr>() else { continue };
        let d = rules::lookup_with(get, ip).expect("a rule's address finds a decision");
        assert!(parsed.iter().any(|r| r.decision == d), "{d:?} is none of the file's decisions");
    }
    for ip in ["127.0.0.1", "::1", "::ffff:10.0.0.1", "2001:db8::7"] {
        let _ = rules::lookup_with(get, ip.parse().unwrap());
    }
});
