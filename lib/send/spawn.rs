//! The spawn protocol between postern-send and its delivery spawners
//! (postern-lspawn, postern-rspawn), and the spawners' common loop.
//!
//! ```text
//! request (send -> spawner): slot (2 bytes, big-endian) id NUL sender NUL
//!                            recipient NUL [recipient NUL ...] NUL
//! result  (spawner -> send): slot (2 bytes, big-endian), then for each recipient
//!                            of the request, in order: code text NUL
//!         code: 'K' delivered, 'Z' temporary failure, 'D' permanent failure
//! ```
//! lspawn gets one recipient per request; rspawn gets the recipients of one
//! message that share a domain. To rspawn, which cannot read the queue, each
//! request also carries the open queue file as SCM_RIGHTS on a Unix socket.
//! Slots are chosen by send (below its concurrency limit) and reused after their
//! result. Parsers take bytes and answer "need more" (`None`), so they can be fed
//! input split anywhere.

use crate::error::Kind;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Longest report text carried back to send.
pub const MAX_TEXT: usize = 1000;
/// Highest slot a spawner accepts.
pub const MAX_SLOTS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub slot: u16,
    pub id: String,
    pub sender: String,
    pub recipients: Vec<String>,
}

/// Most recipients in one request.
pub const MAX_BATCH: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Failed(Kind),
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Outcome::Delivered => b'K',
            Outcome::Failed(Kind::Temporary) => b'Z',
            Outcome::Failed(Kind::Permanent) => b'D',
        }
    }
    fn from_code(c: u8) -> Option<Outcome> {
        match c {
            b'K' => Some(Outcome::Delivered),
            b'Z' => Some(Outcome::Failed(Kind::Temporary)),
            b'D' => Some(Outcome::Failed(Kind::Permanent)),
            _ => None,
        }
    }
    /// From a delivery program's exit status (qmail's 0/100/111; others temporary).
    pub fn from_exit(code: Option<i32>) -> Outcome {
        match code {
            Some(0) => Outcome::Delivered,
            Some(100) => Outcome::Failed(Kind::Permanent),
            _ => Outcome::Failed(Kind::Temporary),
        }
    }
}

/// The answer to one request: a result per recipient, in the request's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub slot: u16,
    pub results: Vec<(Outcome, String)>,
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

fn text_field(b: &[u8], what: &str) -> Result<String, ProtocolError> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtocolError(format!("{what} is not UTF-8")))
}

/// Encode a request.
pub fn encode_request(r: &Request) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + r.id.len() + r.sender.len() + r.recipients.iter().map(|x| x.len() + 1).sum::<usize>());
    v.extend_from_slice(&r.slot.to_be_bytes());
    for f in [&r.id, &r.sender].into_iter().chain(r.recipients.iter()) {
        v.extend_from_slice(f.as_bytes());
        v.push(0);
    }
    v.push(0);
    v
}

/// Parse one request from the front of `buf`: `Ok(None)` means need more.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let slot = u16::from_be_bytes([buf[0], buf[1]]);
    let Some((id, p)) = take_field(buf, 2) else { return Ok(None) };
    let Some((sender, mut p)) = take_field(buf, p) else { return Ok(None) };
    let mut recipients = Vec::new();
    loop {
        let Some((r, next)) = take_field(buf, p) else { return Ok(None) };
        p = next;
        if r.is_empty() {
            break;
        }
        recipients.push(text_field(r, "recipient")?);
    }
    let id = text_field(id, "id")?;
    if !crate::queue::valid_id(&id) {
        return Err(ProtocolError(format!("invalid queue id {id:?}")));
    }
    if recipients.is_empty() || recipients.len() > MAX_BATCH {
        return Err(ProtocolError(format!("{} recipients in one request", recipients.len())));
    }
    Ok(Some((Request { slot, id, sender: text_field(sender, "sender")?, recipients }, p)))
}

/// Encode a result; texts lose NULs and are cut to MAX_TEXT bytes.
pub fn encode_report(r: &Report) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + r.results.iter().map(|(_, t)| t.len().min(MAX_TEXT) + 2).sum::<usize>());
    v.extend_from_slice(&r.slot.to_be_bytes());
    for (outcome, text) in &r.results {
        v.push(outcome.code());
        let mut cut = text.len().min(MAX_TEXT);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        v.extend(text[..cut].bytes().map(|b| if b == 0 { b' ' } else { b }));
        v.push(0);
    }
    v
}

/// Parse one result from the front of `buf`; `count` says how many recipients the
/// request for a slot had (None: the slot is not in use). `Ok(None)` means need
/// more.
pub fn parse_report(buf: &[u8], count: impl Fn(u16) -> Option<usize>) -> Result<Option<(Report, usize)>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let slot = u16::from_be_bytes([buf[0], buf[1]]);
    let n = count(slot).ok_or_else(|| ProtocolError(format!("result for slot {slot}, which is not in use")))?;
    let mut p = 2;
    let mut results = Vec::with_capacity(n);
    for _ in 0..n {
        let Some(&code) = buf.get(p) else { return Ok(None) };
        let outcome = Outcome::from_code(code).ok_or_else(|| ProtocolError(format!("bad result code {:?}", code as char)))?;
        let Some((text, next)) = take_field(buf, p + 1) else { return Ok(None) };
        results.push((outcome, String::from_utf8_lossy(text).into_owned()));
        p = next;
    }
    Ok(Some((Report { slot, results }, p)))
}

/// Turn a delivery program's captured output into report text: trimmed, lines
/// joined with "/" as qmail does.
pub fn output_text(out: &[u8]) -> String {
    let s = String::from_utf8_lossy(out);
    let parts: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    parts.join(" / ")
}

/// A running delivery: its pid and the read end of its combined stdout/stderr.
pub struct Running {
    pub pid: Pid,
    pub output: OwnedFd,
}

/// What a spawner does with one request: start a child, or answer at once; and
/// how it reads the child's ending.
pub trait Starter {
    /// `file` is the queue file when the request came with one (rspawn).
    fn start(&mut self, req: &Request, file: Option<OwnedFd>) -> Result<Running, (Kind, String)>;

    /// The results for `count` recipients from the child's output and status. By
    /// default the exit code decides for all (qmail's 0/100/111) and the output is
    /// the text.
    fn results(&self, count: usize, output: &[u8], status: &WaitStatus) -> Vec<(Outcome, String)> {
        let (outcome, why) = match status {
            WaitStatus::Exited(_, code) => (Outcome::from_exit(Some(*code)), format!("delivery program exited {code} and said nothing")),
            WaitStatus::Signaled(_, sig, _) => (Outcome::Failed(Kind::Temporary), format!("delivery program killed by {sig:?}")),
            _ => (Outcome::Failed(Kind::Temporary), "delivery program ended oddly".into()),
        };
        let mut text = output_text(output);
        if text.is_empty() {
            text = why;
        }
        vec![(outcome, text); count]
    }
}

/// The same result for every recipient of a request.
pub fn all(count: usize, outcome: Outcome, text: String) -> Vec<(Outcome, String)> {
    vec![(outcome, text); count]
}

struct Slot {
    count: usize,
    output: File,
    text: Vec<u8>,
    status: Option<WaitStatus>,
    eof: bool,
}

/// The spawner loop: read requests on fd 0, start deliveries, write each result on
/// fd 1 when the delivery exits. Ends when fd 0 reaches EOF and every delivery has
/// finished. Single-threaded: poll on fd 0, every child's output and a signalfd
/// for SIGCHLD. With `with_files`, fd 0 is a Unix socket and every request comes
/// with its queue file attached.
pub fn serve(program: &str, starter: &mut dyn Starter, with_files: bool) -> io::Result<()> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(io::Error::from)?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(io::Error::from)?;
    let mut input = crate::os::sys::protocol_fd(0);
    let mut output = crate::os::sys::protocol_fd(1);
    crate::os::sys::set_nonblocking(0, true)?;
    // Results are written without blocking: a spawner stuck writing results while
    // send is stuck writing requests would be a deadlock.
    crate::os::sys::set_nonblocking(1, true)?;
    let mut outbuf: Vec<u8> = Vec::new();
    let mut inbuf: Vec<u8> = Vec::new();
    let mut files: std::collections::VecDeque<OwnedFd> = std::collections::VecDeque::new();
    let mut input_open = true;
    let mut slots: HashMap<u16, Slot> = HashMap::new();
    let mut by_pid: HashMap<i32, u16> = HashMap::new();

    while input_open || !slots.is_empty() || !outbuf.is_empty() {
        // Which fds to watch: fd 0 while open, the signalfd, and every open output.
        let slot_keys: Vec<u16> = slots.iter().filter(|(_, s)| !s.eof).map(|(k, _)| *k).collect();
        let (in_ready, sig_ready, out_ready) = {
            let mut fds = Vec::with_capacity(slot_keys.len() + 3);
            fds.push(PollFd::new(sfd.as_fd(), PollFlags::POLLIN));
            let wflags = if outbuf.is_empty() { PollFlags::empty() } else { PollFlags::POLLOUT };
            fds.push(PollFd::new(output.as_fd(), wflags));
            if input_open {
                fds.push(PollFd::new(input.as_fd(), PollFlags::POLLIN));
            }
            for k in &slot_keys {
                fds.push(PollFd::new(slots[k].output.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready = |f: &PollFd| f.revents().map(|r| !r.is_empty()).unwrap_or(false);
            let sig = ready(&fds[0]);
            // fds[1] (our output) only wakes us: the write below is tried anyway.
            let base = if input_open { 3 } else { 2 };
            let inr = input_open && ready(&fds[2]);
            let outs: Vec<u16> = slot_keys.iter().enumerate().filter(|(i, _)| ready(&fds[base + i])).map(|(_, k)| *k).collect();
            (inr, sig, outs)
        };

        for k in out_ready {
            let s = slots.get_mut(&k).expect("slot");
            drain(s);
        }
        if sig_ready {
            while let Ok(Some(_)) = sfd.read_signal() {}
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(st) => {
                        if let Some(pid) = st.pid() {
                            if let Some(k) = by_pid.remove(&pid.as_raw()) {
                                if let Some(s) = slots.get_mut(&k) {
                                    s.status = Some(st);
                                }
                            }
                        }
                    }
                }
            }
        }
        // Report every slot whose child has exited. Output written before exit is
        // in the pipe: drain it once more; a grandchild still holding the pipe
        // open does not delay the report.
        let finished: Vec<u16> = slots.iter().filter(|(_, s)| s.status.is_some()).map(|(k, _)| *k).collect();
        for k in finished {
            let mut s = slots.remove(&k).expect("slot");
            drain(&mut s);
            let status = s.status.expect("finished");
            let results = starter.results(s.count, &s.text, &status);
            outbuf.extend(encode_report(&Report { slot: k, results }));
        }

        if in_ready {
            let mut buf = [0u8; 16384];
            loop {
                let got = if with_files { crate::os::sys::recv_with_fds(&input, &mut buf, &mut files) } else { input.read(&mut buf) };
                match got {
                    Ok(0) => {
                        input_open = false;
                        break;
                    }
                    Ok(n) => inbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            let mut used = 0;
            loop {
                match parse_request(&inbuf[used..]) {
                    Ok(None) => break,
                    Err(e) => {
                        // The other side is our own scheduler: a framing error means
                        // we can no longer tell requests apart. Stop cleanly.
                        crate::os::log::line(program, &format!("{e}; stopping"));
                        input_open = false;
                        inbuf.clear();
                        used = 0;
                        break;
                    }
                    Ok(Some((req, n))) => {
                        used += n;
                        let count = req.recipients.len();
                        let file = if with_files { files.pop_front() } else { None };
                        if slots.contains_key(&req.slot) || req.slot as usize >= MAX_SLOTS {
                            crate::os::log::line(program, &format!("slot {} busy or out of range; refusing", req.slot));
                            let results = all(count, Outcome::Failed(Kind::Temporary), "4.3.0 spawner slot busy".into());
                            outbuf.extend(encode_report(&Report { slot: req.slot, results }));
                            continue;
                        }
                        if with_files && file.is_none() {
                            let results = all(count, Outcome::Failed(Kind::Temporary), "4.3.0 request came without its queue file".into());
                            outbuf.extend(encode_report(&Report { slot: req.slot, results }));
                            continue;
                        }
                        match starter.start(&req, file) {
                            Ok(run) => {
                                crate::os::sys::set_nonblocking(run.output.as_raw_fd(), true)?;
                                by_pid.insert(run.pid.as_raw(), req.slot);
                                slots.insert(
                                    req.slot,
                                    Slot { count, output: File::from(run.output), text: Vec::new(), status: None, eof: false },
                                );
                            }
                            Err((kind, text)) => {
                                outbuf.extend(encode_report(&Report { slot: req.slot, results: all(count, Outcome::Failed(kind), text) }));
                            }
                        }
                    }
                }
            }
            inbuf.drain(..used);
        }
        if !outbuf.is_empty() {
            match output.write(&outbuf) {
                Ok(n) => {
                    outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                // send is gone: nobody is left to tell; finish the deliveries.
                Err(_) => outbuf.clear(),
            }
        }
    }
    Ok(())
}

fn drain(s: &mut Slot) {
    let mut buf = [0u8; 4096];
    loop {
        match s.output.read(&mut buf) {
            Ok(0) => {
                s.eof = true;
                return;
            }
            Ok(n) => {
                // Room for a full report per recipient; the rest is dropped.
                if s.text.len() < (s.count + 1) * 2 * MAX_TEXT {
                    s.text.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_split_at_every_byte() {
        let r = Request { slot: 258, id: "1.2.3".into(), sender: "".into(), recipients: vec!["a@b".into(), "c@b".into()] };
        let bytes = encode_request(&r);
        for cut in 0..bytes.len() {
            assert_eq!(parse_request(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(parse_request(&bytes).unwrap(), Some((r, bytes.len())));
    }

    #[test]
    fn report_split_at_every_byte_and_sanitised() {
        let r = Report {
            slot: 7,
            results: vec![(Outcome::Failed(Kind::Permanent), "5.1.1 no\0such".into()), (Outcome::Delivered, "ok".into())],
        };
        let bytes = encode_report(&r);
        for cut in 0..bytes.len() {
            assert_eq!(parse_report(&bytes[..cut], |_| Some(2)).unwrap(), None, "cut at {cut}");
        }
        let (got, n) = parse_report(&bytes, |_| Some(2)).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(got.results[0].1, "5.1.1 no such");
        assert_eq!(got.results[0].0, Outcome::Failed(Kind::Permanent));
        assert_eq!(got.results[1], (Outcome::Delivered, "ok".to_string()));
        assert!(parse_report(b"\0\x01X\0", |_| Some(1)).is_err());
        assert!(parse_report(b"\0\x01K\0", |_| None).is_err());
    }

    #[test]
    fn empty_or_huge_batches_refused() {
        assert!(parse_request(b"\0\x011.2\0s\0\0").is_err());
    }

    #[test]
    fn bad_id_refused() {
        assert!(parse_request(b"\0\x01../etc\0\0a\0\0").is_err());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Outcome::from_exit(Some(0)), Outcome::Delivered);
        assert_eq!(Outcome::from_exit(Some(100)), Outcome::Failed(Kind::Permanent));
        assert_eq!(Outcome::from_exit(Some(111)), Outcome::Failed(Kind::Temporary));
        assert_eq!(Outcome::from_exit(Some(3)), Outcome::Failed(Kind::Temporary));
        assert_eq!(Outcome::from_exit(None), Outcome::Failed(Kind::Temporary));
    }
}
