//! postern-queued: postern-queue's job without a program start per message.
//!
//! Starting postern-queue costs more CPU than writing the message (a setuid
//! exec, the dynamic loader, the runtime), and SMTP pays it once per message.
//! So postern-start also runs postern-queued, as postern-q. It listens on
//! `run/queue/submit` (mode 0666: anyone may queue, as anyone may run the setuid
//! postern-queue), and for each connection forks a worker that takes two
//! descriptors sent with one byte (SCM_RIGHTS), the message and the envelope
//! (the byte is `Q`, `S` to ask for DKIM signing, as POSTERN_DKIM=sign does
//! for postern-queue, or `F` for a forward, as POSTERN_SRS=forward does),
//! and does exactly what postern-queue does with its fd 0 and fd 1
//! (`queue::queue_one`). The worker answers with one byte, postern-queue's exit
//! code, only after the message is durable, followed on success by the new
//! message's queue id (which postern-smtpd puts in its 250 reply), and closes. No answer (a worker
//! killed) is a temporary failure to the client. The Received line names the
//! client's uid, which the kernel gives us (SO_PEERCRED), not the client.
//!
//! A worker that finds one of `POOL` places free stays after its message and
//! takes the next connection itself, until it has been idle for `IDLE` or has
//! written `PER_WORKER` messages: under load most messages then cost no fork
//! either. The daemon keeps accepting and forking too, so a slow client holding a
//! worker never holds up anyone else. (A worker killed by a signal keeps its
//! place until the daemon restarts; the daemon then just forks more.)
//!
//! Local users reach this socket, so a worker does not wait on a client for
//! ever: after the hello, each read of the message or the envelope waits at most
//! `timeoutsubmit` (a client that stalls loses its submission: nothing is
//! queued, it hears exit 52, and the log names its uid). And one uid has at most
//! `concurrencysubmit` submissions unfinished at once (lock files
//! `run/queue/uid/UID.N`, `os::slots`); one more is refused at once with exit 77.
//! root and postern's own users (smtpd's postern-d, postern-send's postern-s,
//! ...) are not counted: their clients have limits of their own. For them the
//! deadline is for the time without progress, because postern-smtpd streams a
//! message into the worker as slowly as its client sends it (smtpd has its own
//! deadline for a whole message, `timeoutsmtpddata`); for everyone else it is for
//! the whole rest of the submission, so a trickle of a byte now and then does
//! not hold a worker either.
//!
//! Two more requests, a byte without descriptors, serve users who may not read
//! the queue: `L` answers the listing (`mailq`, `sendmail -bp`: envelopes,
//! states and last results, never contents), and `K` asks postern-send to retry
//! everything now (`sendmail -q`), at most once a minute for uids that are not
//! exempt (the time of the last one is the mtime of `run/queue/kicked`); the
//! answer is a line of text, starting with `ok` when the retry was asked.
//!
//! Clients (`queue::Submission`) use the socket when it answers and neither
//! POSTERN_QUEUE nor QMAILQUEUE is set; otherwise they run the queue program,
//! so nothing depends on this daemon being up.

use super::store::{queue_one, DEATH_SECONDS};
use super::submit::{daemon_socket, exit, Ask};
use crate::config::control::Control;
use crate::config::settings::{CONCURRENCYSUBMIT, TIMEOUTSUBMIT};
use crate::os::home::Home;
use crate::os::sys::ChildFds;
use std::cell::Cell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

const PROGRAM: &str = "postern-queued";
/// A client that connects and sends nothing is dropped after this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);
/// Workers that stay for more messages.
const POOL: u32 = 8;
/// How long a staying worker waits for a connection before it leaves; also how
/// often the daemon's own accept wakes up (the timeout is the socket's).
const IDLE: Duration = Duration::from_secs(10);
/// Messages a staying worker writes before it leaves (and a fresh one takes over).
const PER_WORKER: u32 = 10_000;

/// What a worker allows a client (read at start).
#[derive(Clone, Debug)]
struct Policy {
    /// The longest wait for more of a submission (`timeoutsubmit`).
    timeout: Duration,
    /// Unfinished submissions per uid (`concurrencysubmit`; 0: no limit).
    per_uid: u32,
    /// Uids not counted: root, ours, postern's service users.
    exempt: Vec<u32>,
}

impl Policy {
    fn read(home: &Home) -> Policy {
        let c = Control::new(home);
        let timeout = c.seconds_or_default(&TIMEOUTSUBMIT, |m| crate::os::log::line(PROGRAM, m));
        let per_uid = c.number_or_default(&CONCURRENCYSUBMIT, |m| crate::os::log::line(PROGRAM, m));
        let mut exempt = vec![0, crate::os::sys::effective_uid()];
        exempt.extend(crate::os::privs::Service::ALL.iter().filter_map(|s| s.ids().ok()).map(|(uid, _)| uid));
        Policy { timeout, per_uid: per_uid.min(u32::MAX as u64) as u32, exempt }
    }
}

/// Accept and fork, forever. Single-threaded, as `sys::fork_run` requires.
pub fn serve(home: &Home, listener: UnixListener) -> io::Result<()> {
    // It lives as long as the process, and every worker accepts on it too.
    let listener: &'static UnixListener = Box::leak(Box::new(listener));
    let policy = Policy::read(home);
    crate::os::sys::reap_children_automatically()?;
    crate::os::sys::unlink_on_term(&daemon_socket(home))?;
    let places = crate::os::sys::SharedCounter::new()?;
    set_accept_timeout(listener, IDLE)?;
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                // Out of descriptors or memory: say so, and let load drain.
                crate::os::log::line(PROGRAM, &format!("accept: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let home = home.clone();
        let policy = policy.clone();
        let forked = crate::os::sys::fork_run(ChildFds::new(), move || {
            crate::os::sys::set_process_name(c"postern-queue");
            // The daemon's handler would remove the socket: not a worker's job.
            crate::os::sys::default_term_signals();
            work(&home, &policy, stream);
            if places.take(POOL) {
                stay(&home, &policy, listener);
                places.release();
            }
            0
        });
        if let Err(e) = forked {
            crate::os::log::error(PROGRAM, &format!("cannot fork a worker: {e}"));
        }
    }
}

/// A worker with a place: take connections until idle or done.
fn stay(home: &Home, policy: &Policy, listener: &UnixListener) {
    for _ in 1..PER_WORKER {
        match listener.accept() {
            Ok((stream, _)) => work(home, policy, stream),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// The listening socket's receive timeout, which accept(2) obeys; it belongs to
/// the socket, so the daemon and every worker share it.
fn set_accept_timeout(listener: &UnixListener, t: Duration) -> io::Result<()> {
    let tv = nix::sys::time::TimeVal::new(t.as_secs() as _, 0);
    nix::sys::socket::setsockopt(listener, nix::sys::socket::sockopt::ReceiveTimeout, &tv).map_err(io::Error::from)
}

/// How often a uid that is not exempt may ask for a retry of everything.
const KICK_INTERVAL: Duration = Duration::from_secs(60);

/// One request, in a worker.
fn work(home: &Home, policy: &Policy, mut stream: UnixStream) {
    let answer = match receive(&stream) {
        Ok(Ask2::Submit(uid, ask, message, envelope)) => match submission(home, policy, uid, ask, &message, &envelope) {
            Ok(id) => [&[0u8][..], id.as_str().as_bytes()].concat(),
            Err(code) => vec![code as u8],
        },
        Ok(Ask2::List) => {
            let _ = stream.set_write_timeout(Some(policy.timeout));
            match super::listing::queue_listing(home) {
                Ok(items) => super::listing::format_listing(&items).into_bytes(),
                Err(e) => format!("error: {e}\n").into_bytes(),
            }
        }
        Ok(Ask2::Kick(uid)) => kick(home, policy, uid).into_bytes(),
        Err(e) => {
            crate::os::log::warn(PROGRAM, &format!("bad request: {e}"));
            vec![exit::READ as u8]
        }
    };
    let _ = stream.write_all(&answer);
}

/// `K`: ask postern-send for a retry of everything, rate-limited.
fn kick(home: &Home, policy: &Policy, uid: u32) -> String {
    let stamp = daemon_socket(home).with_file_name("kicked");
    let last = std::fs::metadata(&stamp).and_then(|m| m.modified()).ok();
    let recent = last.and_then(|t| t.elapsed().ok()).is_some_and(|age| age < KICK_INTERVAL);
    if recent && !policy.exempt.contains(&uid) {
        return format!("ok: a retry of the queue was asked less than {} s ago; it is under way\n", KICK_INTERVAL.as_secs());
    }
    match super::listing::flush(home) {
        Ok(()) => {
            let _ = std::fs::write(&stamp, b"");
            crate::os::log::line(PROGRAM, &format!("uid {uid} asked for a retry of the queue"));
            "ok: postern-send will retry every deferred delivery now\n".into()
        }
        Err(e) => format!("error: {e}\n"),
    }
}

/// What a client asks for.
enum Ask2 {
    Submit(u32, Ask, File, File),
    List,
    Kick(u32),
}

/// Queue what uid sends on `message` and `envelope`, within the policy: the
/// exit code to answer.
fn submission(home: &Home, policy: &Policy, uid: u32, ask: Ask, message: &File, envelope: &File) -> Result<super::Id, i32> {
    let _place = match (policy.per_uid, policy.exempt.contains(&uid)) {
        (0, _) | (_, true) => None,
        (n, false) => {
            let slots = crate::os::slots::Slots { dir: daemon_socket(home).with_file_name("uid"), prefix: uid.to_string(), n };
            match slots.take() {
                Ok(Some(place)) => Some(place),
                Ok(None) => {
                    crate::os::log::line(
                        PROGRAM,
                        &format!("uid {uid} has {n} submissions unfinished already: one more refused for now (concurrencysubmit)"),
                    );
                    return Err(exit::BUSY);
                }
                Err(e) => {
                    crate::os::log::error(PROGRAM, &format!("cannot count the submissions of uid {uid}: {e}"));
                    return Err(exit::QUEUE_DIR);
                }
            }
        }
    };
    let stalled = Cell::new(false);
    let until = (!policy.exempt.contains(&uid)).then(|| Instant::now() + policy.timeout);
    let mut message = Patient { file: message, what: "message", uid, timeout: policy.timeout, until, stalled: &stalled };
    let mut envelope = Patient { file: envelope, what: "envelope", uid, timeout: policy.timeout, until, stalled: &stalled };
    nix::unistd::alarm::set(DEATH_SECONDS);
    // A read that timed out ends the write like any read error: the file in
    // queue/tmp is removed and nothing is queued (queue_one logs it, uid and all).
    let code = queue_one(home, &mut message, &mut envelope, uid, ask);
    nix::unistd::alarm::cancel();
    if stalled.get() {
        Err(exit::TIMEOUT)
    } else {
        code
    }
}

/// A descriptor from a client, read with at most `timeout` of waiting for each
/// piece and, when `until` is set, nothing after it (the client may have made
/// it non-blocking: that is waited out too).
struct Patient<'a> {
    file: &'a File,
    what: &'static str,
    uid: u32,
    timeout: Duration,
    until: Option<Instant>,
    stalled: &'a Cell<bool>,
}

impl Read for Patient<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let wait = match self.until {
                Some(t) => self.timeout.min(t.saturating_duration_since(Instant::now())),
                None => self.timeout,
            };
            let ms = PollTimeout::try_from(wait.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) => {
                    self.stalled.set(true);
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        match self.until {
                            Some(_) => format!(
                                "uid {} did not finish the {} within {} s (timeoutsubmit); dropped",
                                self.uid,
                                self.what,
                                self.timeout.as_secs()
                            ),
                            None => format!(
                                "uid {} sent nothing more of the {} for {} s (timeoutsubmit); dropped",
                                self.uid,
                                self.what,
                                self.timeout.as_secs()
                            ),
                        },
                    ));
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            match (&mut &*self.file).read(buf) {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
                r => return r,
            }
        }
    }
}

/// Who asked, what, and the two descriptors of a submission.
fn receive(stream: &UnixStream) -> io::Result<Ask2> {
    let uid = crate::os::sys::peer_uid(stream)?;
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let mut fds = VecDeque::new();
    let mut byte = [0u8; 1];
    let n = crate::os::sys::recv_with_fds(stream, &mut byte, &mut fds)?;
    match (n, byte[0], fds.pop_front(), fds.pop_front(), fds.is_empty()) {
        (1, b, Some(m), Some(e), true) if Ask::from_byte(b).is_some() => {
            Ok(Ask2::Submit(uid, Ask::from_byte(b).unwrap_or(Ask::Plain), File::from(m), File::from(e)))
        }
        (1, b'L', None, None, true) => Ok(Ask2::List),
        (1, b'K', None, None, true) => Ok(Ask2::Kick(uid)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("uid {uid}: expected one byte 'Q', 'S' or 'F' with two descriptors, or 'L' or 'K' alone"),
        )),
    }
}

/// Bind the socket: a stale one from an earlier run is replaced.
pub fn bind(home: &Home) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = daemon_socket(home);
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    Ok(l)
}
