//! SRS local parts (lib/srs): any bytes parsed and checked as a bounce to us
//! would be; whatever parses is rewritten again (as a forward of it would be).
//! No panic; a forward of an ordinary address always checks back to it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::srs::{parse, Srs};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let srs = Srs::new("fwd.example", &["old", "secret"], 21).expect("a secret");
    let now = 1_700_000_000;
    let _ = parse(s);
    let _ = srs.reverse(s, now);
    let local = s.split('@').next().unwrap_or("");
    if let Some(f) = srs.forward(&format!("{s}@orig.example"), now) {
        let back = srs.reverse(&f[..f.rfind('@').expect("our domain")], now);
        if !local.is_empty() && !postern::srs::is_srs(s) && !s.contains('@') {
            assert_eq!(back.map(|r| r.address).as_deref(), Ok(format!("{s}@orig.example").as_str()));
        }
    }
});
