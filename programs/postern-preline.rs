//! postern-preline [-frd] PROGRAM [ARG...]: run PROGRAM with $UFLINE, $RPLINE and
//! $DTLINE in front of the message (qmail's preline(1)); -f, -r, -d leave one
//! out. Exits with the program's code; 111 if it could not run or was killed.

use postern::deliver::helpers;
use postern::error::Classify;

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let mut stdin = postern::os::sys::protocol_fd(0);
    let result = helpers::preline_args(&args).and_then(|(flags, argv)| helpers::preline(&flags, &argv, &mut stdin));
    match result {
        Ok(v) => std::process::exit(v.code),
        Err(e) => {
            eprintln!("postern-preline: {e}");
            std::process::exit(e.kind().exit_code());
        }
    }
}
