//! postern-authcheck: SPF, DKIM, DMARC and ARC checks on arrival, as a qmail-queue
//! filter. postern-smtpd runs it instead of the queue program for clients that
//! are neither authenticated nor relay clients when control/authcheck is 1.
//!
//! Message on fd 0, envelope on fd 1 (qmail-queue's protocol); the client's
//! address in TCPREMOTEIP and its HELO name in POSTERN_HELO. Adds an
//! Authentication-Results field, removes forged ones, and queues through the
//! queue program ($POSTERN_QUEUE / $QMAILQUEUE, else postern-queued or
//! postern-queue), exiting with its code; 31 when the DMARC policy refuses the
//! message, 71 when a DNS failure leaves a refusal open. Runs as smtpd's uid
//! (postern-d); started as root, it becomes postern-d first. Holds no key.

use postern::os::home::Home;
use postern::os::privs::{self, Service};
use postern::os::{log, sys};
use postern::queue::submit::exit;

const PROGRAM: &str = "postern-authcheck";

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    if let Err(e) = privs::drop_to(Service::Daemon) {
        log::line(PROGRAM, &e.to_string());
        std::process::exit(exit::HOME);
    }
    // A queue program naming this one would loop: go to the queue itself then.
    for var in ["POSTERN_QUEUE", "QMAILQUEUE"] {
        if std::env::var_os(var).is_some_and(|v| std::path::Path::new(&v).file_name() == Some(PROGRAM.as_ref())) {
            std::env::remove_var(var);
        }
    }
    let home = Home::from_env();
    let (Ok(message), Ok(envelope)) = (sys::take_fd(0), sys::take_fd(1)) else {
        log::line(PROGRAM, "the message must be on fd 0 and the envelope on fd 1");
        std::process::exit(exit::READ);
    };
    let ip = std::env::var("TCPREMOTEIP").ok().and_then(|v| v.parse().ok());
    let helo = std::env::var("POSTERN_HELO").unwrap_or_default();
    let code = postern::mailauth::filter::run(&home, &mut std::fs::File::from(message), &mut std::fs::File::from(envelope), ip, &helo);
    std::process::exit(code);
}
