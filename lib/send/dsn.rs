//! Delivery status notifications (RFC 3464): bounces, and the success notices
//! a sender asked for with NOTIFY=SUCCESS (RFC 3461). RET decides what of the
//! message comes back, ENVID and ORCPT are quoted in the report.

use crate::address::Address;
use crate::message::date::rfc2822;
use crate::queue::dsnparams::{decode_xtext, Ret};
use crate::status::Status;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What happened to a reported recipient (RFC 3464's Action field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    Failed,
    /// Delivered into a mailbox here.
    Delivered,
    /// Handed to another server that was not asked for notices (we pass no DSN
    /// parameters on), so no further notice will come.
    Relayed,
}

impl DsnAction {
    fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
        }
    }
}

/// One recipient reported: one that could not be delivered, or (NOTIFY=SUCCESS)
/// one that was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub recipient: Address,
    pub status: Status,
    /// What the delivery said.
    pub text: String,
    pub action: DsnAction,
    /// ORCPT as given (`addr-type;xtext`).
    pub orcpt: Option<String>,
}

impl Failure {
    /// A recipient that failed, without ORCPT.
    pub fn failed(recipient: Address, status: Status, text: String) -> Failure {
        Failure { recipient, status, text, action: DsnAction::Failed, orcpt: None }
    }
}

pub struct Dsn<'a> {
    /// Host named in Reporting-MTA and the From address.
    pub reporting_host: &'a str,
    /// Address the bounce comes from (MAILER-DAEMON@bouncehost).
    pub from: &'a str,
    pub to: &'a str,
    pub queue_id: &'a str,
    pub arrival: u64,
    pub failures: &'a [Failure],
    /// The original message; included whole when it is at most `max_bytes`, else
    /// only its header.
    pub original: &'a [u8],
    pub max_bytes: usize,
    /// RET: HDRS returns only the header; without RET a report of successes
    /// only returns only the header too.
    pub ret: Option<Ret>,
    /// ENVID, as xtext.
    pub envid: Option<&'a str>,
}

fn header_section(msg: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < msg.len() {
        if msg[i..].starts_with(b"\n\n") {
            return &msg[..i + 1];
        }
        i += 1;
    }
    msg
}

impl Dsn<'_> {
    pub fn render(&self) -> Vec<u8> {
        let now = SystemTime::now();
        let boundary = format!("postern-{}-{}", self.queue_id, now.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
        let failed: Vec<&Failure> = self.failures.iter().filter(|f| f.action == DsnAction::Failed).collect();
        let succeeded: Vec<&Failure> = self.failures.iter().filter(|f| f.action != DsnAction::Failed).collect();
        let mut m = String::new();
        m.push_str(&format!("From: Mail Delivery System <{}>\n", self.from));
        m.push_str(&format!("To: {}\n", self.to));
        if failed.is_empty() {
            m.push_str("Subject: Successful Mail Delivery Report\n");
        } else {
            m.push_str("Subject: Undelivered mail returned to sender\n");
        }
        m.push_str(&format!("Date: {}\n", rfc2822(now)));
        m.push_str(&format!("Message-ID: <{}.bounce@{}>\n", boundary, self.reporting_host));
        m.push_str("Auto-Submitted: auto-replied\n");
        m.push_str("MIME-Version: 1.0\n");
        m.push_str(&format!("Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"{boundary}\"\n\n"));
        m.push_str("This is a MIME-encapsulated message.\n\n");
        m.push_str(&format!("--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n"));
        m.push_str(&format!("This is the mail system at {}.\n\n", self.reporting_host));
        if !failed.is_empty() {
            m.push_str("I could not deliver your message to the following addresses.\nThis is a permanent error; I have given up.\n\n");
            for f in &failed {
                m.push_str(&format!("<{}>:\n{} {}\n\n", f.recipient, f.status, f.text));
            }
        }
        if !succeeded.is_empty() {
            m.push_str("As you asked, this reports the delivery of your message to the following addresses.\n\n");
            for f in &succeeded {
                let what = match f.action {
                    DsnAction::Relayed => "relayed to a server that sends no delivery notices",
                    _ => "delivered to the mailbox",
                };
                m.push_str(&format!("<{}>: {what}\n{} {}\n\n", f.recipient, f.status, f.text));
            }
        }
        m.push_str(&format!("--{boundary}\nContent-Type: message/delivery-status\n\n"));
        // ENVID and ORCPT were checked as xtext whose decoded form is printable
        // ASCII (queue::dsnparams): decoding cannot add a line.
        if let Some(envid) = self.envid {
            m.push_str(&format!("Original-Envelope-Id: {}\n", decode_xtext(envid)));
        }
        m.push_str(&format!("Reporting-MTA: dns; {}\n", self.reporting_host));
        m.push_str(&format!("X-Postern-Queue-ID: {}\n", self.queue_id));
        m.push_str(&format!("Arrival-Date: {}\n", rfc2822(UNIX_EPOCH + Duration::from_secs(self.arrival))));
        for f in self.failures {
            m.push('\n');
            if let Some((kind, addr)) = f.orcpt.as_deref().and_then(|o| o.split_once(';')) {
                m.push_str(&format!("Original-Recipient: {kind}; {}\n", decode_xtext(addr)));
            }
            m.push_str(&format!("Final-Recipient: rfc822; {}\n", f.recipient));
            m.push_str(&format!("Action: {}\n", f.action.as_str()));
            m.push_str(&format!("Status: {}\n", f.status));
            m.push_str(&format!("Diagnostic-Code: X-Postern; {}\n", f.text.replace('\n', " ")));
        }
        m.push('\n');
        let headers_only = match self.ret {
            Some(Ret::Hdrs) => true,
            Some(Ret::Full) => false,
            None => failed.is_empty(),
        };
        let whole = !headers_only && self.original.len() <= self.max_bytes;
        if whole {
            m.push_str(&format!("--{boundary}\nContent-Type: message/rfc822\n\n"));
        } else {
            m.push_str(&format!("--{boundary}\nContent-Type: text/rfc822-headers\n\n"));
        }
        let mut out = m.into_bytes();
        out.extend_from_slice(if whole { self.original } else { header_section(self.original) });
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_structure() {
        let recipient = Address::parse(b"a@b.example").unwrap();
        let failures = [Failure::failed(recipient, Status::NO_MAILBOX, "Sorry, no mailbox here by that name.".into())];
        let original = b"Subject: hi\nFrom: s@x\n\nbody\n";
        let b = Dsn {
            reporting_host: "mx.example",
            from: "MAILER-DAEMON@mx.example",
            to: "s@x",
            queue_id: "1.2.3",
            arrival: 0,
            failures: &failures,
            original,
            max_bytes: 1000,
            ret: None,
            envid: None,
        };
        let text = String::from_utf8(b.render()).unwrap();
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("Final-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.1.1\n"));
        assert!(text.contains("Content-Type: message/rfc822\n\nSubject: hi\nFrom: s@x\n\nbody\n"));
        let small = Dsn { max_bytes: 5, ..b };
        let text = String::from_utf8(small.render()).unwrap();
        assert!(text.contains("text/rfc822-headers\n\nSubject: hi\nFrom: s@x\n\n--"));
        assert!(!text.contains("body\n"));
        assert!(!text.contains("Original-"));
    }

    #[test]
    fn ret_envid_orcpt_and_successes() {
        let failures = vec![Failure {
            orcpt: Some("rfc822;Orig+2Bx@b.example".into()),
            ..Failure::failed(Address::parse(b"a@b.example").unwrap(), Status::NO_MAILBOX, "no".into())
        }];
        let original = b"Subject: hi\n\nbody\n";
        let d = Dsn {
            reporting_host: "mx.example",
            from: "MAILER-DAEMON@mx.example",
            to: "s@x",
            queue_id: "1.2.3",
            arrival: 0,
            failures: &failures,
            original,
            max_bytes: 1000,
            ret: Some(Ret::Hdrs),
            envid: Some("env+2B1"),
        };
        let text = String::from_utf8(d.render()).unwrap();
        assert!(text.contains("Content-Type: message/delivery-status\n\nOriginal-Envelope-Id: env+1\nReporting-MTA:"), "{text}");
        assert!(
            text.contains("\nOriginal-Recipient: rfc822; Orig+x@b.example\nFinal-Recipient: rfc822; a@b.example\nAction: failed\n"),
            "{text}"
        );
        assert!(text.contains("text/rfc822-headers\n\nSubject: hi\n\n--") && !text.contains("body"), "RET=HDRS: {text}");
        let mut ok = failures.clone();
        ok[0].action = DsnAction::Delivered;
        ok[0].status = Status::OK;
        let text = String::from_utf8(Dsn { failures: &ok, ret: None, ..d }.render()).unwrap();
        assert!(
            text.contains("Subject: Successful Mail Delivery Report\n") && text.contains("Action: delivered\nStatus: 2.0.0\n"),
            "{text}"
        );
        assert!(!text.contains("body"), "a success notice returns the header only: {text}");
        let text = String::from_utf8(Dsn { failures: &ok, ret: Some(Ret::Full), ..d }.render()).unwrap();
        assert!(text.contains("message/rfc822\n\nSubject: hi\n\nbody\n"), "{text}");
    }
}
