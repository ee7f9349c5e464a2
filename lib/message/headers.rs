//! Header helpers: line ends, and finding, testing and removing header fields in
//! a message's raw header section (injection completes headers with them).
//!
//! These work on bytes, not on a parsed message, so every byte of the header section
//! that is kept goes to the queue exactly as it came in.

use std::ops::Range;

/// Convert CRLF line ends to LF: the queue stores LF, as qmail's does. A lone CR
/// that is not followed by LF is left alone.
pub fn crlf_to_lf(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    let mut i = 0;
    while i < msg.len() {
        if msg[i] == b'\r' && msg.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(msg[i]);
        i += 1;
    }
    out
}

/// Whether `line` starts a header field: a name of printable ASCII other than ':'
/// (optionally followed by blanks, RFC 5322's obsolete syntax), then ':'.
fn is_field_start(line: &[u8]) -> bool {
    let name_len = line.iter().take_while(|&&b| (b'!'..=b'~').contains(&b) && b != b':').count();
    if name_len == 0 {
        return false;
    }
    let rest = &line[name_len..];
    let blanks = rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    rest.get(blanks) == Some(&b':')
}

/// Split an LF-terminated message: `(end of the header section, start of the body)`.
/// The empty line between them belongs to neither; when the header section ends at
/// a line that is not a header (no empty line), both are the same offset.
pub fn split(msg: &[u8]) -> (usize, usize) {
    let mut pos = 0;
    while pos < msg.len() {
        let end = msg[pos..].iter().position(|&b| b == b'\n').map(|i| pos + i + 1).unwrap_or(msg.len());
        let line = &msg[pos..end];
        if line == b"\n" {
            return (pos, end);
        }
        let continuation = pos > 0 && (line[0] == b' ' || line[0] == b'\t');
        if !continuation && !is_field_start(line) {
            return (pos, pos);
        }
        pos = end;
    }
    (msg.len(), msg.len())
}

/// One header field of a header section: its name as written and the bytes it
/// spans, continuation lines included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub range: Range<usize>,
}

/// The fields of a header section (as returned by `split`).
pub fn fields(header: &[u8]) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    let mut pos = 0;
    while pos < header.len() {
        let end = header[pos..].iter().position(|&b| b == b'\n').map(|i| pos + i + 1).unwrap_or(header.len());
        let line = &header[pos..end];
        match out.last_mut() {
            Some(f) if line[0] == b' ' || line[0] == b'\t' => f.range.end = end,
            _ => {
                let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
                let name = String::from_utf8_lossy(&line[..colon]).trim_end().to_string();
                out.push(Field { name, range: pos..end });
            }
        }
        pos = end;
    }
    out
}

/// Whether a header section has a field called `name` (any case).
pub fn has(header: &[u8], name: &str) -> bool {
    fields(header).iter().any(|f| f.name.eq_ignore_ascii_case(name))
}

/// The header section without the fields named in `names` (any case).
pub fn remove(header: &[u8], names: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    for f in fields(header) {
        if !names.iter().any(|n| f.name.eq_ignore_ascii_case(n)) {
            out.extend_from_slice(&header[f.range]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_fields_remove() {
        let m = crlf_to_lf(b"To: a@b\r\nBcc: x@y,\r\n z@w\r\nSubject: hi\r\n\r\nbody\r\nBcc: not a header\r\n");
        let (h, b) = split(&m);
        assert_eq!(&m[b..], b"body\nBcc: not a header\n");
        let header = &m[..h];
        let f = fields(header);
        assert_eq!(f.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["To", "Bcc", "Subject"]);
        assert!(has(header, "bcc"));
        assert_eq!(remove(header, &["BCC"]), b"To: a@b\nSubject: hi\n");
        // No empty line: the header section ends at the first non-header line.
        let m = b"Subject: x\nthis is body\n";
        assert_eq!(split(m), (11, 11));
        // No headers at all.
        assert_eq!(split(b"hello\n"), (0, 0));
        assert_eq!(split(b""), (0, 0));
        assert_eq!(split(b"Subject: only"), (13, 13));
        assert_eq!(crlf_to_lf(b"a\rb\r\n"), b"a\rb\n");
    }
}
