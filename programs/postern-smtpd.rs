//! postern-smtpd: one SMTP session on fd 0 (client to us) and fd 1 (us to client),
//! as postern-listen, tcpserver, inetd or systemd (Accept=yes) hand it over.
//!
//! Reads TCPREMOTEIP, TCPREMOTEHOST and RELAYCLIENT from the environment and the
//! control files from $POSTERN_HOME/control. Accepted messages go to
//! postern-queue (or $POSTERN_QUEUE / $QMAILQUEUE). Started as root, it becomes
//! postern-d first. Exits 0 after QUIT, 1 when the session ended otherwise, 111
//! when it could not start.

use postern::home::Home;
use postern::log;
use postern::netio::{NetError, Session};
use postern::privs::{self, Service};
use postern::smtpd::{Client, Config, End, Smtpd, SmtpdError};
use std::time::Duration;

const PROGRAM: &str = "postern-smtpd";

fn main() {
    if let Err(e) = privs::drop_to(Service::Daemon) {
        log::line(PROGRAM, &e.to_string());
        std::process::exit(111);
    }
    let home = Home::from_env();
    let client = Client::from_env();
    let cfg = match Config::load(&home) {
        Ok(c) => c,
        Err(e) => {
            // Say why to the client too: it will retry, and the admin sees the log.
            log::line(PROGRAM, &e.to_string());
            let mut s = Session::stdio(Duration::from_secs(10));
            s.write(b"421 4.3.0 server configuration error; try again later\r\n");
            s.close();
            std::process::exit(111);
        }
    };
    let mut smtpd = Smtpd::new(&home, &cfg, &client, Session::stdio(cfg.timeout));
    match smtpd.run() {
        Ok(End::Quit) => std::process::exit(0),
        Ok(End::Dropped(why)) => {
            log::line(PROGRAM, &format!("dropped {}: {why}", client.ip));
            std::process::exit(1);
        }
        Err(SmtpdError::Net(NetError::Closed)) => std::process::exit(1),
        Err(e) => {
            log::line(PROGRAM, &format!("session with {} ended: {e}", client.ip));
            std::process::exit(1);
        }
    }
}
