//! What the trigger FIFO (`queue/lock/trigger`) carries to postern-send.
//!
//! Any byte wakes it to look in new/ (postern-queue writes `!`); `F` also
//! retries everything now. A request about one message is a line
//! `=LETTER ID\n`: `=H` hold it, `=D` delete it silently, `=B` delete it and
//! bounce it to its sender, `=Q` retry it now. Only root and group postern may
//! write to the FIFO (mode 0620, postern-s:postern), so only they ask. Each
//! request is one write(2) of at most a few dozen bytes, which a FIFO keeps
//! whole (PIPE_BUF) among other writers' bytes; the reader keeps a request cut
//! by its read buffer for the next read (`Reader`, no I/O).

use super::format::Id;

/// A request about one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Hold(Id),
    Delete { id: Id, bounce: bool },
    Requeue(Id),
}

impl Request {
    /// The bytes to write to the FIFO, in one write.
    pub fn encode(&self) -> Vec<u8> {
        let (letter, id) = match self {
            Request::Hold(id) => ('H', id),
            Request::Delete { id, bounce: false } => ('D', id),
            Request::Delete { id, bounce: true } => ('B', id),
            Request::Requeue(id) => ('Q', id),
        };
        format!("={letter}{id}\n").into_bytes()
    }
}

/// What one read of the FIFO asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wake {
    /// `F`: retry everything now.
    pub flush: bool,
    pub requests: Vec<Request>,
    /// Requests that did not parse (shown in the log).
    pub bad: Vec<String>,
}

/// Reads the FIFO's bytes as they come; a request cut between two reads is
/// kept for the next.
#[derive(Debug, Default)]
pub struct Reader {
    partial: Option<Vec<u8>>,
}

/// Longest request line kept: `=X`, an id (64 bytes at most), the newline.
const MAX_REQUEST: usize = 80;

impl Reader {
    pub fn feed(&mut self, bytes: &[u8], wake: &mut Wake) {
        for &b in bytes {
            match self.partial.as_mut() {
                Some(p) if b == b'\n' => {
                    let line = std::mem::take(p);
                    self.partial = None;
                    match parse(&line) {
                        Some(r) => wake.requests.push(r),
                        None => wake.bad.push(crate::os::log::show(&line)),
                    }
                }
                Some(p) if p.len() < MAX_REQUEST => p.push(b),
                // Too long to be a request: the rest of it is dropped.
                Some(_) => {}
                None if b == b'=' => self.partial = Some(Vec::new()),
                None if b == b'F' => wake.flush = true,
                None => {}
            }
        }
    }
}

fn parse(line: &[u8]) -> Option<Request> {
    let (&letter, id) = line.split_first()?;
    let id = Id::parse(std::str::from_utf8(id).ok()?)?;
    match letter {
        b'H' => Some(Request::Hold(id)),
        b'D' => Some(Request::Delete { id, bounce: false }),
        b'B' => Some(Request::Delete { id, bounce: true }),
        b'Q' => Some(Request::Requeue(id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_among_wake_bytes_split_at_every_byte() {
        let id = Id::parse("1764543601.123456.77").unwrap();
        let mut input = b"!!F".to_vec();
        input.extend(Request::Hold(id.clone()).encode());
        input.extend(b"!");
        input.extend(Request::Delete { id: id.clone(), bounce: true }.encode());
        input.extend(b"=Xnot-a-request\n=Q../etc\n");
        input.extend(Request::Requeue(id.clone()).encode());
        for cut in 0..=input.len() {
            let mut r = Reader::default();
            let mut w = Wake::default();
            r.feed(&input[..cut], &mut w);
            r.feed(&input[cut..], &mut w);
            assert!(w.flush, "cut at {cut}");
            assert_eq!(
                w.requests,
                vec![Request::Hold(id.clone()), Request::Delete { id: id.clone(), bounce: true }, Request::Requeue(id.clone())],
                "cut at {cut}"
            );
            assert_eq!(w.bad, vec!["Xnot-a-request".to_string(), "Q../etc".to_string()], "cut at {cut}");
        }
        // An F inside a request is part of it, not a flush.
        let mut w = Wake::default();
        Reader::default().feed(b"=DF1.2\n", &mut w);
        assert!(!w.flush);
        assert_eq!(w.requests, vec![Request::Delete { id: Id::parse("F1.2").unwrap(), bounce: false }]);
    }
}
