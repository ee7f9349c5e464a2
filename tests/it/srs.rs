//! SRS (lib/srs) between two real instances: A (srsfwd.test) forwards with
//! `&` lines to B (srsdst.test), which checks SPF on arrival (postern-authcheck,
//! unbound serving the zone). The original sender's domain authorises only
//! another address, A's authorises 127.0.0.1, so SPF passes at B only for the
//! SRS sender. A bounce made at B comes back through A to the original sender
//! (a fake peer for orig.test); forged SRS addresses get 550 at A's RCPT.

use crate::fixture::*;

const ORIG: &str = "alice@orig.test";

fn mail(subject: &str) -> Vec<u8> {
    format!(
        "From: <{ORIG}>\nTo: someone\nSubject: {subject}\nMessage-ID: <{subject}.{}@orig.test>\n\nbody of {subject}\n",
        std::process::id()
    )
    .into_bytes()
}

/// One SMTP transaction from 127.0.0.1; the reply to RCPT, and to the message if
/// RCPT was accepted.
fn smtp(port: u16, sender: &str, rcpt: &str, msg: &[u8]) -> (u16, String) {
    let mut c = Client::smtp(port);
    c.expect("EHLO client.test", 250);
    c.expect(&format!("MAIL FROM:<{sender}>"), 250);
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    if r.0 != 250 {
        let _ = c.cmd("QUIT");
        return r;
    }
    c.expect("DATA", 354);
    let mut data = crlf(msg);
    data.extend_from_slice(b".\r\n");
    c.send(&data);
    let r = c.reply();
    let _ = c.cmd("QUIT");
    r
}

fn header_of(msg: &[u8], name: &str) -> String {
    header(msg, name).unwrap_or_default()
}

#[test]
fn forwards_leave_with_an_srs_sender_that_passes_spf_and_bounces_come_back() {
    let dns = Unbound::start(&[
        "orig.test. TXT \"v=spf1 ip4:192.0.2.1 -all\"",
        "srsfwd.test. TXT \"v=spf1 ip4:127.0.0.1 -all\"",
        "srsfwd.test. A 127.0.0.1",
    ]);
    let peer = FakeSmtp::start("127.0.0.1", FakeScript::default());
    // B: checks arrivals; bob takes mail, bouncer bounces it after accepting.
    let b = Instance::create("srsdst");
    let bob = b.adduser("bob", "pw");
    b.adduser("bouncer", "pw");
    let bouncesaying = b.path().join("bin/postern-bouncesaying");
    b.dot_file("bouncer", ".qmail", &format!("|{} '5.1.1 bouncer does not want it'\n", bouncesaying.display()));
    b.control("dnsresolvers", &format!("127.0.0.1:{}\n", dns.port())).control("authcheck", "1\n").control("authservid", "mx.srsdst.test\n");
    b.start();
    // A: fwd forwards to bob, fwd2 to bouncer; keep gets a local forward.
    let a = Instance::create("srsfwd");
    a.adduser("fwd", "pw");
    a.adduser("fwd2", "pw");
    let keep = a.adduser("keep", "pw");
    a.adduser("fwd3", "pw");
    a.dot_file("fwd", ".qmail", "&bob@srsdst.test\n");
    a.dot_file("fwd2", ".qmail", "&bouncer@srsdst.test\n");
    a.dot_file("fwd3", ".qmail", &format!("&{}\n", a.address("keep")));
    a.adduser("fwd4", "pw");
    a.dot_file("fwd4", ".qmail", "&nobody@srsdst.test\n");
    a.start();
    a.control("smtproutes", &format!("srsdst.test:[127.0.0.1]:{}\norig.test:[127.0.0.1]:{}\n", b.smtp_port(), peer.port()));
    b.control("smtproutes", &format!("srsfwd.test:[127.0.0.1]:{}\n", a.smtp_port()));

    // 1. Forwarded: B sees an SRS sender of A's domain, and SPF passes for it.
    assert_eq!(smtp(a.smtp_port(), ORIG, &a.address("fwd"), &mail("fwd1")).0, 250);
    let got = b.wait_mail(&bob, 1);
    let rp = header_of(&got[0], "Return-Path");
    assert!(rp.starts_with("<SRS0=") && rp.ends_with("=orig.test=alice@srsfwd.test>"), "Return-Path {rp:?}");
    let ar = String::from_utf8_lossy(&got[0]).replace("\n\t", " ").replace("\n ", " ");
    let ar = ar.lines().find(|l| l.starts_with("Authentication-Results: mx.srsdst.test")).unwrap_or_default().to_string();
    let mailfrom = ar.split("; ").find(|r| r.contains("smtp.mailfrom=")).unwrap_or_default();
    assert!(mailfrom.starts_with("spf=pass") && mailfrom.contains("smtp.mailfrom=\"SRS0="), "{ar}");

    // A local forward keeps the original sender (SRS only for other domains).
    assert_eq!(smtp(a.smtp_port(), ORIG, &a.address("fwd3"), &mail("local")).0, 250);
    let got = a.wait_mail(&keep, 1);
    assert_eq!(header_of(&got[0], "Return-Path"), format!("<{ORIG}>"));

    // 2. B accepts for bouncer, bounces to the SRS address; A takes it back
    // and sends it on to the original sender.
    assert_eq!(smtp(a.smtp_port(), ORIG, &a.address("fwd2"), &mail("bounceme")).0, 250);
    let s = wait_for(60, "the bounce at the original sender's peer", || {
        peer.sessions().into_iter().find(|s| !s.data.is_empty() && String::from_utf8_lossy(&s.data).contains("bouncer does not want it"))
    });
    assert!(s.lines.iter().any(|l| l.eq_ignore_ascii_case("MAIL FROM:<>") || l.starts_with("MAIL FROM:<> ")), "{:?}", s.lines);
    assert!(s.lines.iter().any(|l| l.starts_with(&format!("RCPT TO:<{ORIG}>"))), "{:?}", s.lines);
    assert!(String::from_utf8_lossy(&s.data).contains("Subject: bounceme"), "{}", String::from_utf8_lossy(&s.data));
    assert!(a.smtp_log().contains("goes back to <alice@orig.test>"), "{}", a.smtp_log());

    // A's own bounce (B refuses nobody at RCPT) to the SRS sender: the queue
    // takes the SRS recipient back, so it reaches the original sender too.
    assert_eq!(smtp(a.smtp_port(), ORIG, &a.address("fwd4"), &mail("refused")).0, 250);
    let s = wait_for(60, "A's bounce at the original sender's peer", || {
        peer.sessions().into_iter().find(|s| !s.data.is_empty() && String::from_utf8_lossy(&s.data).contains("Subject: refused"))
    });
    assert!(s.lines.iter().any(|l| l.starts_with(&format!("RCPT TO:<{ORIG}>"))), "{:?}", s.lines);
    assert!(String::from_utf8_lossy(&s.data).contains("nobody@srsdst.test"), "{}", String::from_utf8_lossy(&s.data));

    // 3. Forged and altered SRS addresses are refused at RCPT, never bounced.
    let srs_local = rp.trim_start_matches('<').split('@').next().unwrap().to_string();
    for forged in [
        "SRS0=AAAA=AA=orig.test=alice@srsfwd.test".to_string(),
        format!("{}@srsfwd.test", srs_local.replace("=alice", "=mallory")),
        format!("SRS1=XXXX=elsewhere.test=={}@srsfwd.test", &srs_local[4..]),
    ] {
        let (code, text) = smtp(a.smtp_port(), "x@y.test", &forged, b"Subject: x\n\nx\n");
        assert_eq!(code, 550, "{forged}: {text}");
        assert!(text.contains("5.7.1") && text.contains("forged SRS address"), "{text}");
    }
    // The real one, in any case, is taken back (and sent to the peer).
    let (code, text) = smtp(a.smtp_port(), "", &format!("{}@SRSFWD.test", srs_local.to_ascii_lowercase()), b"Subject: again\n\nx\n");
    assert_eq!(code, 250, "{text}");
}
