//! The command side of postern-smtpd: line splitting and the command parser.
//! Any input: no panic, bounded lines, and the same lines whatever the split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::smtp::command::{parse_command, LineEvent, LineReader, MAX_COMMAND_LINE};

fn lines(pieces: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
    let mut r = LineReader::default();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for p in pieces {
        buf.extend_from_slice(p);
        loop {
            let (n, ev) = r.next(&buf, MAX_COMMAND_LINE);
            let ev = ev.map(|e| match e {
                LineEvent::Line(l) => {
                    assert!(l.len() <= MAX_COMMAND_LINE);
                    Some(l.to_vec())
                }
                LineEvent::TooLong => None,
            });
            buf.drain(..n);
            match ev {
                Some(e) => got.push(e),
                None => break,
            }
        }
        assert!(buf.len() <= MAX_COMMAND_LINE + 1, "the reader must not buffer without bound");
    }
    got
}

fuzz_target!(|data: &[u8]| {
    let at = data.first().map(|&b| b as usize % (data.len() + 1)).unwrap_or(0);
    let whole = lines(&[data]);
    assert_eq!(whole, lines(&[&data[..at], &data[at..]]));
    for l in whole.into_iter().flatten() {
        if let Ok(c) = parse_command(&l) {
            // Whatever parses came from valid UTF-8 without control characters.
            assert!(std::str::from_utf8(&l).is_ok(), "{c:?}");
        }
    }
});
