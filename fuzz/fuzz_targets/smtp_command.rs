//! The command side of postern-smtpd: line splitting (the protocol kit's line
//! reader) and the command parser. Any input: no panic, bounded lines, and the
//! same lines whatever the split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::proto::line::{Line, LineReader};
use postern::smtp::command::{parse_command, MAX_COMMAND_LINE};

fn lines(pieces: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
    let mut r = LineReader::new(MAX_COMMAND_LINE);
    let mut got = Vec::new();
    for p in pieces {
        r.push(p);
        while let Some(line) = r.next_line() {
            got.push(match line {
                Line::Text(l) => {
                    assert!(l.len() < MAX_COMMAND_LINE);
                    Some(l)
                }
                Line::TooLong => None,
            });
        }
        assert!(r.pending().len() < MAX_COMMAND_LINE, "the reader must not buffer without bound");
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
