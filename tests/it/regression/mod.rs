//! Regression tests, each named after the issue whose bug it pins down; issue
//! 15's findings are grouped by area in the modules below.

mod auth;
mod dsn;
mod parsers;
mod queue;
mod recipients;
mod session;

use crate::fixture::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// The one file in queue/mess.
fn mess_file(i: &Instance) -> PathBuf {
    let files: Vec<PathBuf> = fs::read_dir(i.join("queue/mess")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn chmod(p: &std::path::Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A queue file that cannot be read for now (here: no permission; in life out
/// of descriptors, ENOMEM, EIO) is read again later, never moved to bad/.
#[test]
fn issue10_an_unreadable_queue_file_is_read_again_not_quarantined() {
    let i = Instance::create("i10-unread");
    let md = i.adduser("alice", "x");
    i.send("s@sender.test", &[&i.address("alice")], &message("later", "x"));
    let new: Vec<PathBuf> = fs::read_dir(i.join("queue/new")).unwrap().flatten().map(|e| e.path()).collect();
    chmod(&new[0], 0o000);
    i.start();
    wait_for(20, "the unreadable file to be set aside for a later read", || i.send_log().contains("reading").then_some(()));
    let log = i.send_log();
    assert!(log.contains("Permission denied") && log.contains("again in 60 s"), "{log}");
    assert!(!i.join("queue/bad").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false), "nothing in bad/:\n{log}");
    chmod(&mess_file(&i), 0o660);
    i.flush();
    i.wait_mail(&md, 1);
    i.wait_empty();
}

/// A remote request whose queue file cannot be opened is deferred, and
/// postern-send goes on serving (it used to stop).
#[test]
fn issue10_a_remote_request_without_its_queue_file_defers_and_send_goes_on() {
    let i = Instance::create("i10-remote");
    let dead = refused_port();
    i.control("smtproutes", &format!("elsewhere.example:[127.0.0.1]:{}\n", dead.port));
    let md = i.adduser("alice", "x");
    i.start();
    i.send("s@sender.test", &["someone@elsewhere.example"], &message("far", "x"));
    wait_for(20, "the first remote attempt", || i.send_log().contains("to <someone@elsewhere.example>: deferral").then_some(()));
    let file = mess_file(&i);
    chmod(&file, 0o000);
    i.flush();
    wait_for(20, "the request that cannot be handed over", || i.send_log().contains("cannot open the queue file").then_some(()));
    let log = i.send_log();
    assert!(log.contains("to <someone@elsewhere.example>: deferral: 4.3.0 cannot open the queue file"), "{log}");
    assert!(!log.contains("stopping"), "{log}");
    // Still serving: new mail is delivered.
    i.send("s@sender.test", &[&i.address("alice")], &message("near", "x"));
    i.wait_mail(&md, 1);
    assert!(!i.pids("postern-send").is_empty(), "postern-send is running");
    chmod(&file, 0o660);
}
