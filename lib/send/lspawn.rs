//! Starting one local delivery (postern-lspawn's job, as root in a system install).
//!
//! For each request: find the recipient's user (users cdb, users/assign, the
//! password database), copy the message into a sealed-off memory file (so the
//! delivery sees exactly the message, seekable, and never the queue file with its
//! envelope), and fork a child that becomes that user and makes the delivery
//! postern-local would make (`local::run`). No parsing of message content happens
//! in this process.
//!
//! Why a fork and not an exec of postern-local: a program start costs about as
//! much CPU as the rest of a delivery on the test machines, and lspawn is small
//! and single-threaded, so its child is a clean copy. The child gives up root
//! (groups, gid, then uid) before it reads anything the recipient controls, and it
//! calls itself postern-local in ps.

use crate::deliver::local::Params;
use crate::error::Kind;
use crate::os::home::Home;
use crate::queue::{Queue, QueueFile};
use crate::send::spawn::{Request, Running, Starter};
use crate::users::Users;
use std::os::fd::OwnedFd;

pub struct LocalStarter {
    pub home: Home,
    /// Only root can become the recipient; an unprivileged instance delivers as
    /// itself.
    pub as_root: bool,
    pub default_delivery: String,
}

impl LocalStarter {
    pub fn new(home: Home) -> Result<LocalStarter, crate::config::control::ControlError> {
        // Every line of control/defaultdelivery, like qmail's aliasempty.
        let c = crate::config::control::Control::new(&home);
        let default_delivery = c.list(&crate::config::settings::DEFAULTDELIVERY)?.join("\n");
        Ok(LocalStarter { home, as_root: crate::os::privs::is_root(), default_delivery })
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

        let (r, w) = crate::os::sys::pipe().map_err(|e| temp(format!("4.3.0 pipe: {e}")))?;
        let params = Params {
            user: target.user.clone(),
            homedir: target.home.clone(),
            local: local.to_string(),
            dash: target.dash.clone(),
            ext: target.ext.clone(),
            domain: domain.to_string(),
            sender: req.sender.clone(),
            default_delivery: self.default_delivery.clone(),
        };
        let pid = crate::os::sys::fork_run(|| {
            crate::os::sys::set_process_name(c"postern-local");
            // If this fails, fd 1 may still be the pipe to postern-send: say
            // nothing, and the exit code alone makes it a temporary failure.
            if crate::os::sys::exec_like(vec![OwnedFd::from(message), w], &[(1, 1), (1, 2), (0, 0)]).is_err() {
                return crate::error::EXIT_TEMP;
            }
            if let Err(e) = self.become_delivery(target.uid, target.gid) {
                crate::deliver::local::say(&format!("4.3.0 {e}"));
                return crate::error::EXIT_TEMP;
            }
            crate::deliver::local::run(&self.home, &params, crate::os::sys::protocol_fd(0))
        })
        .map_err(|e| temp(format!("4.3.0 cannot fork a delivery: {e}")))?;
        Ok(Running { pid, output: r })
    }
}

impl LocalStarter {
    /// In the forked child, its descriptors set up (the message on fd 0, the
    /// result pipe on fds 1 and 2, no signal blocked: lspawn blocks SIGCHLD for
    /// its signalfd, and a mask survives exec into program deliveries):
    /// postern-local's environment, and the recipient's ids.
    fn become_delivery(&self, uid: u32, gid: u32) -> Result<(), String> {
        let keep: [(&str, std::ffi::OsString); 2] = [
            ("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", self.home.root().join("bin").display()).into()),
            ("POSTERN_HOME", self.home.root().into()),
        ];
        for (k, _) in std::env::vars_os() {
            std::env::remove_var(k);
        }
        for (k, v) in keep {
            std::env::set_var(k, v);
        }
        if self.as_root {
            crate::os::privs::become_ids(uid, gid).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
