//! postern-auth PROG [ARG...]: a checkpassword program (see lib/auth/checkpassword.rs).
//!
//! Reads `login NUL password NUL timestamp NUL` from fd 3; on a right login becomes
//! the user, sets HOME, USER (and SHELL), changes to HOME and execs PROG ARGS.
//! Exit 1: wrong login or password; 2: misuse; 111: try again later.
//!
//! It is setuid root in a system install (runnable by the postern-d group only), so
//! it reads nothing from its environment but the home (which postern::os::home already
//! refuses to take from a caller who is not root) and TCPREMOTEIP (only as the key
//! of the failed-login count, lib/auth/limits.rs), and passes the rest on untouched
//! to PROG, which runs as the user.
//!
//! Before the password is checked: the client's address must not be over
//! authfailmax, and the check must get one of authconcurrency places; if not, it
//! exits 111 (a temporary failure) and logs why.

use postern::auth::checkpassword::{self, EXIT_BAD, EXIT_MISUSE, EXIT_TEMP};
use postern::auth::limits;
use postern::auth::verify;
use postern::os::home::Home;
use postern::os::log;
use std::os::unix::process::CommandExt;

const ME: &str = "postern-auth";

fn main() {
    postern::version::exit_if_asked(ME);
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        log::line(ME, "usage: postern-auth PROG [ARG...] with the login on fd 3");
        std::process::exit(EXIT_MISUSE);
    }
    let req = match checkpassword::read_fd3() {
        Ok(r) => r,
        Err(e) => {
            log::line(ME, &e.to_string());
            std::process::exit(EXIT_MISUSE);
        }
    };
    let home = Home::from_env();
    // The client's address only keys the count of failed logins (auth::limits).
    let client = std::env::var("TCPREMOTEIP").ok();
    let account = match limits::verify_limited(&home, client.as_deref(), &req.login, &req.password, &mut |m| log::line(ME, m)) {
        Ok(Some(a)) => a,
        // Nothing about why: the caller tells the client only "failed".
        Ok(None) => std::process::exit(EXIT_BAD),
        Err(e) => {
            log::line(ME, &format!("{e}; the login is refused for now"));
            std::process::exit(EXIT_TEMP);
        }
    };
    drop(req);
    if let Err(e) = verify::become_account(&account) {
        log::line(ME, &e.to_string());
        std::process::exit(if postern::os::privs::is_root() { EXIT_TEMP } else { EXIT_BAD });
    }
    let e = verify::command_for(&account, &args[0], &args[1..]).exec();
    log::error(ME, &format!("cannot run {} for {} in {}: {e}", args[0].to_string_lossy(), account.name, account.home.display()));
    std::process::exit(EXIT_TEMP);
}
