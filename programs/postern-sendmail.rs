//! postern-sendmail: the sendmail command line, for cron, web apps and MUAs
//! (the manual page is doc/postern-sendmail.8).
//!
//! Recipients come from the arguments; with -t also from the To/Cc/Bcc headers
//! (arguments are added to them, as Postfix does). -f/-r set the envelope sender,
//! -F the full name for an added From. Without -i/-oi a line holding only "." ends
//! the message (sendmail's tradition). -N, -R and -V set the DSN NOTIFY, RET and
//! ENVID. -bp lists the queue (like `mailq`), for every user, without message
//! contents; -q (and -qR, -qS, -q with an interval) asks postern-send to retry
//! everything now, through postern-queued, so no write access to the queue is
//! needed (`queue::listing::mailq`, `retry`). -bs is an SMTP session on stdin
//! and stdout, -bv says what would happen to each recipient, -bi (-I, or the
//! name newaliases) compiles the aliases file. Options of sendmail's and
//! Postfix's that only tune their own delivery (-o*, -O, -v, -B, -U, -L, -n,
//! -X, ...) are accepted and ignored.
//! Exit 0 done, 100 permanent failure, 111 temporary.

use postern::error::{Classify, EXIT_OK, EXIT_PERM};
use postern::inject::{self, Request};
use postern::os::home::Home;
use postern::queue::listing;

const PROGRAM: &str = "postern-sendmail";

enum Mode {
    Deliver,
    List,
    Flush,
    Smtp,
    Verify,
    NewAliases,
}

fn refuse(why: &str) -> ! {
    eprintln!("{PROGRAM}: {why}");
    std::process::exit(EXIT_PERM);
}

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    let mut req = Request::default();
    let mut dot_ends = true;
    let invoked_as = std::env::args().next().unwrap_or_default();
    let mut mode = if invoked_as.ends_with("mailq") {
        Mode::List
    } else if invoked_as.ends_with("newaliases") {
        Mode::NewAliases
    } else {
        Mode::Deliver
    };
    let bad = |e: inject::InjectError| fail(e);
    let mut opts = inject::options::ShortOptions::new(std::env::args().skip(1).collect());
    while let Some((flag, attached)) = opts.next_option() {
        let rest = attached.as_str();
        let mut value = |name: &str| opts.value(rest).unwrap_or_else(|| refuse(&format!("-{name} needs a value")));
        match flag.as_str() {
            "t" => req.from_headers = true,
            "f" | "r" => req.sender = Some(value(&flag)),
            "F" => req.full_name = Some(value("F")),
            "i" => dot_ends = false,
            "o" if rest == "i" => dot_ends = false,
            "o" => {} // -oem, -oep, -odb, -odi, -om, -oQ..., any other -o option
            "N" => req.set_notify(&value("N")).unwrap_or_else(bad),
            "R" => req.set_ret(&value("R")).unwrap_or_else(bad),
            "V" => req.set_envid(&value("V")).unwrap_or_else(bad),
            "I" => mode = Mode::NewAliases,
            // Sendmail's and Postfix's own tuning, meaningless here: -v verbose,
            // -U initial submission, -m me too, -n no aliasing, -G gateway,
            // -A use submit.cf, -d debug (its value attached).
            "v" | "U" | "m" | "n" | "G" | "A" | "d" => {}
            // The same, with a value: -B body type, -X log file, -h hop count,
            // -L syslog tag, -O option=value, -C config, -p protocol, -Q reason, -D.
            "B" | "X" | "h" | "L" | "O" | "C" | "p" | "Q" | "D" => {
                let _ = value(&flag);
            }
            "q" => mode = Mode::Flush,
            "b" => match rest {
                "m" | "" => mode = Mode::Deliver,
                "p" => mode = Mode::List,
                "s" => mode = Mode::Smtp,
                "v" => mode = Mode::Verify,
                "i" => mode = Mode::NewAliases,
                // Sendmail's daemon, test and host-status modes: postern's are other programs.
                other => refuse(&format!(
                    "-b{other} is not supported; postern-sendmail queues mail (-bm), lists the queue (-bp), speaks SMTP on stdin (-bs), verifies recipients (-bv) and compiles aliases (-bi); the daemons are started by postern-start and postern-listen"
                )),
            },
            _ => {
                refuse(&format!("unknown option -{flag}{attached}; the options postern-sendmail takes are in its manual page (man postern-sendmail)"))
            }
        }
    }
    req.recipients = opts.rest();
    let home = Home::from_env();
    match mode {
        Mode::List => match listing::mailq(&home) {
            Ok(text) => {
                postern::os::out::print(text);
                std::process::exit(EXIT_OK);
            }
            Err(e) => fail(e),
        },
        Mode::Flush => match listing::retry(&home) {
            Ok(said) if said.starts_with("ok") => std::process::exit(EXIT_OK),
            Ok(said) => fail(listing::ListingError::Refused(format!("postern-queued answered: {}", said.trim_end()))),
            Err(e) => fail(e),
        },
        Mode::Smtp => std::process::exit(postern::smtp::server::local_session_main()),
        Mode::Verify => verify(&home, &req.recipients),
        Mode::NewAliases => match postern::users::aliases::compile(&home) {
            Ok((path, n)) => {
                postern::os::out::print(format!("{}: {n} aliases\n", path.display()));
                std::process::exit(EXIT_OK)
            }
            Err(e) => fail(e),
        },
        Mode::Deliver => {}
    }
    if !req.from_headers && req.recipients.is_empty() {
        fail(inject::InjectError::NoRecipients);
    }
    let input = match inject::read_input(&mut std::io::stdin().lock(), dot_ends) {
        Ok(i) => i,
        Err(e) => fail(e),
    };
    match inject::inject(&home, &req, &input) {
        Ok(_) => std::process::exit(EXIT_OK),
        Err(e) => fail(e),
    }
}

fn fail(e: impl std::fmt::Display + Classify) -> ! {
    eprintln!("{PROGRAM}: {e}");
    std::process::exit(e.kind().exit_code());
}

/// -bv: one line per recipient, sendmail's "ADDRESS... deliverable: ..." form;
/// exit 100 when any would bounce.
fn verify(home: &Home, recipients: &[String]) -> ! {
    if recipients.is_empty() {
        fail(inject::InjectError::NoRecipients);
    }
    let answers = inject::verify::verify(home, recipients).unwrap_or_else(|e| fail(e));
    let mut out = String::new();
    for (addr, v) in &answers {
        match v {
            Ok(what) => out.push_str(&format!("{addr}... deliverable: {what}\n")),
            Err(why) => out.push_str(&format!("{addr}... undeliverable: {why}\n")),
        }
    }
    postern::os::out::print(out);
    std::process::exit(if answers.iter().all(|(_, v)| v.is_ok()) { EXIT_OK } else { EXIT_PERM });
}
