//! The operator's queue tools on running instances: the queue id in the SMTP
//! reply and the logs, `postern-admin queue list/show/hold/release/delete/
//! requeue` (and --json), `postern-admin log ID`, the log format, and mailq and
//! `sendmail -q` for an ordinary user who cannot read the queue.

use crate::fixture::*;
use std::fs;
use std::path::Path;
use std::process::Command;

const SMTPLIB: &str = r#"
import smtplib, sys
port, sender, rcpt, subject, body = sys.argv[1:6]
s = smtplib.SMTP("127.0.0.1", int(port))
s.ehlo("client.test")
s.mail(sender)
s.rcpt(rcpt)
code, resp = s.data(("Subject: %s\r\n\r\n%s\r\n" % (subject, body)).encode())
print(code, resp.decode())
s.quit()
"#;

/// Send one message by SMTP (python's smtplib) and return the queue id from
/// the 250 reply.
fn smtp_send(i: &Instance, sender: &str, rcpt: &str, subject: &str, body: &str) -> String {
    let port = i.smtp_port().to_string();
    let out = python(SMTPLIB, &[&port, sender, rcpt, subject, body]);
    let reply = out.trim();
    let id = reply.strip_prefix("250 2.0.0 ok: queued as ").unwrap_or_else(|| panic!("no queue id in the reply: {reply}"));
    assert!(postern::queue::Id::parse(id).is_some(), "{reply}");
    id.to_string()
}

fn admin(i: &Instance, args: &[&str]) -> String {
    let o = i.run("postern-admin", args, b"");
    assert_eq!(o.status.code(), Some(0), "postern-admin {args:?}: {}", text(&o));
    stdout(&o)
}

/// Whether a JSON document parses (python's json module) and what `expr`
/// (over `d`) says of it.
fn json(doc: &str, expr: &str) -> String {
    let script = format!("import json,sys\nd=json.loads(sys.argv[1])\nprint(repr(({expr})))");
    python(&script, &[doc]).trim().to_string()
}

fn deferrals(i: &Instance, id: &str) -> usize {
    i.send_log().lines().filter(|l| l.contains(&format!("delivery {id} ")) && l.contains("deferral")).count()
}

#[test]
fn queue_surgery_on_a_running_instance() {
    let i = Instance::create("qadmin");
    i.allow_relay();
    let dead = refused_port();
    i.control("smtproutes", &format!("elsewhere.example:[127.0.0.1]:{}\n", dead.port));
    let sender_md = i.adduser("sender", "x");
    i.start();
    let sender = i.address("sender");

    // The reply names the id, and so does smtpd's line for the message.
    let id = smtp_send(&i, &sender, "far@elsewhere.example", "far away", "the body text");
    wait_for(20, "the deferral", || (deferrals(&i, &id) >= 1).then_some(()));
    let smtp_log = i.smtp_log();
    let accepted = smtp_log.lines().find(|l| l.contains(&format!("accepted {id} "))).unwrap_or_else(|| panic!("{smtp_log}"));
    assert!(accepted.contains("from 127.0.0.1 helo=client.test") && accepted.contains(&format!("<{sender}> -> <far@elsewhere.example>")));
    assert!(accepted.contains(" bytes in "), "{accepted}");
    wait_for(20, "the connection line", || {
        i.smtp_log()
            .lines()
            .any(|l| l.contains("connection from 127.0.0.1 helo=client.test") && l.contains(&format!("[{id}]")))
            .then_some(())
    });

    // Every log line: an RFC 3339 timestamp, the program, the event.
    for l in i.send_log().lines().chain(i.smtp_log().lines()).filter(|l| l.contains("postern-")) {
        let (ts, rest) = l.split_once(' ').unwrap();
        let b = ts.as_bytes();
        assert!(ts.len() == 27 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && ts.ends_with('Z'), "{l}");
        assert!(rest.starts_with("postern-"), "{l}");
    }

    // list: the pending recipient, its last result and next try; --json parses.
    let list = wait_for(20, "the attempt recorded", || {
        let l = admin(&i, &["queue", "list"]);
        l.contains("1 attempt(s)").then_some(l)
    });
    assert!(list.contains(&format!("{id} (active)")) && list.contains("pending <far@elsewhere.example>"), "{list}");
    assert!(list.contains("next try 20") && list.contains(": 4."), "{list}");
    let j = admin(&i, &["queue", "list", "--json"]);
    assert_eq!(
        json(&j, "d[0]['id'], d[0]['recipients'][0]['state'], d[0]['recipients'][0]['attempts']"),
        format!("('{id}', 'pending', 1)")
    );
    assert_eq!(json(&j, "d[0]['recipients'][0]['status'][0], d[0]['recipients'][0]['next_try'] > d[0]['arrival']"), "('4', True)");

    // show: envelope and header; the body only with --body.
    let show = admin(&i, &["queue", "show", &id]);
    assert!(show.contains(&format!("sender: <{sender}>")) && show.contains("Subject: far away"), "{show}");
    assert!(show.contains("1 attempt(s)") && !show.contains("the body text"), "{show}");
    assert!(admin(&i, &["queue", "show", &id, "--body"]).contains("the body text"));
    let j = admin(&i, &["queue", "show", &id, "--json"]);
    assert_eq!(json(&j, "d['state'], 'Subject: far away' in d['header'], d['body']"), "('active', True, None)");

    // hold: moved to hold/, never tried, not even by a flush or a requeue.
    assert_eq!(admin(&i, &["queue", "hold", &id]).trim(), format!("held {id}"));
    assert!(i.join("queue/hold").join(&id).exists());
    assert!(admin(&i, &["queue", "list"]).contains(&format!("{id} (held)")));
    let o = i.run("postern-admin", &["queue", "requeue", &id], b"");
    assert_eq!(o.status.code(), Some(100), "{}", text(&o));
    assert!(text(&o).contains("is held"), "{}", text(&o));
    let before = deferrals(&i, &id);
    let flushes = i.send_log().matches("flush:").count();
    i.flush();
    wait_for(20, "the flush", || (i.send_log().matches("flush:").count() > flushes).then_some(()));
    // A second message goes through the same route after the flush: once it
    // is deferred, the held one would have been tried with it.
    let other = smtp_send(&i, &sender, "second@elsewhere.example", "second", "x");
    wait_for(20, "the second deferral", || (deferrals(&i, &other) >= 1).then_some(()));
    assert_eq!(deferrals(&i, &id), before, "a held message was tried:\n{}", i.send_log());

    // delete silently: gone, and the log says nobody was told.
    assert_eq!(admin(&i, &["queue", "delete", &other]).trim(), format!("deleted {other}"));
    assert!(i.send_log().contains(&format!("end {other}: deleted by the administrator, nobody told")));
    assert!(!admin(&i, &["queue", "list"]).contains(&other));

    // requeue: tried again at once.
    let third = smtp_send(&i, &sender, "third@elsewhere.example", "third", "x");
    wait_for(20, "the third deferral", || (deferrals(&i, &third) >= 1).then_some(()));
    admin(&i, &["queue", "requeue", &third]);
    wait_for(20, "the requeued try", || (deferrals(&i, &third) >= 2).then_some(()));
    // delete --bounce: the sender is told.
    assert_eq!(admin(&i, &["queue", "delete", "--bounce", &third]).trim(), format!("deleted {third}"));
    let dsn = String::from_utf8_lossy(&i.wait_mail(&sender_md, 1)[0]).into_owned();
    assert!(dsn.contains("Final-Recipient: rfc822; third@elsewhere.example"), "{dsn}");
    assert!(dsn.contains("deleted from the queue by the mail administrator") && dsn.contains("Status: 5.0.0"), "{dsn}");

    // release: the route works now; the held message goes at once.
    let fake = FakeSmtp::start("127.0.0.1", FakeScript::default());
    i.control("smtproutes", &format!("elsewhere.example:[127.0.0.1]:{}\n", fake.port()));
    assert_eq!(admin(&i, &["queue", "release", &id]).trim(), format!("released {id}"));
    wait_for(20, "the released message delivered", || fake.sessions().iter().any(|s| !s.data.is_empty()).then_some(()));
    i.wait_empty();
    assert!(!i.join("queue/hold").join(&id).exists());
    let o = i.run("postern-admin", &["queue", "show", &id], b"");
    assert_eq!(o.status.code(), Some(100), "{}", text(&o));

    // log ID: the story, in order, from the instance's logs.
    let story = admin(&i, &["log", &id]);
    let at = |what: &str| story.find(what).unwrap_or_else(|| panic!("{what:?} missing from the story:\n{story}"));
    // smtpd logs after the queue's answer, so postern-send may log first.
    assert!(at(&format!("accepted {id}")) < at(&format!("hold {id}: moved")), "{story}");
    assert!(at(&format!("new {id}")) < at(&format!("hold {id}: moved")), "{story}");
    assert!(at(&format!("hold {id}: moved")) < at(&format!("delivery {id} to <far@elsewhere.example>: success")), "{story}");
    assert!(at("success") < at(&format!("end {id}")), "{story}");
    assert!(!story.contains(&other), "{story}");
}

#[test]
fn the_reply_names_the_queue_id_whichever_way_the_message_is_queued() {
    let i = Instance::create("qadmin-id");
    let md = i.adduser("alice", "x");
    i.start();
    let to = i.address("alice");
    let taken = |id: &str| i.send_log().contains(&format!("new {id} from <s@sender.test>"));
    // Through postern-queued.
    let id = smtp_send(&i, "s@sender.test", &to, "by the daemon", "x");
    wait_for(20, "postern-send to take it", || taken(&id).then_some(()));
    // Through postern-authcheck (the arrival checks), which hands it on.
    i.control("authcheck", "1\n");
    let id2 = smtp_send(&i, "s@sender.test", &to, "checked", "x");
    wait_for(20, "postern-send to take it", || taken(&id2).then_some(()));
    assert!(i.smtp_log().contains("postern-authcheck: accepted"), "{}", i.smtp_log());
    i.control("authcheck", "0\n");
    // Through postern-queue, with postern-queued gone.
    let daemon = i.pids("postern-queued");
    assert!(!daemon.is_empty());
    for pid in daemon {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    wait_for(20, "postern-queued's socket gone", || (!i.join("run/queue/submit").exists()).then_some(()));
    let id3 = smtp_send(&i, "s@sender.test", &to, "by the program", "x");
    wait_for(20, "postern-send to take it", || taken(&id3).then_some(()));
    i.wait_mail(&md, 3);
    assert!(id != id2 && id2 != id3);
}

#[test]
fn smtpd_lines_name_the_tls_version_cipher_and_login() {
    let i = Instance::create("qadmin-tls");
    i.adduser("alice", "secret");
    i.start();
    let user = i.address("alice");
    let script = r#"
import smtplib, ssl, sys
port, user = sys.argv[1:3]
s = smtplib.SMTP("127.0.0.1", int(port))
s.ehlo("tls.test")
s.starttls(context=ssl._create_unverified_context())
s.ehlo("tls.test")
s.login(user, "secret")
s.mail(user)
s.rcpt("far@elsewhere.example")
code, resp = s.data(b"Subject: tls\r\n\r\nx\r\n")
print(code, resp.decode())
s.quit()
"#;
    let out = python(script, &[&i.smtp_port().to_string(), &user]);
    let id = out.trim().strip_prefix("250 2.0.0 ok: queued as ").unwrap_or_else(|| panic!("{out}")).to_string();
    let want = "from 127.0.0.1 helo=tls.test tls=TLSv1.3/TLS13_";
    let log = wait_for(20, "the connection line", || {
        let l = i.smtp_log();
        l.lines().any(|l| l.contains("connection from 127.0.0.1") && l.contains(&id)).then_some(l)
    });
    for kind in [format!("accepted {id} "), "connection ".to_string()] {
        let line = log.lines().find(|l| l.contains(&kind) && l.contains(&id)).unwrap_or_else(|| panic!("{kind} in {log}"));
        assert!(line.contains(want) && line.contains(&format!(" auth={user}:")), "{line}");
    }
    let accepted = log.lines().find(|l| l.contains(&format!("accepted {id} "))).unwrap();
    assert!(accepted.contains(&format!("<{user}> -> <far@elsewhere.example>: ")), "{accepted}");
}

#[test]
fn requests_about_messages_postern_send_does_not_have_say_so() {
    let i = Instance::started("qadmin-none");
    for (args, code, says) in [
        (vec!["queue", "show", "1.2.3"], 100, "no message 1.2.3"),
        (vec!["queue", "hold", "1.2.3"], 100, "no message 1.2.3"),
        (vec!["queue", "release", "1.2.3"], 100, "no message 1.2.3"),
        (vec!["queue", "delete", "1.2.3", "../x"], 100, "\"../x\" is not a queue id"),
        (vec!["log", "1.2.3"], 100, "no log line names 1.2.3"),
    ] {
        let o = i.run("postern-admin", &args, b"");
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn mailq_and_sendmail_q_work_for_an_ordinary_user_without_queue_access() {
    let i = Instance::create("qadmin-user");
    let dead = refused_port();
    i.control("smtproutes", &format!("elsewhere.example:[127.0.0.1]:{}\n", dead.port));
    i.start();
    i.send("s@sender.test", &["far@elsewhere.example"], b"Subject: private subject\n\nprivate body\n");
    wait_for(20, "the deferral", || i.send_log().contains("to <far@elsewhere.example>: deferral").then_some(()));
    let user = UnixUser::new("mq", false);
    let as_user = |program: &Path, args: &[&str]| {
        let mut c = Command::new("runuser");
        c.args(["-u", &user.name, "--", "env"]).arg(format!("POSTERN_HOME={}", i.path().display())).arg(program).args(args);
        c.output().unwrap()
    };
    // The user cannot read the queue, nor write the trigger.
    let o = as_user(Path::new("/bin/ls"), &[i.join("queue/mess").to_str().unwrap()]);
    assert!(!o.status.success(), "the queue is readable by anyone: {}", text(&o));
    let o = as_user(Path::new("/bin/sh"), &["-c", &format!("echo F > {}", i.join("queue/lock/trigger").display())]);
    assert!(!o.status.success(), "the trigger is writable by anyone: {}", text(&o));

    // mailq (by its name) and sendmail -bp: the envelope and state, no contents.
    let mailq = i.path().join("mailq");
    std::os::unix::fs::symlink(i.path().join("bin/postern-sendmail"), &mailq).unwrap();
    let o = as_user(&mailq, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let listed = stdout(&o);
    assert!(listed.contains("from <s@sender.test>") && listed.contains("pending <far@elsewhere.example>"), "{listed}");
    assert!(!listed.contains("private"), "contents shown: {listed}");
    let o = as_user(&i.path().join("bin/postern-sendmail"), &["-bp"]);
    // The same listing (the age may have moved on by a second).
    let ageless = |l: &str| l.lines().map(|l| l.split(" age ").next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(ageless(&stdout(&o)), ageless(&listed), "{}", text(&o));

    // sendmail -q: a retry, asked through postern-queued; a second one within
    // the minute is not passed on.
    let flushes = i.send_log().matches("flush:").count();
    let o = as_user(&i.path().join("bin/postern-sendmail"), &["-q"]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(20, "the retry", || (i.send_log().matches("flush:").count() > flushes).then_some(()));
    let asked = format!("uid {} asked for a retry of the queue", user.uid);
    assert_eq!(i.send_log().matches(&asked).count(), 1, "{}", i.send_log());
    let o = as_user(&i.path().join("bin/postern-sendmail"), &["-qRelsewhere.example"]);
    assert!(o.status.success(), "{}", text(&o));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(i.send_log().matches(&asked).count(), 1, "a second retry within the minute:\n{}", i.send_log());
    // Without postern-queued the user is told why, not just "permission denied".
    for pid in i.pids("postern-queued") {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    wait_for(20, "postern-queued's socket gone", || (!i.join("run/queue/submit").exists()).then_some(()));
    let sendmail = i.path().join("bin/postern-sendmail");
    for args in [&[][..], &["-q"][..]] {
        let o = as_user(if args.is_empty() { &mailq } else { &sendmail }, args);
        assert_eq!(o.status.code(), Some(111), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("postern-queued does not answer"), "{args:?}: {}", text(&o));
    }
    fs::remove_file(mailq).unwrap();
}

/// Under systemd the journal takes each line's priority from a `<N>` prefix;
/// a program whose stderr is not the journal's stream (a pipe to its parent)
/// writes none, even with JOURNAL_STREAM inherited.
#[test]
fn log_lines_carry_their_priority_only_to_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let home = Home::new("qadmin-journal");
    let dir = TempDir::new("qadmin-journal-log");
    let run = |stream_of: Option<&Path>, log: &Path| {
        let err = fs::File::create(log).unwrap();
        let m = fs::metadata(stream_of.unwrap_or(log)).unwrap();
        let mut c = home.cmd("postern-queue");
        c.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino())).stdin(std::process::Stdio::null()).stderr(err);
        // An envelope that does not parse: a warning, exit 91.
        let (r, w) = postern::os::sys::pipe().unwrap();
        c.stdout(std::process::Stdio::from(r));
        let mut child = c.spawn().unwrap();
        drop(std::io::Write::write_all(&mut fs::File::from(w), b"Xbad\0\0"));
        assert_eq!(child.wait().unwrap().code(), Some(91));
        fs::read_to_string(log).unwrap()
    };
    let journal = run(None, &dir.path().join("journal"));
    assert!(journal.starts_with("<4>20") && journal.contains("Z postern-queue: envelope format error"), "{journal}");
    let other = run(Some(&dir.path().join("journal")), &dir.path().join("pipe"));
    assert!(other.starts_with("20") && other.contains("Z postern-queue: envelope format error"), "{other}");
}
