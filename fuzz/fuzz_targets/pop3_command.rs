//! POP3 commands: the line reader as postern-pop3d uses it, then the command
//! parser. Any input: no panic, the same commands whatever the split, and numbers
//! only from digits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::pop3::command::{parse, Command, MAX_COMMAND};
use postern::proto::line::{Line, LineReader};

fn commands(pieces: &[&[u8]]) -> Vec<Option<Command>> {
    let mut r = LineReader::new(MAX_COMMAND);
    let mut got = Vec::new();
    for p in pieces {
        r.push(p);
        while let Some(line) = r.next_line() {
            got.push(match line {
                Line::Text(l) => {
                    assert!(l.len() < MAX_COMMAND);
                    Some(parse(&l))
                }
                Line::TooLong => None,
            });
        }
        assert!(r.pending().len() < MAX_COMMAND, "the reader must not buffer without bound");
    }
    got
}

fuzz_target!(|data: &[u8]| {
    let at = data.first().map(|&b| b as usize % (data.len() + 1)).unwrap_or(0);
    let whole = commands(&[data]);
    assert_eq!(whole, commands(&[&data[..at], &data[at..]]));
    for c in whole.into_iter().flatten() {
        if let Command::Unknown(v) = &c {
            assert!(v.chars().count() <= 16, "an unknown verb is echoed at most 16 characters: {c:?}");
        }
    }
    // A whole line given directly (no reader): the parser alone never panics.
    let _ = parse(data);
});
