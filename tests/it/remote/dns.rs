//! MX resolution through a real DNS server (unbound on loopback, the test zone).

use super::*;

#[test]
fn mx_cname_implicit_mx_and_an_unreachable_first_mx() {
    let dns = Unbound::start(ZONE);
    let f = FakeSmtp::start("127.0.0.1", FakeScript::default());
    let h = home("d-mx", f.port(), dns.port());
    for domain in ["mx.test", "alias.test", "implicit.test", "twomx.test"] {
        let o = remote(&h, domain, "me@a.test", &[&format!("u@{domain}")], &message("m", "b"));
        assert_eq!(o.message.0, 'K', "{domain}: {o:?}");
        assert!(o.message.1.contains("[127.0.0.1]"), "{o:?}");
    }
    assert_eq!(f.sessions().len(), 4);
    let o = remote(&h, "mx.test", "me@a.test", &["u@mx.test"], &message("m", "b"));
    assert!(o.message.1.starts_with("mail.mx.test [127.0.0.1]:"), "names the MX host: {o:?}");
}

#[test]
fn ipv6_only_mx_host() {
    let dns = Unbound::start(ZONE);
    let f = FakeSmtp::start("::1", FakeScript::default());
    let h = home("d-six", f.port(), dns.port());
    let o = remote(&h, "six.test", "me@a.test", &["u@six.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'K', "{o:?}");
    assert!(o.message.1.contains("v6.six.test [::1]"), "{o:?}");
}

#[test]
fn null_mx_and_missing_domain_bounce() {
    let dns = Unbound::start(ZONE);
    // No SMTP connection is made: the refused port is only there to fill the route.
    let smtp = refused_port();
    let h = home("d-null", smtp.port, dns.port());
    let o = remote(&h, "nullmx.test", "me@a.test", &["u@nullmx.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'D', "{o:?}");
    assert!(o.message.1.starts_with("5.1.10 ") && o.message.1.contains("null MX"), "{o:?}");
    let o = remote(&h, "nowhere.test", "me@a.test", &["u@nowhere.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'D', "{o:?}");
    assert!(o.message.1.starts_with("5.1.2 "), "{o:?}");
}

#[test]
fn cname_loop_is_temporary_and_says_so() {
    let dns = Unbound::start(ZONE);
    let smtp = refused_port();
    let h = home("d-loop", smtp.port, dns.port());
    let o = remote(&h, "loop1.test", "me@a.test", &["u@loop1.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.contains("loop of CNAMEs") && o.message.1.contains("loop2.test"), "{o:?}");
}

#[test]
fn a_dns_server_that_is_down_is_temporary() {
    let (smtp, dns) = (refused_port(), refused_port());
    let h = home("d-down", smtp.port, dns.port);
    let o = remote(&h, "mx.test", "me@a.test", &["u@mx.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.starts_with("4.4.3 DNS lookup of mx.test MX failed"), "{o:?}");
}

#[test]
fn smtproutes_relay_by_name_overrides_mx() {
    let dns = Unbound::start(ZONE);
    let f = FakeSmtp::start("127.0.0.1", FakeScript::default());
    let h = home("d-route", f.port(), dns.port());
    h.control("smtproutes", &format!("nullmx.test:implicit.test:{}\n", f.port()));
    let o = remote(&h, "nullmx.test", "me@a.test", &["u@nullmx.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'K', "{o:?}");
    assert!(o.message.1.starts_with("implicit.test [127.0.0.1]"), "{o:?}");
}
