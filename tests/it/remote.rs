//! postern-remote against real peers on loopback: unbound serving the tests' own
//! zone, Postfix's smtp-sink, and scripted fake servers (fixture::FakeSmtp) for
//! the faults and for recording the peer address, HELO and commands.
//!
//! Most tests run postern-remote directly in a fixture::Home with control files
//! pointing it at those peers; DNS is always control/dnsresolvers, never the
//! machine's resolver.

mod dns;
mod e2e;
mod smtp;
mod tls;

use crate::fixture::*;
use std::fs::{self, File};
use std::process::Stdio;

/// What postern-remote printed.
#[derive(Debug)]
pub struct Outcome {
    pub recipients: Vec<(char, String)>,
    pub message: (char, String),
}

/// Run postern-remote HOST SENDER RCPTS... with `msg` on a seekable fd 0.
pub fn remote(home: &Home, host: &str, sender: &str, rcpts: &[&str], msg: &[u8]) -> Outcome {
    let path = home.join("message");
    fs::write(&path, msg).unwrap();
    let out = home.cmd("postern-remote").arg(host).arg(sender).args(rcpts).stdin(Stdio::from(File::open(&path).unwrap())).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.ends_with(b"\0"), "{}", text(&out));
    let mut reports: Vec<(char, String)> = out.stdout[..out.stdout.len() - 1]
        .split(|&b| b == 0)
        .map(|r| (r[0] as char, String::from_utf8_lossy(&r[1..]).into_owned()))
        .collect();
    let message = reports.pop().unwrap();
    assert!("KZD".contains(message.0), "{}", text(&out));
    assert!(reports.is_empty() || reports.len() == rcpts.len(), "{}", text(&out));
    Outcome { recipients: reports, message }
}

/// A home whose every domain goes by MX on `port` (smtproutes `::port`), with
/// short timeouts and DNS from `dns_port`.
pub fn home(tag: &str, port: u16, dns_port: u16) -> Home {
    let h = Home::new(tag);
    h.control("smtproutes", &format!("::{port}\n"))
        .control("dnsresolvers", &format!("127.0.0.1:{dns_port}\n"))
        .control("timeoutremote", "5\n")
        .control("timeoutconnect", "5\n");
    h
}

/// The zone every DNS test shares (all under test.).
pub const ZONE: &[&str] = &[
    "mx.test. MX 10 mail.mx.test.",
    "mail.mx.test. A 127.0.0.1",
    "twomx.test. MX 10 dead.twomx.test.",
    "twomx.test. MX 20 live.twomx.test.",
    "dead.twomx.test. A 127.0.0.9",
    "live.twomx.test. A 127.0.0.1",
    "implicit.test. A 127.0.0.1",
    "six.test. MX 10 v6.six.test.",
    "v6.six.test. AAAA ::1",
    "nullmx.test. MX 0 .",
    "alias.test. CNAME mx.test.",
    "loop1.test. CNAME loop2.test.",
    "loop2.test. CNAME loop1.test.",
    "tls.test. MX 10 mx.tls.test.",
    "mx.tls.test. A 127.0.0.1",
    "a.test. MX 10 mail.mx.test.",
];
