//! postern-preline [-frd] PROGRAM [ARG...]: run PROGRAM with $UFLINE, $RPLINE and
//! $DTLINE in front of the message (qmail's preline(1)); -f, -r, -d leave one
//! out. Exits with the program's code; 111 if it could not run or was killed.

use postern::deliver::helpers;

const PROGRAM: &str = "postern-preline";

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let result = helpers::preline_args(&args)
        .and_then(|(flags, argv)| Ok((flags, argv, postern::os::sys::take_fd(0).map_err(helpers::HelperError::Message)?)))
        .and_then(|(flags, argv, stdin)| helpers::preline(&flags, &argv, &mut std::fs::File::from(stdin)));
    match result {
        Ok(v) => helpers::finish(v),
        Err(e) => helpers::fail(PROGRAM, &e),
    }
}
