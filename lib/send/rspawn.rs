//! Starting one remote delivery (postern-rspawn's job, as postern-r) and reading
//! its result.
//!
//! postern-send sends the queue file with each request (rspawn cannot open the
//! queue); rspawn copies the message into a memory file and runs postern-remote
//! with qmail-remote's interface: `postern-remote HOST SENDER RECIPIENT...`, the
//! message on fd 0, and on fd 1 a report per recipient (`r` accepted, `h` refused
//! for good, `s` refused for now; text; NUL) followed by a message report (`K`
//! delivered to the accepted ones, `Z` try again later, `D` give up; text; NUL).
//! Any qmail-remote-compatible program can stand in for it.

use crate::error::Kind;
use crate::os::home::Home;
use crate::queue::QueueFile;
use crate::send::spawn::{all, output_text, Outcome, Request, Running, Starter};
use nix::sys::wait::WaitStatus;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};

pub struct RemoteStarter {
    pub home: Home,
}

fn temp(text: String) -> (Kind, String) {
    (Kind::Temporary, text)
}

impl Starter for RemoteStarter {
    fn start(&mut self, req: &Request, file: Option<OwnedFd>) -> Result<Running, (Kind, String)> {
        let file = file.ok_or_else(|| temp("4.3.0 request came without its queue file".into()))?;
        let qf = QueueFile::from_file(File::from(file), Path::new(&req.id)).map_err(|e| temp(format!("4.3.0 {e}")))?;
        let message = qf.message_copy().map_err(|e| temp(format!("4.3.0 cannot copy message {}: {e}", req.id)))?;
        drop(qf);
        let host = req.recipients[0].rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
        let (r, w) = crate::os::sys::pipe().map_err(|e| temp(format!("4.3.0 pipe: {e}")))?;
        let program = self.home.bin("postern-remote");
        let child = Command::new(&program)
            .arg(&host)
            .arg(&req.sender)
            .args(&req.recipients)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("POSTERN_HOME", self.home.root())
            .stdin(Stdio::from(message))
            .stdout(Stdio::from(w))
            .spawn()
            .map_err(|e| temp(format!("4.3.0 cannot run {}: {e}", program.display())))?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        // The spawn loop reaps it.
        drop(child);
        Ok(Running { pid, output: r })
    }

    fn results(&self, count: usize, output: &[u8], status: &WaitStatus) -> Vec<(Outcome, String)> {
        remote_results(count, output, status)
    }
}

/// Read qmail-remote's reports for `count` recipients. Anything out of shape, or a
/// program that did not exit 0, is a temporary failure for every recipient: the
/// message is tried again, never lost.
pub fn remote_results(count: usize, output: &[u8], status: &WaitStatus) -> Vec<(Outcome, String)> {
    let temp = |why: String| all(count, Outcome::Failed(Kind::Temporary), why);
    match status {
        WaitStatus::Exited(_, 0) => {}
        WaitStatus::Exited(_, code) => return temp(format!("4.3.0 postern-remote exited {code}: {}", output_text(output))),
        WaitStatus::Signaled(_, sig, _) => return temp(format!("4.3.0 postern-remote was killed by {sig:?}")),
        other => return temp(format!("4.3.0 postern-remote ended oddly: {other:?}")),
    }
    // Complete reports only: each ends with a NUL.
    let mut fields: Vec<&[u8]> = output.split(|&b| b == 0).collect();
    fields.pop();
    let Some((message, rcpts)) = fields.split_last() else {
        return temp("4.3.0 postern-remote said nothing".into());
    };
    let Some((&code, text)) = message.split_first() else {
        return temp("4.3.0 postern-remote gave an empty message report".into());
    };
    let text = output_text(text);
    let for_message = match code {
        b'K' => Outcome::Delivered,
        b'Z' => Outcome::Failed(Kind::Temporary),
        b'D' => Outcome::Failed(Kind::Permanent),
        _ => return temp(format!("4.3.0 postern-remote gave a garbled message report: {}", output_text(message))),
    };
    if rcpts.is_empty() {
        if for_message == Outcome::Delivered {
            return temp("4.3.0 postern-remote reported delivery without recipient reports".into());
        }
        return all(count, for_message, text);
    }
    if rcpts.len() != count {
        return temp(format!("4.3.0 postern-remote reported {} recipients of {count}", rcpts.len()));
    }
    rcpts
        .iter()
        .map(|r| match r.split_first() {
            Some((b'r', _)) => (for_message, text.clone()),
            Some((b'h', t)) => (Outcome::Failed(Kind::Permanent), output_text(t)),
            Some((b's', t)) => (Outcome::Failed(Kind::Temporary), output_text(t)),
            _ => (Outcome::Failed(Kind::Temporary), format!("4.3.0 postern-remote gave a garbled recipient report: {}", output_text(r))),
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
        let r = remote_results(3, out, &OK);
        assert_eq!(r[0], (Outcome::Delivered, "250 ok id 123".to_string()));
        assert_eq!(r[1], (Outcome::Failed(Kind::Permanent), "5.1.1 no such user".to_string()));
        assert_eq!(r[2], (Outcome::Failed(Kind::Temporary), "4.2.2 full".to_string()));
        // Accepted recipients follow a failed DATA.
        let r = remote_results(2, b"r\0r\0Z451 try later\0", &OK);
        assert!(r.iter().all(|(o, t)| *o == Outcome::Failed(Kind::Temporary) && t == "451 try later"));
        let r = remote_results(1, b"r\0D554 no\0", &OK);
        assert_eq!(r[0].0, Outcome::Failed(Kind::Permanent));
    }

    #[test]
    fn a_message_report_alone_applies_to_all() {
        let r = remote_results(2, b"Zconnection refused\0", &OK);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|(o, _)| *o == Outcome::Failed(Kind::Temporary)));
        let r = remote_results(2, b"D5.1.10 null MX\0", &OK);
        assert!(r.iter().all(|(o, _)| *o == Outcome::Failed(Kind::Permanent)));
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
            let r = remote_results(1, out, &status);
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].0, Outcome::Failed(Kind::Temporary), "{:?}", String::from_utf8_lossy(out));
        }
    }
}
