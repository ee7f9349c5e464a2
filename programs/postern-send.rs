//! postern-send: the scheduler daemon (qmail-send's job).
//!
//! Started by postern-start with the pipe to postern-lspawn on fds 3 (requests) and
//! 4 (results), and optionally the socket to postern-rspawn on fd 5 (both ways).
//! Runs as postern-s.
//! Woken by the queue's trigger FIFO (any byte: look in new/; 'F': retry everything
//! now), by spawner results, by its retry timer, and by signals: TERM stops after
//! the running deliveries, HUP rereads the control files, ALRM retries everything.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use postern::os::home::Home;
use postern::os::log;
use postern::os::sys;
use postern::queue::Queue;
use postern::send::scheduler::{Config, Scheduler};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

const PROGRAM: &str = "postern-send";

fn die(msg: &str) -> ! {
    log::line(PROGRAM, msg);
    std::process::exit(111);
}

fn fd_open(fd: i32) -> bool {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok()
}

fn main() {
    // postern-start already made us postern-s; run by hand as root, we do it.
    if let Err(e) = postern::os::privs::drop_to(postern::os::privs::Service::Send) {
        die(&e.to_string());
    }
    let home = Home::from_env();
    let cfg = Config::load(&home).unwrap_or_else(|e| die(&format!("{e}; fix it and restart")));
    if !fd_open(3) || !fd_open(4) {
        die("fds 3 and 4 must be the pipes to postern-lspawn; start me with postern-start");
    }
    let local_req = sys::protocol_fd(3);
    let mut local_res = sys::protocol_fd(4);
    let remote = fd_open(5).then(|| sys::protocol_fd(5));
    // The same socket carries requests out and results in: reads must not block,
    // writes may (rspawn never stops reading, see spawn.rs).
    let mut remote_res = remote.as_ref().and_then(|f| f.try_clone().ok());
    let _ = sys::set_nonblocking(4, true);
    if let Some(r) = &remote_res {
        let _ = sys::set_nonblocking(std::os::fd::AsRawFd::as_raw_fd(r), true);
    }

    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGALRM] {
        mask.add(s);
    }
    mask.thread_block().unwrap_or_else(|e| die(&format!("cannot block signals: {e}")));
    let sfd =
        SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).unwrap_or_else(|e| die(&format!("signalfd: {e}")));
    // A write end of our own keeps the FIFO from reporting EOF when the last
    // postern-queue closes it.
    let queue = Queue::new(&home);
    let mut trigger: File =
        OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(queue.trigger_path()).unwrap_or_else(|e| {
            die(&format!("cannot open the trigger {}: {e}; create it with mkfifo (scripts/install does)", queue.trigger_path().display()))
        });

    let mut s = Scheduler::new(home, cfg, local_req, remote);
    if let Err(e) = s.recover() {
        die(&format!("cannot read the queue {}: {e}", queue.root().display()));
    }
    log::line(PROGRAM, &format!("started, {} message(s) in the queue", s.queued()));
    let mut lbuf = Vec::new();
    let mut rbuf = Vec::new();
    let mut local_open = true;
    let mut remote_open = remote_res.is_some();
    loop {
        s.dispatch();
        if s.stopping && s.busy() == 0 {
            break;
        }
        let timeout = match s.next_due_in() {
            _ if s.stopping => PollTimeout::NONE,
            Some(secs) => PollTimeout::try_from(secs.saturating_mul(1000).min(60_000) as i32).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let (sig, trig, lres, rres) = {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN), PollFd::new(trigger.as_fd(), PollFlags::POLLIN)];
            if local_open {
                fds.push(PollFd::new(local_res.as_fd(), PollFlags::POLLIN));
            }
            if let (true, Some(r)) = (remote_open, remote_res.as_ref()) {
                fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => die(&format!("poll: {e}")),
            }
            let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).map(|r| !r.is_empty()).unwrap_or(false);
            let l = if local_open { ready(2) } else { false };
            let r = if remote_open { ready(if local_open { 3 } else { 2 }) } else { false };
            (ready(0), ready(1), l, r)
        };
        if sig {
            while let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                        log::line(PROGRAM, &format!("stopping after {} running deliveries", s.busy()));
                        s.stopping = true;
                    }
                    Ok(Signal::SIGHUP) => match Config::load(&Home::from_env()) {
                        Ok(c) => {
                            s.reload(c);
                            log::line(PROGRAM, "control files reread");
                        }
                        Err(e) => log::line(PROGRAM, &format!("{e}; keeping the previous settings")),
                    },
                    Ok(Signal::SIGALRM) => s.flush(),
                    _ => {}
                }
            }
        }
        if trig {
            let mut buf = [0u8; 512];
            let mut flush = false;
            while let Ok(n) = trigger.read(&mut buf) {
                if n == 0 {
                    break;
                }
                flush |= buf[..n].contains(&b'F');
            }
            if let Err(e) = s.take_new() {
                log::line(PROGRAM, &format!("cannot read {}: {e}", queue.new_dir().display()));
            }
            if flush {
                s.flush();
            }
        }
        if lres {
            match s.read_reports(true, &mut local_res, &mut lbuf) {
                Ok(open) => local_open = open,
                Err(e) => die(&format!("bad result from postern-lspawn: {e}")),
            }
            if !local_open {
                log::line(PROGRAM, "postern-lspawn went away; stopping");
                break;
            }
        }
        if rres {
            if let Some(rr) = remote_res.as_mut() {
                match s.read_reports(false, rr, &mut rbuf) {
                    Ok(open) => remote_open = open,
                    Err(e) => die(&format!("bad result from postern-rspawn: {e}")),
                }
                if !remote_open {
                    log::line(PROGRAM, "postern-rspawn went away; stopping");
                    break;
                }
            }
        }
    }
    log::line(PROGRAM, "stopped");
}
