//! STARTTLS: opportunistic by default with a plain-text fallback, required and
//! verified where control/tlsdestinations says so.

use super::*;

fn tls_fake(tls: FakeTls, certs: &TempDir) -> FakeSmtp {
    FakeSmtp::start("127.0.0.1", FakeScript { tls, cert_dir: Some(certs.path().to_path_buf()), ..FakeScript::default() })
}

#[test]
fn opportunistic_starttls_is_used_when_offered() {
    let certs = TempDir::new("certs");
    make_certs(certs.path(), "mx.tls.test");
    let dns = Unbound::start(ZONE);
    let f = tls_fake(FakeTls::Good, &certs);
    let h = home("t-opp", f.port(), dns.port());
    let o = remote(&h, "tls.test", "me@a.test", &["u@tls.test"], &message("secret", "b"));
    assert_eq!(o.message.0, 'K', "{o:?}");
    let s = &f.sessions()[0];
    assert!(s.tls, "{s:?}");
    assert_eq!(s.lines.iter().filter(|l| l.starts_with("EHLO")).count(), 2, "EHLO again after TLS: {s:?}");
    assert!(String::from_utf8_lossy(&s.data).contains("Subject: secret"));
}

#[test]
fn failed_handshake_falls_back_to_plain_unless_tls_is_required() {
    let certs = TempDir::new("certs");
    let dns = Unbound::start(ZONE);
    let f = tls_fake(FakeTls::Broken, &certs);
    let h = home("t-broken", f.port(), dns.port());
    let o = remote(&h, "tls.test", "me@a.test", &["u@tls.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'K', "{o:?}");
    let s = f.sessions();
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(s[0].lines.contains(&"STARTTLS".to_string()) && !s[1].lines.contains(&"STARTTLS".to_string()), "{s:?}");
    assert!(!s[1].data.is_empty());

    h.control("tlsdestinations", "tls.test\n");
    let o = remote(&h, "tls.test", "me@a.test", &["u@tls.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.starts_with("4.7.5 TLS with mx.tls.test [127.0.0.1]"), "{o:?}");
    assert_eq!(f.sessions().len(), 3, "no plain-text retry");
}

#[test]
fn required_tls_without_starttls_is_temporary() {
    let dns = Unbound::start(ZONE);
    let f = FakeSmtp::start("127.0.0.1", FakeScript::default());
    let h = home("t-req", f.port(), dns.port());
    h.control("tlsdestinations", ".test\n");
    let o = remote(&h, "tls.test", "me@a.test", &["u@tls.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.starts_with("4.7.4 ") && o.message.1.contains("does not offer STARTTLS"), "{o:?}");
    assert!(!f.sessions()[0].lines.iter().any(|l| l.starts_with("MAIL")));
}

#[test]
fn verified_tls_checks_the_certificate_against_tlsca() {
    let certs = TempDir::new("certs");
    make_certs(certs.path(), "mx.tls.test");
    let dns = Unbound::start(ZONE);
    let f = tls_fake(FakeTls::Good, &certs);
    let h = home("t-verify", f.port(), dns.port());
    h.control("tlsdestinations", "tls.test:verify\nmx.test:verify\n");
    fs::copy(certs.path().join("ca.pem"), h.join("control/tlsca.pem")).unwrap();
    let o = remote(&h, "tls.test", "me@a.test", &["u@tls.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'K', "{o:?}");
    assert!(f.sessions()[0].tls);
    // mx.test's MX is mail.mx.test: the certificate (for mx.tls.test) does not match.
    let o = remote(&h, "mx.test", "me@a.test", &["u@mx.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.starts_with("4.7.5 TLS with mail.mx.test") && o.message.1.contains("ertificate"), "{o:?}");
}
