//! POP3 commands (RFC 1939, CAPA of RFC 2449, STLS of RFC 2595, AUTH of RFC 5034):
//! a command line in, a command out. No I/O here; lines come from the protocol
//! kit's line reader (proto::line), AUTH's exchange from proto::sasl.

/// RFC 2449: a command line is at most 255 octets with its CRLF.
pub const MAX_COMMAND: usize = 255;

/// The reply to a line that held a NUL byte.
pub const NUL_REPLY: &str = "-ERR NUL bytes are not allowed in commands";
/// A SASL line (AUTH PLAIN with its response, or a continuation) may be longer:
/// base64 of the 512 bytes checkpassword takes, and some slack.
pub const MAX_SASL: usize = 1024;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_alone_gives_the_same_commands() {
        use crate::proto::line::{Line, LineReader};
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
}
