//! One line per event on stderr, written with a single write(2) so lines from
//! concurrent processes sharing a log never interleave.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Write `program: message` with a timestamp. Control characters in the message are
/// shown as `?` so that a hostile address cannot forge log lines.
pub fn line(program: &str, message: &str) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut buf = String::with_capacity(message.len() + program.len() + 32);
    buf.push_str(&format!("@{}.{:06} {program}: ", now.as_secs(), now.subsec_micros()));
    for c in message.chars() {
        buf.push(if c.is_control() { '?' } else { c });
    }
    buf.push('\n');
    let _ = std::io::stderr().lock().write_all(buf.as_bytes());
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
    fn program_output_as_one_line() {
        assert_eq!(super::one_line(b" line one \n\nline\ttwo\n"), "line one / line?two");
    }
}
