//! postern-local: one local delivery, with qmail-local's arguments.
//!
//! `postern-local USER HOMEDIR LOCAL DASH EXT DOMAIN SENDER DEFAULTDELIVERY`, run as
//! the recipient with the message on fd 0 (seekable; a pipe is copied to memory).
//! Prints one line saying what happened (an RFC 3463 code first) and exits 0 when
//! every delivery is durable, 100 on a permanent failure, 111 on a temporary one.

use postern::error::{Classify, EXIT_OK};
use postern::home::Home;
use postern::local::{self, Params};
use std::io::Write;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let params = match Params::from_args(&args) {
        Ok(p) => p,
        Err(e) => {
            say(&e.to_string());
            std::process::exit(e.kind().exit_code());
        }
    };
    let home = Home::from_env();
    let mut message = match local::seekable(postern::sys::protocol_fd(0)) {
        Ok(f) => f,
        Err(e) => {
            let e = local::LocalError::Message(e);
            say(&e.to_string());
            std::process::exit(e.kind().exit_code());
        }
    };
    match local::deliver(&home, &params, &mut message) {
        Ok(report) => {
            say(&report.to_string());
            std::process::exit(EXIT_OK);
        }
        Err(e) => {
            say(&e.to_string());
            std::process::exit(e.kind().exit_code());
        }
    }
}
