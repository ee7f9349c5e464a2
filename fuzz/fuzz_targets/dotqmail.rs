//! .qmail files as postern-local reads them from a user's home: any bytes give
//! delivery lines without panic, each line of a kind its first character says.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::deliver::dotqmail::{classify, parse, safe_ext, Line};

fuzz_target!(|data: &[u8]| {
    let lines = parse(data);
    for l in &lines {
        match l {
            Line::Program(_) => {}
            Line::Forward(a) => assert!(!a.is_empty() && !a.starts_with([' ', '\t'])),
            Line::Maildir(p) => assert!(p.to_string_lossy().ends_with('/')),
            Line::Mbox(p) => assert!(p.to_string_lossy().starts_with(['/', '.'])),
        }
    }
    let text = String::from_utf8_lossy(data);
    // Each line alone classifies as it did in the file.
    let again: Vec<Line> = text.lines().filter_map(classify).collect();
    assert_eq!(lines, again);
    // An extension from an address never names a ".." (a '/' in it can only
    // reach into a ~/.qmail-* directory the user made, as with qmail).
    let ext = safe_ext(&text);
    assert!(!ext.contains('.'), "{ext:?}");
});
