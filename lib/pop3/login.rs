//! The POP3 AUTHORIZATION state (postern-popup): greeting, CAPA, USER/PASS,
//! AUTH PLAIN (RFC 5034), STLS (RFC 2595) and QUIT, then the login goes to a
//! checkpassword program that runs the POP3 server as the mailbox owner.
//!
//! The client's descriptors go down the chain as they are (popup's fd 0/1 become
//! the checkpassword program's and then pop3d's), so popup reads its input one
//! byte at a time: whatever the client pipelined after PASS stays in the socket
//! for pop3d. popup waits for the chain: exit 1 or 2 means the login failed (the
//! client hears only `-ERR [AUTH] authentication failed`, after a delay, whatever
//! the reason, and may try again), exit 111 that it could not be checked now
//! (`-ERR [SYS/TEMP]`, after the same delay: postern-auth's limits, a database it
//! cannot read); any other end means pop3d served the session. After STLS the caller relays TLS (see tlsrelay) to a fresh popup.

use crate::auth::checkpassword::{self, Attempt};
use crate::net::session::{NetError, Session};
use crate::pop3::command::{self as pop3, Command};
use crate::proto::base64;
use crate::proto::line::{Line, LineReader};
use crate::proto::sasl::{Credentials, Exchange, Mechanism, SaslError, Step};
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

/// Set in the environment of the popup that runs behind the TLS relay: `tls`
/// after STLS, `implicit` on an implicit-TLS port.
pub const INNER_ENV: &str = "POSTERN_POPUP_INNER";

/// How an AUTH exchange ended.
enum Sasl {
    Login(Credentials),
    Failed,
    Cancelled,
}

pub struct Popup {
    pub hostname: String,
    /// AUTHPROG and its arguments (the POP3 server and its maildir).
    pub child: Vec<OsString>,
    /// Offered by STLS when set (and not already in TLS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Running behind the TLS relay: no second STLS.
    pub secure: bool,
    /// Send the greeting: not after STLS (the client had it before), but on a
    /// plain port and behind the relay of an implicit-TLS port (995).
    pub greet: bool,
    /// Added to the wait after each failed login (`authfaildelay`).
    pub fail_delay: Duration,
    pub max_failures: u32,
    /// The client, for log lines.
    pub remote: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// QUIT before logging in.
    Quit,
    /// The client went away or timed out.
    Dropped(String),
    /// Too many wrong logins: disconnected.
    TooManyFailures,
    /// A login succeeded and the chain ended with this status.
    Served(Option<i32>),
    /// STLS was accepted: the caller starts the TLS relay now.
    StartTls,
}

impl Popup {
    fn capabilities(&self) -> String {
        let mut c = String::from(
            "+OK capability list follows\r\nUSER\r\nUIDL\r\nTOP\r\nPIPELINING\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nSASL PLAIN\r\n",
        );
        if self.tls.is_some() && !self.secure {
            c.push_str("STLS\r\n");
        }
        c.push_str("IMPLEMENTATION postern\r\n.\r\n");
        c
    }

    /// The AUTHORIZATION state on `net` until a login is served, or the end.
    pub fn run(&self, net: &mut Session, log: &mut dyn FnMut(&str)) -> Outcome {
        match self.session(net, log) {
            Ok(o) => o,
            Err(e) => Outcome::Dropped(e.to_string()),
        }
    }

    fn session(&self, net: &mut Session, log: &mut dyn FnMut(&str)) -> Result<Outcome, NetError> {
        if self.greet {
            net.write(format!("+OK {} POP3 server ready\r\n", self.hostname).as_bytes());
        }
        let mut lines = LineReader::new(pop3::MAX_SASL);
        let mut user: Option<Vec<u8>> = None;
        let mut failures = 0;
        loop {
            net.flush()?;
            let text = match read_line(net, &mut lines)? {
                Line::Text(t) => t,
                Line::TooLong => {
                    net.write(format!("-ERR line too long: at most {} octets\r\n", pop3::MAX_COMMAND).as_bytes());
                    continue;
                }
            };
            if text.contains(&0) {
                net.write(format!("{}\r\n", pop3::NUL_REPLY).as_bytes());
                continue;
            }
            let cmd = pop3::parse(&text);
            if text.len() + 2 > pop3::MAX_COMMAND && !matches!(cmd, Command::Auth { .. }) {
                net.write(format!("-ERR line too long: at most {} octets\r\n", pop3::MAX_COMMAND).as_bytes());
                continue;
            }
            let login = match cmd {
                Command::Capa => {
                    net.write(self.capabilities().as_bytes());
                    continue;
                }
                Command::Quit => {
                    net.write(b"+OK bye\r\n");
                    net.flush()?;
                    return Ok(Outcome::Quit);
                }
                Command::Stls if self.secure => {
                    net.write(b"-ERR TLS is already active\r\n");
                    continue;
                }
                Command::Stls if self.tls.is_none() => {
                    net.write(b"-ERR STLS is not available: this server has no certificate\r\n");
                    continue;
                }
                Command::Stls => {
                    net.write(b"+OK begin TLS negotiation\r\n");
                    net.flush()?;
                    return Ok(Outcome::StartTls);
                }
                Command::User(u) => {
                    user = Some(u);
                    net.write(b"+OK send PASS\r\n");
                    continue;
                }
                Command::Pass(p) => match user.take() {
                    Some(u) => Some((u, p)),
                    None => {
                        net.write(b"-ERR USER first\r\n");
                        continue;
                    }
                },
                Command::Auth { mechanism: None, .. } => {
                    net.write(b"+OK\r\nPLAIN\r\n.\r\n");
                    continue;
                }
                Command::Auth { mechanism: Some(m), initial } => {
                    // PLAIN is the one offered (CAPA's SASL line).
                    let Some(mechanism) = Mechanism::parse(&m).filter(|m| *m == Mechanism::Plain) else {
                        net.write(b"-ERR [AUTH] unsupported mechanism; use PLAIN\r\n");
                        continue;
                    };
                    match self.sasl(net, &mut lines, mechanism, initial)? {
                        Sasl::Login(c) => Some((c.login, c.password)),
                        Sasl::Failed => None,
                        Sasl::Cancelled => {
                            net.write(b"-ERR authentication cancelled\r\n");
                            continue;
                        }
                    }
                }
                Command::Bad(why) => {
                    net.write(format!("-ERR {why}\r\n").as_bytes());
                    continue;
                }
                _ => {
                    net.write(b"-ERR not logged in: USER and PASS, or AUTH PLAIN, first\r\n");
                    continue;
                }
            };
            let mut temporary = false;
            if let Some((login, password)) = &login {
                match self.attempt(net, login, password, log)? {
                    Attempt::Served(status) => return Ok(Outcome::Served(status)),
                    Attempt::Temporary => temporary = true,
                    Attempt::Failed => {}
                }
            }
            failures += 1;
            std::thread::sleep(self.fail_delay * failures);
            if temporary {
                // RFC 3206: the login could not be checked now (postern-auth's
                // limits, or a database it cannot read); its log says which.
                net.write(b"-ERR [SYS/TEMP] cannot check logins now; try again later\r\n");
            } else {
                net.write(b"-ERR [AUTH] authentication failed\r\n");
            }
            if failures >= self.max_failures {
                log(&format!("{} wrong logins from {}: disconnecting", failures, self.remote));
                net.flush()?;
                return Ok(Outcome::TooManyFailures);
            }
        }
    }

    /// An AUTH exchange, from the initial response or after "+ ".
    fn sasl(&self, net: &mut Session, lines: &mut LineReader, mechanism: Mechanism, initial: Option<Vec<u8>>) -> Result<Sasl, NetError> {
        let mut step = Exchange::start(mechanism, initial.as_deref());
        loop {
            match step {
                Ok((_, Step::Done(c))) => return Ok(Sasl::Login(c)),
                Ok((mut x, Step::Challenge(c))) => {
                    net.write(format!("+ {}\r\n", base64::encode(c)).as_bytes());
                    net.flush()?;
                    match read_line(net, lines)? {
                        Line::Text(t) => step = x.respond(&t).map(|s| (x, s)),
                        Line::TooLong => return Ok(Sasl::Failed),
                    }
                }
                Err(SaslError::Cancelled) => return Ok(Sasl::Cancelled),
                // Undecodable or malformed: a failed login like a wrong password.
                Err(_) => return Ok(Sasl::Failed),
            }
        }
    }

    /// Run the chain with the login on fd 3: it served the session, or the login
    /// failed (logged here with the real reason), for good or for now.
    fn attempt(&self, net: &mut Session, login: &[u8], password: &[u8], log: &mut dyn FnMut(&str)) -> Result<Attempt, NetError> {
        net.flush()?;
        let setup = |cmd: &mut std::process::Command| {
            cmd.env_remove(INNER_ENV);
        };
        Ok(checkpassword::attempt(&self.child, setup, login, password, &self.remote, log))
    }
}

/// One line, read a byte at a time so nothing after it leaves the socket.
fn read_line(net: &mut Session, lines: &mut LineReader) -> Result<Line, NetError> {
    let mut b = [0u8; 1];
    loop {
        if let Some(l) = lines.next_line() {
            return Ok(l);
        }
        let n = net.read(&mut b)?;
        lines.push(&b[..n]);
    }
}
