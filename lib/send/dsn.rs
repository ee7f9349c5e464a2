//! Delivery status notifications (RFC 3464) for bounces.

use crate::address::Address;
use crate::message::date::rfc2822;
use crate::status::Status;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One recipient that could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub recipient: Address,
    pub status: Status,
    /// What the delivery said.
    pub text: String,
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
        let mut m = String::new();
        m.push_str(&format!("From: Mail Delivery System <{}>\n", self.from));
        m.push_str(&format!("To: {}\n", self.to));
        m.push_str("Subject: Undelivered mail returned to sender\n");
        m.push_str(&format!("Date: {}\n", rfc2822(now)));
        m.push_str(&format!("Message-ID: <{}.bounce@{}>\n", boundary, self.reporting_host));
        m.push_str("Auto-Submitted: auto-replied\n");
        m.push_str("MIME-Version: 1.0\n");
        m.push_str(&format!("Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"{boundary}\"\n\n"));
        m.push_str("This is a MIME-encapsulated message.\n\n");
        m.push_str(&format!("--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n"));
        m.push_str(&format!(
            "This is the mail system at {}.\n\nI could not deliver your message to the following addresses.\nThis is a permanent error; I have given up.\n\n",
            self.reporting_host
        ));
        for f in self.failures {
            m.push_str(&format!("<{}>:\n{} {}\n\n", f.recipient, f.status, f.text));
        }
        m.push_str(&format!("--{boundary}\nContent-Type: message/delivery-status\n\n"));
        m.push_str(&format!("Reporting-MTA: dns; {}\n", self.reporting_host));
        m.push_str(&format!("X-Postern-Queue-ID: {}\n", self.queue_id));
        m.push_str(&format!("Arrival-Date: {}\n", rfc2822(UNIX_EPOCH + Duration::from_secs(self.arrival))));
        for f in self.failures {
            m.push_str(&format!("\nFinal-Recipient: rfc822; {}\n", f.recipient));
            m.push_str("Action: failed\n");
            m.push_str(&format!("Status: {}\n", f.status));
            m.push_str(&format!("Diagnostic-Code: X-Postern; {}\n", f.text.replace('\n', " ")));
        }
        m.push('\n');
        let whole = self.original.len() <= self.max_bytes;
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
        let failures = [Failure { recipient, status: Status::NO_MAILBOX, text: "Sorry, no mailbox here by that name.".into() }];
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
        };
        let text = String::from_utf8(b.render()).unwrap();
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("Final-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.1.1\n"));
        assert!(text.contains("Content-Type: message/rfc822\n\nSubject: hi\nFrom: s@x\n\nbody\n"));
        let small = Dsn { max_bytes: 5, ..b };
        let text = String::from_utf8(small.render()).unwrap();
        assert!(text.contains("text/rfc822-headers\n\nSubject: hi\nFrom: s@x\n\n--"));
        assert!(!text.contains("body\n"));
    }
}
