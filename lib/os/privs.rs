//! Service users and dropping privileges.
//!
//! The rule is uniform: a program that finds itself running as root and that should
//! not, becomes its service user; a program that is not root stays who it is. So an
//! instance started by an ordinary user runs everything as that user, and the same
//! code in a system install runs each program under its own uid.

use nix::unistd::{Gid, Group, Uid, User};
use std::fmt;

/// The suite's service users (created by scripts/install and by a root instance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// postern-d: network-facing daemons (listen after bind, smtpd, popup).
    Daemon,
    /// postern-q: owns the queue; postern-queue runs as it.
    Queue,
    /// postern-s: the scheduler.
    Send,
    /// postern-r: remote delivery.
    Remote,
    /// postern-l: loggers.
    Log,
    /// postern-v: owner of virtual mailboxes.
    Virtual,
    /// postern-a: runs the deliveries of /etc/aliases (programs, files, includes).
    Alias,
}

impl Service {
    pub const ALL: [Service; 7] =
        [Service::Daemon, Service::Queue, Service::Send, Service::Remote, Service::Log, Service::Virtual, Service::Alias];

    pub fn name(self) -> &'static str {
        match self {
            Service::Daemon => "postern-d",
            Service::Queue => "postern-q",
            Service::Send => "postern-s",
            Service::Remote => "postern-r",
            Service::Log => "postern-l",
            Service::Virtual => "postern-v",
            Service::Alias => "postern-a",
        }
    }

    /// The primary group: the queue's owners share `postern`, so the scheduler can
    /// mark and remove what postern-queue wrote; the others have their own group.
    pub fn group(self) -> &'static str {
        match self {
            Service::Queue | Service::Send => "postern",
            other => other.name(),
        }
    }

    /// uid and gid of this service user.
    pub fn ids(self) -> Result<(u32, u32), PrivError> {
        let user = User::from_name(self.name())
            .map_err(|e| PrivError::Lookup(self.name().to_string(), e.to_string()))?
            .ok_or_else(|| PrivError::NoSuchUser(self.name().to_string()))?;
        Ok((user.uid.as_raw(), user.gid.as_raw()))
    }

    pub fn gid_of_group(self) -> Result<u32, PrivError> {
        let g = Group::from_name(self.group())
            .map_err(|e| PrivError::Lookup(self.group().to_string(), e.to_string()))?
            .ok_or_else(|| PrivError::NoSuchUser(self.group().to_string()))?;
        Ok(g.gid.as_raw())
    }
}

#[derive(Debug)]
pub enum PrivError {
    NoSuchUser(String),
    Lookup(String, String),
    Switch(u32, u32, String),
}

impl fmt::Display for PrivError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivError::NoSuchUser(n) => write!(
                f,
                "the service user or group {n} does not exist; create the service users with scripts/install (or run scripts/instance start as root)"
            ),
            PrivError::Lookup(n, e) => write!(f, "cannot look up {n} in the user database: {e}"),
            PrivError::Switch(u, g, e) => write!(f, "cannot switch to uid {u} gid {g}: {e}"),
        }
    }
}

impl crate::error::Classify for PrivError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Temporary
    }
}

pub fn is_root() -> bool {
    crate::os::sys::effective_uid() == 0
}

/// Become uid/gid with only `gid` as supplementary group. Order matters: groups and
/// gid first, while we still may; uid last, which gives up the right to change back.
pub fn become_ids(uid: u32, gid: u32) -> Result<(), PrivError> {
    let err = |e: nix::Error| PrivError::Switch(uid, gid, e.to_string());
    nix::unistd::setgroups(&[Gid::from_raw(gid)]).map_err(err)?;
    nix::unistd::setgid(Gid::from_raw(gid)).map_err(err)?;
    nix::unistd::setuid(Uid::from_raw(uid)).map_err(err)?;
    Ok(())
}

/// If root, become the service user; otherwise stay (unprivileged instance).
pub fn drop_to(service: Service) -> Result<(), PrivError> {
    if !is_root() {
        return Ok(());
    }
    let (uid, gid) = service.ids()?;
    become_ids(uid, gid)
}
