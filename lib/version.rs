//! `--version`, answered alike by every program before it looks at anything
//! else: one line, the program's name and the suite's version.

/// The suite's version (Cargo.toml's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The line `--version` prints.
pub fn line(program: &str) -> String {
    format!("{program} (postern) {VERSION}")
}

/// When the only argument is `--version`, print the line and exit 0. Programs
/// with qmail's positional arguments never take `--version` as one (it is not
/// a user, a host or an address).
pub fn exit_if_asked(program: &str) {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "--version") && args.next().is_none() {
        crate::outln!("{}", line(program));
        std::process::exit(crate::error::EXIT_OK);
    }
}
