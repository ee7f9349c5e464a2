//! postern-sendmail's options as Unix programs and Debian packages use them:
//! -bs driven by Python's smtplib, -bv for each kind of recipient, the DSN
//! options in the queued envelope, the options sendmail accepts and ignores,
//! and the manual pages.

use crate::fixture::*;
use std::fs;
use std::process::Command;

/// The queue files of an instance that is not started (queue/new).
fn queued_files(i: &Instance) -> Vec<postern::queue::QueueFile> {
    let mut v: Vec<_> = fs::read_dir(i.join("queue/new")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v.iter().map(|p| postern::queue::QueueFile::open(p, false).unwrap()).collect()
}

const BS_CLIENT: &str = r#"
import os, smtplib, socket, subprocess, sys
sendmail, home, rcpt = sys.argv[1:4]
a, b = socket.socketpair()
p = subprocess.Popen([sendmail, "-bs"], stdin=b, stdout=b, env=dict(os.environ, POSTERN_HOME=home))
b.close()
s = smtplib.SMTP()
s.sock = a
code, greeting = s.getreply()
print("greeting", code)
s.ehlo("client.example")
print("starttls", s.has_extn("starttls"), "auth", s.has_extn("auth"))
msg = "Subject: by -bs\r\nFrom: me@here.example\r\n\r\nover stdin\r\n"
print("refused", s.sendmail("me@here.example", [rcpt, "someone@elsewhere.example"], msg))
try:
    s.sendmail("me@here.example", ["nobody@localhost"], msg)
except smtplib.SMTPRecipientsRefused as e:
    print("unknown", e.recipients["nobody@localhost"][0])
s.quit()
print("exit", p.wait())
"#;

#[test]
fn bs_is_an_smtp_session_on_stdin_and_stdout_as_the_caller() {
    let i = Instance::started("smbs");
    let md = i.adduser("bob", "pw");
    let out = python(BS_CLIENT, &[i.join("bin/postern-sendmail").to_str().unwrap(), i.path().to_str().unwrap(), &i.address("bob")]);
    assert!(out.contains("greeting 220\n"), "{out}");
    assert!(out.contains("starttls False auth False\n"), "no TLS or AUTH for a local session: {out}");
    // Local users may send anywhere, as with sendmail itself: no relay refusal.
    assert!(out.contains("refused {}\n"), "{out}");
    assert!(out.contains("unknown 550\n"), "unknown local users are still refused: {out}");
    assert!(out.contains("exit 0\n"), "{out}");
    let got = i.wait_mail(&md, 1);
    let m = String::from_utf8_lossy(&got[0]);
    let uid = nix::unistd::getuid().as_raw();
    assert!(m.contains(&format!("Received: from client.example (uid {uid})")), "{m}");
    assert!(m.contains("(postern-sendmail -bs) with ESMTP"), "{m}");
    assert!(m.contains("over stdin"), "{m}");
}

#[test]
fn bv_says_what_would_happen_to_each_kind_of_recipient() {
    let i = Instance::create("smbv");
    i.adduser("bob", "pw");
    let home = i.user_home("bob");
    i.dot_file("bob", ".qmail-list", "|cat >/dev/null\n&carol@elsewhere.example\n");
    fs::write(i.join("aliases"), format!("team: {}, {}/alias/team.mbox, \"|cat > /dev/null\"\n", i.address("bob"), i.path().display()))
        .unwrap();
    let out = i.run("newaliases", &[], b"");
    assert!(out.status.success(), "{}", text(&out));
    i.control("smtproutes", "routed.example:[127.0.0.1]:2999\n");
    let bob = i.address("bob");
    let list = format!("bob-list@{}", i.domain);
    let nodot = format!("bob-nodot@{}", i.domain);
    let args = ["-bv", &bob, &list, "team", "x@routed.example", "y@mx.example", "nobody@localhost", &nodot];
    let out = i.run("postern-sendmail", &args, b"");
    assert_eq!(code(&out), Some(100), "one recipient is undeliverable: {}", text(&out));
    let s = stdout(&out);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 7, "{s}");
    let h = home.display();
    assert!(lines[0].starts_with(&format!("{bob}... deliverable: local: {bob}: user {bob}")), "{s}");
    assert!(lines[0].ends_with(&format!("home {h}), default delivery: Maildir {h}/Maildir/")), "{s}");
    assert!(lines[1].ends_with(&format!("by {h}/.qmail-list: program |cat >/dev/null, forward to carol@elsewhere.example")), "{s}");
    // A bare name is qualified as sendmail's recipients are (defaulthost = me),
    // and this instance's me is a virtual domain: team is not an alias there.
    let team = "team@localhost".to_string();
    let out2 = i.run("postern-sendmail", &["-bv", &team], b"");
    assert_eq!(
        stdout(&out2),
        format!(
            "{team}... deliverable: local: {team}: alias team (as postern-a): forward to {bob}, mbox {}/alias/team.mbox, program |cat > /dev/null\n",
            i.path().display()
        ),
        "{}",
        text(&out2)
    );
    assert!(
        lines[2].starts_with(&format!("team@{}... undeliverable: local: team@{}: no mailbox here by that name", i.domain, i.domain)),
        "{s}"
    );
    assert_eq!(lines[3], "x@routed.example... deliverable: remote: x@routed.example by smtproutes to [127.0.0.1], port 2999", "{s}");
    assert_eq!(lines[4], "y@mx.example... deliverable: remote: y@mx.example to mx.example's MX hosts, port 25 (postern-remote)", "{s}");
    assert_eq!(lines[5], "nobody@localhost... undeliverable: local: nobody@localhost: no mailbox here by that name", "{s}");
    assert!(
        lines[6].starts_with(&format!("{nodot}... undeliverable: ")) && lines[6].contains("no .qmail file for the extension \"nodot\""),
        "{s}"
    );
    // Verifying sends nothing.
    assert_eq!(i.queued(), 0);
}

#[test]
fn dsn_options_are_kept_in_the_queued_envelope() {
    use postern::queue::dsnparams::{Notify, Ret};
    let i = Instance::create("smdsn");
    i.adduser("bob", "pw");
    let bob = i.address("bob");
    let out = i.run(
        "postern-sendmail",
        &["-oi", "-N", "success,failure", "-R", "hdrs", "-V", "batch 7+x", &bob, "carol@elsewhere.example"],
        &message("dsn", "x"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let files = queued_files(&i);
    assert_eq!(files.len(), 1);
    let q = &files[0];
    assert_eq!(q.dsn.ret, Some(Ret::Hdrs));
    assert_eq!(q.dsn.envid.as_deref(), Some("batch+207+2Bx"), "ENVID is kept as xtext");
    for r in &q.recipients {
        assert_eq!(r.dsn.notify, Some(Notify { success: true, failure: true, delay: false }), "{}", r.address);
    }
    let out = i.run("postern-sendmail", &["-oi", "-N", "never", &bob], &message("dsn never", "x"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(queued_files(&i).iter().filter(|q| q.recipients[0].dsn.notify == Some(Notify::default())).count(), 1);
    for (args, want) in [
        (vec!["-N", "sometimes", &bob], "bad option -N sometimes: give never, or a comma list of success, failure and delay"),
        (vec!["-R", "body", &bob], "bad option -R body: give full or hdrs"),
        (vec!["-V", "caf\u{e9}", &bob], "bad option -V"),
    ] {
        let out = i.run("postern-sendmail", &args, &message("bad", "x"));
        assert_eq!(code(&out), Some(100), "{args:?}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(want), "{args:?}: {}", text(&out));
    }
    assert_eq!(queued_files(&i).len(), 2, "refused options queue nothing");
}

#[test]
fn options_sendmail_accepts_and_ignores_are_not_fatal() {
    let i = Instance::create("smopt");
    i.adduser("bob", "pw");
    let bob = i.address("bob");
    // What cron, mailx, git send-email, PHP's mail(), mutt and Debian's
    // maintainer scripts pass.
    let args = [
        "-oi",
        "-oem",
        "-odb",
        "-O",
        "DeliveryMode=b",
        "-L",
        "cron",
        "-v",
        "-U",
        "-m",
        "-n",
        "-G",
        "-B",
        "8BITMIME",
        "-X",
        "/dev/null",
        "-h",
        "20",
        "-C",
        "/etc/mail/sendmail.cf",
        "-pesmtp:host",
        "-d0.1",
        "-Am",
        "-F",
        "Cron Daemon",
        "-f",
        "root",
        &bob,
    ];
    let out = i.run("postern-sendmail", &args, &message("ignored options", "x"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(queued_files(&i).len(), 1);
    for (args, want) in [(vec!["-Z", &bob], "unknown option -Z"), (vec!["-bd"], "-bd is not supported")] {
        let out = i.run("postern-sendmail", &args, &message("refused", "x"));
        assert_eq!(code(&out), Some(100), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(want), "{}", text(&out));
    }
}

/// The subcommands `postern-admin [CMD] --help` lists (clap's "Commands:").
fn admin_commands(args: &[&str]) -> Vec<String> {
    let out = Command::new(bin("postern-admin")).args(args).arg("--help").output().unwrap();
    let s = stdout(&out);
    s.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn manual_pages_render_without_warnings_and_name_every_admin_command() {
    for page in ["postern-sendmail.8", "postern-admin.8"] {
        let path = repo().join("doc").join(page);
        let out = Command::new("man").args(["--warnings", "-l"]).arg(&path).env("MANWIDTH", "80").output().unwrap();
        assert!(out.status.success(), "{page}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{page} renders without warnings");
        assert!(stdout(&out).contains("NAME") && stdout(&out).contains("SYNOPSIS"), "{page}");
    }
    let rendered =
        stdout(&Command::new("man").args(["-l"]).arg(repo().join("doc/postern-admin.8")).env("MANWIDTH", "200").output().unwrap());
    let top = admin_commands(&[]);
    assert!(top.len() >= 6, "{top:?}");
    for cmd in &top {
        let subs = admin_commands(&[cmd]);
        if subs.is_empty() {
            assert!(rendered.lines().any(|l| l.trim_start().starts_with(cmd.as_str())), "postern-admin.8 describes {cmd}");
        }
        for sub in subs {
            let entry = format!("{cmd} {sub}");
            assert!(rendered.lines().any(|l| l.trim_start().starts_with(&entry)), "postern-admin.8 describes {entry}");
        }
    }
    let sendmail =
        stdout(&Command::new("man").args(["-l"]).arg(repo().join("doc/postern-sendmail.8")).env("MANWIDTH", "200").output().unwrap());
    for opt in ["-bs", "-bv", "-bi", "-I", "-N dsn", "-R ret", "-V envid", "-O option=value", "-L tag", "newaliases"] {
        assert!(sendmail.contains(opt), "postern-sendmail.8 describes {opt}");
    }
}

/// -bv works for every user, not only root: an ordinary user sees aliases and
/// routes, and is told plainly when a home it cannot read hides the details.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn bv_works_for_an_ordinary_user() {
    require_root();
    let i = Instance::create("smbvu");
    i.adduser("bob", "pw");
    fs::write(i.join("aliases"), format!("team: {}\n", i.address("bob"))).unwrap();
    assert!(i.run("newaliases", &[], b"").status.success());
    let bob = i.address("bob");
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", "env"])
        .arg(format!("POSTERN_HOME={}", i.path().display()))
        .arg(i.join("bin/postern-sendmail"))
        .args(["-bv", "team@localhost", &bob])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s = stdout(&out);
    assert!(
        s.contains(&format!("team@localhost... deliverable: local: team@localhost: alias team (as postern-a): forward to {bob}\n")),
        "{s}"
    );
    assert!(s.contains(&format!("{bob}... deliverable: local: {bob}: user {bob}")) && s.contains("cannot be checked by you"), "{s}");
}
