//! The submission port's header completion: any message, split anywhere, gives
//! the same result, and that result is the message with one run of bytes
//! inserted (the fields added), nothing else changed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::smtp::submission::HeaderCompleter;
use std::time::{Duration, UNIX_EPOCH};

const SECS: u64 = 1_795_291_106;

fn complete(pieces: &[&[u8]]) -> Vec<u8> {
    let mut c = HeaderCompleter::new("id.example", UNIX_EPOCH + Duration::from_secs(SECS));
    let mut out = Vec::new();
    for p in pieces {
        c.feed(p, &mut out);
    }
    c.finish(&mut out);
    out
}

fn normalized(mut out: Vec<u8>) -> Vec<u8> {
    // The Message-ID's random part differs from run to run: blank it after
    // every "<SECS.PID." (the input may hold that text too, blanked alike).
    let tag = format!("<{SECS}.{}.", std::process::id()).into_bytes();
    let mut i = 0;
    while let Some(at) = out[i..].windows(tag.len()).position(|w| w == tag) {
        let start = i + at + tag.len();
        let end = (start + 8).min(out.len());
        out[start..end].fill(b'x');
        i = start;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let at = data.first().map(|&b| b as usize % (data.len() + 1)).unwrap_or(0);
    let whole = complete(&[data]);
    assert_eq!(normalized(whole.clone()), normalized(complete(&[&data[..at], &data[at..]])));
    let same = whole.iter().zip(data).take_while(|(a, b)| a == b).count();
    assert!(whole.len() >= data.len() && whole.ends_with(&data[same..]), "only an insertion");
});
