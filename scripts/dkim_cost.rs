//! The CPU cost of DKIM-signing one message, per key type, in the queue
//! writer's own code (`postern::dkim::sign_with`): scripts/bench-dkim runs it.
//!
//!     cargo run --release --example dkim_cost -- KEYDIR [MESSAGES]
//!
//! (An example target declared in Cargo.toml, kept in scripts/ beside its caller.)
//!
//! KEYDIR holds rsa.key and ed25519.key (openssl genpkey). The message is 2 KiB
//! with the usual header fields; keys are parsed once (the queue caches them too).

use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: dkim_cost KEYDIR [MESSAGES]"));
    let n: u32 = args.next().map(|s| s.parse().expect("MESSAGES is a number")).unwrap_or(2000);
    let head = "From: Bench <bench@bench.test>\nTo: someone@far.test\nSubject: bench\nDate: Mon, 30 Nov 2026 12:00:00 +0000\nMessage-ID: <1@bench.test>\nMIME-Version: 1.0\nContent-Type: text/plain\n\n";
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n";
    let msg = format!("{head}{}", line.repeat((2048 - head.len()) / line.len() + 1)).into_bytes();
    let key = |name: &str| (name.trim_end_matches(".key").to_string(), dir.join(name));
    let cases: [(&str, Vec<(String, PathBuf)>); 3] = [
        ("rsa-sha256 (2048 bits)", vec![key("rsa.key")]),
        ("ed25519-sha256", vec![key("ed25519.key")]),
        ("both", vec![key("rsa.key"), key("ed25519.key")]),
    ];
    for (what, keys) in cases {
        let first = postern::dkim::sign_with(&msg, "bench.test", &keys);
        assert!(first.problems.is_empty() && first.made.len() == keys.len(), "{:?}", first.problems);
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(postern::dkim::sign_with(std::hint::black_box(&msg), "bench.test", &keys));
        }
        let per = t.elapsed().as_secs_f64() / n as f64;
        println!("{:<44} {:>11.0} {:>12}", format!("DKIM signing, 2 KiB, {what}"), 1.0 / per, format!("{:.1} us/msg", per * 1e6));
    }
}
