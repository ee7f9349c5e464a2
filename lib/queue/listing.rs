//! The queue as people see it: `postern-admin queue list` and `count`,
//! `mailq` (`sendmail -bp`), and asking postern-send to retry everything now
//! (`queue flush`, `sendmail -q`).

use super::{Queue, QueueFile};
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
}

impl fmt::Display for ListingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListingError::QueueDir(p, e) => write!(f, "cannot read the queue directory {}: {e}", p.display()),
            ListingError::NotRunning(p) => {
                write!(f, "postern-send is not running (nobody reads {}); the queue will be tried when it starts", p.display())
            }
            ListingError::Trigger(p, e) => write!(f, "cannot write to the trigger {}: {e}", p.display()),
        }
    }
}

impl crate::error::Classify for ListingError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Temporary
    }
}

/// One message as `queue list` shows it.
#[derive(Clone, Debug)]
pub struct Queued {
    pub id: super::Id,
    /// "new" (not yet taken by postern-send) or "mess".
    pub dir: &'static str,
    pub age: u64,
    pub sender: String,
    pub size: u64,
    /// (recipient, done)
    pub recipients: Vec<(String, bool)>,
    /// Set when the file could not be read.
    pub problem: Option<String>,
}

/// Every message in queue/new and queue/mess. A message that disappears while we
/// look (delivered meanwhile) is skipped; a damaged one is listed with its problem.
pub fn queue_listing(home: &Home) -> Result<Vec<Queued>, ListingError> {
    let q = Queue::new(home);
    let now = crate::os::time::now();
    let mut out = Vec::new();
    for (dir, path) in [("new", q.new_dir()), ("mess", q.mess())] {
        let ids = Queue::list(&path).map_err(|e| ListingError::QueueDir(path.clone(), e))?;
        for id in ids {
            let file = path.join(&id);
            if !file.exists() {
                continue;
            }
            let mut item = Queued { id, dir, age: 0, sender: String::new(), size: 0, recipients: Vec::new(), problem: None };
            match QueueFile::open(&file, false) {
                Ok(f) => {
                    item.age = now.saturating_sub(f.birth);
                    item.sender = f.sender.as_str().to_string();
                    item.size = f.message_len;
                    item.recipients = f.recipients.iter().map(|r| (r.address.as_str().to_string(), r.done)).collect();
                }
                Err(_) if !file.exists() => continue,
                Err(e) => item.problem = Some(e.to_string()),
            }
            out.push(item);
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

/// The listing as text: one line per message, one indented line per recipient.
pub fn format_listing(items: &[Queued]) -> String {
    let mut s = String::new();
    for m in items {
        match &m.problem {
            Some(p) => s.push_str(&format!("{} ({}) unreadable: {p}\n", m.id, m.dir)),
            None => {
                s.push_str(&format!(
                    "{} ({}) age {} size {} from <{}>\n",
                    m.id,
                    m.dir,
                    show_age(m.age),
                    m.size,
                    crate::os::log::show(m.sender.as_bytes())
                ));
                for (r, done) in &m.recipients {
                    s.push_str(&format!("  {} <{}>\n", if *done { "done   " } else { "pending" }, r));
                }
            }
        }
    }
    s
}

/// `queue count`: the number of messages first, then details.
pub fn format_count(items: &[Queued]) -> String {
    let pending: usize = items.iter().map(|m| m.recipients.iter().filter(|r| !r.1).count()).sum();
    let new = items.iter().filter(|m| m.dir == "new").count();
    format!("{}\npending recipients: {pending}\nnot yet taken by postern-send: {new}\n", items.len())
}

/// Ask postern-send to retry everything deferred now: 'F' on the trigger FIFO.
pub fn flush(home: &Home) -> Result<(), ListingError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = Queue::new(home).trigger_path();
    let mut f = match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Err(ListingError::NotRunning(path)),
        Err(e) => return Err(ListingError::Trigger(path, e)),
    };
    match f.write(b"F") {
        Ok(_) => Ok(()),
        // A full FIFO already holds a wake-up the scheduler has not read yet.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(ListingError::Trigger(path, e)),
    }
}
