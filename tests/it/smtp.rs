//! SMTP receive end to end: instances from scripts/instance with postern-listen and
//! postern-smtpd, real clients (Python's smtplib, swaks, msmtp), the raw
//! fixture::Client for the protocol corners and the hostile input, tcpserver, and
//! mlmmj relaying through us.

use crate::fixture::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod mlmmj;

/// The Received line postern-smtpd wrote (unfolded).
fn smtpd_received(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg).replace("\n\t", " ");
    text.lines().find(|l| l.contains("(postern-smtpd)")).unwrap_or_else(|| panic!("no Received from postern-smtpd in {text}")).to_string()
}

fn session(c: &mut Client, from: &str, to: &str) {
    c.expect("EHLO client.test", 250);
    c.expect(&format!("MAIL FROM:<{from}>"), 250);
    c.expect(&format!("RCPT TO:<{to}>"), 250);
    c.expect("DATA", 354);
}

#[test]
fn python_smtplib_delivers_byte_for_byte() {
    let i = Instance::create("pysmtp");
    let md = i.adduser("alice", "pw");
    i.start();
    let port = i.smtp_port();
    let msg = message("from python", "Hello.\n.a line starting with a dot\n8bit: caf\u{e9}\n");
    let script = format!(
        "import smtplib,sys\ns=smtplib.SMTP('127.0.0.1',{port})\nr=s.sendmail('bob@sender.test',['{}'],sys.stdin.buffer.read())\ns.quit()\nprint('refused',r)",
        i.address("alice")
    );
    // smtplib sends bytes as they are: a client must give CRLF lines (bare LF
    // is refused, see lib/smtp.rs).
    let out = run_with_input(Command::new("python3").args(["-c", &script]), &crlf(&msg));
    assert!(out.status.success(), "{}", text(&out));
    let got = i.wait_mail(&md, 1);
    assert_eq!(after_trace(&got[0]), &msg[..], "{}", String::from_utf8_lossy(&got[0]));
    let r = smtpd_received(&got[0]);
    assert!(r.contains("[127.0.0.1]") && r.contains("with ESMTP;"), "{r}");
    assert!(String::from_utf8_lossy(&got[0]).starts_with("Return-Path: <bob@sender.test>\n"));
    i.wait_empty();
}

/// postern-listen runs the postern-smtpd beside it in a forked child, not by
/// exec: the session process is named postern-smtpd and runs as postern-d (as
/// root) or as the instance's owner, and -E puts the exec back.
#[test]
fn smtpd_session_is_forked_by_listen_with_smtpds_identity() {
    let i = Instance::create("forked");
    i.start();
    let port = i.smtp_port();
    // Client::smtp reads the 220 greeting.
    let mut c = Client::smtp(port);
    let pids = wait_for(10, "a postern-smtpd session", || Some(i.pids("postern-smtpd")).filter(|p| p.len() == 1));
    let exe = fs::read_link(format!("/proc/{}/exe", pids[0])).unwrap();
    assert_eq!(exe, i.path().join("bin/postern-listen"), "forked, not exec'd");
    let want = if is_root() { uid_of("postern-d") } else { Some(nix::unistd::getuid().as_raw()) };
    assert_eq!(proc_uid(pids[0]), want);
    // (The TCP variables, set after the fork, are not in /proc/PID/environ; the
    // Received lines checked by the other tests come from them.)
    assert_eq!(c.cmd("QUIT").0, 221);

    // -E: the same listener execs postern-smtpd.
    let mut cmd = i.cmd("postern-listen");
    cmd.args(["-E", "127.0.0.1", "0"]).arg(i.path().join("bin/postern-smtpd"));
    let l = Listener::spawn(cmd, &i.join("log"));
    let mut c = Client::smtp(l.port);
    let exes: Vec<_> = i.pids("postern-smtpd").iter().filter_map(|p| fs::read_link(format!("/proc/{p}/exe")).ok()).collect();
    assert!(exes.contains(&i.path().join("bin/postern-smtpd")), "{exes:?}");
    assert_eq!(c.cmd("QUIT").0, 221);
}

#[test]
fn swaks_with_starttls_and_auth() {
    let i = Instance::create("swaks");
    let md = i.adduser("alice", "secret-a");
    i.start();
    let port = i.smtp_port();
    let server = format!("127.0.0.1:{port}");
    let body = "Line one\nLine two";
    let swaks = |extra: &[&str]| {
        Command::new("swaks")
            .args([
                "--server",
                &server,
                "--from",
                "bob@sender.test",
                "--to",
                &i.address("alice"),
                "--body",
                body,
                "--header",
                "Subject: via swaks",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = swaks(&["--tls", "--auth", "PLAIN", "--auth-user", &i.address("alice"), "--auth-password", "secret-a"]);
    assert!(out.status.success(), "{}", text(&out));
    let got = i.wait_mail(&md, 1);
    assert!(smtpd_received(&got[0]).contains("with ESMTPSA;"), "{}", String::from_utf8_lossy(&got[0]));
    let body = String::from_utf8_lossy(after_trace(&got[0])).into_owned();
    assert!(body.starts_with("Date: ") && body.contains("\nSubject: via swaks\n") && body.contains("\n\nLine one\nLine two\n"), "{body}");
    // AUTH LOGIN, and a wrong password is refused.
    let out = swaks(&["--tls", "--auth", "LOGIN", "--auth-user", &i.address("alice"), "--auth-password", "secret-a"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = swaks(&["--tls", "--auth", "PLAIN", "--auth-user", &i.address("alice"), "--auth-password", "wrong"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stdout).contains("535 5.7.8"), "{}", text(&out));
    // TLS without AUTH is ESMTPS; no AUTH is offered before STARTTLS.
    let out = swaks(&["--tls"]);
    assert!(out.status.success(), "{}", text(&out));
    let got = i.wait_mail(&md, 3);
    assert!(got.iter().any(|m| smtpd_received(m).contains("with ESMTPS;")));
    let mut c = Client::smtp(port);
    let ehlo = c.expect("EHLO x", 250);
    assert!(ehlo.contains("STARTTLS\n") && !ehlo.contains("AUTH"), "{ehlo}");
    c.expect("AUTH PLAIN AGEAYg==", 538);
}

#[test]
fn msmtp_over_starttls() {
    let i = Instance::create("msmtp");
    let md = i.adduser("carol", "pw");
    i.start();
    let port = i.smtp_port();
    let conf = i.path().join("msmtprc");
    fs::write(
        &conf,
        format!(
            "account default\nhost 127.0.0.1\nport {port}\nfrom dave@sender.test\ntls on\ntls_starttls on\ntls_trust_file {}\ntls_host_override localhost\nauth off\n",
            i.path().join("control/servercert.pem").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let msg = message("by msmtp", "sent with msmtp");
    let out = run_with_input(Command::new("msmtp").arg("-C").arg(&conf).arg(i.address("carol")), &msg);
    assert!(out.status.success(), "{}\n{}", text(&out), i.smtp_log());
    let got = i.wait_mail(&md, 1);
    assert_eq!(after_trace(&got[0]), &msg[..]);
    assert!(smtpd_received(&got[0]).contains("with ESMTPS;"));
}

#[test]
fn not_an_open_relay_unless_the_rules_or_auth_allow_it() {
    let i = Instance::create("relay");
    i.adduser("alice", "pw-a");
    i.control("rcpthosts", &format!("{}\nbackup.test\n.sub.test\n", i.domain));
    i.start();
    let port = i.smtp_port();
    let mut c = Client::smtp(port);
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<spammer@evil.test>", 250);
    let t = c.expect("RCPT TO:<victim@elsewhere.test>", 554);
    assert!(t.starts_with("5.7.1"), "{t}");
    c.expect("RCPT TO:<x@a.sub.test>", 250);
    c.expect("RCPT TO:<x@backup.test>", 250);
    let t = c.expect(&format!("RCPT TO:<nobody@{}>", i.domain), 550);
    assert!(t.starts_with("5.1.1"), "{t}");
    c.expect(&format!("RCPT TO:<ALICE@{}>", i.domain.to_uppercase()), 250);
    c.expect("QUIT", 221);

    // After AUTH (allowed in plain text by authplaintext) relaying is allowed.
    i.control("authplaintext", "1\n");
    let mut c = Client::smtp(port);
    assert!(c.expect("EHLO client.test", 250).contains("AUTH PLAIN LOGIN"));
    let plain = sasl_plain(&i.address("alice"), "pw-a");
    c.expect(&format!("AUTH PLAIN {plain}"), 235);
    c.expect("MAIL FROM:<alice@x.test>", 250);
    c.expect("RCPT TO:<friend@elsewhere.test>", 250);
    c.expect("QUIT", 221);

    // RELAYCLIENT from the listener's rules.
    i.allow_relay();
    let out = i.run(
        "postern-listen",
        &["-X", i.path().join("control/tcp.smtp").to_str().unwrap(), i.path().join("control/tcp.smtp.cdb").to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut c = Client::smtp(port);
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@x.test>", 250);
    c.expect("RCPT TO:<friend@elsewhere.test>", 250);
    c.expect(&format!("RCPT TO:<nobody@{}>", i.domain), 550);
}

#[test]
fn sequence_and_syntax_errors_get_the_right_codes() {
    let i = Instance::create("seq");
    i.adduser("alice", "pw");
    i.control("badmailfrom", "bad@spam.test\n@spamdomain.test\n");
    i.start();
    let port = i.smtp_port();
    let a = i.address("alice");
    let mut c = Client::smtp(port);
    c.expect("MAIL FROM:<a@b.test>", 503);
    c.expect("RCPT TO:<a@b.test>", 503);
    c.expect("DATA", 503);
    c.expect("NOOP", 250);
    c.expect("HELP", 214);
    c.expect("VRFY alice", 252);
    c.expect("VRFY", 501);
    c.expect("EXPN list", 502);
    c.expect("BDAT 10 LAST", 502);
    c.expect("FOO bar", 500);
    c.expect("HELO", 501);
    c.expect("QUIT", 221);
    // A fresh session: the error count (20 before a hang-up) starts again.
    let mut c = Client::smtp(port);
    c.expect("EHLO client.test", 250);
    c.expect("RCPT TO:<a@b.test>", 503);
    c.expect("DATA", 503);
    c.expect("MAIL FROM:<bad@spam.test>", 553);
    c.expect("MAIL FROM:<x@SpamDomain.test>", 553);
    c.expect("MAIL FROM:<a@b.test> FOO=bar", 555);
    c.expect("MAIL FROM:<a@b.test> BODY=BINARYMIME", 555);
    c.expect("MAIL FROM:a@b.test>", 501);
    c.expect("MAIL FROM:<\u{e9}@b.test>", 553);
    c.expect("MAIL FROM:<> BODY=8BITMIME SIZE=100 RET=HDRS ENVID=abc", 250);
    c.expect("MAIL FROM:<a@b.test>", 503);
    c.expect("DATA", 503);
    c.expect(&format!("RCPT TO:<nobody@{}>", i.domain), 550);
    c.expect("DATA", 554);
    c.expect(&format!("RCPT TO:<{a}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{a}"), 250);
    c.expect(&format!("RCPT TO:<{a}> NOTIFY=sometimes"), 555);
    c.expect("AUTH PLAIN", 503);
    c.expect("STARTTLS now", 501);
    c.expect("RSET", 250);
    c.expect("RSET x", 501);
    c.expect("DATA", 503);
    c.expect("MAIL FROM:<\u{e9}@b.test> SMTPUTF8", 250);
    c.expect(&format!("RCPT TO:<{a}>"), 250);
    c.expect("DATA", 354);
    c.send(b"Subject: utf8\r\n\r\nok\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    c.expect("QUIT", 221);
    assert!(c.closed());
    let md = i.maildir("alice");
    let got = i.wait_mail(&md, 1);
    assert!(smtpd_received(&got[0]).contains("with UTF8SMTP;"));
    assert!(String::from_utf8_lossy(&got[0]).starts_with("Return-Path: <\u{e9}@b.test>\n"));
}

/// The known smuggling variants: each DATA must give one message or none, and
/// nothing after an ambiguous end may run as a command.
#[test]
fn smtp_smuggling_variants_never_split_a_message() {
    let i = Instance::create("smuggle");
    let md = i.adduser("alice", "pw");
    i.start();
    let port = i.smtp_port();
    let a = i.address("alice");
    let smuggled = format!("MAIL FROM:<admin@bank.test>\r\nRCPT TO:<{a}>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n");
    let variants: &[&[u8]] = &[b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r", b".\n"];
    for v in variants {
        let mut c = Client::smtp(port);
        session(&mut c, "a@sender.test", &a);
        let mut data = b"Subject: legit\r\n\r\nhello".to_vec();
        data.extend_from_slice(v);
        data.extend_from_slice(smuggled.as_bytes());
        c.send(&data);
        let (code, t) = c.reply();
        assert_eq!(code, 521, "variant {:?}: {t}", String::from_utf8_lossy(v));
        assert!(c.closed(), "the server hangs up after a bare newline");
    }
    // A proper message still goes through, and only it arrives.
    let mut c = Client::smtp(port);
    session(&mut c, "a@sender.test", &a);
    c.send(b"Subject: real\r\n\r\nbody with a bare-looking .\r\n..\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    let got = i.wait_mail(&md, 1);
    i.wait_empty();
    assert_eq!(maildir_new(&md).len(), 1, "nothing smuggled arrived");
    assert_eq!(after_trace(&got[0]), b"Subject: real\n\nbody with a bare-looking .\n.\n");
}

#[test]
fn hostile_input_gets_protocol_errors_and_the_server_keeps_serving() {
    let i = Instance::create("hostile");
    let md = i.adduser("alice", "pw");
    i.start();
    let port = i.smtp_port();
    let a = i.address("alice");
    let mut c = Client::smtp(port);
    // Over-long command line, NUL, non-UTF-8: errors, then the session goes on.
    let t = c.expect(&format!("NOOP {}", "x".repeat(100_000)), 500);
    assert!(t.starts_with("5.5.2"), "{t}");
    c.send(b"HELO a\0b\r\n");
    assert_eq!(c.reply().0, 500);
    c.send(b"EHLO \xff\xfe\r\n");
    assert_eq!(c.reply().0, 500);
    c.expect("EHLO client.test", 250);
    // A header line of 100 KiB, a body line of 200 KiB, 8-bit bytes in DATA:
    // kept as they are (a NUL is refused: see issue15_a_nul_in_data_...).
    c.expect("MAIL FROM:<a@sender.test>", 250);
    c.expect(&format!("RCPT TO:<{a}>"), 250);
    c.expect("DATA", 354);
    let mut msg = format!("Subject: long\nX-Long: {}\n\n", "h".repeat(100 * 1024)).into_bytes();
    msg.extend_from_slice(&vec![b'b'; 200 * 1024]);
    msg.extend_from_slice(b"\n8-bit \xff\xfe bytes\n");
    let mut wire = crlf(&msg);
    wire.extend_from_slice(b".\r\n");
    c.send(&wire);
    assert_eq!(c.reply().0, 250);
    let got = i.wait_mail(&md, 1);
    assert_eq!(after_trace(&got[0]), &msg[..]);
    // Too many errors: the server hangs up.
    let mut c = Client::smtp(port);
    let mut last = 0;
    for _ in 0..25 {
        c.send(b"BOGUS\r\n");
        last = c.reply().0;
        if last == 421 {
            break;
        }
    }
    assert_eq!(last, 421);
    assert!(c.closed());
    // HTTP at the SMTP port.
    let mut c = Client::smtp(port);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.reply().0, 500);
    // Still serving.
    let mut c = Client::smtp(port);
    c.expect("EHLO again", 250);
}

#[test]
fn a_session_pipelined_as_rfc2920_allows() {
    let i = Instance::create("pipeline");
    let md = i.adduser("alice", "pw");
    let bob = i.adduser("bob", "pw");
    i.start();
    let port = i.smtp_port();
    let mut c = Client::smtp(port);
    let (a, b) = (i.address("alice"), i.address("bob"));
    // As few writes as RFC 2920 allows: DATA ends a group, and the message
    // waits for 354 (text sent before it is refused: see issue15_text_before_...).
    c.send(
        format!("EHLO c.test\r\nMAIL FROM:<s@sender.test>\r\nRCPT TO:<{a}>\r\nRCPT TO:<nobody@{}>\r\nRCPT TO:<{b}>\r\nDATA\r\n", i.domain)
            .as_bytes(),
    );
    let mut codes: Vec<u16> = (0..6).map(|_| c.reply().0).collect();
    c.send(format!("Subject: one\r\n\r\nfirst\r\n.\r\nMAIL FROM:<s@sender.test>\r\nRCPT TO:<{a}>\r\nDATA\r\n").as_bytes());
    codes.extend((0..4).map(|_| c.reply().0));
    c.send(b"Subject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n");
    codes.push(c.reply().0);
    assert_eq!(codes, [250, 250, 250, 550, 250, 354, 250, 250, 250, 354, 250]);
    assert_eq!(c.reply().0, 221);
    // Maildir names do not sort by time: compare the set.
    let mut got: Vec<Vec<u8>> = i.wait_mail(&md, 2).iter().map(|m| after_trace(m).to_vec()).collect();
    got.sort();
    assert_eq!(got, [b"Subject: one\n\nfirst\n".to_vec(), b"Subject: two\n\nsecond\n".to_vec()]);
    assert_eq!(i.wait_mail(&bob, 1).len(), 1);
}

/// Nothing of an unfinished message may reach the queue.
fn assert_nothing_queued(i: &Instance, md: &Path) {
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(i.queued(), 0);
    assert_eq!(fs::read_dir(i.path().join("queue/tmp")).unwrap().count(), 0, "postern-queue left a file in tmp/");
    assert!(maildir_new(md).is_empty());
}

#[test]
fn disconnect_or_stall_mid_data_queues_nothing() {
    let i = Instance::create("middata");
    let md = i.adduser("alice", "pw");
    i.control("timeoutsmtpd", "2\n");
    i.start();
    let port = i.smtp_port();
    let a = i.address("alice");
    let mut c = Client::smtp(port);
    session(&mut c, "s@sender.test", &a);
    c.send(b"Subject: cut\r\n\r\nhalf a mess");
    drop(c);
    assert_nothing_queued(&i, &md);

    let mut c = Client::smtp(port);
    session(&mut c, "s@sender.test", &a);
    c.send(b"Subject: stalled\r\n\r\nand then nothing\r\n");
    let t0 = Instant::now();
    let (code, t) = c.reply();
    assert_eq!(code, 421, "{t}");
    assert!(t.starts_with("4.4.2"), "{t}");
    assert!(t0.elapsed() >= Duration::from_millis(1500), "the timeout is timeoutsmtpd");
    assert!(c.closed());
    assert_nothing_queued(&i, &md);
    // A stalled client between commands is dropped too.
    let mut c = Client::smtp(port);
    assert_eq!(c.reply().0, 421);
}

#[test]
fn ten_thousand_recipients_hit_the_limit_and_the_server_stays_up() {
    let i = Instance::create("rcpts");
    let md = i.adduser("alice", "pw");
    i.start();
    let port = i.smtp_port();
    let a = i.address("alice");
    let mut c = Client::smtp(port);
    c.expect("EHLO c.test", 250);
    c.expect("MAIL FROM:<s@sender.test>", 250);
    let mut batch = String::new();
    for _ in 0..10_000 {
        batch.push_str(&format!("RCPT TO:<{a}>\r\n"));
    }
    let writer = {
        let mut s = c.writer();
        std::thread::spawn(move || s.write_all(batch.as_bytes()).unwrap())
    };
    let (mut ok, mut full) = (0, 0);
    for _ in 0..10_000 {
        match c.reply().0 {
            250 => ok += 1,
            452 => full += 1,
            other => panic!("unexpected {other}"),
        }
    }
    writer.join().unwrap();
    assert_eq!((ok, full), (100, 9_900), "maxrcpt defaults to 100");
    c.expect("DATA", 354);
    c.send(b"Subject: many\r\n\r\nx\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    // 100 accepted recipients, all alice: 100 copies, no more.
    assert_eq!(i.wait_mail(&md, 100).len(), 100);
    i.wait_empty();
    assert_eq!(maildir_new(&md).len(), 100);
    i.control("maxrcpt", "3\n");
    let mut c = Client::smtp(port);
    c.expect("EHLO c.test", 250);
    c.expect("MAIL FROM:<s@sender.test>", 250);
    for _ in 0..3 {
        c.expect(&format!("RCPT TO:<{a}>"), 250);
    }
    let t = c.expect(&format!("RCPT TO:<{a}>"), 452);
    assert!(t.starts_with("4.5.3"), "{t}");
}

#[test]
fn databytes_refuses_big_messages_and_queues_nothing() {
    let i = Instance::create("databytes");
    let md = i.adduser("alice", "pw");
    i.control("databytes", "1000\n");
    i.start();
    let port = i.smtp_port();
    let a = i.address("alice");
    let mut c = Client::smtp(port);
    assert!(c.expect("EHLO c.test", 250).contains("SIZE 1000\n"));
    let t = c.expect("MAIL FROM:<s@sender.test> SIZE=5000", 552);
    assert!(t.starts_with("5.3.4"), "{t}");
    c.expect("MAIL FROM:<s@sender.test>", 250);
    c.expect(&format!("RCPT TO:<{a}>"), 250);
    c.expect("DATA", 354);
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend_from_slice(&crlf(&vec![b'x'; 3000]));
    big.extend_from_slice(b"\r\n.\r\n");
    c.send(&big);
    let (code, t) = c.reply();
    assert_eq!(code, 552, "{t}");
    assert_nothing_queued(&i, &md);
    // The session goes on and a small message fits.
    c.expect("MAIL FROM:<s@sender.test>", 250);
    c.expect(&format!("RCPT TO:<{a}>"), 250);
    c.expect("DATA", 354);
    c.send(b"Subject: small\r\n\r\nfits\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    assert_eq!(after_trace(&i.wait_mail(&md, 1)[0]), b"Subject: small\n\nfits\n");
}

#[test]
fn failed_logins_are_delayed_and_counted() {
    let i = Instance::create("authfail");
    i.adduser("alice", "right");
    i.control("authplaintext", "1\n");
    i.control("authfaildelay", "1\n");
    i.start();
    let port = i.smtp_port();
    let mut c = Client::smtp(port);
    c.expect("EHLO c.test", 250);
    let t0 = Instant::now();
    let wrong = sasl_plain(&i.address("alice"), "wrong");
    c.expect(&format!("AUTH PLAIN {wrong}"), 535);
    // LOGIN step by step, cancelled with '*'.
    assert_eq!(c.cmd("AUTH LOGIN").0, 334);
    c.expect("*", 501);
    assert_eq!(c.cmd("AUTH PLAIN").0, 334);
    c.expect(&wrong, 535);
    c.expect("AUTH PLAIN not-base64!", 501);
    c.expect("AUTH CRAM-MD5", 504);
    assert_eq!(c.cmd(&format!("AUTH PLAIN {wrong}")).0, 421);
    assert!(c.closed());
    assert!(t0.elapsed() >= Duration::from_secs(6), "1 + 2 + 3 seconds of delay");
    assert!(i.smtp_log().contains("failed login for"), "{}", i.smtp_log());
}

/// RFC 3207: commands pipelined after STARTTLS are discarded, not run inside TLS.
#[test]
fn starttls_discards_pipelined_input() {
    let i = Instance::create("tlsinject");
    i.start();
    let port = i.smtp_port();
    let script = format!(
        r#"
import socket, ssl
s = socket.create_connection(("127.0.0.1", {port}))
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        l = f.readline().decode()
        lines.append(l)
        if l[3] == " ":
            return lines
reply()
s.sendall(b"EHLO x\r\n"); reply()
s.sendall(b"STARTTLS\r\nNOOP injected\r\n")
print(reply()[0].strip())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s)
t.sendall(b"EHLO y\r\n")
data = b""
while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] != b" ":
    data += t.recv(4096)
print(data.decode().splitlines()[0])
print("AUTH" in data.decode(), "STARTTLS" in data.decode())
"#
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert!(lines[0].starts_with("220 2.0.0"), "{lines:?}");
    assert!(
        lines[1].starts_with("250-") && lines[1].contains("Hello y"),
        "the first reply in TLS answers EHLO, not the injected NOOP: {lines:?}"
    );
    assert_eq!(lines[2], "True False", "AUTH offered in TLS, STARTTLS no more");
}

#[test]
fn works_under_tcpserver() {
    let i = Instance::create("tcpserver");
    let md = i.adduser("alice", "pw");
    i.start();
    let ts = Server::start("tcpserver (apt-get install ucspi-tcp)", &i.join("log/tcpserver.log"), Up::Listening, |port| {
        let mut c = Command::new("tcpserver");
        c.args(["-R", "-H", "127.0.0.1", &port.to_string()]).arg(i.path().join("bin/postern-smtpd")).env("POSTERN_HOME", i.path());
        c
    });
    let script = format!("import smtplib\ns=smtplib.SMTP('127.0.0.1',{})\ns.sendmail('t@sender.test',['{}'],b'Subject: tcpserver\\r\\n\\r\\nvia ucspi-tcp\\r\\n')\ns.quit()", ts.port, i.address("alice"));
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    drop(ts);
    assert!(out.status.success(), "{}", text(&out));
    let got = i.wait_mail(&md, 1);
    assert_eq!(after_trace(&got[0]), b"Subject: tcpserver\n\nvia ucspi-tcp\n");
    assert!(smtpd_received(&got[0]).contains("[127.0.0.1]"), "TCPREMOTEIP from tcpserver");
}
