//! postern-vacation [-p PERIOD_SECONDS] [-d DBFILE] MESSAGEFILE: answer the
//! message on fd 0 with MESSAGEFILE, once per sender and period (default 7 days),
//! never to robots or lists (RFC 3834). Meant for a dot-qmail line before or
//! after the real delivery: it exits 0 whatever it decided (a setup mistake is
//! reported, and the mail is still delivered), 111 only when the answered-senders
//! file or the queue fails temporarily.

use postern::deliver::vacation;
use postern::error::{Classify, Kind, EXIT_OK};
use postern::message::file::seekable;
use postern::os::home::Home;

fn main() {
    postern::version::exit_if_asked("postern-vacation");
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let home = Home::from_env();
    let result = vacation::parse_args(&args).and_then(|o| {
        let m = postern::os::sys::take_fd(0).and_then(|fd| seekable(fd.into())).map_err(vacation::VacationError::Message)?;
        vacation::run(&home, &o, &m)
    });
    match result {
        // The report line goes to the delivery's log; a reader that went away
        // changes nothing about what was decided (so no println!, which panics).
        Ok(vacation::Outcome::Replied(to)) => report(&format!("postern-vacation: answered {to}")),
        Ok(vacation::Outcome::Skipped(why)) => report(&format!("postern-vacation: {why}")),
        Err(e) => {
            report(&e.report());
            if e.kind() == Kind::Temporary {
                std::process::exit(e.kind().exit_code());
            }
        }
    }
    std::process::exit(EXIT_OK);
}

fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}
