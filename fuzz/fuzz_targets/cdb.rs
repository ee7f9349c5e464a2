//! cdb files: any bytes read as a database never panic (a damaged one reads as
//! "not found"), and records written then read give the first value per key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::config::cdb;

fuzz_target!(|data: &[u8]| {
    // The bytes as a database, looked up with keys taken from them.
    for k in [&b""[..], &data[..data.len().min(3)], &data[data.len() / 2..]] {
        if let Some(v) = cdb::get(data, k) {
            assert!(v.len() <= data.len());
        }
    }
    // The bytes as records: NUL-separated key, value, key, value...
    let mut parts = data.split(|&b| b == 0);
    let mut records = Vec::new();
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        records.push((k.to_vec(), v.to_vec()));
    }
    let db = cdb::encode(&records).expect("small");
    for (k, _) in &records {
        let first = records.iter().find(|(k2, _)| k2 == k).map(|(_, v)| v.as_slice());
        assert_eq!(cdb::get(&db, k), first);
    }
    if !records.iter().any(|(k, _)| k.as_slice() == b"absent\xff") {
        assert_eq!(cdb::get(&db, b"absent\xff"), None);
    }
});
