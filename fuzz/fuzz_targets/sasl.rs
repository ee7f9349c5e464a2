//! SASL (PLAIN, LOGIN) and its base64: any responses in any order never panic;
//! base64 decodes what it encodes and refuses what it cannot re-encode exactly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::proto::base64;
use postern::proto::sasl::{Exchange, Mechanism, Step};

fuzz_target!(|data: &[u8]| {
    // base64: encode/decode round trip, and a decoded input re-encodes to itself
    // (strict: one encoding per byte string, except for the unused low bits).
    let enc = base64::encode(data);
    assert_eq!(base64::decode(enc.as_bytes()).as_deref(), Some(data));
    if let Some(dec) = base64::decode(data) {
        assert_eq!(dec.len(), data.len() / 4 * 3 - data.iter().rev().take_while(|&&c| c == b'=').count());
        assert_eq!(base64::decode(base64::encode(&dec).as_bytes()), Some(dec));
    }
    // An exchange: the first byte picks the mechanism and whether there is an
    // initial response; the rest are response lines.
    let Some((&how, rest)) = data.split_first() else { return };
    let mechanism = if how & 1 == 0 { Mechanism::Plain } else { Mechanism::Login };
    let mut lines = rest.split(|&b| b == b'\n');
    let initial = if how & 2 == 0 { None } else { lines.next() };
    let Ok((mut x, mut step)) = Exchange::start(mechanism, initial) else { return };
    for line in lines {
        match step {
            Step::Done(c) => {
                assert!(mechanism == Mechanism::Login || !c.login.is_empty());
                return;
            }
            Step::Challenge(_) => match x.respond(line) {
                Ok(s) => step = s,
                Err(_) => return,
            },
        }
    }
    let _ = Mechanism::parse(&String::from_utf8_lossy(rest));
});
