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
//! - HUP also goes to lspawn, which rereads `defaultdelivery`; postern-queued
//!   reads its settings only at start, so it is told to stop and started
//!   again once it has gone (it removes its socket as it stops; clients run
//!   postern-queue meanwhile).
//! - send, lspawn or rspawn ending on its own stops the rest, and postern-start
//!   exits 111 once they are gone, so a supervisor (systemd, the init script)
//!   restarts the whole set. The log blames the one that ended first: a
//!   spawner whose input ended (exit 0) only followed send, so among exits
//!   reaped together the others come first, and a spawner's clean end while
//!   send still runs waits for send's own exit to be told.
//! - queued ending is logged and nothing else: clients then run postern-queue.
//!
//! Before starting anything, postern-start reads the settings send and lspawn
//! would refuse to start with (`check_settings`), so a bad value is reported
//! once, naming the file, the value and the program, and nothing is started.

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Stop,
    Reload,
    Flush,
    /// A child ended, and how.
    Exited(Child, Ending),
}

/// How a child ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Status(i32),
    Signal(String),
}

impl Ending {
    pub fn from_wait(st: &nix::sys::wait::WaitStatus) -> Ending {
        match st {
            nix::sys::wait::WaitStatus::Exited(_, code) => Ending::Status(*code),
            nix::sys::wait::WaitStatus::Signaled(_, sig, _) => Ending::Signal(sig.as_str().to_string()),
            other => Ending::Signal(format!("{other:?}")),
        }
    }

    /// Exit 0: for a spawner, the end of its input (send went away).
    fn clean(&self) -> bool {
        *self == Ending::Status(0)
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Status(c) => write!(f, "exit status {c}"),
            Ending::Signal(s) => write!(f, "killed by {s}"),
        }
    }
}

/// Put the exits reaped together in the order that tells what happened: the
/// ones that did not end cleanly first (a spawner ends cleanly when send,
/// which feeds it, has gone).
pub fn order_exits(exits: &mut [(Child, Ending)]) {
    exits.sort_by_key(|(_, e)| e.clean());
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Log(String),
    /// Send this signal to that child.
    Term(Child),
    Hup(Child),
    Alrm(Child),
    /// Start this child again (postern-queued, after a reload).
    Start(Child),
    Exit(i32),
}

pub struct Supervisor {
    running: Vec<Child>,
    stopping: bool,
    status: i32,
    /// A spawner ended cleanly while send ran: the cause is told with send's exit.
    blame_pending: Option<Child>,
    /// queued was told to stop by a reload: start it again once it has gone.
    restart_queued: bool,
}

impl Supervisor {
    pub fn new(running: Vec<Child>) -> Supervisor {
        Supervisor { running, stopping: false, status: 0, blame_pending: None, restart_queued: false }
    }

    fn alive(&self, c: Child) -> bool {
        self.running.contains(&c)
    }

    /// `Action::Start` was carried out: the child runs again.
    pub fn started(&mut self, c: Child) {
        if !self.running.contains(&c) {
            self.running.push(c);
        }
    }

    fn stop_all(&mut self, out: &mut Vec<Action>) {
        self.stopping = true;
        for c in [Child::Send, Child::QueueDaemon] {
            if self.alive(c) {
                out.push(Action::Term(c));
            }
        }
    }

    /// What to do about `event`.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Stop if !self.stopping => self.stop_all(&mut out),
            Event::Stop => {}
            Event::Reload if self.stopping => {}
            Event::Reload => {
                for c in [Child::Send, Child::LocalSpawner] {
                    if self.alive(c) {
                        out.push(Action::Hup(c));
                    }
                }
                let mut what = "reload: postern-send rereads the control files, postern-lspawn defaultdelivery".to_string();
                if self.alive(Child::QueueDaemon) && !self.restart_queued {
                    self.restart_queued = true;
                    out.push(Action::Term(Child::QueueDaemon));
                    what.push_str(", postern-queued restarts (timeoutsubmit, concurrencysubmit)");
                }
                if !out.is_empty() {
                    out.push(Action::Log(what));
                }
            }
            Event::Flush if self.alive(Child::Send) => out.push(Action::Alrm(Child::Send)),
            Event::Flush => {}
            Event::Exited(c, how) => {
                self.running.retain(|&r| r != c);
                if c == Child::QueueDaemon && self.restart_queued {
                    self.restart_queued = false;
                    if !self.stopping {
                        out.push(Action::Start(Child::QueueDaemon));
                    }
                } else if !c.essential() {
                    if !self.stopping {
                        out.push(Action::Log(format!("{} exited ({how}); clients run postern-queue instead", c.program())));
                    }
                } else if !self.stopping {
                    self.status = crate::error::EXIT_TEMP;
                    if c != Child::Send && how.clean() && self.alive(Child::Send) {
                        // Its input ended: send closed it, and send's exit says why.
                        self.blame_pending = Some(c);
                    } else {
                        out.push(Action::Log(format!("{} exited unexpectedly ({how}); stopping the rest", c.program())));
                    }
                    self.stop_all(&mut out);
                } else if let Some(first) = self.blame_pending.filter(|_| c == Child::Send) {
                    self.blame_pending = None;
                    let why = if how.clean() {
                        format!("{} exited unexpectedly; stopped the rest", first.program())
                    } else {
                        format!("postern-send exited unexpectedly ({how}); stopped the rest")
                    };
                    out.push(Action::Log(why));
                }
            }
        }
        if !self.running.iter().any(|c| c.essential()) {
            out.push(Action::Exit(self.status));
        }
        out
    }
}

/// What send and lspawn would refuse to start with, read before anything
/// starts: Err names the program, the file, the line and the value.
pub fn check_settings(home: &Home) -> Result<(), String> {
    let cannot = |c: Child, e: crate::config::control::ControlError| format!("{} cannot start: {e}", c.program());
    super::daemon::Config::load(home).map_err(|e| cannot(Child::Send, e))?;
    super::lspawn::LocalStarter::new(home.clone()).map_err(|e| cannot(Child::LocalSpawner, e))?;
    Ok(())
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
        match start_queued(home) {
            Ok(pid) => pids.push((Child::QueueDaemon, pid)),
            Err(e) => crate::os::log::warn("postern-start", &e),
        }
    }
    Ok(Started { pids })
}

/// Start postern-queued (it becomes postern-q itself). Err: why not, for the log.
pub fn start_queued(home: &Home) -> Result<Pid, String> {
    let bin = home.bin(Child::QueueDaemon.program());
    match Command::new(&bin).env("POSTERN_HOME", home.root()).stdin(Stdio::null()).spawn() {
        Ok(c) => Ok(Pid::from_raw(c.id() as i32)),
        Err(e) => Err(format!("cannot run {}: {e}; clients run postern-queue instead", bin.display())),
    }
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

    const OK: Ending = Ending::Status(0);

    fn all() -> Supervisor {
        Supervisor::new(vec![Child::LocalSpawner, Child::RemoteSpawner, Child::Send, Child::QueueDaemon])
    }

    #[test]
    fn term_stops_send_and_queued_and_exits_0_when_the_three_are_gone() {
        let mut s = all();
        assert_eq!(s.handle(Event::Stop), vec![Action::Term(Child::Send), Action::Term(Child::QueueDaemon)]);
        assert_eq!(s.handle(Event::Stop), vec![], "a second TERM changes nothing");
        assert_eq!(s.handle(Event::Exited(Child::Send, OK)), vec![]);
        assert_eq!(s.handle(Event::Exited(Child::QueueDaemon, OK)), vec![]);
        assert_eq!(s.handle(Event::Exited(Child::LocalSpawner, OK)), vec![]);
        assert_eq!(s.handle(Event::Exited(Child::RemoteSpawner, OK)), vec![Action::Exit(0)]);
    }

    #[test]
    fn an_essential_child_dying_stops_the_rest_and_exits_111() {
        let mut s = all();
        let a = s.handle(Event::Exited(Child::LocalSpawner, Ending::Signal("SIGKILL".into())));
        assert_eq!(
            a,
            vec![
                Action::Log("postern-lspawn exited unexpectedly (killed by SIGKILL); stopping the rest".into()),
                Action::Term(Child::Send),
                Action::Term(Child::QueueDaemon)
            ]
        );
        assert_eq!(s.handle(Event::Exited(Child::Send, OK)), vec![]);
        assert_eq!(s.handle(Event::Exited(Child::RemoteSpawner, OK)), vec![Action::Exit(111)]);
    }

    #[test]
    fn queued_dying_stops_nothing() {
        let mut s = all();
        let a = s.handle(Event::Exited(Child::QueueDaemon, Ending::Status(111)));
        assert_eq!(a, vec![Action::Log("postern-queued exited (exit status 111); clients run postern-queue instead".into())]);
        assert_eq!(s.handle(Event::Stop), vec![Action::Term(Child::Send)], "queued is not signalled once gone");
    }

    #[test]
    fn hup_goes_to_send_and_lspawn_restarts_queued_and_alrm_goes_to_send() {
        let mut s = all();
        let a = s.handle(Event::Reload);
        assert_eq!(a[..3], [Action::Hup(Child::Send), Action::Hup(Child::LocalSpawner), Action::Term(Child::QueueDaemon)]);
        assert!(matches!(&a[3], Action::Log(l) if l.contains("defaultdelivery") && l.contains("postern-queued restarts")), "{a:?}");
        assert_eq!(
            s.handle(Event::Reload)[..2],
            [Action::Hup(Child::Send), Action::Hup(Child::LocalSpawner)],
            "queued is stopping already"
        );
        assert_eq!(
            s.handle(Event::Exited(Child::QueueDaemon, OK)),
            vec![Action::Start(Child::QueueDaemon)],
            "started again, nothing logged"
        );
        s.started(Child::QueueDaemon);
        assert_eq!(s.handle(Event::Stop), vec![Action::Term(Child::Send), Action::Term(Child::QueueDaemon)], "it runs again");
        let mut s = all();
        s.handle(Event::Reload);
        s.handle(Event::Stop);
        assert_eq!(s.handle(Event::Exited(Child::QueueDaemon, OK)), vec![], "not started again while stopping");
        let mut s = all();
        assert_eq!(s.handle(Event::Flush), vec![Action::Alrm(Child::Send)]);
        s.handle(Event::Stop);
        s.handle(Event::Exited(Child::Send, OK));
        s.handle(Event::Exited(Child::LocalSpawner, OK));
        assert!(s.handle(Event::Reload).is_empty(), "nobody to tell");
    }

    #[test]
    fn send_is_blamed_when_the_spawners_only_followed_it() {
        // Reaped together: the order of waitpid puts lspawn first.
        let mut exits = vec![(Child::LocalSpawner, OK), (Child::RemoteSpawner, OK), (Child::Send, Ending::Status(111))];
        order_exits(&mut exits);
        let mut s = all();
        let logs: Vec<Action> =
            exits.into_iter().flat_map(|(c, e)| s.handle(Event::Exited(c, e))).filter(|a| matches!(a, Action::Log(_))).collect();
        assert_eq!(logs, vec![Action::Log("postern-send exited unexpectedly (exit status 111); stopping the rest".into())]);

        // Reaped apart: lspawn's clean end first, send's exit later.
        let mut s = all();
        let a = s.handle(Event::Exited(Child::LocalSpawner, OK));
        assert!(!a.iter().any(|a| matches!(a, Action::Log(_))), "lspawn is not blamed: {a:?}");
        let a = s.handle(Event::Exited(Child::Send, Ending::Status(111)));
        assert_eq!(a, vec![Action::Log("postern-send exited unexpectedly (exit status 111); stopped the rest".into())]);
        assert_eq!(s.handle(Event::Exited(Child::RemoteSpawner, OK)), vec![Action::Exit(111)]);
    }

    #[test]
    fn without_rspawn_two_children_suffice() {
        let mut s = Supervisor::new(vec![Child::LocalSpawner, Child::Send]);
        s.handle(Event::Stop);
        s.handle(Event::Exited(Child::Send, OK));
        assert_eq!(s.handle(Event::Exited(Child::LocalSpawner, OK)), vec![Action::Exit(0)]);
    }
}
