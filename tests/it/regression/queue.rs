//! Issue 15 regression tests: the queue file reaches lspawn as a descriptor; free/ keeps no text.

use super::*;

/// Every file under `dir`, at any depth (the trigger FIFO skipped).
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(files_under(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

/// postern-lspawn (root) opens no queue file: postern-send hands it each
/// message as a descriptor, and the delivery child reads it only after it has
/// become the recipient. Shown by running lspawn in a mount namespace where
/// queue/ is an empty tmpfs that nobody may enter: it delivers all the same.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn issue15_lspawn_delivers_without_any_view_of_the_queue() {
    require_root();
    let i = Instance::create("i15-noqueue");
    let md = i.adduser("alice", "x");
    // The real lspawn under another name, and in its place a wrapper that hides
    // queue/ from it (postern-start runs bin/postern-lspawn).
    let bin = i.join("bin");
    fs::rename(bin.join("postern-lspawn"), bin.join("postern-lspawn-real")).unwrap();
    fs::write(
        bin.join("postern-lspawn"),
        "#!/bin/sh\nexec unshare --mount --propagation private sh -c \
         'mount -t tmpfs -o size=4k,mode=000 hidden \"$POSTERN_HOME/queue\" && exec \"$0\"' \"$0-real\"\n",
    )
    .unwrap();
    chmod(&bin.join("postern-lspawn"), 0o755);
    i.start();
    let lspawn = wait_for(10, "postern-lspawn-real", || Some(i.pids("postern-lspawn-real")).filter(|p| p.len() == 1))[0];
    // The wrapper did its job: in lspawn's view queue/ is empty.
    let seen = PathBuf::from(format!("/proc/{lspawn}/root")).join(i.join("queue").strip_prefix("/").unwrap());
    assert_eq!(fs::read_dir(&seen).unwrap().count(), 0, "{} is hidden from postern-lspawn", seen.display());
    assert!(i.join("queue/mess").is_dir(), "and still there for the others");

    let got = i.deliver("alice", &[message("hidden queue", "delivered all the same")]);
    assert_eq!(maildir_new(&md).len(), 1);
    // Exactly the message: nothing of the envelope or trailer after it.
    assert!(got[0].ends_with(b"\n\ndelivered all the same\n"), "{}", String::from_utf8_lossy(&got[0]));
    i.wait_empty();
}

/// A delivered message leaves no text behind: free/ keeps the inodes for
/// reuse, emptied.
#[test]
fn issue15_delivered_messages_leave_no_text_in_the_queue() {
    let i = Instance::started("i15-free");
    let md = i.adduser("alice", "x");
    let marker = "issue15-marker-q7Zk";
    let msgs: Vec<Vec<u8>> = (0..3).map(|n| message(&format!("{marker} {n}"), &format!("{marker} body {n}\n"))).collect();
    let got = i.deliver("alice", &msgs);
    assert!(got.iter().all(|m| String::from_utf8_lossy(m).contains(marker)), "the marker went through");
    assert_eq!(maildir_new(&md).len(), 3);
    // Empty: every file has left mess/, and the last went to free/ (a later
    // message may have taken an earlier one).
    i.wait_empty();
    let free = files_under(&i.join("queue/free"));
    assert!(!free.is_empty(), "finished files are kept for reuse");
    for f in &free {
        assert_eq!(fs::metadata(f).unwrap().len(), 0, "{} is emptied", f.display());
    }
    for f in files_under(&i.join("queue")) {
        let text = fs::read(&f).unwrap();
        assert!(!text.windows(marker.len()).any(|w| w == marker.as_bytes()), "{} still holds a delivered message", f.display());
    }
}

/// A file emptied on its way to free/ whose rename a crash undid: finished,
/// so retired again at the next start, not moved to bad/ as damaged.
#[test]
fn issue15_an_emptied_file_left_in_mess_is_retired_not_quarantined() {
    use std::os::unix::fs::MetadataExt;
    let i = Instance::create("i15-emptied");
    let mess = i.join("queue/mess");
    let file = mess.join("1700000000.000001.42");
    fs::write(&file, b"").unwrap();
    let dir = fs::metadata(&mess).unwrap();
    nix::unistd::chown(&file, Some(dir.uid().into()), Some(dir.gid().into())).unwrap();
    chmod(&file, 0o660);
    i.start();
    wait_for(20, "the emptied file to be retired", || i.send_log().contains("end 1700000000.000001.42").then_some(()));
    i.wait_empty();
    let log = i.send_log();
    assert!(files_under(&i.join("queue/bad")).is_empty(), "nothing in bad/:\n{log}");
    assert_eq!(files_under(&i.join("queue/free")).len(), 1, "{log}");
}
