//! DSN parameters (RFC 3461) as postern-smtpd takes them from MAIL and RCPT and
//! the queue keeps them: per message RET and ENVID, per recipient NOTIFY and
//! ORCPT. postern-send honours them when it reports (send::dsn).
//!
//! ENVID and ORCPT are xtext: printable ASCII, with `+XX` for other bytes. They
//! are checked once here, at the edge (the SMTP command and the envelope
//! postern-queue reads), so that what ends up in a report is printable ASCII
//! after decoding: a `+0D+0A` cannot add a header field to a bounce.

/// Longest ENVID (RFC 3461 section 4.4) and ORCPT (section 4.2) we keep.
pub const MAX_ENVID: usize = 100;
pub const MAX_ORCPT: usize = 500;

/// RET: what a failure notice returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

impl Ret {
    pub fn parse(s: &str) -> Option<Ret> {
        match s.to_ascii_uppercase().as_str() {
            "FULL" => Some(Ret::Full),
            "HDRS" => Some(Ret::Hdrs),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// NOTIFY: which notices the sender wants; all false is NEVER. A recipient
/// without NOTIFY gets failure notices only (we send no delay notices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    /// `NEVER`, or a comma-separated list of SUCCESS, FAILURE, DELAY (any case).
    pub fn parse(s: &str) -> Option<Notify> {
        if s.eq_ignore_ascii_case("NEVER") {
            return Some(Notify::default());
        }
        let mut n = Notify::default();
        for w in s.split(',') {
            match w.to_ascii_uppercase().as_str() {
                "SUCCESS" => n.success = true,
                "FAILURE" => n.failure = true,
                "DELAY" => n.delay = true,
                _ => return None,
            }
        }
        Some(n)
    }

    pub fn encode(&self) -> String {
        let words: Vec<&str> = [(self.success, "SUCCESS"), (self.failure, "FAILURE"), (self.delay, "DELAY")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, w)| *w)
            .collect();
        if words.is_empty() {
            "NEVER".into()
        } else {
            words.join(",")
        }
    }
}

/// Whether `s` is xtext of at most `max` bytes whose decoded form is printable
/// ASCII (no control characters, so nothing that could break a header line).
pub fn valid_xtext(s: &str, max: usize) -> bool {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b'=') {
        return false;
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
            if i + 2 >= b.len() || !hex(b[i + 1]) || !hex(b[i + 2]) {
                return false;
            }
            let v = u8::from_str_radix(&s[i + 1..i + 3], 16).expect("two hex digits");
            if !(0x20..0x7f).contains(&v) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// The decoded form of valid xtext (`+2B` is `+`).
/// RFC 3461 xtext: '+', '=' and anything outside '!'..'~' as +XX.
pub fn encode_xtext(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

pub fn decode_xtext(s: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < s.len() {
        match s.as_bytes()[i] {
            b'+' if i + 3 <= s.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).map(char::from).unwrap_or('?'));
                i += 3;
            }
            c => {
                out.push(char::from(c));
                i += 1;
            }
        }
    }
    out
}

/// An ORCPT value: `addr-type;xtext`, the type an atom.
pub fn valid_orcpt(s: &str) -> bool {
    match s.split_once(';') {
        Some((t, a)) => {
            !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && valid_xtext(a, MAX_ORCPT) && s.len() <= MAX_ORCPT
        }
        None => false,
    }
}

/// The per-message parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageDsn {
    pub ret: Option<Ret>,
    /// ENVID, as xtext.
    pub envid: Option<String>,
}

/// The per-recipient parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptDsn {
    pub notify: Option<Notify>,
    /// ORCPT, `addr-type;xtext`.
    pub orcpt: Option<String>,
}

impl RcptDsn {
    /// Whether a failure is reported (the default, or FAILURE listed).
    pub fn wants_failure(&self) -> bool {
        self.notify.is_none_or(|n| n.failure)
    }

    pub fn wants_success(&self) -> bool {
        self.notify.is_some_and(|n| n.success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_words() {
        assert_eq!(Notify::parse("never"), Some(Notify::default()));
        assert_eq!(Notify::parse("Success,DELAY"), Some(Notify { success: true, failure: false, delay: true }));
        assert_eq!(Notify::parse("NEVER,SUCCESS"), None);
        assert_eq!(Notify::parse(""), None);
        assert_eq!(Notify::parse("failure,success").unwrap().encode(), "SUCCESS,FAILURE");
        assert_eq!(Notify::default().encode(), "NEVER");
        assert!(RcptDsn::default().wants_failure() && !RcptDsn::default().wants_success());
    }

    #[test]
    fn xtext() {
        assert!(valid_xtext("abc+2Bdef", 100));
        assert_eq!(decode_xtext("a+2Bb+3Dc"), "a+b=c");
        assert_eq!(encode_xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert!(valid_xtext(&encode_xtext("id 1+2"), 100) && !valid_xtext(&encode_xtext("caf\u{e9}"), 100));
        for bad in ["", "a=b", "a b", "a+", "a+2", "a+2b", "a+0D+0Ax", "a+7F", "\u{e9}"] {
            assert!(!valid_xtext(bad, 100), "{bad:?}");
        }
        assert!(!valid_xtext(&"x".repeat(101), 100));
        assert!(valid_orcpt("rfc822;a+2Bb@example.org"));
        for bad in ["a@b", ";a@b", "rfc 822;a", "rfc822;", "rfc822;a+0Ab"] {
            assert!(!valid_orcpt(bad), "{bad:?}");
        }
    }
}
