//! The server side of SASL PLAIN (RFC 4616) and LOGIN, as SMTP AUTH (RFC 4954),
//! POP3 AUTH (RFC 5034) and IMAP AUTHENTICATE run them: a small state machine
//! that takes the client's lines and says what to send next.
//!
//! Challenges are raw bytes; the protocol base64-encodes them ("334 " or "+ "
//! in front). A response of `*` cancels; an initial response of `=` is empty.

use super::base64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// A mechanism by name, any case.
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            _ => None,
        }
    }
}

/// What a finished exchange yields.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub login: Vec<u8>,
    pub password: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*`.
    Cancelled,
    /// A response is not base64.
    Base64,
    /// PLAIN's response is not `authzid NUL login NUL password` with a login, or
    /// names another identity to act as (nobody may act for another user here).
    Malformed,
}

impl std::fmt::Display for SaslError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SaslError::Cancelled => "authentication cancelled",
            SaslError::Base64 => "cannot decode the response (base64)",
            SaslError::Malformed => "PLAIN needs authzid NUL user NUL password",
        })
    }
}

/// The next thing to send.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge (raw; the protocol base64-encodes it) and call
    /// `respond` with the client's next line.
    Challenge(&'static [u8]),
    Done(Credentials),
}

/// One exchange in progress.
#[derive(Debug)]
pub struct Exchange {
    mechanism: Mechanism,
    /// LOGIN's user name, once given.
    user: Option<Vec<u8>>,
}

fn decode(response: &[u8]) -> Result<Vec<u8>, SaslError> {
    match response {
        b"*" => Err(SaslError::Cancelled),
        b"=" => Ok(Vec::new()),
        r => base64::decode(r).ok_or(SaslError::Base64),
    }
}

fn plain(decoded: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = decoded.split(|&b| b == 0);
    let (authz, login, password) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(l), Some(p), None) => (a, l, p),
        _ => return Err(SaslError::Malformed),
    };
    if login.is_empty() || (!authz.is_empty() && authz != login) {
        return Err(SaslError::Malformed);
    }
    Ok(Credentials { login: login.to_vec(), password: password.to_vec() })
}

impl Exchange {
    /// Start `mechanism`, with the initial response if the command carried one.
    pub fn start(mechanism: Mechanism, initial: Option<&[u8]>) -> Result<(Exchange, Step), SaslError> {
        let mut x = Exchange { mechanism, user: None };
        let step = match initial {
            Some(r) => x.respond(r)?,
            None => Step::Challenge(x.challenge()),
        };
        Ok((x, step))
    }

    fn challenge(&self) -> &'static [u8] {
        match (self.mechanism, &self.user) {
            (Mechanism::Plain, _) => b"",
            (Mechanism::Login, None) => b"Username:",
            (Mechanism::Login, Some(_)) => b"Password:",
        }
    }

    /// The client's answer to the last challenge.
    pub fn respond(&mut self, response: &[u8]) -> Result<Step, SaslError> {
        let decoded = decode(response)?;
        match self.mechanism {
            Mechanism::Plain => plain(&decoded).map(Step::Done),
            Mechanism::Login => match self.user.take() {
                None => {
                    self.user = Some(decoded);
                    Ok(Step::Challenge(self.challenge()))
                }
                Some(login) => Ok(Step::Done(Credentials { login, password: decoded })),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(l: &str, p: &str) -> Step {
        Step::Done(Credentials { login: l.into(), password: p.into() })
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let (_, step) = Exchange::start(Mechanism::Plain, Some(b"AGFAYgBwdw==")).unwrap();
        assert_eq!(step, creds("a@b", "pw"));
        let (mut x, step) = Exchange::start(Mechanism::Plain, None).unwrap();
        assert_eq!(step, Step::Challenge(b""));
        assert_eq!(x.respond(base64::encode(b"a@b\0a@b\0pw").as_bytes()).unwrap(), creds("a@b", "pw"));
        for bad in [&b"root\0a@b\0pw"[..], b"\0\0pw", b"a@b pw", b"\0a\0b\0c"] {
            assert_eq!(Exchange::start(Mechanism::Plain, Some(base64::encode(bad).as_bytes())).unwrap_err(), SaslError::Malformed);
        }
        assert_eq!(Exchange::start(Mechanism::Plain, Some(b"=")).unwrap_err(), SaslError::Malformed);
        assert_eq!(Exchange::start(Mechanism::Plain, Some(b"AG?=")).unwrap_err(), SaslError::Base64);
    }

    #[test]
    fn login_asks_for_user_then_password() {
        let (mut x, step) = Exchange::start(Mechanism::Login, None).unwrap();
        assert_eq!(step, Step::Challenge(b"Username:"));
        assert_eq!(x.respond(b"dXNlcg==").unwrap(), Step::Challenge(b"Password:"));
        assert_eq!(x.respond(b"cGFzcw==").unwrap(), creds("user", "pass"));
        let (mut x, step) = Exchange::start(Mechanism::Login, Some(b"dXNlcg==")).unwrap();
        assert_eq!(step, Step::Challenge(b"Password:"));
        assert_eq!(x.respond(b"*").unwrap_err(), SaslError::Cancelled);
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(Mechanism::parse("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse("LOGIN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
    }
}
