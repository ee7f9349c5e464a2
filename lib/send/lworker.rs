//! Resident local delivery workers (postern-lspawn).
//!
//! A fork per delivery costs about as much CPU as the delivery itself on the
//! test machines (the copy of the page tables, the page faults after it, the
//! exit). So lspawn keeps, per recipient uid and gid, forked children that
//! have become that user and take further deliveries for those ids only:
//! all virtual mailboxes share one uid, so under steady traffic most
//! deliveries cost no fork.
//!
//! - A worker serves one delivery at a time, and only for the ids it became;
//!   lspawn forks another when every worker of those ids is busy.
//! - lspawn talks to each worker over its own sequenced-packet socket: a `Job`
//!   (what `local::run` needs besides the message) with two descriptors, the
//!   queue file and the write end of the answer pipe (the delivery's fds 1
//!   and 2, as a forked child has them). The worker copies the message out of
//!   the queue file and closes it before anything the recipient controls runs,
//!   delivers, puts /dev/null back on fds 1 and 2 (so the pipe reaches its end)
//!   and answers with its exit code, 4 bytes.
//! - A worker leaves when lspawn closes its socket: idle for `IDLE`, more than
//!   `MAX_IDLE` idle workers, or lspawn stopping. lspawn decides, so a job
//!   never meets a worker on its way out.
//! - A worker that dies with a delivery in flight ends that delivery as a
//!   forked child's death would: a temporary failure, retried by postern-send;
//!   the recipient is marked done only after an exit code 0 arrived.
//! - A worker holds no other worker's socket (closed in the child at the
//!   fork), so each can reach only lspawn, and it stays non-dumpable for its
//!   whole life (it changed uid), as a forked delivery was.

use crate::deliver::local::Params;
use crate::os::home::Home;
use crate::os::sys::ChildFds;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// A worker with nothing to do leaves after this long.
pub const IDLE: Duration = Duration::from_secs(5);
/// At most this many idle workers are kept (over all uids); the longest idle
/// leave first.
pub const MAX_IDLE: usize = 64;
/// Largest job message: the fields are a few paths and addresses.
const MAX_JOB: usize = 64 * 1024;

/// One delivery for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub params: Params,
    /// The message is the queue file's first `size` bytes.
    pub size: u64,
    /// The queue id, for error texts.
    pub id: String,
}

/// Each field as a 4-byte big-endian length and its bytes.
pub fn encode_job(j: &Job) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let p = &j.params;
    let size = j.size.to_string();
    let alias: &[u8] = if p.alias { b"1" } else { b"0" };
    let fields: [&[u8]; 11] = [
        p.user.as_bytes(),
        p.homedir.as_os_str().as_bytes(),
        p.local.as_bytes(),
        p.dash.as_bytes(),
        p.ext.as_bytes(),
        p.domain.as_bytes(),
        p.sender.as_bytes(),
        p.default_delivery.as_bytes(),
        size.as_bytes(),
        j.id.as_bytes(),
        alias,
    ];
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// The inverse of `encode_job`; None for anything else (a whole message is
/// always at hand: the socket keeps message boundaries).
pub fn parse_job(mut b: &[u8]) -> Option<Job> {
    use std::os::unix::ffi::OsStrExt;
    let mut fields: Vec<&[u8]> = Vec::with_capacity(11);
    while !b.is_empty() {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        fields.push(b.get(4..4 + len)?);
        b = &b[4 + len..];
    }
    let [user, home, local, dash, ext, domain, sender, dd, size, id, alias] = fields.as_slice() else {
        return None;
    };
    let s = |f: &[u8]| String::from_utf8(f.to_vec()).ok();
    Some(Job {
        params: Params {
            user: s(user)?,
            homedir: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(home)),
            local: s(local)?,
            dash: s(dash)?,
            ext: s(ext)?,
            domain: s(domain)?,
            sender: s(sender)?,
            default_delivery: s(dd)?,
            alias: match *alias {
                b"1" => true,
                b"0" => false,
                _ => return None,
            },
        },
        size: s(size)?.parse().ok()?,
        id: s(id)?,
    })
}

struct Worker {
    pid: Pid,
    sock: OwnedFd,
    ids: (u32, u32),
    busy: bool,
    since: Instant,
}

/// lspawn's workers.
#[derive(Default)]
pub struct Pool {
    workers: Vec<Worker>,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// Hand `job` to an idle worker of `ids`, or to a new one, forked and made
    /// the user by `become_user` before it takes any job. Returns the pid that
    /// stands for this delivery until `finished` or `exited` reports it.
    pub fn run(
        &mut self,
        home: &Home,
        ids: (u32, u32),
        job: &Job,
        file: OwnedFd,
        out: OwnedFd,
        become_user: impl FnOnce() -> Result<(), String> + 'static,
    ) -> io::Result<Pid> {
        let msg = encode_job(job);
        if msg.len() > MAX_JOB {
            return Err(io::Error::other(format!("delivery parameters of {} bytes, over {MAX_JOB}", msg.len())));
        }
        let fds = [file.as_fd(), out.as_fd()];
        while let Some(i) = self.workers.iter().position(|w| !w.busy && w.ids == ids) {
            match crate::os::sys::send_with_fds(&self.workers[i].sock, &msg, &fds) {
                Ok(()) => {
                    self.workers[i].busy = true;
                    return Ok(self.workers[i].pid);
                }
                // Gone without our leave (killed): its exit is reaped later.
                Err(_) => {
                    self.workers.swap_remove(i);
                }
            }
        }
        let w = self.fork(home, ids, &fds, become_user)?;
        crate::os::sys::send_with_fds(&w.sock, &msg, &fds)?;
        let pid = w.pid;
        self.workers.push(Worker { busy: true, ..w });
        Ok(pid)
    }

    fn fork(
        &self,
        home: &Home,
        ids: (u32, u32),
        job_fds: &[BorrowedFd<'_>],
        become_user: impl FnOnce() -> Result<(), String> + 'static,
    ) -> io::Result<Worker> {
        let (ours, theirs) = crate::os::sys::seqpacket_pair()?;
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        // The worker's socket on fd 0, /dev/null on 1 and 2 between jobs; it
        // must hold neither our end of its socket (it would never see its end)
        // nor any other worker's (it could talk to that worker as lspawn),
        // nor its first job's descriptors (they come again with the job: a
        // copy kept would hold the answer pipe open for the worker's life).
        let mut fds = ChildFds::new().put(theirs, &[0]).put(null, &[1, 2]).close(&ours);
        for w in &self.workers {
            fds = fds.close(&w.sock);
        }
        for f in job_fds {
            fds = fds.close(f);
        }
        let home = home.clone();
        let pid = crate::os::sys::fork_run(fds, move || {
            crate::os::sys::set_process_name(c"postern-local");
            serve(&home, become_user().err())
        })?;
        crate::os::sys::set_nonblocking(&ours, true)?;
        Ok(Worker { pid, sock: ours, ids, busy: false, since: Instant::now() })
    }

    /// The sockets of busy workers, to poll for their answers.
    pub fn busy_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.workers.iter().filter(|w| w.busy).map(|w| w.sock.as_fd()).collect()
    }

    /// Deliveries that ended since the last call: (worker pid, exit code).
    pub fn finished(&mut self) -> Vec<(Pid, i32)> {
        let mut out = Vec::new();
        for w in self.workers.iter_mut().filter(|w| w.busy) {
            if let Some(code) = read_code(&w.sock) {
                w.busy = false;
                w.since = Instant::now();
                out.push((w.pid, code));
            }
        }
        out
    }

    /// A child was reaped: if it was a worker, forget it. A delivery that had
    /// answered before the worker died keeps that answer; one that had not
    /// ends with the worker's own status (a temporary failure unless exit 0
    /// or 100, which a worker only exits with between jobs).
    pub fn exited(&mut self, pid: Pid, status: WaitStatus) -> WaitStatus {
        let Some(i) = self.workers.iter().position(|w| w.pid == pid) else {
            return status;
        };
        let w = self.workers.swap_remove(i);
        match (w.busy, read_code(&w.sock)) {
            (true, Some(code)) => WaitStatus::Exited(pid, code),
            (true, None) => match status {
                // A worker ends with 0 only when told to leave, never mid-job.
                WaitStatus::Exited(p, 0 | 100) => WaitStatus::Exited(p, crate::error::EXIT_TEMP),
                s => s,
            },
            (false, _) => status,
        }
    }

    /// When the next idle worker is due to leave.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.workers.iter().filter(|w| !w.busy).map(|w| w.since + IDLE).min()
    }

    /// Tell workers idle too long, or beyond `MAX_IDLE`, to leave (closing
    /// their socket: they see its end and exit 0; the exit is reaped as any).
    pub fn retire_idle(&mut self, now: Instant) {
        let mut idle: Vec<(Instant, Pid)> = self.workers.iter().filter(|w| !w.busy).map(|w| (w.since, w.pid)).collect();
        idle.sort();
        let extra = idle.len().saturating_sub(MAX_IDLE);
        let leave: Vec<Pid> =
            idle.iter().enumerate().filter(|(k, (since, _))| *k < extra || now >= *since + IDLE).map(|(_, (_, p))| *p).collect();
        self.workers.retain(|w| !leave.contains(&w.pid));
    }

    /// lspawn stops: every worker is told to leave (the busy ones finish
    /// their delivery first) and waited for.
    pub fn close_all(&mut self) {
        for w in self.workers.drain(..) {
            drop(w.sock);
            let _ = nix::sys::wait::waitpid(w.pid, None);
        }
    }
}

/// A worker's answer, if one is waiting: its exit code, 4 bytes.
fn read_code(sock: &OwnedFd) -> Option<i32> {
    let mut b = [0u8; 4];
    match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(sock), &mut b) {
        Ok(4) => Some(i32::from_be_bytes(b)),
        _ => None,
    }
}

/// The worker: take jobs from the socket on fd 0 until lspawn closes it. A
/// worker that could not become the user (`unusable`) says why as the answer
/// to its first job and leaves.
fn serve(home: &Home, unusable: Option<String>) -> i32 {
    let Ok(sock) = crate::os::sys::take_fd(0) else {
        return crate::error::EXIT_TEMP;
    };
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return crate::error::EXIT_TEMP;
    };
    let mut buf = vec![0u8; MAX_JOB];
    loop {
        let mut files = VecDeque::new();
        let n = match crate::os::sys::recv_with_fds(&sock, &mut buf, &mut files) {
            Ok(0) => return crate::error::EXIT_OK,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return crate::error::EXIT_TEMP,
        };
        // Anything but a whole job with its two descriptors: lspawn is not
        // talking to us as it should; leave, and the delivery is retried.
        let (Some(job), Some(queue_file), Some(out)) = (parse_job(&buf[..n]), files.pop_front(), files.pop_front()) else {
            return crate::error::EXIT_TEMP;
        };
        drop(files);
        if crate::os::sys::put_stdio(&out, &[1, 2]).is_err() {
            return crate::error::EXIT_TEMP;
        }
        drop(out);
        if let Some(e) = &unusable {
            crate::deliver::local::say(&format!("{} {e}", crate::status::Status::MAIL_SYSTEM));
            let _ = nix::unistd::write(&sock, &crate::error::EXIT_TEMP.to_be_bytes());
            return crate::error::EXIT_TEMP;
        }
        // As a forked delivery: the message copied out and the queue file
        // closed before the recipient's instructions are read.
        let code = match crate::message::file::copy_prefix(&File::from(queue_file), job.size) {
            Ok(message) => crate::deliver::local::run(home, &job.params, message),
            Err(e) => {
                crate::deliver::local::say(&format!("{} cannot copy message {}: {e}", crate::status::Status::MAIL_SYSTEM, job.id));
                crate::error::EXIT_TEMP
            }
        };
        if crate::os::sys::put_stdio(&null, &[1, 2]).is_err() {
            return crate::error::EXIT_TEMP;
        }
        if nix::unistd::write(&sock, &code.to_be_bytes()) != Ok(4) {
            return crate::error::EXIT_OK;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            params: Params {
                user: "u".into(),
                homedir: "/var/postern/mail/x.test/u".into(),
                local: "u".into(),
                dash: "".into(),
                ext: "".into(),
                domain: "x.test".into(),
                sender: "a@b.test".into(),
                default_delivery: "./Maildir/\n|echo hi".into(),
                alias: true,
            },
            size: 2048,
            id: "1796079288.874324.30475".into(),
        }
    }

    #[test]
    fn jobs_round_trip_and_damage_is_refused() {
        let j = job();
        let b = encode_job(&j);
        assert_eq!(parse_job(&b), Some(j));
        for cut in 0..b.len() {
            assert_eq!(parse_job(&b[..cut]), None, "cut at {cut}");
        }
        let mut extra = b.clone();
        extra.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(parse_job(&extra), None);
    }
}
