//! Random bytes from the kernel, for salts and Message-IDs.

use std::fs::File;
use std::io::Read;

/// Falls back to the time and pid only if /dev/urandom is unreadable, which on
/// Linux does not happen in practice.
pub fn bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    if File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut x = t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    buf
}
