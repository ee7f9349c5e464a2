//! Resident workers for the spawners (postern-lspawn's local deliveries,
//! `lworker`; postern-rspawn's remote ones, `rworker`).
//!
//! A fork per delivery costs about as much CPU as the delivery itself on the
//! test machines (the copy of the page tables, the page faults after it, the
//! exit; an exec adds the program's start). So a spawner keeps forked children
//! that take further deliveries of one key (lspawn: a recipient uid and gid;
//! rspawn: a destination domain).
//!
//! - A worker serves one delivery at a time, and only for its key; the
//!   spawner forks another when every worker of that key is busy.
//! - The spawner talks to each worker over its own sequenced-packet socket: a
//!   job (bytes the worker's kind defines) with two descriptors, the queue
//!   file and the write end of the answer pipe (a local delivery's fds 1 and
//!   2, as a forked child has them; a remote one's fd 1). The worker
//!   delivers, puts /dev/null back in the pipe's place (so the pipe reaches
//!   its end) and answers with its exit code, 4 bytes.
//! - A worker leaves when the spawner closes its socket: idle for `IDLE`,
//!   more than `MAX_IDLE` idle workers, or the spawner stopping. The spawner
//!   decides, so a job never meets a worker on its way out.
//! - A worker that dies with a delivery in flight ends that delivery as a
//!   forked child's death would: a temporary failure, retried by postern-send;
//!   the recipient is marked done only after an exit code 0 arrived.
//! - A worker holds no other worker's socket (closed in the child at the
//!   fork), so each can reach only its spawner.

use crate::error::EXIT_TEMP;
use crate::os::sys::ChildFds;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A worker with nothing to do leaves after this long.
pub const IDLE: Duration = Duration::from_secs(5);
/// At most this many idle workers are kept (over all keys); the longest idle
/// leave first.
pub const MAX_IDLE: usize = 64;
/// Largest job: a few paths and addresses (rspawn's: up to
/// `spawn::MAX_BATCH` recipients), well under a socket's send buffer.
pub const MAX_JOB: usize = 256 * 1024;

struct Worker<K> {
    pid: Pid,
    sock: OwnedFd,
    key: K,
    busy: bool,
    since: Instant,
}

/// A spawner's workers, each serving jobs of one key only.
pub struct Pool<K> {
    workers: Vec<Worker<K>>,
    /// Where a worker has a job's answer pipe: local deliveries on fds 1 and
    /// 2 (a program delivery's errors are its report), remote ones on fd 1
    /// only (fd 2 stays the spawner's log).
    answer: &'static [RawFd],
}

impl<K: PartialEq + Clone> Pool<K> {
    pub fn new(answer: &'static [RawFd]) -> Pool<K> {
        Pool { workers: Vec::new(), answer }
    }

    /// Hand `job` (its bytes, the queue file, the answer pipe) to an idle
    /// worker of `key`, or to a new one, forked to run `main` (which serves
    /// jobs with `serve`). Returns the pid that stands for this delivery until
    /// `finished` or `exited` reports it.
    pub fn run(&mut self, key: &K, job: &[u8], file: OwnedFd, out: OwnedFd, main: impl FnOnce() -> i32 + 'static) -> io::Result<Pid> {
        if job.len() > MAX_JOB {
            return Err(io::Error::other(format!("delivery parameters of {} bytes, over {MAX_JOB}", job.len())));
        }
        let fds = [file.as_fd(), out.as_fd()];
        while let Some(i) = self.workers.iter().position(|w| !w.busy && w.key == *key) {
            match crate::os::sys::send_with_fds(&self.workers[i].sock, job, &fds) {
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
        let w = self.fork(key, &fds, main)?;
        crate::os::sys::send_with_fds(&w.sock, job, &fds)?;
        let pid = w.pid;
        self.workers.push(Worker { busy: true, ..w });
        Ok(pid)
    }

    fn fork(&self, key: &K, job_fds: &[BorrowedFd<'_>], main: impl FnOnce() -> i32 + 'static) -> io::Result<Worker<K>> {
        let (ours, theirs) = crate::os::sys::seqpacket_pair()?;
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        // The worker's socket on fd 0, /dev/null where answers go between jobs; it
        // must hold neither our end of its socket (it would never see its end)
        // nor any other worker's (it could talk to that worker as the spawner),
        // nor its first job's descriptors (they come again with the job: a
        // copy kept would hold the answer pipe open for the worker's life).
        let mut fds = ChildFds::new().put(theirs, &[0]).put(null, self.answer).close(&ours);
        for w in &self.workers {
            fds = fds.close(&w.sock);
        }
        for f in job_fds {
            fds = fds.close(f);
        }
        let pid = crate::os::sys::fork_run(fds, main)?;
        crate::os::sys::set_nonblocking(&ours, true)?;
        Ok(Worker { pid, sock: ours, key: key.clone(), busy: false, since: Instant::now() })
    }
}

impl<K: PartialEq + Clone> crate::send::spawner::Workers for Pool<K> {
    /// The sockets of busy workers, to poll for their answers.
    fn busy_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.workers.iter().filter(|w| w.busy).map(|w| w.sock.as_fd()).collect()
    }

    /// Deliveries that ended since the last call: (worker pid, exit code).
    fn finished(&mut self) -> Vec<(Pid, i32)> {
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
    fn exited(&mut self, pid: Pid, status: WaitStatus) -> WaitStatus {
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
    fn next_deadline(&self) -> Option<Instant> {
        self.workers.iter().filter(|w| !w.busy).map(|w| w.since + IDLE).min()
    }

    /// Tell workers idle too long, or beyond `MAX_IDLE`, to leave (closing
    /// their socket: they see its end and exit 0; the exit is reaped as any).
    fn retire_idle(&mut self, now: Instant) {
        let mut idle: Vec<(Instant, Pid)> = self.workers.iter().filter(|w| !w.busy).map(|w| (w.since, w.pid)).collect();
        idle.sort();
        let extra = idle.len().saturating_sub(MAX_IDLE);
        let leave: Vec<Pid> =
            idle.iter().enumerate().filter(|(k, (since, _))| *k < extra || now >= *since + IDLE).map(|(_, (_, p))| *p).collect();
        self.workers.retain(|w| !leave.contains(&w.pid));
    }

    /// The spawner stops: every worker is told to leave (the busy ones finish
    /// their delivery first) and waited for.
    fn close_all(&mut self) {
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

/// The worker's loop: jobs from the socket on fd 0 until the spawner closes
/// it. `handle` gets each job's bytes and its queue file, with the job's
/// answer pipe on the `answer` fds (the pool's); Ok(code) is
/// answered and the next job awaited, Err(code) answered and the worker
/// leaves with it (a job out of shape, a worker that cannot serve).
pub fn serve(answer: &[RawFd], mut handle: impl FnMut(&[u8], File) -> Result<i32, i32>) -> i32 {
    let Ok(sock) = crate::os::sys::take_fd(0) else {
        return EXIT_TEMP;
    };
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return EXIT_TEMP;
    };
    let mut buf = vec![0u8; MAX_JOB];
    loop {
        let mut files = VecDeque::new();
        let n = match crate::os::sys::recv_with_fds(&sock, &mut buf, &mut files) {
            Ok(0) => return crate::error::EXIT_OK,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return EXIT_TEMP,
        };
        // Anything but a job with its two descriptors: the spawner is not
        // talking to us as it should; leave, and the delivery is retried.
        let (Some(queue_file), Some(out)) = (files.pop_front(), files.pop_front()) else {
            return EXIT_TEMP;
        };
        drop(files);
        if crate::os::sys::put_stdio(&out, answer).is_err() {
            return EXIT_TEMP;
        }
        drop(out);
        let (code, leave) = match handle(&buf[..n], File::from(queue_file)) {
            Ok(c) => (c, false),
            Err(c) => (c, true),
        };
        // /dev/null back in its place so the answer pipe reaches its end.
        if crate::os::sys::put_stdio(&null, answer).is_err() {
            return EXIT_TEMP;
        }
        if nix::unistd::write(&sock, &code.to_be_bytes()) != Ok(4) || leave {
            return if leave { code } else { crate::error::EXIT_OK };
        }
    }
}
