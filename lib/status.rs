//! RFC 3463 enhanced status codes: `class.subject.detail`, e.g. 5.1.1.
//!
//! A `Status` is decided where a result is decided (a delivery, a refusal, a
//! remote server's reply) and carried as a value to where it is printed: an SMTP
//! reply, a spawn answer, a bounce's Status field. Text is parsed into a status
//! only where a foreign program hands one over as text (a qmail-style delivery
//! program's report line, a remote server's reply), once, by `Status::split`.

use crate::error::Kind;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status {
    class: u8,
    subject: u16,
    detail: u16,
}

impl Status {
    /// `class` must be 2, 4 or 5; subject and detail at most 999 (the RFC's
    /// three digits).
    pub const fn new(class: u8, subject: u16, detail: u16) -> Status {
        assert!(class == 2 || class == 4 || class == 5, "an enhanced status class is 2, 4 or 5");
        assert!(subject <= 999 && detail <= 999, "subject and detail have at most three digits");
        Status { class, subject, detail }
    }

    pub const fn class(self) -> u8 {
        self.class
    }

    pub const fn subject(self) -> u16 {
        self.subject
    }

    pub const fn detail(self) -> u16 {
        self.detail
    }

    /// Temporary (4) or permanent (5); None for success (2).
    pub fn kind(self) -> Option<Kind> {
        match self.class {
            4 => Some(Kind::Temporary),
            5 => Some(Kind::Permanent),
            _ => None,
        }
    }

    /// The same subject and detail in the class of `kind` (a temporary result
    /// quoted in a permanent bounce after the queue lifetime, for instance).
    pub const fn as_kind(self, kind: Kind) -> Status {
        let class = match kind {
            Kind::Temporary => 4,
            Kind::Permanent => 5,
        };
        Status { class, ..self }
    }

    /// The generic status of a class: 2.0.0, 4.0.0, 5.0.0.
    pub const fn of_kind(kind: Kind) -> Status {
        Status::new(5, 0, 0).as_kind(kind)
    }

    /// Parse `2.1.5`; None unless it is exactly an enhanced status code.
    pub fn parse(s: &str) -> Option<Status> {
        let mut parts = s.split('.');
        let (c, subj, det) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || c.len() != 1 {
            return None;
        }
        let num =
            |p: &str| (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u16>().ok()).flatten();
        let class = match c {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return None,
        };
        Some(Status { class, subject: num(subj)?, detail: num(det)? })
    }

    /// A status at the start of a text from a foreign program ("5.1.1 no such
    /// user"): the status and the rest, or None when the text does not start
    /// with one.
    pub fn split(text: &str) -> Option<(Status, &str)> {
        let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
        Status::parse(first).map(|s| (s, rest))
    }

    /// A foreign program's report: the status its text starts with when that
    /// agrees with the class the program's exit decided (`generic`), and the
    /// rest; else `generic` and the whole text.
    pub fn from_report(generic: Status, text: &str) -> (Status, &str) {
        match Status::split(text) {
            Some((s, rest)) if s.class == generic.class => (s, rest),
            _ => (generic, text),
        }
    }

    // The codes the suite decides itself, named by what they mean.
    pub const OK: Status = Status::new(2, 0, 0);
    pub const SENDER_OK: Status = Status::new(2, 1, 0);
    pub const RECIPIENT_OK: Status = Status::new(2, 1, 5);
    /// VRFY cannot verify.
    pub const CANNOT_VERIFY: Status = Status::new(2, 5, 2);
    pub const AUTHENTICATED: Status = Status::new(2, 7, 0);
    pub const NO_MAILBOX: Status = Status::new(5, 1, 1);
    pub const BAD_DESTINATION_SYNTAX: Status = Status::new(5, 1, 3);
    pub const NO_SUCH_DOMAIN: Status = Status::new(5, 1, 2);
    pub const BAD_SENDER: Status = Status::new(5, 1, 7);
    pub const NULL_MX: Status = Status::new(5, 1, 10);
    pub const MAILBOX_UNAVAILABLE: Status = Status::new(4, 2, 0);
    pub const MAILBOX_MISSING: Status = Status::new(4, 2, 1);
    pub const MAILBOX_FULL: Status = Status::new(4, 2, 2);
    pub const MAIL_SYSTEM: Status = Status::new(4, 3, 0);
    pub const TOO_BIG: Status = Status::new(5, 3, 4);
    pub const SYSTEM_CONFIG: Status = Status::new(4, 3, 5);
    pub const REFUSED: Status = Status::new(5, 3, 0);
    pub const NO_ANSWER: Status = Status::new(4, 4, 1);
    pub const CONNECTION_DROPPED: Status = Status::new(4, 4, 2);
    pub const ROUTING: Status = Status::new(4, 4, 3);
    pub const NO_ROUTE: Status = Status::new(4, 4, 4);
    pub const EXPIRED: Status = Status::new(4, 4, 7);
    pub const LOOP: Status = Status::new(5, 4, 6);
    pub const PROTOCOL: Status = Status::new(4, 5, 0);
    /// Improper pipelining (text sent before the reply it needed).
    pub const PROTOCOL_VIOLATION: Status = Status::new(5, 5, 0);
    pub const INVALID_COMMAND: Status = Status::new(5, 5, 1);
    pub const SYNTAX: Status = Status::new(5, 5, 2);
    pub const TOO_MANY_RECIPIENTS: Status = Status::new(4, 5, 3);
    pub const BAD_ARGUMENTS: Status = Status::new(5, 5, 4);
    /// Content we do not accept (a NUL byte).
    pub const BAD_CONTENT: Status = Status::new(5, 6, 0);
    pub const CONVERSION_NEEDED: Status = Status::new(5, 6, 3);
    pub const NEEDS_UTF8: Status = Status::new(5, 6, 7);
    pub const SECURITY: Status = Status::new(4, 7, 0);
    pub const DENIED: Status = Status::new(5, 7, 1);
    pub const TLS_REQUIRED: Status = Status::new(4, 7, 4);
    pub const TLS_FAILED: Status = Status::new(4, 7, 5);
    /// RFC 4954: AUTH needed first (the submission port).
    pub const AUTH_REQUIRED: Status = Status::new(5, 7, 0);
    pub const AUTH_FAILED: Status = Status::new(5, 7, 8);
    pub const ENCRYPTION_REQUIRED: Status = Status::new(5, 7, 11);
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        assert_eq!(Status::parse("5.1.1"), Some(Status::NO_MAILBOX));
        assert_eq!(Status::parse("4.3.0").map(|s| s.to_string()).as_deref(), Some("4.3.0"));
        assert_eq!(Status::parse("5.1.10"), Some(Status::NULL_MX));
        for bad in ["5.1", "3.1.1", "5.1.1.1", "5..1", "5.1.1000", "55.1.1", "5.a.1", ""] {
            assert_eq!(Status::parse(bad), None, "{bad}");
        }
        assert_eq!(Status::split("5.1.1 no mailbox"), Some((Status::NO_MAILBOX, "no mailbox")));
        assert_eq!(Status::split("4.3.0"), Some((Status::MAIL_SYSTEM, "")));
        assert_eq!(Status::split("Sorry 5.1.1"), None);
    }

    #[test]
    fn kinds() {
        assert_eq!(Status::NO_MAILBOX.kind(), Some(Kind::Permanent));
        assert_eq!(Status::MAIL_SYSTEM.kind(), Some(Kind::Temporary));
        assert_eq!(Status::OK.kind(), None);
        assert_eq!(Status::MAIL_SYSTEM.as_kind(Kind::Permanent).to_string(), "5.3.0");
        assert_eq!(Status::of_kind(Kind::Temporary).to_string(), "4.0.0");
    }
}
