//! postern-send's scheduler as a state machine: events in, actions out, no I/O.
//!
//! The daemon (daemon.rs) reads the queue and the spawners and feeds what it
//! sees in (`loaded`, `answer`, `bounced`, ...); the scheduler decides and
//! queues `Action`s, which the daemon carries out in order and answers where an
//! action has a result (a bounce queued or not, a request that could not be
//! handed over). Time comes in as an argument, routing as a function: the rules
//! below are unit-tested without a queue, a clock or a spawner.
//!
//! All state that must survive a crash is in the queue files (see the queue
//! module); the scheduler's memory holds only what it can rebuild by reading the
//! queue again: which recipients are being delivered, and when each message is
//! due.
//!
//! # The rules
//! - Concurrency: at most `concurrency_local` local and `concurrency_remote`
//!   remote deliveries at once, and at most `concurrency_domain` to one remote
//!   domain. A remote request carries the recipients of one message that share a
//!   domain (up to `spawn::MAX_BATCH`); a local one carries one recipient.
//! - Retries follow qmail's schedule: a message born at B is tried at
//!   B + (n * skip)^2 for n = 0, 1, 2, ... with skip 10 s, or 20 s once one of
//!   its recipients is remote.
//! - A recipient that failed for good, or for now after `queuelifetime`, is
//!   bounced: to the sender; for a null sender (a bounce) to `doublebounceto`
//!   from `#@[]`; a message from `#@[]` (a double bounce) that fails is
//!   discarded. Only once the bounce is queued are those recipients done; if it
//!   cannot be queued they wait for the next try.
//! - DSN parameters (RFC 3461): a recipient whose NOTIFY leaves out FAILURE
//!   (NEVER included) is done without a failure notice; one whose NOTIFY has
//!   SUCCESS is reported to a (non-null) sender once delivered: `delivered`
//!   for a local delivery, `relayed` for a remote one (we pass no DSN
//!   parameters on). There are no delay notices at all, so DELAY changes
//!   nothing.
//! - Done recipients are marked in the file (durably) before the message is
//!   tried again; a message whose recipients are all done is retired.
//! - A queue file that is damaged is moved aside to bad/ for a person; one that
//!   cannot be read for now (out of descriptors, an I/O error) is read again
//!   later and never moved aside.
//! - A request that cannot be handed over because its queue file cannot be
//!   opened is a temporary failure of its recipients; a spawner that cannot be
//!   written to stops the scheduler (postern-start restarts the set).
//! - The administrator's requests (`queue::control`): hold, delete (silently,
//!   or bouncing every pending recipient) and requeue one message. A message
//!   with deliveries in progress is held or deleted once they have answered and
//!   their results are settled; its recipients still waiting for a free slot
//!   are taken back at once. A held message leaves the scheduler (the daemon
//!   moves it to hold/).
//! - After each round of attempts the scheduler reports each tried recipient's
//!   attempts, last result and next try (`Action::Info`, for `queue::info`).

use super::dsn::{DsnAction, Failure};
use super::spawn::{Answer, Outcome, Request, MAX_BATCH};
use crate::address::Address;
use crate::config::routing::Route;
use crate::error::Kind;
use crate::queue::dsnparams::RcptDsn;
use crate::queue::Id;
use crate::status::Status;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

/// How long before a queue file that could not be read is read again.
pub const RELOAD_DELAY: u64 = 60;

/// What the scheduler is told by the settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub concurrency_local: usize,
    pub concurrency_remote: usize,
    pub concurrency_domain: usize,
    pub queuelifetime: u64,
    /// Where bounces of bounces go; None discards them.
    pub doublebounce: Option<Address>,
}

/// The two kinds of delivery, each with its spawner.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Chan {
    Local,
    Remote,
}

impl Chan {
    fn name(self) -> &'static str {
        match self {
            Chan::Local => "local",
            Chan::Remote => "remote",
        }
    }
}

/// A queue file as the daemon read it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub sender: Address,
    pub birth: u64,
    /// Each recipient and whether it is done.
    pub recipients: Vec<(Address, bool)>,
    /// NOTIFY and ORCPT of recipient i (missing: the defaults).
    pub rcpt_dsn: Vec<RcptDsn>,
    pub size: u64,
}

/// Why a queue file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// It is no longer there.
    Gone,
    /// Its contents do not parse: retrying cannot help.
    Damaged(String),
    /// Out of descriptors or memory, an I/O error: it may work later.
    Temporary(String),
}

/// A bounce to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub id: Id,
    pub to: Address,
    /// The null sender, or `#@[]` for a double bounce.
    pub from: Address,
    pub birth: u64,
    pub failures: Vec<Failure>,
}

/// What the daemon must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Log(String),
    /// Hand a request to its spawner, with its queue file; if that
    /// fails, call `start_failed` or `spawner_gone`.
    Start {
        chan: Chan,
        request: Request,
    },
    /// Mark these recipients done in the file, durably.
    Mark {
        id: Id,
        recipients: Vec<usize>,
    },
    /// Compose the bounce with the original message and queue it, then call
    /// `bounced`.
    Bounce(Bounce),
    /// Every recipient is done: the file leaves the queue.
    Retire {
        id: Id,
    },
    /// Move the file aside to bad/ for a person.
    Quarantine {
        id: Id,
        why: String,
    },
    /// Read the file again and call `loaded` or `unreadable`.
    Load {
        id: Id,
    },
    /// Move the file to hold/: the scheduler has forgotten it.
    Hold {
        id: Id,
    },
    /// Record what was tried (`queue::info`); not durable.
    Info {
        id: Id,
        tried: Vec<crate::queue::info::Tried>,
    },
}

/// What the administrator asked to happen to a message once its deliveries
/// in progress have answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Hold,
    Delete { bounce: bool },
}

#[derive(Debug, Clone, PartialEq)]
enum RState {
    /// Not delivered; may be tried when the message is due.
    Waiting,
    /// Given to a spawner (or waiting for a free slot).
    Busy,
    Delivered,
    Failed(Outcome),
    Done,
}

/// Results waiting for their bounce to be queued.
struct Settling {
    mark: Vec<usize>,
    bounced: Vec<usize>,
}

struct Msg {
    sender: Address,
    birth: u64,
    /// The message's length (bytes 0..size of the file), for the spawners.
    size: u64,
    rcpts: Vec<(Address, RState)>,
    /// NOTIFY and ORCPT of each recipient, and whether it was last sent remote.
    dsn: Vec<RcptDsn>,
    remote: Vec<bool>,
    /// Jobs handed out and not yet answered (or still waiting for a slot).
    busy: usize,
    next_try: u64,
    /// Retry step: remote recipients wait longer.
    skip: u64,
    settling: Option<Settling>,
    /// Attempts and the last result (time, status, text) of each recipient.
    attempts: Vec<u32>,
    last: Vec<Option<(u64, Status, String)>>,
    after: Option<After>,
}

struct Job {
    id: Id,
    index: usize,
    address: Address,
}

impl Job {
    fn domain(&self) -> String {
        self.address.domain_lower().unwrap_or_default()
    }
}

/// A request in flight: its message, the recipients' indexes, and for remote
/// deliveries the destination domain (for the per-domain limit).
struct InFlight {
    id: Id,
    indexes: Vec<usize>,
    domain: Option<String>,
}

struct Channel {
    chan: Chan,
    /// A spawner is there to take requests.
    running: bool,
    limit: usize,
    per_domain: usize,
    slots: Vec<Option<InFlight>>,
    free: Vec<u16>,
    ready: VecDeque<Job>,
    busy_domains: HashMap<String, usize>,
}

impl Channel {
    fn new(chan: Chan, running: bool, limit: usize, per_domain: usize) -> Channel {
        let mut c = Channel {
            chan,
            running,
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
        // Lowering the limit: slots above it are not handed out again.
        self.free.retain(|&s| (s as usize) < limit);
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }

    fn in_use(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// The next request's jobs: the first ready job whose domain is below its
    /// limit, and (remote) the same message's other ready jobs for that domain.
    fn next_batch(&mut self) -> Option<Vec<Job>> {
        if self.chan == Chan::Local {
            return self.ready.pop_front().map(|j| vec![j]);
        }
        let pos = self.ready.iter().position(|j| self.busy_domains.get(&j.domain()).copied().unwrap_or(0) < self.per_domain)?;
        let first = self.ready.remove(pos)?;
        let domain = first.domain();
        let mut batch = vec![first];
        let mut i = pos;
        while i < self.ready.len() && batch.len() < MAX_BATCH {
            if self.ready[i].id == batch[0].id && self.ready[i].domain() == domain {
                batch.push(self.ready.remove(i).expect("in range"));
            } else {
                i += 1;
            }
        }
        Some(batch)
    }

    /// Free a slot whose request is over, returning what it held.
    fn release(&mut self, slot: u16) -> Option<InFlight> {
        let flight = self.slots.get_mut(slot as usize)?.take()?;
        if (slot as usize) < self.limit {
            self.free.push(slot);
        }
        if let Some(d) = &flight.domain {
            if let Some(n) = self.busy_domains.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    self.busy_domains.remove(d);
                }
            }
        }
        Some(flight)
    }
}

/// When to try again after an attempt at `now` for a message born at `birth`.
pub fn next_retry(birth: u64, now: u64, skip: u64) -> u64 {
    let age = now.saturating_sub(birth);
    let n = (age as f64).sqrt() as u64 / skip + 1;
    birth + (n * skip) * (n * skip)
}

pub struct Scheduler {
    policy: Policy,
    msgs: HashMap<Id, Msg>,
    due: BinaryHeap<Reverse<(u64, Id)>>,
    /// Files to read again after a temporary failure.
    reload: BinaryHeap<Reverse<(u64, Id)>>,
    local: Channel,
    remote: Channel,
    stopping: bool,
    actions: Vec<Action>,
}

impl Scheduler {
    /// `local` and `remote` say whether each spawner is running.
    pub fn new(policy: Policy, local: bool, remote: bool) -> Scheduler {
        Scheduler {
            local: Channel::new(Chan::Local, local, policy.concurrency_local, policy.concurrency_local),
            remote: Channel::new(Chan::Remote, remote, policy.concurrency_remote, policy.concurrency_domain),
            policy,
            msgs: HashMap::new(),
            due: BinaryHeap::new(),
            reload: BinaryHeap::new(),
            stopping: false,
            actions: Vec::new(),
        }
    }

    /// What to do now, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn log(&mut self, line: String) {
        self.actions.push(Action::Log(line));
    }

    fn channel(&mut self, chan: Chan) -> &mut Channel {
        match chan {
            Chan::Local => &mut self.local,
            Chan::Remote => &mut self.remote,
        }
    }

    /// New settings (SIGHUP): limits apply to the next requests.
    pub fn reload_policy(&mut self, policy: Policy) {
        self.local.set_limit(policy.concurrency_local);
        self.local.per_domain = policy.concurrency_local;
        self.remote.set_limit(policy.concurrency_remote);
        self.remote.per_domain = policy.concurrency_domain;
        self.policy = policy;
    }

    /// Messages in memory.
    pub fn queued(&self) -> usize {
        self.msgs.len()
    }

    /// Requests in flight.
    pub fn busy(&self) -> usize {
        self.local.in_use() + self.remote.in_use()
    }

    /// Recipients in a slot's request, for reading its answer; None when the
    /// slot holds no request.
    pub fn in_flight(&self, chan: Chan, slot: u16) -> Option<usize> {
        let ch = match chan {
            Chan::Local => &self.local,
            Chan::Remote => &self.remote,
        };
        ch.slots.get(slot as usize).and_then(|s| s.as_ref()).map(|f| f.indexes.len())
    }

    /// The remote domain the request in `slot` went to (None: local, or no such request).
    pub fn flight_domain(&self, chan: Chan, slot: u16) -> Option<&str> {
        let ch = match chan {
            Chan::Local => &self.local,
            Chan::Remote => &self.remote,
        };
        ch.slots.get(slot as usize)?.as_ref()?.domain.as_deref()
    }

    /// Stop starting deliveries; `finished` once the running ones have answered.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    pub fn finished(&self) -> bool {
        self.stopping && self.busy() == 0
    }

    /// When something is next due (a message or a file to read again).
    pub fn next_due(&self) -> Option<u64> {
        let a = self.due.peek().map(|Reverse((t, _))| *t);
        let b = self.reload.peek().map(|Reverse((t, _))| *t);
        a.into_iter().chain(b).min()
    }

    /// A queue file was read (at start, from new/, or again).
    pub fn loaded(&mut self, now: u64, id: Id, file: Loaded) {
        if self.msgs.contains_key(&id) {
            return;
        }
        if file.recipients.iter().all(|(_, done)| *done) {
            // A finished message whose retirement was lost in a crash.
            self.log(format!("end {id} (finished before a restart)"));
            self.actions.push(Action::Retire { id });
            return;
        }
        let rcpts: Vec<(Address, RState)> =
            file.recipients.into_iter().map(|(a, done)| (a, if done { RState::Done } else { RState::Waiting })).collect();
        let waiting = rcpts.iter().filter(|(_, s)| *s == RState::Waiting).count();
        self.log(format!("new {id} from <{}> to {waiting} recipient(s), {} bytes", file.sender, file.size));
        let mut dsn = file.rcpt_dsn;
        dsn.resize(rcpts.len(), RcptDsn::default());
        let remote = vec![false; rcpts.len()];
        let n = rcpts.len();
        let msg = Msg {
            sender: file.sender,
            birth: file.birth,
            size: file.size,
            rcpts,
            dsn,
            remote,
            busy: 0,
            next_try: now,
            skip: 10,
            settling: None,
            attempts: vec![0; n],
            last: vec![None; n],
            after: None,
        };
        self.msgs.insert(id.clone(), msg);
        self.due.push(Reverse((now, id)));
    }

    /// A queue file could not be read.
    pub fn unreadable(&mut self, now: u64, id: Id, why: Unreadable) {
        match why {
            Unreadable::Gone => self.log(format!("{id} left the queue before it could be read")),
            Unreadable::Damaged(why) => self.actions.push(Action::Quarantine { id, why }),
            Unreadable::Temporary(why) => {
                self.log(format!("{why}; reading {id} again in {RELOAD_DELAY} s"));
                self.reload.push(Reverse((now + RELOAD_DELAY, id)));
            }
        }
    }

    /// Everything waiting is due now (a forced retry).
    pub fn flush(&mut self, now: u64) {
        let mut n = 0;
        for (id, m) in self.msgs.iter_mut() {
            if m.busy == 0 && m.settling.is_none() {
                m.next_try = now;
                self.due.push(Reverse((now, id.clone())));
                n += 1;
            }
        }
        let reload: Vec<_> = std::mem::take(&mut self.reload).into_iter().map(|Reverse((_, id))| Reverse((now, id))).collect();
        self.reload.extend(reload);
        self.log(format!("flush: {n} message(s) due now"));
    }

    /// Start what is due and what fits in the channels. `route` says where each
    /// recipient goes.
    pub fn dispatch(&mut self, now: u64, route: &mut dyn FnMut(&Address) -> Route) {
        if self.stopping {
            return;
        }
        while let Some(Reverse((t, _))) = self.reload.peek() {
            if *t > now {
                break;
            }
            let Reverse((_, id)) = self.reload.pop().expect("peeked");
            self.actions.push(Action::Load { id });
        }
        while let Some(Reverse((t, _))) = self.due.peek() {
            if *t > now {
                break;
            }
            let Reverse((t, id)) = self.due.pop().expect("peeked");
            let Some(m) = self.msgs.get_mut(&id) else { continue };
            if m.next_try != t || m.busy > 0 || m.settling.is_some() {
                continue; // a stale heap entry
            }
            for (i, (addr, st)) in m.rcpts.iter_mut().enumerate() {
                if *st != RState::Waiting {
                    continue;
                }
                *st = RState::Busy;
                m.busy += 1;
                let (chan, address) = match route(addr) {
                    Route::Local(a) => (&mut self.local, a),
                    Route::Remote(a) => {
                        m.skip = 20;
                        (&mut self.remote, a)
                    }
                };
                m.remote[i] = chan.chan == Chan::Remote;
                chan.ready.push_back(Job { id: id.clone(), index: i, address });
            }
        }
        self.fill(now, Chan::Local);
        self.fill(now, Chan::Remote);
    }

    fn fill(&mut self, now: u64, chan: Chan) {
        loop {
            if self.stopping {
                return;
            }
            let ch = self.channel(chan);
            if ch.ready.is_empty() {
                return;
            }
            if !ch.running {
                // No spawner for this channel (remote delivery is not installed):
                // deferred with a clear reason; it bounces only when
                // queuelifetime runs out.
                let job = ch.ready.pop_front().expect("non-empty");
                let why = format!("no {} delivery program is running (postern-rspawn); the message stays queued", chan.name());
                self.finish(now, &job.id, job.index, Outcome::new(Status::NO_ANSWER, why));
                continue;
            }
            if ch.free.is_empty() {
                return;
            }
            let Some(batch) = ch.next_batch() else { return };
            let slot = ch.free.pop().expect("a free slot");
            let domain = (chan == Chan::Remote).then(|| batch[0].domain());
            if let Some(d) = &domain {
                *ch.busy_domains.entry(d.clone()).or_insert(0) += 1;
            }
            let id = batch[0].id.clone();
            ch.slots[slot as usize] = Some(InFlight { id: id.clone(), indexes: batch.iter().map(|j| j.index).collect(), domain });
            let (sender, size) = self.msgs.get(&id).map(|m| (m.sender.clone(), m.size)).unwrap_or_else(|| (Address::null(), 0));
            let request = Request { slot, id, size, sender, recipients: batch.into_iter().map(|j| j.address).collect() };
            self.actions.push(Action::Start { chan, request });
        }
    }

    /// A spawner's answer to the request in `answer.slot`.
    pub fn answer(&mut self, now: u64, chan: Chan, answer: Answer) {
        let Some(flight) = self.channel(chan).release(answer.slot) else { return };
        for (index, outcome) in flight.indexes.into_iter().zip(answer.outcomes) {
            self.finish(now, &flight.id, index, outcome);
        }
        self.fill(now, chan);
    }

    /// The request in `slot` could not be handed over (its queue file could not
    /// be opened): its recipients failed for now.
    pub fn start_failed(&mut self, now: u64, chan: Chan, slot: u16, why: String) {
        let Some(flight) = self.channel(chan).release(slot) else { return };
        for index in flight.indexes {
            self.finish(now, &flight.id, index, Outcome::temporary(why.clone()));
        }
        self.fill(now, chan);
    }

    /// The spawner could not be written to: stop (the supervisor restarts us).
    pub fn spawner_gone(&mut self, chan: Chan, slot: u16, why: String) {
        let ch = self.channel(chan);
        ch.release(slot);
        ch.running = false;
        self.stopping = true;
        self.log(format!("cannot talk to the {} spawner: {why}; stopping", chan.name()));
    }

    fn finish(&mut self, now: u64, id: &Id, index: usize, outcome: Outcome) {
        let Some(m) = self.msgs.get_mut(id) else { return };
        let word = match outcome.failure() {
            None => "success",
            Some(Kind::Temporary) => "deferral",
            Some(Kind::Permanent) => "failure",
        };
        let line = format!("delivery {id} to <{}>: {word}: {} {}", m.rcpts[index].0, outcome.status, outcome.text);
        m.attempts[index] += 1;
        m.last[index] = Some((now, outcome.status, outcome.text.clone()));
        m.rcpts[index].1 = match outcome.failure() {
            None => RState::Delivered,
            Some(_) => RState::Failed(outcome),
        };
        m.busy -= 1;
        let settle = m.busy == 0;
        self.log(line);
        if settle {
            self.settle(now, id);
        }
    }

    /// Every job of one message has answered: bounce what failed, then make
    /// the results durable and schedule what is left.
    fn settle(&mut self, now: u64, id: &Id) {
        let lifetime = self.policy.queuelifetime;
        let m = self.msgs.get_mut(id).expect("present");
        let expired = now >= m.birth.saturating_add(lifetime);
        // Success notices go only to a real sender, never about a bounce.
        let notices_ok = !m.sender.is_null() && !m.sender.is_double_bounce();
        let (mut mark, mut failures, mut bounced, mut quiet) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, (addr, st)) in m.rcpts.iter_mut().enumerate() {
            let dsn = &m.dsn[i];
            let report = |status, text, action| Failure { recipient: addr.clone(), status, text, action, orcpt: dsn.orcpt.clone() };
            let failed = match st {
                RState::Delivered => {
                    mark.push(i);
                    if dsn.wants_success() && notices_ok {
                        let (action, text) = match m.remote[i] {
                            true => (DsnAction::Relayed, "accepted by the next server, which was not asked for notices"),
                            false => (DsnAction::Delivered, "delivered to the mailbox"),
                        };
                        failures.push(report(Status::OK, text.to_string(), action));
                    }
                    None
                }
                RState::Failed(o) if o.failure() == Some(Kind::Permanent) => Some((o.status, o.text.clone())),
                RState::Failed(o) if expired => {
                    Some((o.status, format!("{} (gave up: in the queue longer than queuelifetime, {lifetime} s)", o.text)))
                }
                RState::Failed(_) => {
                    *st = RState::Waiting;
                    None
                }
                _ => None,
            };
            if let Some((status, text)) = failed {
                if dsn.wants_failure() {
                    failures.push(report(status, text, DsnAction::Failed));
                    bounced.push(i);
                } else {
                    // NOTIFY without FAILURE (or NEVER): done, and nobody told.
                    quiet.push(format!("no failure notice for <{addr}> (NOTIFY={})", dsn.notify.map(|n| n.encode()).unwrap_or_default()));
                    mark.push(i);
                }
            }
        }
        for line in quiet {
            self.log(format!("{id}: {line}"));
        }
        if failures.is_empty() {
            return self.settled(now, id, mark);
        }
        let m = self.msgs.get_mut(id).expect("present");
        let (sender, birth) = (m.sender.clone(), m.birth);
        match self.bounce_route(&sender) {
            Err(discard) => {
                self.log(format!("{discard} {id}: discarded"));
                mark.extend(bounced);
                self.settled(now, id, mark);
            }
            Ok((to, from)) => {
                self.msgs.get_mut(id).expect("present").settling = Some(Settling { mark, bounced });
                self.actions.push(Action::Bounce(Bounce { id: id.clone(), to, from, birth, failures }));
            }
        }
    }

    /// Who a bounce of a message from `sender` goes to, and from whom; Err when
    /// it is discarded (and why).
    fn bounce_route(&self, sender: &Address) -> Result<(Address, Address), &'static str> {
        if sender.is_double_bounce() {
            return Err("triple bounce");
        }
        if sender.is_null() {
            return match &self.policy.doublebounce {
                Some(to) => Ok((to.clone(), Address::double_bounce())),
                None => Err("double bounce (doublebounceto is empty)"),
            };
        }
        Ok((sender.clone(), Address::null()))
    }

    /// The daemon tried to queue a message's bounce.
    pub fn bounced(&mut self, now: u64, id: &Id, result: Result<(), String>) {
        let Some(m) = self.msgs.get_mut(id) else { return };
        let Some(s) = m.settling.take() else { return };
        let mut mark = s.mark;
        match result {
            Ok(()) => mark.extend(s.bounced),
            Err(e) => {
                for &i in &s.bounced {
                    m.rcpts[i].1 = RState::Waiting;
                }
                self.log(format!("cannot queue the bounce for {id}: {e}; will try again"));
            }
        }
        self.settled(now, id, mark);
    }

    fn settled(&mut self, now: u64, id: &Id, mark: Vec<usize>) {
        let m = self.msgs.get_mut(id).expect("present");
        for &i in &mark {
            m.rcpts[i].1 = RState::Done;
        }
        if m.rcpts.iter().all(|(_, s)| *s == RState::Done) {
            // Every recipient has a final result; marks not yet on disk are moot
            // once the file has left the queue.
            self.msgs.remove(id);
            self.actions.push(Action::Retire { id: id.clone() });
            self.log(format!("end {id}"));
            return;
        }
        m.next_try = next_retry(m.birth, now, m.skip);
        let t = m.next_try;
        let tried = m
            .last
            .iter()
            .enumerate()
            .filter(|(i, _)| m.rcpts[*i].1 != RState::Done)
            .filter_map(|(index, l)| {
                let (last_try, status, text) = l.as_ref()?;
                let (status, text) = (status.to_string(), text.clone());
                Some(crate::queue::info::Tried { index, attempts: m.attempts[index], last_try: *last_try, next_try: t, status, text })
            })
            .collect();
        let after = m.after;
        if !mark.is_empty() {
            self.actions.push(Action::Mark { id: id.clone(), recipients: mark });
        }
        self.actions.push(Action::Info { id: id.clone(), tried });
        match after {
            Some(After::Hold) => self.hold_now(id),
            Some(After::Delete { bounce }) => self.delete_now(now, id, bounce),
            None => self.due.push(Reverse((t, id.clone()))),
        }
    }

    /// Take a message's jobs that wait for a free slot back: they become
    /// waiting recipients again. Whether deliveries are still in progress.
    fn unready(&mut self, id: &Id) -> bool {
        let Some(m) = self.msgs.get_mut(id) else { return false };
        for ch in [&mut self.local, &mut self.remote] {
            ch.ready.retain(|j| {
                if &j.id != id {
                    return true;
                }
                m.rcpts[j.index].1 = RState::Waiting;
                m.busy -= 1;
                false
            });
        }
        m.busy > 0 || m.settling.is_some()
    }

    /// The administrator asks to hold a message: it is not delivered until
    /// released (the daemon moves it to hold/, which the scheduler never reads).
    pub fn hold(&mut self, now: u64, id: &Id) {
        if !self.msgs.contains_key(id) {
            return self.log(format!("hold {id}: no such message in the queue"));
        }
        self.when_settled(now, id, After::Hold);
    }

    /// Do `after` once the message's deliveries in progress have answered and
    /// the results that came in are settled (marked, bounced).
    fn when_settled(&mut self, now: u64, id: &Id, after: After) {
        let busy = self.unready(id);
        let m = self.msgs.get_mut(id).expect("present");
        m.after = Some(after);
        if busy {
            return self.log(format!("{id}: the administrator's request waits for the deliveries in progress"));
        }
        if m.rcpts.iter().any(|(_, st)| matches!(st, RState::Delivered | RState::Failed(_))) {
            return self.settle(now, id);
        }
        match after {
            After::Hold => self.hold_now(id),
            After::Delete { bounce } => self.delete_now(now, id, bounce),
        }
    }

    fn hold_now(&mut self, id: &Id) {
        self.msgs.remove(id);
        self.log(format!("hold {id}: held until released"));
        self.actions.push(Action::Hold { id: id.clone() });
    }

    /// The administrator asks to delete a message: silently (every recipient
    /// done, the file retired) or with a bounce of every pending recipient to
    /// the sender, as for a permanent failure (NOTIFY and the double-bounce
    /// rules apply).
    pub fn delete(&mut self, now: u64, id: &Id, bounce: bool) {
        if !self.msgs.contains_key(id) {
            return self.log(format!("delete {id}: no such message in the queue"));
        }
        self.when_settled(now, id, After::Delete { bounce });
    }

    fn delete_now(&mut self, now: u64, id: &Id, bounce: bool) {
        let m = self.msgs.get_mut(id).expect("present");
        m.after = None;
        if !bounce {
            self.msgs.remove(id);
            self.log(format!("end {id}: deleted by the administrator, nobody told"));
            return self.actions.push(Action::Retire { id: id.clone() });
        }
        let why = Outcome::new(Status::new(5, 0, 0), "deleted from the queue by the mail administrator");
        for (_, st) in m.rcpts.iter_mut() {
            if matches!(st, RState::Waiting | RState::Failed(_)) {
                *st = RState::Failed(why.clone());
            }
        }
        self.log(format!("delete {id}: bouncing its pending recipients"));
        self.settle(now, id);
    }

    /// The administrator asks for a retry of one message now.
    pub fn requeue(&mut self, now: u64, id: &Id) {
        match self.msgs.get_mut(id) {
            None => self.log(format!("requeue {id}: no such message in the queue")),
            Some(m) if m.busy > 0 || m.settling.is_some() => self.log(format!("requeue {id}: deliveries in progress already")),
            Some(m) => {
                m.next_try = now;
                self.due.push(Reverse((now, id.clone())));
                self.log(format!("requeue {id}: due now"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::addr as a;

    fn policy() -> Policy {
        Policy {
            concurrency_local: 2,
            concurrency_remote: 3,
            concurrency_domain: 2,
            queuelifetime: 1000,
            doublebounce: Some(a("postmaster@mx.test")),
        }
    }

    /// Local for @mx.test, remote for the rest.
    fn route(r: &Address) -> Route {
        if r.domain() == Some("mx.test") {
            Route::Local(r.clone())
        } else {
            Route::Remote(r.clone())
        }
    }

    fn id(n: u32) -> Id {
        Id::parse(&format!("100.{n}")).unwrap()
    }

    fn file(sender: &str, rcpts: &[&str]) -> Loaded {
        Loaded {
            sender: if sender.is_empty() { Address::null() } else { a(sender) },
            birth: 100,
            recipients: rcpts.iter().map(|r| (a(r), false)).collect(),
            rcpt_dsn: Vec::new(),
            size: 10,
        }
    }

    struct T {
        s: Scheduler,
        log: Vec<String>,
        info: Vec<(Id, Vec<crate::queue::info::Tried>)>,
    }

    impl T {
        fn new(p: Policy) -> T {
            T { s: Scheduler::new(p, true, true), log: Vec::new(), info: Vec::new() }
        }
        /// The actions since the last call, logs and records kept aside.
        fn actions(&mut self) -> Vec<Action> {
            let mut out = Vec::new();
            for a in self.s.take_actions() {
                match a {
                    Action::Log(l) => self.log.push(l),
                    Action::Info { id, tried } => self.info.push((id, tried)),
                    other => out.push(other),
                }
            }
            out
        }
        fn starts(&mut self) -> Vec<(Chan, Request)> {
            self.actions()
                .into_iter()
                .filter_map(|a| match a {
                    Action::Start { chan, request } => Some((chan, request)),
                    _ => None,
                })
                .collect()
        }
        fn dispatch(&mut self, now: u64) {
            self.s.dispatch(now, &mut route);
        }
        fn answer(&mut self, now: u64, chan: Chan, slot: u16, outcomes: Vec<Outcome>) {
            self.s.answer(now, chan, Answer { slot, outcomes });
        }
    }

    fn ok() -> Outcome {
        Outcome::new(Status::OK, "delivered")
    }
    fn later() -> Outcome {
        Outcome::new(Status::MAILBOX_FULL, "mailbox full")
    }
    fn never() -> Outcome {
        Outcome::new(Status::NO_MAILBOX, "no such user")
    }

    #[test]
    fn local_concurrency_limit_holds_and_frees_with_answers() {
        let mut t = T::new(policy());
        for n in 0..5 {
            t.s.loaded(100, id(n), file("s@x.test", &["u@mx.test"]));
        }
        t.dispatch(100);
        let starts = t.starts();
        assert_eq!(starts.len(), 2, "concurrencylocal is 2");
        assert_eq!(t.s.busy(), 2);
        t.answer(101, Chan::Local, starts[0].1.slot, vec![ok()]);
        let next = t.starts();
        assert_eq!(next.len(), 1, "one answer frees one slot");
        assert_eq!(next[0].1.slot, starts[0].1.slot);
        assert_eq!(t.s.busy(), 2);
    }

    #[test]
    fn remote_requests_batch_by_domain_and_respect_the_domain_limit() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("s@x.test", &["a@far.test", "b@far.test", "c@other.test", "d@far.test"]));
        t.s.loaded(100, id(2), file("s@x.test", &["e@far.test"]));
        t.s.loaded(100, id(3), file("s@x.test", &["f@far.test"]));
        t.dispatch(100);
        let starts = t.starts();
        let rcpts: Vec<Vec<&str>> = starts.iter().map(|(_, r)| r.recipients.iter().map(Address::as_str).collect()).collect();
        assert_eq!(rcpts, vec![vec!["a@far.test", "b@far.test", "d@far.test"], vec!["c@other.test"], vec!["e@far.test"]]);
        assert!(starts.iter().all(|(c, _)| *c == Chan::Remote));
        // far.test has 2 requests in flight, its limit: id 3 waits although a
        // remote slot is free.
        assert_eq!(t.s.busy(), 3);
        t.answer(101, Chan::Remote, starts[1].1.slot, vec![ok()]);
        assert!(t.starts().is_empty(), "far.test is still at its limit");
        t.answer(101, Chan::Remote, starts[0].1.slot, vec![ok(), ok(), ok()]);
        let next = t.starts();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].1.recipients, vec![a("f@far.test")]);
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_recipients() {
        let mut t = T::new(policy());
        let rcpts: Vec<String> = (0..MAX_BATCH + 5).map(|n| format!("r{n}@far.test")).collect();
        let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        t.s.loaded(100, id(1), file("s@x.test", &refs));
        t.dispatch(100);
        let sizes: Vec<usize> = t.starts().iter().map(|(_, r)| r.recipients.len()).collect();
        assert_eq!(sizes, vec![MAX_BATCH, 5]);
    }

    #[test]
    fn retries_follow_the_schedule_and_marks_come_first() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("s@x.test", &["u@mx.test", "v@mx.test"]));
        t.dispatch(100);
        let s = t.starts();
        t.answer(100, Chan::Local, s[0].1.slot, vec![ok()]);
        t.answer(100, Chan::Local, s[1].1.slot, vec![later()]);
        assert_eq!(t.actions(), vec![Action::Mark { id: id(1), recipients: vec![0] }]);
        assert_eq!(t.s.next_due(), Some(next_retry(100, 100, 10)));
        assert_eq!(next_retry(100, 100, 10), 200);
        t.dispatch(199);
        assert!(t.starts().is_empty(), "not due yet");
        t.dispatch(200);
        let s = t.starts();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].1.recipients, vec![a("v@mx.test")], "only the one not done");
        t.answer(200, Chan::Local, s[0].1.slot, vec![ok()]);
        assert_eq!(t.actions(), vec![Action::Retire { id: id(1) }]);
        assert_eq!(t.s.queued(), 0);
    }

    #[test]
    fn retry_schedule_grows_quadratically() {
        assert_eq!(next_retry(1000, 1000, 10), 1100);
        assert_eq!(next_retry(1000, 1100, 10), 1400);
        assert_eq!(next_retry(1000, 1399, 10), 1400);
        assert_eq!(next_retry(1000, 1400, 10), 1900);
        assert_eq!(next_retry(1000, 1000, 20), 1400);
    }

    #[test]
    fn a_remote_recipient_slows_the_whole_message_s_retries() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("s@x.test", &["u@mx.test", "r@far.test"]));
        t.dispatch(100);
        for (chan, r) in t.starts() {
            t.answer(100, chan, r.slot, vec![later()]);
        }
        assert_eq!(t.s.next_due(), Some(next_retry(100, 100, 20)));
    }

    #[test]
    fn notify_decides_who_is_reported() {
        use crate::queue::dsnparams::Notify;
        let mut t = T::new(policy());
        let mut f = file("s@x.test", &["quiet@mx.test", "loud@mx.test", "glad@mx.test", "far@y.test"]);
        let n = |s: &str| RcptDsn { notify: Notify::parse(s), orcpt: None };
        f.rcpt_dsn = vec![n("NEVER"), RcptDsn { orcpt: Some("rfc822;L@x".into()), ..n("FAILURE,DELAY") }, n("SUCCESS"), n("SUCCESS")];
        t.s.loaded(100, id(1), f);
        t.dispatch(100);
        // Answer each request as it starts (two local slots): the others' actions are kept.
        let mut actions = Vec::new();
        let mut pending: Vec<(Chan, Request)> = Vec::new();
        loop {
            for a in t.actions() {
                match a {
                    Action::Start { chan, request } => pending.push((chan, request)),
                    other => actions.push(other),
                }
            }
            let Some((chan, r)) = pending.pop() else { break };
            let outcome = if matches!(r.recipients[0].local(), "glad" | "far") { ok() } else { never() };
            t.answer(101, chan, r.slot, vec![outcome]);
        }
        let [Action::Bounce(b)] = actions.as_slice() else { panic!("{actions:?}") };
        let got: Vec<(&str, DsnAction, Option<&str>)> =
            b.failures.iter().map(|f| (f.recipient.as_str(), f.action, f.orcpt.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                ("loud@mx.test", DsnAction::Failed, Some("rfc822;L@x")),
                ("glad@mx.test", DsnAction::Delivered, None),
                ("far@y.test", DsnAction::Relayed, None)
            ]
        );
        assert!(t.log.iter().any(|l| l.contains("no failure notice for <quiet@mx.test> (NOTIFY=NEVER)")), "{:?}", t.log);
        t.s.bounced(101, &id(1), Ok(()));
        assert_eq!(t.actions(), vec![Action::Retire { id: id(1) }]);
        // A bounce (null sender) gets no success notice.
        let mut f = file("", &["glad@mx.test"]);
        f.rcpt_dsn = vec![n("SUCCESS")];
        t.s.loaded(200, id(2), f);
        t.dispatch(200);
        let s = t.starts();
        t.answer(201, Chan::Local, s[0].1.slot, vec![ok()]);
        assert_eq!(t.actions(), vec![Action::Retire { id: id(2) }]);
    }

    #[test]
    fn permanent_failures_bounce_to_the_sender_and_are_done_only_once_queued() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("s@x.test", &["u@mx.test", "nobody@mx.test"]));
        t.dispatch(100);
        let s = t.starts();
        t.answer(101, Chan::Local, s[0].1.slot, vec![ok()]);
        t.answer(101, Chan::Local, s[1].1.slot, vec![never()]);
        let failure = Failure::failed(a("nobody@mx.test"), Status::NO_MAILBOX, "no such user".into());
        let bounce = Bounce { id: id(1), to: a("s@x.test"), from: Address::null(), birth: 100, failures: vec![failure] };
        assert_eq!(t.actions(), vec![Action::Bounce(bounce)]);
        t.s.bounced(101, &id(1), Err("disk full".into()));
        assert_eq!(t.actions(), vec![Action::Mark { id: id(1), recipients: vec![0] }], "the failed one waits for the next try");
        assert!(t.log.iter().any(|l| l.contains("cannot queue the bounce for 100.1: disk full")));
        let due = t.s.next_due().unwrap();
        t.dispatch(due);
        let s = t.starts();
        assert_eq!(s[0].1.recipients, vec![a("nobody@mx.test")]);
        t.answer(due, Chan::Local, s[0].1.slot, vec![never()]);
        assert!(matches!(t.actions().as_slice(), [Action::Bounce(_)]));
        t.s.bounced(due, &id(1), Ok(()));
        assert_eq!(t.actions(), vec![Action::Retire { id: id(1) }]);
    }

    #[test]
    fn temporary_failures_bounce_after_the_queue_lifetime() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("s@x.test", &["u@mx.test"]));
        t.dispatch(100);
        let s = t.starts();
        t.answer(1099, Chan::Local, s[0].1.slot, vec![later()]);
        assert!(t.actions().is_empty(), "still within queuelifetime");
        let due = t.s.next_due().unwrap();
        assert!(due >= 1100);
        t.dispatch(due);
        let s = t.starts();
        t.answer(due, Chan::Local, s[0].1.slot, vec![later()]);
        let actions = t.actions();
        let [Action::Bounce(b)] = actions.as_slice() else { panic!("a bounce: {actions:?}") };
        assert_eq!(b.failures[0].status, Status::MAILBOX_FULL);
        assert!(b.failures[0].text.contains("gave up: in the queue longer than queuelifetime, 1000 s"), "{}", b.failures[0].text);
    }

    #[test]
    fn bounces_of_bounces_go_to_doublebounceto_and_no_further() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("", &["ghost@mx.test"]));
        t.s.loaded(100, id(2), file("#@[]", &["ghost@mx.test"]));
        t.dispatch(100);
        for (chan, r) in t.starts() {
            t.answer(100, chan, r.slot, vec![never()]);
        }
        let actions = t.actions();
        let [Action::Bounce(b), Action::Retire { id: retired }] = actions.as_slice() else { panic!("{actions:?}") };
        assert_eq!((b.id.clone(), b.to.as_str(), b.from.as_str()), (id(1), "postmaster@mx.test", "#@[]"));
        assert_eq!(*retired, id(2), "a triple bounce is discarded");
        assert!(t.log.iter().any(|l| l == "triple bounce 100.2: discarded"), "{:?}", t.log);
        // No doublebounceto: a double bounce is discarded too.
        let mut t = T::new(Policy { doublebounce: None, ..policy() });
        t.s.loaded(100, id(3), file("", &["ghost@mx.test"]));
        t.dispatch(100);
        let s = t.starts();
        t.answer(100, Chan::Local, s[0].1.slot, vec![never()]);
        assert_eq!(t.actions(), vec![Action::Retire { id: id(3) }]);
    }

    #[test]
    fn damaged_files_are_quarantined_and_unreadable_ones_read_again() {
        let mut t = T::new(policy());
        t.s.unreadable(100, id(1), Unreadable::Damaged("no valid trailer".into()));
        assert_eq!(t.actions(), vec![Action::Quarantine { id: id(1), why: "no valid trailer".into() }]);
        t.s.unreadable(100, id(2), Unreadable::Temporary("Too many open files".into()));
        assert!(t.actions().is_empty(), "never quarantined for a temporary error");
        assert_eq!(t.s.next_due(), Some(100 + RELOAD_DELAY));
        t.dispatch(100 + RELOAD_DELAY - 1);
        assert!(t.actions().is_empty());
        t.dispatch(100 + RELOAD_DELAY);
        assert_eq!(t.actions(), vec![Action::Load { id: id(2) }]);
        t.s.unreadable(200, id(3), Unreadable::Gone);
        assert!(t.actions().is_empty());
        // A flush reads the unreadable ones now.
        t.s.unreadable(300, id(4), Unreadable::Temporary("EIO".into()));
        t.s.flush(301);
        t.dispatch(301);
        assert_eq!(t.actions(), vec![Action::Load { id: id(4) }]);
    }

    #[test]
    fn a_request_that_cannot_be_handed_over_defers_and_service_goes_on() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("s@x.test", &["r@far.test"]));
        t.s.loaded(100, id(2), file("s@x.test", &["q@near.test"]));
        t.dispatch(100);
        let s = t.starts();
        assert_eq!(s.len(), 2);
        t.s.start_failed(100, Chan::Remote, s[0].1.slot, "cannot open the queue file".into());
        t.actions();
        assert!(
            t.log.iter().any(|l| l.contains("delivery 100.1 to <r@far.test>: deferral: 4.3.0 cannot open the queue file")),
            "{:?}",
            t.log
        );
        assert!(!t.s.finished());
        assert_eq!(t.s.busy(), 1, "the other request is still in flight");
        assert!(t.s.next_due().is_some(), "the deferred message is scheduled again");
    }

    #[test]
    fn no_remote_spawner_defers_remote_recipients() {
        let mut t = T { s: Scheduler::new(policy(), true, false), log: Vec::new(), info: Vec::new() };
        t.s.loaded(100, id(1), file("s@x.test", &["r@far.test", "u@mx.test"]));
        t.dispatch(100);
        assert_eq!(t.starts().len(), 1, "the local one starts");
        assert!(t.log.iter().any(|l| l.contains("deferral: 4.4.1 no remote delivery program is running")), "{:?}", t.log);
    }

    #[test]
    fn stopping_starts_nothing_and_finishes_when_the_running_ones_answer() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("s@x.test", &["u@mx.test"]));
        t.s.loaded(100, id(2), file("s@x.test", &["v@mx.test"]));
        t.s.loaded(100, id(3), file("s@x.test", &["w@mx.test"]));
        t.dispatch(100);
        let s = t.starts();
        t.s.stop();
        assert!(!t.s.finished());
        t.answer(101, Chan::Local, s[0].1.slot, vec![ok()]);
        assert!(t.starts().is_empty(), "no new request while stopping");
        t.answer(101, Chan::Local, s[1].1.slot, vec![ok()]);
        assert!(t.s.finished());
    }

    #[test]
    fn a_dead_spawner_stops_the_scheduler() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("s@x.test", &["u@mx.test"]));
        t.dispatch(100);
        let s = t.starts();
        t.s.spawner_gone(Chan::Local, s[0].1.slot, "Broken pipe".into());
        t.actions();
        assert!(t.s.finished());
        assert!(t.log.iter().any(|l| l.contains("cannot talk to the local spawner: Broken pipe; stopping")));
    }

    #[test]
    fn lower_limits_apply_to_the_next_requests() {
        let mut t = T::new(policy());
        for n in 0..4 {
            t.s.loaded(100, id(n), file("s@x.test", &["u@mx.test"]));
        }
        t.s.reload_policy(Policy { concurrency_local: 1, ..policy() });
        t.dispatch(100);
        assert_eq!(t.starts().len(), 1);
    }

    #[test]
    fn finished_files_found_at_start_are_retired() {
        let mut t = T::new(policy());
        let mut f = file("s@x.test", &["u@mx.test"]);
        f.recipients[0].1 = true;
        t.s.loaded(100, id(1), f);
        assert_eq!(t.actions(), vec![Action::Retire { id: id(1) }]);
        assert_eq!(t.s.queued(), 0);
    }

    #[test]
    fn hold_waits_for_deliveries_in_progress_and_takes_back_the_rest() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("s@x.test", &["a@mx.test", "b@mx.test", "c@mx.test"]));
        t.dispatch(100);
        let s = t.starts();
        assert_eq!(s.len(), 2, "concurrencylocal 2: c waits for a slot");
        t.s.hold(100, &id(1));
        assert!(t.actions().is_empty(), "nothing held while deliveries run");
        t.answer(101, Chan::Local, s[0].1.slot, vec![ok()]);
        assert!(t.starts().is_empty(), "c was taken back: the free slot stays free");
        t.answer(101, Chan::Local, s[1].1.slot, vec![later()]);
        assert_eq!(t.actions(), vec![Action::Mark { id: id(1), recipients: vec![0] }, Action::Hold { id: id(1) }]);
        assert_eq!(t.s.queued(), 0);
        t.dispatch(100_000);
        assert!(t.starts().is_empty(), "a held message is never tried");
        // An idle message is held at once.
        t.s.loaded(200, id(2), file("s@x.test", &["a@mx.test"]));
        t.s.hold(200, &id(2));
        assert_eq!(t.actions(), vec![Action::Hold { id: id(2) }]);
        t.s.hold(200, &id(3));
        t.actions();
        assert!(t.log.last().unwrap().contains("no such message"));
    }

    #[test]
    fn delete_silently_or_with_a_bounce_of_the_pending_recipients() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("s@x.test", &["a@mx.test"]));
        t.s.delete(100, &id(1), false);
        assert_eq!(t.actions(), vec![Action::Retire { id: id(1) }]);
        t.s.loaded(100, id(2), file("s@x.test", &["a@mx.test", "b@mx.test"]));
        t.dispatch(100);
        let s = t.starts();
        t.answer(101, Chan::Local, s[0].1.slot, vec![ok()]);
        t.answer(101, Chan::Local, s[1].1.slot, vec![later()]);
        t.actions();
        t.s.delete(102, &id(2), true);
        let bounce = match t.actions().as_slice() {
            [Action::Bounce(b)] => b.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(bounce.to, a("s@x.test"));
        assert_eq!(bounce.failures.len(), 1, "only the pending one: {bounce:?}");
        assert_eq!(bounce.failures[0].recipient, a("b@mx.test"));
        assert_eq!(bounce.failures[0].status, Status::new(5, 0, 0));
        t.s.bounced(102, &id(2), Ok(()));
        assert_eq!(t.actions(), vec![Action::Retire { id: id(2) }]);
    }

    #[test]
    fn requeue_makes_one_message_due_and_attempts_are_recorded() {
        let mut t = T::new(policy());
        t.s.loaded(100, id(1), file("s@x.test", &["a@mx.test"]));
        t.dispatch(100);
        let s = t.starts();
        t.answer(100, Chan::Local, s[0].1.slot, vec![later()]);
        t.actions();
        let (rid, tried) = t.info.last().unwrap().clone();
        assert_eq!(rid, id(1));
        assert_eq!((tried[0].index, tried[0].attempts, tried[0].status.as_str()), (0, 1, "4.2.2"));
        assert_eq!(tried[0].next_try, t.s.next_due().unwrap());
        assert!(tried[0].next_try > 101);
        t.dispatch(101);
        assert!(t.starts().is_empty());
        t.s.requeue(101, &id(1));
        t.dispatch(101);
        let s = t.starts();
        assert_eq!(s.len(), 1);
        t.answer(102, Chan::Local, s[0].1.slot, vec![later()]);
        t.actions();
        assert_eq!(t.info.last().unwrap().1[0].attempts, 2);
    }
}
