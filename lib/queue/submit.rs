//! The client side of the queue: handing a message to postern-queued's socket or
//! to the queue program (postern-queue, or $POSTERN_QUEUE / $QMAILQUEUE so qmail
//! filters wrap it unchanged), and qmail-queue's exit codes.

use super::format::Envelope;
use crate::error::{Classify, Kind};
use crate::os::home::Home;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

pub mod exit {
    pub const ADDRESS: i32 = 11;
    pub const NO_MEMORY: i32 = 51;
    pub const TIMEOUT: i32 = 52;
    pub const WRITE: i32 = 53;
    pub const READ: i32 = 54;
    pub const CONFIG: i32 = 55;
    pub const HOME: i32 = 61;
    pub const QUEUE_DIR: i32 = 62;
    pub const BUG: i32 = 81;
    pub const ENVELOPE: i32 = 91;
    /// postern's own: postern-queued refused one more submission from a uid that
    /// has `concurrencysubmit` unfinished (temporary).
    pub const BUSY: i32 = 77;

    pub fn is_permanent(code: i32) -> bool {
        (11..=40).contains(&code)
    }

    /// What a caller tells its client for each code.
    pub fn describe(code: i32) -> &'static str {
        match code {
            0 => "ok",
            ADDRESS => "envelope address too long or invalid",
            31 => "mail server permanently refuses the message",
            NO_MEMORY => "queue out of memory",
            TIMEOUT => "queue timed out",
            WRITE => "queue write error or disk full",
            READ => "queue cannot read the message or envelope",
            CONFIG => "queue cannot read a configuration file",
            HOME | QUEUE_DIR => "queue directory problem",
            71 => "mail server temporarily refuses the message",
            BUSY => "too many unfinished submissions from this user at once (concurrencysubmit); try again later",
            BUG => "queue internal bug",
            ENVELOPE => "queue envelope format error",
            _ => "queue failed",
        }
    }
}

/// Set to `sign` in the queue program's environment when the submitter asks for
/// DKIM signing (lib/dkim). The submitter decides: local injection, bounces and
/// vacation replies ask, smtpd asks only for AUTH and RELAYCLIENT clients, and
/// forwards never do. qmail-style callers know nothing of it and are not signed.
/// postern-queued's clients say the same with their hello byte: `S`, not `Q`.
pub const SIGN_ENV: &str = "POSTERN_DKIM";

/// Set to `forward` when the submitter is a forward (postern-local's `&address`,
/// postern-forward, condredirect): the queue rewrites the envelope sender with
/// SRS (lib/srs) when it must, so only postern-q (and smtpd, which checks
/// bounces) read control/srssecret. postern-queued's hello byte: `F`.
pub const SRS_ENV: &str = "POSTERN_SRS";

/// Set in a queue program's environment by a client that runs it
/// (`Submission::start_program`): the descriptor, always 3, on which the client
/// reads the new message's queue id once the program has exited 0. qmail-queue's
/// protocol has no answer but the exit code; this is postern's addition, and a
/// queue program that knows nothing of it (a QMAILQUEUE filter) just leaves it.
/// postern-queue writes the id there (`tell_id`), and so does postern-authcheck
/// with the id its own submission got.
pub const IDFD_ENV: &str = "POSTERN_QUEUE_IDFD";
const IDFD: i32 = 3;

/// Hand the new message's id to our client, if it asked (`IDFD_ENV`).
pub fn tell_id(id: &super::Id) {
    if std::env::var(IDFD_ENV).ok().and_then(|v| v.parse::<i32>().ok()) != Some(IDFD) {
        return;
    }
    if let Ok(fd) = crate::os::sys::take_fd(IDFD) {
        let _ = File::from(fd).write_all(id.as_str().as_bytes());
    }
}

/// What a submitter asks of the queue besides storing the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    Plain,
    /// DKIM-sign it (`SIGN_ENV`).
    Sign,
    /// A forward: SRS-rewrite the sender when needed (`SRS_ENV`).
    Forward,
}

impl Ask {
    /// postern-queued's hello byte.
    pub fn byte(self) -> u8 {
        match self {
            Ask::Plain => b'Q',
            Ask::Sign => b'S',
            Ask::Forward => b'F',
        }
    }

    pub fn from_byte(b: u8) -> Option<Ask> {
        match b {
            b'Q' => Some(Ask::Plain),
            b'S' => Some(Ask::Sign),
            b'F' => Some(Ask::Forward),
            _ => None,
        }
    }

    fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Ask::Plain => &[],
            Ask::Sign => &[(SIGN_ENV, "sign")],
            Ask::Forward => &[(SRS_ENV, "forward")],
        }
    }
}

/// What the queue program was asked (its environment).
pub fn requested() -> Ask {
    if std::env::var_os(SIGN_ENV).is_some_and(|v| v == "sign") {
        Ask::Sign
    } else if std::env::var_os(SRS_ENV).is_some_and(|v| v == "forward") {
        Ask::Forward
    } else {
        Ask::Plain
    }
}

/// The socket of postern-queued (see `daemon`).
pub fn daemon_socket(home: &Home) -> PathBuf {
    home.root().join("run").join("queue").join("submit")
}

/// Which program a client runs to queue a message: `$POSTERN_QUEUE`, else
/// `$QMAILQUEUE` (so existing qmail filters wrap us unchanged), else postern-queue.
pub fn queue_program(home: &Home) -> PathBuf {
    queue_override().unwrap_or_else(|| home.bin("postern-queue"))
}

/// The queue program named in the environment, if any.
fn queue_override() -> Option<PathBuf> {
    ["POSTERN_QUEUE", "QMAILQUEUE"].iter().filter_map(std::env::var_os).find(|v| !v.is_empty()).map(PathBuf::from)
}

/// Why a client could not queue a message.
#[derive(Debug)]
pub struct SubmitError {
    /// postern-queue's exit code, or `exit::BUG` if it could not be run or died.
    pub code: i32,
    pub detail: String,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (exit {}){}",
            exit::describe(self.code),
            self.code,
            if self.detail.is_empty() { String::new() } else { format!(": {}", self.detail) }
        )
    }
}

impl Classify for SubmitError {
    fn kind(&self) -> Kind {
        if exit::is_permanent(self.code) {
            Kind::Permanent
        } else {
            Kind::Temporary
        }
    }
}

/// A message on its way into the queue: the queue program runs from `start`, takes
/// the message as it is written, and the envelope at `commit`. Without a commit
/// it sees no envelope and queues nothing (a client that went away mid-message).
pub struct Submission {
    verdict: Verdict,
    stdin: Option<File>,
    envelope: Option<File>,
    broken: bool,
    /// Where a queue program we run writes the new id (`IDFD_ENV`).
    id_pipe: Option<File>,
}

/// Where the exit code comes from: the queue program, or postern-queued's worker
/// (one byte on the socket).
enum Verdict {
    Program(std::process::Child),
    Daemon(std::os::unix::net::UnixStream),
}

impl Submission {
    /// A submission that does not ask for DKIM signing.
    pub fn start(home: &Home) -> Result<Submission, SubmitError> {
        Submission::start_with(home, false)
    }

    /// A submission; `sign` asks the queue to DKIM-sign the message (`SIGN_ENV`).
    pub fn start_with(home: &Home, sign: bool) -> Result<Submission, SubmitError> {
        Submission::start_asking(home, if sign { Ask::Sign } else { Ask::Plain })
    }

    /// A submission asking the queue for `ask`.
    pub fn start_asking(home: &Home, ask: Ask) -> Result<Submission, SubmitError> {
        if let Some(s) = Submission::via_daemon(home, ask) {
            return Ok(s);
        }
        Submission::start_program(home, &queue_program(home), ask.env())
    }

    /// Run `program` as the queue program, with `env` added to its environment
    /// (postern-smtpd runs postern-authcheck so, which then queues by `start`).
    pub fn start_program(home: &Home, program: &std::path::Path, env: &[(&str, &str)]) -> Result<Submission, SubmitError> {
        use std::process::{Command, Stdio};
        let bug = |detail: String| SubmitError { code: exit::BUG, detail };
        let (env_r, env_w) = crate::os::sys::pipe().map_err(|e| bug(format!("pipe: {e}")))?;
        let (id_r, id_w) = crate::os::sys::pipe().map_err(|e| bug(format!("pipe: {e}")))?;
        let mut cmd = Command::new(program);
        // Set or removed, never inherited: only this submitter decides.
        cmd.env_remove(SIGN_ENV).env_remove(SRS_ENV).env(IDFD_ENV, IDFD.to_string());
        cmd.stdin(Stdio::piped()).stdout(Stdio::from(env_r)).env("POSTERN_HOME", home.root()).envs(env.iter().copied());
        let mut child =
            crate::os::sys::spawn_with_fds(&mut cmd, &[(id_w, IDFD)]).map_err(|e| bug(format!("cannot run {}: {e}", program.display())))?;
        let stdin = child.stdin.take().map(|s| File::from(std::os::fd::OwnedFd::from(s)));
        Ok(Submission {
            verdict: Verdict::Program(child),
            stdin,
            envelope: Some(File::from(env_w)),
            broken: false,
            id_pipe: Some(File::from(id_r)),
        })
    }

    /// postern-queued's socket, when it answers and no other queue program is
    /// asked for: the same fd 0 and fd 1, passed as two pipes, and no program start.
    fn via_daemon(home: &Home, ask: Ask) -> Option<Submission> {
        use std::os::fd::AsFd;
        if queue_override().is_some() {
            return None;
        }
        let sock = std::os::unix::net::UnixStream::connect(daemon_socket(home)).ok()?;
        let (msg_r, msg_w) = crate::os::sys::pipe().ok()?;
        let (env_r, env_w) = crate::os::sys::pipe().ok()?;
        crate::os::sys::send_with_fds(&sock, &[ask.byte()], &[msg_r.as_fd(), env_r.as_fd()]).ok()?;
        Some(Submission {
            verdict: Verdict::Daemon(sock),
            stdin: Some(File::from(msg_w)),
            envelope: Some(File::from(env_w)),
            broken: false,
            id_pipe: None,
        })
    }

    /// More of the message.
    pub fn write(&mut self, data: &[u8]) {
        if let (false, Some(w)) = (self.broken, self.stdin.as_mut()) {
            // A queue program that gave up closed its end (EPIPE); its exit code
            // says why, not this write.
            self.broken = w.write_all(data).is_err();
        }
    }

    /// The message is complete: hand over the envelope and wait for the verdict.
    pub fn commit(self, envelope: &Envelope) -> Result<(), SubmitError> {
        self.commit_id(envelope).map(|_| ())
    }

    /// `commit`, with the new message's queue id when the queue said it
    /// (postern-queued does; a queue program's exit code cannot).
    pub fn commit_id(mut self, envelope: &Envelope) -> Result<Option<super::Id>, SubmitError> {
        drop(self.stdin.take());
        if let Some(mut w) = self.envelope.take() {
            let _ = w.write_all(&envelope.encode());
        }
        self.wait()
    }

    /// Give up: the queue program finds no envelope and queues nothing.
    pub fn abort(mut self) {
        drop(self.stdin.take());
        drop(self.envelope.take());
        let _ = self.wait();
    }

    fn wait(&mut self) -> Result<Option<super::Id>, SubmitError> {
        let child = match &mut self.verdict {
            Verdict::Daemon(sock) => {
                // The code byte, then (after 0) the id, then the worker closes.
                let mut answer = Vec::new();
                return match sock.take(1 + 64).read_to_end(&mut answer) {
                    Ok(_) if answer.first() == Some(&0) => Ok(std::str::from_utf8(&answer[1..]).ok().and_then(super::Id::parse)),
                    Ok(_) if !answer.is_empty() => Err(SubmitError { code: answer[0] as i32, detail: String::new() }),
                    Ok(_) => Err(SubmitError { code: exit::BUG, detail: "postern-queued's worker ended without an answer".into() }),
                    Err(e) => Err(SubmitError { code: exit::BUG, detail: format!("reading postern-queued's answer: {e}") }),
                };
            }
            Verdict::Program(child) => child,
        };
        let status = child.wait().map_err(|e| SubmitError { code: exit::BUG, detail: format!("wait for the queue program: {e}") })?;
        match status.code() {
            // Without blocking: a filter's own child may still hold the pipe.
            Some(0) => Ok(self.id_pipe.take().and_then(|p| {
                crate::os::sys::set_nonblocking(&p, true).ok()?;
                let mut id = Vec::new();
                let _ = p.take(64).read_to_end(&mut id);
                std::str::from_utf8(&id).ok().and_then(super::Id::parse)
            })),
            Some(code) => Err(SubmitError { code, detail: String::new() }),
            None => Err(SubmitError { code: exit::BUG, detail: "the queue program was killed by a signal".into() }),
        }
    }
}

/// Hand a whole message to the queue program: message on its fd 0, envelope on
/// its fd 1. Returns once the program has exited; Ok only for exit 0. If reading
/// `message` fails, nothing is queued.
pub fn submit(home: &Home, message: &mut dyn Read, envelope: &Envelope) -> Result<(), SubmitError> {
    submit_with(home, message, envelope, false)
}

/// `submit`, returning the new message's queue id when the queue said it.
pub fn submit_id(home: &Home, message: &mut dyn Read, envelope: &Envelope) -> Result<Option<super::Id>, SubmitError> {
    submit_id_asking(home, message, envelope, Ask::Plain)
}

/// `submit`, asking the queue to DKIM-sign the message when `sign` is true.
pub fn submit_with(home: &Home, message: &mut dyn Read, envelope: &Envelope, sign: bool) -> Result<(), SubmitError> {
    submit_asking(home, message, envelope, if sign { Ask::Sign } else { Ask::Plain })
}

/// `submit`, asking the queue for `ask`.
pub fn submit_asking(home: &Home, message: &mut dyn Read, envelope: &Envelope, ask: Ask) -> Result<(), SubmitError> {
    submit_id_asking(home, message, envelope, ask).map(|_| ())
}

fn submit_id_asking(home: &Home, message: &mut dyn Read, envelope: &Envelope, ask: Ask) -> Result<Option<super::Id>, SubmitError> {
    let mut sub = Submission::start_asking(home, ask)?;
    // Writing never fails here: a queue program that gave up says why in its exit code.
    let copied = crate::os::fs::each_chunk(message, |chunk| -> Result<(), std::convert::Infallible> {
        sub.write(chunk);
        Ok(())
    });
    if let Err(crate::os::fs::ChunkError::Read(e)) = copied {
        sub.abort();
        return Err(SubmitError { code: exit::READ, detail: format!("reading the message: {e}") });
    }
    sub.commit_id(envelope)
}

/// A request without a message to postern-queued (`L`: the listing; `K`: a
/// retry of everything): its answer, or None when the daemon does not answer.
pub fn ask_daemon(home: &Home, byte: u8) -> Option<String> {
    let mut sock = std::os::unix::net::UnixStream::connect(daemon_socket(home)).ok()?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(60))).ok()?;
    sock.write_all(&[byte]).ok()?;
    let mut answer = Vec::new();
    sock.read_to_end(&mut answer).ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}
