//! Privilege separation: started by root, each program runs as its own user.

use crate::harness::*;
use std::os::unix::fs::MetadataExt;

#[test]
fn root_instance_runs_each_program_as_its_service_user() {
    if !is_root() {
        eprintln!("skipped: privilege separation is tested when the tests run as root");
        return;
    }
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

    // The delivery ran as the virtual mail user: the file is postern-v's.
    let got = i.wait_mail(&md, 1);
    assert_eq!(got.len(), 1);
    let file = std::fs::read_dir(md.join("new")).unwrap().next().unwrap().unwrap();
    assert_eq!(file.metadata().unwrap().uid(), uid_of("postern-v").unwrap(), "postern-local ran as postern-v");
}
