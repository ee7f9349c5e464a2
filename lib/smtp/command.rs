//! SMTP's wire format, without I/O: command lines, commands and their parameters,
//! the DATA stream (dot-unstuffing, CRLF to LF), replies, and base64 for AUTH.
//!
//! Everything here takes the bytes that have arrived and says what it needs next;
//! the session (smtpd.rs) does the reading and writing.
//!
//! # Line endings in DATA (the smuggling rule)
//! The only end of a message is CR LF "." CR LF. A bare LF or a bare CR anywhere in
//! DATA is a protocol error: the reader reports `BareNewline` at once and the
//! session refuses the message and closes the connection, so one DATA never yields
//! more than one message and bytes after an ambiguous end (`<LF>.<LF>`,
//! `<CR>.<CR>`, `<CR><LF>.<LF>`, ...) are never read as commands.

use std::fmt;

/// Longest command line we read (RFC 5321's 512 plus room for the extensions'
/// parameters: SIZE, ORCPT, ENVID, AUTH=).
pub const MAX_COMMAND_LINE: usize = 2048;

/// What `LineReader::next` found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent<'a> {
    /// A whole line without its CRLF (or bare LF).
    Line(&'a [u8]),
    /// A line longer than the limit ended; its bytes were skipped.
    TooLong,
}

/// Splits command lines off the front of the input. Over-long lines are skipped up
/// to their end, so memory stays bounded whatever the client sends.
#[derive(Debug, Default)]
pub struct LineReader {
    skipping: bool,
}

impl LineReader {
    /// Look at `buf`: returns how many bytes to drop from its front and the event,
    /// or None when more input is needed (the consumed count may still be > 0).
    pub fn next<'a>(&mut self, buf: &'a [u8], max: usize) -> (usize, Option<LineEvent<'a>>) {
        let lf = buf.iter().position(|&b| b == b'\n');
        if self.skipping {
            return match lf {
                Some(i) => {
                    self.skipping = false;
                    (i + 1, Some(LineEvent::TooLong))
                }
                None => (buf.len(), None),
            };
        }
        match lf {
            Some(i) if i <= max => {
                let line = &buf[..i];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                (i + 1, Some(LineEvent::Line(line)))
            }
            Some(i) => (i + 1, Some(LineEvent::TooLong)),
            None if buf.len() > max => {
                self.skipping = true;
                (buf.len(), None)
            }
            None => (0, None),
        }
    }
}

/// A command that does not parse, with the reply it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// A verb we do not know: 500 5.5.1.
    Unknown(String),
    /// A verb we know but do not implement (EXPN, BDAT, TURN, ...): 502 5.5.1.
    NotImplemented(String),
    /// NUL, other control bytes or non-UTF-8 in a command line: 500 5.5.2.
    BadBytes,
    /// Wrong arguments: 501 5.5.4.
    Syntax(String),
    /// A MAIL/RCPT parameter we do not know or with a bad value: 555 5.5.4.
    Parameter(String),
    /// A non-ASCII address without SMTPUTF8: 553 5.6.7.
    NeedsUtf8,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(v) => write!(f, "500 5.5.1 unrecognized command {v:?}; try HELP"),
            CommandError::NotImplemented(v) => write!(f, "502 5.5.1 {v} is not implemented"),
            CommandError::BadBytes => f.write_str("500 5.5.2 command contains control characters or is not UTF-8"),
            CommandError::Syntax(s) => write!(f, "501 5.5.4 syntax: {s}"),
            CommandError::Parameter(s) => write!(f, "555 5.5.4 {s}"),
            CommandError::NeedsUtf8 => f.write_str("553 5.6.7 non-ASCII address without SMTPUTF8"),
        }
    }
}

impl crate::error::Classify for CommandError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Permanent
    }
}

/// Parameters of MAIL FROM (RFC 1870, 6152, 6531, 3461, 4954).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body_8bit: bool,
    pub smtputf8: bool,
    /// RET=FULL or HDRS (recorded, not used yet).
    pub ret: Option<String>,
    pub envid: Option<String>,
    /// AUTH=<mailbox> from a relaying client (accepted, ignored).
    pub auth: Option<String>,
}

/// Parameters of RCPT TO (RFC 3461).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    pub notify: Option<String>,
    pub orcpt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    /// The reverse path ("" for the null sender).
    Mail(String, MailParams),
    Rcpt(String, RcptParams),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    /// Mechanism (upper case) and the initial response if given.
    Auth(String, Option<String>),
}

fn syntax(s: &str) -> CommandError {
    CommandError::Syntax(s.to_string())
}

fn no_args(rest: &str, c: Command, verb: &str) -> Result<Command, CommandError> {
    if rest.is_empty() {
        Ok(c)
    } else {
        Err(CommandError::Syntax(format!("{verb} takes no arguments")))
    }
}

/// Parse one command line (without its CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(CommandError::BadBytes);
    }
    let line = std::str::from_utf8(line).map_err(|_| CommandError::BadBytes)?;
    let (verb, rest) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i + 1..].trim()),
        None => (line, ""),
    };
    let upper = verb.to_ascii_uppercase();
    match upper.as_str() {
        "HELO" | "EHLO" => {
            let host = rest.split_whitespace().next().ok_or_else(|| CommandError::Syntax(format!("{upper} needs your host name")))?;
            Ok(if upper == "HELO" { Command::Helo(host.to_string()) } else { Command::Ehlo(host.to_string()) })
        }
        "MAIL" => {
            let arg = strip_prefix_ci(rest, "FROM:").ok_or_else(|| syntax("MAIL FROM:<address>"))?;
            let (path, params) = parse_path(arg.trim_start())?;
            Ok(Command::Mail(path, mail_params(params)?))
        }
        "RCPT" => {
            let arg = strip_prefix_ci(rest, "TO:").ok_or_else(|| syntax("RCPT TO:<address>"))?;
            let (path, params) = parse_path(arg.trim_start())?;
            if path.is_empty() {
                return Err(syntax("RCPT TO needs an address"));
            }
            Ok(Command::Rcpt(path, rcpt_params(params)?))
        }
        "DATA" => no_args(rest, Command::Data, "DATA"),
        "RSET" => no_args(rest, Command::Rset, "RSET"),
        "QUIT" => no_args(rest, Command::Quit, "QUIT"),
        "STARTTLS" => no_args(rest, Command::StartTls, "STARTTLS"),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" if rest.is_empty() => Err(syntax("VRFY needs an address")),
        "VRFY" => Ok(Command::Vrfy),
        "AUTH" => {
            let mut it = rest.split_whitespace();
            let mech = it.next().ok_or_else(|| syntax("AUTH mechanism [initial-response]"))?.to_ascii_uppercase();
            let initial = it.next().map(str::to_string);
            if it.next().is_some() {
                return Err(syntax("AUTH mechanism [initial-response]"));
            }
            Ok(Command::Auth(mech, initial))
        }
        "EXPN" | "BDAT" | "TURN" | "ETRN" | "ATRN" | "SEND" | "SOML" | "SAML" => Err(CommandError::NotImplemented(upper)),
        _ => Err(CommandError::Unknown(verb.chars().take(32).collect())),
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// `<path>` (or a bare address) and what follows it. A source route
/// (`<@a,@b:user@d>`) is dropped, as RFC 5321 tells servers to do.
fn parse_path(s: &str) -> Result<(String, &str), CommandError> {
    let (inner, rest) = if let Some(body) = s.strip_prefix('<') {
        let mut quoted = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '>' if !quoted => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| syntax("the address must end with '>'"))?;
        (&body[..end], &body[end + 1..])
    } else {
        match s.find(' ') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    };
    let inner = if inner.starts_with('@') {
        inner.split_once(':').map(|(_, a)| a).ok_or_else(|| syntax("a source route must end with ':'"))?
    } else {
        inner
    };
    if !inner.starts_with('"') && inner.contains(['<', '>', ' ']) {
        return Err(syntax("malformed address"));
    }
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(syntax("parameters must follow the address after a space"));
    }
    Ok((inner.to_string(), rest.trim()))
}

/// ESMTP parameters: KEY or KEY=VALUE, separated by spaces.
fn params(s: &str) -> impl Iterator<Item = (String, Option<&str>)> {
    s.split_whitespace().map(|p| match p.split_once('=') {
        Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
        None => (p.to_ascii_uppercase(), None),
    })
}

/// An xtext value (RFC 3461): printable ASCII without '=' and '+' except in +XX.
fn xtext(key: &str, v: Option<&str>) -> Result<String, CommandError> {
    let v = v.filter(|v| !v.is_empty()).ok_or_else(|| CommandError::Parameter(format!("{key} needs a value")))?;
    if v.len() > 500 || !v.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b'=') {
        return Err(CommandError::Parameter(format!("{key} value is not valid xtext")));
    }
    Ok(v.to_string())
}

fn mail_params(s: &str) -> Result<MailParams, CommandError> {
    let mut m = MailParams::default();
    for (k, v) in params(s) {
        match (k.as_str(), v) {
            ("SIZE", Some(v)) => m.size = Some(v.parse().map_err(|_| CommandError::Parameter(format!("SIZE={v} is not a number")))?),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => m.body_8bit = false,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => m.body_8bit = true,
            ("BODY", _) => return Err(CommandError::Parameter("BODY must be 7BIT or 8BITMIME".into())),
            ("SMTPUTF8", None) => m.smtputf8 = true,
            ("RET", Some(v)) if v.eq_ignore_ascii_case("FULL") || v.eq_ignore_ascii_case("HDRS") => m.ret = Some(v.to_ascii_uppercase()),
            ("RET", _) => return Err(CommandError::Parameter("RET must be FULL or HDRS".into())),
            ("ENVID", v) => m.envid = Some(xtext("ENVID", v)?),
            ("AUTH", v) => {
                m.auth = Some(xtext("AUTH", v).or_else(|_| {
                    v.filter(|v| *v == "<>").map(str::to_string).ok_or(CommandError::Parameter("AUTH needs a value".into()))
                })?)
            }
            _ => return Err(CommandError::Parameter(format!("unknown MAIL parameter {k}"))),
        }
    }
    Ok(m)
}

fn rcpt_params(s: &str) -> Result<RcptParams, CommandError> {
    let mut r = RcptParams::default();
    for (k, v) in params(s) {
        match (k.as_str(), v) {
            ("NOTIFY", Some(v)) => {
                let up = v.to_ascii_uppercase();
                let words: Vec<&str> = up.split(',').collect();
                let ok = up == "NEVER" || words.iter().all(|w| matches!(*w, "SUCCESS" | "FAILURE" | "DELAY"));
                if !ok {
                    return Err(CommandError::Parameter("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY".into()));
                }
                r.notify = Some(up);
            }
            ("ORCPT", v) => {
                let v = xtext("ORCPT", v)?;
                if !v.contains(';') {
                    return Err(CommandError::Parameter("ORCPT must be addr-type;address".into()));
                }
                r.orcpt = Some(v);
            }
            _ => return Err(CommandError::Parameter(format!("unknown RCPT parameter {k}"))),
        }
    }
    Ok(r)
}

/// A reply: `text` holds the enhanced code and message; each '\n' starts another
/// line of a multi-line reply ("250-..." then "250 ...").
pub fn reply(code: u16, text: &str) -> Vec<u8> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::with_capacity(text.len() + 8 * lines.len());
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.extend_from_slice(format!("{code}{sep}{l}\r\n").as_bytes());
    }
    out
}

/// What `DataReader::feed` stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStatus {
    /// All input used; the message goes on.
    NeedMore,
    /// CRLF.CRLF seen; the bytes after it are the next commands.
    End,
    /// A CR or LF not part of CRLF: the message must be refused (see the module docs).
    BareNewline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// At the start of a line (DATA's own CRLF counts as the line before).
    LineStart,
    /// A '.' at the start of a line.
    Dot,
    /// ".\r" at the start of a line.
    DotCr,
    Mid,
    /// A CR inside a line.
    Cr,
    Done,
}

/// Reads the DATA stream: removes the dot-stuffing and turns CRLF into LF (the
/// queue stores Unix lines).
#[derive(Debug)]
pub struct DataReader {
    state: DataState,
    /// Bytes of message produced so far.
    pub bytes: u64,
}

impl Default for DataReader {
    fn default() -> Self {
        DataReader { state: DataState::LineStart, bytes: 0 }
    }
}

impl DataReader {
    /// Consume `input`, appending message bytes to `out`. Returns how much of
    /// `input` was used (all of it unless the status is `End` or `BareNewline`).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, DataStatus) {
        let start = out.len();
        let mut i = 0;
        let status = loop {
            let Some(&b) = input.get(i) else { break DataStatus::NeedMore };
            i += 1;
            self.state = match (self.state, b) {
                (DataState::Done, _) => {
                    i -= 1;
                    break DataStatus::End;
                }
                (DataState::LineStart, b'.') => DataState::Dot,
                (DataState::Dot, b'\r') => DataState::DotCr,
                (DataState::DotCr, b'\n') => {
                    self.state = DataState::Done;
                    break DataStatus::End;
                }
                (DataState::Cr, b'\n') => {
                    out.push(b'\n');
                    DataState::LineStart
                }
                (DataState::LineStart | DataState::Mid, b'\r') => DataState::Cr,
                (_, b'\n') | (DataState::Cr | DataState::DotCr, _) => break DataStatus::BareNewline,
                // A stuffed dot: the line's first '.' is dropped (RFC 5321 4.5.2).
                (_, b) => {
                    out.push(b);
                    DataState::Mid
                }
            };
        };
        self.bytes += (out.len() - start) as u64;
        (i, status)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(B64[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Strict base64 (padding required, no spaces); None if malformed.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (ci, c) in b.chunks(4).enumerate() {
        let last = ci + 1 == b.len() / 4;
        let mut n = 0u32;
        let mut pad = 0;
        for (k, &ch) in c.iter().enumerate() {
            let v = match ch {
                b'=' if last && k >= 2 => {
                    pad += 1;
                    0
                }
                _ if pad > 0 => return None,
                _ => B64.iter().position(|&x| x == ch)? as u32,
            };
            n = n << 6 | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` to a LineReader in two pieces split at `at`, collecting events.
    fn lines_split(input: &[u8], at: usize, max: usize) -> Vec<Option<Vec<u8>>> {
        let mut r = LineReader::default();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for piece in [&input[..at], &input[at..]] {
            buf.extend_from_slice(piece);
            loop {
                let (n, ev) = r.next(&buf, max);
                let ev = ev.map(|e| match e {
                    LineEvent::Line(l) => Some(l.to_vec()),
                    LineEvent::TooLong => None,
                });
                buf.drain(..n);
                match ev {
                    Some(e) => got.push(e),
                    None => break,
                }
            }
        }
        got
    }

    #[test]
    fn lines_at_every_split() {
        let long = format!("NOOP {}\r\n", "x".repeat(40));
        let input = format!("EHLO a\r\nNOOP\n{long}QUIT\r\n");
        let want = vec![Some(b"EHLO a".to_vec()), Some(b"NOOP".to_vec()), None, Some(b"QUIT".to_vec())];
        for at in 0..=input.len() {
            assert_eq!(lines_split(input.as_bytes(), at, 20), want, "split at {at}");
        }
    }

    #[test]
    fn commands_parse() {
        let p = |s: &str| parse_command(s.as_bytes());
        assert_eq!(p("ehlo client.example"), Ok(Command::Ehlo("client.example".into())));
        assert_eq!(p("HELO"), Err(CommandError::Syntax("HELO needs your host name".into())));
        assert_eq!(p("MAIL FROM:<>"), Ok(Command::Mail(String::new(), MailParams::default())));
        let Ok(Command::Mail(a, m)) = p("mail from: <a@b.c> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=hdrs ENVID=x+2B1") else { panic!() };
        assert_eq!(a, "a@b.c");
        assert_eq!(
            (m.size, m.body_8bit, m.smtputf8, m.ret.as_deref(), m.envid.as_deref()),
            (Some(1000), true, true, Some("HDRS"), Some("x+2B1"))
        );
        assert_eq!(p("MAIL FROM:<@r1,@r2:u@d>"), Ok(Command::Mail("u@d".into(), MailParams::default())));
        assert_eq!(p("MAIL FROM:<\"a >b\"@d>"), Ok(Command::Mail("\"a >b\"@d".into(), MailParams::default())));
        assert_eq!(p("MAIL FROM:u@d"), Ok(Command::Mail("u@d".into(), MailParams::default())));
        assert!(matches!(p("MAIL FROM:<a@b> SIZE=x"), Err(CommandError::Parameter(_))));
        assert!(matches!(p("MAIL FROM:<a@b> BODY=BINARYMIME"), Err(CommandError::Parameter(_))));
        assert!(matches!(p("MAIL FROM:<a@b> FOO=1"), Err(CommandError::Parameter(_))));
        assert!(matches!(p("MAIL FROM:<a@b"), Err(CommandError::Syntax(_))));
        assert!(matches!(p("MAIL TO:<a@b>"), Err(CommandError::Syntax(_))));
        assert!(matches!(p("MAIL FROM:<a@b>x"), Err(CommandError::Syntax(_))));
        let Ok(Command::Rcpt(a, r)) = p("RCPT TO:<x@y> NOTIFY=success,failure ORCPT=rfc822;x@y") else { panic!() };
        assert_eq!((a.as_str(), r.notify.as_deref(), r.orcpt.as_deref()), ("x@y", Some("SUCCESS,FAILURE"), Some("rfc822;x@y")));
        assert!(matches!(p("RCPT TO:<x@y> NOTIFY=NEVER,SUCCESS"), Err(CommandError::Parameter(_))));
        assert!(matches!(p("RCPT TO:<>"), Err(CommandError::Syntax(_))));
        assert_eq!(p("data"), Ok(Command::Data));
        assert!(matches!(p("DATA now"), Err(CommandError::Syntax(_))));
        assert_eq!(p("AUTH plain AGEAYg=="), Ok(Command::Auth("PLAIN".into(), Some("AGEAYg==".into()))));
        assert_eq!(p("VRFY x"), Ok(Command::Vrfy));
        assert_eq!(p("EXPN x"), Err(CommandError::NotImplemented("EXPN".into())));
        assert_eq!(p("GET / HTTP/1.0"), Err(CommandError::Unknown("GET".into())));
        assert_eq!(parse_command(b"NOOP \0"), Err(CommandError::BadBytes));
        assert_eq!(parse_command(b"HELO \xff\xfe"), Err(CommandError::BadBytes));
        assert_eq!(parse_command(b"MAIL FROM:<\xc3\xa9@d>"), Ok(Command::Mail("é@d".into(), MailParams::default())));
    }

    #[test]
    fn replies() {
        assert_eq!(reply(250, "2.0.0 ok"), b"250 2.0.0 ok\r\n");
        assert_eq!(reply(250, "me\nPIPELINING\nSIZE 10"), b"250-me\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
    }

    fn data_split(input: &[u8], at: usize) -> (Vec<u8>, usize, DataStatus) {
        let mut r = DataReader::default();
        let mut out = Vec::new();
        let (n1, s1) = r.feed(&input[..at], &mut out);
        if s1 != DataStatus::NeedMore {
            return (out, n1, s1);
        }
        let (n2, s2) = r.feed(&input[at..], &mut out);
        (out, n1 + n2, s2)
    }

    fn check_every_split(input: &[u8], want_out: &[u8], want_used: usize, want: DataStatus) {
        for at in 0..=input.len() {
            let (out, used, st) = data_split(input, at);
            assert_eq!(st, want, "status, split at {at} of {:?}", String::from_utf8_lossy(input));
            if want == DataStatus::End {
                assert_eq!(used, want_used, "used, split at {at}");
                assert_eq!(out, want_out, "output, split at {at}");
            }
        }
    }

    #[test]
    fn data_unstuffs_and_ends_at_crlf_dot_crlf_only() {
        let msg = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";
        check_every_split(msg, b"Subject: x\n\n.leading dot\n", msg.len() - 6, DataStatus::End);
        check_every_split(b".\r\n", b"", 3, DataStatus::End);
        check_every_split(b"a\0b\xff\r\n.\r\n", b"a\0b\xff\n", 9, DataStatus::End);
        check_every_split(b"a. b.\r\n.x\r\n.\r\n", b"a. b.\nx\n", 14, DataStatus::End);
    }

    #[test]
    fn data_smuggling_variants_are_bare_newlines() {
        for v in [
            &b"a\n.\nMAIL FROM:<x>\r\n"[..],
            b"a\r\n.\nMAIL FROM:<x>\r\n",
            b"a\n.\r\nMAIL FROM:<x>\r\n",
            b"a\r.\r\n",
            b"a\r.\rMAIL",
            b"a\r\n.\rx",
            b"\n",
            b"x\ry\r\n.\r\n",
        ] {
            check_every_split(v, b"", 0, DataStatus::BareNewline);
        }
        check_every_split(b"no end yet\r\n", b"", 0, DataStatus::NeedMore);
    }

    #[test]
    fn data_counts_bytes() {
        let mut r = DataReader::default();
        let mut out = Vec::new();
        r.feed(b"abc\r\n..d\r\n", &mut out);
        assert_eq!(r.bytes, 7);
    }

    #[test]
    fn base64_round_trip() {
        for s in [&b""[..], b"a", b"ab", b"abc", b"\0user\0pass", b"\xff\xfe\xfd\xfc"] {
            let e = base64_encode(s);
            assert_eq!(base64_decode(&e).as_deref(), Some(s), "{e}");
        }
        assert_eq!(base64_encode(b"\0a\0b"), "AGEAYg==");
        assert_eq!(base64_decode("VXNlcm5hbWU6").unwrap(), b"Username:");
        assert!(base64_decode("AGE").is_none());
        assert!(base64_decode("A=GE").is_none());
        assert!(base64_decode("AG?=").is_none());
    }
}
