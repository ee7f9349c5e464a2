//! Where a postern installation lives.
//!
//! Every program finds its home (control/, queue/, users/, bin/) from POSTERN_HOME,
//! defaulting to the system install's location. A setuid program run by anyone but
//! root ignores POSTERN_HOME (else the caller could point the queue's uid at a tree
//! of their choosing) and uses the home its binary is installed in.

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
        if crate::os::sys::is_setuid() && crate::os::sys::real_uid() != 0 {
            return Home::of_executable().unwrap_or_else(|| Home::at(DEFAULT_HOME));
        }
        match std::env::var_os("POSTERN_HOME") {
            Some(h) if !h.is_empty() => Home { root: PathBuf::from(h) },
            _ => Home { root: PathBuf::from(DEFAULT_HOME) },
        }
    }

    /// The home a program is installed in: HOME/bin/PROGRAM. Where the binary lies
    /// was chosen by whoever installed it, not by the caller, so a setuid program
    /// may trust it (qmail compiles its home in; we read it off the binary).
    fn of_executable() -> Option<Home> {
        let exe = std::env::current_exe().ok()?;
        let bin = exe.parent()?;
        if bin.file_name()? != "bin" {
            return None;
        }
        Some(Home::at(bin.parent()?))
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
    /// The home of alias deliveries (postern-a's; programs run there).
    pub fn alias(&self) -> PathBuf {
        self.root.join("alias")
    }
    /// Where virtual mailboxes live unless control/virtualhome says otherwise.
    pub fn mail(&self) -> PathBuf {
        self.root.join("mail")
    }
}
