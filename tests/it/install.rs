//! scripts/install: the system install's owners and modes, and mail flowing
//! through it (into a temporary home, without touching /usr/sbin/sendmail or the
//! service files).

use crate::fixture::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn install_sets_owners_and_modes_and_mail_flows() {
    require_root();
    service_users();
    let tmp = TempDir::new("install");
    let home = tmp.path().join("postern");
    let out = Command::new(repo().join("scripts/install"))
        .args(["--home", home.to_str().unwrap(), "--domain", "inst.test", "--postmaster", "lee@inst.test", "--no-sendmail", "--no-service"])
        .args(["--aliases", tmp.path().join("aliases").to_str().unwrap(), "--mandir", tmp.path().join("man").to_str().unwrap()])
        .env("POSTERN_BUILD", bin_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let meta = |p: &str| fs::metadata(home.join(p)).unwrap();
    let q = uid_of("postern-q").unwrap();
    let queue = meta("bin/postern-queue");
    assert_eq!(queue.uid(), q);
    assert_eq!(queue.permissions().mode() & 0o7777, 0o6711, "postern-queue is setuid postern-q, setgid postern");
    for d in ["queue/tmp", "queue/new", "queue/mess"] {
        assert_eq!(meta(d).uid(), q, "{d}");
        assert_eq!(meta(d).permissions().mode() & 0o7777, 0o2770, "{d}");
    }
    assert_eq!(meta("queue").permissions().mode() & 0o777, 0o750);
    assert_eq!(meta("queue/lock/trigger").uid(), uid_of("postern-s").unwrap());
    assert_eq!(fs::read_to_string(home.join("control/me")).unwrap(), "inst.test\n");
    assert_eq!(fs::read_to_string(home.join("control/postmaster")).unwrap(), "lee@inst.test\n");
    assert!(home.join("control/tcp.smtp.cdb").exists(), "the SMTP access rules are compiled");
    assert_eq!(meta("bin/postern-auth").permissions().mode() & 0o7777, 0o4750, "postern-auth is setuid root for postern-d");

    let admin = |args: &[&str]| {
        let out = Command::new(home.join("bin/postern-admin")).args(args).env("POSTERN_HOME", &home).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    admin(&["domain", "add", "inst.test"]);
    admin(&["user", "add", "lee@inst.test", "--password", "pw"]);

    let mut start = Command::new(home.join("bin/postern-start")).env("POSTERN_HOME", &home).stderr(Stdio::piped()).spawn().unwrap();
    let out = run_with_input(
        Command::new(home.join("bin/postern-sendmail")).env("POSTERN_HOME", &home).args(["-oi", "lee@inst.test", "postmaster"]),
        &message("installed", "x"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let md = home.join("mail/inst.test/lee/Maildir");
    // Two copies: one to lee, one to postmaster (control/postmaster is lee).
    let got = wait_for(20, "delivery through the installed suite", || {
        let m = maildir_new(&md);
        (m.len() == 2).then_some(m)
    });
    assert_eq!(got.len(), 2);
    let f = fs::read_dir(md.join("new")).unwrap().next().unwrap().unwrap();
    assert_eq!(f.metadata().unwrap().uid(), uid_of("postern-v").unwrap());
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(start.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let st = start.wait().unwrap();
    assert_eq!(st.code(), Some(0), "postern-start stops cleanly on SIGTERM");
}

/// `--admin`: the aliases that must reach a person, so root's mail (cron's) and
/// mail to the service users arrive; a second install keeps an edited aliases
/// file as it is; the manual pages are installed and render.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn install_admin_makes_roots_mail_arrive_and_keeps_an_edited_aliases_file() {
    require_root();
    service_users();
    let tmp = TempDir::new("install-admin");
    let home = tmp.path().join("postern");
    let aliases = tmp.path().join("aliases");
    let mandir = tmp.path().join("man");
    // Debian's aliases file of another MTA: postmaster is there, root is not.
    fs::write(&aliases, "# /etc/aliases\npostmaster: root\nnobody: root\n").unwrap();
    let install = |admin: &str| {
        let out = Command::new(repo().join("scripts/install"))
            .args(["--home", home.to_str().unwrap(), "--domain", "adm.test", "--admin", admin, "--no-sendmail", "--no-service"])
            .args(["--aliases", aliases.to_str().unwrap(), "--mandir", mandir.to_str().unwrap()])
            .env("POSTERN_BUILD", bin_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    };
    install("lee@adm.test");
    let text_ = fs::read_to_string(&aliases).unwrap();
    assert!(text_.starts_with("# /etc/aliases\npostmaster: root\nnobody: root\n"), "existing lines kept: {text_}");
    for n in ["root", "abuse", "mailer-daemon", "postern-d", "postern-q", "postern-s", "postern-r", "postern-l", "postern-v", "postern-a"] {
        assert!(text_.contains(&format!("\n{n}: lee@adm.test\n")), "{n}: {text_}");
    }
    assert!(!text_.contains("postmaster: lee"), "postmaster was defined already: {text_}");
    assert_eq!(fs::read_to_string(home.join("control/postmaster")).unwrap(), "lee@adm.test\n", "--admin is the postmaster");
    assert_eq!(fs::metadata(home.join("alias")).unwrap().uid(), uid_of("postern-a").unwrap());
    for page in ["postern-sendmail.8", "postern-admin.8"] {
        let p = mandir.join("man8").join(page);
        let out = Command::new("man").args(["--warnings", "-l"]).arg(&p).env("MANWIDTH", "80").output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty() && !out.stdout.is_empty(), "{}: {}", p.display(), text(&out));
    }

    // The admin edits the file; install again must not change it.
    let edited = format!("{text_}# my own\nwebmaster: lee@adm.test\n");
    fs::write(&aliases, &edited).unwrap();
    install("other@adm.test");
    assert_eq!(fs::read_to_string(&aliases).unwrap(), edited, "a second install keeps the edited aliases file");

    let admin = |args: &[&str]| {
        let out = Command::new(home.join("bin/postern-admin")).args(args).env("POSTERN_HOME", &home).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    // As INSTALL says: the install's domain also hosts virtual users.
    admin(&["domain", "add", "adm.test"]);
    admin(&["user", "add", "lee@adm.test", "--password", "pw"]);
    let newaliases = Command::new(home.join("bin/newaliases")).env("POSTERN_HOME", &home).output().unwrap();
    assert!(stdout(&newaliases).contains(": 13 aliases"), "{}", text(&newaliases));

    let mut start = Command::new(home.join("bin/postern-start")).env("POSTERN_HOME", &home).stderr(Stdio::piped()).spawn().unwrap();
    // cron mails root by its bare name; a bounce of a bounce goes to postmaster.
    for (rcpt, subject) in [("root", "cron for root"), ("postern-q", "to a service user"), ("webmaster", "edited alias")] {
        let out = run_with_input(
            Command::new(home.join("bin/postern-sendmail")).env("POSTERN_HOME", &home).args(["-oi", rcpt]),
            &message(subject, "x"),
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let md = home.join("mail/adm.test/lee/Maildir");
    let got = wait_for(20, "root's mail in the admin's mailbox", || {
        let m = maildir_new(&md);
        (m.len() == 3).then_some(m)
    });
    let all: String = got.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
    for s in ["Delivered-To: root@adm.test", "Subject: cron for root", "Delivered-To: postern-q@adm.test", "Subject: edited alias"] {
        assert!(all.contains(s), "{s}: {all}");
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(start.id() as i32), nix::sys::signal::Signal::SIGTERM);
    assert_eq!(start.wait().unwrap().code(), Some(0));
}
