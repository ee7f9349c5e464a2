//! users/assign and users/virtual as postern-admin compiles them: any text never
//! panics; assign records decode back to their fields through the cdb.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::config::cdb;
use postern::users::edit::{parse_assign, parse_virtual_line};
use postern::users::lookup::decode_assign;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("users/assign");
    if let Ok(records) = parse_assign(path, text) {
        let db = cdb::encode(&records).expect("small");
        for (k, v) in &records {
            assert!(k[0] == b'=' || k[0] == b'+');
            // The first record for a key is the one a lookup finds.
            let first = records.iter().find(|(k2, _)| k2 == k).map(|(_, v)| v.as_slice());
            assert_eq!(cdb::get(&db, k), first);
            let u = decode_assign(v, "").expect("a record we wrote decodes");
            assert!(u.home.is_absolute(), "{u:?}");
        }
    }
    for (i, line) in text.lines().enumerate() {
        if let Ok(v) = parse_virtual_line(Path::new("users/virtual"), i + 1, line) {
            assert!(v.address.contains('@') && v.home.is_absolute(), "{v:?}");
        }
    }
});
