//! postern-start: start the delivery side (qmail-start's job) and watch it.
//!
//! `start_all` makes the request socket and the answer pipe between postern-send
//! and postern-lspawn and the socket to postern-rspawn, and starts lspawn (it stays root in a system
//! install: it must become each recipient), rspawn (as postern-r; only if it is
//! installed), send (as postern-s) and postern-queued (which becomes postern-q;
//! optional). The `Supervisor` then decides, from signals and exits, whom to
//! signal and when to exit: a state machine, tested without processes.
//!
//! # The rules
//! - TERM or INT: tell send and queued to stop; send waits for its running
//!   deliveries and exits, and lspawn and rspawn see the end of their input and
//!   exit after their children. postern-start exits 0 once all three are gone.
//! - HUP and ALRM go to send (reread the settings; retry everything now).
//! - send, lspawn or rspawn ending on its own stops the rest, and postern-start
//!   exits 111 once they are gone, so a supervisor (systemd, the init script)
//!   restarts the whole set.
//! - queued ending is logged and nothing else: clients then run postern-queue.

use crate::os::home::Home;
use crate::os::privs::{self, Service};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The programs postern-start runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Child {
    Send,
    LocalSpawner,
    RemoteSpawner,
    QueueDaemon,
}

impl Child {
    pub fn program(self) -> &'static str {
        match self {
            Child::Send => "postern-send",
            Child::LocalSpawner => "postern-lspawn",
            Child::RemoteSpawner => "postern-rspawn",
            Child::QueueDaemon => "postern-queued",
        }
    }

    /// Without it the set cannot work (queued is an optimisation).
    fn essential(self) -> bool {
        self != Child::QueueDaemon
    }
}

/// What postern-start reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Stop,
    Reload,
    Flush,
    /// A child ended; how, in words, for the log.
    Exited(Child),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Log(String),
    /// Send this signal to that child.
    Term(Child),
    Hup(Child),
    Alrm(Child),
    Exit(i32),
}

pub struct Supervisor {
    running: Vec<Child>,
    stopping: bool,
    status: i32,
}

impl Supervisor {
    pub fn new(running: Vec<Child>) -> Supervisor {
        Supervisor { running, stopping: false, status: 0 }
    }

    fn alive(&self, c: Child) -> bool {
        self.running.contains(&c)
    }

    fn stop_all(&mut self, out: &mut Vec<Action>) {
        self.stopping = true;
        for c in [Child::Send, Child::QueueDaemon] {
            if self.alive(c) {
                out.push(Action::Term(c));
            }
        }
    }

    /// What to do about `event`; `how` says how an exited child ended.
    pub fn handle(&mut self, event: Event, how: &str) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Stop if !self.stopping => self.stop_all(&mut out),
            Event::Stop => {}
            Event::Reload if self.alive(Child::Send) => out.push(Action::Hup(Child::Send)),
            Event::Flush if self.alive(Child::Send) => out.push(Action::Alrm(Child::Send)),
            Event::Reload | Event::Flush => {}
            Event::Exited(c) => {
                self.running.retain(|&r| r != c);
                if !c.essential() {
                    if !self.stopping {
                        out.push(Action::Log(format!("{} exited ({how}); clients run postern-queue instead", c.program())));
                    }
                } else if !self.stopping {
                    out.push(Action::Log(format!("{} exited unexpectedly ({how}); stopping the rest", c.program())));
                    self.status = crate::error::EXIT_TEMP;
                    self.stop_all(&mut out);
                }
            }
        }
        if !self.running.iter().any(|c| c.essential()) {
            out.push(Action::Exit(self.status));
        }
        out
    }
}

/// The children, as started.
pub struct Started {
    pub pids: Vec<(Child, Pid)>,
}

/// Start everything (see the module docs). Err: why postern-start cannot go on
/// (a child already started is told to stop when postern-start exits: each
/// ends with its parent or at the end of its input).
pub fn start_all(home: &Home) -> Result<Started, String> {
    let bin = |c: Child| home.bin(c.program());
    let cannot = |c: Child, e: std::io::Error| format!("cannot run {}: {e}", bin(c).display());
    let mut pids = Vec::new();
    // Requests send -> lspawn on a socket (each comes with its queue file, so
    // lspawn opens nothing in the queue); answers lspawn -> send on a pipe.
    let (req_w, req_r) = crate::os::sys::socketpair().map_err(|e| format!("socketpair: {e}"))?;
    let (ans_r, ans_w) = crate::os::sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    let lspawn = Command::new(bin(Child::LocalSpawner))
        .env("POSTERN_HOME", home.root())
        .stdin(Stdio::from(req_r))
        .stdout(Stdio::from(ans_w))
        .spawn()
        .map_err(|e| cannot(Child::LocalSpawner, e))?;
    pids.push((Child::LocalSpawner, Pid::from_raw(lspawn.id() as i32)));

    // rspawn gets one end of a socket as fd 0 and fd 1; send gets the other on fd 5.
    let mut fds = vec![(req_w, 3), (ans_r, 4)];
    if bin(Child::RemoteSpawner).exists() {
        let (ours, theirs) = crate::os::sys::socketpair().map_err(|e| format!("socketpair: {e}"))?;
        let theirs_in = theirs.try_clone().map_err(|e| format!("dup: {e}"))?;
        let mut cmd = Command::new(bin(Child::RemoteSpawner));
        cmd.env("POSTERN_HOME", home.root()).stdin(Stdio::from(theirs_in)).stdout(Stdio::from(theirs));
        as_service(&mut cmd, Service::Remote)?;
        let child = cmd.spawn().map_err(|e| cannot(Child::RemoteSpawner, e))?;
        pids.push((Child::RemoteSpawner, Pid::from_raw(child.id() as i32)));
        fds.push((ours, 5));
    }

    // postern-send gets the request socket on fd 3 and the answer reader on fd 4.
    let mut send = Command::new(bin(Child::Send));
    send.env("POSTERN_HOME", home.root()).stdin(Stdio::null());
    as_service(&mut send, Service::Send)?;
    let child = crate::os::sys::spawn_with_fds(&mut send, &fds).map_err(|e| cannot(Child::Send, e))?;
    pids.push((Child::Send, Pid::from_raw(child.id() as i32)));
    drop(fds);

    // postern-queued saves SMTP and injection a program start per message. It is
    // optional: without it clients run postern-queue.
    if bin(Child::QueueDaemon).exists() {
        match Command::new(bin(Child::QueueDaemon)).env("POSTERN_HOME", home.root()).stdin(Stdio::null()).spawn() {
            Ok(c) => pids.push((Child::QueueDaemon, Pid::from_raw(c.id() as i32))),
            Err(e) => {
                crate::os::log::warn("postern-start", &format!("{}; clients run postern-queue instead", cannot(Child::QueueDaemon, e)))
            }
        }
    }
    Ok(Started { pids })
}

/// As root, run `cmd` as the service user.
fn as_service(cmd: &mut Command, service: Service) -> Result<(), String> {
    if privs::is_root() {
        let (uid, gid) = service.ids().map_err(|e| e.to_string())?;
        cmd.uid(uid).gid(gid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Supervisor {
        Supervisor::new(vec![Child::LocalSpawner, Child::RemoteSpawner, Child::Send, Child::QueueDaemon])
    }

    #[test]
    fn term_stops_send_and_queued_and_exits_0_when_the_three_are_gone() {
        let mut s = all();
        assert_eq!(s.handle(Event::Stop, ""), vec![Action::Term(Child::Send), Action::Term(Child::QueueDaemon)]);
        assert_eq!(s.handle(Event::Stop, ""), vec![], "a second TERM changes nothing");
        assert_eq!(s.handle(Event::Exited(Child::Send), "status 0"), vec![]);
        assert_eq!(s.handle(Event::Exited(Child::QueueDaemon), "status 0"), vec![]);
        assert_eq!(s.handle(Event::Exited(Child::LocalSpawner), "status 0"), vec![]);
        assert_eq!(s.handle(Event::Exited(Child::RemoteSpawner), "status 0"), vec![Action::Exit(0)]);
    }

    #[test]
    fn an_essential_child_dying_stops_the_rest_and_exits_111() {
        let mut s = all();
        let a = s.handle(Event::Exited(Child::LocalSpawner), "signal SIGKILL");
        assert_eq!(
            a,
            vec![
                Action::Log("postern-lspawn exited unexpectedly (signal SIGKILL); stopping the rest".into()),
                Action::Term(Child::Send),
                Action::Term(Child::QueueDaemon)
            ]
        );
        assert_eq!(s.handle(Event::Exited(Child::Send), "status 0"), vec![]);
        assert_eq!(s.handle(Event::Exited(Child::RemoteSpawner), "status 0"), vec![Action::Exit(111)]);
    }

    #[test]
    fn queued_dying_stops_nothing() {
        let mut s = all();
        let a = s.handle(Event::Exited(Child::QueueDaemon), "status 111");
        assert_eq!(a, vec![Action::Log("postern-queued exited (status 111); clients run postern-queue instead".into())]);
        assert_eq!(s.handle(Event::Stop, ""), vec![Action::Term(Child::Send)], "queued is not signalled once gone");
    }

    #[test]
    fn hup_and_alrm_go_to_send() {
        let mut s = all();
        assert_eq!(s.handle(Event::Reload, ""), vec![Action::Hup(Child::Send)]);
        assert_eq!(s.handle(Event::Flush, ""), vec![Action::Alrm(Child::Send)]);
        s.handle(Event::Exited(Child::Send), "status 0");
        assert!(s.handle(Event::Reload, "").is_empty(), "nobody to tell");
    }

    #[test]
    fn without_rspawn_two_children_suffice() {
        let mut s = Supervisor::new(vec![Child::LocalSpawner, Child::Send]);
        s.handle(Event::Stop, "");
        s.handle(Event::Exited(Child::Send), "status 0");
        assert_eq!(s.handle(Event::Exited(Child::LocalSpawner), "status 0"), vec![Action::Exit(0)]);
    }
}
