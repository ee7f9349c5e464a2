//! The queue file: the envelope postern-queue reads from its client, and a whole
//! stored file (message, envelope, trailer) as postern-send reads it from disk.
//! Any bytes: no panic. An envelope that parses is written back as it parses,
//! and stored behind any message with a trailer, reads back as the same sender
//! and recipients, none done.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::queue::format::{parse_stored, Envelope, MAX_ENVELOPE, TRAILER_LEN};

fuzz_target!(|data: &[u8]| {
    // The bytes as a stored queue file.
    if let Ok((_, _, _, message_len)) = parse_stored(data) {
        assert!(message_len as usize <= data.len() - TRAILER_LEN);
        assert!(data.len() - TRAILER_LEN - message_len as usize <= MAX_ENVELOPE);
    }
    // The bytes as an envelope after a message: the first byte says how much of
    // the rest is the message.
    let Some((&cut, rest)) = data.split_first() else { return };
    let (message, envelope) = rest.split_at((cut as usize).min(rest.len()));
    let Ok(env) = Envelope::parse(envelope) else { return };
    // Written back, it parses to the same thing (DSN keywords come back in
    // upper case, so the bytes may differ the first time, never the second).
    let again = Envelope::parse(&env.encode()).expect("an envelope we wrote parses");
    assert_eq!(again.encode(), env.encode(), "an envelope that parses is written back the same");
    let mut file = message.to_vec();
    file.extend_from_slice(&env.encode());
    file.extend_from_slice(format!("PQ1:{:016x}:{:010}\n", message.len(), 1_700_000_000).as_bytes());
    let (sender, recipients, birth, len) = parse_stored(&file).expect("a file we wrote reads back");
    assert_eq!((sender, birth, len as usize), (env.sender, 1_700_000_000, message.len()));
    assert_eq!(
        recipients.iter().map(|r| (r.address.clone(), r.done)).collect::<Vec<_>>(),
        env.recipients.into_iter().map(|a| (a, false)).collect::<Vec<_>>()
    );
});
