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
