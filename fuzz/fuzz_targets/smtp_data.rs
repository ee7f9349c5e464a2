//! The DATA reader: any input, split anywhere, gives the same message and the
//! same end, and the message never holds a CR.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::smtp::data::{DataReader, DataStatus};

fn read(pieces: &[&[u8]]) -> (Vec<u8>, usize, DataStatus) {
    let mut r = DataReader::default();
    let mut out = Vec::new();
    let mut used = 0;
    for p in pieces {
        let (n, st) = r.feed(p, &mut out);
        used += n;
        // RFC 1870's size: each LF of the output was a CRLF.
        assert_eq!(r.bytes, (out.len() + out.iter().filter(|&&b| b == b'\n').count()) as u64);
        assert_eq!(r.nul, out.contains(&0));
        if st != DataStatus::NeedMore {
            return (out, used, st);
        }
        assert_eq!(n, p.len());
    }
    (out, used, DataStatus::NeedMore)
}

fuzz_target!(|data: &[u8]| {
    let at = data.first().map(|&b| b as usize % (data.len() + 1)).unwrap_or(0);
    let whole = read(&[data]);
    let split = read(&[&data[..at], &data[at..]]);
    assert_eq!(whole.2, split.2);
    if whole.2 == DataStatus::End {
        assert_eq!(whole, split);
        // It ended exactly at CRLF.CRLF (or at .CRLF at the very start).
        let end = &data[..whole.1];
        assert!(end.ends_with(b"\r\n.\r\n") || end == b".\r\n");
        assert!(!whole.0.contains(&b'\r'), "CR only ever arrives as part of CRLF");
    }
});
