//! Watching the selected folder (inotify on its new/ and cur/): deliveries,
//! and flag changes and expunges by other sessions or POP3, so that IDLE hears
//! of them at once and other commands rescan the folder only when it changed.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

pub struct Watch {
    inotify: Inotify,
    /// Events came since the last `take`.
    dirty: bool,
}

/// What ended a wait.
#[derive(Debug, PartialEq, Eq)]
pub enum Woke {
    /// The client sent something.
    Input,
    /// The folder changed.
    Folder,
    Timeout,
}

impl Watch {
    /// Watch `dir`/new and `dir`/cur. A folder that cannot be watched (the
    /// inotify limits) is rescanned at every command instead, and IDLE polls it.
    pub fn new(dir: &Path) -> Result<Watch, String> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(|e| format!("inotify: {e}"))?;
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB;
        for sub in ["new", "cur"] {
            let p = dir.join(sub);
            inotify.add_watch(&p, mask).map_err(|e| format!("cannot watch {}: {e}", p.display()))?;
        }
        Ok(Watch { inotify, dirty: false })
    }

    fn drain(&mut self) {
        while let Ok(ev) = self.inotify.read_events() {
            if ev.is_empty() {
                break;
            }
            self.dirty = true;
        }
    }

    /// Did the folder change since the last call?
    pub fn take(&mut self) -> bool {
        self.drain();
        std::mem::take(&mut self.dirty)
    }

    /// Wait for input on `input` or a change of the folder, at most `timeout`.
    pub fn wait(&mut self, input: BorrowedFd<'_>, timeout: Duration) -> Woke {
        if self.take() {
            self.dirty = true;
            return Woke::Folder;
        }
        let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(input, PollFlags::POLLIN), PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) | Err(_) => Woke::Timeout,
            _ => {
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                if ready(&fds[0]) {
                    Woke::Input
                } else {
                    self.dirty = true;
                    Woke::Folder
                }
            }
        }
    }
}

/// Wait for input alone (no folder selected).
pub fn wait_input(input: BorrowedFd<'_>, timeout: Duration) -> Woke {
    let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(input, PollFlags::POLLIN)];
    match poll(&mut fds, ms) {
        Ok(0) | Err(_) => Woke::Timeout,
        _ => Woke::Input,
    }
}
