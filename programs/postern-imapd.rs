//! postern-imapd MAILDIR: one authenticated IMAP session on fd 0/1, run by a
//! checkpassword program (postern-auth) as the mailbox owner in its home, after
//! postern-imapup read the login. See lib/imap/session.rs.
//!
//! Its first line answers the login command, whose tag comes in
//! POSTERN_IMAP_TAG. Exit 0 after a session, 100 when it could not start;
//! never 1, 2 or 111, which postern-imapup reads as a failed login.

use postern::config::control::Control;
use postern::config::settings::TIMEOUTIMAP;
use postern::error::EXIT_PERM;
use postern::imap::folders::Store;
use postern::imap::login::TAG_ENV;
use postern::imap::session::{End, Imapd};
use postern::net::session::Session;
use postern::os::home::Home;
use postern::os::log;
use std::os::fd::AsFd;

const ME: &str = "postern-imapd";

fn main() {
    postern::version::exit_if_asked(ME);
    let user = std::env::var("USER").unwrap_or_default();
    let mut logf = |m: &str| log::line(ME, &format!("{user}: {m}"));
    let timeout = Control::new(&Home::from_env()).seconds_or_default(&TIMEOUTIMAP, |m| logf(m));
    // The same descriptor the session reads; only polled (IDLE), never read here.
    let stdin = std::io::stdin();
    let input_fd = stdin.as_fd();
    let mut net = match Session::stdio(timeout) {
        Ok(s) => s,
        Err(e) => {
            logf(&format!("the connection must be on fds 0 and 1: {e}"));
            std::process::exit(EXIT_PERM);
        }
    };
    let tag =
        std::env::var(TAG_ENV).ok().filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic())).unwrap_or_else(|| "*".into());
    let Some(maildir) = std::env::args_os().nth(1) else {
        logf("usage: postern-imapd MAILDIR (run by a checkpassword program)");
        net.write(format!("{tag} NO [UNAVAILABLE] server misconfigured: no maildir given\r\n").as_bytes());
        let _ = net.flush();
        std::process::exit(EXIT_PERM);
    };
    let store = Store::new(std::path::PathBuf::from(maildir));
    match Imapd::new(store, &mut net, input_fd, timeout, &mut logf).run(&tag) {
        End::Logout => {}
        End::Dropped(why) => log::line(ME, &format!("{user}: session ended without LOGOUT ({why})")),
    }
}
