//! postern-send's I/O around the scheduler: reading the queue, talking to the
//! spawners, and carrying out the scheduler's actions (marks, bounces,
//! retirements), in one single-threaded poll loop.
//!
//! It wakes on the queue's trigger FIFO (any byte: look in new/; 'F': retry
//! everything now; the administrator's requests, `queue::control`), on the
//! spawners' answers, on the scheduler's next due time,
//! and on signals: TERM stops after the running deliveries, HUP rereads the
//! control files, ALRM retries everything.

use super::dsn::Dsn;
use super::scheduler::{Action, Bounce, Chan, Loaded, Policy, Scheduler, Unreadable};
use super::spawn::{encode_request, parse_answer};
use crate::address::Address;
use crate::config::control::{Control, ControlError};
use crate::config::routing::{Route, Routing};
use crate::config::settings::{self, Setting};
use crate::error::{Classify, Kind};
use crate::os::home::Home;
use crate::os::log;
use crate::os::time::now;
use crate::queue::{Envelope, Id, Queue, QueueError, QueueFile};
use crate::users::Users;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

const PROGRAM: &str = "postern-send";

/// The settings postern-send reads (at start and on SIGHUP).
#[derive(Debug, Clone)]
pub struct Config {
    pub routing: Routing,
    pub policy: Policy,
    /// Named in bounces (Reporting-MTA).
    pub me: String,
    /// MAILER-DAEMON@bouncehost.
    pub bounce_from: Address,
    pub bouncemaxbytes: usize,
}

impl Config {
    pub fn load(home: &Home) -> Result<Config, ControlError> {
        let c = Control::new(home);
        let limit = |s: &Setting| -> Result<usize, ControlError> { Ok(c.number_in(s, 1..=super::spawn::MAX_SLOTS as u64)? as usize) };
        let address = |s: &Setting, local: String, host: &Setting| -> Result<Address, ControlError> {
            let text = if local.contains('@') { local } else { format!("{local}@{}", c.text(host)?) };
            Address::parse(text.as_bytes()).map_err(|e| ControlError { path: c.path(s), line: None, problem: e.to_string() })
        };
        let double = c.text(&settings::DOUBLEBOUNCETO)?;
        let doublebounce =
            if double.is_empty() { None } else { Some(address(&settings::DOUBLEBOUNCETO, double, &settings::DOUBLEBOUNCEHOST)?) };
        Ok(Config {
            routing: Routing::load(&c)?,
            policy: Policy {
                concurrency_local: limit(&settings::CONCURRENCYLOCAL)?,
                concurrency_remote: limit(&settings::CONCURRENCYREMOTE)?,
                concurrency_domain: limit(&settings::CONCURRENCYDOMAIN)?,
                queuelifetime: c.number(&settings::QUEUELIFETIME)?,
                doublebounce,
            },
            me: c.text(&settings::ME)?,
            bounce_from: address(&settings::BOUNCEFROM, c.text(&settings::BOUNCEFROM)?, &settings::BOUNCEHOST)?,
            bouncemaxbytes: c.number(&settings::BOUNCEMAXBYTES)? as usize,
        })
    }
}

/// The descriptors postern-start hands over.
pub struct Spawners {
    /// The socket for requests to postern-lspawn, each with its queue file (fd 3).
    pub local_requests: File,
    /// Its answers (fd 4).
    pub local_answers: File,
    /// The socket to postern-rspawn, both ways (fd 5), when it runs.
    pub remote: Option<File>,
}

struct Daemon {
    home: Home,
    queue: Queue,
    cfg: Config,
    sched: Scheduler,
    spawners: Spawners,
    /// fd 5 again, read without blocking.
    remote_answers: Option<File>,
    /// Finished files handed to `Queue::retire`; picks its free/ slot.
    retired: usize,
    /// Counters for postern-admin stats (lib/stats).
    stats: crate::stats::SendStats,
    /// The trigger's bytes: a request may be cut between two reads.
    requests: crate::queue::control::Reader,
}

/// postern-send: serve until stopped. Err: why it could not go on.
pub fn run(home: Home, cfg: Config, spawners: Spawners) -> Result<(), String> {
    // Answers are read without blocking; requests are written blocking (a
    // spawner never stops reading: see spawner.rs).
    crate::os::sys::set_nonblocking(&spawners.local_answers, true).map_err(|e| format!("fd 4: {e}"))?;
    let remote_answers = match &spawners.remote {
        Some(s) => {
            let r = s.try_clone().map_err(|e| format!("fd 5: {e}"))?;
            crate::os::sys::set_nonblocking(&r, true).map_err(|e| format!("fd 5: {e}"))?;
            Some(r)
        }
        None => None,
    };
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGALRM] {
        mask.add(s);
    }
    mask.thread_block().map_err(|e| format!("cannot block signals: {e}"))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(|e| format!("signalfd: {e}"))?;
    let queue = Queue::new(&home);
    // A write end of our own keeps the FIFO from reporting EOF when the last
    // postern-queue closes it.
    let mut trigger = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(queue.trigger_path()).map_err(|e| {
        format!("cannot open the trigger {}: {e}; create it with mkfifo (scripts/install does)", queue.trigger_path().display())
    })?;
    let sched = Scheduler::new(cfg.policy.clone(), true, spawners.remote.is_some());
    let stats = crate::stats::SendStats::open(&home);
    let mut d = Daemon { home, queue, cfg, sched, spawners, remote_answers, retired: 0, stats, requests: Default::default() };
    d.recover().map_err(|e| format!("cannot read the queue {}: {e}", d.queue.root().display()))?;
    log::line(PROGRAM, &format!("started, {} message(s) in the queue", d.sched.queued()));
    // Up: systemd's start of postern.service (NotifyAccess=all) ends here.
    if let Err(e) = crate::os::notify::ready("delivering") {
        log::line(PROGRAM, &format!("cannot tell systemd we are up (NOTIFY_SOCKET): {e}"));
    }
    let (mut lbuf, mut rbuf) = (Vec::new(), Vec::new());
    loop {
        d.dispatch();
        if d.sched.finished() {
            break;
        }
        let timeout = match d.sched.next_due() {
            Some(t) => PollTimeout::try_from(t.saturating_sub(now()).saturating_mul(1000).min(60_000) as i32).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let (sig, trig, local, remote) = {
            let mut fds = vec![
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(trigger.as_fd(), PollFlags::POLLIN),
                PollFd::new(d.spawners.local_answers.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(r) = &d.remote_answers {
                fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("poll: {e}")),
            }
            let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
            (ready(0), ready(1), ready(2), ready(3))
        };
        if sig {
            while let Ok(Some(info)) = sfd.read_signal() {
                d.signal(Signal::try_from(info.ssi_signo as i32).ok());
            }
        }
        if trig {
            d.triggered(&mut trigger);
        }
        if local && !d.read_answers(Chan::Local, &mut lbuf)? {
            log::error(PROGRAM, "postern-lspawn went away; stopping");
            break;
        }
        if remote && !d.read_answers(Chan::Remote, &mut rbuf)? {
            log::error(PROGRAM, "postern-rspawn went away; stopping");
            break;
        }
    }
    log::line(PROGRAM, "stopped");
    Ok(())
}

impl Daemon {
    /// Everything in mess/ and new/ (at start).
    fn recover(&mut self) -> io::Result<()> {
        let n = self.queue.clean_tmp(86400);
        if n > 0 {
            log::line(PROGRAM, &format!("removed {n} stale files from {}", self.queue.tmp().display()));
        }
        for id in Queue::list(&self.queue.mess())? {
            self.load(id);
        }
        self.take_new()
    }

    fn take_new(&mut self) -> io::Result<()> {
        for id in self.queue.take_new()? {
            self.load(id);
        }
        self.act();
        Ok(())
    }

    /// Read one file in mess/ and tell the scheduler what it holds.
    fn load(&mut self, id: Id) {
        let path = self.queue.mess().join(&id);
        match QueueFile::open(&path, false) {
            Ok(f) => {
                let recipients = f.recipients.iter().map(|r| (r.address.clone(), r.done)).collect();
                let rcpt_dsn = f.recipients.iter().map(|r| r.dsn.clone()).collect();
                let file = Loaded { sender: f.sender.clone(), birth: f.birth, recipients, rcpt_dsn, size: f.message_len };
                self.sched.loaded(now(), id, file);
            }
            Err(QueueError::Io(_, e)) if e.kind() == io::ErrorKind::NotFound => self.sched.unreadable(now(), id, Unreadable::Gone),
            // Emptied on its way to free/, and the rename lost in a crash: it
            // is finished (no recipient left), not damaged.
            Err(_) if Queue::is_emptied(&path) => {
                let file = Loaded { sender: Address::null(), birth: 0, recipients: Vec::new(), rcpt_dsn: Vec::new(), size: 0 };
                self.sched.loaded(now(), id, file);
            }
            Err(e) if e.kind() == Kind::Permanent => self.sched.unreadable(now(), id, Unreadable::Damaged(e.to_string())),
            Err(e) => self.sched.unreadable(now(), id, Unreadable::Temporary(e.to_string())),
        }
    }

    /// Start what is due. The users database is opened (to see rebuilds) only
    /// when a recipient is routed.
    fn dispatch(&mut self) {
        let mut users: Option<Option<Users>> = None;
        let (home, routing) = (&self.home, &self.cfg.routing);
        let mut route = |a: &Address| -> Route {
            let u = users.get_or_insert_with(|| match Users::open(home) {
                Ok(u) => Some(u),
                Err(e) => {
                    log::line(PROGRAM, &format!("{e}; treating virtual domains as unknown until it is fixed"));
                    None
                }
            });
            routing.route(&mut |d| u.as_mut().is_some_and(|u| u.is_virtual_domain(d)), a)
        };
        self.sched.dispatch(now(), &mut route);
        self.act();
    }

    fn signal(&mut self, sig: Option<Signal>) {
        match sig {
            Some(Signal::SIGTERM) | Some(Signal::SIGINT) => {
                log::line(PROGRAM, &format!("stopping after {} running deliveries", self.sched.busy()));
                self.sched.stop();
            }
            Some(Signal::SIGHUP) => match Config::load(&self.home) {
                Ok(c) => {
                    self.sched.reload_policy(c.policy.clone());
                    self.cfg = c;
                    log::line(PROGRAM, "control files reread");
                }
                Err(e) => log::error(PROGRAM, &format!("{e}; keeping the previous settings")),
            },
            Some(Signal::SIGALRM) => self.sched.flush(now()),
            _ => {}
        }
        self.act();
    }

    fn triggered(&mut self, trigger: &mut File) {
        let mut buf = [0u8; 512];
        let mut wake = crate::queue::control::Wake::default();
        while let Ok(n) = trigger.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.requests.feed(&buf[..n], &mut wake);
        }
        if let Err(e) = self.take_new() {
            log::warn(PROGRAM, &format!("cannot read {}: {e}", self.queue.new_dir().display()));
        }
        if wake.flush {
            self.sched.flush(now());
            self.act();
        }
        for bad in wake.bad {
            log::warn(PROGRAM, &format!("ignored a request on the trigger that does not parse: {bad:?}"));
        }
        for r in wake.requests {
            self.request(r);
            self.act();
        }
    }

    /// An administrator's request (`queue::control`).
    fn request(&mut self, r: crate::queue::control::Request) {
        use crate::queue::control::Request;
        match r {
            Request::Hold(id) if self.queue.hold().join(&id).exists() => log::line(PROGRAM, &format!("hold {id}: held already")),
            Request::Hold(id) => self.sched.hold(now(), &id),
            Request::Delete { id, bounce } => {
                // A held message comes back to be deleted (and bounced) here.
                let held = self.queue.hold().join(&id);
                if held.exists() {
                    match std::fs::rename(&held, self.queue.mess().join(&id)) {
                        Ok(()) => self.load(id.clone()),
                        Err(e) => return log::warn(PROGRAM, &format!("delete {id}: cannot take it from {}: {e}", held.display())),
                    }
                }
                self.sched.delete(now(), &id, bounce)
            }
            Request::Requeue(id) => self.sched.requeue(now(), &id),
        }
    }

    /// Read a spawner's answers and act on each. Ok(false) at end of input.
    fn read_answers(&mut self, chan: Chan, buf: &mut Vec<u8>) -> Result<bool, String> {
        let mut r = match chan {
            Chan::Local => &self.spawners.local_answers,
            Chan::Remote => self.remote_answers.as_ref().expect("polled only when there is one"),
        };
        let mut chunk = [0u8; 8192];
        let open = loop {
            match r.read(&mut chunk) {
                Ok(0) => break false,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        break true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading the {chan:?} spawner's answers: {e}")),
            }
        };
        let mut used = 0;
        loop {
            let sched = &self.sched;
            match parse_answer(&buf[used..], |slot| sched.in_flight(chan, slot)) {
                Err(e) => return Err(format!("bad answer from the {chan:?} spawner: {e}")),
                Ok(None) => break,
                Ok(Some((answer, n))) => {
                    used += n;
                    let domain = self.sched.flight_domain(chan, answer.slot);
                    for o in &answer.outcomes {
                        self.stats.delivery(domain, o.status);
                    }
                    self.sched.answer(now(), chan, answer);
                    self.act();
                }
            }
        }
        buf.drain(..used);
        Ok(open)
    }

    /// Carry out what the scheduler asked for, until it asks for nothing more.
    fn act(&mut self) {
        loop {
            let actions = self.sched.take_actions();
            if actions.is_empty() {
                return;
            }
            for a in actions {
                self.perform(a);
            }
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Log(line) => log::line(PROGRAM, &line),
            Action::Start { chan, request } => {
                let bytes = encode_request(&request);
                // The file goes along with the request: rspawn (postern-r) cannot
                // open the queue, and lspawn (root) is not to. Opened for each
                // request, read-only: the spawners cannot change the queue.
                let path = self.queue.mess().join(&request.id);
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        let why = format!("cannot open the queue file {}: {e}; will retry", path.display());
                        return self.sched.start_failed(now(), chan, request.slot, why);
                    }
                };
                let sock = match chan {
                    Chan::Local => &self.spawners.local_requests,
                    Chan::Remote => self.spawners.remote.as_ref().expect("a remote request only with a remote spawner"),
                };
                let sent = crate::os::sys::send_with_fds(sock, &bytes, &[file.as_fd()]);
                if let Err(e) = sent {
                    self.sched.spawner_gone(chan, request.slot, e.to_string());
                }
            }
            Action::Mark { id, recipients } => {
                if let Err(e) = QueueFile::open(&self.queue.mess().join(&id), true).and_then(|mut f| f.mark_done(&recipients)) {
                    // Not fatal: the recipients stay 'T' on disk and get a duplicate
                    // delivery after a restart, never a loss.
                    log::warn(PROGRAM, &format!("{e}; a restart may deliver these recipients again"));
                }
            }
            Action::Bounce(b) => {
                let result = self.bounce(&b);
                if result.is_ok() {
                    self.stats.bounce();
                    log::line(PROGRAM, &format!("bounce {}: {} recipient(s) reported to <{}>", b.id, b.failures.len(), b.to));
                }
                self.sched.bounced(now(), &b.id, result);
            }
            Action::Retire { id } => {
                crate::queue::info::remove(self.queue.root(), &id);
                self.retired += 1;
                let path = self.queue.mess().join(&id);
                if let Err(e) = self.queue.retire(&path, self.retired) {
                    log::warn(PROGRAM, &format!("cannot remove {}: {e}", path.display()));
                }
            }
            Action::Quarantine { id, why } => self.quarantine(&id, &why),
            Action::Load { id } => self.load(id),
            Action::Hold { id } => self.hold(id),
            Action::Info { id, tried } => {
                // Only what listings show: a missing info/ (an old install) costs nothing else.
                let _ = crate::queue::info::write(self.queue.root(), &id, &tried);
            }
        }
    }

    /// Move a message the scheduler let go of to hold/, durably (else a crash
    /// would deliver it). Its mtime says since when it is held: `release` does
    /// not count that time against queuelifetime.
    fn hold(&mut self, id: Id) {
        let (from, to) = (self.queue.mess().join(&id), self.queue.hold().join(&id));
        // UTIME_NOW needs only write access: the file is postern-q's.
        let now_ts = nix::sys::time::TimeSpec::UTIME_NOW;
        let moved = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&from)
            .and_then(|f| nix::sys::stat::futimens(std::os::fd::AsRawFd::as_raw_fd(&f), &now_ts, &now_ts).map_err(io::Error::from))
            .and_then(|()| std::fs::rename(&from, &to))
            .and_then(|()| crate::os::fs::sync_dir(&self.queue.hold()));
        match moved {
            Ok(()) => log::line(PROGRAM, &format!("hold {id}: moved to {}", to.display())),
            Err(e) => {
                log::warn(PROGRAM, &format!("hold {id}: cannot move it to {}: {e}; it stays in the queue", to.display()));
                if from.exists() {
                    self.load(id);
                }
            }
        }
    }

    /// Compose a bounce (RFC 3464) quoting the original and queue it.
    fn bounce(&self, b: &Bounce) -> Result<(), String> {
        let qf = QueueFile::open(&self.queue.mess().join(&b.id), false).map_err(|e| e.to_string())?;
        let max = self.cfg.bouncemaxbytes;
        let mut original = Vec::new();
        (&qf.file).take(qf.message_len.min(max as u64 + 1)).read_to_end(&mut original).map_err(|e| e.to_string())?;
        let text = Dsn {
            reporting_host: &self.cfg.me,
            from: self.cfg.bounce_from.as_str(),
            to: b.to.as_str(),
            queue_id: b.id.as_str(),
            arrival: b.birth,
            failures: &b.failures,
            original: &original,
            max_bytes: max,
            ret: qf.dsn.ret,
            envid: qf.dsn.envid.as_deref(),
        }
        .render();
        let env = Envelope::new(b.from.clone(), vec![b.to.clone()]);
        // Signed (From: is bouncefrom@bouncehost, ours), so DMARC passes for bounces too.
        crate::queue::submit_with(&self.home, &mut &text[..], &env, true).map_err(|e| e.to_string())
    }

    /// A damaged queue file is moved aside, never deleted: a person decides.
    fn quarantine(&self, id: &Id, why: &str) {
        let bad = self.queue.bad();
        let _ = std::fs::create_dir_all(&bad);
        match std::fs::rename(self.queue.mess().join(id), bad.join(id)) {
            Ok(()) => log::error(PROGRAM, &format!("{why}; moved it to {} for a person to look at", bad.join(id).display())),
            Err(e) => log::error(PROGRAM, &format!("{why}; could not move it aside: {e}")),
        }
    }
}
