//! Standard output of the tools people run (postern-admin, `sendmail -bp`,
//! `postern-inject -n`, `postern-listen -c`). A reader that goes away early
//! (`postern-admin queue list | head`) ends the tool quietly with 141, what a
//! shell reports for a C tool killed by SIGPIPE, instead of println!'s panic.
//!
//! SIGPIPE itself stays ignored (Rust's default) in every program: daemons must
//! survive a peer that hangs up, and sendmail and inject write the message to
//! postern-queue through a pipe, where a dead reader is an error to report.

use std::io::{self, Write};

/// The exit code when standard output's reader has gone (128 + SIGPIPE).
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// Write all of `bytes` to standard output and flush. A closed pipe exits 141
/// without a word; any other failure (a full disk) is reported and exits 111.
pub fn print(bytes: impl AsRef<[u8]>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes.as_ref()).and_then(|_| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        let program = std::env::args().next().unwrap_or_default();
        eprintln!("{program}: cannot write to standard output: {e}");
        std::process::exit(crate::error::EXIT_TEMP);
    }
}

/// println! through `print`: `postern::outln!("{n} records")`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::os::out::print(format!("{}\n", format_args!($($arg)*)))
    };
}
