//! postern-remote: one message to the recipients of one domain, with qmail-remote's
//! interface.
//!
//! `postern-remote HOST SENDER RECIPIENT...`: HOST is the recipients' domain,
//! SENDER may be empty (the null sender), the message is on fd 0 (seekable; a pipe
//! is copied to memory), POSTERN_HOME names the home. On fd 1: one report per
//! recipient (`r` accepted, `h` refused for good, `s` refused for now), then one
//! for the message (`K` delivered to the `r` recipients, `Z` retry them, `D`
//! bounce them), each a letter, text and a NUL. A failure before any recipient was
//! tried prints only the message report, which then applies to every recipient.
//! Exit 0 after the reports; 111 only for a usage error.

use postern::error::EXIT_TEMP;
use postern::os::home::Home;
use postern::smtp::client::{self as remote, Job, Reports};
use postern::status::Status;
use std::io::Write;

fn main() {
    postern::version::exit_if_asked("postern-remote");
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: postern-remote HOST SENDER RECIPIENT [RECIPIENT...]");
        std::process::exit(EXIT_TEMP);
    }
    let job = Job { domain: args[0].clone(), sender: args[1].clone(), recipients: args[2..].to_vec() };
    let reports = run(&job);
    let mut out = std::io::stdout().lock();
    if out.write_all(&reports.encode()).and_then(|_| out.flush()).is_err() {
        std::process::exit(EXIT_TEMP);
    }
}

fn run(job: &Job) -> Reports {
    // Never talk to the network as root: become postern-r (a no-op for an
    // ordinary user's instance).
    if let Err(e) = postern::os::privs::drop_to(postern::os::privs::Service::Remote) {
        return Reports { recipients: Vec::new(), message: (b'Z', format!("{} {e}", Status::MAIL_SYSTEM)) };
    }
    let home = Home::from_env();
    match postern::os::sys::take_fd(0).and_then(|fd| postern::message::file::seekable(fd.into())) {
        Ok(message) => remote::deliver(&home, job, &message),
        Err(e) => Reports::failed(&remote::RemoteError::Message(e)),
    }
}
