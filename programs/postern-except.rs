//! postern-except PROGRAM [ARG...] (qmail's except(1)): run PROGRAM; exit 100 if
//! it exited 0, 0 if it exited 100, its own code otherwise (111 if killed).

use postern::deliver::helpers::{self, HelperError};

const PROGRAM: &str = "postern-except";

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        helpers::fail(PROGRAM, &HelperError::Usage("usage: postern-except PROGRAM [ARG...]"));
    }
    match helpers::except(&args) {
        Ok(v) => helpers::finish(v),
        Err(e) => helpers::fail(PROGRAM, &e),
    }
}
