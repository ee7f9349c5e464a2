//! `|command` lines of dot-qmail files: run by /bin/sh -c as the recipient, the
//! message on stdin from its start, its output captured for the report, in its
//! own process group so a timeout (control/timeoutdelivery) kills everything it
//! started.

use super::local::LocalError;
use crate::error::Kind;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Most program output kept for the report; the rest is read and dropped.
const OUTPUT_LIMIT: usize = 4000;

/// qmail-command(8): 100 and sendmail's permanent EX_* codes (64, 65, 70, 76, 77,
/// 78, 112) are permanent; anything else but 0 and 99 is temporary.
pub fn program_kind(code: i32) -> Kind {
    match code {
        100 | 64 | 65 | 70 | 76 | 77 | 78 | 112 => Kind::Permanent,
        _ => Kind::Temporary,
    }
}

enum Event {
    Output(Vec<u8>),
    Eof,
    Exit(io::Result<ExitStatus>),
}

/// Run one `|command` line: /bin/sh -c, stdin the message from its start, output
/// captured. Returns 0 or 99; every other ending is an error.
pub fn run_program(cmd: &str, env: &[(String, String)], message: &mut File, timeout: Duration) -> Result<i32, LocalError> {
    message.seek(SeekFrom::Start(0)).map_err(LocalError::Message)?;
    let spawn_err = |e: io::Error| LocalError::Spawn(cmd.to_string(), e);
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| spawn_err(e.into()))?;
    let w2 = w.try_clone().map_err(spawn_err)?;
    let stdin = message.try_clone().map_err(spawn_err)?;
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(cmd).stdin(Stdio::from(stdin)).stdout(Stdio::from(w)).stderr(Stdio::from(w2));
    c.envs(env.iter().map(|(k, v)| (k, v)));
    if !env.iter().any(|(k, _)| k == "DEFAULT") {
        c.env_remove("DEFAULT");
    }
    // Its own process group, so a timeout kills everything it started.
    c.process_group(0);
    let mut child = c.spawn().map_err(spawn_err)?;
    // Our copies of the pipe's write end must be gone, or we never see EOF.
    drop(c);
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    let txr = tx.clone();
    std::thread::spawn(move || {
        let mut r = File::from(r);
        let mut buf = vec![0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = txr.send(Event::Output(buf[..n].to_vec()));
                }
            }
        }
        let _ = txr.send(Event::Eof);
    });
    std::thread::spawn(move || {
        let _ = tx.send(Event::Exit(child.wait()));
    });
    let deadline = Instant::now() + timeout;
    let mut output = Vec::new();
    let mut status = None;
    let mut eof = false;
    let mut grace: Option<Instant> = None;
    while status.is_none() || !eof {
        let until = grace.unwrap_or(deadline);
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Output(b)) => {
                let room = OUTPUT_LIMIT.saturating_sub(output.len());
                output.extend_from_slice(&b[..b.len().min(room)]);
            }
            Ok(Event::Eof) => eof = true,
            Ok(Event::Exit(s)) => {
                status = Some(s.map_err(spawn_err)?);
                // Something it left in the background may hold the pipe open: do
                // not wait for it for long.
                grace = Some(Instant::now() + Duration::from_secs(1));
            }
            Err(_) if status.is_some() => break,
            Err(_) => {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                // Reap it so no zombie outlives us (the waiter thread does the wait).
                let end = Instant::now() + Duration::from_secs(5);
                while let Ok(ev) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                    if matches!(ev, Event::Exit(_)) {
                        break;
                    }
                }
                return Err(LocalError::Timeout { command: cmd.to_string(), seconds: timeout.as_secs() });
            }
        }
    }
    let status = status.expect("loop ends with a status");
    match status.code() {
        Some(0) => Ok(0),
        Some(99) => Ok(99),
        code => {
            Err(LocalError::Program { command: cmd.to_string(), code, signal: status.signal(), output: crate::os::log::one_line(&output) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(program_kind(100), Kind::Permanent);
        assert_eq!(program_kind(77), Kind::Permanent);
        assert_eq!(program_kind(111), Kind::Temporary);
        assert_eq!(program_kind(3), Kind::Temporary);
    }
}
