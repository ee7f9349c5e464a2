//! postern-except PROGRAM [ARG...] (qmail's except(1)): run PROGRAM; exit 100 if
//! it exited 0, 0 if it exited 100, its own code otherwise (111 if killed).

use postern::deliver::helpers;
use postern::error::{Classify, EXIT_PERM};

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: postern-except PROGRAM [ARG...]");
        std::process::exit(EXIT_PERM);
    }
    match helpers::except(&args) {
        Ok(v) => std::process::exit(v.code),
        Err(e) => {
            eprintln!("postern-except: {e}");
            std::process::exit(e.kind().exit_code());
        }
    }
}
