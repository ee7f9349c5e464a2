//! Envelope addresses. An `Address` that exists has been validated: no control
//! characters, no NUL, not longer than `MAX_LEN`. The null sender is the empty
//! address.

use std::fmt;

/// Longest address accepted anywhere in the suite (RFC 5321 allows a 256-octet
/// path; we allow more for old systems but refuse anything a line cannot hold).
pub const MAX_LEN: usize = 900;

const DOUBLE_BOUNCE: &str = "#@[]";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    TooLong(usize),
    ControlCharacter,
    NotUtf8,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::TooLong(n) => write!(f, "address is {n} bytes long, the limit is {MAX_LEN}"),
            AddressError::ControlCharacter => f.write_str("address contains a control character"),
            AddressError::NotUtf8 => f.write_str("address is not valid UTF-8"),
        }
    }
}

impl crate::error::Classify for AddressError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Permanent
    }
}

impl Address {
    pub fn parse(bytes: &[u8]) -> Result<Address, AddressError> {
        if bytes.len() > MAX_LEN {
            return Err(AddressError::TooLong(bytes.len()));
        }
        if bytes.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(AddressError::ControlCharacter);
        }
        let s = std::str::from_utf8(bytes).map_err(|_| AddressError::NotUtf8)?;
        Ok(Address(s.to_string()))
    }

    pub fn null() -> Address {
        Address(String::new())
    }

    /// `#@[]`, qmail's sender of bounces of bounces: mail from it is never
    /// bounced again (nor answered).
    pub fn double_bounce() -> Address {
        Address(DOUBLE_BOUNCE.to_string())
    }

    pub fn is_double_bounce(&self) -> bool {
        self.0 == DOUBLE_BOUNCE
    }

    pub fn is_null(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the last '@' (the whole address if there is none).
    pub fn local(&self) -> &str {
        match self.0.rfind('@') {
            Some(i) => &self.0[..i],
            None => &self.0,
        }
    }

    /// The part after the last '@', if any.
    pub fn domain(&self) -> Option<&str> {
        self.0.rfind('@').map(|i| &self.0[i + 1..])
    }

    /// `local@domain`, validated like any other address.
    pub fn from_parts(local: &str, domain: &str) -> Result<Address, AddressError> {
        Address::parse(format!("{local}@{domain}").as_bytes())
    }

    /// The address with `host` appended when it has no domain (qmail's envnoathost).
    pub fn with_default_domain(&self, host: &str) -> Address {
        if self.domain().is_some() || self.is_null() {
            self.clone()
        } else {
            Address(format!("{}@{}", self.0, host))
        }
    }

    /// Lower-cased domain, for comparisons with control files.
    pub fn domain_lower(&self) -> Option<String> {
        self.domain().map(|d| d.to_ascii_lowercase())
    }

    /// The whole address lower-cased (user databases are keyed so).
    pub fn lower(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_last_at() {
        let a = Address::parse(b"\"a@b\"@example.org").unwrap();
        assert_eq!(a.local(), "\"a@b\"");
        assert_eq!(a.domain(), Some("example.org"));
    }

    #[test]
    fn refuses_control_and_length() {
        assert_eq!(Address::parse(b"a\nb@x"), Err(AddressError::ControlCharacter));
        assert_eq!(Address::parse(&vec![b'a'; MAX_LEN + 1]), Err(AddressError::TooLong(MAX_LEN + 1)));
        assert!(Address::parse(&vec![b'a'; MAX_LEN]).is_ok());
    }

    #[test]
    fn default_domain() {
        let a = Address::parse(b"bob").unwrap();
        assert_eq!(a.with_default_domain("h.example").as_str(), "bob@h.example");
        assert!(Address::null().with_default_domain("h").is_null());
        assert_eq!(Address::from_parts("a", "b.example").unwrap().as_str(), "a@b.example");
        assert!(Address::from_parts("a\n", "b").is_err());
    }
}
