//! What postern-send reads from its trigger FIFO (`queue::control`: wake-up
//! bytes and the administrator's requests, from root and group postern) and
//! what postern-queued reads from queue/info for mailq (`queue::info`, written
//! by postern-send). Any bytes: no panic. Fed whole or cut at any point, the
//! trigger's bytes give the same requests; every request that parses is
//! written back as the bytes it came from; info records round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::queue::control::{Reader, Wake};
use postern::queue::info;

fuzz_target!(|data: &[u8]| {
    let mut whole = Wake::default();
    Reader::default().feed(data, &mut whole);
    let cut = data.first().map(|&b| b as usize % (data.len() + 1)).unwrap_or(0);
    let mut split = Wake::default();
    let mut r = Reader::default();
    r.feed(&data[..cut], &mut split);
    r.feed(&data[cut..], &mut split);
    assert_eq!(whole, split, "cut at {cut}");
    for req in &whole.requests {
        let mut again = Wake::default();
        Reader::default().feed(&req.encode(), &mut again);
        assert_eq!(again.requests, vec![req.clone()]);
    }
    let records = info::parse(data);
    assert_eq!(info::parse(info::encode(&records).as_bytes()), records);
});
