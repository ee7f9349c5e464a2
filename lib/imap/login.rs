//! The IMAP not-authenticated state (postern-imapup): greeting, CAPABILITY,
//! NOOP, ID, ENABLE (refused), STARTTLS, LOGIN, AUTHENTICATE PLAIN (with
//! SASL-IR) and LOGOUT; every other command is refused unread. A login goes to
//! a checkpassword program that runs postern-imapd as the mailbox owner.
//!
//! As in lib/pop3/login.rs, the client's descriptors go down the chain as they
//! are, so input is read a byte at a time: what the client pipelined after
//! LOGIN stays in the socket for imapd, which also answers the login's tag
//! (it knows whether the mailbox opened). Exit 1 or 2 of the chain is a failed
//! login, 111 a login that cannot be checked now; both answered NO after a delay
//! that grows with each failure. STARTTLS hands the socket to the TLS relay
//! (lib/net/tlsrelay.rs) with nothing read past the command, so nothing the
//! client sent in clear after it is ever run.

use super::command::{self, Command};
use super::parse::{Event, Limits, Reader};
use super::response::{login_capabilities, ID_RESPONSE};
use crate::auth::checkpassword::{self, Attempt};
use crate::net::session::{NetError, Session};
use crate::proto::base64;
use crate::proto::sasl::{Credentials, Exchange, SaslError, Step};
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

/// Set in the environment of the imapup behind the TLS relay: `starttls` (no
/// second greeting) or `implicit` (port 993: greet).
pub const INNER_ENV: &str = "POSTERN_IMAPUP_INNER";
/// The LOGIN or AUTHENTICATE command's tag, for postern-imapd to answer.
pub const TAG_ENV: &str = "POSTERN_IMAP_TAG";

pub struct Imapup {
    pub hostname: String,
    /// AUTHPROG and its arguments (postern-imapd and its maildir).
    pub child: Vec<OsString>,
    /// Offered by STARTTLS when set (and not already in TLS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Running behind the TLS relay.
    pub secure: bool,
    /// Greet (false only behind the relay after STARTTLS).
    pub greet: bool,
    /// Added to the wait after each failed login (`authfaildelay`).
    pub fail_delay: Duration,
    pub max_failures: u32,
    /// The client, for log lines.
    pub remote: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Logout,
    /// The client went away or timed out.
    Dropped(String),
    TooManyFailures,
    /// A login succeeded and the chain ended with this status.
    Served(Option<i32>),
    /// STARTTLS was accepted: the caller starts the TLS relay now.
    StartTls,
}

impl Imapup {
    fn starttls_offered(&self) -> bool {
        self.tls.is_some() && !self.secure
    }

    pub fn run(&self, net: &mut Session, log: &mut dyn FnMut(&str)) -> Outcome {
        match self.session(net, log) {
            Ok(o) => o,
            Err(e) => Outcome::Dropped(e.to_string()),
        }
    }

    fn session(&self, net: &mut Session, log: &mut dyn FnMut(&str)) -> Result<Outcome, NetError> {
        if self.greet {
            net.write(
                format!("* OK [CAPABILITY {}] {} IMAP server ready\r\n", login_capabilities(self.starttls_offered()), self.hostname)
                    .as_bytes(),
            );
        }
        let mut input = Reader::new(Limits::LOGIN);
        let mut failures = 0;
        loop {
            net.flush()?;
            let (tag, tokens) = match next_event(net, &mut input)? {
                Event::Command(tag, tokens) => (tag, tokens),
                Event::Reject(r) => {
                    net.write(r.line().as_bytes());
                    continue;
                }
                Event::NeedMore | Event::Continue => unreachable!("next_event reads until a command"),
            };
            let verb = tokens[0].atom().map(|v| v.to_ascii_uppercase()).unwrap_or_default();
            let allowed: &[&[u8]] = &[b"CAPABILITY", b"NOOP", b"LOGOUT", b"STARTTLS", b"LOGIN", b"AUTHENTICATE", b"ID", b"ENABLE"];
            if !allowed.contains(&verb.as_slice()) {
                net.write(
                    format!("{tag} BAD not logged in: LOGIN or AUTHENTICATE first (CAPABILITY, STARTTLS, ID, NOOP, LOGOUT meanwhile)\r\n")
                        .as_bytes(),
                );
                continue;
            }
            let cmd = match command::parse(&tag, &tokens) {
                Ok(c) => c,
                Err(r) => {
                    net.write(r.line().as_bytes());
                    continue;
                }
            };
            let login = match cmd {
                Command::Capability => {
                    net.write(
                        format!("* CAPABILITY {}\r\n{tag} OK CAPABILITY completed\r\n", login_capabilities(self.starttls_offered()))
                            .as_bytes(),
                    );
                    continue;
                }
                Command::Noop => {
                    net.write(format!("{tag} OK NOOP completed\r\n").as_bytes());
                    continue;
                }
                Command::Id => {
                    net.write(format!("{ID_RESPONSE}{tag} OK ID completed\r\n").as_bytes());
                    continue;
                }
                Command::Enable(_) => {
                    net.write(format!("{tag} BAD ENABLE only after login\r\n").as_bytes());
                    continue;
                }
                Command::Logout => {
                    net.write(format!("* BYE logging out\r\n{tag} OK LOGOUT completed\r\n").as_bytes());
                    net.flush()?;
                    return Ok(Outcome::Logout);
                }
                Command::StartTls if self.secure => {
                    net.write(format!("{tag} BAD TLS is already active\r\n").as_bytes());
                    continue;
                }
                Command::StartTls if self.tls.is_none() => {
                    net.write(format!("{tag} NO STARTTLS is not available: this server has no certificate\r\n").as_bytes());
                    continue;
                }
                Command::StartTls => {
                    net.write(format!("{tag} OK begin TLS negotiation now\r\n").as_bytes());
                    net.flush()?;
                    return Ok(Outcome::StartTls);
                }
                Command::Login { .. } | Command::Authenticate { .. } if self.starttls_offered() => {
                    net.write(format!("{tag} NO [PRIVACYREQUIRED] no passwords in the clear: STARTTLS first (or port 993)\r\n").as_bytes());
                    continue;
                }
                Command::Login { user, password } => Some((user, password)),
                Command::Authenticate { mechanism, initial } => {
                    if mechanism != "PLAIN" {
                        net.write(format!("{tag} NO unsupported mechanism; use PLAIN\r\n").as_bytes());
                        continue;
                    }
                    match self.sasl(net, &mut input, initial)? {
                        Ok(c) => Some((c.login, c.password)),
                        Err(SaslError::Cancelled) => {
                            net.write(format!("{tag} BAD authentication cancelled\r\n").as_bytes());
                            continue;
                        }
                        Err(_) => None,
                    }
                }
                _ => {
                    net.write(format!("{tag} BAD not logged in\r\n").as_bytes());
                    continue;
                }
            };
            let mut temporary = false;
            if let Some((user, password)) = &login {
                match self.attempt(net, &tag, user, password, log)? {
                    Attempt::Served(status) => return Ok(Outcome::Served(status)),
                    Attempt::Temporary => temporary = true,
                    Attempt::Failed => {}
                }
            }
            failures += 1;
            std::thread::sleep(self.fail_delay * failures);
            if temporary {
                net.write(format!("{tag} NO [UNAVAILABLE] cannot check logins now; try again later\r\n").as_bytes());
            } else {
                net.write(format!("{tag} NO [AUTHENTICATIONFAILED] authentication failed\r\n").as_bytes());
            }
            if failures >= self.max_failures {
                log(&format!("{failures} wrong logins from {}: disconnecting", self.remote));
                net.write(b"* BYE too many wrong logins\r\n");
                net.flush()?;
                return Ok(Outcome::TooManyFailures);
            }
        }
    }

    /// AUTHENTICATE PLAIN, from the initial response or after `+ `.
    fn sasl(&self, net: &mut Session, input: &mut Reader, initial: Option<Vec<u8>>) -> Result<Result<Credentials, SaslError>, NetError> {
        let mut step = Exchange::start(crate::proto::sasl::Mechanism::Plain, initial.as_deref());
        loop {
            match step {
                Ok((_, Step::Done(c))) => return Ok(Ok(c)),
                Ok((mut x, Step::Challenge(c))) => {
                    net.write(format!("+ {}\r\n", base64::encode(c)).as_bytes());
                    net.flush()?;
                    let line = read_line(net, input)?;
                    step = x.respond(&line).map(|s| (x, s));
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    fn attempt(&self, net: &mut Session, tag: &str, login: &[u8], password: &[u8], log: &mut dyn FnMut(&str)) -> Result<Attempt, NetError> {
        net.flush()?;
        let setup = |cmd: &mut std::process::Command| {
            cmd.env_remove(INNER_ENV).env(TAG_ENV, tag);
        };
        Ok(checkpassword::attempt(&self.child, setup, login, password, &self.remote, log))
    }
}

/// The next command or refusal, reading a byte at a time so that nothing past
/// it leaves the socket; `+ OK` for a synchronizing literal.
fn next_event(net: &mut Session, input: &mut Reader) -> Result<Event, NetError> {
    let mut b = [0u8; 1];
    loop {
        match input.event() {
            Event::NeedMore => {}
            Event::Continue => {
                net.write(b"+ OK\r\n");
                net.flush()?;
            }
            e => return Ok(e),
        }
        let n = net.read(&mut b)?;
        input.push(&b[..n]);
    }
}

/// A raw line (an AUTHENTICATE response), a byte at a time.
fn read_line(net: &mut Session, input: &mut Reader) -> Result<Vec<u8>, NetError> {
    let mut b = [0u8; 1];
    loop {
        if let Some(l) = input.take_line() {
            return Ok(l);
        }
        let n = net.read(&mut b)?;
        input.push(&b[..n]);
    }
}
