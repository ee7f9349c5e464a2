//! postern-vacation: an RFC 3834 autoresponder run from a dot-qmail line.
use crate::address::{Address, AddressError};
use crate::error::{Classify, Kind};
use crate::message::file::read_header;
use crate::os::home::Home;
use crate::queue::{self, Envelope, SubmitError};
use crate::status::Status;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub const DEFAULT_PERIOD: u64 = 7 * 86400;
pub const USAGE: &str = "usage: postern-vacation [-p PERIOD_SECONDS] [-d DBFILE] MESSAGEFILE";

#[derive(Debug)]
pub enum VacationError {
    Usage(String),
    Env(&'static str),
    Reply(PathBuf, io::Error),
    Db(PathBuf, io::Error),
    Message(io::Error),
    Queue(SubmitError),
    Address(String, AddressError),
}

impl fmt::Display for VacationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VacationError::*;
        match self {
            Usage(s) => write!(f, "postern-vacation: {s}; {USAGE}"),
            Env(v) => write!(f, "postern-vacation: ${v} is not set; run it from a dot-qmail line"),
            Reply(p, e) => {
                write!(f, "postern-vacation: cannot read the reply text {}: {e}; create it or fix the dot-qmail line", p.display())
            }
            Db(p, e) => {
                write!(f, "postern-vacation: cannot update {}: {e}; check the home directory's permissions and space", p.display())
            }
            Message(e) => write!(f, "postern-vacation: cannot read the message: {e}"),
            Queue(e) => write!(f, "postern-vacation: cannot queue the reply: {e}"),
            Address(a, e) => write!(f, "postern-vacation: cannot answer {a:?}: {e}"),
        }
    }
}

impl VacationError {
    /// The line postern-vacation prints: a temporary problem with its status.
    pub fn report(&self) -> String {
        match self.kind() {
            Kind::Temporary => format!("{} {self}", Status::MAIL_SYSTEM),
            Kind::Permanent => self.to_string(),
        }
    }
}

impl Classify for VacationError {
    fn kind(&self) -> Kind {
        use VacationError::*;
        match self {
            Db(..) | Message(_) | Queue(_) => Kind::Temporary,
            // Mistakes in the setup: the mail itself must still be delivered,
            // so the program reports them and exits 0 (see postern-vacation).
            _ => Kind::Permanent,
        }
    }
}

#[derive(Debug)]
pub struct Options {
    pub period: u64,
    pub db: Option<PathBuf>,
    pub reply: PathBuf,
}

pub fn parse_args(args: &[OsString]) -> Result<Options, VacationError> {
    let mut o = Options { period: DEFAULT_PERIOD, db: None, reply: PathBuf::new() };
    let mut it = args.iter();
    let mut reply = None;
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("-p") => {
                let v = it.next().ok_or_else(|| VacationError::Usage("-p needs a number of seconds".into()))?;
                o.period = v
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| VacationError::Usage(format!("-p {v:?} is not a number of seconds")))?;
            }
            Some("-d") => o.db = Some(PathBuf::from(it.next().ok_or_else(|| VacationError::Usage("-d needs a file name".into()))?)),
            _ if reply.is_none() => reply = Some(PathBuf::from(a)),
            _ => return Err(VacationError::Usage(format!("unexpected argument {a:?}"))),
        }
    }
    o.reply = reply.ok_or_else(|| VacationError::Usage("no MESSAGEFILE".into()))?;
    Ok(o)
}

/// Whether the sender is a robot or list by its address alone.
pub fn robot_sender(sender: &Address) -> bool {
    if sender.is_null() || sender.is_double_bounce() {
        return true;
    }
    let local = sender.local().to_ascii_lowercase();
    matches!(
        local.as_str(),
        "mailer-daemon" | "postmaster" | "listserv" | "majordomo" | "mailer" | "noreply" | "no-reply" | "donotreply" | "do-not-reply"
    ) || local.starts_with("owner-")
        || local.ends_with("-request")
        || local.ends_with("-owner")
        || local.ends_with("-bounces")
}

/// Why not to answer a message by its header (RFC 3834 and list
/// conventions), or None if it may be answered.
pub fn skip_reason(header: &[u8], recipient: &str) -> Option<String> {
    let msg = match mail_parser::MessageParser::default().parse_headers(header) {
        Some(m) => m,
        None => return Some("the message has no header".into()),
    };
    let raw = |n: &str| msg.header_raw(n).map(|v| v.trim().to_ascii_lowercase());
    if let Some(p) = raw("Precedence") {
        if ["bulk", "list", "junk"].contains(&p.as_str()) {
            return Some(format!("Precedence: {p}"));
        }
    }
    for h in ["List-Id", "List-Post", "List-Unsubscribe", "Mailing-List"] {
        if raw(h).is_some() {
            return Some(format!("it has a {h} header"));
        }
    }
    if let Some(a) = raw("Auto-Submitted") {
        if a.split(';').next().map(str::trim) != Some("no") {
            return Some(format!("Auto-Submitted: {a}"));
        }
    }
    let mentioned = [msg.to(), msg.cc()]
        .into_iter()
        .flatten()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address())
        .any(|a| a.eq_ignore_ascii_case(recipient));
    if !mentioned {
        return Some(format!("{recipient} is not in To or Cc"));
    }
    None
}

/// The reply text: its own header lines (if it starts with some) and body.
pub fn split_reply(text: &str) -> (Vec<String>, String) {
    let first = text.lines().next().unwrap_or("");
    let looks_like_header =
        first.split_once(':').is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let sep = text.find("\n\n").map(|i| (i, i + 2));
    match (looks_like_header, sep) {
        (true, Some((end, body))) => {
            let mut headers: Vec<String> = Vec::new();
            for l in text[..end].lines() {
                if (l.starts_with(' ') || l.starts_with('\t')) && !headers.is_empty() {
                    let last = headers.last_mut().expect("not empty");
                    last.push('\n');
                    last.push_str(l);
                } else {
                    headers.push(l.to_string());
                }
            }
            (headers, text[body..].to_string())
        }
        _ => (Vec::new(), text.to_string()),
    }
}

fn has_header(headers: &[String], name: &str) -> bool {
    headers.iter().any(|h| h.split_once(':').is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name)))
}

/// Build the reply message.
pub fn compose(reply_text: &str, header: &[u8], recipient: &Address, sender: &Address, now: SystemTime) -> Vec<u8> {
    let orig = mail_parser::MessageParser::default().parse_headers(header);
    let orig_id = orig.as_ref().and_then(|m| m.message_id()).map(|s| s.to_string());
    let orig_subject =
        orig.as_ref().and_then(|m| m.header_raw("Subject")).map(|s| s.replace(['\r', '\n'], "").trim().to_string()).unwrap_or_default();
    let (headers, body) = split_reply(reply_text);
    let mut out = String::new();
    let nl = |out: &mut String, s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    if !has_header(&headers, "From") {
        nl(&mut out, &format!("From: {recipient}"));
    }
    nl(&mut out, &format!("To: {sender}"));
    if !has_header(&headers, "Subject") {
        let re = if orig_subject.is_empty() {
            "Re: your message".to_string()
        } else if orig_subject.to_ascii_lowercase().starts_with("re:") {
            orig_subject.clone()
        } else {
            format!("Re: {orig_subject}")
        };
        nl(&mut out, &format!("Subject: {re}"));
    }
    for h in headers.iter().filter(|h| {
        let n = h.split_once(':').map(|(n, _)| n.trim().to_ascii_lowercase()).unwrap_or_default();
        // These are ours to set.
        !matches!(n.as_str(), "to" | "date" | "message-id" | "auto-submitted" | "in-reply-to" | "references")
    }) {
        nl(&mut out, h);
    }
    nl(&mut out, &format!("Date: {}", crate::message::date::rfc2822(now)));
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let domain = recipient.domain().unwrap_or("localhost");
    nl(&mut out, &format!("Message-ID: <{secs}.{}.vacation@{domain}>", std::process::id()));
    if let Some(id) = &orig_id {
        nl(&mut out, &format!("In-Reply-To: <{id}>"));
        nl(&mut out, &format!("References: <{id}>"));
    }
    nl(&mut out, "Auto-Submitted: auto-replied");
    if !has_header(&headers, "MIME-Version") && !body.is_ascii() {
        nl(&mut out, "MIME-Version: 1.0");
        nl(&mut out, "Content-Type: text/plain; charset=utf-8");
        nl(&mut out, "Content-Transfer-Encoding: 8bit");
    }
    out.push('\n');
    out.push_str(&body);
    if !body.ends_with('\n') {
        out.push('\n');
    }
    out.into_bytes()
}

/// The answered-senders database: "sender unixtime" lines.
pub fn read_db(path: &Path) -> Result<BTreeMap<String, u64>, VacationError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(VacationError::Db(path.to_path_buf(), e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let (s, t) = l.rsplit_once(' ')?;
            Some((s.to_string(), t.parse().ok()?))
        })
        .collect())
}

/// Rewrite the database atomically (see os::fs).
pub fn write_db(path: &Path, db: &BTreeMap<String, u64>) -> Result<(), VacationError> {
    let text: String = db.iter().map(|(s, t)| format!("{s} {t}\n")).collect();
    crate::os::fs::write_atomic(path, text.as_bytes(), 0o600).map_err(|e| VacationError::Db(path.to_path_buf(), e))
}

/// What postern-vacation did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Replied(String),
    Skipped(String),
}

/// The whole program: decide, queue the reply, remember the sender.
pub fn run(home: &Home, o: &Options, message: &File) -> Result<Outcome, VacationError> {
    let address = |var: &'static str| -> Result<Address, VacationError> {
        let v = std::env::var(var).map_err(|_| VacationError::Env(var))?;
        Address::parse(v.as_bytes()).map_err(|e| VacationError::Address(v, e))
    };
    let (sender, recipient) = (address("SENDER")?, address("RECIPIENT")?);
    if robot_sender(&sender) {
        return Ok(Outcome::Skipped(format!("no reply to sender {:?}", sender.as_str())));
    }
    let header = read_header(message).map_err(VacationError::Message)?;
    if let Some(why) = skip_reason(&header, recipient.as_str()) {
        return Ok(Outcome::Skipped(format!("no reply: {why}")));
    }
    let db_path = match &o.db {
        Some(p) => p.clone(),
        None => PathBuf::from(std::env::var_os("HOME").ok_or(VacationError::Env("HOME"))?).join(".vacation.db"),
    };
    let mut lock_path = db_path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| VacationError::Db(lock_path.clone(), e))?;
    // Concurrent deliveries to one user must not both answer the same sender.
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| VacationError::Db(lock_path.clone(), e.into()))?;
    let now = crate::os::time::now();
    let mut db = read_db(&db_path)?;
    let key = sender.lower();
    if let Some(&t) = db.get(&key) {
        if now < t.saturating_add(o.period) {
            return Ok(Outcome::Skipped(format!("already answered {sender} at {t}")));
        }
    }
    let text = fs::read_to_string(&o.reply).map_err(|e| VacationError::Reply(o.reply.clone(), e))?;
    let reply = compose(&text, &header, &recipient, &sender, SystemTime::now());
    // Queue first, then remember: a crash in between repeats a reply, it
    // never loses one.
    let envelope = Envelope::new(Address::null(), vec![sender.clone()]);
    // Signed: the reply comes from the recipient, one of ours.
    queue::submit_with(home, &mut &reply[..], &envelope, true).map_err(VacationError::Queue)?;
    db.retain(|_, t| now < t.saturating_add(o.period));
    db.insert(key, now);
    write_db(&db_path, &db)?;
    Ok(Outcome::Replied(sender.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::addr as a;

    #[test]
    fn robots_and_lists_get_no_answer() {
        assert!(robot_sender(&a("")));
        assert!(robot_sender(&a("#@[]")));
        assert!(robot_sender(&a("MAILER-DAEMON@x")));
        assert!(robot_sender(&a("owner-list@x")));
        assert!(robot_sender(&a("list-request@x")));
        assert!(!robot_sender(&a("bob@x")));
        let r = "u@h.example";
        assert!(skip_reason(b"To: u@h.example\nPrecedence: bulk\n\n", r).is_some());
        assert!(skip_reason(b"To: u@h.example\nList-Id: <l.x>\n\n", r).is_some());
        assert!(skip_reason(b"To: u@h.example\nAuto-Submitted: auto-replied\n\n", r).is_some());
        assert!(skip_reason(b"To: other@h.example\n\n", r).is_some());
        // Header names and values in any case.
        assert!(skip_reason(b"to: u@h.example\nprecedence: BULK\n\n", r).is_some());
        assert!(skip_reason(b"To: u@h.example\nlist-unsubscribe: <mailto:x@y>\n\n", r).is_some());
        assert!(skip_reason(b"To: u@h.example\nMAILING-LIST: contact x\n\n", r).is_some());
        assert!(skip_reason(b"To: u@h.example\nauto-submitted: Auto-Generated\n\n", r).is_some());
        assert_eq!(skip_reason(b"To: U <U@H.example>\nAuto-Submitted: no\n\n", r), None);
        assert_eq!(skip_reason(b"To: x@y\nCc: a@b, u@h.example\n\n", r), None);
    }

    #[test]
    fn reply_headers() {
        let h = b"From: bob@x\nTo: u@h\nSubject: Lunch\nMessage-ID: <abc@x>\n\n";
        let r = String::from_utf8(compose("I am away.\n", h, &a("u@h"), &a("bob@x"), SystemTime::UNIX_EPOCH)).unwrap();
        assert!(r.contains("Subject: Re: Lunch\n"), "{r}");
        assert!(r.contains("In-Reply-To: <abc@x>\n"), "{r}");
        assert!(r.contains("Auto-Submitted: auto-replied\n"), "{r}");
        assert!(r.ends_with("\n\nI am away.\n"), "{r}");
        let r = String::from_utf8(compose("Subject: Away\n\nBack soon\n", h, &a("u@h"), &a("bob@x"), SystemTime::UNIX_EPOCH)).unwrap();
        assert!(r.contains("Subject: Away\n") && !r.contains("Lunch"), "{r}");
    }
}
