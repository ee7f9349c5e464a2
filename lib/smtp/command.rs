//! SMTP commands as postern-smtpd reads them, without I/O: a command line in,
//! a command or the error (with its reply) out. Lines come from the protocol
//! kit's line reader (proto::line), DATA from data.rs.

use crate::queue::dsnparams::{self, Notify, Ret};
use crate::status::Status;
use std::fmt;

/// Longest command line we read, CRLF included (RFC 5321's 512 plus room for
/// the extensions' parameters: SIZE, ORCPT, ENVID, AUTH=).
pub const MAX_COMMAND_LINE: usize = 2048;

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

impl CommandError {
    /// The reply it gets: code, status, text.
    pub fn reply(&self) -> (u16, Status, String) {
        match self {
            CommandError::Unknown(v) => (500, Status::INVALID_COMMAND, format!("unrecognized command {v:?}; try HELP")),
            CommandError::NotImplemented(v) => (502, Status::INVALID_COMMAND, format!("{v} is not implemented")),
            CommandError::BadBytes => (500, Status::SYNTAX, "command contains control characters or is not UTF-8".into()),
            CommandError::Syntax(s) => (501, Status::BAD_ARGUMENTS, format!("syntax: {s}")),
            CommandError::Parameter(s) => (555, Status::BAD_ARGUMENTS, s.clone()),
            CommandError::NeedsUtf8 => (553, Status::NEEDS_UTF8, "non-ASCII address without SMTPUTF8".into()),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (code, status, text) = self.reply();
        write!(f, "{code} {status} {text}")
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
    /// RET=FULL or HDRS and ENVID (xtext), kept in the envelope for reports.
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    /// AUTH=<mailbox> from a relaying client (accepted, ignored).
    pub auth: Option<String>,
}

/// Parameters of RCPT TO (RFC 3461).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    pub notify: Option<Notify>,
    /// `addr-type;xtext`.
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

/// An xtext value (RFC 3461): printable ASCII without '=', and '+' only in +XX
/// (which must stand for a printable character).
fn xtext(key: &str, v: Option<&str>, max: usize) -> Result<String, CommandError> {
    let v = v.filter(|v| !v.is_empty()).ok_or_else(|| CommandError::Parameter(format!("{key} needs a value")))?;
    if !dsnparams::valid_xtext(v, max) {
        return Err(CommandError::Parameter(format!("{key} value is not valid xtext of at most {max} bytes")));
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
            ("RET", Some(v)) if Ret::parse(v).is_some() => m.ret = Ret::parse(v),
            ("RET", _) => return Err(CommandError::Parameter("RET must be FULL or HDRS".into())),
            ("ENVID", v) => m.envid = Some(xtext("ENVID", v, dsnparams::MAX_ENVID)?),
            ("AUTH", v) => {
                m.auth = Some(xtext("AUTH", v, 500).or_else(|_| {
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
                let n = Notify::parse(v);
                r.notify =
                    Some(n.ok_or_else(|| CommandError::Parameter("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY".into()))?);
            }
            ("ORCPT", v) => {
                let v = xtext("ORCPT", v, dsnparams::MAX_ORCPT)?;
                if !dsnparams::valid_orcpt(&v) {
                    return Err(CommandError::Parameter("ORCPT must be addr-type;address".into()));
                }
                r.orcpt = Some(v);
            }
            _ => return Err(CommandError::Parameter(format!("unknown RCPT parameter {k}"))),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let p = |s: &str| parse_command(s.as_bytes());
        assert_eq!(p("ehlo client.example"), Ok(Command::Ehlo("client.example".into())));
        assert_eq!(p("HELO"), Err(CommandError::Syntax("HELO needs your host name".into())));
        assert_eq!(p("MAIL FROM:<>"), Ok(Command::Mail(String::new(), MailParams::default())));
        let Ok(Command::Mail(a, m)) = p("mail from: <a@b.c> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=hdrs ENVID=x+2B1") else { panic!() };
        assert_eq!(a, "a@b.c");
        assert_eq!((m.size, m.body_8bit, m.smtputf8, m.ret, m.envid.as_deref()), (Some(1000), true, true, Some(Ret::Hdrs), Some("x+2B1")));
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
        let both = Notify { success: true, failure: true, delay: false };
        assert_eq!((a.as_str(), r.notify, r.orcpt.as_deref()), ("x@y", Some(both), Some("rfc822;x@y")));
        assert!(matches!(p("RCPT TO:<x@y> NOTIFY=NEVER,SUCCESS"), Err(CommandError::Parameter(_))));
        assert!(matches!(p("RCPT TO:<x@y> ORCPT=rfc822;x+0D+0AX-Evil:+201"), Err(CommandError::Parameter(_))));
        assert!(matches!(p("MAIL FROM:<a@b> ENVID=a+0Ab"), Err(CommandError::Parameter(_))));
        assert!(matches!(p("MAIL FROM:<a@b> ENVID=ab+2"), Err(CommandError::Parameter(_))));
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
}
