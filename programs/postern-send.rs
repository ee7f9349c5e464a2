//! postern-send: the scheduler daemon (qmail-send's job); see lib/send/daemon.rs
//! and lib/send/scheduler.rs.
//!
//! Started by postern-start with postern-lspawn's request socket on fd 3 and its
//! answer pipe on fd 4, and the socket to postern-rspawn on fd 5 (both ways) when
//! it runs. Every request goes with its queue file (SCM_RIGHTS). Runs as postern-s. Exit 111 when it cannot start or go on.

use postern::os::home::Home;
use postern::os::log;
use postern::os::sys;
use postern::send::daemon::{self, Config, Spawners};
use std::fs::File;

const PROGRAM: &str = "postern-send";

fn die(msg: &str) -> ! {
    log::line(PROGRAM, msg);
    std::process::exit(postern::error::EXIT_TEMP);
}

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    // postern-start already made us postern-s; run by hand as root, we do it.
    if let Err(e) = postern::os::privs::drop_to(postern::os::privs::Service::Send) {
        die(&e.to_string());
    }
    let home = Home::from_env();
    let cfg = Config::load(&home).unwrap_or_else(|e| die(&format!("{e}; fix it and restart")));
    let (Ok(local_requests), Ok(local_answers)) = (sys::take_fd(3), sys::take_fd(4)) else {
        die("fds 3 and 4 must be the socket and the pipe to postern-lspawn; start me with postern-start");
    };
    let remote = match sys::fd_is_open(5) {
        true => Some(File::from(sys::take_fd(5).unwrap_or_else(|e| die(&format!("fd 5: {e}"))))),
        false => None,
    };
    let spawners = Spawners { local_requests: local_requests.into(), local_answers: local_answers.into(), remote };
    if let Err(e) = daemon::run(home, cfg, spawners) {
        die(&e);
    }
}
