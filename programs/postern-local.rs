//! postern-local: one local delivery, with qmail-local's arguments.
//!
//! `postern-local USER HOMEDIR LOCAL DASH EXT DOMAIN SENDER DEFAULTDELIVERY`, run as
//! the recipient with the message on fd 0 (seekable; a pipe is copied to memory).
//! Prints one line saying what happened (an RFC 3463 code first) and exits 0 when
//! every delivery is durable, 100 on a permanent failure, 111 on a temporary one.
//! postern-lspawn makes the same delivery in a forked child instead of running
//! this program (lib/send/lspawn.rs); this program is for everyone else.

use postern::deliver::local::{self, LocalError, Params};
use postern::error::Classify;
use postern::os::home::Home;

fn main() {
    postern::version::exit_if_asked("postern-local");
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let started = Params::from_args(&args).and_then(|p| Ok((p, postern::os::sys::take_fd(0).map_err(LocalError::Message)?)));
    let (params, stdin) = match started {
        Ok(v) => v,
        Err(e) => {
            local::say(&format!("{} {e}", e.status()));
            std::process::exit(e.kind().exit_code());
        }
    };
    std::process::exit(local::run(&Home::from_env(), &params, stdin.into()));
}
