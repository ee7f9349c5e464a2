//! postern-condredirect NEWADDRESS PROGRAM [ARG...] (qmail's condredirect(1)):
//! run PROGRAM on the message; if it exits 0, forward the message to NEWADDRESS
//! and exit 99 (skip the rest of the dot file); 111 stays 111; otherwise exit 0.

use postern::deliver::helpers;
use postern::deliver::local::seekable;
use postern::error::{Classify, EXIT_PERM};
use postern::os::home::Home;

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: postern-condredirect NEWADDRESS PROGRAM [ARG...]");
        std::process::exit(EXIT_PERM);
    }
    let newaddr = args[0].to_string_lossy().into_owned();
    let home = Home::from_env();
    let result = seekable(postern::os::sys::protocol_fd(0))
        .map_err(helpers::HelperError::Message)
        .and_then(|mut m| helpers::condredirect(&home, &newaddr, &args[1..], &mut m));
    match result {
        Ok(v) => {
            if !v.say.is_empty() {
                println!("{}", v.say);
            }
            std::process::exit(v.code)
        }
        Err(e) => {
            eprintln!("postern-condredirect: {e}");
            std::process::exit(e.kind().exit_code());
        }
    }
}
