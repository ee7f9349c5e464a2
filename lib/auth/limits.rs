//! What postern-auth allows before it checks a password: a free place among
//! `authconcurrency` concurrent checks, and a client address that has not had
//! `authfailmax` failed logins within `authfailwindow` seconds.
//!
//! Both live under `run/auth/` of the home, kept by postern-auth itself (root in
//! a system install, so the network daemons cannot reset them):
//! - `check.0` .. `check.N-1`: lock files, one held per running check
//!   (`os::slots`); an argon2id check holds about 20 MiB, so a flood of logins
//!   takes at most N times that. A check waits up to `authwait` for a place.
//! - `failures`: a fixed-size table (a 16-byte header: magic and a random hash
//!   key; then `TABLE` entries of 40 bytes) of failed logins per client address,
//!   updated under flock. An IPv6 address counts by its /64 (one customer's
//!   network), an IPv4 address by itself. When the entries an address hashes to
//!   are all in use, the oldest is reused: the table never grows.
//!
//! The client address is TCPREMOTEIP, which postern-listen (or tcpserver) sets
//! and smtpd and popup pass on. Without it (a local caller) only the concurrency
//! limit applies.

use super::checkpassword::CheckError;
use crate::config::control::Control;
use crate::config::settings::{AUTHCONCURRENCY, AUTHFAILMAX, AUTHFAILWINDOW, AUTHWAIT};
use crate::os::home::Home;
use crate::os::slots::{Slot, Slots};
use nix::fcntl::{Flock, FlockArg};
use std::fs::OpenOptions;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

const MAGIC: &[u8; 8] = b"PSTAF001";
const HEADER: u64 = 16;
/// Entries in the table (160 KiB).
const TABLE: u64 = 4096;
const ENTRY: usize = 40;
/// Entries looked at from an address's hash onwards.
const PROBE: u64 = 16;

/// A client as the table keys it: an IPv6 address (IPv4 mapped), /64 for IPv6.
pub type ClientKey = [u8; 16];

/// The key of a TCPREMOTEIP value; None when it is not an IP address.
pub fn client_key(ip: &str) -> Option<ClientKey> {
    let ip: IpAddr = ip.trim().parse().ok()?;
    Some(match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            o
        }
    })
}

/// The settings, read once per check.
#[derive(Clone, Debug)]
pub struct Limits {
    dir: PathBuf,
    /// Concurrent checks.
    pub concurrency: u32,
    pub wait: Duration,
    /// Failed logins per address and window; 0: no limit.
    pub fail_max: u64,
    pub fail_window: u64,
    /// control/checkpassword: a foreign program that checks the password.
    pub foreign: Option<String>,
}

impl Limits {
    pub fn read(home: &Home) -> Result<Limits, CheckError> {
        let c = Control::new(home);
        let cfg = |e: crate::config::control::ControlError| CheckError::Database(e.to_string());
        let n = c.number(&AUTHCONCURRENCY).map_err(cfg)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        Ok(Limits {
            dir: home.root().join("run").join("auth"),
            concurrency: if n == 0 { cpus } else { n }.min(u32::MAX as u64) as u32,
            wait: Duration::from_secs(c.number(&AUTHWAIT).map_err(cfg)?),
            fail_max: c.number(&AUTHFAILMAX).map_err(cfg)?,
            fail_window: c.number(&AUTHFAILWINDOW).map_err(cfg)?.max(1),
            foreign: c.optional(&crate::config::settings::CHECKPASSWORD).map_err(cfg)?,
        })
    }

    /// A place to run one check in, waiting up to `wait`.
    pub fn place(&self) -> Result<Slot, CheckError> {
        let slots = Slots { dir: self.dir.clone(), prefix: "check".into(), n: self.concurrency };
        match slots.take_waiting(self.wait) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(CheckError::Busy(self.concurrency, self.wait)),
            Err(e) => Err(CheckError::Database(format!("cannot take a place for a password check: {e}"))),
        }
    }

    fn table(&self) -> Failures {
        Failures { path: self.dir.join("failures"), max: self.fail_max, window: self.fail_window }
    }

    /// Err(Refused) when `client` has had too many failed logins.
    pub fn admit(&self, ip: &str, client: &ClientKey) -> Result<(), CheckError> {
        if self.fail_max == 0 {
            return Ok(());
        }
        match self.table().refused(client, crate::os::time::now()) {
            Ok(None) => Ok(()),
            Ok(Some(left)) => Err(CheckError::Refused(ip.to_string(), left)),
            Err(e) => Err(CheckError::Database(format!("cannot read {}: {e}", self.dir.join("failures").display()))),
        }
    }

    /// Count a failed login; Some(seconds) when this one puts the address over
    /// the limit (it is then refused for that long).
    pub fn failed(&self, client: &ClientKey) -> Result<Option<u64>, CheckError> {
        if self.fail_max == 0 {
            return Ok(None);
        }
        self.table()
            .failed(client, crate::os::time::now())
            .map_err(|e| CheckError::Database(format!("cannot update {}: {e}", self.dir.join("failures").display())))
    }
}

/// postern-auth's whole check: the client's address must be admitted, the check
/// gets a place among the concurrent ones, then `verify::verify`; a wrong login
/// counts against the address (and `log` hears when that puts it over the limit).
pub fn verify_limited(
    home: &Home,
    client_ip: Option<&str>,
    login: &[u8],
    password: &[u8],
    log: &mut dyn FnMut(&str),
) -> Result<Option<super::verify::Account>, CheckError> {
    let limits = Limits::read(home)?;
    let client = client_ip.and_then(|ip| client_key(ip).map(|k| (ip, k)));
    if let Some((ip, key)) = &client {
        limits.admit(ip, key)?;
    }
    let place = limits.place()?;
    let found = match &limits.foreign {
        None => super::verify::verify(home, login, password),
        Some(program) => foreign(home, program, login, password, log),
    };
    drop(place);
    if let (Ok(None), Some((ip, key))) = (&found, &client) {
        match limits.failed(key) {
            Ok(Some(secs)) => log(&format!(
                "{ip} had {} failed logins within {} s: its logins are refused for {secs} s",
                limits.fail_max, limits.fail_window
            )),
            Ok(None) => {}
            Err(e) => log(&e.to_string()),
        }
    }
    found
}

/// The password checked by a foreign checkpassword program, the account
/// found by postern (see `verify::account`).
fn foreign(
    home: &Home,
    program: &str,
    login: &[u8],
    password: &[u8],
    log: &mut dyn FnMut(&str),
) -> Result<Option<super::verify::Account>, CheckError> {
    if !super::checkpassword::ask_foreign(program, login, password)? {
        return Ok(None);
    }
    let account = super::verify::account(home, login)?;
    if account.is_none() {
        log(&format!(
            "{program} accepted {:?}, but postern has no such account (users/cdb, the password database) to become; refused",
            String::from_utf8_lossy(login)
        ));
    }
    Ok(account)
}

/// One address's entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    key: ClientKey,
    /// When the current window began (the first failure in it).
    first: u64,
    /// Refused until then.
    until: u64,
    count: u32,
}

impl Entry {
    fn decode(b: &[u8; ENTRY]) -> Entry {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Entry {
            key: b[..16].try_into().expect("16 bytes"),
            first: u64_at(16),
            until: u64_at(24),
            count: u32::from_le_bytes(b[32..36].try_into().expect("4 bytes")),
        }
    }

    fn encode(&self) -> [u8; ENTRY] {
        let mut b = [0u8; ENTRY];
        b[..16].copy_from_slice(&self.key);
        b[16..24].copy_from_slice(&self.first.to_le_bytes());
        b[24..32].copy_from_slice(&self.until.to_le_bytes());
        b[32..36].copy_from_slice(&self.count.to_le_bytes());
        b
    }
}

/// Which of the probed entries belongs to `key`: (index, whether it is already
/// `key`'s). Else a free or expired one, else the one least worth keeping (not
/// refused, oldest window).
fn pick(entries: &[Entry], key: &ClientKey, now: u64, window: u64) -> (usize, bool) {
    if let Some(i) = entries.iter().position(|e| e.count > 0 && e.key == *key) {
        return (i, true);
    }
    let live = |e: &Entry| e.count > 0 && (e.first.saturating_add(window) > now || e.until > now);
    if let Some(i) = entries.iter().position(|e| !live(e)) {
        return (i, false);
    }
    let i = (0..entries.len()).min_by_key(|&i| (entries[i].until > now, entries[i].first)).unwrap_or(0);
    (i, false)
}

/// Count one failure in `e` (already `key`'s, or fresh).
fn count_failure(e: &mut Entry, now: u64, max: u64, window: u64) -> Option<u64> {
    if now >= e.first.saturating_add(window) {
        e.first = now;
        e.count = 0;
    }
    e.count = e.count.saturating_add(1);
    if u64::from(e.count) >= max && e.until <= now {
        e.until = now + window;
        return Some(window);
    }
    None
}

struct Failures {
    path: PathBuf,
    max: u64,
    window: u64,
}

impl Failures {
    /// Open and lock the table, making its header if it is new; then the hash
    /// of `key` under the table's own key.
    fn open(&self, key: &ClientKey) -> io::Result<(Flock<std::fs::File>, u64)> {
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let f = OpenOptions::new().read(true).write(true).create(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(&self.path)?;
        let f = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
        let mut header = [0u8; HEADER as usize];
        let whole = f.read_exact_at(&mut header, 0).is_ok() && &header[..8] == MAGIC;
        if !whole {
            // New (or not ours): start afresh. Not synced: losing counts in a
            // crash costs nothing but a fresh start.
            header[..8].copy_from_slice(MAGIC);
            header[8..].copy_from_slice(&crate::os::random::bytes(8));
            f.set_len(0)?;
            f.write_all_at(&header, 0)?;
            f.set_len(HEADER + TABLE * ENTRY as u64)?;
        }
        // FNV-1a over the table's random key and the address: an outsider cannot
        // aim addresses at one bucket to push others out.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in header[8..].iter().chain(key.iter()) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
        }
        Ok((f, h % TABLE))
    }

    fn read_probe(f: &std::fs::File, start: u64) -> io::Result<Vec<Entry>> {
        (0..PROBE)
            .map(|j| {
                let mut b = [0u8; ENTRY];
                f.read_exact_at(&mut b, HEADER + ((start + j) % TABLE) * ENTRY as u64)?;
                Ok(Entry::decode(&b))
            })
            .collect()
    }

    fn refused(&self, key: &ClientKey, now: u64) -> io::Result<Option<u64>> {
        let (f, start) = self.open(key)?;
        let entries = Failures::read_probe(&f, start)?;
        Ok(match pick(&entries, key, now, self.window) {
            (i, true) if entries[i].until > now => Some(entries[i].until - now),
            _ => None,
        })
    }

    fn failed(&self, key: &ClientKey, now: u64) -> io::Result<Option<u64>> {
        let (f, start) = self.open(key)?;
        let entries = Failures::read_probe(&f, start)?;
        let (i, mine) = pick(&entries, key, now, self.window);
        let mut e = if mine { entries[i] } else { Entry { key: *key, ..Entry::default() } };
        let now_refused = count_failure(&mut e, now, self.max, self.window);
        f.write_all_at(&e.encode(), HEADER + ((start + i as u64) % TABLE) * ENTRY as u64)?;
        Ok(now_refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys() {
        assert_eq!(client_key("127.0.0.1"), client_key("::ffff:127.0.0.1"));
        assert_ne!(client_key("127.0.0.1"), client_key("127.0.0.2"));
        assert_eq!(client_key("2001:db8:1:2::1"), client_key("2001:db8:1:2:ffff::7"), "one /64");
        assert_ne!(client_key("2001:db8:1:2::1"), client_key("2001:db8:1:3::1"));
        assert_eq!(client_key("unknown"), None);
        assert_eq!(client_key(""), None);
    }

    #[test]
    fn entries_round_trip() {
        let e = Entry { key: client_key("10.1.2.3").unwrap(), first: 1_700_000_000, until: 1_700_000_600, count: 7 };
        assert_eq!(Entry::decode(&e.encode()), e);
    }

    #[test]
    fn counts_per_window_then_refuses_for_a_window() {
        let d = crate::testing::scratch_dir("authfail");
        let t = Failures { path: d.join("run/auth/failures"), max: 3, window: 100 };
        let a = client_key("192.0.2.1").unwrap();
        let b = client_key("192.0.2.2").unwrap();
        assert_eq!(t.refused(&a, 1000).unwrap(), None);
        assert_eq!(t.failed(&a, 1000).unwrap(), None);
        assert_eq!(t.failed(&a, 1010).unwrap(), None);
        assert_eq!(t.failed(&b, 1010).unwrap(), None);
        assert_eq!(t.refused(&a, 1020).unwrap(), None, "two so far");
        assert_eq!(t.failed(&a, 1020).unwrap(), Some(100), "the third reaches the limit");
        assert_eq!(t.refused(&a, 1050).unwrap(), Some(70));
        assert_eq!(t.refused(&b, 1050).unwrap(), None, "another address is not affected");
        assert_eq!(t.refused(&a, 1120).unwrap(), None, "a window later");
        // Failures spread wider than the window never add up.
        for k in 0..10 {
            assert_eq!(t.failed(&b, 2000 + k * 101).unwrap(), None);
        }
        // The file has its fixed size, whatever came.
        assert_eq!(std::fs::metadata(&t.path).unwrap().len(), HEADER + TABLE * ENTRY as u64);
    }

    #[test]
    fn a_full_probe_reuses_the_least_useful_entry() {
        let k = |i: u8| {
            let mut a = [0u8; 16];
            a[15] = i;
            a
        };
        let mut entries: Vec<Entry> = (0..4).map(|i| Entry { key: k(i), first: 100 + i as u64, until: 0, count: 1 }).collect();
        entries[0].until = 500;
        assert_eq!(pick(&entries, &k(2), 110, 50), (2, true));
        assert_eq!(pick(&entries, &k(9), 110, 50), (1, false), "not refused, oldest");
        assert_eq!(pick(&entries, &k(9), 160, 50), (1, false), "expired");
        entries[3].count = 0;
        assert_eq!(pick(&entries, &k(9), 110, 50), (3, false), "a free one first");
    }
}
