//! postern-queue: the injection protocol, its exit codes, and that a failure never
//! leaves a half-written message behind.

use crate::fixture::*;
use postern::queue::submit::exit;
use postern::queue::{Queue, QueueFile};
use std::fs;
use std::io::Write;
use std::process::Stdio;

/// Run postern-queue with `message` on fd 0 and `envelope` on fd 1; the envelope
/// writer closes early when `envelope` is None (the client died).
fn queue_raw(home: &Home, message: &[u8], envelope: Option<&[u8]>) -> (Option<i32>, String) {
    let (r, w) = postern::os::sys::pipe().unwrap();
    let mut child = home.cmd("postern-queue").stdin(Stdio::piped()).stdout(Stdio::from(r)).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(message);
    drop(stdin);
    let mut w = fs::File::from(w);
    if let Some(e) = envelope {
        let _ = w.write_all(e);
    }
    drop(w);
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn nothing_left(home: &Home) {
    let q = Queue::new(&home.lib());
    assert_eq!(Queue::list(&q.tmp()).unwrap(), Vec::new(), "tmp/ must be empty");
    assert_eq!(Queue::list(&q.new_dir()).unwrap(), Vec::new(), "new/ must be empty");
}

#[test]
fn accepted_message_is_complete_and_durable_in_new() {
    let home = Home::new("q-ok");
    let (code, err) = queue_raw(&home, b"Subject: hello\n\nbody\n", Some(b"Fsender@a.test\0Tone@b.test\0Ttwo@c.test\0\0"));
    assert_eq!(code, Some(0), "{err}");
    let q = Queue::new(&home.lib());
    let ids = Queue::list(&q.new_dir()).unwrap();
    assert_eq!(ids.len(), 1);
    let f = QueueFile::open(&q.new_dir().join(&ids[0]), false).unwrap();
    assert_eq!(f.sender.as_str(), "sender@a.test");
    let rcpts: Vec<_> = f.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, ["one@b.test", "two@c.test"]);
    let msg = f.read_message().unwrap();
    let text = String::from_utf8(msg).unwrap();
    assert!(text.starts_with("Received: (postern-queue "), "{text}");
    assert!(text.ends_with("\nSubject: hello\n\nbody\n"), "{text}");
    assert!(Queue::list(&q.tmp()).unwrap().is_empty());
}

#[test]
fn envelope_errors_have_qmail_queue_exit_codes() {
    let home = Home::new("q-bad");
    let long = format!("F\0T{}@x.test\0\0", "a".repeat(2000));
    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        ("no F", b"Xs@a\0Tr@b\0\0".to_vec(), exit::ENVELOPE),
        ("no recipients", b"Fs@a\0\0".to_vec(), exit::ENVELOPE),
        ("recipient without T", b"Fs@a\0r@b\0\0".to_vec(), exit::ENVELOPE),
        ("bytes after the end", b"Fs@a\0Tr@b\0\0junk".to_vec(), exit::ENVELOPE),
        ("truncated envelope", b"Fs@a\0Tr@b\0".to_vec(), exit::READ),
        ("empty envelope", b"".to_vec(), exit::READ),
        ("control character", b"Fs@a\0Tr\r\nRCPT@b\0\0".to_vec(), exit::ADDRESS),
        ("over-long address", long.into_bytes(), exit::ADDRESS),
    ];
    for (what, env, want) in cases {
        let (code, err) = queue_raw(&home, b"Subject: x\n\nbody\n", Some(&env));
        assert_eq!(code, Some(want), "{what}: {err}");
        assert!(!err.is_empty(), "{what}: postern-queue must say why");
        nothing_left(&home);
    }
    // 11-40 are permanent for callers, the rest temporary.
    assert!(exit::is_permanent(exit::ADDRESS));
    assert!(!exit::is_permanent(exit::READ) && !exit::is_permanent(exit::ENVELOPE));
}

#[test]
fn client_dying_mid_message_leaves_nothing() {
    let home = Home::new("q-trunc");
    // The client wrote part of a message and went away: fd 0 ends, fd 1 is closed
    // with no envelope at all.
    let (code, _) = queue_raw(&home, b"Subject: half a mess", None);
    assert_eq!(code, Some(exit::READ));
    nothing_left(&home);
}

#[test]
fn missing_queue_directory_is_a_temporary_error_naming_it() {
    let home = Home::new("q-nodir");
    fs::remove_dir(home.join("queue/tmp")).unwrap();
    let (code, err) = queue_raw(&home, b"x\n", Some(b"Fs@a\0Tr@b\0\0"));
    assert_eq!(code, Some(exit::QUEUE_DIR));
    assert!(err.contains("queue/tmp"), "{err}");
}

#[test]
fn large_message_round_trips() {
    let home = Home::new("q-large");
    let mut big = b"Subject: big\n\n".to_vec();
    for i in 0..200_000 {
        big.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    let (code, err) = queue_raw(&home, &big, Some(b"Fs@a\0Tr@b\0\0"));
    assert_eq!(code, Some(0), "{err}");
    let q = Queue::new(&home.lib());
    let id = &Queue::list(&q.new_dir()).unwrap()[0];
    let f = QueueFile::open(&q.new_dir().join(id), false).unwrap();
    assert!(f.read_message().unwrap().ends_with(&big));
}

/// Disk full while queueing (root only: a small tmpfs under the queue).
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn disk_full_while_queueing_is_temporary_and_leaves_nothing() {
    require_root();
    let home = Home::new("q-full");
    let _tmpfs = Tmpfs::mount(&home.join("queue"), "256k");
    Queue::new(&home.lib()).create_dirs().unwrap();
    own_queue(home.path());
    let big = vec![b'x'; 1 << 20];
    let (code, err) = queue_raw(&home, &big, Some(b"Fs@a\0Tr@b\0\0"));
    assert_eq!(code, Some(exit::WRITE), "{err}");
    assert!(!exit::is_permanent(exit::WRITE));
    nothing_left(&home);
    // Space is there for a small one.
    let (code, err) = queue_raw(&home, b"Subject: small\n\nok\n", Some(b"Fs@a\0Tr@b\0\0"));
    assert_eq!(code, Some(0), "{err}");
}

/// postern-queued takes messages on its socket, so SMTP and injection need no
/// postern-queue start; it names the real client uid, answers a malformed
/// request with a code and goes on serving; without it clients run postern-queue.
#[test]
fn queue_daemon_serves_without_postern_queue_and_survives_bad_requests() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let i = Instance::create("queued");
    let md = i.adduser("dee", "x");
    i.start();
    let sock = i.path().join("run/queue/submit");
    wait_for(10, "postern-queued's socket", || UnixStream::connect(&sock).ok().map(|_| ()));
    // A request without descriptors gets postern-queue's read error, and nothing is queued.
    let mut c = UnixStream::connect(&sock).unwrap();
    c.write_all(b"Q").unwrap();
    let mut code = Vec::new();
    c.read_to_end(&mut code).unwrap();
    assert_eq!(code, vec![exit::READ as u8]);
    assert!(i.send_log().contains("postern-queued: bad request"), "{}", i.send_log());

    // With postern-queue gone, injection still works: through the daemon.
    let queue = i.path().join("bin/postern-queue");
    fs::rename(&queue, i.path().join("bin/postern-queue.off")).unwrap();
    i.send("s@sender.test", &[&i.address("dee")], &message("via the daemon", "x"));
    let got = i.wait_mail(&md, 1);
    let uid = nix::unistd::getuid().as_raw();
    assert!(String::from_utf8_lossy(&got[0]).contains(&format!("invoked by uid {uid});")), "{}", String::from_utf8_lossy(&got[0]));
    // With the daemon stopped too, there is no way in: a temporary failure.
    i.stop();
    let out = i.run("postern-sendmail", &["-oi", "-f", "s@sender.test", &i.address("dee")], &message("nowhere", "x"));
    assert_eq!(out.status.code(), Some(111), "{}", text(&out));
    fs::rename(i.path().join("bin/postern-queue.off"), &queue).unwrap();
    i.send("s@sender.test", &[&i.address("dee")], &message("by the program", "x"));
    assert_eq!(i.queued(), 1);
}
