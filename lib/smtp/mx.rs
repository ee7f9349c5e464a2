//! Where mail for a domain goes: `control/smtproutes` first, then DNS (MX records,
//! or the domain's own addresses when it has none).
//!
//! smtproutes is qmail's format, one route a line: `domain:relay`,
//! `domain:relay:port`, `.domain:relay` for every subdomain, `:relay` for every
//! domain not listed, and `domain:` (empty relay) for "use MX". The relay is a host
//! name (its addresses are looked up, not its MX), a bare IPv4 address (as qmail
//! takes it) or `[IP]` (IPv4 or IPv6); addresses need no DNS. One extension: an
//! empty relay with a port (`domain::2525`, or `::2525` for the default) means
//! "use MX, on that port".
//!
//! DNS uses the system's resolver configuration (/etc/resolv.conf) unless
//! `control/dnsresolvers` names servers, `IP` or `IP:PORT` (`[IPv6]:PORT`) a line.
//! Decisions, each final here:
//! - MX hosts by preference, equal preferences in random order; each host's IPv4
//!   then IPv6 addresses.
//! - No MX: the domain's own A/AAAA records (RFC 5321's implicit MX).
//! - A domain that does not exist, or has neither MX nor address: permanent
//!   (5.1.2). A null MX (RFC 7505: one MX `0 .`): permanent (5.1.10).
//! - A loop of CNAMEs: temporary (4.4.3). It is the destination's DNS mistake,
//!   usually fixed within hours; the message bounces after queuelifetime if not.
//! - MX hosts none of which has an address: temporary (4.4.4), for the same reason.
//! - A DNS server that is down, times out or answers SERVFAIL: temporary (4.4.3).

use crate::config::control::{Control, ControlError};
use crate::smtp::outgoing::DomainTable;
use crate::status::Status;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub const SMTP_PORT: u16 = 25;

#[derive(Debug)]
pub enum MxError {
    Control(ControlError),
    /// The resolver could not be set up (an unreadable /etc/resolv.conf).
    Setup(String),
    /// NXDOMAIN, or no MX and no address.
    NoSuchDomain(String),
    NullMx(String),
    /// Name, then the chain of names seen up to the repeat.
    CnameLoop(String, Vec<String>),
    /// MX hosts, none of which has an address.
    NoMxAddress(String, Vec<String>),
    /// An smtproutes relay that has no address.
    RelayUnknown(String, String),
    /// Name, record type, what went wrong.
    Lookup(String, &'static str, String),
}

impl fmt::Display for MxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MxError::Control(e) => write!(f, "{e}; fix it and the message will be retried"),
            MxError::Setup(e) => write!(f, "cannot set up DNS resolution: {e}; check /etc/resolv.conf or control/dnsresolvers"),
            MxError::NoSuchDomain(d) => {
                write!(f, "the domain {d} has no mail server: it does not exist, or has no MX and no address (DNS)")
            }
            MxError::NullMx(d) => write!(f, "the domain {d} accepts no mail: it publishes a null MX (RFC 7505)"),
            MxError::CnameLoop(d, chain) => {
                write!(f, "the DNS of {d} has a loop of CNAMEs ({}); it will be retried until its owner fixes it", chain.join(" -> "))
            }
            MxError::NoMxAddress(d, hosts) => {
                write!(f, "none of the mail servers of {d} ({}) has an address in DNS; will retry", hosts.join(", "))
            }
            MxError::RelayUnknown(d, relay) => {
                write!(f, "the relay {relay} that control/smtproutes names for {d} has no address in DNS; fix the route or DNS")
            }
            MxError::Lookup(name, rtype, e) => write!(f, "DNS lookup of {name} {rtype} failed: {e}; will retry"),
        }
    }
}

impl MxError {
    pub fn status(&self) -> Status {
        match self {
            MxError::Control(_) => Status::SYSTEM_CONFIG,
            MxError::Setup(_) | MxError::CnameLoop(..) | MxError::Lookup(..) => Status::ROUTING,
            MxError::NoSuchDomain(_) => Status::NO_SUCH_DOMAIN,
            MxError::NullMx(_) => Status::NULL_MX,
            MxError::NoMxAddress(..) | MxError::RelayUnknown(..) => Status::NO_ROUTE,
        }
    }
}

impl crate::error::Classify for MxError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            MxError::NoSuchDomain(_) | MxError::NullMx(_) => crate::error::Kind::Permanent,
            _ => crate::error::Kind::Temporary,
        }
    }
}

impl From<ControlError> for MxError {
    fn from(e: ControlError) -> MxError {
        MxError::Control(e)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Relay {
    Mx,
    Host(String),
    Ip(IpAddr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpRoute {
    pub relay: Relay,
    pub port: u16,
}

/// The parsed smtproutes.
#[derive(Clone, Debug, Default)]
pub struct Routes(DomainTable<SmtpRoute>);

fn parse_route(value: &str) -> Result<SmtpRoute, String> {
    let (relay, port) = if let Some(rest) = value.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or("a '[' without ']'")?;
        let ip: IpAddr = ip.parse().map_err(|_| format!("{ip:?} is not an IP address"))?;
        (Relay::Ip(ip), after.strip_prefix(':'))
    } else {
        let (host, port) = match value.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        };
        // A bare dotted quad is an address, as in qmail: no DNS lookup.
        let relay = match host.parse::<std::net::Ipv4Addr>() {
            _ if host.is_empty() => Relay::Mx,
            Ok(ip) => Relay::Ip(IpAddr::V4(ip)),
            Err(_) => Relay::Host(host.to_ascii_lowercase()),
        };
        (relay, port)
    };
    let port = match port {
        None | Some("") => SMTP_PORT,
        Some(p) => p.parse().map_err(|_| format!("{p:?} is not a port number"))?,
    };
    Ok(SmtpRoute { relay, port })
}

fn parse_line(rest: Option<&str>) -> Result<SmtpRoute, String> {
    parse_route(rest.ok_or("expected domain:relay[:port]")?)
}

impl Routes {
    pub fn load(control: &Control) -> Result<Routes, ControlError> {
        DomainTable::load(control, &crate::config::settings::SMTPROUTES, parse_line).map(Routes)
    }

    /// The routes from the numbered lines of `path` (see `control::parse_lines`).
    pub fn from_lines(path: &std::path::Path, lines: Vec<(usize, String)>) -> Result<Routes, ControlError> {
        DomainTable::from_lines(path, lines, parse_line).map(Routes)
    }

    /// The route for `domain`; MX on port 25 when no line matches.
    pub fn find(&self, domain: &str) -> SmtpRoute {
        self.0.find(domain).unwrap_or(SmtpRoute { relay: Relay::Mx, port: SMTP_PORT })
    }
}

/// One place to try: the host's name (for reports and certificate checks), one of
/// its addresses and the port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub host: String,
    pub ip: IpAddr,
    pub port: u16,
}

/// As reports name it: `host [ip]`, with `:port` when it is not 25.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host != self.ip.to_string() {
            write!(f, "{} ", self.host)?;
        }
        write!(f, "[{}]", self.ip)?;
        if self.port != SMTP_PORT {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// A blocking front to hickory's resolver (it needs a runtime: a current-thread
/// tokio runtime lives here and nowhere else).
pub struct Dns {
    rt: tokio::runtime::Runtime,
    resolver: TokioResolver,
}

pub fn parse_resolver(line: &str) -> Option<SocketAddr> {
    if let Ok(ip) = line.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    line.parse::<SocketAddr>().ok()
}

impl Dns {
    /// Validating DNSSEC when control/dnssec says so (DANE, lib/smtp/dane.rs).
    pub fn new(control: &Control) -> Result<Dns, MxError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| MxError::Setup(e.to_string()))?;
        let anchors = crate::smtp::dane::trust_anchors(control)?;
        let resolver = build_resolver(control, Duration::from_secs(5), anchors)?;
        Ok(Dns { rt, resolver })
    }
}

/// A resolver on `control/dnsresolvers` (else /etc/resolv.conf), each query
/// waiting `timeout` twice at most. postern-remote's and the arrival checks'
/// (`mailauth`), so tests aim both at one loopback server.
pub fn resolver(control: &Control, timeout: Duration) -> Result<TokioResolver, MxError> {
    build_resolver(control, timeout, None)
}

/// The same, validating DNSSEC from `anchors` when given.
fn build_resolver(control: &Control, timeout: Duration, anchors: Option<Arc<TrustAnchors>>) -> Result<TokioResolver, MxError> {
    let path = control.path(&crate::config::settings::DNSRESOLVERS);
    let lines = control.numbered_lines(&crate::config::settings::DNSRESOLVERS)?;
    let mut builder = match (!lines.is_empty()).then_some(lines) {
        Some(lines) => {
            let mut servers = Vec::new();
            for (n, line) in lines {
                let addr = parse_resolver(&line).ok_or_else(|| ControlError {
                    path: path.clone(),
                    line: Some(n),
                    problem: format!("{line:?} is not IP or IP:PORT"),
                })?;
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                servers.push(ns);
            }
            let mut b = TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), Default::default());
            // Named resolvers are the whole truth (tests, split DNS): no hosts file.
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        }
        None => TokioResolver::builder_tokio().map_err(|e| MxError::Setup(e.to_string()))?,
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.timeout = timeout;
    opts.attempts = 2;
    opts.cache_size = 64;
    if let Some(a) = anchors {
        builder = builder.with_trust_anchor(a);
    }
    builder.build().map_err(|e| MxError::Setup(e.to_string()))
}

impl Dns {
    fn lookup(&self, name: &str, rtype: RecordType) -> Result<Option<Vec<RData>>, LookupFailure> {
        Ok(self.lookup_proven(name, rtype)?.map(|(records, _)| records))
    }

    /// The records, and whether DNSSEC proved every one of them (always false
    /// when the resolver does not validate). A bogus answer is an error.
    pub(crate) fn lookup_proven(&self, name: &str, rtype: RecordType) -> Result<Option<(Vec<RData>, bool)>, LookupFailure> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.rt.block_on(self.resolver.lookup(fqdn.as_str(), rtype)) {
            Ok(l) => {
                let records: Vec<_> = l.answers().iter().filter(|r| r.record_type() == rtype).collect();
                let secure = !records.is_empty() && records.iter().all(|r| r.proof == Proof::Secure);
                Ok(Some((records.into_iter().map(|r| r.data.clone()).collect(), secure)))
            }
            Err(NetError::Dns(DnsError::NoRecordsFound(nr))) if nr.response_code == ResponseCode::NXDomain => Err(LookupFailure::NxDomain),
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok(None),
            Err(e) => Err(LookupFailure::Other(e.to_string())),
        }
    }

    /// The MX records of `domain` by preference (equal ones shuffled); None when it
    /// has none. A null MX is an error.
    pub fn mx(&self, domain: &str) -> Result<Option<Vec<String>>, MxError> {
        Ok(self.mx_proven(domain)?.map(|(hosts, _)| hosts))
    }

    /// The same, and whether DNSSEC proved the MX records (RFC 7672 looks for
    /// TLSA records only then).
    pub fn mx_proven(&self, domain: &str) -> Result<Option<(Vec<String>, bool)>, MxError> {
        let (records, secure) = match self.lookup_proven(domain, RecordType::MX) {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.check_cnames(domain)?;
                return Ok(None);
            }
            Err(LookupFailure::NxDomain) => return Err(MxError::NoSuchDomain(domain.into())),
            Err(LookupFailure::Other(e)) => {
                self.check_cnames(domain)?;
                return Err(MxError::Lookup(domain.into(), "MX", e));
            }
        };
        let mut mxs: Vec<(u16, String)> = records
            .into_iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii().trim_end_matches('.').to_ascii_lowercase())),
                _ => None,
            })
            .collect();
        if mxs.is_empty() {
            return Ok(None);
        }
        if mxs.iter().all(|(_, h)| h.is_empty()) {
            return Err(MxError::NullMx(domain.into()));
        }
        mxs.retain(|(_, h)| !h.is_empty());
        shuffle(&mut mxs);
        mxs.sort_by_key(|(p, _)| *p);
        Ok(Some((mxs.into_iter().map(|(_, h)| h).collect(), secure)))
    }

    /// The addresses of a host, IPv4 first; empty when it has none.
    pub fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, MxError> {
        let mut out = Vec::new();
        let mut failure = None;
        for (rtype, name) in [(RecordType::A, "A"), (RecordType::AAAA, "AAAA")] {
            match self.lookup(host, rtype) {
                Ok(Some(rs)) => out.extend(rs.into_iter().filter_map(|r| match r {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Ok(None) | Err(LookupFailure::NxDomain) => {}
                Err(LookupFailure::Other(e)) => failure = Some(MxError::Lookup(host.into(), name, e)),
            }
        }
        match failure {
            Some(e) if out.is_empty() => {
                self.check_cnames(host)?;
                Err(e)
            }
            _ => {
                if out.is_empty() {
                    self.check_cnames(host)?;
                }
                Ok(out)
            }
        }
    }

    /// Follow CNAMEs from `name` one at a time; a name seen twice (or a chain
    /// longer than 16) is a loop. Only called when a lookup came back empty or
    /// failed, to say why.
    fn check_cnames(&self, name: &str) -> Result<(), MxError> {
        let mut chain = vec![name.trim_end_matches('.').to_ascii_lowercase()];
        loop {
            let last = chain.last().unwrap().clone();
            let next = match self.lookup(&last, RecordType::CNAME) {
                Ok(Some(rs)) => rs.into_iter().find_map(|r| match r {
                    RData::CNAME(c) => Some(c.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                    _ => None,
                }),
                _ => None,
            };
            let Some(next) = next else { return Ok(()) };
            let seen = chain.contains(&next);
            chain.push(next);
            if seen || chain.len() > 16 {
                return Err(MxError::CnameLoop(name.into(), chain));
            }
        }
    }
}

pub(crate) enum LookupFailure {
    NxDomain,
    Other(String),
}

/// Shuffle with a seed from the clock and pid: only spreads load among equal MX
/// preferences, so no cryptographic randomness is needed.
fn shuffle<T>(v: &mut [T]) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let mut x = nanos ^ ((std::process::id() as u64) << 32) | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// Every place to try for `domain`, in order. The resolver is set up only when
/// DNS is needed (a route to `[IP]` needs none).
pub fn peers(control: &Control, routes: &Routes, domain: &str) -> Result<Vec<Peer>, MxError> {
    Ok(peers_proven(control, routes, domain)?.0)
}

/// The same, and whether they come from MX records that DNSSEC proved (then DANE
/// applies to the hosts: lib/smtp/dane.rs).
pub fn peers_proven(control: &Control, routes: &Routes, domain: &str) -> Result<(Vec<Peer>, bool), MxError> {
    let route = routes.find(domain);
    let port = route.port;
    let with = |host: &str, ips: Vec<IpAddr>| ips.into_iter().map(|ip| Peer { host: host.to_string(), ip, port }).collect::<Vec<_>>();
    let hosts = match route.relay {
        Relay::Ip(ip) => return Ok((vec![Peer { host: ip.to_string(), ip, port }], false)),
        Relay::Host(h) => {
            let ips = Dns::new(control)?.addresses(&h)?;
            if ips.is_empty() {
                return Err(MxError::RelayUnknown(domain.into(), h));
            }
            return Ok((with(&h, ips), false));
        }
        Relay::Mx => {
            let dns = Dns::new(control)?;
            match dns.mx_proven(domain)? {
                Some((hosts, secure)) => (dns, hosts, secure),
                None => {
                    let ips = dns.addresses(domain)?;
                    if ips.is_empty() {
                        return Err(MxError::NoSuchDomain(domain.into()));
                    }
                    return Ok((with(domain, ips), false));
                }
            }
        }
    };
    let (dns, hosts, secure) = hosts;
    let mut out = Vec::new();
    let mut failure = None;
    for h in &hosts {
        match dns.addresses(h) {
            Ok(ips) => out.extend(with(h, ips)),
            Err(e) => failure = Some(e),
        }
    }
    if out.is_empty() {
        return Err(failure.unwrap_or(MxError::NoMxAddress(domain.into(), hosts)));
    }
    Ok((out, secure))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(text: &str) -> Routes {
        let lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.to_string())).collect();
        Routes(DomainTable::from_lines(std::path::Path::new("smtproutes"), lines, parse_line).unwrap())
    }

    #[test]
    fn smtproutes_lookup_order() {
        let r = routes("a.example:relay.test\n.example:[127.0.0.5]:2525\n:smart.test:587\nmx.example:\nport.example::26");
        assert_eq!(r.find("A.Example"), SmtpRoute { relay: Relay::Host("relay.test".into()), port: 25 });
        assert_eq!(r.find("b.a.example"), SmtpRoute { relay: Relay::Ip("127.0.0.5".parse().unwrap()), port: 2525 });
        assert_eq!(r.find("example"), SmtpRoute { relay: Relay::Host("smart.test".into()), port: 587 });
        assert_eq!(r.find("mx.example"), SmtpRoute { relay: Relay::Mx, port: 25 });
        assert_eq!(r.find("port.example"), SmtpRoute { relay: Relay::Mx, port: 26 });
        assert_eq!(Routes::default().find("x.test"), SmtpRoute { relay: Relay::Mx, port: 25 });
        assert_eq!(parse_route("[::1]:2525").unwrap(), SmtpRoute { relay: Relay::Ip("::1".parse().unwrap()), port: 2525 });
        assert_eq!(parse_route("192.0.2.7:26").unwrap(), SmtpRoute { relay: Relay::Ip("192.0.2.7".parse().unwrap()), port: 26 });
        assert_eq!(parse_route("192.0.2.7").unwrap(), SmtpRoute { relay: Relay::Ip("192.0.2.7".parse().unwrap()), port: 25 });
        assert!(parse_route("host:port").is_err());
        assert!(parse_route("[nonsense]").is_err());
        let lines = vec![(3, "no-colon.example".to_string())];
        let e = DomainTable::from_lines(std::path::Path::new("smtproutes"), lines, parse_line).unwrap_err();
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn resolver_lines() {
        assert_eq!(parse_resolver("127.0.0.1"), Some("127.0.0.1:53".parse().unwrap()));
        assert_eq!(parse_resolver("127.0.0.1:5353"), Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(parse_resolver("[::1]:5353"), Some("[::1]:5353".parse().unwrap()));
        assert_eq!(parse_resolver("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse_resolver("dns.example"), None);
    }

    #[test]
    fn shuffle_keeps_every_element() {
        let mut v: Vec<u32> = (0..10).collect();
        shuffle(&mut v);
        v.sort();
        assert_eq!(v, (0..10).collect::<Vec<_>>());
    }
}
