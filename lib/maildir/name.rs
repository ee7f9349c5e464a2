//! Maildir file names, as every writer and reader of a Maildir here sees them
//! (delivery writes them; POP3, and IMAP, read them).
//!
//! ```text
//! new/ SECS.MUSECPpidQn.HOST,S=SIZE,W=WIRESIZE
//! cur/ SECS.MUSECPpidQn.HOST,S=SIZE,W=WIRESIZE:2,FLAGS
//! ```
//! The unique part sorts in delivery order and is unique without locks, so
//! deliveries on several hosts into one shared tree never collide. `,S=` is the
//! file's size and `,W=` its size with every bare LF counted as CR LF (what POP3
//! reports), as Maildir++ and Dovecot write them: a reader lists a mailbox from
//! the names alone. A name cannot go stale as an index can: the file never
//! changes. Everything after ':' is the reader's (flags).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique file name: secs.MusecPpidQn.host, with '/' and ':' in the host escaped
/// as the Maildir convention asks.
pub fn unique() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let host: String = crate::os::sys::hostname()
        .chars()
        .map(|c| match c {
            '/' => "\\057".to_string(),
            ':' => "\\072".to_string(),
            c => c.to_string(),
        })
        .collect();
    // Microseconds zero-padded: names then sort in delivery order within a second.
    format!("{}.M{:06}P{}Q{}.{}", t.as_secs(), t.subsec_micros(), std::process::id(), n, host)
}

/// The unique part of a Maildir file name.
pub fn uidl_of(name: &str) -> &str {
    let end = name.find([':', ',']).unwrap_or(name.len());
    &name[..end]
}

/// Bytes of `data` as sent: bare LFs become CR LF. `prev_cr` carries the last
/// byte's CR-ness across chunks.
pub fn crlf_size(data: &[u8], prev_cr: &mut bool) -> u64 {
    let mut n = data.len() as u64;
    let mut last = *prev_cr;
    for &b in data {
        if b == b'\n' && !last {
            n += 1;
        }
        last = b == b'\r';
    }
    *prev_cr = last;
    n
}

/// The `,W=` size in a Maildir name (before the `:2,` info), if it has one.
pub fn size_in_name(name: &str) -> Option<u64> {
    let base = name.split(':').next()?;
    base.split(',').skip(1).find_map(|f| f.strip_prefix("W=")).and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_count_bare_lf_as_two() {
        let msg: &[u8] = b"a\nb\r\nc\n";
        let mut cr = false;
        assert_eq!(crlf_size(msg, &mut cr), 9);
        for at in 0..=msg.len() {
            let mut cr = false;
            assert_eq!(crlf_size(&msg[..at], &mut cr) + crlf_size(&msg[at..], &mut cr), 9, "split at {at}");
        }
    }
    #[test]
    fn sizes_from_names() {
        assert_eq!(size_in_name("1.M2P3Q4.h,S=17,W=20:2,S"), Some(20));
        assert_eq!(size_in_name("1.M2P3Q4.h,W=5"), Some(5));
        assert_eq!(size_in_name("1.M2P3Q4.h,S=17:2,"), None);
        assert_eq!(size_in_name("1.M2P3Q4.h:2,W=5"), None, "flags are not sizes");
        assert_eq!(size_in_name("1.M2P3Q4.h,W=x"), None);
    }
    #[test]
    fn uidl_is_the_unique_part() {
        assert_eq!(uidl_of("1700000000.M1P2Q3.host:2,S"), "1700000000.M1P2Q3.host");
        assert_eq!(uidl_of("1700000000.M1P2Q3.host,S=1234:2,"), "1700000000.M1P2Q3.host");
        assert_eq!(uidl_of("plain"), "plain");
    }

    #[test]
    fn unique_names_differ_and_hold_no_separator() {
        let (a, b) = (unique(), unique());
        assert_ne!(a, b);
        assert!(!a.contains('/') && !a.contains(':'), "{a}");
    }
}
