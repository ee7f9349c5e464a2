//! postern-bouncesaying TEXT [PROGRAM [ARG...]] (qmail's bouncesaying(1)): print
//! TEXT and exit 100 (bounce), always or only if PROGRAM exits 0. PROGRAM exiting
//! 111 gives 111; any other code gives 0 (go on with the next line).

use postern::deliver::helpers;
use postern::error::{Classify, EXIT_PERM};

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let Some(text) = args.first().map(|a| a.to_string_lossy().into_owned()) else {
        eprintln!("usage: postern-bouncesaying TEXT [PROGRAM [ARG...]]");
        std::process::exit(EXIT_PERM);
    };
    match helpers::bouncesaying(&text, &args[1..]) {
        Ok(v) => {
            if !v.say.is_empty() {
                println!("{}", v.say);
            }
            std::process::exit(v.code)
        }
        Err(e) => {
            eprintln!("postern-bouncesaying: {e}");
            std::process::exit(e.kind().exit_code());
        }
    }
}
