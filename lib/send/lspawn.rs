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
use crate::os::home::Home;
use crate::os::sys::ChildFds;
use crate::queue::{Queue, QueueFile};
use crate::send::spawn::{Outcome, Request};
use crate::send::spawner::{Running, Starter};
use crate::status::Status;
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

impl Starter for LocalStarter {
    fn start(&mut self, req: &Request, _file: Option<OwnedFd>) -> Result<Running, Outcome> {
        let [recipient] = req.recipients.as_slice() else {
            return Err(Outcome::temporary(format!("local deliveries take one recipient, not {}", req.recipients.len())));
        };
        let (local, domain) = (recipient.local(), recipient.domain().unwrap_or(""));
        let mut users = Users::open(&self.home).map_err(|e| Outcome::temporary(e.to_string()))?;
        let target = match users.lookup(local, domain).map_err(|e| Outcome::temporary(e.to_string()))? {
            Some(t) => t,
            None => return Err(Outcome::new(Status::NO_MAILBOX, "Sorry, no mailbox here by that name.")),
        };
        if self.as_root && target.uid == 0 {
            return Err(Outcome::new(Status::NO_MAILBOX, "Sorry, mail to root is not delivered; set up an alias."));
        }
        let path = Queue::new(&self.home).mess().join(&req.id);
        let qf = QueueFile::open(&path, false).map_err(|e| Outcome::temporary(e.to_string()))?;
        let message = qf.message_copy().map_err(|e| Outcome::temporary(format!("cannot copy message {}: {e}", path.display())))?;
        drop(qf);

        let (r, w) = crate::os::sys::pipe().map_err(|e| Outcome::temporary(format!("pipe: {e}")))?;
        let params = Params {
            user: target.user.clone(),
            homedir: target.home.clone(),
            local: local.to_string(),
            dash: target.dash.clone(),
            ext: target.ext.clone(),
            domain: domain.to_string(),
            sender: req.sender.as_str().to_string(),
            default_delivery: self.default_delivery.clone(),
        };
        // The message on fd 0 and the answer pipe on fds 1 and 2, as an exec of
        // postern-local would have them.
        let fds = ChildFds::new().put(message, &[0]).put(w, &[1, 2]);
        let (home, as_root) = (self.home.clone(), self.as_root);
        let pid = crate::os::sys::fork_run(fds, move || {
            crate::os::sys::set_process_name(c"postern-local");
            if let Err(e) = become_delivery(&home, as_root, target.uid, target.gid) {
                crate::deliver::local::say(&format!("{} {e}", Status::MAIL_SYSTEM));
                return crate::error::EXIT_TEMP;
            }
            match crate::os::sys::take_fd(0) {
                Ok(stdin) => crate::deliver::local::run(&home, &params, stdin.into()),
                Err(e) => {
                    crate::deliver::local::say(&format!("{} the message on fd 0: {e}", Status::MAIL_SYSTEM));
                    crate::error::EXIT_TEMP
                }
            }
        })
        .map_err(|e| Outcome::temporary(format!("cannot fork a delivery: {e}")))?;
        Ok(Running { pid, output: r })
    }
}

/// In the forked child, its descriptors set up (the message on fd 0, the
/// answer pipe on fds 1 and 2, no signal blocked: lspawn blocks SIGCHLD for its
/// signalfd, and a mask survives exec into program deliveries): postern-local's
/// environment, and the recipient's ids (root only: an unprivileged instance
/// delivers as itself).
fn become_delivery(home: &Home, as_root: bool, uid: u32, gid: u32) -> Result<(), String> {
    let keep: [(&str, std::ffi::OsString); 2] = [
        ("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", home.root().join("bin").display()).into()),
        ("POSTERN_HOME", home.root().into()),
    ];
    for (k, _) in std::env::vars_os() {
        std::env::remove_var(k);
    }
    for (k, v) in keep {
        std::env::set_var(k, v);
    }
    if as_root {
        crate::os::privs::become_ids(uid, gid).map_err(|e| e.to_string())?;
    }
    Ok(())
}
