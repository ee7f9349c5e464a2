//! postern-start: starts the delivery side (qmail-start's job) and watches it:
//! postern-lspawn, postern-rspawn (if installed), postern-send and
//! postern-queued (optional). If one of the first three exits, the others are
//! told to stop and postern-start exits 111, so a supervisor restarts the whole
//! set; SIGTERM stops all and exits 0; SIGHUP goes to postern-send and
//! postern-lspawn and restarts postern-queued, SIGALRM goes to postern-send. Settings they would refuse are
//! reported before anything starts.
//! Everything logs to stderr. The rules are lib/send/supervisor.rs's.

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use postern::os::home::Home;
use postern::os::log;
use postern::send::supervisor::{self, Action, Ending, Event, Supervisor};

const PROGRAM: &str = "postern-start";

fn die(msg: &str) -> ! {
    log::line(PROGRAM, msg);
    std::process::exit(postern::error::EXIT_TEMP);
}

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    if let Err(e) = postern::os::sys::drop_inherited_fds() {
        log::line(PROGRAM, &format!("cannot let go of inherited descriptors: {e}"));
    }
    let home = Home::from_env();
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD, Signal::SIGHUP, Signal::SIGALRM] {
        mask.add(s);
    }
    mask.thread_block().unwrap_or_else(|e| die(&format!("cannot block signals: {e}")));
    let sfd = SignalFd::new(&mask).unwrap_or_else(|e| die(&format!("signalfd: {e}")));
    if let Err(e) = supervisor::check_settings(&home) {
        die(&format!("{e}; fix it and start again (nothing started)"));
    }
    let started = supervisor::start_all(&home).unwrap_or_else(|e| die(&e));
    let mut sup = Supervisor::new(started.pids.iter().map(|(c, _)| *c).collect());
    let mut pids = started.pids;
    loop {
        let Ok(Some(info)) = sfd.read_signal() else { continue };
        // Exits first: a child reaped here is no longer signalled below, as its
        // pid may already belong to another process.
        let mut exits = Vec::new();
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(st) => {
                    if let Some((child, _)) = pids.iter().find(|(_, p)| Some(*p) == st.pid()) {
                        exits.push((*child, Ending::from_wait(&st)));
                    }
                }
            }
        }
        supervisor::order_exits(&mut exits);
        let mut events: Vec<Event> = exits.into_iter().map(|(c, how)| Event::Exited(c, how)).collect();
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => events.push(Event::Stop),
            Ok(Signal::SIGHUP) => events.push(Event::Reload),
            Ok(Signal::SIGALRM) => events.push(Event::Flush),
            _ => {}
        }
        for event in events {
            for action in sup.handle(event) {
                let signal = |c, s| {
                    if let Some((_, p)) = pids.iter().find(|(k, _)| *k == c) {
                        let _ = kill(*p, s);
                    }
                };
                match action {
                    Action::Log(line) => log::line(PROGRAM, &line),
                    Action::Term(c) => signal(c, Signal::SIGTERM),
                    Action::Hup(c) => signal(c, Signal::SIGHUP),
                    Action::Alrm(c) => signal(c, Signal::SIGALRM),
                    Action::Start(c) => match supervisor::start_queued(&home) {
                        Ok(pid) => {
                            pids.retain(|(k, _)| *k != c);
                            pids.push((c, pid));
                            sup.started(c);
                        }
                        Err(e) => log::line(PROGRAM, &e),
                    },
                    Action::Exit(code) => std::process::exit(code),
                }
            }
        }
    }
}
