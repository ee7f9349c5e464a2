//! postern-send's scheduler: what is in the queue, what to deliver next, and what
//! to do with each result.
//!
//! All state that must survive a crash is in the queue files (see queue.rs); the
//! scheduler's memory holds only what it can rebuild by reading the queue again:
//! which recipients are being delivered, and when each message is due.
//!
//! Retries follow qmail's schedule: a message born at B is tried at
//! B + (n * skip)^2 for n = 0, 1, 2, ... with skip 10 s for local and 20 s for remote
//! recipients, until `queuelifetime`; then what is left bounces.

use crate::address::Address;
use crate::config::control::{Control, ControlError};
use crate::config::settings::{self, Setting};
use crate::error::Kind;
use crate::os::home::Home;
use crate::os::log;
use crate::queue::{self, Envelope, Queue, QueueFile};
use crate::send::dsn::{Bounce, Failure};
use crate::send::spawn::{self, Outcome, Report, Request};
use crate::users::Users;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

const PROGRAM: &str = "postern-send";
const DOUBLE_BOUNCE_SENDER: &str = "#@[]";

/// The settings the scheduler reads (once at start and again on SIGHUP).
#[derive(Debug, Clone)]
pub struct Config {
    pub me: String,
    pub locals: HashSet<String>,
    /// qmail's virtualdomains: (pattern, prefix); pattern is `user@domain`,
    /// `domain`, `.domain` (subdomains) or `` (everything).
    pub virtualdomains: Vec<(String, String)>,
    pub envnoathost: String,
    pub bouncefrom: String,
    pub bouncehost: String,
    pub doublebounceto: String,
    pub doublebouncehost: String,
    pub concurrency_local: usize,
    pub concurrency_remote: usize,
    /// Remote deliveries at once to one domain.
    pub concurrency_domain: usize,
    pub queuelifetime: u64,
    pub bouncemaxbytes: usize,
}

impl Config {
    pub fn load(home: &Home) -> Result<Config, ControlError> {
        let c = Control::new(home);
        let me = c.text(&settings::ME)?;
        let locals = c.list(&settings::LOCALS)?.into_iter().map(|l| l.to_ascii_lowercase()).collect();
        let mut virtualdomains = Vec::new();
        {
            for (n, l) in c.numbered_lines(&settings::VIRTUALDOMAINS)? {
                let (pat, prefix) = l.split_once(':').ok_or_else(|| ControlError {
                    path: c.path(&settings::VIRTUALDOMAINS),
                    line: Some(n),
                    problem: format!("{l:?} has no ':'; the format is domain:prefix"),
                })?;
                virtualdomains.push((pat.trim().to_ascii_lowercase(), prefix.trim().to_string()));
            }
        }
        let limit = |s: &Setting| -> Result<usize, ControlError> {
            let v = c.number(s)?;
            if v == 0 || v > spawn::MAX_SLOTS as u64 {
                return Err(ControlError { path: c.path(s), line: None, problem: format!("{v} is out of range 1..{}", spawn::MAX_SLOTS) });
            }
            Ok(v as usize)
        };
        Ok(Config {
            envnoathost: c.text(&settings::ENVNOATHOST)?,
            bouncefrom: c.text(&settings::BOUNCEFROM)?,
            bouncehost: c.text(&settings::BOUNCEHOST)?,
            doublebounceto: c.text(&settings::DOUBLEBOUNCETO)?,
            doublebouncehost: c.text(&settings::DOUBLEBOUNCEHOST)?,
            concurrency_local: limit(&settings::CONCURRENCYLOCAL)?,
            concurrency_remote: limit(&settings::CONCURRENCYREMOTE)?,
            concurrency_domain: limit(&settings::CONCURRENCYDOMAIN)?,
            queuelifetime: c.number(&settings::QUEUELIFETIME)?,
            bouncemaxbytes: c.number(&settings::BOUNCEMAXBYTES)? as usize,
            me,
            locals,
            virtualdomains,
        })
    }

    /// The virtualdomains prefix for an address, if one applies (qmail's order:
    /// the exact address, the domain, each parent `.domain`, then the catch-all).
    fn virtual_prefix(&self, addr: &str, domain: &str) -> Option<&str> {
        let find = |pat: &str| self.virtualdomains.iter().find(|(p, _)| p == pat).map(|(_, v)| v.as_str());
        if let Some(v) = find(&addr.to_ascii_lowercase()) {
            return Some(v);
        }
        if let Some(v) = find(domain) {
            return Some(v);
        }
        let mut d = domain;
        while let Some(i) = d.find('.') {
            if let Some(v) = find(&d[i..]) {
                return Some(v);
            }
            d = &d[i + 1..];
        }
        find("")
    }
}

/// Where a recipient goes, and as what address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Local(String),
    Remote(String),
}

/// Decide local or remote (qmail-send's rule, plus virtual-user domains).
pub fn route(cfg: &Config, users: Option<&mut Users>, rcpt: &Address) -> Route {
    let addr = rcpt.with_default_domain(&cfg.envnoathost);
    let domain = addr.domain_lower().unwrap_or_default();
    if cfg.locals.contains(&domain) {
        return Route::Local(addr.as_str().to_string());
    }
    if let Some(u) = users {
        if u.is_virtual_domain(&domain) {
            return Route::Local(addr.as_str().to_string());
        }
    }
    match cfg.virtual_prefix(addr.as_str(), &domain) {
        Some(prefix) if !prefix.is_empty() => Route::Local(format!("{prefix}-{}@{}", addr.local(), addr.domain().unwrap_or(""))),
        _ => Route::Remote(addr.as_str().to_string()),
    }
}

/// When to try again after an attempt at `now` for a message born at `birth`.
pub fn next_retry(birth: u64, now: u64, skip: u64) -> u64 {
    let age = now.saturating_sub(birth);
    let n = (age as f64).sqrt() as u64 / skip + 1;
    birth + (n * skip) * (n * skip)
}

#[derive(Debug, Clone, PartialEq)]
enum RState {
    /// Not delivered; may be tried when the message is due.
    Waiting,
    /// Given to a spawner (or waiting for a free slot).
    Busy,
    Delivered,
    Failed(Kind, String),
    Done,
}

struct Msg {
    sender: Address,
    birth: u64,
    rcpts: Vec<(Address, RState)>,
    /// Jobs handed out and not yet answered (or still waiting for a slot).
    busy: usize,
    next_try: u64,
    /// Retry step: remote recipients wait longer.
    skip: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Chan {
    Local,
    Remote,
}

struct Job {
    id: String,
    index: usize,
    address: String,
}

impl Job {
    fn domain(&self) -> String {
        self.address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default()
    }
}

/// A request in flight: its message, the recipients' indexes, and for remote
/// deliveries the destination domain (for the per-domain limit).
struct InFlight {
    id: String,
    indexes: Vec<usize>,
    domain: Option<String>,
}

struct Channel {
    name: &'static str,
    /// The pipe (local) or socket (remote) to the spawner.
    writer: Option<File>,
    /// Remote: batch a message's recipients by domain, limit each domain, and
    /// send the queue file along (rspawn cannot open it).
    remote: bool,
    limit: usize,
    per_domain: usize,
    slots: Vec<Option<InFlight>>,
    free: Vec<u16>,
    ready: VecDeque<Job>,
    busy_domains: HashMap<String, usize>,
}

impl Channel {
    fn new(name: &'static str, writer: Option<File>, remote: bool, limit: usize, per_domain: usize) -> Channel {
        let mut c = Channel {
            name,
            writer,
            remote,
            limit: 0,
            per_domain,
            slots: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
            busy_domains: HashMap::new(),
        };
        c.set_limit(limit);
        c
    }
    fn set_limit(&mut self, limit: usize) {
        while self.slots.len() < limit {
            self.free.push(self.slots.len() as u16);
            self.slots.push(None);
        }
        self.limit = limit;
        // Lowering the limit: slots above it are simply not handed out again.
        self.free.retain(|&s| (s as usize) < limit);
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }
    fn in_use(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
    /// The next request's jobs: the first ready job whose domain is below its
    /// limit, and (remote) the same message's other ready jobs for that domain.
    fn next_batch(&mut self) -> Option<Vec<Job>> {
        if !self.remote {
            return self.ready.pop_front().map(|j| vec![j]);
        }
        let pos = self.ready.iter().position(|j| self.busy_domains.get(&j.domain()).copied().unwrap_or(0) < self.per_domain)?;
        let first = self.ready.remove(pos)?;
        let domain = first.domain();
        let mut batch = vec![first];
        let mut i = pos;
        while i < self.ready.len() && batch.len() < spawn::MAX_BATCH {
            if self.ready[i].id == batch[0].id && self.ready[i].domain() == domain {
                batch.push(self.ready.remove(i).expect("in range"));
            } else {
                i += 1;
            }
        }
        Some(batch)
    }
}

/// The scheduler: the queue, the channels, and the timers.
pub struct Scheduler {
    home: Home,
    queue: Queue,
    cfg: Config,
    msgs: HashMap<String, Msg>,
    due: BinaryHeap<Reverse<(u64, String)>>,
    local: Channel,
    remote: Channel,
    /// Finished files handed to `Queue::retire`; picks its free/ slot.
    retired: usize,
    pub stopping: bool,
}

impl Scheduler {
    /// `local_requests` is the pipe to postern-lspawn; `remote_socket` the socket
    /// to postern-rspawn when there is one.
    pub fn new(home: Home, cfg: Config, local_requests: File, remote_socket: Option<File>) -> Scheduler {
        let queue = Queue::new(&home);
        Scheduler {
            local: Channel::new("local", Some(local_requests), false, cfg.concurrency_local, cfg.concurrency_local),
            remote: Channel::new("remote", remote_socket, true, cfg.concurrency_remote, cfg.concurrency_domain),
            home,
            queue,
            cfg,
            msgs: HashMap::new(),
            due: BinaryHeap::new(),
            retired: 0,
            stopping: false,
        }
    }

    pub fn reload(&mut self, cfg: Config) {
        self.local.set_limit(cfg.concurrency_local);
        self.remote.set_limit(cfg.concurrency_remote);
        self.remote.per_domain = cfg.concurrency_domain;
        self.cfg = cfg;
    }

    pub fn queued(&self) -> usize {
        self.msgs.len()
    }

    pub fn busy(&self) -> usize {
        self.local.in_use() + self.remote.in_use()
    }

    /// Read everything in mess/ and new/ (at start).
    pub fn recover(&mut self) -> io::Result<()> {
        let n = self.queue.clean_tmp(86400);
        if n > 0 {
            log::line(PROGRAM, &format!("removed {n} stale files from {}", self.queue.tmp().display()));
        }
        for id in Queue::list(&self.queue.mess())? {
            self.load(&id);
        }
        self.take_new()
    }

    /// Take what postern-queue has put in new/ (on a trigger).
    pub fn take_new(&mut self) -> io::Result<()> {
        for id in self.queue.take_new()? {
            self.load(&id);
        }
        Ok(())
    }

    fn load(&mut self, id: &str) {
        if self.msgs.contains_key(id) {
            return;
        }
        let path = self.queue.mess().join(id);
        let qf = match QueueFile::open(&path, false) {
            Ok(f) => f,
            Err(e) => {
                self.quarantine(id, &e.to_string());
                return;
            }
        };
        let rcpts: Vec<(Address, RState)> =
            qf.recipients.iter().map(|r| (r.address.clone(), if r.done { RState::Done } else { RState::Waiting })).collect();
        if rcpts.iter().all(|(_, s)| *s == RState::Done) {
            // A finished message whose unlink was lost in a crash.
            let _ = std::fs::remove_file(&path);
            return;
        }
        log::line(
            PROGRAM,
            &format!(
                "new {id} from <{}> to {} recipient(s), {} bytes",
                qf.sender,
                rcpts.iter().filter(|(_, s)| *s == RState::Waiting).count(),
                qf.message_len
            ),
        );
        let now = queue::now();
        self.msgs.insert(id.to_string(), Msg { sender: qf.sender.clone(), birth: qf.birth, rcpts, busy: 0, next_try: now, skip: 10 });
        self.due.push(Reverse((now, id.to_string())));
    }

    /// A damaged queue file is moved aside, never deleted: a person decides.
    fn quarantine(&self, id: &str, why: &str) {
        let bad = self.queue.root().join("bad");
        let _ = std::fs::create_dir_all(&bad);
        let from = self.queue.mess().join(id);
        match std::fs::rename(&from, bad.join(id)) {
            Ok(()) => log::line(PROGRAM, &format!("{why}; moved it to {} for a person to look at", bad.join(id).display())),
            Err(e) => log::line(PROGRAM, &format!("{why}; could not move it aside: {e}")),
        }
    }

    /// Make every waiting message due now (a forced retry).
    pub fn flush(&mut self) {
        let now = queue::now();
        for (id, m) in self.msgs.iter_mut() {
            if m.busy == 0 {
                m.next_try = now;
                self.due.push(Reverse((now, id.clone())));
            }
        }
        log::line(PROGRAM, &format!("flush: {} message(s) due now", self.msgs.len()));
    }

    /// Seconds until the next message is due (None: nothing scheduled).
    pub fn next_due_in(&self) -> Option<u64> {
        self.due.peek().map(|Reverse((t, _))| t.saturating_sub(queue::now()))
    }

    /// Start what is due and what fits in the channels.
    pub fn dispatch(&mut self) {
        if self.stopping {
            return;
        }
        let now = queue::now();
        // The users database is opened (to see rebuilds) only when something is
        // due: dispatch runs after every event, most of them spawner results.
        let due_now = matches!(self.due.peek(), Some(Reverse((t, _))) if *t <= now);
        let mut users = match due_now.then(|| Users::open(&self.home)) {
            Some(Ok(u)) => Some(u),
            Some(Err(e)) => {
                log::line(PROGRAM, &format!("{e}; treating virtual domains as unknown until it is fixed"));
                None
            }
            None => None,
        };
        while let Some(Reverse((t, _))) = self.due.peek() {
            if *t > now {
                break;
            }
            let Reverse((t, id)) = self.due.pop().expect("peeked");
            let Some(m) = self.msgs.get_mut(&id) else { continue };
            if m.next_try != t || m.busy > 0 {
                continue; // a stale heap entry
            }
            for (i, (addr, st)) in m.rcpts.iter_mut().enumerate() {
                if *st != RState::Waiting {
                    continue;
                }
                *st = RState::Busy;
                m.busy += 1;
                match route(&self.cfg, users.as_mut(), addr) {
                    Route::Local(a) => self.local.ready.push_back(Job { id: id.clone(), index: i, address: a }),
                    Route::Remote(a) => {
                        m.skip = 20;
                        self.remote.ready.push_back(Job { id: id.clone(), index: i, address: a })
                    }
                }
            }
        }
        for chan in [Chan::Local, Chan::Remote] {
            self.fill(chan);
        }
    }

    fn fill(&mut self, chan: Chan) {
        loop {
            let ch = match chan {
                Chan::Local => &mut self.local,
                Chan::Remote => &mut self.remote,
            };
            if ch.ready.is_empty() {
                return;
            }
            if ch.writer.is_none() {
                // No spawner for this channel (remote delivery is not installed):
                // everything is deferred with a clear reason, and bounces only
                // when queuelifetime runs out.
                let job = ch.ready.pop_front().expect("non-empty");
                let text = format!("4.4.1 no {} delivery program is running (postern-rspawn); the message stays queued", ch.name);
                self.finish(&job.id, job.index, &job.address, Outcome::Failed(Kind::Temporary), text);
                continue;
            }
            if ch.free.is_empty() {
                return;
            }
            let Some(batch) = ch.next_batch() else { return };
            let slot = ch.free.pop().expect("a free slot");
            let id = batch[0].id.clone();
            let sender = self.msgs.get(&id).map(|m| m.sender.as_str().to_string()).unwrap_or_default();
            let req = Request { slot, id: id.clone(), sender, recipients: batch.iter().map(|j| j.address.clone()).collect() };
            let bytes = spawn::encode_request(&req);
            let sent = if ch.remote {
                // rspawn runs as postern-r and cannot open the queue: the file goes
                // along with the request.
                File::open(self.queue.mess().join(&id)).and_then(|f| {
                    crate::os::sys::send_with_fds(ch.writer.as_ref().expect("writer"), &bytes, &[std::os::fd::AsFd::as_fd(&f)])
                })
            } else {
                ch.writer.as_mut().expect("writer").write_all(&bytes)
            };
            if let Err(e) = sent {
                // The spawner is gone: the supervisor restarts us all.
                log::line(PROGRAM, &format!("cannot talk to the {} spawner: {e}; stopping", ch.name));
                ch.free.push(slot);
                ch.writer = None;
                self.stopping = true;
                return;
            }
            let domain = ch.remote.then(|| batch[0].domain());
            if let Some(d) = &domain {
                *ch.busy_domains.entry(d.clone()).or_insert(0) += 1;
            }
            ch.slots[slot as usize] = Some(InFlight { id, indexes: batch.iter().map(|j| j.index).collect(), domain });
        }
    }

    /// Read a spawner's results and act on each. Ok(false) at EOF.
    pub fn read_reports(&mut self, local: bool, r: &mut File, buf: &mut Vec<u8>) -> io::Result<bool> {
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
                Err(e) => return Err(e),
            }
        };
        let mut used = 0;
        loop {
            let ch = if local { &self.local } else { &self.remote };
            let count = |slot: u16| ch.slots.get(slot as usize).and_then(|s| s.as_ref()).map(|f| f.indexes.len());
            match spawn::parse_report(&buf[used..], count).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))? {
                None => break,
                Some((rep, n)) => {
                    used += n;
                    self.report(local, rep);
                }
            }
        }
        buf.drain(..used);
        Ok(open)
    }

    /// A spawner's answer.
    fn report(&mut self, local: bool, r: Report) {
        let ch = if local { &mut self.local } else { &mut self.remote };
        let Some(Some(flight)) = ch.slots.get_mut(r.slot as usize).map(|s| s.take()) else { return };
        if (r.slot as usize) < ch.limit {
            ch.free.push(r.slot);
        }
        if let Some(d) = &flight.domain {
            if let Some(n) = ch.busy_domains.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    ch.busy_domains.remove(d);
                }
            }
        }
        for (index, (outcome, text)) in flight.indexes.into_iter().zip(r.results) {
            let address = match self.msgs.get(&flight.id) {
                Some(m) => m.rcpts[index].0.as_str().to_string(),
                None => continue,
            };
            self.finish(&flight.id, index, &address, outcome, text);
        }
        self.fill(if local { Chan::Local } else { Chan::Remote });
    }

    fn finish(&mut self, id: &str, index: usize, address: &str, outcome: Outcome, text: String) {
        let Some(m) = self.msgs.get_mut(id) else { return };
        let word = match outcome {
            Outcome::Delivered => "success",
            Outcome::Failed(Kind::Temporary) => "deferral",
            Outcome::Failed(Kind::Permanent) => "failure",
        };
        log::line(PROGRAM, &format!("delivery {id} to <{address}>: {word}: {text}"));
        m.rcpts[index].1 = match outcome {
            Outcome::Delivered => RState::Delivered,
            Outcome::Failed(k) => RState::Failed(k, text),
        };
        let m = self.msgs.get_mut(id).expect("present");
        m.busy -= 1;
        if m.busy == 0 {
            self.settle(id);
        }
    }

    /// Every job of one message has answered: make the results durable, bounce
    /// what failed, and schedule what is left.
    fn settle(&mut self, id: &str) {
        let now = queue::now();
        let cfg = self.cfg.clone();
        let m = self.msgs.get_mut(id).expect("present");
        let expired = now >= m.birth.saturating_add(cfg.queuelifetime);
        let mut to_mark = Vec::new();
        let mut failures = Vec::new();
        let mut failed_idx = Vec::new();
        for (i, (addr, st)) in m.rcpts.iter_mut().enumerate() {
            match st {
                RState::Delivered => to_mark.push(i),
                RState::Failed(Kind::Permanent, text) => {
                    failures.push(Failure::from_report(addr.as_str(), text, "5.0.0"));
                    failed_idx.push(i);
                }
                RState::Failed(Kind::Temporary, text) => {
                    if expired {
                        let mut f = Failure::from_report(addr.as_str(), text, "4.4.7");
                        f.text = format!("{} (gave up: in the queue longer than queuelifetime, {} s)", f.text, cfg.queuelifetime);
                        failures.push(f);
                        failed_idx.push(i);
                    } else {
                        *st = RState::Waiting;
                    }
                }
                _ => {}
            }
        }
        if !failures.is_empty() {
            let sender = m.sender.clone();
            let birth = m.birth;
            match self.bounce(id, &sender, birth, &failures) {
                Ok(()) => to_mark.extend(failed_idx),
                Err(e) => {
                    log::line(PROGRAM, &format!("cannot queue the bounce for {id}: {e}; will try again"));
                    let m = self.msgs.get_mut(id).expect("present");
                    for i in failed_idx {
                        m.rcpts[i].1 = RState::Waiting;
                    }
                }
            }
        }
        let m = self.msgs.get_mut(id).expect("present");
        for &i in &to_mark {
            m.rcpts[i].1 = RState::Done;
        }
        let path = self.queue.mess().join(id);
        if m.rcpts.iter().all(|(_, s)| *s == RState::Done) {
            // Every recipient has a final result; any marks not yet on disk are
            // moot once the file is out of mess/.
            self.retired += 1;
            if let Err(e) = self.queue.retire(&path, self.retired) {
                log::line(PROGRAM, &format!("cannot remove {}: {e}", path.display()));
            }
            log::line(PROGRAM, &format!("end {id}"));
            self.msgs.remove(id);
            return;
        }
        if !to_mark.is_empty() {
            if let Err(e) = mark(&path, &to_mark) {
                // Not fatal: the recipients stay 'T' on disk and get a duplicate
                // delivery after a restart, never a loss.
                log::line(PROGRAM, &format!("{e}; a restart may deliver these recipients again"));
            }
        }
        m.next_try = next_retry(m.birth, now, m.skip);
        let t = m.next_try;
        self.due.push(Reverse((t, id.to_string())));
    }

    fn bounce(&self, id: &str, sender: &Address, birth: u64, failures: &[Failure]) -> Result<(), String> {
        let cfg = &self.cfg;
        let (to, from) = if sender.as_str() == DOUBLE_BOUNCE_SENDER {
            log::line(PROGRAM, &format!("triple bounce {id}: discarded"));
            return Ok(());
        } else if sender.is_null() {
            if cfg.doublebounceto.is_empty() {
                log::line(PROGRAM, &format!("double bounce {id}: discarded (doublebounceto is empty)"));
                return Ok(());
            }
            let to = if cfg.doublebounceto.contains('@') {
                cfg.doublebounceto.clone()
            } else {
                format!("{}@{}", cfg.doublebounceto, cfg.doublebouncehost)
            };
            (to, DOUBLE_BOUNCE_SENDER.to_string())
        } else {
            (sender.as_str().to_string(), String::new())
        };
        let qf = QueueFile::open(&self.queue.mess().join(id), false).map_err(|e| e.to_string())?;
        let mut original = Vec::new();
        (&qf.file).take(qf.message_len.min(cfg.bouncemaxbytes as u64 + 1)).read_to_end(&mut original).map_err(|e| e.to_string())?;
        let reporter = format!("{}@{}", cfg.bouncefrom, cfg.bouncehost);
        let text = Bounce {
            reporting_host: &cfg.me,
            from: &reporter,
            to: &to,
            queue_id: id,
            arrival: birth,
            failures,
            original: &original,
            max_bytes: cfg.bouncemaxbytes,
        }
        .render();
        let env = Envelope {
            sender: Address::parse(from.as_bytes()).map_err(|e| e.to_string())?,
            recipients: vec![Address::parse(to.as_bytes()).map_err(|e| format!("bounce address {to:?}: {e}"))?],
        };
        queue::submit(&self.home, &mut &text[..], &env).map_err(|e| e.to_string())?;
        log::line(PROGRAM, &format!("bounce {id}: {} recipient(s) reported to <{to}>", failures.len()));
        Ok(())
    }
}

fn mark(path: &Path, which: &[usize]) -> Result<(), queue::QueueError> {
    let mut qf = QueueFile::open(path, true)?;
    qf.mark_done(which)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            me: "mx.example".into(),
            locals: ["mx.example".to_string(), "localhost".to_string()].into_iter().collect(),
            virtualdomains: vec![
                ("virt.example".into(), "joe".into()),
                (".sub.example".into(), "subs".into()),
                ("not.sub.example".into(), "".into()),
            ],
            envnoathost: "mx.example".into(),
            bouncefrom: "MAILER-DAEMON".into(),
            bouncehost: "mx.example".into(),
            doublebounceto: "postmaster".into(),
            doublebouncehost: "mx.example".into(),
            concurrency_local: 10,
            concurrency_remote: 20,
            concurrency_domain: 10,
            queuelifetime: 604800,
            bouncemaxbytes: 50000,
        }
    }

    fn a(s: &str) -> Address {
        Address::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn routes_like_qmail_send() {
        let c = cfg();
        assert_eq!(route(&c, None, &a("bob@MX.example")), Route::Local("bob@MX.example".into()));
        assert_eq!(route(&c, None, &a("bob")), Route::Local("bob@mx.example".into()));
        assert_eq!(route(&c, None, &a("bob@virt.example")), Route::Local("joe-bob@virt.example".into()));
        assert_eq!(route(&c, None, &a("x@a.sub.example")), Route::Local("subs-x@a.sub.example".into()));
        assert_eq!(route(&c, None, &a("x@not.sub.example")), Route::Remote("x@not.sub.example".into()));
        assert_eq!(route(&c, None, &a("x@elsewhere.example")), Route::Remote("x@elsewhere.example".into()));
    }

    #[test]
    fn retry_schedule_grows_quadratically() {
        assert_eq!(next_retry(1000, 1000, 10), 1100);
        assert_eq!(next_retry(1000, 1100, 10), 1400);
        assert_eq!(next_retry(1000, 1399, 10), 1400);
        assert_eq!(next_retry(1000, 1400, 10), 1900);
        assert_eq!(next_retry(1000, 1000, 20), 1400);
    }
}
