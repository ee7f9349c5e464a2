//! postern-listen: a TCP super-server (tcpserver's job).
//!
//!     postern-listen [-u USER] [-c MAXCONN] [-C MAXPERIP] [-x RULES.cdb] HOST PORT PROGRAM [ARG...]
//!     postern-listen -X RULES.txt RULES.cdb
//!
//! Binds HOST:PORT ("0" for every IPv4 address, "::" for every address), then,
//! if root and -u is given, becomes USER. Each connection runs PROGRAM with the
//! socket on fd 0 and fd 1 and PROTO, TCPLOCALIP, TCPLOCALPORT, TCPREMOTEIP,
//! TCPREMOTEPORT set, plus the variables of the matching rule in RULES.cdb
//! (lib/config/rules.rs documents the format; -X compiles it). Over -c connections in
//! all (default 40) or -C from one address (default 10), a new connection is
//! closed at once. Logs to stderr; exits 0 on SIGTERM, leaving running
//! connections to finish.
//!
//! When PROGRAM is the postern-smtpd next to this program, without arguments,
//! each connection's child runs postern-smtpd's code straight after the fork:
//! the same session, uid and environment, without the cost of a program start
//! (the largest single cost of an SMTP message on the test machines). -E
//! always execs PROGRAM instead, for a fresh address-space layout per session.

use postern::net::listen::{self, Mode};
use postern::{config::rules, os::log};

const PROGRAM: &str = "postern-listen";

/// postern-smtpd's session, if PROGRAM is the postern-smtpd installed beside us.
fn builtin_session(opts: &listen::Options) -> Option<listen::Builtin> {
    let [program] = opts.program.as_slice() else { return None };
    let program = std::fs::canonicalize(program).ok()?;
    let ours = std::env::current_exe().ok()?.parent()?.join("postern-smtpd");
    (!opts.exec_always && program == std::fs::canonicalize(ours).ok()?).then_some(postern::smtp::server::session_main as listen::Builtin)
}

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    if let Err(e) = postern::os::sys::drop_inherited_fds() {
        postern::os::log::line(PROGRAM, &format!("cannot let go of inherited descriptors: {e}"));
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let fail = |e: &dyn std::fmt::Display, code: i32| -> ! {
        log::line(PROGRAM, &e.to_string());
        std::process::exit(code)
    };
    let opts = match listen::parse_args(&args) {
        Ok(Mode::Serve(o)) => o,
        Ok(Mode::Compile(src, dst)) => match rules::compile(&src, &dst) {
            Ok(n) => {
                postern::outln!("{}: {n} rules compiled into {}", src.display(), dst.display());
                return;
            }
            Err(e) => fail(&e, 111),
        },
        Err(e) => fail(&e, 100),
    };
    let listener = listen::bind(&opts.host, opts.port).unwrap_or_else(|e| fail(&e, 111));
    if let Err(e) = listen::drop_privileges(opts.user.as_deref()) {
        fail(&e, 111);
    }
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(opts.port);
    let builtin = builtin_session(&opts);
    let how = if builtin.is_some() { " (postern-smtpd built in: forked, not exec'd)" } else { "" };
    log::line(PROGRAM, &format!("ready on {}:{port}{how}", opts.host));
    if let Err(e) = postern::os::notify::ready(&format!("listening on {}:{port}", opts.host)) {
        log::line(PROGRAM, &format!("cannot tell systemd we are up (NOTIFY_SOCKET): {e}"));
    }
    if let Err(e) = listen::serve(listener, &opts, builtin) {
        fail(&e, 111);
    }
}
