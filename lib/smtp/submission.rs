//! Message submission (RFC 6409) in postern-smtpd, on the ports where
//! `POSTERN_SUBMISSION=1` (net::implicit): 587, and 465 with implicit TLS.
//!
//! The session (server.rs) refuses MAIL before AUTH with `530 5.7.0`, and an
//! authenticated client may relay, as on any port. Here is the rest: a
//! submitted message gets the `Date:` and `Message-ID:` it lacks (RFC 6409 8.2
//! and 8.3), the fields postern-inject adds, made by the same code
//! (`inject::date_and_message_id`). They go at the end of the header section,
//! as the message streams to the queue: only the header is held back, and only
//! until its end is seen.

use crate::message::headers;
use std::time::SystemTime;

/// Most header bytes held back while looking for the header's end. A longer
/// header goes to the queue as it came: no mail client writes one.
const MAX_HEADER: usize = 256 * 1024;

/// Completes the header of one message as its bytes go by.
pub struct HeaderCompleter {
    idhost: String,
    now: SystemTime,
    /// The header section so far; None once it has gone out.
    held: Option<Vec<u8>>,
}

impl HeaderCompleter {
    /// `idhost`: control/idhost, the host part of the Message-ID.
    pub fn new(idhost: &str, now: SystemTime) -> HeaderCompleter {
        HeaderCompleter { idhost: idhost.to_string(), now, held: Some(Vec::new()) }
    }

    /// Message bytes in (LF lines, as smtp::data gives them); the bytes to
    /// queue are appended to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let Some(held) = self.held.as_mut() else {
            out.extend_from_slice(data);
            return;
        };
        held.extend_from_slice(data);
        // Judge whole lines only: a part line may yet become a header field.
        let whole = held.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let (hend, bstart) = headers::split(&held[..whole]);
        if hend < whole {
            self.release(hend, bstart, out);
        } else if held.len() > MAX_HEADER {
            out.extend_from_slice(held);
            self.held = None;
        }
    }

    /// The message ended: whatever is still held, completed.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(held) = &self.held {
            let (hend, bstart) = headers::split(held);
            self.release(hend, bstart, out);
        }
    }

    /// The header (up to `hend`), the fields it lacks, then the rest.
    fn release(&mut self, hend: usize, bstart: usize, out: &mut Vec<u8>) {
        let Some(held) = self.held.take() else { return };
        let header = &held[..hend];
        let added = crate::inject::date_and_message_id(header, &self.idhost, self.now);
        out.extend_from_slice(header);
        if !added.is_empty() {
            if !header.is_empty() && !header.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(&added);
            // A body with no empty line before it gets one, as postern-inject
            // does, so our fields do not turn its first line into a header.
            if bstart == hend && hend < held.len() {
                out.push(b'\n');
            }
        }
        out.extend_from_slice(&held[hend..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const NOW: u64 = 1_795_291_106;
    const DATE: &str = "Date: Sat, 21 Nov 2026 19:58:26 +0000\n";

    fn complete_in_chunks(msg: &[u8], chunk: usize) -> Vec<u8> {
        let mut c = HeaderCompleter::new("id.example", UNIX_EPOCH + Duration::from_secs(NOW));
        let mut out = Vec::new();
        for part in msg.chunks(chunk.max(1)) {
            c.feed(part, &mut out);
        }
        c.finish(&mut out);
        out
    }

    #[test]
    fn date_added_at_the_end_of_the_header_however_the_input_is_split() {
        let msg = b"From: a@b.example\nSubject: s\n folded\nMessage-ID: <m@b.example>\n\nbody\nDate: not a header\n";
        let want = format!("From: a@b.example\nSubject: s\n folded\nMessage-ID: <m@b.example>\n{DATE}\nbody\nDate: not a header\n");
        for chunk in 1..=msg.len() {
            assert_eq!(String::from_utf8(complete_in_chunks(msg, chunk)).unwrap(), want, "chunks of {chunk}");
        }
    }

    #[test]
    fn present_fields_are_kept_and_missing_ones_added() {
        let msg = b"date: Mon, 1 Jan 2001 00:00:00 +0000\nMESSAGE-ID: <x@y>\n\nb\n";
        assert_eq!(complete_in_chunks(msg, 7), msg);
        let out = String::from_utf8(complete_in_chunks(b"Subject: s\n\nb\n", 3)).unwrap();
        let id = format!("Message-ID: <{NOW}.{}.", std::process::id());
        assert!(out.starts_with(&format!("Subject: s\n{DATE}{id}")), "{out}");
        assert!(out.ends_with("@id.example>\n\nb\n"), "{out}");
    }

    #[test]
    fn a_body_without_an_empty_line_gets_one() {
        let out = String::from_utf8(complete_in_chunks(b"Subject: s\nMessage-ID: <x@y>\nnot a header\n", 5)).unwrap();
        assert_eq!(out, format!("Subject: s\nMessage-ID: <x@y>\n{DATE}\nnot a header\n"));
        // Headers only, and nothing at all.
        let out = String::from_utf8(complete_in_chunks(b"Message-ID: <x@y>\n", 4)).unwrap();
        assert_eq!(out, format!("Message-ID: <x@y>\n{DATE}"));
        let out = String::from_utf8(complete_in_chunks(b"", 1)).unwrap();
        assert!(out.starts_with(DATE) && out.contains("\nMessage-ID: <"), "{out}");
    }

    #[test]
    fn a_header_too_long_to_hold_goes_through_unchanged() {
        let mut msg = Vec::new();
        // Past the limit well before the header's end arrives.
        while msg.len() <= MAX_HEADER + 65536 {
            msg.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\n");
        }
        msg.extend_from_slice(b"\nbody\n");
        assert!(complete_in_chunks(&msg, 16384) == msg, "the long header was changed");
    }
}
