//! The spawn protocol between postern-send and its delivery spawners
//! (postern-lspawn, postern-rspawn): requests out on a Unix socket, each with
//! the message's queue file attached (SCM_RIGHTS), answers back on a pipe
//! (lspawn) or the same socket (rspawn). Parsers take bytes and answer "need
//! more" (`None`), so they can be fed input split anywhere.
//!
//! ```text
//! request (send -> spawner): slot (2 bytes, big-endian) id NUL length NUL
//!                            sender NUL recipient NUL [recipient NUL ...] NUL
//!                            + the queue file, open for reading, with the first byte
//! answer  (spawner -> send): slot (2 bytes, big-endian), then for each recipient
//!                            of the request, in order: status NUL text NUL
//! ```
//! The message is the first `length` bytes (decimal) of the attached file (the
//! queue file's format puts it first), so neither spawner opens the queue or
//! parses a queue file: lspawn runs as root, and its delivery child copies the
//! message out with positioned reads only once it is the recipient; rspawn runs
//! as postern-r, which cannot open the queue. Each request has a descriptor of
//! its own (send opens the file for each), and readers use positioned reads, so
//! deliveries of one message to several recipients at once do not disturb each
//! other.
//!
//! The status is an RFC 3463 code: 2.x.x delivered, 4.x.x try again later,
//! 5.x.x give up (and bounce). lspawn gets one recipient per request; rspawn gets
//! the recipients of one message that share a domain. Slots are chosen by send
//! (below its concurrency limit) and reused after their answer.

use crate::address::Address;
use crate::error::Kind;
use crate::queue::Id;
use crate::status::Status;

/// Longest text carried back to send.
pub const MAX_TEXT: usize = 1000;
/// Highest slot a spawner accepts (and so the highest concurrency).
pub const MAX_SLOTS: usize = 4096;
/// Most recipients in one request.
pub const MAX_BATCH: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub slot: u16,
    pub id: Id,
    /// The message's length: it is bytes 0..size of the queue file.
    pub size: u64,
    pub sender: Address,
    pub recipients: Vec<Address>,
}

/// What became of one recipient: the status says delivered, try again or give
/// up; the text says why, for the log and a bounce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub text: String,
}

impl Outcome {
    pub fn new(status: Status, text: impl Into<String>) -> Outcome {
        Outcome { status, text: text.into() }
    }

    /// A temporary failure of the mail system here (4.3.0): a spawner's own
    /// trouble, not the recipient's.
    pub fn temporary(text: impl Into<String>) -> Outcome {
        Outcome::new(Status::MAIL_SYSTEM, text)
    }

    /// None: delivered.
    pub fn failure(&self) -> Option<Kind> {
        self.status.kind()
    }

    /// The same outcome for every recipient of a request.
    pub fn for_all(self, count: usize) -> Vec<Outcome> {
        vec![self; count]
    }
}

/// The answer to one request: an outcome per recipient, in the request's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub slot: u16,
    pub outcomes: Vec<Outcome>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "spawn protocol error: {}", self.0)
    }
}

fn take_field(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(from..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some((&rest[..end], from + end + 1))
}

fn address(b: &[u8], what: &str) -> Result<Address, ProtocolError> {
    Address::parse(b).map_err(|e| ProtocolError(format!("{what}: {e}")))
}

pub fn encode_request(r: &Request) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        16 + r.id.as_str().len() + r.sender.as_str().len() + r.recipients.iter().map(|x| x.as_str().len() + 1).sum::<usize>(),
    );
    v.extend_from_slice(&r.slot.to_be_bytes());
    let size = r.size.to_string();
    for f in [r.id.as_str(), &size, r.sender.as_str()].into_iter().chain(r.recipients.iter().map(Address::as_str)) {
        v.extend_from_slice(f.as_bytes());
        v.push(0);
    }
    v.push(0);
    v
}

/// One request from the front of `buf`: `Ok(None)` means need more.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let slot = u16::from_be_bytes([buf[0], buf[1]]);
    let Some((id, p)) = take_field(buf, 2) else { return Ok(None) };
    let Some((size, p)) = take_field(buf, p) else { return Ok(None) };
    let Some((sender, mut p)) = take_field(buf, p) else { return Ok(None) };
    let mut recipients = Vec::new();
    loop {
        let Some((r, next)) = take_field(buf, p) else { return Ok(None) };
        p = next;
        if r.is_empty() {
            break;
        }
        recipients.push(address(r, "recipient")?);
    }
    let id = std::str::from_utf8(id)
        .ok()
        .and_then(Id::parse)
        .ok_or_else(|| ProtocolError(format!("invalid queue id {:?}", String::from_utf8_lossy(id))))?;
    // Digits only (u64's parser would take a sign).
    let size = Some(size)
        .filter(|s| !s.is_empty() && s.len() <= 20 && s.iter().all(u8::is_ascii_digit))
        .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u64>().ok())
        .ok_or_else(|| ProtocolError(format!("invalid message length {:?}", String::from_utf8_lossy(size))))?;
    if recipients.is_empty() || recipients.len() > MAX_BATCH {
        return Err(ProtocolError(format!("{} recipients in one request", recipients.len())));
    }
    Ok(Some((Request { slot, id, size, sender: address(sender, "sender")?, recipients }, p)))
}

/// Texts lose NULs and are cut to MAX_TEXT bytes.
pub fn encode_answer(a: &Answer) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + a.outcomes.iter().map(|o| o.text.len().min(MAX_TEXT) + 10).sum::<usize>());
    v.extend_from_slice(&a.slot.to_be_bytes());
    for o in &a.outcomes {
        v.extend_from_slice(o.status.to_string().as_bytes());
        v.push(0);
        let mut cut = o.text.len().min(MAX_TEXT);
        while !o.text.is_char_boundary(cut) {
            cut -= 1;
        }
        v.extend(o.text[..cut].bytes().map(|b| if b == 0 { b' ' } else { b }));
        v.push(0);
    }
    v
}

/// One answer from the front of `buf`; `count` says how many recipients the
/// request in a slot had (None: the slot is not in use). `Ok(None)` means need
/// more.
pub fn parse_answer(buf: &[u8], count: impl Fn(u16) -> Option<usize>) -> Result<Option<(Answer, usize)>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let slot = u16::from_be_bytes([buf[0], buf[1]]);
    let n = count(slot).ok_or_else(|| ProtocolError(format!("answer for slot {slot}, which is not in use")))?;
    let mut p = 2;
    let mut outcomes = Vec::with_capacity(n);
    for _ in 0..n {
        let Some((status, next)) = take_field(buf, p) else { return Ok(None) };
        let status = std::str::from_utf8(status)
            .ok()
            .and_then(Status::parse)
            .ok_or_else(|| ProtocolError(format!("bad status {:?}", String::from_utf8_lossy(status))))?;
        let Some((text, next)) = take_field(buf, next) else { return Ok(None) };
        outcomes.push(Outcome { status, text: String::from_utf8_lossy(text).into_owned() });
        p = next;
    }
    Ok(Some((Answer { slot, outcomes }, p)))
}

/// A qmail-style report from a delivery program: its exit code decides (0
/// delivered, 100 give up, anything else try again), its text may start with a
/// status. The status is taken from the text when its class agrees with the
/// exit code; otherwise the class's generic one is used and the text kept whole.
pub fn from_report(exit: Option<Kind>, text: &str) -> Outcome {
    let generic = match exit {
        None => Status::OK,
        Some(k) => Status::of_kind(k),
    };
    let (status, text) = Status::from_report(generic, text);
    Outcome::new(status, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::addr as a;

    #[test]
    fn requests_split_at_every_byte() {
        let r = Request {
            slot: 258,
            id: Id::parse("1.2.3").unwrap(),
            size: 1234,
            sender: Address::null(),
            recipients: vec![a("a@b"), a("c@b")],
        };
        let bytes = encode_request(&r);
        for cut in 0..bytes.len() {
            assert_eq!(parse_request(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(parse_request(&bytes).unwrap(), Some((r, bytes.len())));
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(parse_request(b"\0\x011.2\x005\0s\0a\0\0").unwrap().is_some(), "a good one");
        assert!(parse_request(b"\0\x011.2\x005\0s\0\0").is_err(), "no recipients");
        assert!(parse_request(b"\0\x01../etc\x005\0\0a\0\0").is_err(), "a path for an id");
        assert!(parse_request(b"\0\x011.2\x005\0s\0a\x01b\0\0").is_err(), "a control character in an address");
        for size in [&b""[..], b"+5", b"-1", b"5x", b"99999999999999999999999"] {
            let mut req = b"\0\x011.2\0".to_vec();
            req.extend_from_slice(size);
            req.extend_from_slice(b"\0s\0a\0\0");
            assert!(parse_request(&req).is_err(), "length {:?}", String::from_utf8_lossy(size));
        }
    }

    #[test]
    fn answers_split_at_every_byte_and_sanitised() {
        let r = Answer { slot: 7, outcomes: vec![Outcome::new(Status::NO_MAILBOX, "no\0such"), Outcome::new(Status::OK, "ok")] };
        let bytes = encode_answer(&r);
        for cut in 0..bytes.len() {
            assert_eq!(parse_answer(&bytes[..cut], |_| Some(2)).unwrap(), None, "cut at {cut}");
        }
        let (got, n) = parse_answer(&bytes, |_| Some(2)).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(got.outcomes[0], Outcome::new(Status::NO_MAILBOX, "no such"));
        assert_eq!(got.outcomes[1].failure(), None);
        assert!(parse_answer(b"\0\x01X\0x\0", |_| Some(1)).is_err(), "not a status");
        assert!(parse_answer(b"\0\x012.0.0\0x\0", |_| None).is_err(), "a slot not in use");
    }

    #[test]
    fn reports_from_delivery_programs() {
        assert_eq!(from_report(Some(Kind::Permanent), "5.1.1 no such user"), Outcome::new(Status::NO_MAILBOX, "no such user"));
        assert_eq!(from_report(Some(Kind::Temporary), "not yet"), Outcome::new(Status::of_kind(Kind::Temporary), "not yet"));
        assert_eq!(from_report(None, "2.0.0 delivered"), Outcome::new(Status::OK, "delivered"));
        // A text whose status contradicts the exit code keeps the exit code's class.
        assert_eq!(from_report(Some(Kind::Temporary), "5.1.1 odd"), Outcome::new(Status::of_kind(Kind::Temporary), "5.1.1 odd"));
    }
}
