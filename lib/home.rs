//! Where a postern installation lives.
//!
//! Every program finds its home (control/, queue/, users/, bin/) from POSTERN_HOME,
//! defaulting to the system install's location. A setuid program run by an ordinary
//! user ignores POSTERN_HOME: otherwise that user could point the queue's uid at a
//! tree of their choosing.

use std::path::{Path, PathBuf};

/// The system install's home.
pub const DEFAULT_HOME: &str = "/var/postern";

#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home from the environment (see the module docs for the setuid rule).
    pub fn from_env() -> Home {
        let setuid_by_other = crate::sys::is_setuid() && crate::sys::real_uid() != 0;
        match std::env::var_os("POSTERN_HOME") {
            Some(h) if !h.is_empty() && !setuid_by_other => Home { root: PathBuf::from(h) },
            _ => Home { root: PathBuf::from(DEFAULT_HOME) },
        }
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn control(&self) -> PathBuf {
        self.root.join("control")
    }
    pub fn control_file(&self, name: &str) -> PathBuf {
        self.root.join("control").join(name)
    }
    pub fn queue(&self) -> PathBuf {
        self.root.join("queue")
    }
    pub fn users(&self) -> PathBuf {
        self.root.join("users")
    }
    pub fn bin(&self, program: &str) -> PathBuf {
        self.root.join("bin").join(program)
    }
    /// Where virtual mailboxes live unless control/virtualhome says otherwise.
    pub fn mail(&self) -> PathBuf {
        self.root.join("mail")
    }
}
