//! postern-rspawn's resident remote workers (lib/send/rworker.rs): a worker
//! delivers to one domain and keeps the connection for the next message to
//! the same host (checked with RSET, over the STARTTLS it already did); its
//! death mid-delivery defers the message, which the retry delivers once; and
//! control/remoteprogram brings back a qmail-remote-compatible program per
//! delivery.

use crate::fixture::*;
use std::fs;

/// A sender instance routing every domain to `port` on 127.0.0.1.
fn sender(tag: &str, port: u16) -> Instance {
    let a = Instance::create(tag);
    a.control("smtproutes", &format!(":[127.0.0.1]:{port}\n")).control("timeoutconnect", "5\n").control("timeoutremote", "5\n");
    a
}

/// Five messages one after another to a real postern-smtpd: one connection,
/// one STARTTLS, five transactions (B's log says so per connection).
#[test]
fn consecutive_messages_to_one_host_share_one_connection() {
    let b = Instance::create("rwk-b");
    let bob = b.adduser("bob", "x");
    b.start();
    let a = sender("rwk-a", b.smtp_port());
    a.start();
    for n in 1..=5 {
        a.send(&a.address("alice"), &[&b.address("bob")], &message(&format!("m{n}"), "reused"));
        b.wait_mail(&bob, n);
        a.wait_empty();
    }
    assert_eq!(a.pids("postern-remote").len(), 1, "one resident worker for the domain");
    // The worker leaves when idle (workers::IDLE, 5 s) and QUITs its connection.
    wait_for(20, "the idle worker to leave", || a.pids("postern-remote").is_empty().then_some(()));
    let log = wait_for(10, "B to log the connection's end", || {
        let l = b.smtp_log();
        l.contains("ended: quit").then_some(l)
    });
    let conns: Vec<&str> = log.lines().filter(|l| l.contains(": connection from ")).collect();
    assert_eq!(conns.len(), 1, "{log}");
    assert!(conns[0].contains(": 5 message(s)") && conns[0].contains("tls=TLS"), "{log}");
    let sent = a.send_log();
    assert_eq!(sent.matches(": success").count(), 5, "{sent}");
}

/// A connection the server dropped while it was idle in the cache fails its
/// RSET: the worker connects again and the message goes through.
#[test]
fn a_cached_connection_the_server_dropped_is_replaced() {
    let b = Instance::create("rwk-drop-b");
    let bob = b.adduser("bob", "x");
    // B drops a silent client after 1 s, well within the cache's 4 s.
    b.control("timeoutsmtpd", "1\n");
    b.start();
    let a = sender("rwk-drop-a", b.smtp_port());
    a.start();
    a.send(&a.address("alice"), &[&b.address("bob")], &message("first", "x"));
    b.wait_mail(&bob, 1);
    a.wait_empty();
    wait_for(10, "B to drop the idle connection", || b.smtp_log().contains(", ended: ").then_some(()));
    assert!(!b.smtp_log().contains("ended: quit"), "{}", b.smtp_log());
    a.send(&a.address("alice"), &[&b.address("bob")], &message("second", "x"));
    b.wait_mail(&bob, 2);
    a.wait_empty();
    let log = a.send_log();
    assert_eq!(log.matches(": success").count(), 2, "{log}");
    assert!(!log.contains("deferral"), "the dead connection cost no deferral: {log}");
}

/// control/remoteprogram: rspawn runs that program per delivery, with
/// qmail-remote's arguments, and reads its reports; no worker is kept.
#[test]
fn remoteprogram_runs_a_qmail_remote_compatible_program() {
    let a = sender("rwk-prog", 9);
    let dir = TempDir::new("rwk-prog");
    let args = dir.path().join("args");
    let prog = dir.path().join("fake-remote");
    fs::write(&prog, format!("#!/bin/sh\necho \"$@\" >> {}\ncat > /dev/null\nprintf 'r\\0K250 fake accepted it\\0'\n", args.display()))
        .unwrap();
    fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    if is_root() {
        // rspawn runs it as postern-r, which must be able to write the record.
        fs::write(&args, "").unwrap();
        fs::set_permissions(&args, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    }
    a.control("remoteprogram", &format!("{}\n", prog.display()));
    a.start();
    a.send(&a.address("alice"), &["x@far.example"], &message("by program", "x"));
    a.wait_empty();
    let got = fs::read_to_string(&args).unwrap();
    assert_eq!(got, format!("far.example {} x@far.example\n", a.address("alice")));
    let log = a.send_log();
    assert!(log.contains("to <x@far.example>: success: ") && log.contains("250 fake accepted it"), "{log}");
    assert!(a.pids("postern-remote").is_empty(), "no resident worker with remoteprogram");
}

/// SIGKILL of the worker while it waits for a server's greeting: the delivery
/// is deferred (never marked done), and the retry delivers the message once.
#[test]
fn a_worker_killed_mid_delivery_defers_it_and_the_retry_delivers_once() {
    let b = Instance::create("rwk-kill-b");
    let x = b.adduser("x", "x");
    let to = b.address("x");
    // First a server that accepts and then says nothing.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = sender("rwk-kill", mute.local_addr().unwrap().port());
    a.control("timeoutremote", "60\n");
    a.start();
    a.send(&a.address("alice"), &[&to], &message("kill-me", "exactly once"));
    let (_held, _) = mute.accept().unwrap();
    let workers = a.pids("postern-remote");
    assert_eq!(workers.len(), 1, "one worker mid-delivery: {workers:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(workers[0]), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for(20, "the deferral in the log", || a.send_log().contains("SIGKILL").then_some(()));
    assert_eq!(a.queued(), 1, "the message stays queued");

    // Then the real one: the worker reads smtproutes per delivery.
    b.start();
    a.control("smtproutes", &format!(":[127.0.0.1]:{}\n", b.smtp_port()));
    a.flush();
    let got = b.wait_mail(&x, 1);
    a.wait_empty();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(maildir_new(&x).len(), 1, "delivered exactly once");
    assert_eq!(header(&got[0], "Subject").as_deref(), Some("kill-me"));
}
