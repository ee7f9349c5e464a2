//! postern-smtpd: one SMTP session on fd 0 (client to us) and fd 1 (us to client),
//! as postern-listen, tcpserver, inetd or systemd (Accept=yes) hand it over.
//!
//! Reads TCPREMOTEIP, TCPREMOTEHOST and RELAYCLIENT from the environment and the
//! control files from $POSTERN_HOME/control. Accepted messages go to
//! postern-queued or postern-queue (or $POSTERN_QUEUE / $QMAILQUEUE). Started as
//! root, it becomes postern-d first. Exits 0 after QUIT, 1 when the session ended
//! otherwise, 111 when it could not start. postern-listen runs the same code
//! (`smtpd::session_main`) in a forked child instead of this program when it
//! serves the postern-smtpd next to it.

fn main() {
    postern::version::exit_if_asked("postern-smtpd");
    std::process::exit(postern::smtp::server::session_main());
}
