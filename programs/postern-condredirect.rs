//! postern-condredirect NEWADDRESS PROGRAM [ARG...] (qmail's condredirect(1)):
//! run PROGRAM on the message; if it exits 0, forward the message to NEWADDRESS
//! and exit 99 (skip the rest of the dot file); 111 stays 111; otherwise exit 0.

use postern::deliver::helpers::{self, HelperError};
use postern::os::home::Home;

const PROGRAM: &str = "postern-condredirect";

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.len() < 2 {
        helpers::fail(PROGRAM, &HelperError::Usage("usage: postern-condredirect NEWADDRESS PROGRAM [ARG...]"));
    }
    let newaddr = args[0].to_string_lossy().into_owned();
    let home = Home::from_env();
    match helpers::message().and_then(|mut m| helpers::condredirect(&home, &newaddr, &args[1..], &mut m)) {
        Ok(v) => helpers::finish(v),
        Err(e) => helpers::fail(PROGRAM, &e),
    }
}
