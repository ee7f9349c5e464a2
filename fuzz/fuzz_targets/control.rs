//! Control files as every program reads them (control::parse_lines, then the
//! Number check of the settings reader): any bytes never panic, and the lines
//! given are trimmed, non-empty, not comments, numbered in order.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::config::control::parse_lines;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    match parse_lines(Path::new("control/x"), data.to_vec()) {
        Ok(lines) => {
            let mut last = 0;
            for (n, l) in &lines {
                assert!(*n > last && !l.is_empty() && !l.starts_with('#') && l.trim() == l, "{n} {l:?}");
                last = *n;
                let _ = l.parse::<u64>();
            }
        }
        Err(e) => {
            assert!(std::str::from_utf8(data).is_err());
            let _ = e.to_string();
        }
    }
});
