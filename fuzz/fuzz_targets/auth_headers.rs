//! The header code of sender authentication that is ours (mail-auth's parsers are
//! not): removing Authentication-Results fields that claim our authserv-id
//! (`mailauth::header::strip_ours`, run on every checked arrival) and finding the
//! From: domain the queue signs for (`dkim::from_domain`). Any bytes: no panic;
//! stripping only removes (never adds) bytes, keeps the body, and is idempotent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::dkim::from_domain;
use postern::mailauth::header::strip_ours;

fuzz_target!(|data: &[u8]| {
    let (out, removed) = strip_ours(data, "mx.example.org");
    assert!(out.len() <= data.len());
    assert_eq!(removed == 0, out.len() == data.len(), "a field removed iff bytes removed");
    let (again, more) = strip_ours(&out, "mx.example.org");
    assert_eq!((again.as_slice(), more), (out.as_slice(), 0), "stripping twice changes nothing more");
    if let Some(d) = from_domain(data) {
        assert!(!d.is_empty() && d == d.to_ascii_lowercase(), "{d:?}");
    }
});
