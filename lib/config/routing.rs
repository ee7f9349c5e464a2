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
//!
//! postmaster (RFC 5321 4.5.1: bare, or at any domain delivered here, any case)
//! goes to control/postmaster when it is set, routed like any address (it may be
//! remote); unset, postmaster is an ordinary local part (qmail's way).

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
    /// control/postmaster: where all postmaster mail goes.
    postmaster: Option<Address>,
}

impl Routing {
    pub fn load(c: &Control) -> Result<Routing, ControlError> {
        let path = c.path(&settings::VIRTUALDOMAINS);
        let mut r = Routing::from_lines(
            &path,
            c.numbered_lines(&settings::VIRTUALDOMAINS)?,
            c.list(&settings::LOCALS)?,
            c.text(&settings::ENVNOATHOST)?,
        )?;
        if let Some(v) = c.optional(&settings::POSTMASTER)? {
            r.postmaster = Some(Address::parse(v.as_bytes()).map_err(|e| ControlError {
                path: c.path(&settings::POSTMASTER),
                line: None,
                problem: format!("{v:?} is not an address: {e}"),
            })?);
        }
        Ok(r)
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
        Ok(Routing { locals: locals.into_iter().map(|l| l.to_ascii_lowercase()).collect(), virtualdomains, envnoathost, postmaster: None })
    }

    /// The same, with control/postmaster set to `postmaster`.
    pub fn with_postmaster(mut self, postmaster: &str) -> Routing {
        self.postmaster = Some(Address::parse(postmaster.as_bytes()).expect("a test address"));
        self
    }

    /// For tests: these locals and virtualdomains lines.
    pub fn with(locals: &[&str], virtualdomains: &[(&str, &str)], envnoathost: &str) -> Routing {
        Routing {
            locals: locals.iter().map(|l| l.to_ascii_lowercase()).collect(),
            virtualdomains: virtualdomains.iter().map(|(p, v)| (p.to_ascii_lowercase(), v.to_string())).collect(),
            envnoathost: envnoathost.to_string(),
            postmaster: None,
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
        let route = self.route_address(is_virtual, rcpt);
        self.postmaster_route(is_virtual, rcpt, &route).unwrap_or(route)
    }

    /// Where postmaster mail goes when `rcpt` is postmaster (bare, or at a domain
    /// delivered here) and control/postmaster is set; postern-smtpd accepts it
    /// even when that address is remote.
    pub fn postmaster(&self, is_virtual: &mut dyn FnMut(&str) -> bool, rcpt: &Address) -> Option<Route> {
        let route = self.route_address(is_virtual, rcpt);
        self.postmaster_route(is_virtual, rcpt, &route)
    }

    fn postmaster_route(&self, is_virtual: &mut dyn FnMut(&str) -> bool, rcpt: &Address, route: &Route) -> Option<Route> {
        let pm = self.postmaster.as_ref()?;
        let here = rcpt.domain().is_none() || matches!(route, Route::Local(_));
        // The admin's address is routed as it is, never rewritten again.
        (here && rcpt.local().eq_ignore_ascii_case("postmaster")).then(|| self.route_address(is_virtual, pm))
    }

    fn route_address(&self, is_virtual: &mut dyn FnMut(&str) -> bool, rcpt: &Address) -> Route {
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

    #[test]
    fn postmaster_goes_to_control_postmaster() {
        let r = Routing::with(&["mx.example"], &[("virt.example", "joe")], "mx.example");
        assert_eq!(r.route(&mut |_| false, &a("postmaster")), Route::Local(a("postmaster@mx.example")), "unset: qmail's way");
        assert_eq!(r.postmaster(&mut |_| false, &a("postmaster")), None);
        let r = r.with_postmaster("admin@far.example");
        let far = Some(Route::Remote(a("admin@far.example")));
        let virt = &mut |d: &str| d == "v.example";
        for pm in ["postmaster", "PostMaster", "postmaster@MX.example", "POSTMASTER@v.example", "postmaster@virt.example"] {
            assert_eq!(r.postmaster(virt, &a(pm)), far, "{pm}");
            assert_eq!(Some(r.route(virt, &a(pm))), far, "{pm}");
        }
        assert_eq!(r.postmaster(virt, &a("postmaster@elsewhere.example")), None, "not ours");
        assert_eq!(r.postmaster(virt, &a("postmaster-x@mx.example")), None);
        let r = r.with_postmaster("Postmaster@mx.example");
        assert_eq!(r.route(&mut |_| false, &a("postmaster")), Route::Local(a("Postmaster@mx.example")), "not rewritten twice");
    }
}
