//! SMTP replies (RFC 5321 4.2): one or more lines `NNN-text` ending with
//! `NNN text`, all with the same code; written by postern-smtpd (`format`) and
//! read by postern-remote (`parse`).
//!
//! The parser never does I/O: it takes the bytes read so far and returns a reply
//! and how many bytes it used, or "need more". Lines longer than RFC 5321 allows
//! (with room to spare) and replies with too many lines are errors, so a peer that
//! sends endless garbage cannot make us buffer without bound.

use crate::status::Status;
use std::fmt;

/// Longest reply line we accept, CRLF included (RFC 5321 allows 512).
pub const MAX_LINE: usize = 2048;
/// Most lines in one reply (EHLO answers have a dozen or so).
pub const MAX_LINES: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, without code, separator and line end.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    pub fn is_ok(&self) -> bool {
        self.class() == 2
    }

    /// The RFC 3463 status at the start of the first line (`4.2.1`), if it has
    /// one of the reply's class.
    pub fn status(&self) -> Option<Status> {
        let (s, _) = Status::split(self.lines.first()?)?;
        (u16::from(s.class()) == self.class()).then_some(s)
    }

    /// The status to quote in a report: the server's own, else its class's
    /// generic one (5.0.0, 4.0.0; 2.0.0 for success).
    pub fn status_or_class(&self) -> Status {
        self.status().unwrap_or(match self.class() {
            2 => Status::OK,
            4 => Status::of_kind(crate::error::Kind::Temporary),
            _ => Status::of_kind(crate::error::Kind::Permanent),
        })
    }

    /// The reply as the server sent it, one line per line, for reports and logs.
    pub fn quoted(&self) -> String {
        let mut out = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!("{} {}", self.code, l));
        }
        out
    }

    /// EHLO keywords (the lines after the first), upper-cased, with parameters.
    pub fn keywords(&self) -> impl Iterator<Item = (String, &str)> {
        self.lines.iter().skip(1).map(|l| {
            let (k, rest) = l.split_once(' ').unwrap_or((l.as_str(), ""));
            (k.to_ascii_uppercase(), rest.trim())
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// A line longer than MAX_LINE.
    TooLong,
    /// More than MAX_LINES lines.
    TooManyLines,
    /// A line that is not `NNN`, `NNN text` or `NNN-text`, or a code that changes
    /// within one reply; holds the line as far as it is printable.
    Garbage(String),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::TooLong => write!(f, "sent a reply line longer than {MAX_LINE} bytes"),
            ReplyError::TooManyLines => write!(f, "sent a reply of more than {MAX_LINES} lines"),
            ReplyError::Garbage(l) => write!(f, "sent something that is not an SMTP reply: {l:?}"),
        }
    }
}

impl crate::error::Classify for ReplyError {
    fn kind(&self) -> crate::error::Kind {
        // A confused server may be fixed; the message waits.
        crate::error::Kind::Temporary
    }
}

/// Printable form of a peer's line: control bytes and NUL become '?', so texts
/// can go into reports (NUL-terminated) and logs.
pub fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A reply as postern-smtpd sends it: each line of `text` becomes `code-line`,
/// the last `code line`; a status (RFC 2034) leads the first line.
pub fn format(code: u16, status: Option<Status>, text: &str) -> Vec<u8> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::with_capacity(text.len() + 16 * lines.len());
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        match (i, status) {
            (0, Some(s)) => out.extend_from_slice(format!("{code}{sep}{s} {l}\r\n").as_bytes()),
            _ => out.extend_from_slice(format!("{code}{sep}{l}\r\n").as_bytes()),
        }
    }
    out
}

/// One reply from the start of `buf`: Ok(Some((reply, used))), Ok(None) when more
/// bytes are needed, or an error for a malformed or over-long reply.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return if rest.len() >= MAX_LINE { Err(ReplyError::TooLong) } else { Ok(None) };
        };
        if nl + 1 > MAX_LINE {
            return Err(ReplyError::TooLong);
        }
        let mut line = &rest[..nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        pos += nl + 1;
        let garbage = || ReplyError::Garbage(printable(&line[..line.len().min(80)]));
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&line[0]) {
            return Err(garbage());
        }
        let this: u16 = std::str::from_utf8(&line[..3]).map_err(|_| garbage())?.parse().map_err(|_| garbage())?;
        if *code.get_or_insert(this) != this {
            return Err(garbage());
        }
        let (last, text) = match line.get(3) {
            None => (true, &[][..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(garbage()),
        };
        lines.push(printable(text));
        if last {
            return Ok(Some((Reply { code: this, lines }, pos)));
        }
        if lines.len() >= MAX_LINES {
            return Err(ReplyError::TooManyLines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` split at every byte: the parser must say "need more" until the
    /// whole reply is there, then give the same answer as for the whole input.
    fn at_every_split(input: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
        let whole = parse(input);
        for cut in 0..input.len() {
            match parse(&input[..cut]) {
                Ok(None) => {}
                Ok(Some((r, used))) => assert_eq!(Ok(Some((r, used))), whole, "cut at {cut}"),
                Err(e) => assert_eq!(Err(e), whole, "cut at {cut}"),
            }
        }
        whole
    }

    #[test]
    fn single_and_multi_line_replies() {
        let (r, n) = at_every_split(b"220 mx.test ESMTP ready\r\nrest").unwrap().unwrap();
        assert_eq!((r.code, n), (220, 25));
        assert_eq!(r.lines, vec!["mx.test ESMTP ready"]);
        let ehlo = b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n";
        let (r, n) = at_every_split(ehlo).unwrap().unwrap();
        assert_eq!(n, ehlo.len());
        let kw: Vec<_> = r.keywords().map(|(k, v)| (k, v.to_string())).collect();
        assert_eq!(kw, vec![("PIPELINING".into(), "".into()), ("SIZE".into(), "1000".into()), ("8BITMIME".into(), "".into())]);
        let (r, _) = at_every_split(b"250\n").unwrap().unwrap();
        assert_eq!(r.lines, vec![""]);
    }

    #[test]
    fn our_replies_read_back() {
        assert_eq!(format(250, Some(Status::OK), "ok"), b"250 2.0.0 ok\r\n");
        assert_eq!(format(250, None, "me\nPIPELINING\nSIZE 10"), b"250-me\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
        let bytes = format(214, Some(Status::OK), "commands\nsee RFC 5321");
        let (r, n) = parse(&bytes).unwrap().unwrap();
        assert_eq!((r.code, r.status(), n), (214, Some(Status::OK), bytes.len()));
    }

    #[test]
    fn statuses() {
        let (r, _) = parse(b"450 4.2.1 mailbox busy\r\n").unwrap().unwrap();
        assert_eq!(r.status(), Some(Status::new(4, 2, 1)));
        assert_eq!(r.quoted(), "450 4.2.1 mailbox busy");
        let (r, _) = parse(b"550 no such user\r\n").unwrap().unwrap();
        assert_eq!((r.status(), r.status_or_class().to_string()), (None, "5.0.0".to_string()));
        let (r, _) = parse(b"550 4.2.1 wrong class\r\n").unwrap().unwrap();
        assert_eq!(r.status(), None);
    }

    #[test]
    fn garbage_and_limits() {
        assert!(matches!(at_every_split(b"HTTP/1.1 400 Bad Request\r\n"), Err(ReplyError::Garbage(_))));
        assert!(matches!(at_every_split(b"250-a\r\n251 b\r\n"), Err(ReplyError::Garbage(_))));
        assert!(matches!(at_every_split(b"250xa\r\n"), Err(ReplyError::Garbage(_))));
        assert!(matches!(at_every_split(b"\x00\x01\r\n"), Err(ReplyError::Garbage(_))));
        let long = [b"250 ".to_vec(), vec![b'x'; MAX_LINE]].concat();
        assert_eq!(parse(&long), Err(ReplyError::TooLong));
        let many = b"250-x\r\n".repeat(MAX_LINES + 1);
        assert_eq!(parse(&many), Err(ReplyError::TooManyLines));
        let (r, _) = parse(b"554 bad \x00 byte\r\n").unwrap().unwrap();
        assert_eq!(r.lines[0], "bad ? byte");
    }
}
