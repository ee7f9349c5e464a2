//! The queue as people see it: `postern-admin queue list`, `show` and `count`,
//! `mailq` (`sendmail -bp`), and asking postern-send to retry everything now
//! (`queue flush`, `sendmail -q`). Listings show envelopes, states and results,
//! never message contents (`queue show` adds the header, and the body on request).

use super::info::{self, Tried};
use super::{Id, Queue, QueueFile};
use crate::os::home::Home;
use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum ListingError {
    /// A queue directory cannot be listed.
    QueueDir(PathBuf, io::Error),
    /// Nobody reads the trigger FIFO.
    NotRunning(PathBuf),
    Trigger(PathBuf, io::Error),
    /// postern-queued could not ask for a retry (its answer).
    Refused(String),
}

impl fmt::Display for ListingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListingError::QueueDir(p, e) => write!(f, "cannot read the queue directory {}: {e}", p.display()),
            ListingError::NotRunning(p) => {
                write!(f, "postern-send is not running (nobody reads {}); the queue will be tried when it starts", p.display())
            }
            ListingError::Trigger(p, e) => write!(f, "cannot write to the trigger {}: {e}", p.display()),
            ListingError::Refused(said) => f.write_str(said),
        }
    }
}

impl crate::error::Classify for ListingError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Temporary
    }
}

/// One recipient as listings show it.
#[derive(Clone, Debug)]
pub struct Rcpt {
    pub address: String,
    pub done: bool,
    /// postern-send's record: attempts, last result, next try.
    pub tried: Option<Tried>,
}

/// One message as `queue list` shows it.
#[derive(Clone, Debug)]
pub struct Queued {
    pub id: Id,
    /// "new" (not yet taken by postern-send), "mess" (being delivered) or
    /// "hold" (held by the administrator).
    pub dir: &'static str,
    pub birth: u64,
    pub age: u64,
    pub sender: String,
    pub size: u64,
    pub recipients: Vec<Rcpt>,
    /// Set when the file could not be read.
    pub problem: Option<String>,
}

impl Queued {
    pub fn state(&self) -> &'static str {
        match self.dir {
            "hold" => "held",
            "new" => "new",
            _ => "active",
        }
    }
}

/// One message: its file, read, with postern-send's record.
pub fn read_one(q: &Queue, dir: &'static str, id: &Id) -> Option<(Queued, Option<QueueFile>)> {
    let path = q.root().join(dir).join(id);
    let now = crate::os::time::now();
    let mut item = Queued { id: id.clone(), dir, birth: 0, age: 0, sender: String::new(), size: 0, recipients: Vec::new(), problem: None };
    match QueueFile::open(&path, false) {
        Ok(f) => {
            let tried = info::read(q.root(), id);
            item.birth = f.birth;
            item.age = now.saturating_sub(f.birth);
            item.sender = f.sender.as_str().to_string();
            item.size = f.message_len;
            item.recipients = f
                .recipients
                .iter()
                .enumerate()
                .map(|(i, r)| Rcpt {
                    address: r.address.as_str().to_string(),
                    done: r.done,
                    tried: tried.iter().find(|t| t.index == i && !r.done).cloned(),
                })
                .collect();
            Some((item, Some(f)))
        }
        Err(_) if !path.exists() => None,
        Err(e) => {
            item.problem = Some(e.to_string());
            Some((item, None))
        }
    }
}

/// Every message in queue/new, queue/mess and queue/hold. A message that
/// disappears while we look (delivered meanwhile) is skipped; a damaged one is
/// listed with its problem.
pub fn queue_listing(home: &Home) -> Result<Vec<Queued>, ListingError> {
    let q = Queue::new(home);
    let mut out = Vec::new();
    for (dir, path) in [("new", q.new_dir()), ("mess", q.mess()), ("hold", q.hold())] {
        let ids = match Queue::list(&path) {
            Ok(ids) => ids,
            // hold/ came later: an older install has none, and nothing held.
            Err(e) if dir == "hold" && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ListingError::QueueDir(path.clone(), e)),
        };
        for id in ids {
            if let Some((item, _)) = read_one(&q, dir, &id) {
                out.push(item);
            }
        }
    }
    Ok(out)
}

/// "3d 4h", "5m 2s": a short age.
pub fn show_age(secs: u64) -> String {
    match secs {
        s if s >= 86400 => format!("{}d {}h", s / 86400, s % 86400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// A recipient's line: its state, and for a pending one the last result and
/// the next try.
pub fn format_rcpt(r: &Rcpt, held: bool) -> String {
    let state = match (r.done, held) {
        (true, _) => "done   ",
        (false, true) => "held   ",
        (false, false) => "pending",
    };
    let mut s = format!("  {state} <{}>", r.address);
    if let Some(t) = &r.tried {
        s.push_str(&format!(
            "\n      {} attempt(s), last {}: {} {}",
            t.attempts,
            crate::os::log::rfc3339_secs(t.last_try),
            t.status,
            t.text
        ));
        if !held {
            s.push_str(&format!("; next try {}", crate::os::log::rfc3339_secs(t.next_try)));
        }
    }
    s.push('\n');
    s
}

/// The listing as text: one line per message, one or two indented lines per
/// recipient.
pub fn format_listing(items: &[Queued]) -> String {
    let mut s = String::new();
    for m in items {
        match &m.problem {
            Some(p) => s.push_str(&format!("{} ({}) unreadable: {p}\n", m.id, m.dir)),
            None => {
                s.push_str(&format!(
                    "{} ({}) age {} size {} from <{}>\n",
                    m.id,
                    m.state(),
                    show_age(m.age),
                    m.size,
                    crate::os::log::show(m.sender.as_bytes())
                ));
                for r in &m.recipients {
                    s.push_str(&format_rcpt(r, m.dir == "hold"));
                }
            }
        }
    }
    s
}

/// A JSON string.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// One message as a JSON object (no contents).
pub fn json_message(m: &Queued) -> String {
    let rcpts: Vec<String> = m
        .recipients
        .iter()
        .map(|r| {
            let state = if r.done {
                "done"
            } else if m.dir == "hold" {
                "held"
            } else {
                "pending"
            };
            let mut o = format!("{{\"address\":{},\"state\":\"{state}\"", json_str(&r.address));
            match &r.tried {
                Some(t) => o.push_str(&format!(
                    ",\"attempts\":{},\"last_try\":{},\"status\":{},\"last_result\":{},\"next_try\":{}}}",
                    t.attempts,
                    t.last_try,
                    json_str(&t.status),
                    json_str(&t.text),
                    if m.dir == "hold" { "null".to_string() } else { t.next_try.to_string() }
                )),
                None => o.push_str(",\"attempts\":0,\"last_try\":null,\"status\":null,\"last_result\":null,\"next_try\":null}"),
            }
            o
        })
        .collect();
    format!(
        "{{\"id\":{},\"state\":\"{}\",\"arrival\":{},\"age\":{},\"size\":{},\"sender\":{},\"problem\":{},\"recipients\":[{}]}}",
        json_str(m.id.as_str()),
        m.state(),
        m.birth,
        m.age,
        m.size,
        json_str(&m.sender),
        m.problem.as_deref().map(json_str).unwrap_or_else(|| "null".into()),
        rcpts.join(",")
    )
}

/// The listing as a JSON array, one message a line.
pub fn json_listing(items: &[Queued]) -> String {
    let v: Vec<String> = items.iter().map(json_message).collect();
    format!("[{}]\n", v.join(",\n"))
}

/// `queue count`: the number of messages first, then details.
pub fn format_count(items: &[Queued]) -> String {
    let pending: usize = items.iter().filter(|m| m.dir != "hold").map(|m| m.recipients.iter().filter(|r| !r.done).count()).sum();
    let new = items.iter().filter(|m| m.dir == "new").count();
    let held = items.iter().filter(|m| m.dir == "hold").count();
    format!("{}\npending recipients: {pending}\nnot yet taken by postern-send: {new}\nheld: {held}\n", items.len())
}

/// Write `bytes` to postern-send's trigger FIFO in one write.
pub fn tell_send(home: &Home, bytes: &[u8]) -> Result<(), ListingError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = Queue::new(home).trigger_path();
    let mut f = match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Err(ListingError::NotRunning(path)),
        Err(e) => return Err(ListingError::Trigger(path, e)),
    };
    match f.write(bytes) {
        Ok(_) => Ok(()),
        // A full FIFO: for a bare wake-up, one is pending already.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && bytes.len() == 1 => Ok(()),
        Err(e) => Err(ListingError::Trigger(path, e)),
    }
}

/// Ask postern-send to retry everything deferred now: 'F' on the trigger FIFO.
pub fn flush(home: &Home) -> Result<(), ListingError> {
    tell_send(home, b"F")
}

/// Whether postern-send reads its trigger (is running).
pub fn send_running(home: &Home) -> bool {
    !matches!(tell_send(home, b"!"), Err(ListingError::NotRunning(_)))
}

/// `mailq`, `sendmail -bp`, for any user: postern-queued (postern-q) lists the
/// queue for those who may not read it; without it, we read it ourselves
/// (root, or the owner of an instance).
pub fn mailq(home: &Home) -> Result<String, ListingError> {
    match super::submit::ask_daemon(home, b'L') {
        Some(answer) if answer.starts_with("error: ") => {
            return Err(ListingError::Refused(format!("postern-queued answered: {}", answer.trim_end())))
        }
        Some(answer) => return Ok(answer),
        None => {}
    }
    queue_listing(home).map(|items| format_listing(&items)).map_err(|e| match e {
        ListingError::QueueDir(_, ref io) if io.kind() == io::ErrorKind::PermissionDenied => no_daemon(home, e),
        e => e,
    })
}

/// Neither postern-queued nor the queue itself is open to us.
fn no_daemon(home: &Home, e: ListingError) -> ListingError {
    let sock = super::submit::daemon_socket(home);
    ListingError::Refused(format!("postern-queued does not answer on {} (is postern running?), and {e}", sock.display()))
}

/// `sendmail -q` for any user: postern-queued asks postern-send (at most once
/// a minute for ordinary users); without it, the trigger, which only root and
/// group postern may write.
pub fn retry(home: &Home) -> Result<String, ListingError> {
    if let Some(answer) = super::submit::ask_daemon(home, b'K') {
        return Ok(answer);
    }
    flush(home).map(|()| "ok: postern-send will retry every deferred delivery now\n".into()).map_err(|e| match e {
        ListingError::Trigger(_, ref io) if io.kind() == io::ErrorKind::PermissionDenied => no_daemon(home, e),
        e => e,
    })
}
