//! Which kind of port a session program serves, from its environment: the
//! super-server in front of it (postern-listen, tcpserver, systemd) sets these
//! for the ports mail clients use (RFC 8314, RFC 6409), so one postern-smtpd and
//! one postern-popup serve every port.
//!
//! - `POSTERN_TLS=implicit`: the session starts with the TLS handshake (465 for
//!   SMTP, 995 for POP3), not with STARTTLS or STLS after a plain greeting.
//! - `POSTERN_SUBMISSION=1` (postern-smtpd): message submission (587 and 465):
//!   AUTH before any MAIL, authenticated clients may relay, and missing `Date:`
//!   and `Message-ID:` are added (see smtp::submission).
//!
//! Unset or empty means the plain port (25, 110). Any other value is an error
//! naming the variable: a misspelt mode must not quietly serve a port in the clear
//! or without AUTH.

use crate::net::session::{NetError, Session};
use crate::net::tls::TlsError;
use crate::os::home::Home;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub const TLS_VAR: &str = "POSTERN_TLS";
pub const SUBMISSION_VAR: &str = "POSTERN_SUBMISSION";

#[derive(Debug)]
pub enum PortError {
    /// A variable with a value that means nothing.
    Mode {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    /// Implicit TLS without control/servercert.pem.
    NoCertificate(PathBuf),
    Certificate(TlsError),
    /// The client's handshake failed or never came.
    Handshake(NetError),
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortError::Mode { var, value, expected } => {
                write!(f, "environment variable {var}={value:?} means nothing; set it to {expected} or leave it unset")
            }
            PortError::NoCertificate(p) => write!(
                f,
                "{TLS_VAR}=implicit, but there is no certificate {}: install one (see INSTALL) or serve this port without {TLS_VAR}",
                p.display()
            ),
            PortError::Certificate(e) => write!(f, "{e}"),
            PortError::Handshake(e) => write!(f, "TLS handshake: {e}"),
        }
    }
}

impl crate::error::Classify for PortError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            PortError::Mode { .. } => crate::error::Kind::Permanent,
            _ => crate::error::Kind::Temporary,
        }
    }
}

/// The modes of this session's port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortMode {
    /// Start with the TLS handshake.
    pub implicit_tls: bool,
    /// Message submission (SMTP only).
    pub submission: bool,
}

impl PortMode {
    /// From the values of `POSTERN_TLS` and `POSTERN_SUBMISSION` (None: unset).
    pub fn parse(tls: Option<&str>, submission: Option<&str>) -> Result<PortMode, PortError> {
        let implicit_tls = match tls.unwrap_or("") {
            "" => false,
            "implicit" => true,
            v => return Err(PortError::Mode { var: TLS_VAR, value: v.into(), expected: "\"implicit\"" }),
        };
        let submission = match submission.unwrap_or("") {
            "" | "0" => false,
            "1" => true,
            v => return Err(PortError::Mode { var: SUBMISSION_VAR, value: v.into(), expected: "1 (or 0)" }),
        };
        Ok(PortMode { implicit_tls, submission })
    }

    pub fn from_env() -> Result<PortMode, PortError> {
        let var = |n: &str| std::env::var_os(n).map(|v| v.to_string_lossy().into_owned());
        PortMode::parse(var(TLS_VAR).as_deref(), var(SUBMISSION_VAR).as_deref())
    }
}

/// The TLS configuration an implicit-TLS port needs: a missing certificate is
/// an error here, where STARTTLS would merely not be offered.
pub fn server_config(home: &Home) -> Result<Arc<rustls::ServerConfig>, PortError> {
    match crate::net::tls::server_config(home) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(PortError::NoCertificate(home.control_file("servercert.pem"))),
        Err(e) => Err(PortError::Certificate(e)),
    }
}

/// The handshake a session on an implicit-TLS port starts with, done by
/// `deadline` (a client that connects and says nothing is dropped).
pub fn start(net: &mut Session, home: &Home, deadline: Instant) -> Result<(), PortError> {
    let config = server_config(home)?;
    net.set_read_deadline(Some(deadline));
    let r = net.start_tls(config);
    net.set_read_deadline(None);
    r.map_err(PortError::Handshake)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_bad_values_are_named() {
        assert_eq!(PortMode::parse(None, None).unwrap(), PortMode::default());
        assert_eq!(PortMode::parse(Some("implicit"), Some("1")).unwrap(), PortMode { implicit_tls: true, submission: true });
        assert_eq!(PortMode::parse(Some(""), Some("0")).unwrap(), PortMode::default());
        let e = PortMode::parse(Some("yes"), None).unwrap_err();
        assert!(e.to_string().starts_with("environment variable POSTERN_TLS=\"yes\" means nothing"), "{e}");
        let e = PortMode::parse(None, Some("true")).unwrap_err();
        assert!(matches!(e, PortError::Mode { var: SUBMISSION_VAR, .. }), "{e}");
    }
}
