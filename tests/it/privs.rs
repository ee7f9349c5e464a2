//! Privilege separation: started by root, each program runs as its own user;
//! started by an ordinary user, everything runs as that user.

use crate::fixture::*;
use std::os::unix::fs::MetadataExt;

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn root_instance_runs_each_program_as_its_service_user() {
    require_root();
    let i = Instance::create("privs");
    let md = i.adduser("pat", "x");

    // postern-queue is setuid postern-q: what it writes belongs to postern-q,
    // whoever injected.
    i.send("s@sender.test", &[&i.address("pat")], &message("owned", "x"));
    let new = i.path().join("queue/new");
    let f = std::fs::read_dir(&new).unwrap().next().expect("a queued file").unwrap();
    assert_eq!(f.metadata().unwrap().uid(), uid_of("postern-q").unwrap());

    i.start();
    let start = i.pids("postern-start");
    let send = i.pids("postern-send");
    let lspawn = i.pids("postern-lspawn");
    assert_eq!(start.len(), 1);
    assert_eq!(send.len(), 1);
    assert_eq!(lspawn.len(), 1);
    assert_eq!(proc_uid(send[0]), uid_of("postern-s"), "postern-send runs as postern-s");
    assert_eq!(proc_uid(lspawn[0]), Some(0), "postern-lspawn stays root to become each recipient");
    assert_eq!(proc_uid(start[0]), Some(0));
    let rspawn = i.pids("postern-rspawn");
    assert_eq!(rspawn.len(), 1);
    assert_eq!(proc_uid(rspawn[0]), uid_of("postern-r"), "postern-rspawn runs as postern-r");
    let queued = wait_for(10, "postern-queued", || Some(i.pids("postern-queued")).filter(|p| p.len() == 1));
    assert_eq!(proc_uid(queued[0]), uid_of("postern-q"), "postern-queued runs as postern-q");

    // The delivery ran as the virtual mail user: the file is postern-v's.
    let got = i.wait_mail(&md, 1);
    assert_eq!(got.len(), 1);
    let file = std::fs::read_dir(md.join("new")).unwrap().next().unwrap().unwrap();
    assert_eq!(file.metadata().unwrap().uid(), uid_of("postern-v").unwrap(), "postern-local ran as postern-v");
}

/// Started by an ordinary user, every program runs as that user (tested from root
/// by becoming a throwaway user; without root the whole suite is this case).
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn ordinary_user_instance_runs_everything_as_that_user() {
    require_root();
    let user = "postern-tester";
    if uid_of(user).is_none() {
        let st = std::process::Command::new("useradd")
            .args(["--system", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", user])
            .status()
            .unwrap();
        assert!(st.success() || uid_of(user).is_some());
    }
    let uid = uid_of(user).unwrap();
    let i = Instance::create_as("plain", user);
    let md = i.adduser("una", "pw");
    i.start();
    // Injected by the user too.
    i.send("s@sender.test", &[&i.address("una")], &message("plain", "as a user"));
    let got = i.wait_mail(&md, 1);
    assert_eq!(got.len(), 1);
    // By executable and name: a delivery still finishing is a fork of lspawn
    // named postern-local.
    for p in ["postern-start", "postern-send", "postern-lspawn", "postern-rspawn", "postern-queued"] {
        let pids = i.pids(p);
        assert_eq!(pids.len(), 1, "{p}");
        assert_eq!(proc_uid(pids[0]), Some(uid), "{p} runs as the user");
    }
    let file = std::fs::read_dir(md.join("new")).unwrap().next().unwrap().unwrap();
    assert_eq!(file.metadata().unwrap().uid(), uid);
    i.stop();
}
