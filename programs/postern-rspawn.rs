//! postern-rspawn: runs remote deliveries for postern-send.
//!
//! fd 0 and fd 1 are one Unix socket from postern-start: spawn requests come in
//! with the queue file attached, results go out (lib/send/spawn.rs). Runs as postern-r;
//! parses only the spawn protocol and postern-remote's reports.

use postern::os::home::Home;
use postern::os::log;
use postern::send::rspawn::RemoteStarter;

const PROGRAM: &str = "postern-rspawn";

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    // postern-start already made us postern-r; run by hand as root, we do it.
    if let Err(e) = postern::os::privs::drop_to(postern::os::privs::Service::Remote) {
        log::line(PROGRAM, &e.to_string());
        std::process::exit(111);
    }
    let mut starter = match RemoteStarter::new(Home::from_env()) {
        Ok(s) => s,
        Err(e) => {
            log::line(PROGRAM, &e.to_string());
            std::process::exit(111);
        }
    };
    if let Err(e) = postern::send::spawner::serve(PROGRAM, &mut starter) {
        log::line(PROGRAM, &format!("stopped: {e}"));
        std::process::exit(111);
    }
}
