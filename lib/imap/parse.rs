//! IMAP command input (RFC 9051 §2.2, §4, §9): framing a command out of the
//! byte stream (lines, quoted strings, synchronizing `{n}` and non-synchronizing
//! `{n+}` literals), then a token tree, with limits on line length, literal and
//! command size, nesting depth and number of items.
//!
//! No I/O: the caller pushes what it read and asks for the next event, so the
//! same input gives the same commands however it is split. Bad input becomes a
//! `Reject` the caller sends as BAD/NO and the reader goes on with the next
//! command.

use std::fmt;

/// Bounds on one command.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of one line of a command (between literals), line end included.
    pub line: usize,
    /// Bytes of one literal.
    pub literal: usize,
    /// Bytes of a whole command, literals included.
    pub command: usize,
    /// Parenthesized lists inside lists.
    pub depth: usize,
    /// Tokens in the whole command.
    pub items: usize,
}

impl Limits {
    /// After login: APPEND carries whole messages.
    pub const SESSION: Limits = Limits { line: 64 * 1024, literal: 64 << 20, command: (64 << 20) + 256 * 1024, depth: 16, items: 10_000 };
    /// Before login only LOGIN's and AUTHENTICATE's few short strings.
    pub const LOGIN: Limits = Limits { line: 8 * 1024, literal: 2048, command: 16 * 1024, depth: 4, items: 64 };
}

/// A parenthesized token tree; strings are quoted strings and literals, atoms
/// everything else (NIL, numbers, sequence sets, flags, `BODY[...]<..>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    Atom(Vec<u8>),
    Str(Vec<u8>),
    List(Vec<Token>),
}

impl Token {
    /// An atom or a string: IMAP's astring.
    pub fn astring(&self) -> Option<&[u8]> {
        match self {
            Token::Atom(a) | Token::Str(a) => Some(a),
            Token::List(_) => None,
        }
    }

    pub fn atom(&self) -> Option<&[u8]> {
        match self {
            Token::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// NIL or a string.
    pub fn nstring(&self) -> Option<Option<&[u8]>> {
        match self {
            Token::Atom(a) if a.eq_ignore_ascii_case(b"NIL") => Some(None),
            Token::Str(s) => Some(Some(s)),
            _ => None,
        }
    }
}

/// Why a command is refused, and how to answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// The command's tag when it could be read (else the answer is untagged).
    pub tag: Option<String>,
    /// NO rather than BAD (a literal over the limit: RFC 7889's TOOBIG).
    pub no: bool,
    pub text: String,
}

impl Reject {
    pub fn bad(tag: Option<String>, text: impl Into<String>) -> Reject {
        Reject { tag, no: false, text: text.into() }
    }

    /// The response line, CRLF included.
    pub fn line(&self) -> String {
        format!("{} {} {}\r\n", self.tag.as_deref().unwrap_or("*"), if self.no { "NO" } else { "BAD" }, self.text)
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What the reader has next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing complete yet: read more.
    NeedMore,
    /// A synchronizing literal was announced: send `+ ` and read more.
    Continue,
    /// A complete command: its tag and tokens (verb first).
    Command(String, Vec<Token>),
    Reject(Reject),
}

/// Where the framer is inside the current command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    Normal,
    Quoted,
    QuotedEscape,
}

/// Bytes to throw away after a refused command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    None,
    /// So many bytes (a refused non-synchronizing literal), then up to LF.
    Bytes(usize),
    /// Up to and including the next LF.
    Line,
}

/// Buffers client input and hands out commands.
#[derive(Debug)]
pub struct Reader {
    buf: Vec<u8>,
    limits: Limits,
    /// How far the framer has looked into `buf`.
    pos: usize,
    scan: Scan,
    /// Start of the current line (after the last literal) for the line limit.
    line_start: usize,
    /// Position of the last `{` outside quotes on this line.
    brace: Option<usize>,
    /// Literals whose `+` has been asked for, by their end offset.
    acked: usize,
    skip: Skip,
}

impl Reader {
    pub fn new(limits: Limits) -> Reader {
        Reader { buf: Vec::new(), limits, pos: 0, scan: Scan::Normal, line_start: 0, brace: None, acked: 0, skip: Skip::None }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Forget all input (after STARTTLS nothing sent in clear may be used).
    pub fn clear(&mut self) {
        *self = Reader::new(self.limits);
    }

    /// Input not yet framed into a command.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// One raw line (AUTHENTICATE responses, IDLE's DONE), without its line end;
    /// None when no whole line is buffered. An over-long line comes back cut.
    pub fn take_line(&mut self) -> Option<Vec<u8>> {
        self.skip_input();
        if self.skip != Skip::None {
            return None;
        }
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                line.truncate(self.limits.line);
                self.restart();
                Some(line)
            }
            None if self.buf.len() > self.limits.line => {
                self.buf.clear();
                self.skip = Skip::Line;
                self.restart();
                Some(Vec::new())
            }
            None => None,
        }
    }

    fn restart(&mut self) {
        self.pos = 0;
        self.scan = Scan::Normal;
        self.line_start = 0;
        self.brace = None;
        self.acked = 0;
    }

    /// Drop input a refused command left behind.
    fn skip_input(&mut self) {
        loop {
            match self.skip {
                Skip::None => return,
                Skip::Bytes(n) => {
                    let k = n.min(self.buf.len());
                    self.buf.drain(..k);
                    self.skip = if k == n { Skip::Line } else { Skip::Bytes(n - k) };
                    if k < n {
                        return;
                    }
                }
                Skip::Line => match self.buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.buf.drain(..=i);
                        self.skip = Skip::None;
                    }
                    None => {
                        self.buf.clear();
                        return;
                    }
                },
            }
        }
    }

    /// Drop the current command (its first `end` bytes) and whatever `skip` says.
    fn drop_command(&mut self, end: usize, skip: Skip) {
        self.buf.drain(..end.min(self.buf.len()));
        self.skip = skip;
        self.restart();
    }

    pub fn event(&mut self) -> Event {
        self.skip_input();
        if self.skip != Skip::None {
            return Event::NeedMore;
        }
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            match self.scan {
                Scan::Quoted => match b {
                    b'\\' => self.scan = Scan::QuotedEscape,
                    b'"' => self.scan = Scan::Normal,
                    b'\n' => return self.end_command(),
                    _ => {}
                },
                Scan::QuotedEscape => {
                    if b == b'\n' {
                        return self.end_command();
                    }
                    self.scan = Scan::Quoted;
                }
                Scan::Normal => match b {
                    b'"' => self.scan = Scan::Quoted,
                    b'{' => self.brace = Some(self.pos),
                    b'\n' => {
                        if let Some((n, sync)) = self.literal_here() {
                            if let Some(e) = self.start_literal(n, sync) {
                                return e;
                            }
                            continue;
                        }
                        return self.end_command();
                    }
                    _ => {}
                },
            }
            self.pos += 1;
            if self.pos - self.line_start > self.limits.line {
                let tag = tag_of(&self.buf);
                let end = self.pos;
                self.drop_command(end, Skip::Line);
                return Event::Reject(Reject::bad(
                    tag,
                    format!("line too long: at most {} octets; use a literal for long strings", self.limits.line),
                ));
            }
            if self.pos > self.limits.command {
                return self.too_big_command();
            }
        }
        Event::NeedMore
    }

    /// At a LF outside quotes: does the line end with `{n}` or `{n+}`?
    fn literal_here(&self) -> Option<(usize, bool)> {
        let brace = self.brace.filter(|&b| b >= self.line_start)?;
        let mut end = self.pos;
        if end > 0 && self.buf[end - 1] == b'\r' {
            end -= 1;
        }
        let inner = self.buf.get(brace + 1..end)?.strip_suffix(b"}")?;
        let (digits, sync) = match inner.strip_suffix(b"+") {
            Some(d) => (d, false),
            None => (inner, true),
        };
        if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some((std::str::from_utf8(digits).ok()?.parse().ok()?, sync))
    }

    /// At the LF after `{n}`: skip over the literal if it is all here, else
    /// ask for it (Continue once) or refuse it.
    fn start_literal(&mut self, n: usize, sync: bool) -> Option<Event> {
        let data = self.pos + 1;
        if n > self.limits.literal || data + n > self.limits.command {
            let tag = tag_of(&self.buf);
            let text = format!("[TOOBIG] literal of {n} octets: at most {} in one command", self.limits.literal.min(self.limits.command));
            // The client waits for "+" before a synchronizing literal: it
            // never sends it. A non-synchronizing one comes anyway: skip it.
            self.drop_command(data, if sync { Skip::None } else { Skip::Bytes(n) });
            return Some(Event::Reject(Reject { tag, no: true, text }));
        }
        if self.buf.len() < data + n {
            if sync && self.acked < data + n {
                self.acked = data + n;
                return Some(Event::Continue);
            }
            return Some(Event::NeedMore);
        }
        self.pos = data + n;
        self.line_start = self.pos;
        self.brace = None;
        None
    }

    fn too_big_command(&mut self) -> Event {
        let tag = tag_of(&self.buf);
        let end = self.pos;
        let skip = if self.buf[end - 1] == b'\n' { Skip::None } else { Skip::Line };
        self.drop_command(end, skip);
        Event::Reject(Reject { tag, no: true, text: format!("[TOOBIG] command longer than {} octets", self.limits.command) })
    }

    /// At the LF that ends a command: take it off the buffer and tokenize it.
    fn end_command(&mut self) -> Event {
        let end = self.pos + 1;
        let last_line = self.line_start;
        let frame: Vec<u8> = self.buf.drain(..end).collect();
        self.restart();
        match tokenize_from(&frame, last_line, &self.limits) {
            Ok((tag, tokens)) => Event::Command(tag, tokens),
            Err(r) => Event::Reject(r),
        }
    }
}

/// The tag at the start of a command, if it looks like one.
fn tag_of(buf: &[u8]) -> Option<String> {
    let end = buf.iter().position(|&b| b == b' ' || b == b'\r' || b == b'\n').unwrap_or(buf.len().min(65));
    let tag = &buf[..end];
    (!tag.is_empty() && tag.len() <= 64 && tag.iter().all(|&b| is_tag_char(b))).then(|| String::from_utf8_lossy(tag).into_owned())
}

fn is_atom_char(b: u8) -> bool {
    b > b' ' && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'"')
}

fn is_tag_char(b: u8) -> bool {
    is_atom_char(b) && b != b'+' && b != b'%' && b != b'*' && b != b']' && b != b'\\'
}

/// A whole command (line end included, literals inside) into its tag and tokens.
pub fn tokenize(frame: &[u8], limits: &Limits) -> Result<(String, Vec<Token>), Reject> {
    tokenize_from(frame, 0, limits)
}

/// `tokenize`, the command's last line starting at `last_line` (after its last
/// literal, whose final CR is data, not part of the line end).
fn tokenize_from(frame: &[u8], last_line: usize, limits: &Limits) -> Result<(String, Vec<Token>), Reject> {
    let body = frame.strip_suffix(b"\n").unwrap_or(frame);
    let body = if body.len() > last_line { body.strip_suffix(b"\r").unwrap_or(body) } else { body };
    let tag = tag_of(body);
    let Some(t) = tag.clone() else {
        let what = if body.is_empty() { "empty line" } else { "no valid tag" };
        return Err(Reject::bad(None, format!("{what}: a command is TAG SP COMMAND")));
    };
    let rest = &body[t.len()..];
    let Some(rest) = rest.strip_prefix(b" ") else {
        return Err(Reject::bad(tag, "missing command after the tag"));
    };
    let mut lx = Lexer { s: rest, i: 0, items: 0, limits };
    let tokens = lx.list(0, false).map_err(|e| Reject::bad(tag.clone(), e))?;
    if tokens.is_empty() {
        return Err(Reject::bad(tag, "missing command after the tag"));
    }
    Ok((t, tokens))
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    items: usize,
    limits: &'a Limits,
}

impl Lexer<'_> {
    /// Tokens up to `)` (nested) or the end (top level), single spaces between.
    fn list(&mut self, depth: usize, nested: bool) -> Result<Vec<Token>, String> {
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return if nested { Err("unbalanced parentheses: a '(' is not closed".into()) } else { Ok(out) };
            };
            if b == b')' {
                if !nested {
                    return Err("unbalanced parentheses: ')' without '('".into());
                }
                self.i += 1;
                return Ok(out);
            }
            if !out.is_empty() {
                if b != b' ' {
                    return Err(format!("expected a space at octet {}", self.i));
                }
                self.i += 1;
            }
            self.items += 1;
            if self.items > self.limits.items {
                return Err(format!("too many items: at most {} in one command", self.limits.items));
            }
            let t = match self.s.get(self.i) {
                Some(b'(') => {
                    if depth + 1 > self.limits.depth {
                        return Err(format!("parentheses nested too deep: at most {}", self.limits.depth));
                    }
                    self.i += 1;
                    Token::List(self.list(depth + 1, true)?)
                }
                Some(b'"') => Token::Str(self.quoted()?),
                Some(b'{') => Token::Str(self.literal()?),
                Some(b'~') if self.s.get(self.i + 1) == Some(&b'{') => {
                    self.i += 1;
                    Token::Str(self.literal()?)
                }
                Some(&c) if is_atom_char(c) || c == b']' => Token::Atom(self.atom()?),
                Some(b' ') => return Err(format!("two spaces at octet {}", self.i)),
                Some(&c) => return Err(format!("unexpected octet 0x{c:02x} at {}", self.i)),
                None => return Err("a space at the end of the command".into()),
            };
            out.push(t);
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return Err("quoted string not closed".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => match self.s.get(self.i + 1) {
                    Some(&c @ (b'"' | b'\\')) => {
                        out.push(c);
                        self.i += 2;
                    }
                    _ => return Err("a quoted string may escape only '\"' and '\\'".into()),
                },
                Some(b'\r' | b'\n' | 0) => return Err("CR, LF or NUL in a quoted string; use a literal".into()),
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// `{n}` or `{n+}` CRLF then n octets (the framer checked the size).
    fn literal(&mut self) -> Result<Vec<u8>, String> {
        let close = self.s[self.i..].iter().position(|&b| b == b'}').ok_or("literal without '}'")? + self.i;
        let digits = &self.s[self.i + 1..close];
        let digits = digits.strip_suffix(b"+").unwrap_or(digits);
        let n: usize = std::str::from_utf8(digits)
            .ok()
            .filter(|d| d.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .ok_or("bad literal length")?;
        let mut at = close + 1;
        if self.s.get(at) == Some(&b'\r') {
            at += 1;
        }
        if self.s.get(at) != Some(&b'\n') {
            return Err("a literal's '}' must end its line".into());
        }
        at += 1;
        let data = self.s.get(at..at + n).ok_or("literal shorter than announced")?;
        self.i = at + n;
        Ok(data.to_vec())
    }

    /// An atom; `[...]` inside it may hold spaces and lists (`BODY[HEADER.FIELDS
    /// (A B)]`), and `<...>` after it a partial range.
    fn atom(&mut self) -> Result<Vec<u8>, String> {
        let start = self.i;
        while let Some(&c) = self.s.get(self.i) {
            if c == b'[' {
                let close = self.s[self.i..].iter().position(|&b| b == b']').ok_or("'[' without ']'")?;
                if self.s[self.i..self.i + close].iter().any(|&b| b < b' ' || b == b'{') {
                    return Err("control octet or literal inside [...]".into());
                }
                self.i += close + 1;
            } else if is_atom_char(c) || c == b']' {
                self.i += 1;
            } else {
                break;
            }
        }
        Ok(self.s[start..self.i].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event with the input fed whole and split at every byte, and the
    /// commands (and refusals) must be the same.
    fn events(input: &[u8], limits: Limits) -> Vec<Event> {
        let run = |pieces: &[&[u8]]| {
            let mut r = Reader::new(limits);
            let mut out = Vec::new();
            for p in pieces {
                r.push(p);
                loop {
                    match r.event() {
                        Event::NeedMore => break,
                        Event::Continue => continue,
                        e => out.push(e),
                    }
                }
            }
            out
        };
        let whole = run(&[input]);
        for at in 0..=input.len() {
            assert_eq!(run(&[&input[..at], &input[at..]]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "a byte at a time");
        whole
    }

    fn atom(s: &str) -> Token {
        Token::Atom(s.as_bytes().to_vec())
    }

    fn string(s: &str) -> Token {
        Token::Str(s.as_bytes().to_vec())
    }

    #[test]
    fn commands_with_strings_literals_lists_and_sections() {
        let got = events(
            b"a1 LOGIN \"al\\\"ice\" {3}\r\npw!\r\na2 UID FETCH 1:*,7 (FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100>)\r\na3 APPEND INBOX {5+}\r\nhello\r\n",
            Limits::SESSION,
        );
        assert_eq!(
            got,
            vec![
                Event::Command("a1".into(), vec![atom("LOGIN"), string("al\"ice"), string("pw!")]),
                Event::Command(
                    "a2".into(),
                    vec![
                        atom("UID"),
                        atom("FETCH"),
                        atom("1:*,7"),
                        Token::List(vec![atom("FLAGS"), atom("BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100>")])
                    ]
                ),
                Event::Command("a3".into(), vec![atom("APPEND"), atom("INBOX"), string("hello")]),
            ]
        );
    }

    /// CONDSTORE/QRESYNC's nested parameter lists frame the same however
    /// split, and the command parser reads the result.
    #[test]
    fn qresync_and_condstore_parameters_split_anywhere() {
        let got = events(
            b"q1 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1,3:5 41,43:45)))\r\nq2 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\nq3 STORE 2 (UNCHANGEDSINCE 7) FLAGS (\\Seen)\r\n",
            Limits::SESSION,
        );
        assert_eq!(got.len(), 3);
        let cmds: Vec<_> = got
            .iter()
            .map(|e| match e {
                Event::Command(tag, t) => crate::imap::command::parse(tag, t).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        use crate::imap::command::Command as C;
        assert!(matches!(&cmds[0], C::Select { qresync: Some(q), .. } if q.modseq == 90060115194045000 && q.seq_match.is_some()));
        assert!(matches!(&cmds[1], C::Fetch { changed_since: Some(12345), vanished: true, .. }));
        assert!(matches!(&cmds[2], C::Store { unchanged_since: Some(7), .. }));
    }

    #[test]
    fn a_synchronizing_literal_asks_for_continuation_once() {
        let mut r = Reader::new(Limits::SESSION);
        r.push(b"a APPEND INBOX {4}\r\n");
        assert_eq!(r.event(), Event::Continue);
        assert_eq!(r.event(), Event::NeedMore);
        r.push(b"ab");
        assert_eq!(r.event(), Event::NeedMore);
        r.push(b"cd\r\n");
        assert_eq!(r.event(), Event::Command("a".into(), vec![atom("APPEND"), atom("INBOX"), string("abcd")]));
        // {4+}: no continuation.
        r.push(b"b APPEND INBOX {4+}\r\n");
        assert_eq!(r.event(), Event::NeedMore);
    }

    #[test]
    fn a_literal_ending_in_cr_keeps_it() {
        let got = events(b"a APPEND X {3}\r\nab\r\nb NOOP\r\n", Limits::SESSION);
        assert_eq!(got[0], Event::Command("a".into(), vec![atom("APPEND"), atom("X"), string("ab\r")]));
        assert_eq!(got[1], Event::Command("b".into(), vec![atom("NOOP")]));
    }

    #[test]
    fn a_brace_inside_quotes_is_no_literal() {
        let got = events(b"a LOGIN \"x{3}\" y\r\nb NOOP\r\n", Limits::SESSION);
        assert_eq!(got[0], Event::Command("a".into(), vec![atom("LOGIN"), string("x{3}"), atom("y")]));
        assert_eq!(got[1], Event::Command("b".into(), vec![atom("NOOP")]));
    }

    #[test]
    fn too_big_literals_are_refused_and_the_next_command_is_read() {
        let lim = Limits { literal: 10, ..Limits::SESSION };
        let got = events(b"a APPEND INBOX {11}\r\nb NOOP\r\nc APPEND INBOX {12+}\r\n0123456789ab\r\nd NOOP\r\n", lim);
        assert_eq!(got.len(), 4, "{got:?}");
        let Event::Reject(r) = &got[0] else { panic!("{got:?}") };
        assert_eq!(r.line(), "a NO [TOOBIG] literal of 11 octets: at most 10 in one command\r\n");
        assert_eq!(got[1], Event::Command("b".into(), vec![atom("NOOP")]));
        assert!(matches!(&got[2], Event::Reject(r) if r.tag.as_deref() == Some("c") && r.no));
        assert_eq!(got[3], Event::Command("d".into(), vec![atom("NOOP")]));
    }

    #[test]
    fn long_lines_deep_nesting_many_items_and_unbalanced_parens_are_bad() {
        let lim = Limits { line: 40, depth: 3, items: 8, ..Limits::SESSION };
        let mut input = b"a1 NOOP ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend_from_slice(b"\r\na2 X ((((a))))\r\na3 X (a b\r\na4 X a)\r\na5 X 1 2 3 4 5 6 7 8 9\r\n\r\n+x NOOP\r\na6 NOOP\r\n");
        let got = events(&input, lim);
        let lines: Vec<String> = got
            .iter()
            .map(|e| match e {
                Event::Reject(r) => r.line(),
                Event::Command(t, _) => format!("{t} ok"),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                "a1 BAD line too long: at most 40 octets; use a literal for long strings\r\n",
                "a2 BAD parentheses nested too deep: at most 3\r\n",
                "a3 BAD unbalanced parentheses: a '(' is not closed\r\n",
                "a4 BAD unbalanced parentheses: ')' without '('\r\n",
                "a5 BAD too many items: at most 8 in one command\r\n",
                "* BAD empty line: a command is TAG SP COMMAND\r\n",
                "* BAD no valid tag: a command is TAG SP COMMAND\r\n",
                "a6 ok",
            ]
        );
    }

    #[test]
    fn raw_lines_for_authenticate_and_idle() {
        let mut r = Reader::new(Limits::LOGIN);
        r.push(b"DO");
        assert_eq!(r.take_line(), None);
        r.push(b"NE\r\na NOOP\r\n");
        assert_eq!(r.take_line(), Some(b"DONE".to_vec()));
        assert_eq!(r.event(), Event::Command("a".into(), vec![atom("NOOP")]));
    }
}
