//! postern-admin: users and domains, users/cdb and its lookups, the queue views,
//! and showctl.

use crate::fixture::*;
use postern::queue::QueueFile;
use postern::users::{self, Users};
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ids() -> (String, String) {
    (nix::unistd::getuid().as_raw().to_string(), nix::unistd::getgid().as_raw().to_string())
}

#[test]
fn users_and_domains() {
    let home = Home::new("admin-users");
    let (uid, gid) = ids();
    let add = |a: &str| home.run("postern-admin", &["user", "add", a, "--password", "pw1", "--uid", &uid, "--gid", &gid], b"");

    let o = add("alice@v.example");
    assert_eq!(o.status.code(), Some(100), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("domain add v.example"), "{}", text(&o));

    ok(&home.run("postern-admin", &["domain", "add", "V.Example"], b""));
    assert_eq!(ok(&home.run("postern-admin", &["domain", "list"], b"")), "v.example\n");
    let out = ok(&add("Alice@v.example"));
    assert!(out.contains("alice@v.example"), "{out}");
    let mailbox = home.join("mail/v.example/alice");
    for d in ["tmp", "new", "cur"] {
        assert!(mailbox.join("Maildir").join(d).is_dir(), "Maildir/{d} created");
    }
    let o = add("alice@v.example");
    assert_eq!(o.status.code(), Some(100), "duplicate: {}", text(&o));
    ok(&home.run(
        "postern-admin",
        &[
            "user",
            "add",
            "bob@v.example",
            "--password-stdin",
            "--uid",
            &uid,
            "--gid",
            &gid,
            "--home",
            home.join("elsewhere/bob").to_str().unwrap(),
        ],
        b"secret2\n",
    ));

    let list = ok(&home.run("postern-admin", &["user", "list"], b""));
    assert!(list.contains("alice@v.example") && list.contains("bob@v.example"), "{list}");

    // Lookups on the result, through the library the spawner uses.
    let mut u = Users::open(&home.lib()).unwrap();
    assert!(u.is_virtual_domain("v.EXAMPLE"));
    let t = u.lookup("alice", "v.example").unwrap().unwrap();
    assert_eq!((t.user.as_str(), t.home.clone(), t.dash.as_str(), t.ext.as_str()), ("alice@v.example", mailbox.clone(), "", ""));
    assert_eq!(t.uid.to_string(), uid);
    let t = u.lookup("Alice-news-daily", "V.example").unwrap().unwrap();
    assert_eq!((t.user.as_str(), t.dash.as_str(), t.ext.as_str()), ("alice@v.example", "-", "news-daily"));
    assert_eq!(u.lookup("carol", "v.example").unwrap(), None);
    let bob = u.virtual_user("BOB@v.example").unwrap();
    assert!(users::password::check_password("secret2", &bob.hash));
    assert!(!users::password::check_password("pw1", &bob.hash));
    assert_eq!(bob.home, home.join("elsewhere/bob"));

    ok(&home.run("postern-admin", &["user", "passwd", "bob@v.example", "--password", "new"], b""));
    let mut u = Users::open(&home.lib()).unwrap();
    assert!(users::password::check_password("new", &u.virtual_user("bob@v.example").unwrap().hash));

    let o = home.run("postern-admin", &["domain", "del", "v.example"], b"");
    assert_eq!(o.status.code(), Some(100), "domain with users: {}", text(&o));

    let out = ok(&home.run("postern-admin", &["user", "del", "alice@v.example"], b""));
    assert!(out.contains("kept"), "{out}");
    assert!(mailbox.join("Maildir/new").is_dir(), "the mailbox stays");
    let o = home.run("postern-admin", &["user", "del", "alice@v.example"], b"");
    assert_eq!(o.status.code(), Some(100), "{}", text(&o));
    let mut u = Users::open(&home.lib()).unwrap();
    assert!(u.virtual_user("alice@v.example").is_none());
    assert!(u.virtual_user("bob@v.example").is_some());
    let list = ok(&home.run("postern-admin", &["user", "list"], b""));
    assert!(!list.contains("alice"), "{list}");
}

#[test]
fn rebuild_assign_and_errors() {
    let home = Home::new("admin-assign");
    fs::write(
        home.join("users/assign"),
        "=postmaster:pm:2001:2001:/var/pm:::\n+list-:mlm:2002:2002:/var/mlm:-:l-:\n+list-announce-:ann:2003:2003:/var/ann:-::\n.\n",
    )
    .unwrap();
    let out = ok(&home.run("postern-admin", &["rebuild"], b""));
    assert!(out.starts_with("3 records"), "{out}");
    let mut u = Users::open(&home.lib()).unwrap();
    let t = u.lookup("PostMaster", "test.example").unwrap().unwrap();
    assert_eq!((t.user.as_str(), t.uid, t.ext.as_str()), ("pm", 2001, ""));
    let t = u.lookup("list-dev-subscribe", "test.example").unwrap().unwrap();
    assert_eq!((t.user.as_str(), t.dash.as_str(), t.ext.as_str()), ("mlm", "-", "l-dev-subscribe"));
    let t = u.lookup("list-announce-x", "test.example").unwrap().unwrap();
    assert_eq!((t.user.as_str(), t.ext.as_str()), ("ann", "x"), "the longest prefix wins");

    // A broken file names its line; the old database stays in use.
    fs::write(home.join("users/assign"), "=ok:ok:1:1:/h:::\n=bad:bad:1:one:/h:::\n.\n").unwrap();
    let o = home.run("postern-admin", &["rebuild"], b"");
    assert_eq!(o.status.code(), Some(111), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("users/assign line 2") && err.contains("\"one\""), "{err}");
    let mut u = Users::open(&home.lib()).unwrap();
    assert!(u.lookup("postmaster", "test.example").unwrap().is_some());
}

#[test]
fn a_half_written_cdb_is_never_seen() {
    let home = Home::new("admin-atomic");
    let h = home.lib();
    // Many records, so a rebuild takes a while and a torn file would show.
    let mut assign: String = (0..3000).map(|i| format!("=user{i}:u{i}:{}:{}:/home/u{i}:::\n", 3000 + i, 3000 + i)).collect();
    assign.push_str("=target:target:1234:1234:/home/target:::\n.\n");
    fs::write(home.join("users/assign"), assign).unwrap();
    users::rebuild(&h).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (h, done) = (h.clone(), done.clone());
        std::thread::spawn(move || {
            for _ in 0..60 {
                users::rebuild(&h).unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut lookups = 0;
    while !done.load(Ordering::SeqCst) || lookups < 100 {
        let mut u = Users::open(&h).expect("the cdb always opens");
        let t = u.lookup("target", "test.example").unwrap().expect("target is always found");
        assert_eq!(t.uid, 1234);
        lookups += 1;
    }
    writer.join().unwrap();
    assert!(lookups >= 100);
}

/// Queue a message with postern-sendmail.
fn send(home: &Home, args: &[&str], msg: &[u8]) {
    let o = home.run("postern-sendmail", args, msg);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn queue_list_count_flush() {
    let home = Home::new("admin-queue");
    assert_eq!(ok(&home.run("postern-admin", &["queue", "count"], b"")).lines().next(), Some("0"));
    send(&home, &["-f", "s1@a.example", "r1@b.example", "r2@b.example"], b"Subject: one\n\nx\n");
    send(&home, &["-f", "s2@a.example", "r3@c.example"], b"Subject: two\n\nyy\n");
    assert_eq!(ok(&home.run("postern-admin", &["queue", "count"], b"")).lines().next(), Some("2"));

    // Mark one recipient done, as postern-send would.
    let dir = home.join("queue/new");
    let first = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| QueueFile::open(p, false).unwrap().sender.as_str() == "s1@a.example")
        .expect("the first message is queued");
    let mut f = QueueFile::open(&first, true).unwrap();
    let i = f.recipients.iter().position(|r| r.address.as_str() == "r1@b.example").unwrap();
    f.mark_done(&[i]).unwrap();
    let list = ok(&home.run("postern-admin", &["queue", "list"], b""));
    for want in ["from <s1@a.example>", "from <s2@a.example>", "pending <r3@c.example>", "done    <r1@b.example>", "pending <r2@b.example>"]
    {
        assert!(list.contains(want), "{want} missing in\n{list}");
    }
    assert!(list.contains(first.file_name().unwrap().to_str().unwrap()), "{list}");
    let mailq = ok(&home.run("postern-sendmail", &["-bp"], b""));
    assert_eq!(mailq, list);

    // Flush with no scheduler: says so, temporary.
    let o = home.run("postern-admin", &["queue", "flush"], b"");
    assert_eq!(o.status.code(), Some(111), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not running"), "{}", text(&o));
    // With a reader on the FIFO: it gets 'F'.
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut fifo = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(home.join("queue/lock/trigger")).unwrap();
    ok(&home.run("postern-admin", &["queue", "flush"], b""));
    let mut buf = [0u8; 8];
    let n = fifo.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"F");
}

#[test]
fn showctl_names_sources_and_errors() {
    let home = Home::new("admin-showctl");
    home.control("concurrencylocal", "abc\n").control("locals", "a.example\nb.example\n");
    let out = ok(&home.run("postern-admin", &["showctl"], b""));
    let me = home.join("control/me");
    assert!(out.contains(&format!("me: test.example [{}]", me.display())), "{out}");
    assert!(out.contains("bouncehost: test.example [from me]"), "{out}");
    assert!(out.contains("concurrencyremote: 20 [built-in default]"), "{out}");
    assert!(out.contains("  a.example\n  b.example\n"), "{out}");
    let bad = out.lines().find(|l| l.starts_with("concurrencylocal:")).expect("concurrencylocal listed");
    assert!(
        bad.contains("ERROR") && bad.contains(&home.join("control/concurrencylocal").display().to_string()) && bad.contains("line 1"),
        "{bad}"
    );
    // Every registered setting is listed, even after the bad one.
    for s in postern::config::settings::ALL {
        assert!(out.lines().any(|l| l.starts_with(&format!("{}:", s.name))), "{} missing in\n{out}", s.name);
    }
}
