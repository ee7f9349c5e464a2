//! Regression tests, each named after the issue whose bug it pins down.

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

/// A NUL in a tcp.smtp value came back from the compiled cdb as a second
/// variable: `X="a<NUL>RELAYCLIENT="` let the client relay. The compiler now
/// refuses it, naming the line (found by fuzz/fuzz_targets/rules.rs).
#[test]
fn issue15_a_nul_in_a_rules_value_is_refused() {
    let d = TempDir::new("i15-rules-nul");
    let src = d.path().join("tcp.smtp");
    fs::write(&src, ":allow\n127.0.0.1:allow,X=\"a\0RELAYCLIENT=\"\n").unwrap();
    let out = std::process::Command::new(bin("postern-listen")).arg("-X").arg(&src).arg(d.path().join("tcp.smtp.cdb")).output().unwrap();
    assert_eq!(out.status.code(), Some(111), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("NUL"), "{err}");
}

/// A NUL inside a users/assign field made a record lookups cannot decode (the
/// user silently unknown); rebuild now refuses it, naming the line, and the old
/// database stays (found by fuzz/fuzz_targets/users.rs).
#[test]
fn issue15_a_nul_in_users_assign_is_refused() {
    let home = Home::new("i15-assign-nul");
    fs::write(home.join("users/assign"), "=pm:pm:2001:2001:/var/pm:::\n.\n").unwrap();
    assert!(home.run("postern-admin", &["rebuild"], b"").status.success());
    fs::write(home.join("users/assign"), "=pm:pm:2001:2001:/var/pm:::\n=x:x:1:1:/h\0y:::\n.\n").unwrap();
    let o = home.run("postern-admin", &["rebuild"], b"");
    assert_eq!(o.status.code(), Some(111), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("users/assign line 2") && err.contains("NUL"), "{err}");
    let mut u = postern::users::Users::open(&home.lib()).unwrap();
    assert!(u.lookup("pm", "test.example").unwrap().is_some());
}
