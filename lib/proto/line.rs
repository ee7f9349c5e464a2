//! Command lines off the front of a byte stream.
//!
//! A line ends with LF; a CR before the LF is dropped, so CR LF and a bare LF
//! both end a line (clients send both; DATA's stricter rule is smtp::data's). A
//! line longer than the limit, its line end included, is skipped up to its end
//! and reported as `TooLong`, so memory stays bounded whatever the client sends.

/// One line from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The bytes without the line end.
    Text(Vec<u8>),
    /// Longer than the limit; its bytes were thrown away up to its end.
    TooLong,
}

/// Buffers input and hands it out a line at a time.
#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Where the unread input starts in `buf`.
    start: usize,
    max: usize,
    /// Inside an over-long line: drop bytes until its LF.
    skipping: bool,
}

impl LineReader {
    /// Lines of at most `max` bytes, line end included.
    pub fn new(max: usize) -> LineReader {
        LineReader { buf: Vec::new(), start: 0, max, skipping: false }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete line, or None when more input is needed.
    pub fn next_line(&mut self) -> Option<Line> {
        loop {
            let rest = &self.buf[self.start..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let line = &rest[..i];
                    let too_long = std::mem::take(&mut self.skipping) || i + 1 > self.max;
                    let out = if too_long { Line::TooLong } else { Line::Text(line.strip_suffix(b"\r").unwrap_or(line).to_vec()) };
                    self.consume(i + 1);
                    return Some(out);
                }
                None if rest.len() >= self.max => {
                    // Keep memory bounded: drop the line's start, remember to drop the rest.
                    self.skipping = true;
                    self.consume(rest.len());
                }
                None => return None,
            }
        }
    }

    /// Input received but not yet taken as lines (SMTP's DATA reads it raw).
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Drop `n` bytes of `pending()`.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= 16 * 1024 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Forget everything buffered (after STARTTLS or STLS nothing sent in clear
    /// may be used).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.skipping = false;
    }

    pub fn is_empty(&self) -> bool {
        self.pending().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `pieces` one after another and collect every line.
    fn lines(pieces: &[&[u8]], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(max);
        let mut out = Vec::new();
        for p in pieces {
            r.push(p);
            while let Some(l) = r.next_line() {
                out.push(l);
            }
            assert!(r.pending().len() < max, "an incomplete line is never buffered beyond the limit");
        }
        out
    }

    #[test]
    fn the_same_lines_wherever_the_input_is_split() {
        let long = format!("NOOP {}\r\n", "x".repeat(40));
        let input = format!("EHLO a\r\nNOOP\n{long}QUIT\r\n\r\nlast\r\n");
        let t = |s: &str| Line::Text(s.as_bytes().to_vec());
        let want = vec![t("EHLO a"), t("NOOP"), Line::TooLong, t("QUIT"), t(""), t("last")];
        let b = input.as_bytes();
        assert_eq!(lines(&[b], 20), want);
        for at in 0..=b.len() {
            assert_eq!(lines(&[&b[..at], &b[at..]], 20), want, "split at {at}");
        }
        let bytes: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(lines(&bytes, 20), want, "a byte at a time");
    }

    #[test]
    fn the_limit_counts_the_line_end() {
        assert_eq!(lines(&[b"abcd\r\n"], 6), vec![Line::Text(b"abcd".to_vec())]);
        assert_eq!(lines(&[b"abcde\r\n"], 6), vec![Line::TooLong]);
        assert_eq!(lines(&[b"abcde\n"], 6), vec![Line::Text(b"abcde".to_vec())]);
    }

    #[test]
    fn pending_input_and_clear() {
        let mut r = LineReader::new(100);
        r.push(b"DATA\r\nSubject: x\r\n");
        assert_eq!(r.next_line(), Some(Line::Text(b"DATA".to_vec())));
        assert_eq!(r.pending(), b"Subject: x\r\n");
        r.consume(8);
        assert_eq!(r.pending(), b" x\r\n");
        r.clear();
        assert!(r.is_empty());
        assert_eq!(r.next_line(), None);
    }
}
