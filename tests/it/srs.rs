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

/// Mail::SRS (Debian libmail-srs-perl), Shevek's own implementation, which
/// libsrs2 follows: each line of `script` is `forward ADDRESS ALIASDOMAIN` or
/// `reverse ADDRESS`, with secrets `secrets`; one result a line ("ERR ..." on
/// failure).
fn mail_srs(secrets: &[&str], script: &[String]) -> Vec<String> {
    let perl = "use Mail::SRS; my @s=split(/,/,shift); my $srs=Mail::SRS->new(Secret=>[@s],HashLength=>4,MaxAge=>21);\n\
for (@ARGV) { my @a=split(/ /); my $r = $a[0] eq 'forward' ? eval { $srs->forward($a[1],$a[2]) } : eval { $srs->reverse($a[1]) };\n\
print defined($r) ? \"$r\\n\" : \"ERR $@\"; }";
    let out = std::process::Command::new("perl").arg("-e").arg(perl).arg(secrets.join(",")).args(script).output().unwrap();
    assert!(out.status.success(), "perl Mail::SRS (apt-get install libmail-srs-perl): {}", text(&out));
    stdout(&out).lines().map(str::to_string).collect()
}

#[test]
fn our_addresses_are_mail_srs_addresses_both_ways() {
    use postern::srs::Srs;
    let ours = Srs::new("fwd.example", &["new", "old"], 21).unwrap();
    let now = postern::srs::now();
    let srs0 = ours.forward("Alice@orig.test", now).unwrap();
    // What Mail::SRS makes of the same sender, and what it takes back from ours.
    let theirs = mail_srs(
        &["new", "old"],
        &["forward Alice@orig.test fwd.example".to_string(), format!("reverse {srs0}"), format!("forward {srs0} b.example")],
    );
    // (Across midnight UTC the day stamps differ; then ours is made again.)
    let srs0_now = if theirs[0] == srs0 { srs0.clone() } else { ours.forward("Alice@orig.test", postern::srs::now()).unwrap() };
    assert_eq!(theirs[0], srs0_now);
    assert_eq!(theirs[1], "Alice@orig.test");
    // Their SRS1 of our SRS0 is ours too, and we take it back.
    assert_eq!(Some(theirs[2].clone()), Srs::new("b.example", &["new", "old"], 21).unwrap().forward(&srs0, now));
    let local = &theirs[2][..theirs[2].rfind('@').unwrap()];
    assert_eq!(Srs::new("b.example", &["new"], 21).unwrap().reverse(local, now).unwrap().address, srs0);
    // An old secret of theirs checks here; a forged hash does not check there.
    let old_only = mail_srs(&["old"], &["forward u@orig.test fwd.example".to_string()]);
    let l = &old_only[0][..old_only[0].rfind('@').unwrap()];
    assert_eq!(ours.reverse(l, now).unwrap().address, "u@orig.test");
    let forged = format!("SRS0=AAAA{}", &srs0[9..]);
    assert!(mail_srs(&["new"], &[format!("reverse {forged}")])[0].starts_with("ERR"));
}
