//! Starting one remote delivery (postern-rspawn's job, as postern-r) and reading
//! its result.
//!
//! postern-send sends the queue file with each request (rspawn cannot open the
//! queue). rspawn hands it to a resident worker for the destination domain
//! (`rworker`), which delivers with postern-remote's code and keeps the
//! connection for the next message; or, with `control/remoteprogram`, copies
//! the message (the file's first `size` bytes: see `spawn`) into a memory file
//! and runs that program with qmail-remote's interface: `PROGRAM HOST SENDER
//! RECIPIENT...`, the message on fd 0, and on fd 1 a report per recipient (`r`
//! accepted, `h` refused for good, `s` refused for now; text; NUL) followed by a
//! message report (`K` delivered to the accepted ones, `Z` try again later, `D`
//! give up; text; NUL). A worker writes the same reports, so both are read alike.

use crate::error::Kind;
use crate::os::home::Home;
use crate::os::log::one_line;
use crate::send::spawn::{from_report, Outcome, Request};
use crate::send::spawner::{Running, Starter};
use crate::status::Status;
use nix::sys::wait::WaitStatus;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

pub struct RemoteStarter {
    pub home: Home,
    /// control/remoteprogram: run per delivery instead of the workers.
    program: Option<std::path::PathBuf>,
    /// Resident workers, one kind per destination domain (`rworker`).
    workers: crate::send::workers::Pool<String>,
}

impl RemoteStarter {
    pub fn new(home: Home) -> Result<RemoteStarter, crate::config::control::ControlError> {
        let c = crate::config::control::Control::new(&home);
        let program = c.optional(&crate::config::settings::REMOTEPROGRAM)?.map(std::path::PathBuf::from);
        Ok(RemoteStarter { home, program, workers: crate::send::workers::Pool::new(&[1]) })
    }

    /// The old way: a program per delivery, with qmail-remote's interface.
    fn run_program(&self, program: &std::path::Path, req: &Request, file: OwnedFd) -> Result<Running, Outcome> {
        let message = crate::message::file::copy_prefix(&File::from(file), req.size)
            .map_err(|e| Outcome::temporary(format!("cannot copy message {}: {e}", req.id)))?;
        let host = req.recipients[0].domain().unwrap_or_default();
        let (r, w) = crate::os::sys::pipe().map_err(|e| Outcome::temporary(format!("pipe: {e}")))?;
        let child = Command::new(program)
            .arg(host)
            .arg(req.sender.as_str())
            .args(req.recipients.iter().map(|r| r.as_str()))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("POSTERN_HOME", self.home.root())
            .stdin(Stdio::from(message))
            .stdout(Stdio::from(w))
            .spawn()
            .map_err(|e| Outcome::temporary(format!("cannot run {} (control/remoteprogram): {e}", program.display())))?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        // The spawn loop reaps it.
        drop(child);
        Ok(Running { pid, output: r })
    }
}

impl Starter for RemoteStarter {
    fn start(&mut self, req: &Request, file: OwnedFd) -> Result<Running, Outcome> {
        if let Some(p) = self.program.clone() {
            return self.run_program(&p, req, file);
        }
        let domain = req.recipients[0].domain().unwrap_or_default().to_ascii_lowercase();
        let job = crate::send::rworker::Job {
            delivery: crate::smtp::client::Job {
                domain: domain.clone(),
                sender: req.sender.as_str().to_string(),
                recipients: req.recipients.iter().map(|r| r.as_str().to_string()).collect(),
            },
            size: req.size,
            id: req.id.to_string(),
        };
        let (r, w) = crate::os::sys::pipe().map_err(|e| Outcome::temporary(format!("pipe: {e}")))?;
        let home = self.home.clone();
        let pid = self
            .workers
            .run(&domain, &crate::send::rworker::encode_job(&job), file, w, move || crate::send::rworker::main(&home))
            .map_err(|e| Outcome::temporary(format!("cannot start a remote delivery: {e}")))?;
        Ok(Running { pid, output: r })
    }

    fn outcomes(&self, count: usize, output: &[u8], status: &WaitStatus) -> Vec<Outcome> {
        remote_outcomes(count, output, status)
    }

    fn reload(&mut self) -> Result<Option<String>, String> {
        let fresh = RemoteStarter::new(self.home.clone()).map_err(|e| e.to_string())?;
        self.program = fresh.program;
        Ok(Some("remoteprogram".into()))
    }

    fn workers(&self) -> Option<&dyn crate::send::spawner::Workers> {
        Some(&self.workers)
    }

    fn workers_mut(&mut self) -> Option<&mut dyn crate::send::spawner::Workers> {
        Some(&mut self.workers)
    }
}

/// Read qmail-remote's reports for `count` recipients. Anything out of shape, or a
/// program that did not exit 0, is a temporary failure for every recipient: the
/// message is tried again, never lost.
pub fn remote_outcomes(count: usize, output: &[u8], status: &WaitStatus) -> Vec<Outcome> {
    let temp = |why: String| Outcome::temporary(why).for_all(count);
    match status {
        WaitStatus::Exited(_, 0) => {}
        WaitStatus::Exited(_, code) => return temp(format!("postern-remote exited {code}: {}", one_line(output))),
        WaitStatus::Signaled(_, sig, _) => return temp(format!("postern-remote was killed by {sig:?}")),
        other => return temp(format!("postern-remote ended oddly: {other:?}")),
    }
    // Complete reports only: each ends with a NUL.
    let mut fields: Vec<&[u8]> = output.split(|&b| b == 0).collect();
    fields.pop();
    let Some((message, rcpts)) = fields.split_last() else {
        return temp("postern-remote said nothing".into());
    };
    let Some((&code, text)) = message.split_first() else {
        return temp("postern-remote gave an empty message report".into());
    };
    let for_message = match code {
        b'K' => None,
        b'Z' => Some(Kind::Temporary),
        b'D' => Some(Kind::Permanent),
        _ => return temp(format!("postern-remote gave a garbled message report: {}", one_line(message))),
    };
    let message = from_report(for_message, &one_line(text));
    if rcpts.is_empty() {
        if for_message.is_none() {
            return temp("postern-remote reported delivery without recipient reports".into());
        }
        return message.for_all(count);
    }
    if rcpts.len() != count {
        return temp(format!("postern-remote reported {} recipients of {count}", rcpts.len()));
    }
    rcpts
        .iter()
        .map(|r| match r.split_first() {
            Some((b'r', _)) => message.clone(),
            Some((b'h', t)) => from_report(Some(Kind::Permanent), &one_line(t)),
            Some((b's', t)) => from_report(Some(Kind::Temporary), &one_line(t)),
            _ => Outcome::new(Status::MAIL_SYSTEM, format!("postern-remote gave a garbled recipient report: {}", one_line(r))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::Pid;

    const OK: WaitStatus = WaitStatus::Exited(Pid::from_raw(1), 0);

    #[test]
    fn per_recipient_reports_combine_with_the_message_report() {
        let out = b"r\0h5.1.1 no such user\0s4.2.2 full\0K250 ok id 123\0";
        let r = remote_outcomes(3, out, &OK);
        assert_eq!(r[0], Outcome::new(Status::OK, "250 ok id 123"));
        assert_eq!(r[1], Outcome::new(Status::NO_MAILBOX, "no such user"));
        assert_eq!(r[2], Outcome::new(Status::MAILBOX_FULL, "full"));
        // Accepted recipients follow a failed DATA.
        let r = remote_outcomes(2, b"r\0r\0Z451 try later\0", &OK);
        assert!(r.iter().all(|o| o.failure() == Some(Kind::Temporary) && o.text == "451 try later"));
        let r = remote_outcomes(1, b"r\0D554 no\0", &OK);
        assert_eq!(r[0].failure(), Some(Kind::Permanent));
    }

    #[test]
    fn a_message_report_alone_applies_to_all() {
        let r = remote_outcomes(2, b"Zconnection refused\0", &OK);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|o| o.failure() == Some(Kind::Temporary)));
        let r = remote_outcomes(2, b"D5.1.10 null MX\0", &OK);
        assert!(r.iter().all(|o| o.status == Status::NULL_MX));
    }

    #[test]
    fn anything_odd_is_temporary_for_all() {
        for (out, status) in [
            (&b""[..], OK),
            (b"r\0K", OK),
            (b"Kdelivered\0", OK),
            (b"r\0Xwhat\0", OK),
            (b"r\0r\0K\0", OK),
            (b"r\0K\0", WaitStatus::Exited(Pid::from_raw(1), 111)),
            (b"r\0K\0", WaitStatus::Signaled(Pid::from_raw(1), nix::sys::signal::Signal::SIGKILL, false)),
        ] {
            let r = remote_outcomes(1, out, &status);
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].failure(), Some(Kind::Temporary), "{:?}", String::from_utf8_lossy(out));
        }
    }
}
