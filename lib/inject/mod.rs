//! Local injection (postern-inject, postern-sendmail): complete a message's headers
//! as qmail-inject does, work out its envelope, and hand it to the queue.
//!
//! # Header completion
//! - line ends: CRLF becomes LF (the queue stores LF, as qmail's does);
//! - `Date:` is added if missing; `Message-ID: <unixtime.pid.random@IDHOST>` too
//!   (IDHOST = control/idhost, else defaulthost, else me);
//! - `From:` is added if missing: `Full Name <login@defaulthost>`;
//! - `Bcc:`, `Resent-Bcc:`, `Return-Path:` and `Content-Length:` are removed from
//!   the copy queued (qmail-inject removes the last two as well).
//!
//! Added fields go after the existing ones, so the message's own order is kept.
//!
//! # Recipients taken from headers (-t, or postern-inject without arguments)
//! To, Cc and Bcc; if the message has any Resent-To/Resent-Cc/Resent-Bcc, those
//! instead (it is being resent). Groups count by their members. Recipients given as
//! arguments together with -t are *added* to the header ones (as Postfix does).
//!
//! # Addresses (qmail-inject's rules)
//! An address without '@' gets `@defaulthost`; a host ending in '+' gets
//! control/plusdomain instead of the '+'; a host without a dot gets
//! `.defaultdomain` when control/defaultdomain exists (qmail defaults it to me; we
//! leave `localhost` and friends alone when it is not set).
//!
//! # Who is sending
//! login: $QMAILUSER, $MAILUSER, $USER, $LOGNAME, else the real uid's login name.
//! full name: -F, $QMAILNAME, $MAILNAME, $NAME, else the passwd gecos.
//! From host: $QMAILHOST, $MAILHOST, else defaulthost. Envelope sender: -f, else
//! ($QMAILSUSER or login)@($QMAILSHOST or the From host).

pub mod options;
pub mod verify;

use crate::address::{Address, AddressError};
use crate::config::control::{Control, ControlError};
use crate::config::settings;
use crate::error::{Classify, Kind};
use crate::message::headers;
use crate::os::home::Home;
use crate::queue::dsnparams::{self, Notify, RcptDsn, Ret};
use crate::queue::{Envelope, SubmitError};
use std::fmt;
use std::io::{self, BufRead};
use std::time::SystemTime;

#[derive(Debug)]
pub enum InjectError {
    /// Reading the message from stdin failed.
    Read(io::Error),
    Control(ControlError),
    /// An address is unusable; `what` says where it came from.
    Address {
        what: String,
        value: String,
        error: AddressError,
    },
    NoRecipients,
    Submit(SubmitError),
    /// An option's value is unusable (-N, -R, -V): the option and why.
    BadOption(String, String),
    /// The users databases cannot be read (-bv).
    Users(crate::users::UsersError),
}

impl fmt::Display for InjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectError::Read(e) => write!(f, "cannot read the message from standard input: {e}"),
            InjectError::Control(e) => write!(f, "{e}; fix the control file"),
            InjectError::Address { what, value, error } => write!(f, "bad {what} {value:?}: {error}"),
            InjectError::NoRecipients => {
                f.write_str("no recipients: give them as arguments, or use -t to take them from the To, Cc and Bcc headers")
            }
            InjectError::Submit(e) => write!(f, "cannot queue the message: {e}"),
            InjectError::BadOption(o, why) => write!(f, "bad option {o}: {why}"),
            InjectError::Users(e) => e.fmt(f),
        }
    }
}

impl Classify for InjectError {
    fn kind(&self) -> Kind {
        match self {
            InjectError::Address { .. } | InjectError::NoRecipients | InjectError::BadOption(..) => Kind::Permanent,
            InjectError::Submit(e) => e.kind(),
            InjectError::Users(e) => e.kind(),
            _ => Kind::Temporary,
        }
    }
}

impl From<ControlError> for InjectError {
    fn from(e: ControlError) -> Self {
        InjectError::Control(e)
    }
}

/// Everything header completion and address rewriting need to know.
#[derive(Clone, Debug)]
pub struct Identity {
    pub login: String,
    pub full_name: String,
    /// Host for the From we add.
    pub from_host: String,
    pub defaulthost: String,
    pub defaultdomain: Option<String>,
    pub plusdomain: Option<String>,
    pub idhost: String,
    /// Envelope sender when -f is not given.
    pub default_sender: String,
}

fn env(names: &[&str]) -> Option<String> {
    names.iter().filter_map(|n| std::env::var(n).ok()).find(|v| !v.is_empty())
}

/// The gecos full name of `login`: the part before the first comma.
fn gecos(login: &str) -> Option<String> {
    let u = nix::unistd::User::from_name(login).ok().flatten()?;
    let g = u.gecos.to_string_lossy().into_owned();
    let name = g.split(',').next().unwrap_or("").trim().to_string();
    (!name.is_empty()).then_some(name)
}

impl Identity {
    /// From the control files and the environment; `full_name` is -F's value.
    pub fn from_env(home: &Home, full_name: Option<&str>) -> Result<Identity, InjectError> {
        let c = Control::new(home);
        let defaulthost = c.text(&settings::DEFAULTHOST)?;
        let idhost = c.text(&settings::IDHOST)?;
        let defaultdomain = c.optional(&settings::DEFAULTDOMAIN)?;
        let plusdomain = c.optional(&settings::PLUSDOMAIN)?;
        let login = env(&["QMAILUSER", "MAILUSER", "USER", "LOGNAME"])
            .or_else(crate::os::sys::login_name)
            .unwrap_or_else(|| format!("uid{}", crate::os::sys::real_uid()));
        let full_name =
            full_name.map(str::to_string).or_else(|| env(&["QMAILNAME", "MAILNAME", "NAME"])).or_else(|| gecos(&login)).unwrap_or_default();
        let from_host = env(&["QMAILHOST", "MAILHOST"]).unwrap_or_else(|| defaulthost.clone());
        let default_sender = format!(
            "{}@{}",
            env(&["QMAILSUSER"]).unwrap_or_else(|| login.clone()),
            env(&["QMAILSHOST"]).unwrap_or_else(|| from_host.clone())
        );
        Ok(Identity { login, full_name, from_host, defaulthost, defaultdomain, plusdomain, idhost, default_sender })
    }

    /// qmail-inject's address rewriting (see the module docs).
    pub fn qualify(&self, address: &str) -> Result<Address, AddressError> {
        let a = address.trim();
        let a = Address::parse(a.strip_prefix('<').and_then(|x| x.strip_suffix('>')).unwrap_or(a).as_bytes())?;
        let mut host = a.domain().unwrap_or(&self.defaulthost).to_string();
        if let (Some(stripped), Some(plus)) = (host.strip_suffix('+'), &self.plusdomain) {
            host = if stripped.is_empty() { plus.clone() } else { format!("{stripped}.{plus}") };
        }
        if let Some(dd) = &self.defaultdomain {
            if !host.contains('.') && !host.starts_with('[') && !host.is_empty() {
                host = format!("{host}.{dd}");
            }
        }
        Address::from_parts(a.local(), &host)
    }
}

/// A header-completed message and the recipients its headers name.
#[derive(Debug)]
pub struct Completed {
    pub message: Vec<u8>,
    /// From To/Cc/Bcc (or the Resent- ones), in order, as written (see
    /// `Identity::qualify`).
    pub header_recipients: Vec<String>,
}

/// Quote a display name when it holds characters with a meaning in addresses.
fn display_name(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_alphanumeric() || " !#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()) {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Recipients from the header section, read with mail-parser.
fn header_addresses(header: &[u8]) -> Vec<String> {
    use mail_parser::{HeaderName, HeaderValue, MessageParser};
    let mut section = header.to_vec();
    section.push(b'\n');
    let Some(msg) = MessageParser::default().parse_headers(&section) else { return Vec::new() };
    let resent = [HeaderName::ResentTo, HeaderName::ResentCc, HeaderName::ResentBcc];
    let names = if resent.iter().any(|n| msg.header(n.clone()).is_some()) {
        resent.to_vec()
    } else {
        vec![HeaderName::To, HeaderName::Cc, HeaderName::Bcc]
    };
    let mut out = Vec::new();
    for h in msg.headers() {
        if !names.contains(&h.name) {
            continue;
        }
        if let HeaderValue::Address(a) = &h.value {
            for addr in a.iter() {
                // mail-parser reads a bare word ("To: bob") as a name without an
                // address; qmail-inject reads it as a local address.
                let bare = addr.name.as_deref().filter(|n| !n.trim().is_empty() && !n.trim().contains(char::is_whitespace));
                if let Some(x) = addr.address.as_deref().or(bare).map(str::trim).filter(|x| !x.is_empty()) {
                    out.push(x.to_string());
                }
            }
        }
    }
    out
}

/// The `Date:` and `Message-ID: <unixtime.pid.random@IDHOST>` fields that the
/// header section `header` (LF lines) lacks, in that order: what postern-inject
/// adds, and postern-smtpd on a submission port (smtp::submission).
pub fn date_and_message_id(header: &[u8], idhost: &str, now: SystemTime) -> Vec<u8> {
    let mut out = Vec::new();
    if !headers::has(header, "Date") {
        out.extend_from_slice(format!("Date: {}\n", crate::message::date::rfc2822(now)).as_bytes());
    }
    if !headers::has(header, "Message-ID") {
        let secs = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let rnd: String = crate::os::random::bytes(4).iter().map(|b| format!("{b:02x}")).collect();
        out.extend_from_slice(format!("Message-ID: <{secs}.{}.{rnd}@{idhost}>\n", std::process::id()).as_bytes());
    }
    out
}

/// Complete the headers of `input` (any line ends) as the module docs describe.
pub fn complete(input: &[u8], id: &Identity, now: SystemTime) -> Completed {
    let msg = headers::crlf_to_lf(input);
    let (hend, bstart) = headers::split(&msg);
    let header = &msg[..hend];
    let header_recipients = header_addresses(header);
    let mut out = headers::remove(header, &["Bcc", "Resent-Bcc", "Return-Path", "Content-Length"]);
    // A header section whose last line lacks its LF (a message of headers only).
    if !out.is_empty() && out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    out.extend_from_slice(&date_and_message_id(header, &id.idhost, now));
    if !headers::has(header, "From") {
        let addr = format!("{}@{}", id.login, id.from_host);
        let from = if id.full_name.is_empty() { addr } else { format!("{} <{addr}>", display_name(&id.full_name)) };
        out.extend_from_slice(format!("From: {from}\n").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(&msg[bstart..]);
    Completed { message: out, header_recipients }
}

/// Read the message. With `dot_ends` (sendmail without -i) a line holding only "."
/// ends it, and that line is not part of the message.
pub fn read_input(r: &mut dyn BufRead, dot_ends: bool) -> Result<Vec<u8>, InjectError> {
    let mut out = Vec::new();
    if !dot_ends {
        r.read_to_end(&mut out).map_err(InjectError::Read)?;
        return Ok(out);
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).map_err(InjectError::Read)? == 0 {
            return Ok(out);
        }
        if line == b".\n" || line == b".\r\n" || line == b"." {
            return Ok(out);
        }
        out.extend_from_slice(&line);
    }
}

/// What to inject, as the command line said it.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// -f: the envelope sender ("" or "<>" is the null sender).
    pub sender: Option<String>,
    /// -F: the full name for an added From.
    pub full_name: Option<String>,
    /// Recipients from the command line.
    pub recipients: Vec<String>,
    /// Take recipients from the headers as well (-t, or -h).
    pub from_headers: bool,
    /// sendmail's DSN options: -N (NOTIFY, for every recipient), -R (RET), -V
    /// (ENVID, kept as xtext), as smtpd's MAIL and RCPT parameters are.
    pub notify: Option<Notify>,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
}

impl Request {
    /// -N never, or a comma list of success, failure, delay.
    pub fn set_notify(&mut self, v: &str) -> Result<(), InjectError> {
        let n = Notify::parse(v)
            .ok_or_else(|| InjectError::BadOption(format!("-N {v}"), "give never, or a comma list of success, failure and delay".into()))?;
        self.notify = Some(n);
        Ok(())
    }

    /// -R full or hdrs.
    pub fn set_ret(&mut self, v: &str) -> Result<(), InjectError> {
        self.ret = Some(Ret::parse(v).ok_or_else(|| InjectError::BadOption(format!("-R {v}"), "give full or hdrs".into()))?);
        Ok(())
    }

    /// -V: any printable ASCII, up to 100 characters once encoded as xtext.
    pub fn set_envid(&mut self, v: &str) -> Result<(), InjectError> {
        let x = dsnparams::encode_xtext(v);
        if !dsnparams::valid_xtext(&x, dsnparams::MAX_ENVID) {
            return Err(InjectError::BadOption(
                format!("-V {v:?}"),
                "an envelope id is printable ASCII, at most 100 characters as xtext".into(),
            ));
        }
        self.envid = Some(x);
        Ok(())
    }
}

fn parse_address(what: &str, value: &str) -> Result<Address, InjectError> {
    Address::parse(value.as_bytes()).map_err(|error| InjectError::Address { what: what.into(), value: value.into(), error })
}

fn qualified(id: &Identity, what: &str, value: &str) -> Result<Address, InjectError> {
    id.qualify(value).map_err(|error| InjectError::Address { what: what.into(), value: value.into(), error })
}

/// Work out the envelope and the completed message.
pub fn prepare(home: &Home, req: &Request, input: &[u8], now: SystemTime) -> Result<(Envelope, Vec<u8>), InjectError> {
    let id = Identity::from_env(home, req.full_name.as_deref())?;
    let done = complete(input, &id, now);
    let sender = match req.sender.as_deref().map(str::trim) {
        Some("") | Some("<>") => Address::null(),
        Some(s) => qualified(&id, "envelope sender (-f)", s)?,
        None => parse_address("envelope sender", &id.default_sender)?,
    };
    let mut recipients: Vec<Address> = Vec::new();
    let mut add = |a: Address| {
        if !recipients.contains(&a) {
            recipients.push(a);
        }
    };
    if req.from_headers {
        for r in &done.header_recipients {
            add(qualified(&id, "recipient in the headers", r)?);
        }
    }
    for r in &req.recipients {
        add(qualified(&id, "recipient", r)?);
    }
    if recipients.is_empty() {
        return Err(InjectError::NoRecipients);
    }
    let mut envelope = Envelope::new(sender, recipients);
    envelope.dsn.ret = req.ret;
    envelope.dsn.envid = req.envid.clone();
    if req.notify.is_some() {
        envelope.rcpt_dsn = vec![RcptDsn { notify: req.notify, orcpt: None }; envelope.recipients.len()];
    }
    Ok((envelope, done.message))
}

/// The whole of local injection: complete, then queue via postern::queue::submit
/// (which honours $POSTERN_QUEUE and $QMAILQUEUE), asking for DKIM signing:
/// local users are trusted with the host's domains, as Postfix trusts localhost.
pub fn inject(home: &Home, req: &Request, input: &[u8]) -> Result<Envelope, InjectError> {
    let (envelope, message) = prepare(home, req, input, SystemTime::now())?;
    crate::queue::submit_with(home, &mut &message[..], &envelope, true).map_err(InjectError::Submit)?;
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn id() -> Identity {
        Identity {
            login: "joe".into(),
            full_name: "Joe Q. Public".into(),
            from_host: "host.example".into(),
            defaulthost: "host.example".into(),
            defaultdomain: Some("example.org".into()),
            plusdomain: Some("plus.example".into()),
            idhost: "id.example".into(),
            default_sender: "joe@host.example".into(),
        }
    }

    fn qualified_all(c: &Completed) -> Vec<String> {
        c.header_recipients.iter().map(|r| id().qualify(r).unwrap().to_string()).collect()
    }

    fn t() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1795291106)
    }

    #[test]
    fn completes_missing_headers_and_removes_bcc() {
        let input = b"To: a@x.example\r\nBcc: hidden@y.example,\r\n  other@y.example\r\nSubject: hi\r\n\r\nline 1\r\nBcc: body@z\r\n";
        let c = complete(input, &id(), t());
        let m = String::from_utf8(c.message.clone()).unwrap();
        assert!(!m.contains('\r'), "{m}");
        assert!(!m.to_lowercase().contains("hidden"), "{m}");
        assert!(m.contains("\nDate: Sat, 21 Nov 2026 19:58:26 +0000\n"), "{m}");
        assert!(m.contains(&format!("\nMessage-ID: <1795291106.{}.", std::process::id())), "{m}");
        assert!(m.contains("@id.example>\n"), "{m}");
        assert!(m.contains("\nFrom: \"Joe Q. Public\" <joe@host.example>\n"), "{m}");
        assert!(m.ends_with("\n\nline 1\nBcc: body@z\n"), "{m}");
        assert!(m.starts_with("To: a@x.example\nSubject: hi\n"), "{m}");
        assert_eq!(qualified_all(&c), ["a@x.example", "hidden@y.example", "other@y.example"]);
    }

    #[test]
    fn keeps_present_headers() {
        let input = b"From: me@a.example\nDate: Mon, 1 Jan 2001 00:00:00 +0000\nMessage-ID: <x@y>\n\nb\n";
        let c = complete(input, &id(), t());
        assert_eq!(c.message, input.to_vec());
        assert!(c.header_recipients.is_empty());
    }

    #[test]
    fn extracts_groups_resent_and_qualifies() {
        let input = b"To: Friends: a@x.example, \"B\" <b>;, c@host+\nCc: d@pc, e\nSubject: s\n\n";
        let c = complete(input, &id(), t());
        assert_eq!(qualified_all(&c), ["a@x.example", "b@host.example", "c@host.plus.example", "d@pc.example.org", "e@host.example"]);
        let input = b"To: a@x.example\nResent-To: r@x.example\nResent-Bcc: s@x.example\n\nbody\n";
        let c = complete(input, &id(), t());
        assert_eq!(qualified_all(&c), ["r@x.example", "s@x.example"]);
        assert!(!String::from_utf8_lossy(&c.message).contains("s@x.example"));
        // No headers at all: everything is body.
        let c = complete(b"just text\n", &id(), t());
        assert!(c.message.ends_with(b"\n\njust text\n"));
        assert!(c.message.starts_with(b"Date: "));
    }

    #[test]
    fn dot_ends_input_only_without_i() {
        let data = b"a\n..\n.\nafter\n";
        assert_eq!(read_input(&mut &data[..], true).unwrap(), b"a\n..\n");
        assert_eq!(read_input(&mut &data[..], false).unwrap(), data.to_vec());
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("Joe Public"), "Joe Public");
        assert_eq!(display_name("Public, Joe"), "\"Public, Joe\"");
        assert_eq!(display_name("a\"b"), "\"a\\\"b\"");
    }
}
