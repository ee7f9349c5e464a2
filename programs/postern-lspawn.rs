//! postern-lspawn: runs local deliveries for postern-send.
//!
//! Reads spawn requests on fd 0, a Unix socket, each with its queue file attached,
//! and writes results on fd 1 (lib/send/spawn.rs). Runs as root in a system
//! install because it must become each recipient; it opens nothing in the queue
//! and parses only the spawn protocol and the users database. Each delivery goes
//! to a resident worker that became the recipient (lib/send/lworker.rs), which
//! reads the message from the file it was handed.

use postern::os::home::Home;
use postern::os::log;
use postern::send::lspawn::LocalStarter;

const PROGRAM: &str = "postern-lspawn";

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    let home = Home::from_env();
    let mut starter = match LocalStarter::new(home) {
        Ok(s) => s,
        Err(e) => {
            log::line(PROGRAM, &format!("{e}; fix it and restart"));
            std::process::exit(111);
        }
    };
    if let Err(e) = postern::send::spawner::serve(PROGRAM, &mut starter) {
        log::line(PROGRAM, &format!("stopped: {e}"));
        std::process::exit(111);
    }
}
