//! The delivery side end to end: an instance from scripts/instance, mail injected
//! with postern-sendmail, checked in the Maildirs.

use crate::fixture::*;
use std::fs;

#[test]
fn delivers_to_a_virtual_users_maildir_byte_for_byte() {
    let i = Instance::started("deliver");
    let md = i.adduser("alice", "pw-alice");
    let msg = message("first", "Hello Alice.\nFrom the test.");
    i.send("bob@sender.test", &[&i.address("alice")], &msg);
    let got = i.wait_mail(&md, 1);
    let text = String::from_utf8_lossy(&got[0]).into_owned();
    assert!(text.starts_with(&format!("Return-Path: <bob@sender.test>\nDelivered-To: {}\n", i.address("alice"))), "{text}");
    assert!(got[0].ends_with(&msg), "the message must follow the trace headers unchanged:\n{text}");
    i.wait_empty();
}

#[test]
fn several_recipients_each_get_one_copy() {
    let i = Instance::started("multi");
    let a = i.adduser("a", "x");
    let b = i.adduser("b", "x");
    i.send("s@sender.test", &[&i.address("a"), &i.address("b")], &message("both", "one each"));
    assert_eq!(i.wait_mail(&a, 1).len(), 1);
    assert_eq!(i.wait_mail(&b, 1).len(), 1);
    i.wait_empty();
    assert_eq!(maildir_new(&a).len(), 1);
}

#[test]
fn unknown_recipient_bounces_as_rfc3464_report_to_the_sender() {
    let i = Instance::started("bounce");
    let sender = i.adduser("sender", "x");
    let ok = i.adduser("ok", "x");
    let msg = message("to two", "one of them does not exist");
    i.send(&i.address("sender"), &[&i.address("ok"), &i.address("nobody")], &msg);
    i.wait_mail(&ok, 1);
    let dsn = String::from_utf8_lossy(&i.wait_mail(&sender, 1)[0]).into_owned();
    assert!(dsn.starts_with("Return-Path: <>\n"), "a bounce has the null sender:\n{dsn}");
    assert!(dsn.contains("multipart/report; report-type=delivery-status"), "{dsn}");
    assert!(dsn.contains(&format!("Final-Recipient: rfc822; {}\nAction: failed\nStatus: 5.1.1", i.address("nobody"))), "{dsn}");
    assert!(!dsn.contains(&format!("Final-Recipient: rfc822; {}", i.address("ok"))), "{dsn}");
    assert!(dsn.contains("Subject: to two"), "the original is included:\n{dsn}");
    i.wait_empty();
}

#[test]
fn bounce_of_a_bounce_goes_to_doublebounceto_and_no_further() {
    let i = Instance::create("double");
    let pm = i.adduser("postmaster", "x");
    i.start();
    // A null-sender message that cannot be delivered: a double bounce.
    let out = i.run("postern-inject", &["-f", "", &i.address("ghost")], &message("from nobody", "x"));
    assert!(out.status.success(), "{}", text(&out));
    let got = String::from_utf8_lossy(&i.wait_mail(&pm, 1)[0]).into_owned();
    assert!(got.starts_with("Return-Path: <#@[]>\n"), "{got}");
    assert!(got.contains("Status: 5.1.1"), "{got}");
    i.wait_empty();

    // With doublebounceto pointing nowhere, the double bounce itself fails and is
    // discarded: no loop, the queue empties.
    i.control("doublebounceto", &format!("{}\n", i.address("nowhere")));
    i.stop();
    i.start();
    let out = i.run("postern-inject", &["-f", "", &i.address("ghost2")], &message("again", "x"));
    assert!(out.status.success(), "{}", text(&out));
    wait_for(20, "triple bounce discarded", || i.send_log().contains("triple bounce").then_some(()));
    i.wait_empty();
    assert_eq!(maildir_new(&pm).len(), 1);
}

#[test]
fn temporary_failure_is_retried_and_then_delivered() {
    let i = Instance::started("retry");
    let md = i.adduser("carol", "x");
    i.dot_file("carol", ".qmail", "|if test -f tried; then exit 0; else touch tried; echo not yet; exit 111; fi\n./Maildir/\n");
    i.send("s@sender.test", &[&i.address("carol")], &message("retry", "x"));
    wait_for(20, "a deferral", || i.send_log().contains("deferral: 4.3.0 not yet").then_some(()));
    assert_eq!(i.queued(), 1, "a deferred message stays queued");
    assert!(maildir_new(&md).is_empty());
    i.flush();
    i.wait_mail(&md, 1);
    i.wait_empty();
}

#[test]
fn hanging_program_delivery_is_killed_after_the_timeout_and_retried() {
    let i = Instance::create("hang");
    i.control("timeoutdelivery", "1\n");
    let md = i.adduser("dave", "x");
    i.start();
    i.dot_file("dave", ".qmail", "|sleep 100\n");
    i.send("s@sender.test", &[&i.address("dave")], &message("hang", "x"));
    wait_for(20, "the hung delivery to be deferred", || i.send_log().contains("deferral").then_some(()));
    assert_eq!(i.queued(), 1);
    i.dot_file("dave", ".qmail", "./Maildir/\n");
    i.flush();
    i.wait_mail(&md, 1);
    i.wait_empty();
}

/// Route `domain` to a port where nobody listens (connection refused:
/// temporary), for as long as the returned port lives.
fn dead_route(i: &Instance, domain: &str) -> RefusedPort {
    let dead = refused_port();
    i.control("smtproutes", &format!("{domain}:[127.0.0.1]:{}\n", dead.port));
    dead
}

#[test]
fn unreachable_remote_recipients_stay_queued_with_a_clear_log_line() {
    let i = Instance::create("remote");
    let _dead = dead_route(&i, "elsewhere.example");
    i.start();
    i.send("s@sender.test", &["someone@elsewhere.example"], &message("far", "x"));
    wait_for(20, "the remote deferral", || i.send_log().contains("to <someone@elsewhere.example>: deferral").then_some(()));
    assert_eq!(i.queued(), 1);
}

#[test]
fn expired_message_bounces_with_the_reason() {
    let i = Instance::create("expire");
    i.control("queuelifetime", "0\n");
    let _dead = dead_route(&i, "elsewhere.example");
    let sender = i.adduser("sender", "x");
    i.start();
    i.send(&i.address("sender"), &["someone@elsewhere.example"], &message("never", "x"));
    let dsn = String::from_utf8_lossy(&i.wait_mail(&sender, 1)[0]).into_owned();
    assert!(dsn.contains("Final-Recipient: rfc822; someone@elsewhere.example"), "{dsn}");
    assert!(dsn.contains("Action: failed\nStatus: 4."), "{dsn}");
    assert!(dsn.contains("queuelifetime"), "{dsn}");
    i.wait_empty();
}

#[test]
fn queue_survives_a_restart() {
    let i = Instance::create("restart");
    let md = i.adduser("erin", "x");
    for n in 0..3 {
        i.send("s@sender.test", &[&i.address("erin")], &message(&format!("queued {n}"), "x"));
    }
    assert_eq!(i.queued(), 3, "nothing delivers while stopped");
    i.start();
    assert_eq!(i.wait_mail(&md, 3).len(), 3);
    i.wait_empty();
}

#[test]
fn malformed_control_file_stops_send_naming_file_and_line_and_loses_nothing() {
    let i = Instance::create("badctl");
    let md = i.adduser("fay", "x");
    i.control("concurrencylocal", "# how many\nmany\n");
    i.send("s@sender.test", &[&i.address("fay")], &message("waits", "x"));
    let out = i.script("start");
    assert!(!out.status.success(), "{}", text(&out));
    let log = i.send_log();
    assert!(log.contains("concurrencylocal line 2"), "{log}");
    assert_eq!(i.queued(), 1);
    i.control("concurrencylocal", "5\n");
    i.start();
    i.wait_mail(&md, 1);
}

#[test]
fn forward_line_requeues_to_another_address() {
    let i = Instance::started("fwd");
    let from = i.adduser("gus", "x");
    let to = i.adduser("hal", "x");
    i.dot_file("gus", ".qmail", &format!("&{}\n", i.address("hal")));
    i.send("s@sender.test", &[&i.address("gus")], &message("pass it on", "x"));
    let got = String::from_utf8_lossy(&i.wait_mail(&to, 1)[0]).into_owned();
    assert!(got.contains(&format!("Delivered-To: {}", i.address("gus"))), "{got}");
    assert!(maildir_new(&from).is_empty());
    i.wait_empty();
}

/// One address delivering to a Maildir and appending to an mbox archive: 20
/// concurrent deliveries leave the mbox whole, each message exactly once.
#[test]
fn concurrent_deliveries_to_maildir_and_mbox_archive() {
    let i = Instance::create("mbox");
    i.control("concurrencylocal", "20\n");
    let md = i.adduser("ivy", "x");
    i.dot_file("ivy", ".qmail", "./Maildir/\n./archive.mbox\n");
    for n in 0..20 {
        i.send("s@sender.test", &[&i.address("ivy")], &message(&format!("archive {n}"), &format!("From the body of {n}\nline two")));
    }
    i.start();
    i.wait_mail(&md, 20);
    i.wait_empty();
    let mbox = fs::read_to_string(i.user_home("ivy").join("archive.mbox")).unwrap();
    let from_lines: Vec<&str> = mbox.lines().filter(|l| l.starts_with("From ")).collect();
    assert_eq!(from_lines.len(), 20, "{mbox}");
    for l in &from_lines {
        assert!(l.starts_with("From s@sender.test "), "{l}");
    }
    for n in 0..20 {
        assert_eq!(mbox.matches(&format!("Subject: archive {n}\n")).count(), 1, "message {n}");
        assert_eq!(mbox.matches(&format!("\n>From the body of {n}\n")).count(), 1, "quoted body line of {n}");
    }
}

/// Disk full while delivering (root only: the Maildir on a small tmpfs): the
/// delivery is deferred, nothing is lost, and it goes through once there is room.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn disk_full_while_delivering_defers_and_resumes() {
    require_root();
    let i = Instance::create("dfull");
    let md = i.adduser("kim", "x");
    let _tmpfs = Tmpfs::mount(&md, "64k");
    make_maildir(&md);
    let filler = md.join("filler");
    // Fill the file system (the write fails when it is full; that is the point).
    let _ = fs::write(&filler, vec![b'x'; 128 * 1024]);
    let st = std::process::Command::new("chown").args(["-R", "postern-v:postern-v"]).arg(&md).status().unwrap();
    assert!(st.success());
    i.start();
    let mut big = message("too big for the disk", "x");
    big.extend(std::iter::repeat_n(b'y', 32 * 1024));
    i.send("s@sender.test", &[&i.address("kim")], &big);
    wait_for(20, "a deferral for the full disk", || i.send_log().contains("deferral").then_some(()));
    assert_eq!(i.queued(), 1, "the message stays queued");
    assert!(maildir_new(&md).is_empty());
    assert!(fs::read_dir(md.join("tmp")).unwrap().next().is_none(), "no partial file is left in tmp/");
    fs::remove_file(&filler).unwrap();
    i.flush();
    let got = i.wait_mail(&md, 1);
    assert!(got[0].ends_with(&big));
    i.wait_empty();
}
