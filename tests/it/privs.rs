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
/// by becoming a throwaway user).
#[test]
fn ordinary_user_instance_runs_everything_as_that_user() {
    if !is_root() {
        // The whole suite already runs unprivileged in this case.
        eprintln!("skipped: the other tests cover the unprivileged case when not root");
        return;
    }
    let user = "postern-tester";
    if uid_of(user).is_none() {
        let st = std::process::Command::new("useradd")
            .args(["--system", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", user])
            .status()
            .unwrap();
        assert!(st.success() || uid_of(user).is_some());
    }
    let uid = uid_of(user).unwrap();
    let dir = TempDir::new("plain");
    nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    let inst = dir.path().join("inst");
    let as_user = |args: &[&str]| {
        let out = std::process::Command::new("runuser")
            .args(["-u", user, "--"])
            .arg(repo().join("scripts/instance"))
            .args(args)
            .env("POSTERN_BUILD", bin_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    let inst_s = inst.to_str().unwrap();
    let (smtp, pop3) = (free_port().to_string(), free_port().to_string());
    as_user(&["create", inst_s, "--domain", "plain.test", "--smtp-port", &smtp, "--pop3-port", &pop3]);
    std::fs::write(inst.join("control/dnsresolvers"), "127.0.0.1:1\n").unwrap();
    as_user(&["adduser", inst_s, "una", "pw"]);
    as_user(&["start", inst_s]);
    // Stopped however the test ends, so a failure leaves no daemons behind.
    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::process::Command::new(repo().join("scripts/instance")).arg("stop").arg(&self.0).output();
        }
    }
    let _stop = Stop(inst.clone());
    let out = std::process::Command::new("runuser")
        .args(["-u", user, "--", "env", &format!("POSTERN_HOME={inst_s}")])
        .arg(inst.join("bin/postern-sendmail"))
        .args(["-oi", "una@plain.test"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&message("plain", "as a user"))?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let md = inst.join("mail/plain.test/una/Maildir");
    let got = wait_for(20, "delivery in the user's instance", || {
        let m = maildir_new(&md);
        (!m.is_empty()).then_some(m)
    });
    assert_eq!(got.len(), 1);
    let exe = |p: &str| inst.join("bin").join(p);
    // By executable and name: a delivery still finishing is a fork of lspawn
    // named postern-local.
    for p in ["postern-start", "postern-send", "postern-lspawn", "postern-rspawn", "postern-queued"] {
        let pids: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
            .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).map(|x| x == exe(p)).unwrap_or(false))
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim_end() == p).unwrap_or(false))
            .collect();
        assert_eq!(pids.len(), 1, "{p}");
        assert_eq!(proc_uid(pids[0]), Some(uid), "{p} runs as the user");
    }
    let file = std::fs::read_dir(md.join("new")).unwrap().next().unwrap().unwrap();
    assert_eq!(file.metadata().unwrap().uid(), uid);
    as_user(&["stop", inst_s]);
}
