//! postern-bouncesaying TEXT [PROGRAM [ARG...]] (qmail's bouncesaying(1)): print
//! TEXT and exit 100 (bounce), always or only if PROGRAM exits 0. PROGRAM exiting
//! 111 gives 111; any other code gives 0 (go on with the next line).

use postern::deliver::helpers::{self, HelperError};

const PROGRAM: &str = "postern-bouncesaying";

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let Some(text) = args.first().map(|a| a.to_string_lossy().into_owned()) else {
        helpers::fail(PROGRAM, &HelperError::Usage("usage: postern-bouncesaying TEXT [PROGRAM [ARG...]]"));
    };
    match helpers::bouncesaying(&text, &args[1..]) {
        Ok(v) => helpers::finish(v),
        Err(e) => helpers::fail(PROGRAM, &e),
    }
}
