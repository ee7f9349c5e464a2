//! SIGKILL at random moments: postern-send, postern-local and postern-queue die
//! while 500 messages are injected. After a restart every message whose injection
//! returned 0 is delivered at least once, and none reaches the wrong mailbox.

use crate::harness::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MESSAGES: usize = 500;
const USERS: usize = 5;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: enough to vary the kill moments; the seed is printed.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
}

fn token(n: usize) -> String {
    format!("crash-token-{n:04}-for-u{}", n % USERS)
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let seed = std::env::var("POSTERN_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("crash test seed {seed} (set POSTERN_CRASH_SEED to repeat)");
    let i = Arc::new(Instance::create("crash"));
    let maildirs: Vec<_> = (0..USERS).map(|u| i.adduser(&format!("u{u}"), "x")).collect();
    i.start();

    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let i = Arc::clone(&i);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut rng = Rng(seed);
            let mut kills = [0usize; 3];
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20 + rng.next() % 150));
                let which = (rng.next() % 3) as usize;
                let name = ["postern-send", "postern-local", "postern-queue"][which];
                for pid in i.pids(name) {
                    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok() {
                        kills[which] += 1;
                    }
                }
                // Play supervisor: when send died, postern-start stops the rest;
                // start the instance again.
                if i.pids("postern-start").is_empty() || i.pids("postern-send").is_empty() {
                    std::thread::sleep(Duration::from_millis(50));
                    if i.pids("postern-send").is_empty() {
                        let dir = i.path().to_str().unwrap().to_string();
                        let _ = std::process::Command::new(repo().join("scripts/instance")).args(["stop", &dir]).output();
                        let _ = std::process::Command::new(repo().join("scripts/instance")).args(["start", &dir]).output();
                    }
                }
            }
            kills
        })
    };

    let mut accepted = Vec::new();
    for n in 0..MESSAGES {
        let to = i.address(&format!("u{}", n % USERS));
        let out = i.run("postern-inject", &["-f", "crash@sender.test", &to], &message(&token(n), &token(n)));
        if out.status.success() {
            accepted.push(n);
        }
    }
    done.store(true, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    eprintln!("kills: send {}, local {}, queue {}; accepted {} of {MESSAGES}", kills[0], kills[1], kills[2], accepted.len());
    assert!(kills.iter().sum::<usize>() > 0, "the test must actually kill something");
    assert!(accepted.len() > MESSAGES / 2, "most injections should succeed");

    // Restart cleanly and retry whatever was deferred by a killed delivery.
    i.stop();
    i.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while i.queued() > 0 {
        assert!(Instant::now() < deadline, "queue did not drain: {} left\n{}", i.queued(), i.log());
        i.flush();
        std::thread::sleep(Duration::from_millis(300));
    }

    let mut seen = HashSet::new();
    for (u, md) in maildirs.iter().enumerate() {
        for m in maildir_new(md) {
            let subject = header(&m, "Subject").expect("subject");
            let n: usize = subject.strip_prefix("crash-token-").and_then(|s| s.get(..4)).and_then(|s| s.parse().ok()).expect("a token");
            assert_eq!(n % USERS, u, "message {subject} reached u{u}");
            assert_eq!(subject, token(n));
            seen.insert(n);
        }
    }
    let lost: Vec<_> = accepted.iter().filter(|n| !seen.contains(n)).collect();
    assert!(lost.is_empty(), "accepted but never delivered: {lost:?}\nlog:\n{}", i.log());
}
