//! Checks on arrival: SPF (RFC 7208) on the HELO and MAIL FROM identities, DKIM
//! (RFC 6376), DMARC (RFC 7489, with alignment) and ARC (RFC 8617), by the
//! mail-auth crate, summed up in one Authentication-Results field (RFC 8601)
//! naming our authserv-id. Fields already present that claim that id are removed
//! (`header`).
//!
//! postern-authcheck runs this as postern-smtpd's queue program (qmail's
//! QMAILQUEUE way) for clients that are neither authenticated nor relay clients,
//! when `authcheck` is 1; postern-smtpd itself asks `spf_at_mail` when
//! `authcheckspf` is 1. Verification only (no key), as smtpd's uid (postern-d).
//!
//! Decisions, each made here:
//! - By default everything is recorded and nothing refused.
//! - `authcheckspf`: SPF `fail` for MAIL FROM is refused at MAIL (550 5.7.23).
//! - `authcheckdmarc`: a DMARC `fail` where the From domain publishes `p=reject`
//!   is refused after DATA (550 5.7.1).
//! - A DNS failure never refuses for good: where the policy would refuse but a
//!   lookup failed (temperror), the client is told to retry (451 4.7.x); where the
//!   policy cannot be known (the DMARC record itself did not resolve), the
//!   temperror is only recorded.

pub mod filter;
pub mod header;

use crate::config::control::{Control, ControlError};
use crate::config::settings;
use crate::os::home::Home;
use crate::smtp::mx::MxError;
use crate::status::Status;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy as DmarcPolicy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult, MessageAuthenticator, SpfOutput,
    SpfResult,
};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// How long one DNS query of the checks may take (tried twice).
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// RFC 7372: SPF validation failed; SPF validation error (DNS).
pub const SPF_FAILED: Status = Status::new(5, 7, 23);
pub const SPF_ERROR: Status = Status::new(4, 7, 24);

/// The checks' settings.
#[derive(Clone, Debug)]
pub struct Policy {
    /// `authcheck`: run the checks at all.
    pub enabled: bool,
    /// `authcheckspf`: refuse SPF fail at MAIL.
    pub spf_refuse: bool,
    /// `authcheckdmarc`: refuse DMARC fail under p=reject after DATA.
    pub dmarc_refuse: bool,
    /// `authservid`.
    pub authserv_id: String,
}

impl Policy {
    pub fn load(c: &Control) -> Result<Policy, ControlError> {
        Ok(Policy {
            enabled: c.number(&settings::AUTHCHECK)? == 1,
            spf_refuse: c.number(&settings::AUTHCHECKSPF)? == 1,
            dmarc_refuse: c.number(&settings::AUTHCHECKDMARC)? == 1,
            authserv_id: c.text(&settings::AUTHSERVID)?,
        })
    }
}

#[derive(Debug)]
pub enum CheckError {
    Control(ControlError),
    /// The resolver or the runtime could not be set up.
    Setup(String),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Control(e) => write!(f, "{e}"),
            CheckError::Setup(e) => write!(f, "cannot set up the arrival checks: {e}; check control/dnsresolvers or /etc/resolv.conf"),
        }
    }
}

impl From<ControlError> for CheckError {
    fn from(e: ControlError) -> Self {
        CheckError::Control(e)
    }
}

impl From<MxError> for CheckError {
    fn from(e: MxError) -> Self {
        match e {
            MxError::Control(c) => CheckError::Control(c),
            e => CheckError::Setup(e.to_string()),
        }
    }
}

/// What the policy says about a message or a sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// Refuse for good: the status and the text for the client.
    Refuse(Status, String),
    /// Ask the client to try again (a DNS failure where the policy might refuse).
    Defer(Status, String),
}

/// The result of the checks on one message.
#[derive(Debug)]
pub struct Report {
    /// The whole Authentication-Results field, lines ending in LF.
    pub header: String,
    /// One line for the log: every result, with the reason of each failure.
    pub summary: String,
    pub decision: Decision,
}

/// The checks, with their DNS resolver (control/dnsresolvers, as postern-remote).
pub struct Checker {
    rt: tokio::runtime::Runtime,
    auth: MessageAuthenticator,
    pub policy: Policy,
}

impl Checker {
    pub fn new(home: &Home) -> Result<Checker, CheckError> {
        let c = Control::new(home);
        let policy = Policy::load(&c)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| CheckError::Setup(e.to_string()))?;
        let resolver = crate::smtp::mx::resolver(&c, DNS_TIMEOUT)?;
        Ok(Checker { rt, auth: MessageAuthenticator(resolver), policy })
    }

    /// SPF for the MAIL FROM identity (the null sender: postmaster@HELO).
    fn spf_mail_from(&self, ip: IpAddr, helo: &str, sender: &str) -> SpfOutput {
        let identity = mail_from_identity(helo, sender);
        let host = &self.policy.authserv_id;
        self.rt.block_on(self.auth.verify_spf(SpfParameters::verify_mail_from(ip, helo, host, &identity)))
    }

    /// postern-smtpd at MAIL, when `authcheckspf` is 1: refuse a hard fail, defer
    /// a DNS failure, accept the rest (recorded later by postern-authcheck). The
    /// second value is for the log.
    pub fn spf_at_mail(&self, ip: IpAddr, helo: &str, sender: &str) -> (Decision, String) {
        let spf = self.spf_mail_from(ip, helo, sender);
        let domain = domain_of(&mail_from_identity(helo, sender)).to_string();
        let log = format!("spf(mailfrom)={} domain={domain} ip={ip}", spf_name(spf.result()));
        let d = match spf.result() {
            SpfResult::Fail if self.policy.spf_refuse => {
                Decision::Refuse(SPF_FAILED, format!("SPF: {domain} does not allow {ip} to send its mail (RFC 7208 fail)"))
            }
            SpfResult::TempError if self.policy.spf_refuse => {
                Decision::Defer(SPF_ERROR, format!("SPF: cannot check {domain} now (DNS); try again later"))
            }
            _ => Decision::Accept,
        };
        (d, log)
    }

    /// Every check on a whole message (`message` as queued: LF line ends).
    pub fn check(&self, ip: IpAddr, helo: &str, sender: &str, message: &[u8]) -> Report {
        let id = self.policy.authserv_id.as_str();
        let helo_name = if helo.is_empty() { "unknown" } else { helo };
        let identity = mail_from_identity(helo_name, sender);
        let mf_domain = domain_of(&identity).to_string();
        // DKIM hashes the message as it travelled: CRLF line ends.
        let wire = crlf(message);
        let parsed = AuthenticatedMessage::parse(&wire);
        // The lookups that do not depend on each other go in parallel: a DNS
        // server that does not answer costs its timeout once, not per check.
        let ((spf_helo, spf_mf), (dkim, arc)) = self.rt.block_on(join(
            join(
                self.auth.verify_spf(SpfParameters::verify_ehlo(ip, helo_name, id)),
                self.auth.verify_spf(SpfParameters::verify_mail_from(ip, helo_name, id, &identity)),
            ),
            async {
                match &parsed {
                    Some(m) => (Some(self.auth.verify_dkim(m).await), Some(self.auth.verify_arc(m).await)),
                    None => (None, None),
                }
            },
        ));
        let mut summary = format!("spf(helo)={} spf(mailfrom)={}", spf_name(spf_helo.result()), spf_name(spf_mf.result()));
        let ar = AuthenticationResults::new(id)
            .with_spf_ehlo_result(&spf_helo, ip, helo_name)
            .with_spf_mailfrom_result(&spf_mf, ip, sender, helo_name);
        let (ar, decision) = match (&parsed, dkim, arc) {
            (Some(m), Some(dkim), Some(arc)) => {
                let dkim = dkim_results(m, dkim);
                let dmarc = self.rt.block_on(self.auth.verify_dmarc(DmarcParameters::new(m, &dkim, &mf_domain, &spf_mf)));
                if dkim.is_empty() {
                    summary.push_str(" dkim=none");
                }
                for d in &dkim {
                    let domain = d.signature().map(|s| s.d.as_str()).unwrap_or("?");
                    summary.push_str(&format!(" dkim={}({domain})", dkim_name(d.result())));
                }
                summary.push_str(&format!(
                    " dmarc={} policy={} from={} arc={}",
                    dmarc_name(&dmarc.result()),
                    policy_name(dmarc.policy()),
                    if dmarc.domain().is_empty() { "?" } else { dmarc.domain() },
                    dkim_name(arc.result())
                ));
                let ar = ar.with_dkim_results(&dkim, m.from()).with_arc_result(&arc, ip).with_dmarc_result(&dmarc);
                (ar, self.dmarc_decision(&dmarc))
            }
            _ => {
                summary.push_str(" dkim=none dmarc=none arc=none (the header does not parse)");
                (ar, Decision::Accept)
            }
        };
        Report { header: use_lf(&ar.to_header()), summary, decision }
    }

    fn dmarc_decision(&self, dmarc: &DmarcOutput) -> Decision {
        if !self.policy.dmarc_refuse || dmarc.policy() != DmarcPolicy::Reject {
            return Decision::Accept;
        }
        let from = dmarc.domain();
        match dmarc.result() {
            DmarcResult::Fail(_) => Decision::Refuse(
                Status::DENIED,
                format!("the message fails DMARC (RFC 7489) and its From domain {from} asks for such mail to be rejected"),
            ),
            DmarcResult::TempError(_) => {
                Decision::Defer(Status::SECURITY, format!("cannot check the DMARC policy of {from} now (DNS); try again later"))
            }
            _ => Decision::Accept,
        }
    }
}

/// mail-auth's DKIM results, corrected: a DKIM-Signature field that does not
/// parse is a `permerror` (RFC 8601 2.7.1; mail-auth says neutral for some
/// such fields and nothing for the others), and a body hash mismatch a `fail`.
fn dkim_results<'x>(m: &'x AuthenticatedMessage<'x>, dkim: Vec<DkimOutput<'x>>) -> Vec<DkimOutput<'x>> {
    let mut out: Vec<DkimOutput<'x>> = dkim
        .into_iter()
        .filter(|d| d.signature().is_some() || !matches!(d.result(), DkimResult::Neutral(_)))
        .map(|d| body_hash_is_fail(m, d))
        .collect();
    for e in &m.errors {
        if e.name.eq_ignore_ascii_case(b"DKIM-Signature") {
            out.push(DkimOutput::perm_err(e.header.clone()));
        }
    }
    out
}

/// A body that does not match its signature's hash is a failed signature (RFC
/// 6376 section 3.7: PERMFAIL, `fail` in RFC 8601); mail-auth calls it neutral.
/// (The signature is looked up in the message, which outlives the output.)
fn body_hash_is_fail<'x>(m: &'x AuthenticatedMessage<'x>, d: DkimOutput<'x>) -> DkimOutput<'x> {
    let DkimResult::Neutral(e @ mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch)) = d.result() else {
        return d;
    };
    let Some(sig) = d.signature().and_then(|s| m.dkim_headers.iter().map(|h| &h.header).find(|h| std::ptr::eq(*h, s))) else {
        return d;
    };
    DkimOutput::fail(e.clone()).with_signature(sig)
}

/// Both futures, polled in turn on the one thread (tokio's join! needs its
/// macros feature, which nothing else here wants).
async fn join<A: std::future::Future, B: std::future::Future>(a: A, b: B) -> (A::Output, B::Output) {
    use std::task::Poll;
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready((ra.take().expect("ready"), rb.take().expect("ready")))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Whose SPF record answers for MAIL FROM: the sender, or postmaster@HELO for
/// the null sender (RFC 7208 section 2.4).
fn mail_from_identity(helo: &str, sender: &str) -> String {
    if sender.is_empty() {
        format!("postmaster@{helo}")
    } else {
        sender.to_string()
    }
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(_, d)| d)
}

/// LF to CRLF (lines that already end in CRLF stay).
fn crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32);
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// mail-auth writes CRLF; the queue holds LF.
fn use_lf(s: &str) -> String {
    s.replace("\r\n", "\n")
}

fn spf_name(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_name(r: &DkimResult) -> String {
    match r {
        DkimResult::Pass => "pass".into(),
        DkimResult::Neutral(e) => format!("neutral[{e}]"),
        DkimResult::Fail(e) => format!("fail[{e}]"),
        DkimResult::PermError(e) => format!("permerror[{e}]"),
        DkimResult::TempError(e) => format!("temperror[{e}]"),
        DkimResult::None => "none".into(),
    }
}

fn dmarc_name(r: &DmarcResult) -> String {
    match r {
        DmarcResult::Pass => "pass".into(),
        DmarcResult::Fail(e) => format!("fail[{e}]"),
        DmarcResult::TempError(e) => format!("temperror[{e}]"),
        DmarcResult::PermError(e) => format!("permerror[{e}]"),
        DmarcResult::None => "none".into(),
    }
}

fn policy_name(p: DmarcPolicy) -> &'static str {
    match p {
        DmarcPolicy::None | DmarcPolicy::Unspecified => "none",
        DmarcPolicy::Quarantine => "quarantine",
        DmarcPolicy::Reject => "reject",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_for_dkim_and_for_the_queue() {
        assert_eq!(crlf(b"a\nb\r\n\nc"), b"a\r\nb\r\n\r\nc");
        assert_eq!(crlf(b"\n"), b"\r\n");
        assert_eq!(use_lf("A: b;\r\n\tc\r\n"), "A: b;\n\tc\n");
    }

    #[test]
    fn mail_from_identity_of_the_null_sender_is_postmaster_at_helo() {
        assert_eq!(mail_from_identity("mx.example", ""), "postmaster@mx.example");
        assert_eq!(domain_of(&mail_from_identity("mx.example", "a@b.example")), "b.example");
    }
}
