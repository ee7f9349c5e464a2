//! Per-domain policy for outgoing connections: which local address and HELO name a
//! sender's domain uses (`control/outgoingip`), and which destinations require
//! TLS (`control/tlsdestinations`).
//!
//! Both files key lines by domain the way smtproutes does: `domain:...` for the
//! domain itself, `.domain:...` for its subdomains, `:...` for every other domain.
//!
//! outgoingip: `senderdomain:ADDRESS[,ADDRESS][:heloname[:SELECTOR[,SELECTOR]]]`,
//! an ADDRESS being an IPv4 address or `[IPv6]`: the one place for a domain's
//! sending identity. One machine hosting many domains sends each domain's mail
//! from that domain's own address and name, so receiving servers see the right
//! host, and signs it with that domain's DKIM keys (`control/dkim/DOMAIN/SELECTOR.key`;
//! without selectors, every key in that directory: lib/dkim). Addresses and HELO
//! name follow the envelope sender's domain; the selectors, read by the queue
//! when it signs, follow the From: field's domain. Any field may be empty:
//! `a.test:::s2024` only names selectors. The null sender (bounces) uses the default line. A connection to
//! an IPv6 host binds the IPv6 address; with only an IPv4 address listed, IPv6
//! hosts are skipped (sending from the wrong address is what this file prevents).
//!
//! tlsdestinations: `domain` (TLS required, certificate not checked) or
//! `domain:verify` (TLS required, certificate checked against the server's name
//! with control/tlsca.pem if it exists, else the public web roots). Other
//! domains get opportunistic STARTTLS with a plain-text fallback.

use crate::config::control::{Control, ControlError};
use crate::config::settings::{self, Setting};
use std::net::IpAddr;

/// Lines keyed by domain, looked up in smtproutes' order.
#[derive(Clone, Debug)]
pub struct DomainTable<T>(Vec<(String, T)>);

impl<T> Default for DomainTable<T> {
    fn default() -> Self {
        DomainTable(Vec::new())
    }
}

impl<T: Clone> DomainTable<T> {
    /// Read `name`, parsing each line's key and the rest (None when the line has no ':').
    pub fn load(control: &Control, setting: &Setting, parse: impl Fn(Option<&str>) -> Result<T, String>) -> Result<Self, ControlError> {
        Self::from_lines(&control.path(setting), control.numbered_lines(setting)?, parse)
    }

    /// The table from numbered lines of `path` (for errors naming the line).
    pub fn from_lines(
        path: &std::path::Path,
        lines: Vec<(usize, String)>,
        parse: impl Fn(Option<&str>) -> Result<T, String>,
    ) -> Result<Self, ControlError> {
        let mut out = Vec::new();
        for (n, line) in lines {
            let (key, rest) = match line.split_once(':') {
                Some((k, r)) => (k, Some(r)),
                None => (line.as_str(), None),
            };
            let v = parse(rest).map_err(|problem| ControlError { path: path.to_path_buf(), line: Some(n), problem })?;
            out.push((key.to_ascii_lowercase(), v));
        }
        Ok(DomainTable(out))
    }

    /// The keys of the lines, in file order (`.domain` for subdomains, empty for the default).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// The value for `domain`: its own line, else `.suffix` for each shorter
    /// suffix, else the default line (empty key) (qmail's smtproutes order; the
    /// first line for a key wins).
    pub fn find(&self, domain: &str) -> Option<T> {
        let domain = domain.to_ascii_lowercase();
        let get = |k: &str| self.0.iter().find(|(d, _)| d == k).map(|(_, v)| v.clone());
        let mut keys = vec![domain.as_str()];
        keys.extend(domain.char_indices().filter(|&(_, c)| c == '.').map(|(i, _)| &domain[i..]));
        keys.push("");
        keys.into_iter().find_map(get)
    }
}

/// Where a sender's mail leaves from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub v4: Option<IpAddr>,
    pub v6: Option<IpAddr>,
    pub helo: Option<String>,
    /// DKIM selectors (empty: every key found for the domain).
    pub selectors: Vec<String>,
}

/// What to bind before connecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// Whatever the kernel picks.
    Any,
    Address(IpAddr),
    /// This source has addresses, none of the peer's family: do not connect.
    Skip,
}

impl Source {
    pub fn bind_for(&self, to: IpAddr) -> Bind {
        let (mine, other) = if to.is_ipv4() { (self.v4, self.v6) } else { (self.v6, self.v4) };
        match (mine, other) {
            (Some(a), _) => Bind::Address(a),
            (None, Some(_)) => Bind::Skip,
            (None, None) => Bind::Any,
        }
    }
}

fn parse_source(rest: Option<&str>) -> Result<Source, String> {
    let rest = rest.ok_or("expected senderdomain:ADDRESS[:heloname]")?;
    // Addresses end at the first ':' outside brackets.
    let mut depth = 0;
    let end = rest
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            c == ':' && depth == 0
        })
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    let (addrs, after) = (&rest[..end], rest.get(end + 1..).unwrap_or(""));
    let (helo, selectors) = after.split_once(':').unwrap_or((after, ""));
    let helo = Some(helo).filter(|h| !h.is_empty());
    let selectors: Vec<String> = selectors.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    if let Some(bad) = selectors.iter().find(|s| !crate::dkim::valid_name(s)) {
        return Err(format!("{bad:?} is not a DKIM selector (letters, digits, '-', '_', '.')"));
    }
    let mut src = Source { helo: helo.map(str::to_string), selectors, ..Source::default() };
    for a in addrs.split(',').filter(|a| !a.is_empty()) {
        let bare = a.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = bare.parse().map_err(|_| format!("{a:?} is not an IP address (IPv6 goes in brackets)"))?;
        let slot = if ip.is_ipv4() { &mut src.v4 } else { &mut src.v6 };
        if slot.replace(ip).is_some() {
            return Err(format!("two addresses of one family in {addrs:?}"));
        }
    }
    if let Some(h) = &src.helo {
        if h.contains(char::is_whitespace) {
            return Err(format!("HELO name {h:?} contains a space"));
        }
    }
    Ok(src)
}

pub fn load_sources(control: &Control) -> Result<DomainTable<Source>, ControlError> {
    DomainTable::load(control, &settings::OUTGOINGIP, parse_source)
}

/// outgoingip from the numbered lines of `path` (see `control::parse_lines`).
pub fn sources_from_lines(path: &std::path::Path, lines: Vec<(usize, String)>) -> Result<DomainTable<Source>, ControlError> {
    DomainTable::from_lines(path, lines, parse_source)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsPolicy {
    /// STARTTLS when offered; plain text when not, or when the handshake fails.
    Opportunistic,
    /// TLS or no delivery; any certificate.
    Required,
    /// TLS with a certificate valid for the server's name.
    Verify,
}

fn parse_tls_policy(rest: Option<&str>) -> Result<TlsPolicy, String> {
    match rest.map(str::trim) {
        None | Some("") => Ok(TlsPolicy::Required),
        Some("verify") => Ok(TlsPolicy::Verify),
        Some(other) => Err(format!("{other:?} is not a policy (leave it empty, or write verify)")),
    }
}

pub fn load_tls_policy(control: &Control) -> Result<DomainTable<TlsPolicy>, ControlError> {
    DomainTable::load(control, &settings::TLSDESTINATIONS, parse_tls_policy)
}

/// tlsdestinations from the numbered lines of `path` (see `control::parse_lines`).
pub fn tls_policy_from_lines(path: &std::path::Path, lines: Vec<(usize, String)>) -> Result<DomainTable<TlsPolicy>, ControlError> {
    DomainTable::from_lines(path, lines, parse_tls_policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_pick_by_family() {
        let s = parse_source(Some("127.0.0.2:mail.a.test")).unwrap();
        assert_eq!(s, Source { v4: Some("127.0.0.2".parse().unwrap()), v6: None, helo: Some("mail.a.test".into()), selectors: vec![] });
        assert_eq!(s.bind_for("127.0.0.1".parse().unwrap()), Bind::Address(s.v4.unwrap()));
        assert_eq!(s.bind_for("::1".parse().unwrap()), Bind::Skip);
        let s = parse_source(Some("127.0.0.3,[::1]")).unwrap();
        assert_eq!((s.v6, s.helo.clone()), (Some("::1".parse().unwrap()), None));
        assert_eq!(s.bind_for("::1".parse().unwrap()), Bind::Address(s.v6.unwrap()));
        let s = parse_source(Some("[::1]:six.test")).unwrap();
        assert_eq!(s.helo.as_deref(), Some("six.test"));
        assert_eq!(parse_source(Some(":only.helo")).unwrap().bind_for("10.0.0.1".parse().unwrap()), Bind::Any);
        let s = parse_source(Some("127.0.0.2:mail.a.test:s1, s2")).unwrap();
        assert_eq!((s.helo.as_deref(), s.selectors.clone()), (Some("mail.a.test"), vec!["s1".to_string(), "s2".to_string()]));
        let s = parse_source(Some("::sel")).unwrap();
        assert_eq!((s.v4, s.helo.clone(), s.selectors.clone()), (None, None, vec!["sel".to_string()]));
        assert!(parse_source(Some("127.0.0.2:h:../x")).is_err());
        assert!(parse_source(Some("nonsense")).is_err());
        assert!(parse_source(Some("127.0.0.2,127.0.0.3")).is_err());
        assert!(parse_source(None).is_err());
    }

    #[test]
    fn tables_look_up_like_smtproutes() {
        let t = DomainTable(vec![("a.test".to_string(), 1), (".b.test".to_string(), 2), ("".to_string(), 3)]);
        assert_eq!(t.find("A.test"), Some(1));
        assert_eq!(t.find("x.b.test"), Some(2));
        assert_eq!(t.find("b.test"), Some(3));
        assert_eq!(DomainTable::<u8>::default().find("x"), None);
    }
}
