//! postern-start: starts the delivery side (qmail-start's job).
//!
//! Creates the pipes between postern-send and postern-lspawn and the socket to
//! postern-rspawn, starts lspawn (stays root in a system install: it must become
//! each recipient), rspawn (as postern-r; only if it is installed), send (as
//! postern-s) and postern-queued (which becomes postern-q; optional), then waits.
//! If one of the first three exits, the others are told to stop and
//! postern-start exits, so a supervisor restarts the whole set. SIGTERM stops all.
//! Everything logs to stderr.

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use postern::os::home::Home;
use postern::os::log;
use postern::os::privs::Service;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

const PROGRAM: &str = "postern-start";

fn die(msg: &str) -> ! {
    log::line(PROGRAM, msg);
    std::process::exit(111);
}

fn main() {
    postern::os::sys::close_inherited_fds();
    let home = Home::from_env();
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD, Signal::SIGHUP, Signal::SIGALRM] {
        mask.add(s);
    }
    mask.thread_block().unwrap_or_else(|e| die(&format!("cannot block signals: {e}")));
    let sfd = SignalFd::new(&mask).unwrap_or_else(|e| die(&format!("signalfd: {e}")));

    // Two pipes: requests send -> lspawn, results lspawn -> send.
    let (req_r, req_w) = postern::os::sys::pipe().unwrap_or_else(|e| die(&format!("pipe: {e}")));
    let (res_r, res_w) = postern::os::sys::pipe().unwrap_or_else(|e| die(&format!("pipe: {e}")));

    let lspawn = Command::new(home.bin("postern-lspawn"))
        .env("POSTERN_HOME", home.root())
        .stdin(Stdio::from(req_r))
        .stdout(Stdio::from(res_w))
        .spawn()
        .unwrap_or_else(|e| die(&format!("cannot run {}: {e}", home.bin("postern-lspawn").display())));

    // rspawn gets one end of a socket as fd 0 and fd 1; send gets the other on fd 5.
    let mut fds = vec![(req_w, 3), (res_r, 4)];
    let mut rspawn_pid = None;
    if home.bin("postern-rspawn").exists() {
        let (ours, theirs) = postern::os::sys::socketpair().unwrap_or_else(|e| die(&format!("socketpair: {e}")));
        let mut cmd = Command::new(home.bin("postern-rspawn"));
        let theirs_in = theirs.try_clone().unwrap_or_else(|e| die(&format!("dup: {e}")));
        cmd.env("POSTERN_HOME", home.root()).stdin(Stdio::from(theirs_in)).stdout(Stdio::from(theirs));
        if postern::os::privs::is_root() {
            let (uid, gid) = Service::Remote.ids().unwrap_or_else(|e| die(&e.to_string()));
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().unwrap_or_else(|e| die(&format!("cannot run {}: {e}", home.bin("postern-rspawn").display())));
        rspawn_pid = Some(Pid::from_raw(child.id() as i32));
        fds.push((ours, 5));
    }

    // postern-send gets the request writer on fd 3 and the result reader on fd 4.
    let mut send = Command::new(home.bin("postern-send"));
    send.env("POSTERN_HOME", home.root()).stdin(Stdio::null());
    if postern::os::privs::is_root() {
        let (uid, gid) = Service::Send.ids().unwrap_or_else(|e| die(&e.to_string()));
        send.uid(uid).gid(gid);
    }
    let send = postern::os::sys::spawn_with_fds(&mut send, &fds)
        .unwrap_or_else(|e| die(&format!("cannot run {}: {e}", home.bin("postern-send").display())));
    drop(fds);

    // postern-queued saves SMTP and injection a program start per message. It is
    // optional: without it clients run postern-queue, so its exit stops nothing.
    let mut queued_pid = None;
    if home.bin("postern-queued").exists() {
        match Command::new(home.bin("postern-queued")).env("POSTERN_HOME", home.root()).stdin(Stdio::null()).spawn() {
            Ok(c) => queued_pid = Some(Pid::from_raw(c.id() as i32)),
            Err(e) => {
                log::line(PROGRAM, &format!("cannot run {}: {e}; clients run postern-queue instead", home.bin("postern-queued").display()))
            }
        }
    }

    let send_pid = Pid::from_raw(send.id() as i32);
    // send stops dispatching, waits for running deliveries and exits; lspawn and
    // rspawn then see EOF and exit after their children.
    let stop = |queued: &mut Option<Pid>| {
        let _ = kill(send_pid, Signal::SIGTERM);
        if let Some(q) = queued.take() {
            let _ = kill(q, Signal::SIGTERM);
        }
    };
    let lspawn_pid = Pid::from_raw(lspawn.id() as i32);
    let mut alive = if rspawn_pid.is_some() { 3 } else { 2 };
    let mut stopping = false;
    let mut status = 0;
    while alive > 0 {
        let Ok(Some(info)) = sfd.read_signal() else { continue };
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                stop(&mut queued_pid);
                stopping = true;
            }
            Ok(Signal::SIGHUP) => {
                let _ = kill(send_pid, Signal::SIGHUP);
            }
            Ok(Signal::SIGALRM) => {
                let _ = kill(send_pid, Signal::SIGALRM);
            }
            _ => {}
        }
        loop {
            match waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(st) => {
                    if st.pid().is_some() && st.pid() == queued_pid {
                        log::line(PROGRAM, &format!("postern-queued exited ({st:?}); clients run postern-queue instead"));
                        queued_pid = None;
                        continue;
                    }
                    let who = match st.pid() {
                        Some(p) if p == send_pid => "postern-send",
                        Some(p) if p == lspawn_pid => "postern-lspawn",
                        Some(p) if Some(p) == rspawn_pid => "postern-rspawn",
                        _ => continue,
                    };
                    alive -= 1;
                    if !stopping {
                        log::line(PROGRAM, &format!("{who} exited unexpectedly ({st:?}); stopping the rest"));
                        status = 111;
                        stopping = true;
                        stop(&mut queued_pid);
                    }
                }
            }
        }
    }
    std::process::exit(status);
}
