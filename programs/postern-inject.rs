//! postern-inject: qmail-inject's interface.
//!
//! `postern-inject [-f sender] [-F fullname] [-a] [-h] [-n] [recipient ...]`
//! Reads a message on stdin, completes its headers and queues it. Recipients: with
//! -a only the arguments, with -h only the To/Cc/Bcc headers; without either, the
//! arguments if there are any, else the headers. -n prints the completed message
//! instead of queueing it. Exit 0 queued, 100 permanent failure, 111 temporary.

use postern::error::{Classify, EXIT_OK, EXIT_PERM};
use postern::inject::{self, Request};
use postern::os::home::Home;

const PROGRAM: &str = "postern-inject";

fn usage(why: &str) -> ! {
    eprintln!("{PROGRAM}: {why}\nusage: {PROGRAM} [-f sender] [-F fullname] [-a] [-h] [-n] [recipient ...]");
    std::process::exit(EXIT_PERM);
}

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    let mut req = Request::default();
    let (mut only_args, mut only_headers, mut print) = (false, false, false);
    let mut opts = inject::options::ShortOptions::new(std::env::args().skip(1).collect());
    while let Some((flag, attached)) = opts.next_option() {
        let mut value = |name: &str| opts.value(&attached).unwrap_or_else(|| usage(&format!("-{name} needs a value")));
        match flag.as_str() {
            "f" => req.sender = Some(value("f")),
            "F" => req.full_name = Some(value("F")),
            "a" => only_args = true,
            "h" => only_headers = true,
            "n" => print = true,
            _ => usage(&format!("unknown option -{flag}{attached}")),
        }
    }
    let rest = opts.rest();
    req.from_headers = only_headers || (!only_args && rest.is_empty());
    if !only_headers {
        req.recipients = rest;
    }
    let home = Home::from_env();
    let input = match inject::read_input(&mut std::io::stdin().lock(), false) {
        Ok(i) => i,
        Err(e) => fail(e),
    };
    if print {
        match inject::prepare(&home, &req, &input, std::time::SystemTime::now()) {
            Ok((_, message)) => {
                postern::os::out::print(&message);
                std::process::exit(EXIT_OK);
            }
            Err(e) => fail(e),
        }
    }
    match inject::inject(&home, &req, &input) {
        Ok(_) => std::process::exit(EXIT_OK),
        Err(e) => fail(e),
    }
}

fn fail(e: inject::InjectError) -> ! {
    eprintln!("{PROGRAM}: {e}");
    std::process::exit(e.kind().exit_code());
}
