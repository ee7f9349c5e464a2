//! One local delivery (postern-local), qmail-local's way.
//!
//! postern-lspawn runs us as the recipient with the message on fd 0 (a seekable
//! memfd) and qmail-local's eight arguments. We find the dot file (see
//! `dotqmail`), then deliver line by line: Maildir, mbox, `|program`, and forwards,
//! which are collected and queued as one copy at the end. The first failure stops
//! us (qmail does the same); exit 0 means every delivery is on stable storage.
//!
//! The helper programs (forward, preline, condredirect, bouncesaying, except,
//! vacation) live in the submodules `helpers` and `vacation`.

use super::alias::AliasError;
use super::program::{program_kind, run_program};
use crate::address::{Address, AddressError};
use crate::config::control::{Control, ControlError};
use crate::config::settings;
use crate::deliver::dotqmail::{self, DotQmailError, Line};
use crate::deliver::mbox::{self, MboxError};
use crate::error::{Classify, Kind};
use crate::maildir::{self, MaildirError};
use crate::message::file::{read_header, seekable};
use crate::os::home::Home;
use crate::queue::{self, Envelope, SubmitError};
use crate::status::Status;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub const USAGE: &str = "usage: postern-local USER HOMEDIR LOCAL DASH EXT DOMAIN SENDER DEFAULTDELIVERY";

#[derive(Debug)]
pub enum LocalError {
    Usage(String),
    Home(PathBuf, String),
    DotQmail(DotQmailError),
    Control(ControlError),
    NoMailbox,
    Loop(String),
    Message(io::Error),
    Maildir(PathBuf, MaildirError),
    Mbox(PathBuf, MboxError),
    /// A `|program` line failed; `code` None means killed by a signal.
    Program {
        command: String,
        code: Option<i32>,
        signal: Option<i32>,
        output: String,
    },
    Timeout {
        command: String,
        seconds: u64,
    },
    Spawn(String, io::Error),
    /// A program or file line in a dot file with the owner-execute bit.
    ForwardOnly(PathBuf),
    ForwardAddress(String, AddressError),
    Forward(SubmitError),
    /// An alias's instructions (users/aliases.cdb, :include: files).
    Alias(AliasError),
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LocalError::*;
        match self {
            Usage(s) => write!(f, "postern-local called wrongly ({s}); {USAGE}"),
            Home(p, s) => write!(f, "home directory {}: {s}", p.display()),
            DotQmail(e) => e.fmt(f),
            Control(e) => e.fmt(f),
            NoMailbox => f.write_str("Sorry, no mailbox here by that name."),
            Loop(r) => write!(f, "This message is looping: it already has my Delivered-To line ({r})."),
            Message(e) => write!(f, "cannot read the message on fd 0: {e}"),
            Maildir(_, e) => e.fmt(f),
            Mbox(_, e) => e.fmt(f),
            Program { command, code, signal, output } => {
                if !output.is_empty() {
                    // The program's own words, less the status it began with.
                    return f.write_str(self.program_report().1);
                }
                match (code, signal) {
                    (Some(c), _) if program_kind(*c) == Kind::Permanent => write!(f, "program |{command} refused the message (exit {c})"),
                    (Some(c), _) => write!(f, "program |{command} failed temporarily (exit {c})"),
                    (None, Some(s)) => write!(f, "program |{command} was killed by signal {s}"),
                    (None, None) => write!(f, "program |{command} ended abnormally"),
                }
            }
            Timeout { command, seconds } => {
                write!(f, "program |{command} ran longer than {seconds} seconds and was killed (control/timeoutdelivery)")
            }
            Spawn(c, e) => write!(f, "cannot run |{c}: {e}"),
            ForwardOnly(p) => {
                write!(f, "{} has the execute bit set (forwards only) but holds a program or file line; chmod u-x it", p.display())
            }
            ForwardAddress(a, e) => write!(f, "cannot forward to {a:?}: {e}; fix the dot file"),
            Forward(e) => write!(f, "forwarding failed: {e}"),
            Alias(e) => e.fmt(f),
        }
    }
}

impl LocalError {
    /// The RFC 3463 status of this failure, decided here.
    pub fn status(&self) -> Status {
        use LocalError::*;
        match self {
            Usage(_) | Control(_) => Status::SYSTEM_CONFIG,
            Home(..) => Status::MAILBOX_MISSING,
            DotQmail(e) => e.status(),
            NoMailbox => Status::NO_MAILBOX,
            Loop(_) => Status::LOOP,
            Maildir(_, e) => e.status(),
            Mbox(_, e) => e.status(),
            Program { .. } => self.program_report().0,
            ForwardOnly(_) => Status::SECURITY,
            ForwardAddress(..) => Status::BAD_DESTINATION_SYNTAX,
            Forward(e) => Status::REFUSED.as_kind(e.kind()),
            Alias(e) => e.status(),
            Message(_) | Timeout { .. } | Spawn(..) => Status::MAIL_SYSTEM,
        }
    }

    /// A failed program's status and words: a status its output starts with,
    /// when its class agrees with the exit code, else the exit code's.
    fn program_report(&self) -> (Status, &str) {
        let LocalError::Program { output, .. } = self else { unreachable!("program errors only") };
        Status::from_report(Status::REFUSED.as_kind(self.kind()), output)
    }
}

impl Classify for LocalError {
    fn kind(&self) -> Kind {
        use LocalError::*;
        match self {
            NoMailbox | Loop(_) | ForwardAddress(..) => Kind::Permanent,
            Program { code: Some(c), .. } => program_kind(*c),
            Forward(e) => e.kind(),
            DotQmail(e) => e.kind(),
            Maildir(_, e) => e.kind(),
            Mbox(_, e) => e.kind(),
            Control(e) => e.kind(),
            Alias(e) => e.kind(),
            _ => Kind::Temporary,
        }
    }
}

/// qmail-local's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub user: String,
    pub homedir: PathBuf,
    pub local: String,
    pub dash: String,
    pub ext: String,
    pub domain: String,
    pub sender: String,
    pub default_delivery: String,
    /// LOCAL is an alias (users/aliases.cdb): its values are the instructions,
    /// not a dot file. Never set by postern-local's command line.
    pub alias: bool,
}

impl Params {
    /// From argv without the program name.
    pub fn from_args(args: &[OsString]) -> Result<Params, LocalError> {
        if args.len() != 8 {
            return Err(LocalError::Usage(format!("{} arguments instead of 8", args.len())));
        }
        let s: Vec<String> = args
            .iter()
            .map(|a| a.clone().into_string().map_err(|_| LocalError::Usage("an argument is not UTF-8".into())))
            .collect::<Result<_, _>>()?;
        let p = Params {
            user: s[0].clone(),
            homedir: PathBuf::from(&s[1]),
            local: s[2].clone(),
            dash: s[3].clone(),
            ext: s[4].clone(),
            domain: s[5].clone(),
            sender: s[6].clone(),
            default_delivery: s[7].clone(),
            alias: false,
        };
        if !p.homedir.is_absolute() {
            return Err(LocalError::Usage(format!("home directory {:?} is not absolute", s[1])));
        }
        if p.dash != "-" && !p.dash.is_empty() {
            return Err(LocalError::Usage(format!("DASH is {:?}, not \"-\" or empty", p.dash)));
        }
        Ok(p)
    }

    pub fn recipient(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

fn no_newlines(s: &str) -> String {
    s.replace('\n', "_")
}

/// The environment qmail-local gives programs (qmail-command(8)).
pub fn delivery_env(p: &Params, newsender: &str, default: Option<&str>, now: SystemTime) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, val: String| v.push((k.to_string(), val));
    put("USER", p.user.clone());
    put("HOME", p.homedir.display().to_string());
    put("LOCAL", p.local.clone());
    put("HOST", p.domain.clone());
    put("SENDER", p.sender.clone());
    put("NEWSENDER", newsender.to_string());
    put("RECIPIENT", p.recipient());
    put("DTLINE", dtline(p));
    put("RPLINE", rpline(&p.sender));
    put("UFLINE", mbox::from_line(&p.sender, now));
    put("EXT", p.ext.clone());
    // EXT2..EXT4: what follows the first, second, third '-' (empty if none).
    let mut rest = p.ext.as_str();
    for n in 2..=4 {
        rest = match rest.find('-') {
            Some(i) => &rest[i + 1..],
            None => "",
        };
        put(&format!("EXT{n}"), rest.to_string());
    }
    // HOST2..HOST4: HOST without its last one, two, three components.
    let mut host = p.domain.as_str();
    for n in 2..=4 {
        if let Some(i) = host.rfind('.') {
            host = &host[..i];
        }
        put(&format!("HOST{n}"), host.to_string());
    }
    if let Some(d) = default {
        put("DEFAULT", d.to_string());
    }
    v
}

pub fn dtline(p: &Params) -> String {
    format!("Delivered-To: {}\n", no_newlines(&p.recipient()))
}

pub fn rpline(sender: &str) -> String {
    format!("Return-Path: <{}>\n", no_newlines(sender))
}

/// qmail-local's NEWSENDER: the sender, or LOCAL-owner@HOST when a
/// `.qmail-EXT-owner` file exists (with VERP if `-owner-default` exists too).
pub fn newsender(p: &Params) -> String {
    let bounce = p.sender.is_empty() || Address::parse(p.sender.as_bytes()).is_ok_and(|a| a.is_double_bounce());
    if bounce || !dotqmail::exists(&p.homedir, &p.dash, &p.ext, "-owner") {
        return p.sender.clone();
    }
    if dotqmail::exists(&p.homedir, &p.dash, &p.ext, "-owner-default") {
        format!("{}-owner-@{}-@[]", p.local, p.domain)
    } else {
        format!("{}-owner@{}", p.local, p.domain)
    }
}

/// The Delivered-To line in `header` equal to ours (case-insensitive), if any.
pub fn find_loop(header: &[u8], recipient: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        (name.eq_ignore_ascii_case("delivered-to") && value.trim().eq_ignore_ascii_case(recipient.trim())).then(|| l.trim_end().to_string())
    })
}

/// What a successful delivery did, for the one-line report.
#[derive(Debug, Default)]
pub struct Delivered {
    pub done: Vec<String>,
    pub forwarded: Vec<String>,
    pub stopped_by: Option<String>,
    pub source: String,
}

impl fmt::Display for Delivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "delivered by {}", self.source)?;
        if self.done.is_empty() && self.forwarded.is_empty() && self.stopped_by.is_none() {
            return f.write_str(": no delivery instructions, message discarded");
        }
        if !self.done.is_empty() {
            write!(f, ": {}", self.done.join(", "))?;
        }
        if !self.forwarded.is_empty() {
            write!(f, "; forwarded to {}", self.forwarded.join(", "))?;
        }
        if let Some(s) = &self.stopped_by {
            write!(f, "; stopped after |{s} (exit 99)")?;
        }
        Ok(())
    }
}

/// One delivery as postern-local makes it, whether postern-lspawn forked us or
/// ran the program: the message on `stdin`, one report line on fd 1, its RFC
/// 3463 status first (qmail-local's interface). Returns the exit code: 0 when
/// every delivery is durable, 100 on a permanent failure, 111 on a temporary
/// one.
pub fn run(home: &Home, p: &Params, stdin: File) -> i32 {
    let result = seekable(stdin).map_err(LocalError::Message).and_then(|mut m| deliver(home, p, &mut m));
    let (line, code) = match result {
        Ok(done) => (format!("{} {done}", Status::OK), crate::error::EXIT_OK),
        Err(e) => (format!("{} {e}", e.status()), e.kind().exit_code()),
    };
    say(&line);
    code
}

/// Print one line on fd 1, flushed: postern-lspawn reads it as the result.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// The whole of postern-local after argument parsing: chdir, find instructions,
/// deliver. `message` must be seekable (see `seekable`).
pub fn deliver(home: &Home, p: &Params, message: &mut File) -> Result<Delivered, LocalError> {
    std::env::set_current_dir(&p.homedir).map_err(|e| LocalError::Home(p.homedir.clone(), format!("cannot enter it: {e}")))?;
    let meta = std::fs::metadata(".").map_err(|e| LocalError::Home(p.homedir.clone(), e.to_string()))?;
    if meta.mode() & 0o002 != 0 {
        return Err(LocalError::Home(p.homedir.clone(), "is writable by others; run chmod o-w on it".into()));
    }
    if meta.mode() & 0o1000 != 0 {
        return Err(LocalError::Home(p.homedir.clone(), "is sticky: the user is editing a .qmail file".into()));
    }
    let found = if p.alias { None } else { dotqmail::find(&p.homedir, &p.dash, &p.ext).map_err(LocalError::DotQmail)? };
    let path = found.as_ref().map(|f| f.path.clone());
    let (lines, default, forward_only, source) = match found {
        None if p.alias => {
            let lines = super::alias::instructions(home, &p.local).map_err(LocalError::Alias)?;
            (lines, None, false, format!("the alias {}", p.local.to_ascii_lowercase()))
        }
        None if !p.dash.is_empty() || !p.ext.is_empty() => return Err(LocalError::NoMailbox),
        None => (dotqmail::parse_default(&p.default_delivery), None, false, "the default delivery".to_string()),
        Some(f) if f.contents.is_empty() => {
            (dotqmail::parse_default(&p.default_delivery), f.default, false, format!("{} (empty: default delivery)", f.path.display()))
        }
        Some(f) => (dotqmail::parse(&f.contents), f.default, f.forward_only, f.path.display().to_string()),
    };
    let recipient = p.recipient();
    let header = read_header(message).map_err(LocalError::Message)?;
    if let Some(l) = find_loop(&header, &no_newlines(&recipient)) {
        return Err(LocalError::Loop(l));
    }
    let now = SystemTime::now();
    let newsender = newsender(p);
    let env = delivery_env(p, &newsender, default.as_deref(), now);
    // Read only when a program line needs it: most deliveries have none.
    let mut timeout: Option<u64> = None;
    let prefix = format!("{}{}", rpline(&p.sender), dtline(p));
    let mut report = Delivered { source, ..Delivered::default() };
    let mut forwards: Vec<String> = Vec::new();
    for line in lines {
        if forward_only && !matches!(line, Line::Forward(_)) {
            return Err(LocalError::ForwardOnly(path.unwrap_or_default()));
        }
        match line {
            Line::Forward(a) => forwards.push(a),
            Line::Maildir(dir) => {
                maildir::deliver(&dir, prefix.as_bytes(), message).map_err(|e| LocalError::Maildir(dir.clone(), e))?;
                report.done.push(dir.display().to_string());
            }
            Line::Mbox(path) => {
                mbox::deliver(&path, &p.sender, prefix.as_bytes(), message).map_err(|e| LocalError::Mbox(path.clone(), e))?;
                report.done.push(path.display().to_string());
            }
            Line::Program(cmd) => {
                let secs = match timeout {
                    Some(t) => t,
                    None => *timeout.insert(Control::new(home).number(&settings::TIMEOUTDELIVERY).map_err(LocalError::Control)?),
                };
                let code = run_program(&cmd, &env, message, Duration::from_secs(secs))?;
                report.done.push(format!("|{cmd}"));
                if code == 99 {
                    report.stopped_by = Some(cmd);
                    break;
                }
            }
        }
    }
    if !forwards.is_empty() {
        forward(home, message, &dtline(p), &newsender, &forwards)?;
        report.forwarded = forwards;
    }
    Ok(report)
}

/// Queue one copy of the message with `dtline` prepended to all `targets`,
/// asking the queue to rewrite the sender with SRS when it goes elsewhere
/// (postern-q holds the secret; we run as the recipient).
pub fn forward(home: &Home, message: &mut File, dtline: &str, sender: &str, targets: &[String]) -> Result<(), LocalError> {
    let defaulthost = || Control::new(home).text(&settings::ENVNOATHOST).map_err(LocalError::Control);
    let mut host: Option<String> = None;
    let mut recipients = Vec::new();
    for t in targets {
        let a = Address::parse(t.as_bytes()).map_err(|e| LocalError::ForwardAddress(t.clone(), e))?;
        if a.domain().is_none() {
            if host.is_none() {
                host = Some(defaulthost()?);
            }
            recipients.push(a.with_default_domain(host.as_deref().unwrap_or_default()));
        } else {
            recipients.push(a);
        }
    }
    let sender = Address::parse(sender.as_bytes()).map_err(|e| LocalError::ForwardAddress(sender.to_string(), e))?;
    message.seek(SeekFrom::Start(0)).map_err(LocalError::Message)?;
    let mut reader = dtline.as_bytes().chain(&mut *message);
    queue::submit::submit_asking(home, &mut reader, &Envelope::new(sender, recipients), queue::submit::Ask::Forward)
        .map_err(LocalError::Forward)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(ext: &str) -> Params {
        Params {
            user: "u".into(),
            homedir: "/home/u".into(),
            local: if ext.is_empty() { "u".into() } else { format!("u-{ext}") },
            dash: if ext.is_empty() { String::new() } else { "-".into() },
            ext: ext.into(),
            domain: "mail.example.org".into(),
            sender: "s@x.example".into(),
            default_delivery: "./Maildir/".into(),
            alias: false,
        }
    }

    #[test]
    fn loop_detection_is_case_insensitive_and_header_only() {
        let h = b"Received: x\nDELIVERED-TO:   U-Foo@Mail.Example.org \nSubject: y\n\n";
        assert!(find_loop(h, "u-foo@mail.example.org").is_some());
        assert!(find_loop(h, "u@mail.example.org").is_none());
        assert!(find_loop(b"Subject: y\n", "u@x").is_none());
    }

    #[test]
    fn environment_like_qmail() {
        let p = params("list-sub-x-y");
        let env: std::collections::HashMap<_, _> =
            delivery_env(&p, "s@x.example", Some("sub-x-y"), SystemTime::UNIX_EPOCH).into_iter().collect();
        assert_eq!(env["EXT2"], "sub-x-y");
        assert_eq!(env["EXT3"], "x-y");
        assert_eq!(env["EXT4"], "y");
        assert_eq!(env["HOST2"], "mail.example");
        assert_eq!(env["HOST3"], "mail");
        assert_eq!(env["HOST4"], "mail");
        assert_eq!(env["RECIPIENT"], "u-list-sub-x-y@mail.example.org");
        assert_eq!(env["DTLINE"], "Delivered-To: u-list-sub-x-y@mail.example.org\n");
        assert_eq!(env["RPLINE"], "Return-Path: <s@x.example>\n");
        assert_eq!(env["UFLINE"], "From s@x.example Thu Jan  1 00:00:00 1970\n");
        assert_eq!(env["DEFAULT"], "sub-x-y");
        let env: std::collections::HashMap<_, _> = delivery_env(&params(""), "", None, SystemTime::UNIX_EPOCH).into_iter().collect();
        assert_eq!(env["EXT2"], "");
        assert!(!env.contains_key("DEFAULT"));
    }
}
