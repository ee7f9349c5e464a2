//! One line per event on stderr, written with a single write(2) so lines from
//! concurrent processes sharing a log never interleave.
//!
//! A line is `TIMESTAMP PROGRAM: MESSAGE`, the timestamp RFC 3339 in UTC to the
//! microsecond (`2026-11-30T23:05:01.123456Z`). Under systemd (stderr is the
//! stream JOURNAL_STREAM names, so not a pipe a child's parent reads) each
//! line starts with its syslog priority,
//! `<3>` error, `<4>` warning, `<6>` information, which journald takes off and
//! keeps as the entry's priority (SyslogLevelPrefix, on by default).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// A line's syslog priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Something failed that a person must fix; service may have stopped.
    Error = 3,
    /// Something failed and was worked around, or will be retried.
    Warning = 4,
    /// What happened: a message accepted, delivered, a session.
    Info = 6,
}

/// Write `program: message` with a timestamp, as information. Control
/// characters in the message are shown as `?` so that a hostile address cannot
/// forge log lines.
pub fn line(program: &str, message: &str) {
    at(Priority::Info, program, message)
}

/// `line`, as a warning.
pub fn warn(program: &str, message: &str) {
    at(Priority::Warning, program, message)
}

/// `line`, as an error.
pub fn error(program: &str, message: &str) {
    at(Priority::Error, program, message)
}

/// `line` with a priority.
pub fn at(priority: Priority, program: &str, message: &str) {
    let buf = format_line(priority, to_journal(), SystemTime::now(), program, message);
    let _ = std::io::stderr().lock().write_all(buf.as_bytes());
}

/// Whether stderr is the journal: JOURNAL_STREAM is `DEVICE:INODE` of the
/// stream systemd connected, and a child whose stderr went elsewhere inherits
/// the variable, so the descriptor is checked (as sd_journal_stream_fd's
/// documentation asks). Decided once per process.
fn to_journal() -> bool {
    static JOURNAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let Some(v) = std::env::var_os("JOURNAL_STREAM") else { return false };
        let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else { return false };
        let Ok(st) = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&std::io::stderr())) else { return false };
        dev == st.st_dev.to_string() && ino == st.st_ino.to_string()
    })
}

/// One log line, newline included.
pub fn format_line(priority: Priority, journal: bool, t: SystemTime, program: &str, message: &str) -> String {
    let mut buf = String::with_capacity(message.len() + program.len() + 40);
    if journal {
        buf.push_str(&format!("<{}>", priority as u8));
    }
    buf.push_str(&rfc3339(t));
    buf.push(' ');
    buf.push_str(program);
    buf.push_str(": ");
    for c in message.chars() {
        buf.push(if c.is_control() { '?' } else { c });
    }
    buf.push('\n');
    buf
}

/// RFC 3339 in UTC with microseconds: `2026-11-30T23:05:01.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = crate::message::date::civil_from_days(secs.div_euclid(86400));
    let sod = secs.rem_euclid(86400);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z", sod / 3600, sod % 3600 / 60, sod % 60, d.subsec_micros())
}

/// Seconds since the epoch as RFC 3339 (whole seconds), for listings.
pub fn rfc3339_secs(secs: u64) -> String {
    let s = rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(secs));
    format!("{}Z", &s[..19])
}

/// A program's output as one line of report or log text: lines trimmed, empty
/// ones dropped, the rest joined with " / " (qmail logs them joined), control
/// characters as '?'.
pub fn one_line(out: &[u8]) -> String {
    let s = String::from_utf8_lossy(out);
    let parts: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    parts.join(" / ").chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Render bytes for a log line or an error message: valid UTF-8 as is, other
/// bytes escaped.
pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_carry_rfc3339_and_under_systemd_their_priority() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_796_080_000, 123_456_000);
        let plain = super::format_line(super::Priority::Info, false, t, "postern-send", "x\ny");
        assert_eq!(plain, "2026-11-30T23:06:40.123456Z postern-send: x?y\n");
        let j = super::format_line(super::Priority::Error, true, t, "postern-send", "gone");
        assert_eq!(j, "<3>2026-11-30T23:06:40.123456Z postern-send: gone\n");
        assert_eq!(super::rfc3339_secs(1_796_080_000), "2026-11-30T23:06:40Z");
    }

    #[test]
    fn program_output_as_one_line() {
        assert_eq!(super::one_line(b" line one \n\nline\ttwo\n"), "line one / line?two");
    }
}
