//! postern-lspawn's resident delivery workers (lib/send/lworker.rs): a worker
//! that became a recipient's uid takes that uid's further deliveries, never
//! another uid's, leaves when idle, and its death mid-delivery is a temporary
//! failure that is retried: the message arrives exactly once.

use crate::fixture::*;
use std::time::Duration;

/// The worker stays after a delivery and takes the next one for its uid; a
/// recipient with another uid gets a worker of its own; idle, both leave.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_worker_serves_one_uid_again_and_leaves_when_idle() {
    require_root();
    let w = UnixUser::new("lwk", false);
    let wmd = w.maildir();
    w.file(".qmail", "./Maildir/\n");
    let i = Instance::create("lworker");
    let md = i.adduser("u", "x");
    let out = i.run("postern-admin", &["rebuild"], b"");
    assert!(out.status.success(), "{}", text(&out));
    i.start();
    let vuid = proc_uid_of_home(&i.user_home("u"));

    i.deliver("u", &[message("one", "first")]);
    i.wait_empty();
    let first = i.pids("postern-local");
    assert_eq!(first.len(), 1, "one resident worker after one delivery: {first:?}");
    assert_eq!(proc_uid(first[0]), Some(vuid), "the worker is the mailbox's uid");

    i.deliver("u", &[message("two", "second")]);
    i.wait_empty();
    assert_eq!(i.pids("postern-local"), first, "the same worker took the second delivery");

    i.send("sender@sender.test", &[&format!("{}@localhost", w.name)], &message("three", "to a Unix user"));
    i.wait_mail(&wmd, 1);
    i.wait_empty();
    let mut uids: Vec<u32> = i.pids("postern-local").into_iter().filter_map(proc_uid).collect();
    uids.sort();
    let mut want = vec![vuid, w.uid];
    want.sort();
    assert_eq!(uids, want, "one worker per uid, each still its own uid");
    assert_eq!(maildir_new(&md).len(), 2);

    // postern::send::lworker::IDLE is 5 s.
    wait_for(15, "idle workers to leave", || i.pids("postern-local").is_empty().then_some(()));
    i.deliver("u", &[message("four", "after the workers left")]);
    assert_eq!(maildir_new(&md).len(), 3);
}

fn proc_uid_of_home(home: &std::path::Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(home).unwrap().uid()
}

/// SIGKILL of the worker while its delivery runs a program: the delivery is
/// deferred (never marked done), and the retry delivers the message once.
#[test]
fn a_worker_killed_mid_delivery_defers_it_and_the_retry_delivers_once() {
    let i = Instance::create("lworker-kill");
    let md = i.adduser("u", "x");
    let home = i.user_home("u");
    let (busy, release) = (home.join("busy"), home.join("release"));
    // The program holds the first attempt until the test has killed the worker.
    i.dot_file(
        "u",
        ".qmail",
        &format!("|if [ -e {r} ]; then exit 0; fi; touch {b}; exec sleep 10\n./Maildir/\n", r = release.display(), b = busy.display()),
    );
    i.start();
    i.send("sender@sender.test", &[&i.address("u")], &message("kill-me", "exactly once"));
    wait_for(20, "the delivery's program to run", || busy.exists().then_some(()));
    let workers = i.pids("postern-local");
    assert_eq!(workers.len(), 1, "one worker mid-delivery: {workers:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(workers[0]), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for(20, "the deferral in the log", || i.send_log().contains("SIGKILL").then_some(()));
    assert_eq!(maildir_new(&md).len(), 0);
    assert_eq!(i.queued(), 1, "the message stays queued");

    std::fs::write(&release, "").unwrap();
    i.flush();
    let got = i.wait_mail(&md, 1);
    i.wait_empty();
    std::thread::sleep(Duration::from_millis(300));
    let got_now = maildir_new(&md);
    assert_eq!(got_now.len(), 1, "delivered exactly once");
    assert_eq!(header(&got[0], "Subject").as_deref(), Some("kill-me"));
}
