//! postern-queued: the resident form of postern-queue (see lib/queue/daemon.rs).
//!
//! Started by postern-start. Becomes postern-q if started as root, binds
//! `run/queue/submit` and serves until killed. If it cannot start, it says why
//! and exits 111; clients then run postern-queue as before.

use postern::os::home::Home;
use postern::os::privs::{self, Service};
use postern::{os::log, os::sys, queue::daemon as queued};

const PROGRAM: &str = "postern-queued";

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    if let Err(e) = sys::drop_inherited_fds() {
        log::line(PROGRAM, &format!("cannot let go of inherited descriptors: {e}"));
    }
    // postern-start blocks the signals it reads from a signalfd, and the mask is
    // inherited: SIGTERM must reach us. And we go when postern-start goes.
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    sys::exit_with_parent();
    let home = Home::from_env();
    let fail = |msg: String| -> ! {
        log::line(PROGRAM, &format!("{msg}; clients run postern-queue instead"));
        std::process::exit(111);
    };
    if let Err(e) = privs::drop_to(Service::Queue) {
        fail(e.to_string());
    }
    // Queue files get their modes explicitly; nothing else may widen them.
    sys::umask(0o077);
    let listener = queued::bind(&home).unwrap_or_else(|e| fail(format!("{e} (the directory must exist and belong to postern-q)")));
    if let Err(e) = queued::serve(&home, listener) {
        fail(e.to_string());
    }
}
