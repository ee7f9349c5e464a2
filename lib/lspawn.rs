//! Starting one local delivery (postern-lspawn's job, as root in a system install).
//!
//! For each request: find the recipient's user (users cdb, users/assign, the
//! password database), copy the message into a sealed-off memory file (so the
//! delivery sees exactly the message, seekable, and never the queue file with its
//! envelope), and start postern-local as that user. No parsing of message content
//! happens here.

use crate::error::Kind;
use crate::home::Home;
use crate::queue::{Queue, QueueFile};
use crate::spawn::{Request, Running, Starter};
use crate::users::Users;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

pub struct LocalStarter {
    pub home: Home,
    /// Only root can become the recipient; an unprivileged instance delivers as
    /// itself.
    pub as_root: bool,
    pub default_delivery: String,
}

impl LocalStarter {
    pub fn new(home: Home) -> Result<LocalStarter, crate::control::ControlError> {
        // Every line of control/defaultdelivery, like qmail's aliasempty.
        let c = crate::control::Control::new(&home);
        let default_delivery = c.list("defaultdelivery")?.filter(|l| !l.is_empty()).map(|l| l.join("\n")).unwrap_or_else(|| "./Maildir/".into());
        Ok(LocalStarter { home, as_root: crate::privs::is_root(), default_delivery })
    }
}

fn temp(text: String) -> (Kind, String) {
    (Kind::Temporary, text)
}

impl Starter for LocalStarter {
    fn start(&mut self, req: &Request, _file: Option<OwnedFd>) -> Result<Running, (Kind, String)> {
        let [recipient] = req.recipients.as_slice() else {
            return Err(temp(format!("4.3.0 local deliveries take one recipient, not {}", req.recipients.len())));
        };
        let (local, domain) = match recipient.rfind('@') {
            Some(i) => (&recipient[..i], &recipient[i + 1..]),
            None => (recipient.as_str(), ""),
        };
        let mut users = Users::open(&self.home).map_err(|e| temp(format!("4.3.0 {e}")))?;
        let target = match users.lookup(local, domain).map_err(|e| temp(format!("4.3.0 {e}")))? {
            Some(t) => t,
            None => return Err((Kind::Permanent, "5.1.1 Sorry, no mailbox here by that name.".into())),
        };
        if self.as_root && target.uid == 0 {
            return Err((Kind::Permanent, "5.1.1 Sorry, mail to root is not delivered; set up an alias.".into()));
        }
        let queue = Queue::new(&self.home);
        let path = queue.mess().join(&req.id);
        let qf = QueueFile::open(&path, false).map_err(|e| temp(format!("4.3.0 {e}")))?;
        let message = qf.message_copy().map_err(|e| temp(format!("4.3.0 cannot copy message {}: {e}", path.display())))?;
        drop(qf);

        let (r, w) = crate::sys::pipe().map_err(|e| temp(format!("4.3.0 pipe: {e}")))?;
        let w2 = w.try_clone().map_err(|e| temp(format!("4.3.0 dup: {e}")))?;
        let path_env = format!("{}:/usr/local/bin:/usr/bin:/bin", self.home.root().join("bin").display());
        let mut cmd = Command::new(self.home.bin("postern-local"));
        cmd.args([
            target.user.as_str(),
            &target.home.to_string_lossy(),
            local,
            target.dash.as_str(),
            target.ext.as_str(),
            domain,
            req.sender.as_str(),
            self.default_delivery.as_str(),
        ])
        .env_clear()
        .env("PATH", path_env)
        .env("POSTERN_HOME", self.home.root())
        .stdin(Stdio::from(message))
        .stdout(Stdio::from(w))
        .stderr(Stdio::from(w2));
        if self.as_root {
            // std drops supplementary groups when it changes uid as root.
            cmd.uid(target.uid).gid(target.gid);
        }
        let child = cmd.spawn().map_err(|e| temp(format!("4.3.0 cannot run {}: {e}", self.home.bin("postern-local").display())))?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        // The Child handle is dropped without waiting: the spawn loop reaps it.
        drop(child);
        Ok(Running { pid, output: r })
    }
}
