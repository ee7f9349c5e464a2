//! POP3 commands (RFC 1939, CAPA of RFC 2449, STLS of RFC 2595, AUTH of RFC 5034):
//! bytes in, lines and commands out. No I/O here: the caller pushes what it read
//! and takes complete lines; a line split across reads simply waits for the rest.

/// RFC 2449: a command line is at most 255 octets with its CRLF.
pub const MAX_COMMAND: usize = 255;
/// A SASL line (AUTH PLAIN with its response, or a continuation) may be longer:
/// base64 of the 512 bytes checkpassword takes, and some slack.
pub const MAX_SASL: usize = 1024;

/// One line from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The text without CR LF (a bare LF is accepted too).
    Text(Vec<u8>),
    /// Longer than the limit; its bytes were thrown away up to its end.
    TooLong,
    /// It held a NUL byte.
    Nul,
}

/// Splits the input into lines.
pub struct LineReader {
    buf: Vec<u8>,
    max: usize,
    /// Inside an over-long line: drop bytes until its LF.
    skipping: bool,
}

impl LineReader {
    pub fn new(max: usize) -> LineReader {
        LineReader { buf: Vec::new(), max, skipping: false }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Forget everything buffered (after STLS nothing sent in clear may be used).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.skipping = false;
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next complete line, or None to read more.
    pub fn next_line(&mut self) -> Option<Line> {
        loop {
            match self.buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                    if std::mem::take(&mut self.skipping) {
                        return Some(Line::TooLong);
                    }
                    if line.len() > self.max {
                        return Some(Line::TooLong);
                    }
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if line.contains(&0) {
                        return Some(Line::Nul);
                    }
                    return Some(Line::Text(line));
                }
                None if self.buf.len() > self.max => {
                    // Keep memory bounded: drop the line's start, remember to drop the rest.
                    self.buf.clear();
                    self.skipping = true;
                    continue;
                }
                None => return None,
            }
        }
    }
}

/// A message number or line count argument.
pub type Number = u64;

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Capa,
    Quit,
    Noop,
    User(Vec<u8>),
    Pass(Vec<u8>),
    /// AUTH with no mechanism lists the mechanisms.
    Auth {
        mechanism: Option<String>,
        initial: Option<Vec<u8>>,
    },
    Stls,
    Stat,
    List(Option<Number>),
    Uidl(Option<Number>),
    Retr(Number),
    Dele(Number),
    Top(Number, Number),
    Rset,
    /// Known verb, unusable arguments: the reply text says what is wrong.
    Bad(&'static str),
    /// Anything else (including APOP, which is not offered).
    Unknown(String),
}

fn number(arg: Option<&[u8]>) -> Result<Number, &'static str> {
    let a = arg.ok_or("a message number is needed")?;
    if a.is_empty() || a.len() > 10 || !a.iter().all(u8::is_ascii_digit) {
        return Err("not a message number");
    }
    std::str::from_utf8(a).ok().and_then(|s| s.parse().ok()).ok_or("not a message number")
}

/// Parse one command line (no CR LF).
pub fn parse(line: &[u8]) -> Command {
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
    let mut args = rest.map(|r| r.split(|&b| b == b' ').filter(|a| !a.is_empty()).collect::<Vec<_>>()).unwrap_or_default();
    let nargs = args.len();
    let only = |n: usize, cmd: Command| if nargs > n { Command::Bad("too many arguments") } else { cmd };
    let optional = |args: &mut Vec<&[u8]>, f: fn(Option<Number>) -> Command| match args.first() {
        None => f(None),
        Some(a) => match number(Some(a)) {
            Ok(n) if nargs == 1 => f(Some(n)),
            Ok(_) => Command::Bad("too many arguments"),
            Err(e) => Command::Bad(e),
        },
    };
    match verb.as_str() {
        "CAPA" => only(0, Command::Capa),
        "QUIT" => only(0, Command::Quit),
        "NOOP" => only(0, Command::Noop),
        "STLS" => only(0, Command::Stls),
        "STAT" => only(0, Command::Stat),
        "RSET" => only(0, Command::Rset),
        // The whole rest of the line: passwords may hold spaces.
        "USER" => match rest {
            Some(r) if !r.is_empty() => Command::User(r.to_vec()),
            _ => Command::Bad("USER needs a name"),
        },
        "PASS" => match rest {
            Some(r) if !r.is_empty() => Command::Pass(r.to_vec()),
            _ => Command::Bad("PASS needs a password"),
        },
        "AUTH" => match args.len() {
            0 => Command::Auth { mechanism: None, initial: None },
            1 | 2 => {
                let mechanism = String::from_utf8_lossy(args[0]).to_ascii_uppercase();
                Command::Auth { mechanism: Some(mechanism), initial: args.get(1).map(|a| a.to_vec()) }
            }
            _ => Command::Bad("too many arguments"),
        },
        "LIST" => optional(&mut args, Command::List),
        "UIDL" => optional(&mut args, Command::Uidl),
        "RETR" | "DELE" if nargs > 1 => Command::Bad("too many arguments"),
        "RETR" => number(args.first().copied()).map(Command::Retr).unwrap_or_else(Command::Bad),
        "DELE" => number(args.first().copied()).map(Command::Dele).unwrap_or_else(Command::Bad),
        "TOP" if nargs != 2 => Command::Bad("TOP needs a message number and a line count"),
        "TOP" => match (number(Some(args[0])), number(Some(args[1]))) {
            (Ok(n), Ok(k)) => Command::Top(n, k),
            _ => Command::Bad("TOP needs a message number and a line count"),
        },
        _ => Command::Unknown(verb.chars().take(16).collect()),
    }
}

/// Decode base64 (RFC 4648, with padding); None for anything malformed.
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, chunk) in s.chunks(4).enumerate() {
        let last = i == s.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// The login and password of a SASL PLAIN response (`authzid NUL authcid NUL
/// password`). An authzid other than the login itself is refused: nobody may act
/// for another user here.
pub fn sasl_plain(decoded: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = decoded.split(|&b| b == 0);
    let (authz, login, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || login.is_empty() || (!authz.is_empty() && authz != login) {
        return None;
    }
    Some((login.to_vec(), password.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` split at `at` and collect every line.
    fn lines_split(input: &[u8], at: usize, max: usize) -> Vec<Line> {
        let mut r = LineReader::new(max);
        let mut out = Vec::new();
        for part in [&input[..at], &input[at..]] {
            r.push(part);
            while let Some(l) = r.next_line() {
                out.push(l);
            }
        }
        out
    }

    #[test]
    fn lines_are_the_same_wherever_the_input_is_split() {
        let long = [b'x'; 40];
        let mut input = b"USER a@b\r\nPASS p w\nST".to_vec();
        input.extend_from_slice(b"AT\r\n");
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\r\nLIST\0 1\r\nNOOP\r\n");
        let whole = lines_split(&input, input.len(), 32);
        assert_eq!(
            whole,
            vec![
                Line::Text(b"USER a@b".to_vec()),
                Line::Text(b"PASS p w".to_vec()),
                Line::Text(b"STAT".to_vec()),
                Line::TooLong,
                Line::Nul,
                Line::Text(b"NOOP".to_vec()),
            ]
        );
        for at in 0..=input.len() {
            assert_eq!(lines_split(&input, at, 32), whole, "split at {at}");
        }
    }

    #[test]
    fn every_byte_alone_gives_the_same_lines() {
        let input = b"RETR 1\r\nTOP 2 10\r\nQUIT\r\n";
        let mut r = LineReader::new(MAX_COMMAND);
        let mut got = Vec::new();
        for b in input.iter() {
            r.push(std::slice::from_ref(b));
            while let Some(Line::Text(l)) = r.next_line() {
                got.push(parse(&l));
            }
        }
        assert_eq!(got, vec![Command::Retr(1), Command::Top(2, 10), Command::Quit]);
        assert!(r.is_empty());
    }

    #[test]
    fn commands_and_their_arguments() {
        assert_eq!(parse(b"capa"), Command::Capa);
        assert_eq!(parse(b"LIST"), Command::List(None));
        assert_eq!(parse(b"list 3"), Command::List(Some(3)));
        assert_eq!(parse(b"UIDL 12"), Command::Uidl(Some(12)));
        assert_eq!(parse(b"LIST x"), Command::Bad("not a message number"));
        assert_eq!(parse(b"LIST -1"), Command::Bad("not a message number"));
        assert_eq!(parse(b"LIST 1 2"), Command::Bad("too many arguments"));
        assert_eq!(parse(b"RETR"), Command::Bad("a message number is needed"));
        assert_eq!(parse(b"RETR 99999999999999999999"), Command::Bad("not a message number"));
        assert_eq!(parse(b"DELE 0"), Command::Dele(0));
        assert_eq!(parse(b"TOP 1"), Command::Bad("TOP needs a message number and a line count"));
        assert_eq!(parse(b"TOP 1 0"), Command::Top(1, 0));
        assert_eq!(parse(b"PASS two words"), Command::Pass(b"two words".to_vec()));
        assert_eq!(parse(b"USER"), Command::Bad("USER needs a name"));
        assert_eq!(parse(b"STAT now"), Command::Bad("too many arguments"));
        assert_eq!(parse(b"AUTH plain"), Command::Auth { mechanism: Some("PLAIN".into()), initial: None });
        assert_eq!(parse(b"AUTH PLAIN AGE="), Command::Auth { mechanism: Some("PLAIN".into()), initial: Some(b"AGE=".to_vec()) });
        assert_eq!(parse(b"AUTH"), Command::Auth { mechanism: None, initial: None });
        assert_eq!(parse(b"APOP a b"), Command::Unknown("APOP".into()));
        assert_eq!(parse(b""), Command::Unknown("".into()));
    }

    #[test]
    fn base64_and_sasl_plain() {
        assert_eq!(base64_decode(b"AGFAYgBwdw==").unwrap(), b"\0a@b\0pw");
        assert_eq!(base64_decode(b"YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode(b"YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode(b"").unwrap(), b"");
        assert!(base64_decode(b"YW=j").is_none());
        assert!(base64_decode(b"YWJ").is_none());
        assert!(base64_decode(b"Y!Jj").is_none());
        assert_eq!(sasl_plain(b"\0a@b\0pw"), Some((b"a@b".to_vec(), b"pw".to_vec())));
        assert_eq!(sasl_plain(b"a@b\0a@b\0pw"), Some((b"a@b".to_vec(), b"pw".to_vec())));
        assert_eq!(sasl_plain(b"root\0a@b\0pw"), None);
        assert_eq!(sasl_plain(b"\0\0pw"), None);
        assert_eq!(sasl_plain(b"a@b pw"), None);
    }
}
