//! End to end: an instance sends through postern-send, postern-rspawn and
//! postern-remote to a second instance's postern-smtpd, found by MX through
//! unbound, over verified TLS, from the source address of the sender's domain.

use super::*;
use std::process::Command;

/// Give `i` a certificate for `name` signed by a CA in `certs`.
fn install_cert(i: &Instance, certs: &TempDir, name: &str) {
    make_certs(certs.path(), name);
    for f in ["servercert.pem", "serverkey.pem"] {
        fs::copy(certs.path().join("control").join(f), i.path().join("control").join(f)).unwrap();
    }
    if is_root() {
        let st = Command::new("chgrp").arg("postern-d").arg(i.path().join("control/serverkey.pem")).status().unwrap();
        assert!(st.success());
        fs::set_permissions(i.path().join("control/serverkey.pem"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    }
}

#[test]
fn instance_to_instance_by_mx_with_verified_tls_from_the_senders_address() {
    let b = Instance::create("e2eb");
    let certs = TempDir::new("certs");
    install_cert(&b, &certs, "mx.e2eb.test");
    let bob = b.adduser("bob", "x");
    b.start();

    let dns = Unbound::start(&[
        "e2eb.test. MX 10 dead.e2eb.test.",
        "dead.e2eb.test. A 127.0.0.9",
        "e2eb.test. MX 20 mx.e2eb.test.",
        "mx.e2eb.test. A 127.0.0.1",
    ]);
    let a = Instance::create("e2ea");
    a.control("dnsresolvers", &format!("127.0.0.1:{}\n", dns.port()))
        .control("smtproutes", &format!("::{}\n", b.smtp_port()))
        .control("outgoingip", "e2ea.test:127.0.0.2:mail.e2ea.test\n")
        .control("tlsdestinations", "e2eb.test:verify\n")
        .control("timeoutconnect", "5\n");
    fs::copy(certs.path().join("ca.pem"), a.path().join("control/tlsca.pem")).unwrap();
    a.start();

    let msg = message("across", "from one instance to the other\n.with a dot");
    a.send(&a.address("alice"), &[&b.address("bob")], &msg);
    let got = b.wait_mail(&bob, 1);
    let text = String::from_utf8_lossy(&got[0]).into_owned();
    assert!(text.contains("Subject: across") && text.contains("\n.with a dot\n"), "{text}");
    assert!(text.contains("Received: from mail.e2ea.test ("), "B saw A's HELO name:\n{text}");
    assert!(text.contains("[127.0.0.2])\n\tby "), "and A's source address:\n{text}");
    assert!(text.contains("with ESMTPS;"), "over TLS:\n{text}");
    a.wait_empty();
}

#[test]
fn instance_retries_a_temporary_failure_and_bounces_a_permanent_one() {
    fn rcpt(addr: &str) -> String {
        if addr.starts_with("gone") {
            "550 5.1.1 gone".into()
        } else {
            "451 4.3.0 later".into()
        }
    }
    let f = FakeSmtp::start("127.0.0.1", FakeScript { rcpt, ..FakeScript::default() });
    let a = Instance::create("e2er");
    a.control("smtproutes", &format!(":[127.0.0.1]:{}\n", f.port()));
    let alice = a.adduser("alice", "x");
    a.start();
    a.send(&a.address("alice"), &["gone@far.test", "later@far.test"], &message("two", "b"));
    let dsn = String::from_utf8_lossy(&a.wait_mail(&alice, 1)[0]).into_owned();
    assert!(dsn.contains("Final-Recipient: rfc822; gone@far.test") && dsn.contains("550 5.1.1 gone"), "{dsn}");
    assert!(!dsn.contains("Final-Recipient: rfc822; later@far.test"), "{dsn}");
    // The bounce leaves the queue; the message stays for the temporary recipient.
    wait_for(10, "one message left in the queue", || (a.queued() == 1).then_some(()));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(a.queued(), 1, "the temporary one waits for a retry");
}
