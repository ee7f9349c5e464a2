//! The administrator's queue surgery: `postern-admin queue show`, `hold`,
//! `release`, `delete`, `requeue`, and `postern-admin log ID`.
//!
//! postern-admin runs as root; the queue belongs to postern-q and postern-send
//! (postern-s) is its only deliverer. So while postern-send runs, hold, delete
//! and requeue are requests on its trigger FIFO (`queue::control`), which it
//! carries out itself when the message's deliveries in progress have answered;
//! the tool then waits a few seconds to see the effect. When postern-send is
//! not running, the tool moves or removes the file itself (nothing else
//! touches it then). Release needs no request: postern-send never looks in
//! hold/, so the tool moves the file back to new/ and wakes postern-send.

use super::control::Request;
use super::listing::{self, ListingError, Queued};
pub use super::Id;
use super::{Queue, QueueError, QueueFile};
use crate::error::{Classify, Kind};
use crate::os::home::Home;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the tool waits to see postern-send carry out a request.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum AdminError {
    BadId(String),
    NoSuchMessage(Id),
    /// Requeue of a held message.
    Held(Id),
    NotHeld(Id),
    /// A bounce needs postern-send, which is not running.
    NeedsSend(Id, &'static str),
    Listing(ListingError),
    Queue(QueueError),
    Io(PathBuf, io::Error),
    /// No log file and no journal to read.
    NoLogs(String),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::BadId(s) => write!(f, "{s:?} is not a queue id (see `postern-admin queue list`)"),
            AdminError::NoSuchMessage(id) => write!(f, "no message {id} in the queue (delivered, deleted, or never there)"),
            AdminError::Held(id) => write!(f, "{id} is held: `postern-admin queue release {id}` delivers it"),
            AdminError::NotHeld(id) => write!(f, "{id} is not held"),
            AdminError::NeedsSend(id, what) => {
                write!(f, "{id}: {what} needs postern-send, which is not running; start it, or delete without --bounce")
            }
            AdminError::Listing(e) => e.fmt(f),
            AdminError::Queue(e) => e.fmt(f),
            AdminError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            AdminError::NoLogs(why) => f.write_str(why),
        }
    }
}

impl Classify for AdminError {
    fn kind(&self) -> Kind {
        match self {
            AdminError::BadId(_) | AdminError::NoSuchMessage(_) | AdminError::Held(_) | AdminError::NotHeld(_) => Kind::Permanent,
            _ => Kind::Temporary,
        }
    }
}

impl From<ListingError> for AdminError {
    fn from(e: ListingError) -> Self {
        AdminError::Listing(e)
    }
}

pub fn parse_id(s: &str) -> Result<Id, AdminError> {
    Id::parse(s).ok_or_else(|| AdminError::BadId(s.to_string()))
}

/// Where a message is: "new", "mess" or "hold".
fn find(q: &Queue, id: &Id) -> Option<&'static str> {
    ["mess", "new", "hold"].into_iter().find(|d| q.root().join(d).join(id).exists())
}

/// `queue show`: the listing's view of one message, then its DSN parameters
/// and header (and body with `body`).
pub struct Shown {
    pub item: Queued,
    pub header: String,
    pub body: Option<String>,
    pub ret: Option<String>,
    pub envid: Option<String>,
}

pub fn show(home: &Home, id: &Id, body: bool) -> Result<Shown, AdminError> {
    let q = Queue::new(home);
    let dir = find(&q, id).ok_or_else(|| AdminError::NoSuchMessage(id.clone()))?;
    let (item, file) = listing::read_one(&q, dir, id).ok_or_else(|| AdminError::NoSuchMessage(id.clone()))?;
    let Some(file) = file else {
        return Ok(Shown { item, header: String::new(), body: None, ret: None, envid: None });
    };
    let text = file.read_message().map_err(|e| AdminError::Io(file.path.clone(), e))?;
    let split = text.windows(2).position(|w| w == b"\n\n").map(|i| i + 1).unwrap_or(text.len());
    Ok(Shown {
        header: String::from_utf8_lossy(&text[..split]).into_owned(),
        body: body.then(|| String::from_utf8_lossy(&text[split..]).trim_start_matches('\n').to_string()),
        ret: file.dsn.ret.map(|r| r.as_str().to_string()),
        envid: file.dsn.envid.clone(),
        item,
    })
}

pub fn format_show(s: &Shown) -> String {
    let m = &s.item;
    let mut o = format!("id: {}\nstate: {}\n", m.id, m.state());
    if let Some(p) = &m.problem {
        return o + &format!("unreadable: {p}\n");
    }
    o.push_str(&format!(
        "arrival: {} (age {})\nsize: {} bytes\nsender: <{}>\n",
        crate::os::log::rfc3339_secs(m.birth),
        listing::show_age(m.age),
        m.size,
        m.sender
    ));
    if let Some(r) = &s.ret {
        o.push_str(&format!("ret: {r}\n"));
    }
    if let Some(e) = &s.envid {
        o.push_str(&format!("envid: {e}\n"));
    }
    o.push_str("recipients:\n");
    for r in &m.recipients {
        o.push_str(&listing::format_rcpt(r, m.dir == "hold"));
    }
    o.push_str("header:\n");
    o.push_str(&s.header);
    if let Some(b) = &s.body {
        o.push_str("\nbody:\n");
        o.push_str(b);
    }
    o
}

pub fn json_show(s: &Shown) -> String {
    let m = listing::json_message(&s.item);
    let opt = |v: &Option<String>| v.as_deref().map(listing::json_str).unwrap_or_else(|| "null".into());
    format!(
        "{},\"ret\":{},\"envid\":{},\"header\":{},\"body\":{}}}\n",
        &m[..m.len() - 1],
        opt(&s.ret),
        opt(&s.envid),
        listing::json_str(&s.header),
        opt(&s.body)
    )
}

/// Wait until `done` holds, at most WAIT.
fn wait_for(done: impl Fn() -> bool) -> bool {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// What became of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// postern-send has the request and will carry it out once the message's
    /// deliveries in progress have answered.
    Pending,
}

/// What the tool says about a request: `held ID`, or that it waits.
pub fn said(what: &str, id: &Id, o: Outcome) -> String {
    match o {
        Outcome::Done => format!("{what} {id}"),
        Outcome::Pending => format!("{id}: postern-send has the request; it is {what} once its deliveries in progress have answered"),
    }
}

/// The log sources, for a message saying where nothing was found.
pub fn sources(files: &[PathBuf]) -> String {
    if files.is_empty() {
        return "the journal of the postern units".into();
    }
    files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Move a file to hold/ ourselves (postern-send is not running), durably.
fn hold_here(q: &Queue, dir: &str, id: &Id) -> Result<(), AdminError> {
    let (from, to) = (q.root().join(dir).join(id), q.hold().join(id));
    let io = |p: &PathBuf| {
        let p = p.clone();
        move |e| AdminError::Io(p, e)
    };
    if !q.hold().exists() {
        std::fs::create_dir(q.hold()).map_err(io(&q.hold()))?;
        // The same owner as the queue's other directories.
        if let Ok(m) = std::fs::metadata(q.mess()) {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let _ = std::os::unix::fs::chown(q.hold(), Some(m.uid()), Some(m.gid()));
            let _ = std::fs::set_permissions(q.hold(), std::fs::Permissions::from_mode(m.mode() & 0o7777));
        }
    }
    let now = nix::sys::time::TimeSpec::UTIME_NOW;
    nix::sys::stat::utimensat(None, &from, &now, &now, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .map_err(|e| AdminError::Io(from.clone(), e.into()))?;
    std::fs::rename(&from, &to).map_err(io(&from))?;
    crate::os::fs::sync_dir(&q.hold()).map_err(io(&q.hold()))
}

/// `queue hold ID`.
pub fn hold(home: &Home, id: &Id) -> Result<Outcome, AdminError> {
    let q = Queue::new(home);
    match find(&q, id) {
        None => Err(AdminError::NoSuchMessage(id.clone())),
        Some("hold") => Ok(Outcome::Done),
        Some(dir) => match listing::tell_send(home, &Request::Hold(id.clone()).encode()) {
            Ok(()) => Ok(if wait_for(|| q.hold().join(id).exists()) { Outcome::Done } else { Outcome::Pending }),
            Err(ListingError::NotRunning(_)) => hold_here(&q, dir, id).map(|()| Outcome::Done),
            Err(e) => Err(e.into()),
        },
    }
}

/// `queue release ID`: back to new/, to be tried now; the time it was held
/// (since its mtime, set when it was held) is added to its birth, so it does
/// not count against queuelifetime.
pub fn release(home: &Home, id: &Id) -> Result<(), AdminError> {
    use std::os::unix::fs::MetadataExt;
    let q = Queue::new(home);
    let from = q.hold().join(id);
    match find(&q, id) {
        None => return Err(AdminError::NoSuchMessage(id.clone())),
        Some("hold") => {}
        Some(_) => return Err(AdminError::NotHeld(id.clone())),
    }
    let since = std::fs::metadata(&from).map_err(|e| AdminError::Io(from.clone(), e))?.mtime().max(0) as u64;
    let mut f = QueueFile::open(&from, true).map_err(AdminError::Queue)?;
    let held_for = crate::os::time::now().saturating_sub(since);
    if held_for > 0 {
        f.set_birth(f.birth.saturating_add(held_for).min(crate::os::time::now())).map_err(AdminError::Queue)?;
    }
    let to = q.new_dir().join(id);
    std::fs::rename(&from, &to).map_err(|e| AdminError::Io(from.clone(), e))?;
    crate::os::fs::sync_dir(&q.new_dir()).map_err(|e| AdminError::Io(q.new_dir(), e))?;
    q.trigger();
    Ok(())
}

/// `queue delete ID`, silently or with a bounce to the sender.
pub fn delete(home: &Home, id: &Id, bounce: bool) -> Result<Outcome, AdminError> {
    let q = Queue::new(home);
    let Some(dir) = find(&q, id) else { return Err(AdminError::NoSuchMessage(id.clone())) };
    let gone = || find(&q, id).is_none();
    match listing::tell_send(home, &Request::Delete { id: id.clone(), bounce }.encode()) {
        Ok(()) => Ok(if wait_for(gone) { Outcome::Done } else { Outcome::Pending }),
        Err(ListingError::NotRunning(_)) if bounce => Err(AdminError::NeedsSend(id.clone(), "a bounce")),
        Err(ListingError::NotRunning(_)) => {
            // Emptied first: no text of it stays on disk (see queue::store::retire).
            let path = q.root().join(dir).join(id);
            let _ = std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(0));
            std::fs::remove_file(&path).map_err(|e| AdminError::Io(path.clone(), e))?;
            super::info::remove(q.root(), id);
            Ok(Outcome::Done)
        }
        Err(e) => Err(e.into()),
    }
}

/// `queue requeue ID`: retry it now.
pub fn requeue(home: &Home, id: &Id) -> Result<(), AdminError> {
    let q = Queue::new(home);
    match find(&q, id) {
        None => Err(AdminError::NoSuchMessage(id.clone())),
        Some("hold") => Err(AdminError::Held(id.clone())),
        Some(_) => Ok(listing::tell_send(home, &Request::Requeue(id.clone()).encode())?),
    }
}

/// Where `postern-admin log` looks by default: an instance's log/, the init
/// script's /var/log/postern (with rotated files), else the journal.
pub fn log_files(home: &Home) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [home.root().join("log"), PathBuf::from("/var/log/postern")] {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // send.log, send.log.1 (logrotate); compressed ones are skipped.
            if name.contains(".log") && !name.ends_with(".gz") {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
}

/// The story of one message: every log line naming `id`, from `files` (or,
/// when there are none, the journal of the postern units), in time order.
pub fn log_story(id: &Id, files: &[PathBuf]) -> Result<Vec<String>, AdminError> {
    let mut text = Vec::new();
    if files.is_empty() {
        let out = std::process::Command::new("journalctl")
            .args(["--no-pager", "-o", "short-iso-precise", "-u", "postern*"])
            .output()
            .map_err(|e| AdminError::NoLogs(format!("no log files (log/ in the home, /var/log/postern) and journalctl: {e}")))?;
        text.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| AdminError::Io(f.clone(), e))?;
        text.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    Ok(story(id, &text))
}

/// The lines naming `id` (as a word: not a longer id it starts), sorted by
/// their leading timestamp (RFC 3339 sorts as text; the sort is stable).
pub fn story(id: &Id, texts: &[String]) -> Vec<String> {
    let id = id.as_str();
    let names = |l: &str| {
        l.match_indices(id).any(|(i, _)| {
            let before = l[..i].chars().next_back();
            let after = l[i + id.len()..].chars().next();
            let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            !part(before) && !part(after)
        })
    };
    let mut lines: Vec<String> = texts.iter().flat_map(|t| t.lines()).filter(|l| names(l)).map(str::to_string).collect();
    lines.sort_by(|a, b| a.split(' ').next().cmp(&b.split(' ').next()));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_has_the_lines_naming_the_id_in_time_order() {
        let id = Id::parse("1764543601.123456.77").unwrap();
        let smtp = "2026-11-30T23:00:01.000001Z postern-smtpd: accepted 1764543601.123456.77 from 127.0.0.1\n\
                    2026-11-30T23:00:01.000002Z postern-smtpd: accepted 1764543601.123456.777 from 127.0.0.1\n"
            .to_string();
        let send = "2026-11-30T23:00:02.000000Z postern-send: end 1764543601.123456.77\n\
                    2026-11-30T23:00:01.500000Z postern-send: new 1764543601.123456.77 from <a@b>\n\
                    2026-11-30T23:00:01.600000Z postern-send: new 11764543601.123456.77 from <a@b>\n"
            .to_string();
        let s = story(&id, &[smtp, send]);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[0].contains("accepted") && s[1].contains(" new ") && s[2].contains(" end "), "{s:?}");
    }
}
