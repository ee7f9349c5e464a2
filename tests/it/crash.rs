//! SIGKILL at random moments: postern-send, postern-local and postern-queue die
//! while 500 messages are injected. After a restart every message whose injection
//! returned 0 is delivered at least once, and none reaches the wrong mailbox.

use crate::fixture::*;
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
    let seed = std::env::var("POSTERN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
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
            let mut next_send_kill = Instant::now() + Duration::from_millis(300 + rng.next() % 700);
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(rng.next() % 5));
                // The short-lived programs live milliseconds, so look often; the
                // scheduler about once a second.
                let which = if Instant::now() >= next_send_kill { 0 } else { 1 + (rng.next() % 2) as usize };
                let name = ["postern-send", "postern-local", "postern-queue"][which];
                for pid in i.pids(name) {
                    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok() {
                        kills[which] += 1;
                    }
                }
                if which == 0 {
                    // Play supervisor: without send, postern-start stops the rest;
                    // start the instance again.
                    let _ = i.script("stop");
                    let _ = i.script("start");
                    next_send_kill = Instant::now() + Duration::from_millis(200 + rng.next() % 600);
                }
            }
            kills
        })
    };

    // Four injectors at once, so queue writes overlap deliveries.
    let injectors: Vec<_> = (0..4)
        .map(|k| {
            let i = Arc::clone(&i);
            std::thread::spawn(move || {
                let mut ok = Vec::new();
                for n in (k..MESSAGES).step_by(4) {
                    let to = i.address(&format!("u{}", n % USERS));
                    let out = i.run("postern-inject", &["-f", "crash@sender.test", &to], &message(&token(n), &token(n)));
                    if out.status.success() {
                        ok.push(n);
                    }
                }
                ok
            })
        })
        .collect();
    let accepted: Vec<usize> = injectors.into_iter().flat_map(|t| t.join().unwrap()).collect();
    done.store(true, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    eprintln!("kills: send {}, local {}, queue {}; accepted {} of {MESSAGES}", kills[0], kills[1], kills[2], accepted.len());
    assert!(kills[0] > 0 && kills[1] + kills[2] > 0, "the test must actually kill send and the short-lived programs");
    assert!(accepted.len() > MESSAGES / 2, "most injections should succeed");

    // Restart cleanly and retry whatever was deferred by a killed delivery.
    i.stop();
    i.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while i.queued() > 0 {
        assert!(Instant::now() < deadline, "queue did not drain: {} left\n{}", i.queued(), i.send_log());
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
    assert!(lost.is_empty(), "accepted but never delivered: {lost:?}\nlog:\n{}", i.send_log());
}
