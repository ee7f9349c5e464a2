//! postern-sendmail: the sendmail command line, for cron, web apps and MUAs.
//!
//! Recipients come from the arguments; with -t also from the To/Cc/Bcc headers
//! (arguments are added to them, as Postfix does). -f/-r set the envelope sender,
//! -F the full name for an added From. Without -i/-oi a line holding only "." ends
//! the message (sendmail's tradition). -bp lists the queue (like `mailq`), for
//! every user, without message contents; -q (and -qR, -qS, -q with an interval)
//! asks postern-send to retry everything now, through postern-queued, so no
//! write access to the queue is needed (`queue::listing::mailq`, `retry`). Options sendmail uses for its own
//! delivery modes (-o*, -v, -N, -R, -B, -U, -odb, ...) are accepted and ignored.
//! Exit 0 queued, 100 permanent failure, 111 temporary.

use postern::error::{Classify, EXIT_OK, EXIT_PERM};
use postern::inject::{self, Request};
use postern::os::home::Home;
use postern::queue::listing;

const PROGRAM: &str = "postern-sendmail";

enum Mode {
    Deliver,
    List,
    Flush,
}

fn refuse(why: &str) -> ! {
    eprintln!("{PROGRAM}: {why}");
    std::process::exit(EXIT_PERM);
}

fn main() {
    let mut req = Request::default();
    let mut dot_ends = true;
    let invoked_as = std::env::args().next().unwrap_or_default();
    let mut mode = if invoked_as.ends_with("mailq") { Mode::List } else { Mode::Deliver };
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
            "v" | "U" | "m" => {}
            "N" | "R" | "B" | "V" | "X" | "h" | "L" => {
                let _ = value(&flag);
            }
            "q" => mode = Mode::Flush,
            "b" => match rest {
                "m" | "" => mode = Mode::Deliver,
                "p" => mode = Mode::List,
                "s" => refuse("-bs (SMTP on standard input) is not supported yet; use -t or give recipients as arguments"),
                other => refuse(&format!("-b{other} is not supported; postern-sendmail only queues mail (-bm) and lists the queue (-bp)")),
            },
            _ => {
                refuse(&format!("unknown option -{flag}{attached}; see the list of supported options in postern-sendmail's documentation"))
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
