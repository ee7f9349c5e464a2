//! The spawn protocol between postern-send and its delivery spawners
//! (postern-lspawn, and postern-rspawn later), and the spawners' common loop.
//!
//! ```text
//! request  (send -> spawner): slot (2 bytes, big-endian) id NUL sender NUL recipient NUL
//! result   (spawner -> send): slot (2 bytes, big-endian) code text NUL
//!          code: 'K' delivered, 'Z' temporary failure, 'D' permanent failure
//! ```
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
    pub recipient: String,
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub slot: u16,
    pub outcome: Outcome,
    pub text: String,
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
    let mut v = Vec::with_capacity(8 + r.id.len() + r.sender.len() + r.recipient.len());
    v.extend_from_slice(&r.slot.to_be_bytes());
    for f in [&r.id, &r.sender, &r.recipient] {
        v.extend_from_slice(f.as_bytes());
        v.push(0);
    }
    v
}

/// Parse one request from the front of `buf`: `Ok(None)` means need more.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let slot = u16::from_be_bytes([buf[0], buf[1]]);
    let Some((id, p)) = take_field(buf, 2) else { return Ok(None) };
    let Some((sender, p)) = take_field(buf, p) else { return Ok(None) };
    let Some((rcpt, p)) = take_field(buf, p) else { return Ok(None) };
    let id = text_field(id, "id")?;
    if !crate::queue::valid_id(&id) {
        return Err(ProtocolError(format!("invalid queue id {id:?}")));
    }
    Ok(Some((Request { slot, id, sender: text_field(sender, "sender")?, recipient: text_field(rcpt, "recipient")? }, p)))
}

/// Encode a result; the text loses NULs and is cut to MAX_TEXT bytes.
pub fn encode_report(r: &Report) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + r.text.len());
    v.extend_from_slice(&r.slot.to_be_bytes());
    v.push(r.outcome.code());
    let mut cut = r.text.len().min(MAX_TEXT);
    while !r.text.is_char_boundary(cut) {
        cut -= 1;
    }
    v.extend(r.text[..cut].bytes().map(|b| if b == 0 { b' ' } else { b }));
    v.push(0);
    v
}

/// Parse one result from the front of `buf`: `Ok(None)` means need more.
pub fn parse_report(buf: &[u8]) -> Result<Option<(Report, usize)>, ProtocolError> {
    if buf.len() < 3 {
        return Ok(None);
    }
    let slot = u16::from_be_bytes([buf[0], buf[1]]);
    let outcome = Outcome::from_code(buf[2]).ok_or_else(|| ProtocolError(format!("bad result code {:?}", buf[2] as char)))?;
    let Some((text, p)) = take_field(buf, 3) else { return Ok(None) };
    Ok(Some((Report { slot, outcome, text: String::from_utf8_lossy(text).into_owned() }, p)))
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

/// What a spawner does with one request: start a child, or answer at once.
pub trait Starter {
    fn start(&mut self, req: &Request) -> Result<Running, (Kind, String)>;
}

struct Slot {
    output: File,
    text: Vec<u8>,
    status: Option<WaitStatus>,
    eof: bool,
}

/// The spawner loop: read requests on fd 0, start deliveries, write each result on
/// fd 1 when the delivery exits. Ends when fd 0 reaches EOF and every delivery has
/// finished. Single-threaded: poll on fd 0, every child's output and a signalfd
/// for SIGCHLD.
pub fn serve(program: &str, starter: &mut dyn Starter) -> io::Result<()> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(io::Error::from)?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(io::Error::from)?;
    let mut input = crate::sys::protocol_fd(0);
    let mut output = crate::sys::protocol_fd(1);
    crate::sys::set_nonblocking(0, true)?;
    // Results are written without blocking: a spawner stuck writing results while
    // send is stuck writing requests would be a deadlock.
    crate::sys::set_nonblocking(1, true)?;
    let mut outbuf: Vec<u8> = Vec::new();
    let mut inbuf: Vec<u8> = Vec::new();
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
            let (outcome, why) = match s.status {
                Some(WaitStatus::Exited(_, code)) => (Outcome::from_exit(Some(code)), String::new()),
                Some(WaitStatus::Signaled(_, sig, _)) => (Outcome::Failed(Kind::Temporary), format!("delivery program killed by {sig:?}")),
                _ => (Outcome::Failed(Kind::Temporary), "delivery program ended oddly".into()),
            };
            let mut text = output_text(&s.text);
            if text.is_empty() {
                text = why;
            }
            outbuf.extend(encode_report(&Report { slot: k, outcome, text }));
        }

        if in_ready {
            let mut buf = [0u8; 16384];
            loop {
                match input.read(&mut buf) {
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
                        crate::log::line(program, &format!("{e}; stopping"));
                        input_open = false;
                        inbuf.clear();
                        used = 0;
                        break;
                    }
                    Ok(Some((req, n))) => {
                        used += n;
                        if slots.contains_key(&req.slot) || req.slot as usize >= MAX_SLOTS {
                            crate::log::line(program, &format!("slot {} busy or out of range; refusing", req.slot));
                            outbuf.extend(encode_report(&Report { slot: req.slot, outcome: Outcome::Failed(Kind::Temporary), text: "4.3.0 spawner slot busy".into() }));
                            continue;
                        }
                        match starter.start(&req) {
                            Ok(run) => {
                                crate::sys::set_nonblocking(run.output.as_raw_fd(), true)?;
                                by_pid.insert(run.pid.as_raw(), req.slot);
                                slots.insert(req.slot, Slot { output: File::from(run.output), text: Vec::new(), status: None, eof: false });
                            }
                            Err((kind, text)) => {
                                outbuf.extend(encode_report(&Report { slot: req.slot, outcome: Outcome::Failed(kind), text }));
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
                if s.text.len() < 4 * MAX_TEXT {
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
        let r = Request { slot: 258, id: "1.2.3".into(), sender: "".into(), recipient: "a@b".into() };
        let bytes = encode_request(&r);
        for cut in 0..bytes.len() {
            assert_eq!(parse_request(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(parse_request(&bytes).unwrap(), Some((r, bytes.len())));
    }

    #[test]
    fn report_split_at_every_byte_and_sanitised() {
        let r = Report { slot: 7, outcome: Outcome::Failed(Kind::Permanent), text: "5.1.1 no\0such".into() };
        let bytes = encode_report(&r);
        for cut in 0..bytes.len() {
            assert_eq!(parse_report(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (got, n) = parse_report(&bytes).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(got.text, "5.1.1 no such");
        assert_eq!(got.outcome, Outcome::Failed(Kind::Permanent));
        assert!(parse_report(b"\0\x01X\0").is_err());
    }

    #[test]
    fn bad_id_refused() {
        assert!(parse_request(b"\0\x01../etc\0\0a\0").is_err());
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
