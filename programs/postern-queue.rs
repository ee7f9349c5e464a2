//! postern-queue: the only way into the queue (qmail-queue's protocol).
//!
//! Message on fd 0, envelope on fd 1 (`F`sender NUL, `T`recipient NUL ..., NUL).
//! Exits 0 only once both are durable; otherwise one of qmail-queue's exit codes
//! (11-40 permanent, the rest temporary). With POSTERN_DKIM=sign in the
//! environment it DKIM-signs the message first (lib/dkim); with POSTERN_SRS=forward
//! it rewrites a forward's sender with SRS (lib/srs). Runs as postern-q: setuid in a system
//! install; if started as root it becomes postern-q itself. postern-queued does
//! the same job for clients that reach its socket (lib/queue/daemon.rs).

use postern::os::home::Home;
use postern::os::privs::{self, Service};
use postern::queue::store::{queue_one, DEATH_SECONDS};
use postern::queue::submit::exit;
use postern::{os::log, os::sys};

const PROGRAM: &str = "postern-queue";

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    let uid = sys::real_uid();
    let ask = postern::queue::submit::requested();
    if let Err(e) = privs::drop_to(Service::Queue) {
        log::line(PROGRAM, &e.to_string());
        std::process::exit(exit::HOME);
    }
    // Our files get their modes explicitly; the invoker's umask must not widen them.
    sys::umask(0o077);
    nix::unistd::alarm::set(DEATH_SECONDS);
    let home = Home::from_env();
    let (Ok(message), Ok(envelope)) = (sys::take_fd(0), sys::take_fd(1)) else {
        log::line(PROGRAM, "the message must be on fd 0 and the envelope on fd 1");
        std::process::exit(exit::READ);
    };
    let queued = queue_one(&home, &mut std::fs::File::from(message), &mut std::fs::File::from(envelope), uid, ask);
    if let Ok(id) = &queued {
        postern::queue::submit::tell_id(id);
    }
    std::process::exit(queued.err().unwrap_or(0));
}
