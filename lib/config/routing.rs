//! Where a recipient goes: delivered here or sent on (qmail-send's rule, plus
//! virtual-user domains). postern-smtpd asks at RCPT (to refuse unknown users
//! and relaying), postern-send before each delivery.
//!
//! An address is local when its domain is in control/locals or is a virtual
//! domain (users/vdomains). Otherwise control/virtualdomains may claim it:
//! `domain:prefix` (or `.domain` for subdomains, `user@domain` for one address,
//! an empty domain for everything) makes it the local address
//! `prefix-local@domain`; an empty prefix means "not virtual" (an exception to a
//! wider line). Everything else is remote.

use super::control::{Control, ControlError};
use super::settings;
use crate::address::Address;
use std::collections::HashSet;

/// Where a recipient goes, and as what address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Local(Address),
    Remote(Address),
}

/// The settings routing reads (once per session, or at start and on SIGHUP).
#[derive(Debug, Clone)]
pub struct Routing {
    locals: HashSet<String>,
    /// (pattern, prefix); pattern is `user@domain`, `domain`, `.domain` or ``.
    virtualdomains: Vec<(String, String)>,
    envnoathost: String,
}

impl Routing {
    pub fn load(c: &Control) -> Result<Routing, ControlError> {
        let path = c.path(&settings::VIRTUALDOMAINS);
        Routing::from_lines(
            &path,
            c.numbered_lines(&settings::VIRTUALDOMAINS)?,
            c.list(&settings::LOCALS)?,
            c.text(&settings::ENVNOATHOST)?,
        )
    }

    /// Routing from virtualdomains' numbered lines (read from `path`), the locals
    /// and envnoathost.
    pub fn from_lines(
        path: &std::path::Path,
        virtual_lines: Vec<(usize, String)>,
        locals: Vec<String>,
        envnoathost: String,
    ) -> Result<Routing, ControlError> {
        let mut virtualdomains = Vec::new();
        for (n, l) in virtual_lines {
            let (pat, prefix) = l.split_once(':').ok_or_else(|| ControlError {
                path: path.to_path_buf(),
                line: Some(n),
                problem: format!("{l:?} has no ':'; the format is domain:prefix"),
            })?;
            virtualdomains.push((pat.trim().to_ascii_lowercase(), prefix.trim().to_string()));
        }
        Ok(Routing { locals: locals.into_iter().map(|l| l.to_ascii_lowercase()).collect(), virtualdomains, envnoathost })
    }

    /// For tests: these locals and virtualdomains lines.
    pub fn with(locals: &[&str], virtualdomains: &[(&str, &str)], envnoathost: &str) -> Routing {
        Routing {
            locals: locals.iter().map(|l| l.to_ascii_lowercase()).collect(),
            virtualdomains: virtualdomains.iter().map(|(p, v)| (p.to_ascii_lowercase(), v.to_string())).collect(),
            envnoathost: envnoathost.to_string(),
        }
    }

    /// The virtualdomains prefix for an address, if one applies (qmail's order:
    /// the exact address, the domain, each parent `.domain`, then the catch-all).
    fn virtual_prefix(&self, addr: &Address, domain: &str) -> Option<&str> {
        let find = |pat: &str| self.virtualdomains.iter().find(|(p, _)| p == pat).map(|(_, v)| v.as_str());
        if let Some(v) = find(&addr.lower()) {
            return Some(v);
        }
        if let Some(v) = find(domain) {
            return Some(v);
        }
        let mut d = domain;
        while let Some(i) = d.find('.') {
            if let Some(v) = find(&d[i..]) {
                return Some(v);
            }
            d = &d[i + 1..];
        }
        find("")
    }

    /// Decide local or remote. `is_virtual` says whether a (lower-case) domain
    /// hosts virtual users (users/vdomains, through users::Users).
    pub fn route(&self, is_virtual: &mut dyn FnMut(&str) -> bool, rcpt: &Address) -> Route {
        let addr = rcpt.with_default_domain(&self.envnoathost);
        let domain = addr.domain_lower().unwrap_or_default();
        if self.locals.contains(&domain) || is_virtual(&domain) {
            return Route::Local(addr);
        }
        match self.virtual_prefix(&addr, &domain) {
            Some(prefix) if !prefix.is_empty() => {
                match Address::from_parts(&format!("{prefix}-{}", addr.local()), addr.domain().unwrap_or("")) {
                    Ok(a) => Route::Local(a),
                    // Too long with the prefix: it cannot be delivered here either way.
                    Err(_) => Route::Local(addr),
                }
            }
            _ => Route::Remote(addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::addr as a;

    #[test]
    fn routes_like_qmail_send() {
        let r = Routing::with(
            &["mx.example", "localhost"],
            &[("virt.example", "joe"), (".sub.example", "subs"), ("not.sub.example", ""), ("one@other.example", "solo")],
            "mx.example",
        );
        let local = |s: &str| Route::Local(a(s));
        assert_eq!(r.route(&mut |_| false, &a("bob@MX.example")), local("bob@MX.example"));
        assert_eq!(r.route(&mut |_| false, &a("bob")), local("bob@mx.example"));
        assert_eq!(r.route(&mut |_| false, &a("bob@virt.example")), local("joe-bob@virt.example"));
        assert_eq!(r.route(&mut |_| false, &a("x@a.sub.example")), local("subs-x@a.sub.example"));
        assert_eq!(r.route(&mut |_| false, &a("One@Other.example")), local("solo-One@Other.example"));
        assert_eq!(r.route(&mut |_| false, &a("two@other.example")), Route::Remote(a("two@other.example")));
        assert_eq!(r.route(&mut |_| false, &a("x@not.sub.example")), Route::Remote(a("x@not.sub.example")));
        assert_eq!(r.route(&mut |_| false, &a("x@elsewhere.example")), Route::Remote(a("x@elsewhere.example")));
    }
}
