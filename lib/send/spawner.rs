//! A spawner's loop (postern-lspawn, postern-rspawn): read requests on fd 0,
//! start a delivery for each, write its answer on fd 1 when it ends.
//! Single-threaded: one poll over fd 0, every delivery's output, the starter's
//! resident workers (lspawn's) and a signalfd for SIGCHLD. What starting a
//! delivery means is the `Starter`'s business.

use super::spawn::{encode_answer, from_report, parse_request, Answer, Outcome, Request, MAX_SLOTS, MAX_TEXT};
use crate::error::Kind;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

/// A running delivery: its pid and the read end of its combined stdout/stderr.
pub struct Running {
    pub pid: Pid,
    pub output: OwnedFd,
}

/// What a spawner does with one request: start a child, or answer at once; and
/// how it reads the child's ending.
pub trait Starter {
    /// `file` is the request's queue file (see `spawn`). An error is the
    /// outcome for every recipient.
    fn start(&mut self, req: &Request, file: OwnedFd) -> Result<Running, Outcome>;

    /// The outcomes for `count` recipients from the child's output and status.
    /// By default the exit code decides for all (qmail's 0/100/111) and the
    /// output is the report (see `spawn::from_report`).
    fn outcomes(&self, count: usize, output: &[u8], status: &WaitStatus) -> Vec<Outcome> {
        let (kind, why) = match status {
            WaitStatus::Exited(_, code) => (exit_kind(*code), format!("delivery program exited {code} and said nothing")),
            WaitStatus::Signaled(_, sig, _) => (Some(Kind::Temporary), format!("delivery program killed by {sig:?}")),
            _ => (Some(Kind::Temporary), "delivery program ended oddly".into()),
        };
        let text = crate::os::log::one_line(output);
        from_report(kind, if text.is_empty() { &why } else { &text }).for_all(count)
    }

    /// The starter's resident workers (`workers::Pool`), if it has any: the
    /// loop polls them, hears which deliveries they finished, tells them of
    /// reaped children, lets the idle ones go and stops them at the end.
    fn workers(&self) -> Option<&dyn Workers> {
        None
    }

    fn workers_mut(&mut self) -> Option<&mut dyn Workers> {
        None
    }

    /// SIGHUP: reread what the starter read at start; Err says why the old
    /// settings stay. Ok(None): nothing to reread.
    fn reload(&mut self) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// What the loop needs of a pool of resident workers (`workers::Pool`).
pub trait Workers {
    /// Descriptors to poll; when one is ready, `finished` says which
    /// deliveries ended.
    fn busy_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>>;
    /// Deliveries that ended: (the pid `start` returned, exit code).
    fn finished(&mut self) -> Vec<(Pid, i32)>;
    /// A child was reaped; the status to report for the delivery it stood for.
    fn exited(&mut self, pid: Pid, status: WaitStatus) -> WaitStatus;
    /// When `retire_idle` next has something to do.
    fn next_deadline(&self) -> Option<std::time::Instant>;
    fn retire_idle(&mut self, now: std::time::Instant);
    /// The loop ends: let the workers go and wait for them.
    fn close_all(&mut self);
}

/// qmail's delivery exit codes: 0 delivered, 100 permanent, anything else
/// temporary.
pub fn exit_kind(code: i32) -> Option<Kind> {
    match code {
        crate::error::EXIT_OK => None,
        crate::error::EXIT_PERM => Some(Kind::Permanent),
        _ => Some(Kind::Temporary),
    }
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
/// for SIGCHLD. fd 0 is a Unix socket, and every request comes with its queue
/// file attached.
pub fn serve(program: &str, starter: &mut dyn Starter) -> io::Result<()> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGHUP);
    mask.thread_block().map_err(io::Error::from)?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(io::Error::from)?;
    let input = File::from(crate::os::sys::take_fd(0)?);
    let mut output = File::from(crate::os::sys::take_fd(1)?);
    crate::os::sys::set_nonblocking(&input, true)?;
    // Results are written without blocking: a spawner stuck writing results while
    // send is stuck writing requests would be a deadlock.
    crate::os::sys::set_nonblocking(&output, true)?;
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
            for w in starter.workers().map(|w| w.busy_fds()).unwrap_or_default() {
                fds.push(PollFd::new(w, PollFlags::POLLIN));
            }
            let timeout = match starter.workers().and_then(|w| w.next_deadline()) {
                None => PollTimeout::NONE,
                Some(t) => {
                    let ms = t.saturating_duration_since(std::time::Instant::now()).as_millis().min(60_000) as u16 + 1;
                    PollTimeout::from(ms)
                }
            };
            match poll(&mut fds, timeout) {
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
        // Workers' answers before reaping: a worker that answered and then died
        // keeps its answer.
        for (pid, code) in starter.workers_mut().map(|w| w.finished()).unwrap_or_default() {
            if let Some(k) = by_pid.remove(&pid.as_raw()) {
                if let Some(s) = slots.get_mut(&k) {
                    s.status = Some(WaitStatus::Exited(pid, code));
                }
            }
        }
        if let Some(w) = starter.workers_mut() {
            w.retire_idle(std::time::Instant::now());
        }
        if sig_ready {
            let mut hup = false;
            while let Ok(Some(info)) = sfd.read_signal() {
                hup |= info.ssi_signo == Signal::SIGHUP as u32;
            }
            if hup {
                match starter.reload() {
                    Ok(Some(what)) => crate::os::log::line(program, &format!("reread {what}")),
                    Ok(None) => {}
                    Err(e) => crate::os::log::line(program, &format!("{e}; keeping the previous settings")),
                }
            }
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(st) => {
                        if let Some(pid) = st.pid() {
                            let st = match starter.workers_mut() {
                                Some(w) => w.exited(pid, st),
                                None => st,
                            };
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
            let outcomes = starter.outcomes(s.count, &s.text, &status);
            outbuf.extend(encode_answer(&Answer { slot: k, outcomes }));
        }

        if in_ready {
            let mut buf = [0u8; 16384];
            loop {
                let got = crate::os::sys::recv_with_fds(&input, &mut buf, &mut files);
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
                        crate::os::log::error(program, &format!("{e}; stopping"));
                        input_open = false;
                        inbuf.clear();
                        used = 0;
                        break;
                    }
                    Ok(Some((req, n))) => {
                        used += n;
                        let count = req.recipients.len();
                        let file = files.pop_front();
                        if slots.contains_key(&req.slot) || req.slot as usize >= MAX_SLOTS {
                            crate::os::log::line(program, &format!("slot {} busy or out of range; refusing", req.slot));
                            let outcomes = Outcome::temporary("spawner slot busy").for_all(count);
                            outbuf.extend(encode_answer(&Answer { slot: req.slot, outcomes }));
                            continue;
                        }
                        let Some(file) = file else {
                            let outcomes = Outcome::temporary("the request came without its queue file").for_all(count);
                            outbuf.extend(encode_answer(&Answer { slot: req.slot, outcomes }));
                            continue;
                        };
                        match starter.start(&req, file) {
                            Ok(run) => {
                                crate::os::sys::set_nonblocking(&run.output, true)?;
                                by_pid.insert(run.pid.as_raw(), req.slot);
                                slots.insert(
                                    req.slot,
                                    Slot { count, output: File::from(run.output), text: Vec::new(), status: None, eof: false },
                                );
                            }
                            Err(outcome) => outbuf.extend(encode_answer(&Answer { slot: req.slot, outcomes: outcome.for_all(count) })),
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
    if let Some(w) = starter.workers_mut() {
        w.close_all();
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
