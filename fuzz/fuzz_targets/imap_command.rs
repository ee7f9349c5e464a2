//! IMAP commands: the reader (framing, literals, limits) and the command
//! parser. Any input: no panic, the same commands and refusals whatever the
//! split, and memory bounded by the limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::imap::command;
use postern::imap::parse::{Event, Limits, Reader};

const LIMITS: Limits = Limits { line: 200, literal: 300, command: 1000, depth: 5, items: 50 };

fn events(pieces: &[&[u8]]) -> Vec<String> {
    let mut r = Reader::new(LIMITS);
    let mut got = Vec::new();
    for p in pieces {
        r.push(p);
        loop {
            match r.event() {
                Event::NeedMore => break,
                Event::Continue => {}
                Event::Reject(rej) => got.push(rej.line()),
                Event::Command(tag, tokens) => got.push(match command::parse(&tag, &tokens) {
                    Ok(c) => format!("{tag} {c:?}"),
                    Err(rej) => rej.line(),
                }),
            }
        }
    }
    got
}

fuzz_target!(|data: &[u8]| {
    let at = data.first().map(|&b| b as usize % (data.len() + 1)).unwrap_or(0);
    let whole = events(&[data]);
    assert_eq!(whole, events(&[&data[..at], &data[at..]]));
    // Raw lines (IDLE's DONE, AUTHENTICATE) never panic either.
    let mut r = Reader::new(LIMITS);
    r.push(data);
    while r.take_line().is_some() {}
});
