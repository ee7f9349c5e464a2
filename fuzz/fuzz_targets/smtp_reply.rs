//! SMTP replies as postern-remote reads them from a remote server: the same
//! reply whatever the split, bounded, and the parts it uses (status codes, EHLO
//! keywords, the quoted text for bounces) never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::smtp::reply::{parse, MAX_LINE, MAX_LINES};
use postern::status::Status;

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    // Any prefix of the input is "need more" or the same answer (as the client
    // reads a reply a chunk at a time).
    let at = data.first().map(|&b| b as usize % (data.len() + 1)).unwrap_or(0);
    match parse(&data[..at]) {
        Ok(None) => {}
        Ok(Some((r, used))) => assert_eq!(whole.clone().ok().flatten(), Some((r, used))),
        Err(e) => assert_eq!(whole.clone().err(), Some(e)),
    }
    if let Ok(Some((r, used))) = whole {
        assert!(used <= data.len() && r.lines.len() <= MAX_LINES && (200..600).contains(&r.code));
        assert!(r.lines.iter().all(|l| l.len() < 3 * MAX_LINE && !l.contains(['\r', '\n', '\0'])));
        if let Some(s) = r.status() {
            assert_eq!(u16::from(s.class()), r.class());
        }
        let _ = (r.status_or_class(), r.quoted(), r.keywords().count());
    }
    if data.len() < MAX_LINE && !data.contains(&b'\n') {
        assert_eq!(parse(data), Ok(None));
    }
    let text = String::from_utf8_lossy(data);
    if let Some((s, rest)) = Status::split(&text) {
        assert_eq!(Status::parse(&s.to_string()), Some(s));
        assert!(rest.len() < text.len());
    }
});
