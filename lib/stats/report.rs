//! The report: the counters and the queue's state, as text for people or in
//! the Prometheus text exposition format (version 0.0.4) for node_exporter's
//! textfile collector or any scraper that reads a file.

use super::counters::{self, DeliveryResult, SendCounts, SmtpdCounts};
use crate::os::home::Home;
use crate::queue::listing::{self, ListingError};
use crate::status::Status;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum StatsError {
    Counters(PathBuf, std::io::Error),
    Queue(ListingError),
    Write(PathBuf, std::io::Error),
}

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatsError::Counters(p, e) => write!(f, "cannot read the counters {}: {e}", p.display()),
            StatsError::Queue(e) => write!(f, "{e}"),
            StatsError::Write(p, e) => write!(f, "cannot write {}: {e}", p.display()),
        }
    }
}

impl crate::error::Classify for StatsError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Temporary
    }
}

#[derive(Debug, Default)]
pub struct QueueState {
    pub messages: u64,
    pub pending_recipients: u64,
    /// Seconds since the oldest message was queued (0 when the queue is empty).
    pub oldest_age: u64,
    /// Files in the queue that could not be read.
    pub unreadable: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    /// None: nothing counted yet (no file).
    pub smtpd: Option<SmtpdCounts>,
    pub send: Option<SendCounts>,
    pub queue: QueueState,
}

/// Read the counters and look at the queue.
pub fn gather(home: &Home) -> Result<Report, StatsError> {
    let smtpd = counters::read_smtpd(home).map_err(|e| StatsError::Counters(super::file::path(home, counters::SMTPD_FILE), e))?;
    let send = counters::read_send(home).map_err(|e| StatsError::Counters(super::file::path(home, counters::SEND_FILE), e))?;
    let mut queue = QueueState::default();
    for m in listing::queue_listing(home).map_err(StatsError::Queue)? {
        queue.messages += 1;
        if m.problem.is_some() {
            queue.unreadable += 1;
        }
        queue.pending_recipients += m.recipients.iter().filter(|r| !r.done).count() as u64;
        queue.oldest_age = queue.oldest_age.max(m.age);
    }
    Ok(Report { smtpd, send, queue })
}

/// What a refusal's status usually means in postern-smtpd's replies.
pub fn reason(status: Option<Status>) -> &'static str {
    let Some(s) = status else { return "other" };
    match (s.class(), s.subject(), s.detail()) {
        (5, 1, 1) => "no such mailbox",
        (5, 1, 3) => "bad recipient address",
        (5, 1, 7) => "bad sender address",
        (5, 3, 4) => "message too big",
        (5, 4, 6) => "mail loop",
        (5, 5, 0) => "protocol violation",
        (5, 5, 1) => "command out of sequence",
        (5, 5, 2) => "syntax error",
        (5, 6, 0) => "bad content",
        (5, 6, 7) => "needs SMTPUTF8",
        (5, 7, 1) => "denied by policy (relaying, sender, SPF, DMARC, SRS)",
        (5, 7, 8) => "authentication failed",
        (4, 4, 2) => "timeout",
        (4, 5, 3) => "too many recipients",
        (4, 7, 0) => "security: errors, TLS, temporary policy",
        (4, 3, 0) => "mail system error",
        (4, _, _) => "temporary",
        _ => "permanent",
    }
}

const RESULT_HEAD: &str = "delivered deferred failed";

fn row(label: &str, width: usize, r: &[u64; 3]) -> String {
    format!("  {label:<width$} {:>9} {:>8} {:>6}\n", r[0], r[1], r[2])
}

/// `postern-admin stats`: for people.
pub fn format_text(r: &Report) -> String {
    let mut s = String::new();
    match &r.smtpd {
        None => s.push_str("smtp: nothing counted yet\n"),
        Some(c) => {
            s.push_str(&format!("smtp: {} messages accepted ({} bytes)\n", c.accepted, c.accepted_bytes));
            let refused: u64 = c.refused.iter().map(|x| x.1).sum();
            s.push_str(&format!("smtp: {refused} refusals (4xx, 5xx replies)\n"));
            for (st, n) in &c.refused {
                let name = st.map(|x| x.to_string()).unwrap_or_else(|| "other".into());
                s.push_str(&format!("  {name:<7} {n:>8}  {}\n", reason(*st)));
            }
        }
    }
    match &r.send {
        None => s.push_str("deliveries: nothing counted yet\n"),
        Some(c) => {
            s.push_str(&format!("deliveries (recipients): {:>8} {RESULT_HEAD}\n", ""));
            s.push_str(&row("local", 23, &c.results[0]));
            s.push_str(&row("remote", 23, &c.results[1]));
            s.push_str(&format!("bounces queued: {}\n", c.bounces));
            if !c.domains.is_empty() || c.other_domains != [0; 3] {
                let w = c.domains.iter().map(|d| d.0.len()).max().unwrap_or(0).max(23);
                s.push_str(&format!("remote domains: {:>w$} {RESULT_HEAD}\n", "", w = w - 14));
                for (d, n) in &c.domains {
                    s.push_str(&row(d, w, n));
                }
                if c.other_domains != [0; 3] {
                    s.push_str(&row("(other domains)", w, &c.other_domains));
                }
            }
        }
    }
    let q = &r.queue;
    s.push_str(&format!(
        "queue: {} messages, {} recipients pending, oldest {}",
        q.messages,
        q.pending_recipients,
        if q.messages == 0 { "-".to_string() } else { listing::show_age(q.oldest_age) }
    ));
    if q.unreadable > 0 {
        s.push_str(&format!(", {} unreadable (see postern-admin queue list)", q.unreadable));
    }
    s.push('\n');
    s
}

/// A label value, escaped as the text format asks (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        self.out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
            self.out.push_str(&format!("{{{}}}", l.join(",")));
        }
        self.out.push_str(&format!(" {v}\n"));
    }
}

/// The Prometheus text format. Counters that were never written (no file
/// yet) are given as 0, so every series exists from the first scrape.
pub fn format_prometheus(r: &Report) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let smtpd = r.smtpd.clone().unwrap_or_default();
    f.head("postern_smtp_accepted_messages_total", "counter", "Messages postern-smtpd accepted (250 after DATA).");
    f.sample("postern_smtp_accepted_messages_total", &[], smtpd.accepted);
    f.head("postern_smtp_accepted_bytes_total", "counter", "Bytes of the messages postern-smtpd accepted.");
    f.sample("postern_smtp_accepted_bytes_total", &[], smtpd.accepted_bytes);
    f.head(
        "postern_smtp_refusals_total",
        "counter",
        "Replies of postern-smtpd refusing a command or message (4xx, 5xx), by enhanced status code.",
    );
    for (st, n) in &smtpd.refused {
        let name = st.map(|x| x.to_string()).unwrap_or_else(|| "other".into());
        f.sample("postern_smtp_refusals_total", &[("status", &name), ("reason", reason(*st))], *n);
    }
    let send = r.send.clone().unwrap_or_default();
    f.head(
        "postern_deliveries_total",
        "counter",
        "Results of delivery attempts, one per recipient and attempt, by channel (local, remote) and result.",
    );
    for (ci, channel) in ["local", "remote"].iter().enumerate() {
        for res in DeliveryResult::ALL {
            f.sample("postern_deliveries_total", &[("channel", channel), ("result", res.name())], send.results[ci][res as usize]);
        }
    }
    f.head("postern_bounces_total", "counter", "Bounces (and success notices) postern-send queued.");
    f.sample("postern_bounces_total", &[], send.bounces);
    f.head(
        "postern_remote_deliveries_total",
        "counter",
        "Results of remote delivery attempts, one per recipient and attempt, by destination domain (domains past the first 256 are \"(other)\").",
    );
    let others = [("(other)".to_string(), send.other_domains)];
    for (d, n) in send.domains.iter().chain(others.iter().filter(|o| o.1 != [0; 3])) {
        for res in DeliveryResult::ALL {
            f.sample("postern_remote_deliveries_total", &[("domain", d), ("result", res.name())], n[res as usize]);
        }
    }
    let q = &r.queue;
    f.head("postern_queue_messages", "gauge", "Messages in the queue (new and being delivered).");
    f.sample("postern_queue_messages", &[], q.messages);
    f.head("postern_queue_pending_recipients", "gauge", "Recipients in the queue not yet delivered or bounced.");
    f.sample("postern_queue_pending_recipients", &[], q.pending_recipients);
    f.head("postern_queue_oldest_message_age_seconds", "gauge", "Age of the oldest message in the queue (0 when empty).");
    f.sample("postern_queue_oldest_message_age_seconds", &[], q.oldest_age);
    f.head("postern_queue_unreadable_messages", "gauge", "Queue files that could not be read.");
    f.sample("postern_queue_unreadable_messages", &[], q.unreadable);
    out
}

/// Write `text` to `path` as node_exporter's textfile collector wants it:
/// whole or not at all (a temporary file in the same directory, renamed).
pub fn write_file(path: &Path, text: &str) -> Result<(), StatsError> {
    let err = |e| StatsError::Write(path.to_path_buf(), e);
    let name = path.file_name().ok_or_else(|| err(std::io::Error::other("not a file name")))?;
    let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_family_has_help_and_type_and_samples_follow_their_family() {
        let r = Report {
            smtpd: Some(SmtpdCounts { accepted: 2, accepted_bytes: 300, refused: vec![(Some(Status::new(5, 1, 1)), 4), (None, 1)] }),
            send: Some(SendCounts {
                results: [[1, 2, 3], [4, 5, 6]],
                bounces: 7,
                domains: vec![("x.example".into(), [1, 1, 1])],
                other_domains: [0, 0, 2],
            }),
            queue: QueueState { messages: 1, pending_recipients: 2, oldest_age: 30, unreadable: 0 },
        };
        let text = format_prometheus(&r);
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                family = rest.split(' ').next().unwrap().to_string();
            } else if !line.starts_with("# TYPE ") {
                assert!(line.starts_with(&family), "{line} outside its family {family}");
            }
        }
        assert!(text.contains("postern_smtp_refusals_total{status=\"5.1.1\",reason=\"no such mailbox\"} 4\n"));
        assert!(text.contains("postern_remote_deliveries_total{domain=\"(other)\",result=\"failed\"} 2\n"));
        assert!(text.contains("postern_deliveries_total{channel=\"remote\",result=\"deferred\"} 5\n"));
        assert!(text.contains("postern_queue_oldest_message_age_seconds 30\n"));
    }
}
