//! The DATA stream, without I/O: dot-unstuffing and CRLF to LF (the queue
//! stores Unix lines), and where the message ends.
//!
//! # Line endings (the smuggling rule)
//! The only end of a message is CR LF "." CR LF. A bare LF or a bare CR anywhere in
//! DATA is a protocol error: the reader reports `BareNewline` at once and the
//! session refuses the message and closes the connection, so one DATA never yields
//! more than one message and bytes after an ambiguous end (`<LF>.<LF>`,
//! `<CR>.<CR>`, `<CR><LF>.<LF>`, ...) are never read as commands.
//!
//! # NUL
//! A NUL byte is not allowed in a message (RFC 5322 2.3, RFC 5321 4.1.1.4's
//! "text"); many programs that read mail cut a line at it. The reader notes it
//! (`nul`) and reads on to the end, so the session can refuse this one message
//! and go on.

/// What `DataReader::feed` stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStatus {
    /// All input used; the message goes on.
    NeedMore,
    /// CRLF.CRLF seen; the bytes after it are the next commands.
    End,
    /// A CR or LF not part of CRLF: the message must be refused (see the module docs).
    BareNewline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// At the start of a line (DATA's own CRLF counts as the line before).
    LineStart,
    /// A '.' at the start of a line.
    Dot,
    /// ".\r" at the start of a line.
    DotCr,
    Mid,
    /// A CR inside a line.
    Cr,
    Done,
}

/// Reads the DATA stream: removes the dot-stuffing and turns CRLF into LF (the
/// queue stores Unix lines).
#[derive(Debug)]
pub struct DataReader {
    state: DataState,
    /// The message's size so far as RFC 1870 counts it (the octets sent, each
    /// CRLF two, without stuffed dots and the final dot): what SIZE and
    /// databytes compare with. The output is smaller by one per line.
    pub bytes: u64,
    /// A NUL byte was in the message.
    pub nul: bool,
}

impl Default for DataReader {
    fn default() -> Self {
        DataReader { state: DataState::LineStart, bytes: 0, nul: false }
    }
}

impl DataReader {
    /// Consume `input`, appending message bytes to `out`. Returns how much of
    /// `input` was used (all of it unless the status is `End` or `BareNewline`).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, DataStatus) {
        let start = out.len();
        let mut i = 0;
        let status = loop {
            let Some(&b) = input.get(i) else { break DataStatus::NeedMore };
            i += 1;
            self.state = match (self.state, b) {
                (DataState::Done, _) => {
                    i -= 1;
                    break DataStatus::End;
                }
                (DataState::LineStart, b'.') => DataState::Dot,
                (DataState::Dot, b'\r') => DataState::DotCr,
                (DataState::DotCr, b'\n') => {
                    self.state = DataState::Done;
                    break DataStatus::End;
                }
                (DataState::Cr, b'\n') => {
                    // The CR that the LF stands for.
                    self.bytes += 1;
                    out.push(b'\n');
                    DataState::LineStart
                }
                (DataState::LineStart | DataState::Mid, b'\r') => DataState::Cr,
                (_, b'\n') | (DataState::Cr | DataState::DotCr, _) => break DataStatus::BareNewline,
                // A stuffed dot: the line's first '.' is dropped (RFC 5321 4.5.2).
                (_, b) => {
                    self.nul |= b == 0;
                    out.push(b);
                    DataState::Mid
                }
            };
        };
        self.bytes += (out.len() - start) as u64;
        (i, status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_split(input: &[u8], at: usize) -> (Vec<u8>, usize, DataStatus) {
        let mut r = DataReader::default();
        let mut out = Vec::new();
        let (n1, s1) = r.feed(&input[..at], &mut out);
        if s1 != DataStatus::NeedMore {
            return (out, n1, s1);
        }
        let (n2, s2) = r.feed(&input[at..], &mut out);
        (out, n1 + n2, s2)
    }

    fn check_every_split(input: &[u8], want_out: &[u8], want_used: usize, want: DataStatus) {
        for at in 0..=input.len() {
            let (out, used, st) = data_split(input, at);
            assert_eq!(st, want, "status, split at {at} of {:?}", String::from_utf8_lossy(input));
            if want == DataStatus::End {
                assert_eq!(used, want_used, "used, split at {at}");
                assert_eq!(out, want_out, "output, split at {at}");
            }
        }
    }

    #[test]
    fn data_unstuffs_and_ends_at_crlf_dot_crlf_only() {
        let msg = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";
        check_every_split(msg, b"Subject: x\n\n.leading dot\n", msg.len() - 6, DataStatus::End);
        check_every_split(b".\r\n", b"", 3, DataStatus::End);
        check_every_split(b"a\0b\xff\r\n.\r\n", b"a\0b\xff\n", 9, DataStatus::End);
        check_every_split(b"a. b.\r\n.x\r\n.\r\n", b"a. b.\nx\n", 14, DataStatus::End);
    }

    #[test]
    fn data_smuggling_variants_are_bare_newlines() {
        for v in [
            &b"a\n.\nMAIL FROM:<x>\r\n"[..],
            b"a\r\n.\nMAIL FROM:<x>\r\n",
            b"a\n.\r\nMAIL FROM:<x>\r\n",
            b"a\r.\r\n",
            b"a\r.\rMAIL",
            b"a\r\n.\rx",
            b"\n",
            b"x\ry\r\n.\r\n",
        ] {
            check_every_split(v, b"", 0, DataStatus::BareNewline);
        }
        check_every_split(b"no end yet\r\n", b"", 0, DataStatus::NeedMore);
    }

    #[test]
    fn data_counts_bytes() {
        let mut r = DataReader::default();
        let mut out = Vec::new();
        r.feed(b"abc\r\n..d\r\n", &mut out);
        // As sent, CRLF included, the stuffed dot not (RFC 1870).
        assert_eq!(out, b"abc\n.d\n");
        assert_eq!(r.bytes, 9);
        r.feed(b".\r\n", &mut out);
        assert_eq!(r.bytes, 9);
        assert!(!r.nul);
    }

    #[test]
    fn data_notes_nul_and_reads_on() {
        let mut r = DataReader::default();
        let mut out = Vec::new();
        let msg = b"a\0b\r\nc\r\n.\r\nQUIT\r\n";
        assert_eq!(r.feed(msg, &mut out), (msg.len() - 6, DataStatus::End));
        assert!(r.nul);
    }
}
