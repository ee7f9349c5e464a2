//! MTA-STS input from the network, as postern-remote reads it: the `_mta-sts`
//! TXT record, the HTTPS reply carrying the policy, the policy file, and the
//! cache file made from it. Never panics; a parsed policy keeps its limits, and
//! a cache entry round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::smtp::mtasts::{mx_matches, parse_policy, parse_response, parse_txt, Cached, MAX_AGE_LIMIT, MAX_POLICY};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(id) = parse_txt(&text) {
        assert!(!id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    if let Ok(body) = parse_response(data) {
        assert!(body.len() <= MAX_POLICY);
    }
    if let Ok(p) = parse_policy(data) {
        assert!(p.max_age <= MAX_AGE_LIMIT);
        for m in &p.mx {
            let _ = mx_matches(m, &text);
            assert!(!m.contains(['\r', '\n', ' ']));
        }
        let c = Cached { fetched: 1, id: "fuzz".into(), policy: p, body: data.to_vec() };
        assert_eq!(Cached::parse(&c.encode()), Ok(c));
    }
    let _ = Cached::parse(data);
    if let Some((a, b)) = text.split_once('\n') {
        let _ = mx_matches(a, b);
    }
});
