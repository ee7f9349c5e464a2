//! The ports mail clients use (RFC 8314, RFC 6409): submission with STARTTLS
//! (587 on a system), SMTP with implicit TLS (465) and POP3 with implicit TLS
//! (995), served by the same postern-smtpd and postern-popup as ports 25 and 110
//! (lib/net/implicit.rs, lib/smtp/submission.rs). Real clients: msmtp, swaks,
//! Python's smtplib, fetchmail, mpop; and scripts/install's certificate and
//! service files for them.

use crate::fixture::*;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// The Received line postern-smtpd wrote (unfolded).
fn smtpd_received(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg).replace("\n\t", " ");
    text.lines().find(|l| l.contains("(postern-smtpd)")).unwrap_or_else(|| panic!("no Received from postern-smtpd in {text}")).to_string()
}

/// One SMTP session with Python's smtplib, checking the server's certificate
/// against the instance's. `tls`: "starttls", "implicit" or "none"; `login`:
/// AUTH first when given. Each step's reply, by name (ehlo: the last one; mail,
/// rcpt, data only when the step before was accepted).
fn smtplib(
    port: u16,
    tls: &str,
    cert: &Path,
    login: Option<(&str, &str)>,
    from: &str,
    to: &str,
    msg: &str,
) -> HashMap<String, (u16, String)> {
    let script = r#"
import smtplib, ssl, sys
port, tls, cert, user, pw, sender, rcpt, msg = sys.argv[1:9]
ctx = ssl.create_default_context(cafile=cert)
def show(step, r):
    print(step, r[0], (r[1].decode() if isinstance(r[1], bytes) else str(r[1])).replace("\n", " "))
    return r[0]
if tls == "implicit":
    s = smtplib.SMTP_SSL("127.0.0.1", int(port), context=ctx, timeout=20)
else:
    s = smtplib.SMTP("127.0.0.1", int(port), timeout=20)
show("ehlo", s.ehlo())
if tls == "starttls":
    show("starttls", s.starttls(context=ctx))
    show("ehlo", s.ehlo())
if user != "-":
    try:
        show("auth", s.login(user, pw))
    except smtplib.SMTPAuthenticationError as e:
        show("auth", (e.smtp_code, e.smtp_error))
if show("mail", s.mail(sender)) == 250 and show("rcpt", s.rcpt(rcpt)) == 250:
    try:
        show("data", s.data(msg.encode()))
    except smtplib.SMTPDataError as e:
        show("data", (e.smtp_code, e.smtp_error))
s.quit()
"#;
    let (user, pw) = login.unwrap_or(("-", "-"));
    let port = port.to_string();
    let out = python(script, &[&port, tls, cert.to_str().unwrap(), user, pw, from, to, msg]);
    out.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ' ');
            Some((f.next()?.to_string(), (f.next()?.parse().ok()?, f.next().unwrap_or("").to_string())))
        })
        .collect()
}

/// msmtp sending `msg` to `to`, as `user`, on `port`: STARTTLS or implicit TLS,
/// the certificate checked.
fn msmtp(i: &Instance, port: u16, starttls: bool, user: &str, pw: &str, to: &str, msg: &[u8]) -> std::process::Output {
    let conf = i.path().join(format!("msmtprc-{port}"));
    fs::write(
        &conf,
        format!(
            "account default\nhost 127.0.0.1\nport {port}\nfrom {user}\ntls on\ntls_starttls {}\ntls_trust_file {}\ntls_host_override localhost\nauth plain\nuser {user}\npassword {pw}\n",
            if starttls { "on" } else { "off" },
            i.cert().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).unwrap();
    run_with_input(Command::new("msmtp").arg("-C").arg(&conf).arg(to), msg)
}

/// swaks as `user`: `tls` is `--tls` (STARTTLS) or `--tls-on-connect`.
fn swaks(port: u16, tls: &str, user: &str, pw: &str, to: &str, subject: &str) -> std::process::Output {
    Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}"), "--from", user, "--to", to, "--header", &format!("Subject: {subject}")])
        .args([tls, "--auth", "PLAIN", "--auth-user", user, "--auth-password", pw])
        .output()
        .unwrap()
}

#[test]
fn msmtp_and_swaks_send_on_587_with_starttls_and_465_with_implicit_tls() {
    let i = Instance::create_with_client_ports("ports-send");
    let md = i.adduser("alice", "pw-a");
    i.start();
    let (sub, smtps) = (i.submission_port(), i.smtps_port());
    let alice = i.address("alice");

    let by_587 = message("msmtp 587", "sent with msmtp, STARTTLS and AUTH");
    let out = msmtp(&i, sub, true, &alice, "pw-a", &alice, &by_587);
    assert!(out.status.success(), "msmtp on 587: {}\n{}", text(&out), i.log("submission"));
    let by_465 = message("msmtp 465", "sent with msmtp, implicit TLS and AUTH");
    let out = msmtp(&i, smtps, false, &alice, "pw-a", &alice, &by_465);
    assert!(out.status.success(), "msmtp on 465: {}\n{}", text(&out), i.log("smtps"));
    let out = swaks(sub, "--tls", &alice, "pw-a", &alice, "swaks 587");
    assert!(out.status.success(), "swaks on 587: {}\n{}", text(&out), i.log("submission"));
    let out = swaks(smtps, "--tls-on-connect", &alice, "pw-a", &alice, "swaks 465");
    assert!(out.status.success(), "swaks on 465: {}\n{}", text(&out), i.log("smtps"));

    let got = i.wait_mail(&md, 4);
    for m in &got {
        // TLS and AUTH, whichever way TLS began.
        assert!(smtpd_received(m).contains("with ESMTPSA;"), "{}", String::from_utf8_lossy(m));
    }
    let bodies: Vec<&[u8]> = got.iter().map(|m| after_trace(m)).collect();
    assert!(bodies.contains(&&by_587[..]) && bodies.contains(&&by_465[..]), "msmtp's messages arrive as sent");
    for subject in ["swaks 587", "swaks 465"] {
        assert!(got.iter().any(|m| header(m, "Subject").as_deref() == Some(subject)), "{subject} arrived");
    }

    // A wrong password is refused on both.
    let out = swaks(sub, "--tls", &alice, "wrong", &alice, "x");
    assert!(!out.status.success() && stdout(&out).contains("535 5.7.8"), "{}", text(&out));
    let out = swaks(smtps, "--tls-on-connect", &alice, "wrong", &alice, "x");
    assert!(!out.status.success() && stdout(&out).contains("535 5.7.8"), "{}", text(&out));
}

#[test]
fn unauthenticated_mail_on_the_submission_ports_gets_530_and_relaying_needs_auth() {
    let i = Instance::create_with_client_ports("ports-auth");
    i.adduser("alice", "pw-a");
    i.start();
    let alice = i.address("alice");
    let msg = "From: alice\r\nSubject: out\r\n\r\nto a friend elsewhere\r\n";

    // In the clear: STARTTLS offered, AUTH not yet; MAIL refused.
    let mut c = Client::smtp(i.submission_port());
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.contains("STARTTLS\n") && !ehlo.contains("AUTH"), "{ehlo}");
    let t = c.expect("MAIL FROM:<alice@x.test>", 530);
    assert!(t.starts_with("5.7.0 ") && t.contains("STARTTLS"), "{t}");
    c.expect("QUIT", 221);

    // After STARTTLS, and on 465, still no MAIL without AUTH: even to a local
    // mailbox, which port 25 accepts from anyone.
    for (port, tls) in [(i.submission_port(), "starttls"), (i.smtps_port(), "implicit")] {
        let r = smtplib(port, tls, &i.cert(), None, "someone@x.test", &alice, msg);
        assert!(r["ehlo"].1.contains("AUTH PLAIN LOGIN"), "{tls}: {r:?}");
        assert_eq!(r["mail"].0, 530, "{tls}: {r:?}");
        assert!(r["mail"].1.starts_with("5.7.0 authentication required"), "{tls}: {r:?}");
        assert!(!r.contains_key("rcpt"), "{tls}: {r:?}");
    }
    let r = smtplib(i.smtp_port(), "starttls", &i.cert(), None, "someone@x.test", &alice, msg);
    assert_eq!((r["mail"].0, r["rcpt"].0, r["data"].0), (250, 250, 250), "port 25 takes mail for us: {r:?}");

    // Relaying: port 25 refuses a remote recipient without AUTH; 587 and 465
    // take it once the client has logged in.
    let r = smtplib(i.smtp_port(), "starttls", &i.cert(), None, "someone@x.test", "friend@elsewhere.test", msg);
    assert_eq!(r["rcpt"].0, 554, "{r:?}");
    assert!(r["rcpt"].1.starts_with("5.7.1"), "{r:?}");
    let before = i.queued();
    for (port, tls) in [(i.submission_port(), "starttls"), (i.smtps_port(), "implicit")] {
        let r = smtplib(port, tls, &i.cert(), Some((&alice, "pw-a")), &alice, "friend@elsewhere.test", msg);
        assert_eq!((r["auth"].0, r["mail"].0, r["rcpt"].0, r["data"].0), (235, 250, 250, 250), "{tls}: {r:?}");
        assert!(r["data"].1.starts_with("2.0.0"), "{r:?}");
    }
    // Queued for elsewhere.test (whose delivery fails here: no DNS).
    wait_for(10, "two messages queued for the remote friend", || (i.queued() >= before + 2).then_some(()));
    let list = i.run("postern-admin", &["queue", "list"], b"");
    assert!(stdout(&list).contains("friend@elsewhere.test"), "{}", text(&list));

    // A bad mode is refused, not served without AUTH: the listener's session
    // logs the variable and closes.
    let mut cmd = i.cmd("postern-listen");
    cmd.env("POSTERN_SUBMISSION", "yes").args(["127.0.0.1", "0"]).arg(i.path().join("bin/postern-smtpd"));
    let l = Listener::spawn(cmd, &i.join("log"));
    assert_eq!(l.output("127.0.0.1"), "", "no greeting with a misspelt mode");
    wait_for(10, "the session's log line", || l.log().contains("POSTERN_SUBMISSION=\"yes\" means nothing").then_some(()));
}

#[test]
fn submission_adds_date_and_message_id_as_inject_does() {
    let i = Instance::create_with_client_ports("ports-hdr");
    let md = i.adduser("alice", "pw-a");
    i.control("idhost", "ids.ports-hdr.test\n");
    i.start();
    let alice = i.address("alice");
    let bare = "From: alice\r\nTo: alice\r\nSubject: bare\r\n\r\nno Date, no Message-ID\r\n";
    for (port, tls) in [(i.submission_port(), "starttls"), (i.smtps_port(), "implicit")] {
        let r = smtplib(port, tls, &i.cert(), Some((&alice, "pw-a")), &alice, &alice, bare);
        assert_eq!(r["data"].0, 250, "{tls}: {r:?}");
    }
    let got = i.wait_mail(&md, 2);
    for m in &got {
        let text = String::from_utf8_lossy(after_trace(m)).into_owned();
        // At the end of the header, in the order and form postern-inject uses.
        let (head, body) = text.split_once("\n\n").unwrap();
        assert_eq!(body, "no Date, no Message-ID\n");
        let lines: Vec<&str> = head.lines().collect();
        assert_eq!(&lines[..3], ["From: alice", "To: alice", "Subject: bare"], "{text}");
        assert!(lines[3].starts_with("Date: ") && lines[3].ends_with(" +0000"), "{text}");
        let id =
            lines[4].strip_prefix("Message-ID: <").and_then(|l| l.strip_suffix("@ids.ports-hdr.test>")).unwrap_or_else(|| panic!("{text}"));
        let parts: Vec<&str> = id.split('.').collect();
        assert!(parts.len() == 3 && parts[..2].iter().all(|p| p.parse::<u64>().is_ok()) && parts[2].len() == 8, "{id}");
        assert_eq!(lines.len(), 5, "{text}");
    }
    let ids: Vec<_> = got.iter().map(|m| header(m, "Message-ID")).collect();
    assert_ne!(ids[0], ids[1], "each message its own Message-ID");

    // postern-inject words them the same way.
    let out = run_with_input(i.cmd("postern-inject").arg(&alice), b"Subject: injected\n\nx\n");
    assert!(out.status.success(), "{}", text(&out));
    let got = i.wait_mail(&md, 3);
    let injected = got.iter().find(|m| header(m, "Subject").as_deref() == Some("injected")).unwrap();
    let id = header(injected, "Message-ID").unwrap();
    assert!(id.ends_with("@ids.ports-hdr.test>") && id.split('.').count() == 5, "{id}");

    // A message with its own keeps them, once each; port 25 adds nothing.
    let own = "Subject: own\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000\r\nmessage-id: <mine@alice.test>\r\n\r\nx\r\n";
    let r = smtplib(i.submission_port(), "starttls", &i.cert(), Some((&alice, "pw-a")), &alice, &alice, own);
    assert_eq!(r["data"].0, 250, "{r:?}");
    let r = smtplib(i.smtp_port(), "starttls", &i.cert(), None, "x@sender.test", &alice, bare);
    assert_eq!(r["data"].0, 250, "{r:?}");
    let got = i.wait_mail(&md, 5);
    let own_got = got.iter().find(|m| header(m, "Subject").as_deref() == Some("own")).unwrap();
    assert_eq!(after_trace(own_got), b"Subject: own\nDate: Mon, 1 Jan 2001 00:00:00 +0000\nmessage-id: <mine@alice.test>\n\nx\n");
    let by_25: Vec<_> = got.iter().filter(|m| String::from_utf8_lossy(m).contains(") with ESMTPS;")).collect();
    assert_eq!(by_25.len(), 1);
    assert_eq!(
        after_trace(by_25[0]),
        b"From: alice\nTo: alice\nSubject: bare\n\nno Date, no Message-ID\n",
        "port 25 leaves the header alone"
    );
}

#[test]
fn fetchmail_and_mpop_fetch_over_995() {
    let i = Instance::create_with_client_ports("ports-pop");
    i.adduser("bob", "pw-b");
    i.start();
    let mut delivered = i.deliver("bob", &[message("one", "first"), message("two", "second, a bit longer")]);
    delivered.sort_by_key(|m| m.len());
    let port = i.pop3s_port();

    // The port speaks TLS from the first byte: a plain client hears no
    // greeting, only a TLS alert (record type 21) before the server hangs up.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(15))).unwrap();
    s.write_all(b"CAPA\r\n").unwrap();
    let mut heard = Vec::new();
    let _ = s.read_to_end(&mut heard);
    assert_eq!(heard.first(), Some(&21), "a plain client gets a TLS alert on 995, not POP3: {heard:?}");

    let t = TempDir::new("fetchmail995");
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    let rc = t.path().join("fetchmailrc");
    fs::write(
        &rc,
        format!(
            "set invisible\npoll 127.0.0.1 service {port} protocol pop3 user '{}' there with password 'pw-b' is root here\n  ssl sslproto tls1.2+ sslcertck sslcertfile {} sslcommonname {} fetchall no keep no rewrite\n  mda \"cat > {}/m.$$\"\n",
            i.address("bob"),
            i.cert().display(),
            i.domain,
            out.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).unwrap();
    let o = Command::new("fetchmail")
        .args(["-f", rc.to_str().unwrap(), "--nodetach", "-v"])
        .env("HOME", t.path())
        .env("FETCHMAILHOME", t.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "fetchmail: {}\npop3s log:\n{}", text(&o), i.log("pop3s"));
    assert!(!stdout(&o).contains("POP3> STLS"), "implicit TLS, no STLS: {}", text(&o));
    let mut got: Vec<Vec<u8>> = fs::read_dir(&out).unwrap().map(|e| fs::read(e.unwrap().path()).unwrap()).collect();
    got.sort_by_key(|m| m.len());
    assert_eq!(got, delivered, "fetchmail's copies equal the delivered messages");

    let delivered = i.deliver("bob", &[message("three", "for mpop")]);
    let t = TempDir::new("mpop995");
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let conf = t.path().join("mpoprc");
    fs::write(
        &conf,
        format!(
            "account default\nhost 127.0.0.1\nport {port}\nuser {}\npassword pw-b\nauth plain\ntls on\ntls_starttls off\ntls_trust_file {}\ndelivery maildir {}\nreceived_header off\nkeep off\nuidls_file {}/uidls\n",
            i.address("bob"),
            i.cert().display(),
            md.display(),
            t.path().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).unwrap();
    let o = Command::new("mpop").args(["-C", conf.to_str().unwrap(), "-a"]).env("HOME", t.path()).output().unwrap();
    assert!(o.status.success(), "mpop: {}\npop3s log:\n{}", text(&o), i.log("pop3s"));
    assert_eq!(maildir_new(&md), delivered, "mpop fetched the one message left");
    assert_eq!(fs::read_dir(i.maildir("bob").join("cur")).unwrap().count(), 0, "fetched and deleted");
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn install_makes_a_certificate_and_serves_the_client_ports() {
    require_root();
    service_users();
    let tmp = TempDir::new("install-ports");
    let home = tmp.path().join("postern");
    let root = tmp.path().join("root");
    // Units go in only where systemd's directory exists.
    fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    let install = || {
        let out = Command::new(repo().join("scripts/install"))
            .args(["--home", home.to_str().unwrap(), "--domain", "ports-inst.test", "--postmaster", "lee@ports-inst.test", "--no-sendmail"])
            .args(["--root", root.to_str().unwrap()])
            .env("POSTERN_BUILD", bin_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        out
    };
    let out = install();
    assert!(stdout(&out).contains("postern-submission postern-smtps postern-pop3 postern-pop3s"), "{}", text(&out));

    // The certificate, where smtpd and popup look, for the domain; its key
    // readable by the network daemons only.
    let cert = home.join("control/servercert.pem");
    let key = home.join("control/serverkey.pem");
    assert_eq!(fs::metadata(&cert).unwrap().mode() & 0o777, 0o644);
    let k = fs::metadata(&key).unwrap();
    let postern_d_gid = nix::unistd::Group::from_name("postern-d").unwrap().unwrap().gid.as_raw();
    assert_eq!((k.mode() & 0o777, k.uid(), k.gid()), (0o640, 0, postern_d_gid));
    let x509 = Command::new("openssl").args(["x509", "-noout", "-subject", "-ext", "subjectAltName", "-in"]).arg(&cert).output().unwrap();
    let names = stdout(&x509).replace(' ', "");
    assert!(names.contains("subject=CN=ports-inst.test\n") && names.contains("DNS:ports-inst.test,"), "{}", text(&x509));

    // From the first start: the installed smtpd, as postern-d, serves 465 with
    // that certificate (checked by the client) and offers AUTH; popup offers STLS.
    let mut cmd = Command::new(home.join("bin/postern-listen"));
    cmd.env("POSTERN_HOME", &home).env("POSTERN_SUBMISSION", "1").env("POSTERN_TLS", "implicit");
    cmd.args(["-u", "postern-d", "127.0.0.1", "0"]).arg(home.join("bin/postern-smtpd"));
    let l = Listener::spawn(cmd, tmp.path());
    let r = smtplib(l.port, "implicit", &cert, None, "someone@x.test", "lee@ports-inst.test", "x");
    assert!(r["ehlo"].1.contains("AUTH PLAIN LOGIN"), "{r:?}\n{}", l.log());
    assert_eq!(r["mail"].0, 530, "{r:?}");
    let mut cmd = Command::new(home.join("bin/postern-listen"));
    cmd.env("POSTERN_HOME", &home).args(["-u", "postern-d", "127.0.0.1", "0"]);
    cmd.arg(home.join("bin/postern-popup")).arg("ports-inst.test").arg(home.join("bin/postern-auth")).arg(home.join("bin/postern-pop3d"));
    let pop = Listener::spawn(cmd, tmp.path());
    let capa = python(
        "import poplib,ssl,sys\np=poplib.POP3('127.0.0.1',int(sys.argv[1]),timeout=20)\nprint(p.capa())\np.stls(ssl.create_default_context(cafile=sys.argv[2]))\nprint('stls ok')\np.quit()",
        &[&pop.port.to_string(), cert.to_str().unwrap()],
    );
    assert!(capa.contains("'STLS'") && capa.contains("stls ok"), "{capa}\n{}", pop.log());
    drop((l, pop));

    // Installing again keeps a certificate that is there: the admin's own,
    // put in place as INSTALL says.
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=mail.ports-inst.test"])
        .args(["-addext", "subjectAltName=DNS:mail.ports-inst.test,IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    nix::unistd::chown(&key, None, Some(nix::unistd::Gid::from_raw(postern_d_gid))).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    let before = (fs::read(&cert).unwrap(), fs::read(&key).unwrap());
    install();
    assert_eq!((fs::read(&cert).unwrap(), fs::read(&key).unwrap()), before, "the certificate is kept");

    // The units and the init script name the ports and the modes.
    let unit = |name: &str| fs::read_to_string(root.join("etc/systemd/system").join(format!("{name}.service"))).unwrap();
    let sub = unit("postern-submission");
    assert!(
        sub.contains(" SUBMISSION_PORT=587 ") && sub.contains("Environment=POSTERN_SUBMISSION=1\n") && !sub.contains("POSTERN_TLS"),
        "{sub}"
    );
    let smtps = unit("postern-smtps");
    assert!(
        smtps.contains(" SMTPS_PORT=465 ") && smtps.contains("POSTERN_SUBMISSION=1\n") && smtps.contains("POSTERN_TLS=implicit\n"),
        "{smtps}"
    );
    let pop3s = unit("postern-pop3s");
    assert!(
        pop3s.contains(" POP3S_PORT=995 ") && pop3s.contains("POSTERN_TLS=implicit\n") && pop3s.contains("postern-popup ports-inst.test "),
        "{pop3s}"
    );
    // /etc/default/postern names the ports, as the units' defaults do.
    let default = fs::read_to_string(root.join("etc/default/postern")).unwrap();
    for v in ["SUBMISSION_PORT=587\n", "SMTPS_PORT=465\n", "POP3S_PORT=995\n"] {
        assert!(default.contains(v), "/etc/default/postern lacks {v:?}");
    }
    for u in [&sub, &smtps, &pop3s] {
        assert!(u.contains(&format!("{}/bin/postern-listen", home.display())) && !u.contains("/var/postern"), "{u}");
    }
    let init = fs::read_to_string(root.join("etc/init.d/postern")).unwrap();
    for line in [
        "start_one submission 'postern-listen: ready' env POSTERN_SUBMISSION=1 \"$B/postern-listen\" -u postern-d $SUBMISSION_LIMITS \"$SUBMISSION_ADDRESS\" \"$SUBMISSION_PORT\" ",
        "start_one smtps 'postern-listen: ready' env POSTERN_SUBMISSION=1 POSTERN_TLS=implicit \"$B/postern-listen\" -u postern-d $SMTPS_LIMITS ",
        "start_one pop3s 'postern-listen: ready' env POSTERN_TLS=implicit \"$B/postern-listen\" -u postern-d $POP3S_LIMITS ",
        "SUBMISSION_ADDRESS=:: SUBMISSION_PORT=587 ",
        "SMTPS_ADDRESS=:: SMTPS_PORT=465 ",
        "POP3S_ADDRESS=:: POP3S_PORT=995 ",
    ] {
        assert!(init.contains(line), "init script lacks {line:?}");
    }
}

/// Without a certificate the implicit-TLS ports serve nothing, and the log says
/// which file is missing; STARTTLS is then not offered and 587 still wants AUTH.
#[test]
fn implicit_tls_without_a_certificate_is_a_clear_error() {
    let i = Instance::create_with_client_ports("ports-nocert");
    fs::remove_file(i.cert()).unwrap();
    fs::remove_file(i.path().join("control/serverkey.pem")).unwrap();
    i.start();
    let missing = format!("no certificate {}", i.cert().display());
    for (port, log) in [(i.smtps_port(), "smtps"), (i.pop3s_port(), "pop3s")] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(15))).unwrap();
        let mut heard = Vec::new();
        let _ = s.read_to_end(&mut heard);
        assert!(heard.is_empty(), "{log}: {heard:?}");
        wait_for(10, "the log line", || i.log(log).contains(&missing).then_some(()));
    }
    let mut c = Client::smtp(i.submission_port());
    assert!(!c.expect("EHLO client.test", 250).contains("STARTTLS"));
    let t = c.expect("MAIL FROM:<a@x.test>", 530);
    assert!(t.starts_with("5.7.0 "), "{t}");
}
