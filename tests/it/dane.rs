//! DANE for SMTP (RFC 7672) in postern-remote: unbound validates and serves a
//! `test.` zone signed in each run (fixture::SignedUnbound); postern-remote
//! validates it itself from the zone's KSK (control/dnssec 1,
//! control/trustanchors) and checks the fake peer's certificate against the
//! TLSA records of its MX host.

use crate::fixture::*;
use crate::remote::{home, remote};
use std::fs;
use std::process::Command;

/// SHA-256 of the SPKI of `certs`' server certificate, in hex (a `3 1 1` record).
fn spki_sha256(certs: &TempDir) -> String {
    let sh = format!(
        "openssl x509 -in '{}/control/servercert.pem' -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
        certs.path().display()
    );
    let out = Command::new("sh").arg("-c").arg(sh).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// SHA-256 of the whole CA certificate (a `2 0 1` record).
fn ca_sha256(certs: &TempDir) -> String {
    let sh = format!("openssl x509 -in '{}/ca.pem' -outform DER | openssl dgst -sha256 -r", certs.path().display());
    let out = Command::new("sh").arg("-c").arg(sh).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// `dom.test. MX mx.dom.test.`, its address, and a TLSA record when given.
fn domain(dom: &str, tlsa: Option<&str>) -> Vec<String> {
    let mut v = vec![format!("{dom}.test. IN MX 10 mx.{dom}.test."), format!("mx.{dom}.test. IN A 127.0.0.1")];
    if let Some(t) = tlsa {
        v.push(format!("_25._tcp.mx.{dom}.test. IN TLSA {t}"));
    }
    v
}

struct Setup {
    _dns: SignedUnbound,
    fake: FakeSmtp,
    home: Home,
    _certs: TempDir,
}

/// A fake peer with `tls` and a certificate for `mx.DOM.test`, the signed
/// zone holding `records` (tampered with as `tamper` says), and a home
/// validating DNSSEC from the zone's anchor.
fn setup(tag: &str, tls: FakeTls, records: impl Fn(&TempDir) -> Vec<String>, tamper: &[(&str, &str, &str)]) -> Setup {
    let certs = TempDir::new("certs");
    make_certs(certs.path(), &format!("mx.{tag}.test"));
    let recs = records(&certs);
    let dns = SignedUnbound::start(
        &recs.iter().map(String::as_str).collect::<Vec<_>>(),
        tamper,
        &["plain.test. IN MX 10 mx.plain.test.", "mx.plain.test. IN A 127.0.0.1"],
    );
    let fake = FakeSmtp::start("127.0.0.1", FakeScript { tls, cert_dir: Some(certs.path().to_path_buf()), ..FakeScript::default() });
    let h = home(&format!("dane-{tag}"), fake.port(), dns.port());
    // In the home's control/, which postern-r can read.
    fs::copy(dns.anchor(), h.join("control/anchor.key")).unwrap();
    h.control("dnssec", "1\n").control("trustanchors", &format!("{}\n", h.join("control/anchor.key").display()));
    Setup { _dns: dns, fake, home: h, _certs: certs }
}

fn mail_sent(f: &FakeSmtp) -> bool {
    f.sessions().iter().any(|s| s.lines.iter().any(|l| l.starts_with("MAIL")) || !s.data.is_empty())
}

#[test]
fn dane_ee_match_delivers_over_tls() {
    let s = setup("good", FakeTls::Good, |c| domain("good", Some(&format!("3 1 1 {}", spki_sha256(c)))), &[]);
    let o = remote(&s.home, "good.test", "me@a.test", &["u@good.test"], &message("dane", "b"));
    assert_eq!(o.message.0, 'K', "{o:?}");
    assert!(o.message.1.contains("accepted the message (TLS, dane)"), "{o:?}");
    let sessions = s.fake.sessions();
    assert!(sessions[0].tls, "{sessions:?}");
    assert!(String::from_utf8_lossy(&sessions[0].data).contains("Subject: dane"));
}

#[test]
fn dane_ta_match_delivers_over_tls() {
    let s = setup("ta", FakeTls::Good, |c| domain("ta", Some(&format!("2 0 1 {}", ca_sha256(c)))), &[]);
    // DANE-TA needs the anchor in the chain the server sends (RFC 7672 3.1.2).
    let cert_path = s._certs.path().join("control/servercert.pem");
    let chain = fs::read_to_string(&cert_path).unwrap() + &fs::read_to_string(s._certs.path().join("ca.pem")).unwrap();
    fs::write(&cert_path, chain).unwrap();
    let o = remote(&s.home, "ta.test", "me@a.test", &["u@ta.test"], &message("ta", "b"));
    assert_eq!(o.message.0, 'K', "{o:?}");
    assert!(o.message.1.contains("accepted the message (TLS, dane-ta)"), "{o:?}");
    assert!(s.fake.sessions()[0].tls);
}

#[test]
fn dane_mismatch_defers_and_sends_nothing() {
    let wrong = "3 1 1 ".to_string() + &"ab".repeat(32);
    let s = setup("bad", FakeTls::Good, |_| domain("bad", Some(&wrong)), &[]);
    let o = remote(&s.home, "bad.test", "me@a.test", &["u@bad.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.starts_with("4.7.5 TLS with mx.bad.test") && o.message.1.contains("TLSA"), "{o:?}");
    assert!(!mail_sent(&s.fake), "{:?}", s.fake.sessions());
    assert_eq!(s.fake.sessions().len(), 1, "no plain-text retry: {:?}", s.fake.sessions());
}

#[test]
fn dane_bogus_tlsa_defers_without_connecting() {
    let s = setup(
        "bogus",
        FakeTls::Good,
        |c| domain("bogus", Some(&format!("3 1 1 {}", spki_sha256(c)))),
        &[("_25._tcp.mx.bogus.test.", "3 1 1 ", "3 1 2 ")],
    );
    let o = remote(&s.home, "bogus.test", "me@a.test", &["u@bogus.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.starts_with("4.7.4 skipped mx.bogus.test") && o.message.1.contains("TLSA"), "{o:?}");
    assert!(s.fake.sessions().is_empty(), "{:?}", s.fake.sessions());
}

#[test]
fn dane_without_starttls_defers() {
    let s = setup("nostarttls", FakeTls::None, |c| domain("nostarttls", Some(&format!("3 1 1 {}", spki_sha256(c)))), &[]);
    let o = remote(&s.home, "nostarttls.test", "me@a.test", &["u@nostarttls.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.starts_with("4.7.4 skipped mx.nostarttls.test") && o.message.1.contains("does not offer STARTTLS"), "{o:?}");
    assert!(!mail_sent(&s.fake), "{:?}", s.fake.sessions());
}

#[test]
fn dane_unsigned_domain_is_opportunistic() {
    // plain.test. is delegated without DS: provably insecure, so no DANE.
    let s = setup("plain", FakeTls::None, |_| domain("other", None), &[]);
    let o = remote(&s.home, "plain.test", "me@a.test", &["u@plain.test"], &message("plain", "b"));
    assert_eq!(o.message.0, 'K', "{o:?}");
    assert!(!o.message.1.contains("dane"), "{o:?}");
    assert!(!s.fake.sessions()[0].tls);
}

#[test]
fn dane_delivery_is_logged_by_postern_send() {
    let certs = TempDir::new("certs");
    make_certs(certs.path(), "mx.logged.test");
    let recs = domain("logged", Some(&format!("3 1 1 {}", spki_sha256(&certs))));
    let dns = SignedUnbound::start(&recs.iter().map(String::as_str).collect::<Vec<_>>(), &[], &[]);
    let fake = FakeSmtp::start(
        "127.0.0.1",
        FakeScript { tls: FakeTls::Good, cert_dir: Some(certs.path().to_path_buf()), ..FakeScript::default() },
    );
    let a = Instance::create("dane-log");
    fs::copy(dns.anchor(), a.path().join("control/anchor.key")).unwrap();
    a.control("dnsresolvers", &format!("127.0.0.1:{}\n", dns.port()))
        .control("smtproutes", &format!("::{}\n", fake.port()))
        .control("dnssec", "1\n")
        .control("trustanchors", &format!("{}\n", a.path().join("control/anchor.key").display()));
    a.start();
    a.send(&a.address("alice"), &["u@logged.test"], &message("logged", "b"));
    let log = wait_for(10, "the delivery in postern-send's log", || {
        let l = a.send_log();
        l.contains("to <u@logged.test>: success").then_some(l)
    });
    assert!(log.lines().any(|l| l.contains("to <u@logged.test>: success") && l.contains("(TLS, dane)")), "{log}");
    assert!(fake.sessions()[0].tls);
    a.wait_empty();
}
