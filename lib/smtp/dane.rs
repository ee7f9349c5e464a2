//! DANE for SMTP (RFC 7672): which MX hosts must be reached over TLS with a
//! certificate matching their TLSA records. The certificate check itself is
//! lib/net/dane.rs.
//!
//! Only with control/dnssec 1, when postern-remote validates DNSSEC itself
//! (hickory, anchored in the root keys or control/trustanchors). Decisions, per
//! MX host, only when the domain's MX records and the host's addresses were
//! proved secure:
//! - `_25._tcp.HOST` TLSA records, all secure, some usable (usage 3 DANE-EE or
//!   2 DANE-TA, selector 0 or 1, matching 0, 1 or 2): TLS is required and the
//!   certificate must match one of them (`Required`).
//! - Secure TLSA records none of which is usable: TLS is required, any
//!   certificate (RFC 7672 section 2.2).
//! - No TLSA records, or insecure ones: the usual opportunistic TLS.
//! - A lookup that fails or is bogus: the host is skipped for now (`Failed`),
//!   since an attacker could be hiding its records.
//!
//! The TLSA name uses port 25 even when control/smtproutes gives the MX another
//! port: that port is a local override (tests), not the service the records name.
//! Hosts reached through smtproutes relays, and a domain's implicit MX (its own
//! A/AAAA records), get no DANE.

use crate::config::control::Control;
use crate::config::settings;
use crate::net::dane::Tlsa;
use crate::smtp::mx::{Dns, LookupFailure, MxError};
use hickory_resolver::proto::dnssec::TrustAnchors;
use hickory_resolver::proto::rr::{RData, RecordType};
use std::collections::HashMap;
use std::sync::Arc;

/// What DANE says about one MX host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostDane {
    /// TLS required, the certificate matching one of these records.
    Required(Vec<Tlsa>),
    /// TLS required, any certificate (secure TLSA records, none usable).
    TlsOnly,
    /// Skip the host for now: why.
    Failed(String),
}

/// The anchors to validate from: None when control/dnssec is off.
pub fn trust_anchors(control: &Control) -> Result<Option<Arc<TrustAnchors>>, MxError> {
    if control.number(&settings::DNSSEC)? != 1 {
        return Ok(None);
    }
    match control.optional(&settings::TRUSTANCHORS)? {
        None => Ok(Some(Arc::new(TrustAnchors::default()))),
        Some(path) => {
            let anchors = TrustAnchors::from_file(std::path::Path::new(&path)).map_err(|e| {
                MxError::Control(crate::config::control::ControlError {
                    path: control.path(&settings::TRUSTANCHORS),
                    line: None,
                    problem: format!("cannot read the trust anchors in {path}: {e}"),
                })
            })?;
            Ok(Some(Arc::new(anchors)))
        }
    }
}

/// The DANE decision for each of `hosts` that has one (the rest: opportunistic).
/// Call only when DNSSEC proved the MX records.
pub fn lookup(control: &Control, hosts: &[&str]) -> Result<HashMap<String, HostDane>, MxError> {
    let dns = Dns::new(control)?;
    let mut out = HashMap::new();
    for &host in hosts {
        if out.contains_key(host) {
            continue;
        }
        if let Some(d) = host_dane(&dns, host) {
            out.insert(host.to_string(), d);
        }
    }
    Ok(out)
}

fn host_dane(dns: &Dns, host: &str) -> Option<HostDane> {
    // DANE needs the host's addresses proved too (RFC 7672 section 2.2.2): an
    // insecure address could lead anywhere. A failed lookup already failed in mx.rs.
    for rtype in [RecordType::A, RecordType::AAAA] {
        if let Ok(Some((_, false))) = dns.lookup_proven(host, rtype) {
            return None;
        }
    }
    let name = format!("_25._tcp.{host}");
    let (records, secure) = match dns.lookup_proven(&name, RecordType::TLSA) {
        Ok(Some(r)) => r,
        Ok(None) | Err(LookupFailure::NxDomain) => return None,
        Err(LookupFailure::Other(e)) => {
            return Some(HostDane::Failed(format!("DANE: the DNSSEC lookup of its TLSA records ({name}) failed: {e}")))
        }
    };
    if !secure {
        return None;
    }
    let usable: Vec<Tlsa> = records
        .into_iter()
        .filter_map(|r| match r {
            RData::TLSA(t) => {
                Some(Tlsa { usage: t.cert_usage.into(), selector: t.selector.into(), matching: t.matching.into(), data: t.cert_data })
            }
            _ => None,
        })
        .filter(Tlsa::usable)
        .collect();
    Some(if usable.is_empty() { HostDane::TlsOnly } else { HostDane::Required(usable) })
}
