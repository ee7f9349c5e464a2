//! postern-smtpd's log lines: one per accepted message and one per connection,
//! each naming the client (address, HELO, TLS version and cipher, AUTH user).
//!
//! ```text
//! accepted ID from 192.0.2.7 helo=mx.example.net tls=TLSv1.3/TLS13_AES_256_GCM_SHA384 auth=alice: <a@example.net> -> <b@example.org>, <c@example.org>: 2048 bytes in 0.004 s
//! connection from 192.0.2.7 helo=mx.example.net tls=TLSv1.3/TLS13_AES_256_GCM_SHA384 auth=alice: 1 message(s) [ID], 0.210 s, ended: quit
//! ```
//! `helo=`, `tls=` and `auth=` are left out when the client gave none.

use crate::address::Address;
use crate::queue::Id;
use std::time::{Duration, Instant};

/// What one session has done so far, for its closing line.
#[derive(Debug)]
pub struct SessionLog {
    started: Instant,
    ids: Vec<String>,
}

impl Default for SessionLog {
    fn default() -> Self {
        SessionLog { started: Instant::now(), ids: Vec::new() }
    }
}

/// The client as log lines name it.
pub fn who(ip: &str, helo: Option<&str>, tls: Option<String>, auth: Option<&str>) -> String {
    let mut s = format!("from {ip}");
    if let Some(h) = helo {
        s.push_str(&format!(" helo={}", h.replace(' ', "_")));
    }
    if let Some(t) = tls {
        s.push_str(&format!(" tls={t}"));
    }
    if let Some(a) = auth {
        s.push_str(&format!(" auth={}", a.replace(' ', "_")));
    }
    s
}

fn secs(d: Duration) -> String {
    format!("{}.{:03} s", d.as_secs(), d.subsec_millis())
}

impl SessionLog {
    /// The line for a message accepted after `took` (from DATA to the queue's
    /// answer). The id is unknown when a queue program, not postern-queued,
    /// took the message.
    pub fn accepted(&mut self, who: &str, id: Option<&Id>, sender: &Address, rcpts: &[Address], size: u64, took: Duration) -> String {
        let id = id.map(|i| i.to_string()).unwrap_or_else(|| "(id unknown)".into());
        self.ids.push(id.clone());
        let to: Vec<String> = rcpts.iter().map(|r| format!("<{r}>")).collect();
        format!("accepted {id} {who}: <{sender}> -> {}: {size} bytes in {}", to.join(", "), secs(took))
    }

    /// The line at the end of the session.
    pub fn ended(&self, who: &str, how: &str) -> String {
        let ids = if self.ids.is_empty() { String::new() } else { format!(" [{}]", self.ids.join(" ")) };
        format!("connection {who}: {} message(s){ids}, {}, ended: {how}", self.ids.len(), secs(self.started.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_the_client_and_the_messages() {
        let mut l = SessionLog::default();
        let w = who("192.0.2.7", Some("mx.example"), Some("TLSv1.3/TLS13_AES_128_GCM_SHA256".into()), Some("alice"));
        let id = Id::parse("1.2.3").unwrap();
        let a = crate::testing::addr("a@example.net");
        let line = l.accepted(&w, Some(&id), &a, &[a.clone(), crate::testing::addr("b@x.test")], 12, Duration::from_millis(4));
        assert_eq!(
            line,
            "accepted 1.2.3 from 192.0.2.7 helo=mx.example tls=TLSv1.3/TLS13_AES_128_GCM_SHA256 auth=alice: <a@example.net> -> <a@example.net>, <b@x.test>: 12 bytes in 0.004 s"
        );
        let end = l.ended(&who("::1", None, None, None), "quit");
        assert!(end.starts_with("connection from ::1: 1 message(s) [1.2.3], 0.") && end.ends_with(" s, ended: quit"), "{end}");
    }
}
