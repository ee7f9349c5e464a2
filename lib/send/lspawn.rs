//! Starting one local delivery (postern-lspawn's job, as root in a system install).
//!
//! For each request: find the recipient's user (users cdb, users/assign, the
//! password database) and hand the delivery to a resident worker, a forked
//! child that became that user (`lworker`: one per uid and gid while busy,
//! reused, leaving when idle), which makes the delivery postern-local would
//! make (`local::run`). The message comes with the request as a descriptor of
//! its queue file (see `spawn`): this process opens nothing in the queue,
//! reads none of the file, and parses only the spawn protocol and the users
//! database. The worker, already the recipient, copies
//! the message (the file's first `size` bytes, with positioned reads) into a
//! memory file and closes the queue file before it reads anything the recipient
//! controls: the delivery sees exactly the message, seekable, and never the
//! envelope.
//!
//! Why a fork and not an exec of postern-local: a program start costs about as
//! much CPU as the rest of a delivery on the test machines, and lspawn is small
//! and single-threaded, so its child is a clean copy; and why a resident one:
//! the fork itself, with its exit and page faults, cost as much again. The
//! worker gives up root (groups, gid, then uid) first, and it calls itself
//! postern-local in ps.

use crate::deliver::local::Params;
use crate::os::home::Home;
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
    /// Resident delivery workers, one kind per recipient uid and gid.
    workers: crate::send::workers::Pool<(u32, u32)>,
}

impl LocalStarter {
    pub fn new(home: Home) -> Result<LocalStarter, crate::config::control::ControlError> {
        // Every line of control/defaultdelivery, like qmail's aliasempty.
        let c = crate::config::control::Control::new(&home);
        let default_delivery = c.list(&crate::config::settings::DEFAULTDELIVERY)?.join("\n");
        Ok(LocalStarter { home, as_root: crate::os::privs::is_root(), default_delivery, workers: crate::send::workers::Pool::new(&[1, 2]) })
    }
}

impl Starter for LocalStarter {
    fn reload(&mut self) -> Result<Option<String>, String> {
        let fresh = LocalStarter::new(self.home.clone()).map_err(|e| e.to_string())?;
        self.default_delivery = fresh.default_delivery;
        Ok(Some("defaultdelivery".into()))
    }

    fn start(&mut self, req: &Request, file: OwnedFd) -> Result<Running, Outcome> {
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
            alias: target.alias,
        };
        let job = crate::send::lworker::encode_job(&crate::send::lworker::Job { params, size: req.size, id: req.id.to_string() });
        let (home, as_root, ids) = (self.home.clone(), self.as_root, (target.uid, target.gid));
        let pid = self
            .workers
            .run(&ids, &job, file, w, move || crate::send::lworker::main(&home, || become_delivery(&home, as_root, ids.0, ids.1)))
            .map_err(|e| Outcome::temporary(format!("cannot start a delivery: {e}")))?;
        Ok(Running { pid, output: r })
    }

    fn workers(&self) -> Option<&dyn crate::send::spawner::Workers> {
        Some(&self.workers)
    }

    fn workers_mut(&mut self) -> Option<&mut dyn crate::send::spawner::Workers> {
        Some(&mut self.workers)
    }
}

/// In a new worker, its descriptors set up (its socket on fd 0, /dev/null on
/// fds 1 and 2, no signal blocked: lspawn blocks SIGCHLD for its signalfd, and
/// a mask survives exec into program deliveries): postern-local's environment,
/// and the recipient's ids (root only: an unprivileged instance delivers as
/// itself).
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
