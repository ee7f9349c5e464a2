//! Issue 15 regression tests: DSN parameters, smtproutes, closed pipes, restarts.

use super::*;

/// A bare dotted-quad relay in smtproutes (`domain:IP:port`, as qmail takes it)
/// is connected to directly, not looked up as a host name (it deferred
/// forever); `[IPv6]` likewise.
#[test]
fn issue15_smtproutes_with_a_bare_ip_connects_to_that_address() {
    let f = FakeSmtp::start("127.0.0.1", FakeScript::default());
    let h = Home::new("i15-bareip");
    h.control("smtproutes", &format!("x.test:127.0.0.1:{}\n", f.port()))
        .control("timeoutremote", "5\n")
        .control("timeoutconnect", "5\n")
        .control("dnsresolvers", "127.0.0.1:1\n");
    let o = crate::remote::remote(&h, "x.test", "me@a.test", &["you@x.test"], &message("bare", "x"));
    assert_eq!(o.message.0, 'K', "{o:?}");
    assert_eq!(o.recipients[0].0, 'r', "{o:?}");
    assert!(o.message.1.contains("[127.0.0.1]"), "{o:?}");
    assert_eq!(f.sessions().len(), 1);

    let f6 = FakeSmtp::start("::1", FakeScript::default());
    h.control("smtproutes", &format!("x.test:[::1]:{}\n", f6.port()));
    let o = crate::remote::remote(&h, "x.test", "me@a.test", &["you@x.test"], &message("v6", "x"));
    assert_eq!(o.message.0, 'K', "{o:?}");
    assert_eq!(f6.sessions().len(), 1);
}

/// `postern-admin queue list | head -n 1` (and `sendmail -bp`): the tool ends
/// quietly when its reader goes away; it used to panic with a backtrace.
#[test]
fn issue15_tools_exit_quietly_when_the_reader_closes_the_pipe() {
    let i = Instance::create("i15-epipe");
    // Far more listing than a pipe holds (64 KiB): the writer must meet EPIPE.
    let rcpts: Vec<String> = (0..3000).map(|n| format!("recipient-number-{n}@elsewhere.example")).collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    for n in 0..3 {
        i.send("s@sender.test", &rcpts, &message(&format!("m{n}"), "x"));
    }
    for (program, args) in [("postern-admin", "queue list"), ("postern-sendmail", "-bp"), ("postern-admin", "showctl")] {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("set -o pipefail; \"$0\" {args} | head -n 1"))
            .arg(i.join("bin").join(program))
            .env("POSTERN_HOME", i.path())
            .output()
            .unwrap();
        let code = out.status.code();
        assert!(out.stderr.is_empty(), "{program} {args}: stderr not empty (status {code:?}):\n{}", text(&out));
        assert!(matches!(code, Some(0 | 141)), "{program} {args}: status {code:?}\n{}", text(&out));
        assert_eq!(stdout(&out).lines().count(), 1, "{}", text(&out));
    }
}

/// After a crash the pid files may name a zombie (PID 1 here does not reap) or
/// a pid the kernel has handed to an unrelated program: `scripts/instance
/// start` must start the instance anyway, not report it as running.
#[test]
fn issue15_instance_starts_when_its_pid_files_name_a_zombie_or_a_stranger() {
    let i = Instance::create("i15-stale");
    // A zombie: our own child that exited and that we have not waited for.
    let zombie = std::process::Command::new("true").spawn().unwrap();
    let zpid = zombie.id();
    wait_for(10, "the child to become a zombie", || {
        let stat = fs::read_to_string(format!("/proc/{zpid}/stat")).ok()?;
        stat.rsplit(')').next().unwrap().trim_start().starts_with('Z').then_some(())
    });
    // A stranger: a live process that is not the instance's.
    let mut stranger = std::process::Command::new("sleep").arg("600").spawn().unwrap();
    let spid = stranger.id();
    fs::write(i.join("run/send.pid"), format!("{zpid}\n")).unwrap();
    fs::write(i.join("run/smtp.pid"), format!("{spid}\n")).unwrap();
    fs::write(i.join("run/pop3.pid"), format!("{zpid}\n")).unwrap();
    let out = i.script("start");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("already running"), "{}", text(&out));
    assert!(!i.pids("postern-send").is_empty(), "postern-send runs:\n{}", text(&out));
    let mut c = Client::smtp(i.smtp_port());
    assert_eq!(c.cmd("QUIT").0, 221);
    // Client::pop3 asserts the +OK greeting.
    drop(Client::pop3(i.pop3_port()));
    // The stranger was left alone.
    assert!(fs::read_link(format!("/proc/{spid}/exe")).is_ok(), "the unrelated sleep still runs");
    i.stop();
    assert!(fs::read_link(format!("/proc/{spid}/exe")).is_ok(), "stop did not kill the unrelated sleep");
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    drop(zombie);
}

/// Send one message by SMTP with DSN parameters: `rcpts` are (address,
/// rcpt_options) pairs.
fn send_with_dsn(i: &Instance, from: &str, mail_options: &[&str], rcpts: &[(&str, &[&str])], msg: &str) {
    let script = r#"
import smtplib, sys, json
from_, mopts, rcpts, msg = sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.ehlo("client.test")
assert s.has_extn("dsn"), s.esmtp_features
code, text = s.mail(from_, mopts)
assert code == 250, (code, text)
for addr, opts in rcpts:
    code, text = s.rcpt(addr, opts)
    assert code == 250, (addr, code, text)
code, text = s.data(msg.encode())
assert code == 250, (code, text)
s.quit()
"#;
    let json = |v: &[&str]| format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(","));
    let rcpts = format!("[{}]", rcpts.iter().map(|(a, o)| format!("[{a:?},{}]", json(o))).collect::<Vec<_>>().join(","));
    python(script, &[&i.smtp_port().to_string(), from, &json(mail_options), &rcpts, msg]);
}

/// RFC 3461's parameters are honoured: NOTIFY=NEVER or a NOTIFY without
/// FAILURE gets no bounce, RET=HDRS returns only the header, ENVID and ORCPT
/// are quoted, NOTIFY=SUCCESS gets a success notice. They used to be parsed
/// and dropped: everyone got a bounce with the whole message.
#[test]
fn issue15_dsn_parameters_are_honoured() {
    let i = Instance::started("i15-dsn");
    let sender = i.adduser("sender", "x");
    let ok = i.adduser("ok", "x");
    for user in ["never", "fail"] {
        i.adduser(user, "x");
        i.dot_file(user, ".qmail", "|echo this mailbox is closed; exit 100\n");
    }
    let [from, never, fail, okaddr] = ["sender", "never", "fail", "ok"].map(|u| i.address(u));
    let msg = |subject: &str| format!("From: {from}\r\nSubject: {subject}\r\n\r\nSECRET-BODY-LINE\r\n");
    // First: nobody asked for a failure notice, so none comes.
    send_with_dsn(&i, &from, &[], &[(&never, &["NOTIFY=NEVER"]), (&fail, &["NOTIFY=DELAY"])], &msg("quiet"));
    i.wait_empty();
    let log = i.send_log();
    assert!(log.contains(&format!("no failure notice for <{never}> (NOTIFY=NEVER)")), "{log}");
    assert!(log.contains(&format!("no failure notice for <{fail}> (NOTIFY=DELAY)")), "{log}");
    assert_eq!(maildir_new(&sender).len(), 0, "no bounce for NOTIFY=NEVER or DELAY");
    // Then one report: the failure (with ORCPT and ENVID, headers only) and the
    // success; nothing about the NEVER recipient.
    send_with_dsn(
        &i,
        &from,
        &["RET=HDRS", "ENVID=env+2B42"],
        &[
            (&never, &["NOTIFY=NEVER"]),
            (&fail, &["NOTIFY=FAILURE", "ORCPT=rfc822;Orig+2Bfail@example.org"]),
            (&okaddr, &["NOTIFY=SUCCESS"]),
        ],
        &msg("loud"),
    );
    i.wait_mail(&ok, 1);
    let got = i.wait_mail(&sender, 1);
    i.wait_empty();
    assert_eq!(maildir_new(&sender).len(), 1, "one report");
    let dsn = String::from_utf8_lossy(&got[0]).into_owned();
    assert!(dsn.starts_with("Return-Path: <>\n"), "{dsn}");
    assert!(dsn.contains("Original-Envelope-Id: env+42\n"), "ENVID: {dsn}");
    assert!(
        dsn.contains(&format!(
            "Original-Recipient: rfc822; Orig+fail@example.org\nFinal-Recipient: rfc822; {fail}\nAction: failed\nStatus: 5."
        )),
        "ORCPT: {dsn}"
    );
    assert!(dsn.contains(&format!("Final-Recipient: rfc822; {okaddr}\nAction: delivered\nStatus: 2.0.0")), "SUCCESS: {dsn}");
    assert!(!dsn.contains(&never), "NEVER is not reported: {dsn}");
    assert!(dsn.contains("Content-Type: text/rfc822-headers") && dsn.contains("Subject: loud"), "{dsn}");
    assert!(!dsn.contains("SECRET-BODY-LINE"), "RET=HDRS: no body: {dsn}");
}
