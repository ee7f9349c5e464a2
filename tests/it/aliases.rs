//! The aliases file: every form of value delivering for real (as postern-a in a
//! root instance), smtpd accepting aliases at RCPT, the :include: rules of who
//! may write what, and newaliases refusing what it must not trust.

use crate::fixture::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn write_mode(p: &Path, text: &str, mode: u32) {
    fs::write(p, text).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn newaliases(i: &Instance) -> String {
    let out = i.run("newaliases", &[], b"");
    assert!(out.status.success(), "newaliases: {}", text(&out));
    stdout(&out)
}

fn wait_file(p: &Path, what: &str) -> String {
    wait_for(20, what, || fs::read_to_string(p).ok().filter(|s| !s.is_empty()))
}

const RCPT_CHECK: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("client.example")
s.mail("x@sender.test")
for r in sys.argv[2:]:
    print(r, s.rcpt(r)[0])
s.quit()
"#;

#[test]
fn every_form_of_alias_delivers_and_smtpd_accepts_aliases() {
    let i = Instance::create("alall");
    let bob = i.adduser("bob", "pw");
    let carol = i.adduser("carol", "pw");
    let dir = i.path().display().to_string();
    let lists = i.join("lists");
    fs::create_dir(&lists).unwrap();
    fs::set_permissions(&lists, fs::Permissions::from_mode(0o755)).unwrap();
    write_mode(&lists.join("members"), &format!("# the list\n{}\n\"|cat > {dir}/alias/include.out\"\n", i.address("carol")), 0o644);
    let aliases = format!(
        "# test aliases\nTeam: {},\n  {dir}/alias/team.mbox, \"|cat > {dir}/alias/prog.out\",\n  :include:{dir}/lists/members\n",
        i.address("bob")
    );
    write_mode(&i.join("aliases"), &aliases, 0o644);
    assert_eq!(newaliases(&i), format!("{dir}/aliases: 1 aliases\n"));
    i.start();

    let out = python(RCPT_CHECK, &[&i.smtp_port().to_string(), "TEAM@localhost", "nobody@localhost"]);
    assert_eq!(out, "TEAM@localhost 250\nnobody@localhost 550\n", "smtpd accepts an alias and refuses an unknown name");

    i.send("sender@sender.test", &["team@localhost"], &message("to the team", "hello team"));
    let got = i.wait_mail(&bob, 1);
    let m = String::from_utf8_lossy(&got[0]);
    assert!(m.contains("Delivered-To: team@localhost\n") && m.contains("hello team"), "{m}");
    let got = i.wait_mail(&carol, 1);
    assert!(String::from_utf8_lossy(&got[0]).contains("hello team"), "carol is in the included list");
    for f in ["team.mbox", "prog.out", "include.out"] {
        let p = i.join("alias").join(f);
        let s = wait_file(&p, f);
        assert!(s.contains("hello team"), "{f}: {s}");
        // Files get qmail's Return-Path and Delivered-To; programs have them in $DTLINE.
        assert_eq!(s.contains("Delivered-To: team@localhost"), f == "team.mbox", "{f}: {s}");
        if is_root() {
            assert_eq!(fs::metadata(&p).unwrap().uid(), uid_of("postern-a").unwrap(), "{f} was written as postern-a");
        }
    }
    assert!(fs::read_to_string(i.join("alias/team.mbox")).unwrap().starts_with("From sender@sender.test "), "an mbox line");
    i.wait_empty();
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn include_files_follow_who_may_write_them() {
    require_root();
    let i = Instance::create("alinc");
    let bob = i.adduser("bob", "pw");
    let dir = i.path().display().to_string();
    let u = UnixUser::new("alinc", false);
    // postern-a must be able to reach the files at all.
    fs::set_permissions(&u.home, fs::Permissions::from_mode(0o755)).unwrap();
    u.file("addrs", &format!("{}\n", i.address("bob")));
    u.file("prog", &format!("\"|touch {dir}/alias/ran\"\n"));
    let lists = i.join("lists");
    fs::create_dir(&lists).unwrap();
    fs::set_permissions(&lists, fs::Permissions::from_mode(0o755)).unwrap();
    write_mode(&lists.join("gw"), &format!("{}\n", i.address("bob")), 0o664);
    let h = u.home.display();
    write_mode(
        &i.join("aliases"),
        &format!("useraddrs: :include:{h}/addrs\nuserprog: :include:{h}/prog\ngroupw: :include:{dir}/lists/gw\n"),
        0o644,
    );
    newaliases(&i);
    i.start();

    // A user's include file may list addresses: delivered.
    i.send("sender@sender.test", &["useraddrs@localhost"], &message("user list", "addresses only"));
    let got = i.wait_mail(&bob, 1);
    assert!(String::from_utf8_lossy(&got[0]).contains("addresses only"));

    // Its program line would run as postern-a on the user's say: deferred.
    i.send("sender@sender.test", &["userprog@localhost"], &message("user prog", "x"));
    // A file a group may write is not used at all: deferred.
    i.send("sender@sender.test", &["groupw@localhost"], &message("group writable", "x"));
    let log = wait_for(20, "two deferrals", || {
        let l = i.send_log();
        (l.contains("to <userprog@localhost>: deferral") && l.contains("to <groupw@localhost>: deferral")).then_some(l)
    });
    let line = |who: &str| log.lines().find(|l| l.contains(&format!("to <{who}@localhost>: deferral"))).unwrap().to_string();
    let l = line("userprog");
    assert!(l.contains(&format!(":include:{h}/prog can be changed by {} (owner of {h}", u.name)) && l.contains("addresses only"), "{l}");
    assert!(l.contains("4.7.0"), "{l}");
    let l = line("groupw");
    assert!(l.contains(&format!("{dir}/lists/gw is writable by group or others; chmod go-w it")), "{l}");
    assert!(!i.join("alias/ran").exists(), "the user's program never ran");
    assert_eq!(i.queued(), 2, "deferred, not lost");
    assert_eq!(maildir_new(&bob).len(), 1);

    // Fixed by the admin, the next retry delivers.
    fs::set_permissions(lists.join("gw"), fs::Permissions::from_mode(0o644)).unwrap();
    i.flush();
    i.wait_mail(&bob, 2);
}

#[test]
fn newaliases_refuses_an_unsafe_or_broken_file_and_keeps_the_last_good_one() {
    let i = Instance::create("alnew");
    i.adduser("bob", "pw");
    let src = i.join("aliases");
    write_mode(&src, &format!("first: {}\n", i.address("bob")), 0o644);
    // All three names compile: newaliases, -bi and -I.
    assert!(newaliases(&i).ends_with(": 1 aliases\n"));
    for flag in ["-bi", "-I"] {
        let out = i.run("postern-sendmail", &[flag], b"");
        assert!(out.status.success() && stdout(&out).ends_with(": 1 aliases\n"), "{flag}: {}", text(&out));
    }
    let cases = [
        (
            format!("first: {}\nsecond: a b\n", i.address("bob")),
            0o644,
            format!("{} line 2: second: \"a b\" is not an address", src.display()),
        ),
        (
            "first: x@y.example\n".to_string(),
            0o664,
            format!("aliases file {} is writable by group or others; chmod go-w {}", src.display(), src.display()),
        ),
        ("first: a\nfirst: b\n".to_string(), 0o644, "first is already an alias on line 1".to_string()),
    ];
    for (text_, mode, want) in cases {
        write_mode(&src, &text_, mode);
        let out = i.run("newaliases", &[], b"");
        assert_eq!(code(&out), Some(111), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&want) && err.contains("newaliases"), "want {want:?}: {err}");
    }
    // The database of the last good file still answers.
    let out = i.run("postern-sendmail", &["-bv", "first@localhost"], b"");
    assert!(stdout(&out).contains(&format!("alias first (as postern-a): forward to {}", i.address("bob"))), "{}", text(&out));
}

#[test]
fn aliases_that_name_each_other_bounce_as_a_loop() {
    let i = Instance::create("alloop");
    let bob = i.adduser("bob", "pw");
    write_mode(&i.join("aliases"), "ping: pong@localhost\npong: ping@localhost\n", 0o644);
    newaliases(&i);
    i.start();
    i.send(&i.address("bob"), &["ping@localhost"], &message("round and round", "x"));
    // The second visit to ping finds its own Delivered-To line: bounced to bob.
    let got = i.wait_mail(&bob, 1);
    let m = String::from_utf8_lossy(&got[0]);
    assert!(m.contains("looping") && m.contains("Delivered-To: ping@localhost"), "{m}");
    i.wait_empty();
}
