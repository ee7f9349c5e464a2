//! postern-pop3d MAILDIR: one POP3 session (TRANSACTION and UPDATE states) on fd
//! 0/1, run by a checkpassword program as the mailbox owner in its home, after
//! postern-popup read the login. See lib/pop3/server.rs and lib/pop3/mailbox.rs.
//!
//! Its first line answers the login: `+OK N messages`, or `-ERR` when the maildir
//! is missing or in use by another session. Exit 0 after a session (QUIT or not),
//! 100 when it could not start; never 1, 2 or 111, which postern-popup reads as a
//! failed login.

use postern::config::control::Control;
use postern::config::settings::TIMEOUTPOP3;
use postern::error::EXIT_PERM;
use postern::net::session::Session;
use postern::os::home::Home;
use postern::os::log;
use postern::pop3::mailbox::{Mailbox, MailboxError};
use postern::pop3::server::{End, Pop3d};

const ME: &str = "postern-pop3d";

fn main() {
    postern::version::exit_if_asked(ME);
    let user = std::env::var("USER").unwrap_or_default();
    let mut logf = |m: &str| log::line(ME, &format!("{user}: {m}"));
    let timeout = Control::new(&Home::from_env()).seconds_or_default(&TIMEOUTPOP3, |m| logf(m));
    let mut net = match Session::stdio(timeout) {
        Ok(s) => s,
        Err(e) => {
            logf(&format!("the connection must be on fds 0 and 1: {e}"));
            std::process::exit(EXIT_PERM);
        }
    };
    let Some(maildir) = std::env::args_os().nth(1) else {
        logf("usage: postern-pop3d MAILDIR (run by a checkpassword program)");
        net.write(b"-ERR [SYS/PERM] server misconfigured: no maildir given\r\n");
        let _ = net.flush();
        std::process::exit(EXIT_PERM);
    };
    let mut mb = match Mailbox::open(std::path::Path::new(&maildir), &mut logf) {
        Ok(mb) => mb,
        Err(e) => {
            logf(&e.to_string());
            let reply: &[u8] = match e {
                MailboxError::InUse(_) => b"-ERR [IN-USE] the mailbox is in use by another POP3 session; try again later\r\n",
                MailboxError::Missing(_) => b"-ERR [SYS/TEMP] the mailbox does not exist; ask the administrator\r\n",
                MailboxError::Io(..) => b"-ERR [SYS/TEMP] the mailbox cannot be read now; try again later\r\n",
            };
            net.write(reply);
            let _ = net.flush();
            std::process::exit(EXIT_PERM);
        }
    };
    let end = Pop3d::new(&mut mb, &mut net, &mut logf).run();
    // The client has its last answer: hang up, then move what it saw out of new/.
    net.close();
    mb.settle(&mut logf);
    match end {
        End::Quit(n) => logf(&format!("quit, {n} deleted, {} listed", mb.messages.len())),
        End::Dropped(why) => logf(&format!("session ended without QUIT ({why}); nothing deleted")),
    }
}
