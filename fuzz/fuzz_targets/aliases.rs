//! The aliases file as newaliases compiles it, and :include: files as an
//! alias delivery reads them (written by whoever owns them): any text never
//! panics; every compiled value reads back as itself from the cdb record.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::users::aliases::{decode, parse, split_values, Item};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(aliases) = parse(Path::new("/etc/aliases"), text) {
        for a in aliases {
            assert!(!a.name.is_empty() && !a.items.is_empty(), "{a:?}");
            let record: Vec<String> = a.items.iter().map(Item::encode).collect();
            assert_eq!(decode(record.join("\0").as_bytes()), a.items);
        }
    }
    for line in text.lines() {
        for v in split_values(line) {
            let _ = Item::parse(&v);
        }
    }
});
