//! The arrival checks (postern-authcheck, and postern-smtpd's SPF refusal at MAIL)
//! against real peers on loopback: unbound serving a test zone with SPF, DKIM and
//! DMARC records, mail signed by dkimpy (Debian python3-dkim), SPF results
//! cross-checked with pyspf (python3-spf) asking the same unbound.

use crate::fixture::*;
use std::path::Path;
use std::process::Command;

/// The Debian Python, which has dkimpy and pyspf (a pyenv python3 may not).
const DEBIAN_PYTHON: &str = "/usr/bin/python3";
const HELO: &str = "client.helo.test";
const AUTHSERV: &str = "mx.check.test";

/// A 2048-bit RSA key (PKCS#1, for dkimpy) and its DKIM TXT record's data.
fn dkim_key(dir: &Path) -> (std::path::PathBuf, String) {
    let key = dir.join("dkim.pem");
    let out = Command::new("openssl").args(["genrsa", "-traditional", "-out"]).arg(&key).arg("2048").output().unwrap();
    assert!(out.status.success(), "openssl genrsa: {}", text(&out));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("openssl rsa -in {} -pubout -outform DER 2>/dev/null | base64 -w0", key.display()))
        .output()
        .unwrap();
    let p = stdout(&out);
    assert!(p.len() > 300, "public key: {}", text(&out));
    // TXT strings hold at most 255 bytes: split, the DKIM reader joins them.
    let record = format!("v=DKIM1; k=rsa; p={p}");
    let strings: Vec<String> = record.as_bytes().chunks(200).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
    (key, strings.join(" "))
}

/// The zone: good.test passes everything (p=reject), hard.test fails SPF
/// (p=reject), soft.test softfails, none.test has no SPF record, loopy.test
/// needs more than 10 lookups, bad.test's key record is damaged.
fn zone(dkim_txt: &str) -> Vec<String> {
    let mut z: Vec<String> = [
        "client.helo.test. A 127.0.0.1",
        "client.helo.test. TXT \"v=spf1 a -all\"",
        "good.test. MX 10 mail.good.test.",
        "mail.good.test. A 127.0.0.1",
        "good.test. TXT \"v=spf1 ip4:127.0.0.1 -all\"",
        "_dmarc.good.test. TXT \"v=DMARC1; p=reject\"",
        "hard.test. TXT \"v=spf1 ip4:192.0.2.1 -all\"",
        "_dmarc.hard.test. TXT \"v=DMARC1; p=reject\"",
        "soft.test. TXT \"v=spf1 ip4:192.0.2.1 ~all\"",
        "none.test. A 127.0.0.1",
        "quar.test. TXT \"v=spf1 -all\"",
        "_dmarc.quar.test. TXT \"v=DMARC1; p=quarantine\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    z.push(format!("sel._domainkey.good.test. TXT {dkim_txt}"));
    z.push(format!("sel._domainkey.fwd.test. TXT {dkim_txt}"));
    let includes: Vec<String> = (1..=11).map(|n| format!("include:l{n}.loopy.test")).collect();
    z.push(format!("loopy.test. TXT \"v=spf1 {} -all\"", includes.join(" ")));
    for n in 1..=11 {
        z.push(format!("l{n}.loopy.test. TXT \"v=spf1 ip4:192.0.2.{n} -all\""));
    }
    z
}

/// dkimpy signs `msg` (CRLF) for `domain` with selector sel.
fn dkim_sign(key: &Path, domain: &str, msg: &[u8]) -> Vec<u8> {
    let script = "import dkim,sys\nm=sys.stdin.buffer.read()\nk=open(sys.argv[1],'rb').read()\n\
sig=dkim.sign(m,b'sel',sys.argv[2].encode(),k,include_headers=[b'from',b'to',b'subject',b'date',b'message-id'])\n\
sys.stdout.buffer.write(sig+m)\n";
    let out = run_with_input(Command::new(DEBIAN_PYTHON).arg("-c").arg(script).arg(key).arg(domain), msg);
    assert!(out.status.success(), "dkimpy: {}", text(&out));
    out.stdout
}

/// dkimpy seals `msg` (CRLF) as the forwarder fwd.test would (RFC 8617): its
/// own Authentication-Results, then ARC-Seal, ARC-Message-Signature and
/// ARC-Authentication-Results, instance 1.
fn arc_seal(key: &Path, msg: &[u8]) -> Vec<u8> {
    let script = "import dkim,sys\nm=sys.stdin.buffer.read()\nk=open(sys.argv[1],'rb').read()\n\
m=b'Authentication-Results: fwd.test; dkim=pass header.d=good.test\\r\\n'+m\n\
hs=dkim.arc_sign(m,b'sel',b'fwd.test',k,b'fwd.test',include_headers=[b'from',b'to',b'subject',b'date',b'message-id'])\n\
sys.stdout.buffer.write(b''.join(hs)+m)\n";
    let out = run_with_input(Command::new(DEBIAN_PYTHON).arg("-c").arg(script).arg(key), msg);
    assert!(out.status.success() && out.stdout.starts_with(b"ARC-Seal:"), "dkimpy arc_sign: {}", text(&out));
    out.stdout
}

/// pyspf's verdict for each sender, from 127.0.0.1 with our HELO, asking unbound.
fn pyspf(dns_port: u16, senders: &[&str]) -> Vec<String> {
    let script = "import sys,dns.resolver,spf\nr=dns.resolver.Resolver(configure=False)\nr.nameservers=['127.0.0.1']\n\
r.port=int(sys.argv[1])\ndns.resolver.default_resolver=r\n\
for s in sys.argv[3:]: print(spf.check2(i='127.0.0.1',s=s,h=sys.argv[2])[0])\n";
    let out = Command::new(DEBIAN_PYTHON).arg("-c").arg(script).arg(dns_port.to_string()).arg(HELO).args(senders).output().unwrap();
    assert!(out.status.success(), "pyspf: {}", text(&out));
    stdout(&out).lines().map(str::to_string).collect()
}

/// A message (LF) from `from`, with a subject that names it.
fn mail(from: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "{extra}From: <{from}>\nTo: alice@check.test\nSubject: {subject}\nDate: Sat, 21 Nov 2026 12:00:00 +0000\nMessage-ID: <{subject}.{}@x.test>\n\nbody of {subject}\n",
        std::process::id()
    )
    .into_bytes()
}

/// One SMTP transaction (message in CRLF, dot-stuffed here); the final reply.
fn transact(port: u16, sender: &str, rcpt: &str, msg: &[u8], auth: Option<&str>) -> (u16, String) {
    let mut c = Client::smtp(port);
    // A DNS server that does not answer costs each lookup its timeouts.
    c.set_patience(90);
    c.expect(&format!("EHLO {HELO}"), 250);
    if let Some(login) = auth {
        c.expect(&format!("AUTH PLAIN {login}"), 235);
    }
    let r = c.cmd(&format!("MAIL FROM:<{sender}>"));
    if r.0 != 250 {
        return r;
    }
    c.expect(&format!("RCPT TO:<{rcpt}>"), 250);
    c.expect("DATA", 354);
    let mut data = Vec::new();
    for line in msg.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    data.extend_from_slice(b".\r\n");
    c.send(&data);
    let r = c.reply();
    let _ = c.cmd("QUIT");
    r
}

/// Our Authentication-Results field, unfolded ("" when there is none).
fn our_ar(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg).replace("\n\t", " ").replace("\n ", " ");
    let ours: Vec<&str> = text
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.to_ascii_lowercase().starts_with("authentication-results:") && l.contains(AUTHSERV))
        .collect();
    assert!(ours.len() <= 1, "one field of ours at most: {ours:?}");
    ours.first().map(|s| s.to_string()).unwrap_or_default()
}

fn by_subject<'a>(msgs: &'a [Vec<u8>], subject: &str) -> &'a [u8] {
    let want = format!("Subject: {subject}\n");
    msgs.iter().find(|m| String::from_utf8_lossy(m).contains(&want)).unwrap_or_else(|| panic!("no message {subject}"))
}

/// An instance checking arrivals with DNS from `dns_port`; alice's Maildir.
fn instance(tag: &str, dns_port: u16, settings: &[(&str, &str)]) -> (Instance, std::path::PathBuf) {
    let i = Instance::create(tag);
    let md = i.adduser("alice", "pw");
    i.control("dnsresolvers", &format!("127.0.0.1:{dns_port}\n"))
        .control("authcheck", "1\n")
        .control("authservid", &format!("{AUTHSERV}\n"));
    for (k, v) in settings {
        i.control(k, &format!("{v}\n"));
    }
    i.start();
    (i, md)
}

#[test]
fn results_recorded_dkim_by_dkimpy_spf_as_pyspf_sees_it_and_forged_fields_removed() {
    let dir = TempDir::new("ac-keys");
    let (key, txt) = dkim_key(dir.path());
    let z = zone(&txt);
    let dns = Unbound::start(&z.iter().map(String::as_str).collect::<Vec<_>>());
    let (i, md) = instance("check", dns.port(), &[]);
    let port = i.smtp_port();
    let to = i.address("alice");

    let signed = dkim_sign(&key, "good.test", &crlf(&mail("a@good.test", "signed", "")));
    let mut tampered = dkim_sign(&key, "good.test", &crlf(&mail("a@good.test", "tampered", "")));
    tampered.extend_from_slice(b"one more line\r\n");
    let forged =
        format!("Authentication-Results: {AUTHSERV}; dkim=pass header.d=good.test\nAuthentication-Results: other.test; spf=pass\n");
    let broken_sig = "DKIM-Signature: v=1; a=rsa-sha256; d=good.test; s=sel; b=!!notbase64; bh=;;; h\n";
    let sealed = arc_seal(&key, &dkim_sign(&key, "good.test", &crlf(&mail("a@good.test", "sealed", ""))));
    let sends: Vec<(&str, Vec<u8>)> = vec![
        ("a@good.test", signed),
        ("a@good.test", sealed),
        ("a@good.test", tampered),
        ("a@hard.test", crlf(&mail("a@hard.test", "hard", ""))),
        ("a@soft.test", crlf(&mail("a@soft.test", "soft", ""))),
        ("a@none.test", crlf(&mail("a@none.test", "none", ""))),
        ("a@loopy.test", crlf(&mail("a@loopy.test", "loopy", ""))),
        ("a@good.test", crlf(&mail("a@good.test", "forged", &forged))),
        ("a@good.test", crlf(&mail("a@good.test", "brokensig", broken_sig))),
    ];
    for (sender, m) in &sends {
        let (code, text) = transact(port, sender, &to, m, None);
        assert_eq!(code, 250, "{sender}: record only by default: {text}\n{}", i.smtp_log());
    }
    let got = i.wait_mail(&md, sends.len());

    let ar = our_ar(by_subject(&got, "signed"));
    assert!(ar.contains("dkim=pass header.i=@good.test header.s=sel"), "{ar}");
    assert!(ar.contains("spf=pass") && ar.contains("smtp.mailfrom=a@good.test"), "{ar}");
    assert!(ar.contains("smtp.helo=client.helo.test"), "{ar}");
    assert!(ar.contains("dmarc=pass header.from=good.test policy.dmarc=reject"), "{ar}");
    assert!(ar.contains("arc=none"), "{ar}");
    // ARC sealed by dkimpy for fwd.test verifies; fwd.test's own field stays.
    let ar = our_ar(by_subject(&got, "sealed"));
    assert!(ar.contains("arc=pass") && ar.contains("dkim=pass"), "{ar}");
    assert!(String::from_utf8_lossy(by_subject(&got, "sealed")).contains("Authentication-Results: fwd.test; dkim=pass"));
    let ar = our_ar(by_subject(&got, "tampered"));
    assert!(ar.contains("dkim=fail"), "{ar}");
    // SPF still passes and aligns, so DMARC passes on SPF alone.
    assert!(ar.contains("dmarc=pass"), "{ar}");

    // SPF results as pyspf finds them, against the same DNS.
    let senders = ["a@good.test", "a@hard.test", "a@soft.test", "a@none.test"];
    let subjects = ["signed", "hard", "soft", "none"];
    let theirs = pyspf(dns.port(), &senders);
    assert_eq!(theirs, ["pass", "fail", "softfail", "none"]);
    for ((sender, subject), verdict) in senders.iter().zip(subjects).zip(&theirs) {
        let ar = our_ar(by_subject(&got, subject));
        assert!(ar.contains(&format!("spf={verdict} ")) && ar.contains(&format!("smtp.mailfrom={sender}")), "{subject}: {ar}");
    }
    let ar = our_ar(by_subject(&got, "hard"));
    assert!(ar.contains("dmarc=fail") && ar.contains("policy.dmarc=reject"), "policy off: recorded, delivered: {ar}");

    // More than 10 DNS lookups: permerror (RFC 7208 4.6.4), delivered, logged.
    let ar = our_ar(by_subject(&got, "loopy"));
    assert!(ar.contains("spf=permerror") && ar.contains("smtp.mailfrom=a@loopy.test"), "{ar}");

    // The forged field claiming our id is gone; the other host's stays.
    let m = String::from_utf8_lossy(by_subject(&got, "forged")).into_owned();
    assert!(m.contains("Authentication-Results: other.test; spf=pass"), "{m}");
    assert_eq!(m.matches(&format!("Authentication-Results: {AUTHSERV};")).count(), 1, "{m}");
    assert!(!m.contains("dkim=pass header.d=good.test"), "{m}");

    // A malformed DKIM-Signature: a DKIM error recorded, delivered.
    let ar = our_ar(by_subject(&got, "brokensig"));
    assert!(ar.contains("dkim=permerror"), "{ar}");

    let log = i.smtp_log();
    for what in ["from <a@loopy.test>", "spf(mailfrom)=permerror", "removed 1 Authentication-Results", "dkim=permerror[", "dkim=fail["] {
        assert!(log.contains(what), "log has {what}: {log}");
    }
    assert!(log.lines().filter(|l| l.contains("postern-authcheck") && l.contains("accepted")).count() >= sends.len(), "{log}");
}

#[test]
fn refusals_when_the_policy_asks_and_authenticated_clients_are_not_checked() {
    let dir = TempDir::new("ac-keys2");
    let (key, txt) = dkim_key(dir.path());
    let z = zone(&txt);
    let dns = Unbound::start(&z.iter().map(String::as_str).collect::<Vec<_>>());
    let (i, md) = instance("refuse", dns.port(), &[("authcheckdmarc", "1"), ("authplaintext", "1")]);
    let port = i.smtp_port();
    let to = i.address("alice");

    // DMARC p=reject and a failure: 550 5.7.1 after DATA.
    let (code, text) = transact(port, "a@hard.test", &to, &crlf(&mail("a@hard.test", "rejected", "")), None);
    assert_eq!((code, text.starts_with("5.7.1 ")), (550, true), "{text}");
    assert!(text.contains("DMARC"), "{text}");
    // p=quarantine is only recorded.
    let (code, text) = transact(port, "a@quar.test", &to, &crlf(&mail("a@quar.test", "quarantined", "")), None);
    assert_eq!(code, 250, "{text}");
    // A signed message from good.test passes.
    let signed = dkim_sign(&key, "good.test", &crlf(&mail("a@good.test", "passes", "")));
    assert_eq!(transact(port, "a@good.test", &to, &signed, None).0, 250);

    // An authenticated client is not checked: a forged field of ours stays, none is added.
    let forged = format!("Authentication-Results: {AUTHSERV}; dkim=pass\n");
    let (code, text) =
        transact(port, "a@hard.test", &to, &crlf(&mail("a@hard.test", "authenticated", &forged)), Some(&sasl_plain(&to, "pw")));
    assert_eq!(code, 250, "{text}");

    // authcheckspf: SPF fail refused at MAIL (read per session).
    i.control("authcheckspf", "1\n");
    let (code, text) = transact(port, "a@hard.test", &to, b"", None);
    assert_eq!(code, 550, "{text}");
    assert!(text.starts_with("5.7.23 ") && text.contains("hard.test"), "{text}");
    let (code, text) = transact(port, "a@soft.test", &to, &crlf(&mail("a@soft.test", "softspf", "")), None);
    assert_eq!(code, 250, "softfail is not refused: {text}");

    let got = i.wait_mail(&md, 4);
    let m = by_subject(&got, "quarantined");
    assert!(our_ar(m).contains("dmarc=fail") && our_ar(m).contains("policy.dmarc=quarantine"), "{}", our_ar(m));
    assert!(our_ar(by_subject(&got, "passes")).contains("dkim=pass"));
    let m = String::from_utf8_lossy(by_subject(&got, "authenticated")).into_owned();
    assert!(m.contains(&forged) && m.matches("Authentication-Results").count() == 1, "not checked, not stripped: {m}");
    assert!(!got.iter().any(|m| String::from_utf8_lossy(m).contains("Subject: rejected")));
    let log = i.smtp_log();
    assert!(log.contains("refused 5.7.1") && log.contains("from <a@hard.test>"), "{log}");
    assert!(log.contains("refused sender <a@hard.test>") && log.contains("spf(mailfrom)=fail"), "{log}");
}

#[test]
fn dns_that_does_not_answer_is_temperror_never_a_5xx() {
    let dir = TempDir::new("ac-keys3");
    let (key, _) = dkim_key(dir.path());
    let dead = refused_port();
    let (i, md) = instance("deaddns", dead.port, &[("authcheckdmarc", "1")]);
    let port = i.smtp_port();
    let to = i.address("alice");
    let signed = dkim_sign(&key, "good.test", &crlf(&mail("a@good.test", "nodns", "")));
    let (code, text) = transact(port, "a@good.test", &to, &signed, None);
    // The DMARC record did not resolve, so no policy asks for a refusal: recorded.
    assert_eq!(code, 250, "{text}\n{}", i.smtp_log());
    let got = i.wait_mail(&md, 1);
    let ar = our_ar(&got[0]);
    assert!(ar.contains("spf=temperror") && ar.contains("dkim=temperror") && ar.contains("dmarc=temperror"), "{ar}");

    // With the SPF policy on, a failed lookup is 451 4.7.24 at MAIL: never 5xx.
    i.control("authcheckspf", "1\n");
    let (code, text) = transact(port, "a@hard.test", &to, b"", None);
    assert_eq!(code, 451, "{text}");
    assert!(text.starts_with("4.7.24 "), "{text}");
    let log = i.smtp_log();
    assert!(log.contains("spf(mailfrom)=temperror") && log.contains("dkim=temperror"), "{log}");
}
