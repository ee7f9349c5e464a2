//! postern-authcheck's job, as a qmail-queue filter between postern-smtpd and the
//! queue: read the message and the envelope, check, remove forged
//! Authentication-Results fields, prepend ours and hand the message to the real
//! queue program; exit with its code, or with qmail-queue's refusals (31 for
//! good, 71 for now) when the policy refuses.

use super::{header, Checker, Decision};
use crate::os::home::Home;
use crate::os::log;
use crate::queue::submit::{self, exit};
use crate::queue::Envelope;
use std::io::Read;
use std::net::IpAddr;

const PROGRAM: &str = "postern-authcheck";

/// qmail-queue's "permanently refuses" and "temporarily refuses".
pub const REFUSED: i32 = 31;
pub const DEFERRED: i32 = 71;

/// Run the filter on `message` (fd 0) and `envelope` (fd 1, read once the
/// message ended). `ip` and `helo` come from postern-smtpd. Returns the exit code.
pub fn run(home: &Home, message: &mut dyn Read, envelope: &mut dyn Read, ip: Option<IpAddr>, helo: &str) -> i32 {
    let mut msg = Vec::new();
    if let Err(e) = message.read_to_end(&mut msg) {
        log::line(PROGRAM, &format!("reading the message on fd 0: {e}"));
        return exit::READ;
    }
    let mut env = Vec::new();
    if let Err(e) = envelope.read_to_end(&mut env) {
        log::line(PROGRAM, &format!("reading the envelope on fd 1: {e}"));
        return exit::READ;
    }
    // No envelope: the client went away and smtpd gave up; nothing to queue.
    if env.is_empty() {
        return exit::READ;
    }
    let envelope = match Envelope::parse(&env) {
        Ok(e) => e,
        Err(e) => {
            log::line(PROGRAM, &format!("the envelope on fd 1 does not parse: {e}"));
            return exit::ENVELOPE;
        }
    };
    let Some(ip) = ip else {
        log::line(PROGRAM, "TCPREMOTEIP is not an IP address; postern-smtpd sets it (see INTERNALS.md)");
        return exit::CONFIG;
    };
    let checker = match Checker::new(home) {
        Ok(c) => c,
        Err(e) => {
            log::line(PROGRAM, &e.to_string());
            return exit::CONFIG;
        }
    };
    let sender = envelope.sender.as_str().to_string();
    let report = checker.check(ip, helo, &sender, &msg);
    let (stripped, forged) = header::strip_ours(&msg, &checker.policy.authserv_id);
    let verdict = match &report.decision {
        Decision::Accept => "accepted".to_string(),
        Decision::Refuse(s, t) => format!("refused {s} {t}"),
        Decision::Defer(s, t) => format!("deferred {s} {t}"),
    };
    log::line(
        PROGRAM,
        &format!(
            "{verdict}: from <{sender}> ip {ip} helo {}: {}{}",
            log::one_line(helo.as_bytes()),
            report.summary,
            if forged > 0 { format!("; removed {forged} Authentication-Results field(s) claiming our id") } else { String::new() }
        ),
    );
    match report.decision {
        Decision::Refuse(..) => return REFUSED,
        Decision::Defer(..) => return DEFERRED,
        Decision::Accept => {}
    }
    let mut out = report.header.into_bytes();
    out.extend_from_slice(&stripped);
    match submit::submit_id(home, &mut out.as_slice(), &envelope) {
        Ok(id) => {
            // smtpd names it in its reply (`submit::IDFD_ENV`).
            if let Some(id) = id {
                submit::tell_id(&id);
            }
            0
        }
        Err(e) => {
            log::line(PROGRAM, &format!("queueing: {e}"));
            e.code
        }
    }
}
