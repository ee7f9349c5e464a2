//! DKIM signing (issue 11): keys made by `postern-admin dkim keygen`, messages
//! signed by the queue for local injection and AUTH or RELAYCLIENT SMTP clients
//! and never for other SMTP clients, checked by independent verifiers: dkimpy
//! (Debian python3-dkim, given the records by its `dnsfunc`) and opendkim's
//! opendkim-testmsg (given them by unbound, in a namespace of its own).

use crate::fixture::*;
use std::fs;
use std::path::Path;
use std::process::Command;

/// Debian's python3 (python3-dkim is installed for it, not for other pythons).
const PYTHON: &str = "/usr/bin/python3";

/// dkimpy verifies every DKIM-Signature of argv[1] (LF or CRLF) against the
/// zone-file lines of argv[2]; one line per signature: `s=SEL a=ALG h=H ok|FAIL`.
const VERIFY: &str = r#"
import sys, re, dkim
msg = open(sys.argv[1], 'rb').read()
msg = re.sub(rb'(?<!\r)\n', b'\r\n', msg)
recs = {}
for line in open(sys.argv[2]):
    name, rest = line.strip().split(' IN TXT ', 1)
    recs[name.lower().encode()] = ''.join(re.findall(r'"([^"]*)"', rest)).encode()
def dnsfunc(name, timeout=5):
    name = name.lower()
    return recs.get(name if name.endswith(b'.') else name + b'.')
d = dkim.DKIM(msg)
n = sum(1 for h in d.headers if h[0].lower() == b'dkim-signature')
for i in range(n):
    try:
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
    except dkim.ValidationError:
        ok = False
    f = d.signature_fields
    print('s=%s a=%s h=%s %s' % (f[b's'].decode(), f[b'a'].decode(), f[b'h'].decode().replace(' ', ''), 'ok' if ok else 'FAIL'))
"#;

/// Each signature of `msg` as dkimpy sees it (see VERIFY).
fn dkimpy(dir: &Path, msg: &[u8], records: &str) -> Vec<String> {
    let (m, r) = (dir.join(format!("msg{}", unique())), dir.join(format!("records{}", unique())));
    fs::write(&m, msg).unwrap();
    fs::write(&r, records).unwrap();
    let out = Command::new(PYTHON).arg("-c").arg(VERIFY).arg(&m).arg(&r).output().unwrap();
    assert!(out.status.success(), "dkimpy (apt-get install python3-dkim): {}", text(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The records `postern-admin dkim show` prints for the instance's keys.
fn records(i: &Instance) -> String {
    let out = i.run("postern-admin", &["dkim", "show"], b"");
    assert!(out.status.success(), "dkim show: {}", text(&out));
    stdout(&out)
}

fn keygen(i: &Instance, domain: &str, selector: &str, key_type: &str) -> String {
    let out = i.run("postern-admin", &["dkim", "keygen", domain, "--selector", selector, "--type", key_type], b"");
    assert!(out.status.success(), "keygen: {}", text(&out));
    stdout(&out)
}

fn mail(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Sender <{from}>\nTo: {to}\nSubject: {subject}\nDate: Mon, 30 Nov 2026 12:00:00 +0000\nMessage-ID: <{}.{}@dkim.test>\nMIME-Version: 1.0\nContent-Type: text/plain\n\nline one\n  spaced  line \n\n",
        unique(),
        std::process::id()
    )
    .into_bytes()
}

fn signatures(msg: &[u8]) -> usize {
    String::from_utf8_lossy(msg).matches("\nDKIM-Signature:").count() + usize::from(msg.starts_with(b"DKIM-Signature:"))
}

#[test]
fn keygen_writes_keys_only_the_queue_reads_and_prints_their_records() {
    use std::os::unix::fs::MetadataExt;
    let i = Instance::create("dkgen");
    let rsa = keygen(&i, "Kg.Test", "r1", "rsa");
    let ed = keygen(&i, "kg.test", "e1", "ed25519");
    let key = |s: &str| i.path().join("control/dkim/kg.test").join(format!("{s}.key"));
    for s in ["r1", "e1"] {
        let m = fs::metadata(key(s)).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600, "{s}.key");
        if is_root() {
            let q = nix::unistd::User::from_name("postern-q").unwrap().unwrap();
            assert_eq!(m.uid(), q.uid.as_raw(), "{s}.key belongs to postern-q, which signs");
        }
    }
    assert_eq!(fs::metadata(i.path().join("control/dkim/kg.test")).unwrap().mode() & 0o777, 0o700);
    // The p= values are what openssl computes from the same files: the
    // SubjectPublicKeyInfo for RSA, the bare 32 bytes for Ed25519 (RFC 8463).
    let openssl = |s: &str, tail: &str| {
        let cmd = format!("openssl pkey -in {} -pubout -outform DER {tail}| base64 -w0", key(s).display());
        let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let joined = |r: &str| r.lines().find(|l| l.contains(" IN TXT ")).unwrap().split('"').skip(1).step_by(2).collect::<String>();
    assert!(rsa.contains("r1._domainkey.kg.test. IN TXT \"v=DKIM1; k=rsa; p="), "{rsa}");
    assert_eq!(joined(&rsa), format!("v=DKIM1; k=rsa; p={}", openssl("r1", "")));
    assert!(rsa.lines().any(|l| l.split('"').skip(1).step_by(2).all(|s| s.len() <= 255) && l.matches('"').count() >= 4), "split: {rsa}");
    assert_eq!(joined(&ed), format!("v=DKIM1; k=ed25519; p={}", openssl("e1", "| tail -c 32 ")));
    // show prints the same records; a second key of the same name is refused.
    let shown = records(&i);
    assert!(shown.contains(rsa.lines().nth(1).unwrap()) && shown.contains(ed.lines().nth(1).unwrap()), "{shown}");
    let out = i.run("postern-admin", &["dkim", "keygen", "kg.test", "--selector", "r1"], b"");
    assert_eq!(code(&out), Some(100), "{}", text(&out));
    assert!(text(&out).contains("exists"), "{}", text(&out));
    let out = i.run("postern-admin", &["dkim", "keygen", "../etc", "--selector", "x"], b"");
    assert_eq!(code(&out), Some(100), "{}", text(&out));
    // showctl shows the domain's identity in one place.
    i.control("outgoingip", "kg.test:127.0.0.2:mail.kg.test:e1\n");
    let ctl = stdout(&i.run("postern-admin", &["showctl"], b""));
    assert!(ctl.contains("  kg.test: address 127.0.0.2; helo mail.kg.test; dkim e1 (ed25519)\n"), "{ctl}");
}

#[test]
fn local_and_authenticated_mail_is_signed_with_both_keys_and_other_smtp_mail_is_not() {
    let i = Instance::create("dksig");
    let bob = i.adduser("bob", "pw-b");
    i.adduser("alice", "pw-a");
    i.control("authplaintext", "1\n");
    keygen(&i, &i.domain, "rsa1", "rsa");
    keygen(&i, &i.domain, "ed1", "ed25519");
    i.start();
    let recs = records(&i);
    let dir = TempDir::new("dkimpy");

    // postern-sendmail (local injection) asks for signing.
    i.send(&i.address("alice"), &[&i.address("bob")], &mail(&i.address("alice"), &i.address("bob"), "local"));
    // SMTP after AUTH asks too.
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO client.test", 250);
    c.expect(&format!("AUTH PLAIN {}", sasl_plain(&i.address("alice"), "pw-a")), 235);
    c.expect(&format!("MAIL FROM:<{}>", i.address("alice")), 250);
    c.expect(&format!("RCPT TO:<{}>", i.address("bob")), 250);
    c.expect("DATA", 354);
    c.send(&crlf(&mail(&i.address("alice"), &i.address("bob"), "authenticated")));
    c.expect(".", 250);
    c.expect("QUIT", 221);
    // An unauthenticated client claiming our From: gets no signature of ours.
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO forger.test", 250);
    c.expect(&format!("MAIL FROM:<{}>", i.address("alice")), 250);
    c.expect(&format!("RCPT TO:<{}>", i.address("bob")), 250);
    c.expect("DATA", 354);
    c.send(&crlf(&mail(&i.address("alice"), &i.address("bob"), "forged")));
    c.expect(".", 250);
    c.expect("QUIT", 221);

    let got = i.wait_mail(&bob, 3);
    let by_subject = |s: &str| got.iter().find(|m| String::from_utf8_lossy(m).contains(&format!("\nSubject: {s}\n"))).unwrap().clone();
    for subject in ["local", "authenticated"] {
        let m = by_subject(subject);
        let v = dkimpy(dir.path(), &m, &recs);
        assert_eq!(v.len(), 2, "{subject}: {v:?}\n{}", String::from_utf8_lossy(&m));
        for (sel, alg) in [("ed1", "ed25519-sha256"), ("rsa1", "rsa-sha256")] {
            let line = v.iter().find(|l| l.starts_with(&format!("s={sel} "))).unwrap_or_else(|| panic!("{subject}: no {sel}: {v:?}"));
            assert!(line.starts_with(&format!("s={sel} a={alg} ")) && line.ends_with(" ok"), "{subject}: {line}");
            // From is oversigned (listed once more than present); the rest as present.
            let h: Vec<&str> = line.split(" h=").nth(1).unwrap().split(' ').next().unwrap().split(':').collect();
            assert_eq!(h.iter().filter(|n| n.eq_ignore_ascii_case("from")).count(), 2, "{line}");
            for n in ["to", "subject", "date", "message-id", "mime-version", "content-type"] {
                assert!(h.iter().any(|x| x.eq_ignore_ascii_case(n)), "{n} signed: {line}");
            }
        }
        // A changed body fails: the verifier can say no.
        let tampered = String::from_utf8_lossy(&m).replace("line one", "line 1").into_bytes();
        assert!(dkimpy(dir.path(), &tampered, &recs).iter().all(|l| l.ends_with(" FAIL")), "tampered {subject}");
        // An added From: fails too (that is what oversigning is for).
        let added = String::from_utf8_lossy(&m).replacen("\nFrom: ", "\nFrom: evil@evil.test\nFrom: ", 1).into_bytes();
        assert!(dkimpy(dir.path(), &added, &recs).iter().all(|l| l.ends_with(" FAIL")), "added From {subject}");
    }
    assert_eq!(signatures(&by_subject("forged")), 0, "{}", String::from_utf8_lossy(&by_subject("forged")));
}

#[test]
fn a_broken_key_is_logged_and_the_message_delivered_unsigned() {
    let i = Instance::create("dkbad");
    let bob = i.adduser("bob", "x");
    let dir = i.path().join("control/dkim/dkbad.test");
    keygen(&i, &i.domain, "good", "ed25519");
    let good = fs::read(dir.join("good.key")).unwrap();
    // Not a key at all; owned like a real one, so only its contents are wrong.
    fs::write(dir.join("good.key"), b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n").unwrap();
    i.start();
    i.send(&i.address("alice"), &[&i.address("bob")], &mail(&i.address("alice"), &i.address("bob"), "broken"));
    let got = i.wait_mail(&bob, 1);
    assert_eq!(signatures(&got[0]), 0, "{}", String::from_utf8_lossy(&got[0]));
    let path = dir.join("good.key");
    let log = wait_for(10, "the log line", || {
        let l = i.send_log() + &i.smtp_log();
        l.contains(&format!("DKIM key {}", path.display())).then_some(l)
    });
    assert!(log.contains("is not a PEM RSA or Ed25519 private key") && log.contains("queued without that DKIM signature"), "{log}");
    // Mended, the next message is signed again (the cached parse is not reused).
    fs::write(dir.join("good.key"), good).unwrap();
    i.send(&i.address("alice"), &[&i.address("bob")], &mail(&i.address("alice"), &i.address("bob"), "mended"));
    let got = i.wait_mail(&bob, 2);
    let recs = records(&i);
    let tmp = TempDir::new("dkbad");
    let mended = got.iter().find(|m| String::from_utf8_lossy(m).contains("Subject: mended")).unwrap();
    let v = dkimpy(tmp.path(), mended, &recs);
    assert!(v.len() == 1 && v[0].starts_with("s=good a=ed25519-sha256 ") && v[0].ends_with(" ok"), "{v:?}");
}

#[test]
fn remote_delivery_carries_the_selected_signatures_from_the_domains_address() {
    let f = FakeSmtp::start("127.0.0.1", FakeScript::default());
    let i = Instance::create("dkrem");
    keygen(&i, &i.domain, "rsa1", "rsa");
    keygen(&i, &i.domain, "ed1", "ed25519");
    keygen(&i, &i.domain, "old", "rsa");
    // The one place: address, HELO name and selectors (old is not listed: unused).
    i.control("outgoingip", &format!("{}:127.0.0.2:mail.{}:rsa1,ed1\n", i.domain, i.domain))
        .control("smtproutes", &format!(":[127.0.0.1]:{}\n", f.port()));
    i.start();
    i.send(&i.address("alice"), &["friend@far.test"], &mail(&i.address("alice"), "friend@far.test", "remote"));
    let s = wait_for(20, "the fake peer's message", || f.sessions().into_iter().find(|s| !s.data.is_empty()));
    assert_eq!(s.helo, format!("mail.{}", i.domain));
    assert_eq!(s.peer.unwrap().ip().to_string(), "127.0.0.2");
    let tmp = TempDir::new("dkrem");
    let v = dkimpy(tmp.path(), &s.data, &records(&i));
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v.iter().any(|l| l.starts_with("s=rsa1 a=rsa-sha256 ") && l.ends_with(" ok")), "{v:?}");
    assert!(v.iter().any(|l| l.starts_with("s=ed1 a=ed25519-sha256 ") && l.ends_with(" ok")), "{v:?}");
}

/// opendkim-testmsg verifies what is on its stdin against DNS. It reads
/// /etc/resolv.conf (port 53 only), so it runs in its own network and mount
/// namespaces: loopback up, unbound on 127.0.0.1:53 serving `records`, a
/// resolv.conf naming it bind-mounted over the real one. Returns its exit code
/// and output for each message.
fn opendkim(dir: &Path, records: &str, msgs: &[Vec<u8>]) -> Vec<(i32, String)> {
    let mut conf = format!(
        "server:\n  interface: 127.0.0.1\n  port: 53\n  do-daemonize: no\n  use-syslog: no\n  logfile: \"\"\n  chroot: \"\"\n  username: \"\"\n  pidfile: \"\"\n  directory: \"{}\"\n  do-ip6: no\n  module-config: \"iterator\"\n  local-zone: \".\" refuse\n  local-zone: \"test.\" static\n",
        dir.display()
    );
    for r in records.lines().filter(|l| l.contains(" IN TXT ")) {
        let (name, strings) = r.split_once(" IN TXT ").unwrap();
        conf.push_str(&format!("  local-data: '{name} TXT {strings}'\n"));
    }
    conf.push_str("remote-control:\n  control-enable: no\n");
    fs::write(dir.join("unbound.conf"), conf).unwrap();
    fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    let mut script = format!(
        "set -e\nip link set lo up\nmount --bind {d}/resolv.conf /etc/resolv.conf\n/usr/sbin/unbound -d -c {d}/unbound.conf 2>{d}/unbound.log &\nUB=$!\n\
         for n in $(seq 100); do grep -q 'start of service' {d}/unbound.log && break; sleep 0.1; done\nset +e\n",
        d = dir.display()
    );
    for (k, m) in msgs.iter().enumerate() {
        let wire = String::from_utf8_lossy(m).replace("\r\n", "\n").replace('\n', "\r\n");
        fs::write(dir.join(format!("m{k}")), wire).unwrap();
        script.push_str(&format!("opendkim-testmsg < {d}/m{k} > {d}/out{k} 2>&1; echo $? > {d}/rc{k}\n", d = dir.display()));
    }
    // unbound would outlive the namespace's last process otherwise.
    script.push_str("kill $UB\nwait $UB\nexit 0\n");
    let out = Command::new("unshare").args(["--mount", "--net", "sh", "-c", &script]).output().unwrap();
    assert!(out.status.success(), "unshare (opendkim-tools, unbound): {}", text(&out));
    (0..msgs.len())
        .map(|k| {
            let rc = fs::read_to_string(dir.join(format!("rc{k}"))).unwrap().trim().parse().unwrap();
            (rc, fs::read_to_string(dir.join(format!("out{k}"))).unwrap_or_default())
        })
        .collect()
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn opendkim_verifies_the_rsa_and_the_ed25519_signatures() {
    let i = Instance::create("dkodk");
    let bob = i.adduser("bob", "x");
    // One key type per domain, so each verdict is about one signature.
    let (r, e) = (format!("r.{}", i.domain), format!("e.{}", i.domain));
    keygen(&i, &r, "sel", "rsa");
    keygen(&i, &e, "sel", "ed25519");
    i.start();
    i.send(&format!("a@{r}"), &[&i.address("bob")], &mail(&format!("a@{r}"), &i.address("bob"), "rsa"));
    i.wait_mail(&bob, 1);
    i.send(&format!("a@{e}"), &[&i.address("bob")], &mail(&format!("a@{e}"), &i.address("bob"), "ed25519"));
    let got = i.wait_mail(&bob, 2);
    for (m, alg) in got.iter().zip(["a=rsa-sha256", "a=ed25519-sha256"]) {
        assert!(String::from_utf8_lossy(m).contains(alg), "{}", String::from_utf8_lossy(m));
    }
    let tampered: Vec<Vec<u8>> = got.iter().map(|m| String::from_utf8_lossy(m).replace("line one", "line 1").into_bytes()).collect();
    let dir = TempDir::new("opendkim");
    let all: Vec<Vec<u8>> = got.iter().chain(tampered.iter()).cloned().collect();
    let v = opendkim(dir.path(), &records(&i), &all);
    assert_eq!((v[0].0, v[1].0), (0, 0), "both verify: {v:?}");
    assert!(v[2].0 != 0 && v[3].0 != 0 && v[2].1.contains("Bad signature") && v[3].1.contains("Bad signature"), "tampered: {v:?}");
}

#[test]
fn the_queue_program_relay_clients_and_bounces_ask_and_qmail_style_callers_do_not() {
    let i = Instance::create("dkreq");
    let bob = i.adduser("bob", "x");
    let alice = i.adduser("alice", "x");
    keygen(&i, &i.domain, "ed1", "ed25519");
    i.allow_relay();
    i.start();
    let tmp = TempDir::new("dkreq");
    let queue = i.path().join("bin/postern-queue");
    // postern-inject through the queue program (no postern-queued): the
    // request travels in POSTERN_DKIM.
    let out = run_with_input(
        i.cmd("postern-inject").env("POSTERN_QUEUE", &queue).arg(i.address("bob")),
        &mail(&i.address("alice"), &i.address("bob"), "program"),
    );
    assert!(out.status.success(), "{}", text(&out));
    // A qmail-style caller of postern-queue (fd 0 message, fd 1 envelope)
    // knows nothing of it: not signed, even with a stray POSTERN_DKIM of another value.
    fs::write(tmp.path().join("m"), mail(&i.address("alice"), &i.address("bob"), "qmail-style")).unwrap();
    fs::write(tmp.path().join("e"), format!("F{}\0T{}\0\0", i.address("alice"), i.address("bob"))).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{} < {d}/m 1< {d}/e", queue.display(), d = tmp.path().display()))
        .env("POSTERN_HOME", i.path())
        .env("POSTERN_DKIM", "yes")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // A RELAYCLIENT client (tcp.smtp) is trusted like an authenticated one.
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO relay.test", 250);
    c.expect(&format!("MAIL FROM:<{}>", i.address("alice")), 250);
    c.expect(&format!("RCPT TO:<{}>", i.address("bob")), 250);
    c.expect("DATA", 354);
    c.send(&crlf(&mail(&i.address("alice"), &i.address("bob"), "relayclient")));
    c.expect(".", 250);
    c.expect("QUIT", 221);
    // A bounce (From: MAILER-DAEMON@ the instance's domain) is signed.
    i.send(&i.address("alice"), &[&format!("nobody@{}", i.domain)], &mail(&i.address("alice"), "nobody", "bounced"));

    let recs = records(&i);
    let got = i.wait_mail(&bob, 3);
    let by_subject = |s: &str| got.iter().find(|m| String::from_utf8_lossy(m).contains(&format!("\nSubject: {s}\n"))).unwrap().clone();
    for s in ["program", "relayclient"] {
        let v = dkimpy(tmp.path(), &by_subject(s), &recs);
        assert!(v.len() == 1 && v[0].starts_with("s=ed1 ") && v[0].ends_with(" ok"), "{s}: {v:?}");
    }
    assert_eq!(signatures(&by_subject("qmail-style")), 0, "{}", String::from_utf8_lossy(&by_subject("qmail-style")));
    let bounce = i.wait_mail(&alice, 1).remove(0);
    assert!(String::from_utf8_lossy(&bounce).contains(&format!("<MAILER-DAEMON@{}>\n", i.domain)), "{}", String::from_utf8_lossy(&bounce));
    let v = dkimpy(tmp.path(), &bounce, &recs);
    assert!(v.len() == 1 && v[0].ends_with(" ok"), "bounce: {v:?}\n{}", String::from_utf8_lossy(&bounce));
}
