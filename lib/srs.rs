//! The Sender Rewriting Scheme, libsrs2's (Shevek's) format as postsrsd uses it.
//!
//! A forward to another domain leaves with its envelope sender rewritten into
//! our domain, so SPF at the destination checks our address, not the original
//! sender's: `local@domain` becomes `SRS0=HHHH=TT=domain=local@srsdomain`, and
//! a sender that is already `SRS0=...@host` becomes
//! `SRS1=HHHH=host==HHHH=TT=domain=local@srsdomain` (an SRS1 keeps its host and
//! rest and gets our hash). A bounce to such an address comes back to us, is
//! checked (hash and age) and goes to the address it was made from.
//!
//! HHHH: the first `HASH_LEN` base64 characters of HMAC-SHA1(secret, the
//! lower-cased fields concatenated), compared case-insensitively (some hosts
//! lower-case addresses). TT: the day number (unix time / 86400) mod 1024 in
//! two base32 characters (`A-Z2-7`), high five bits first. `=`, `+` or `-`
//! may follow the SRS0/SRS1 tag. Every secret (the lines of control/srssecret)
//! is tried when checking; the first one signs.

use std::fmt;

/// Characters of the hash we write and require (libsrs2's default).
pub const HASH_LEN: usize = 4;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const DAY: u64 = 86400;
const SLOTS: u64 = 1024;

/// Why an SRS address was not taken back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrsError {
    /// Not SRS0/SRS1, or its fields are missing.
    Syntax(String),
    /// No secret gives this hash: forged, or made by another host.
    BadHash(String),
    /// Older than the maximum age (or from the future).
    Expired(String),
    BadStamp(String),
}

impl fmt::Display for SrsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SrsError::Syntax(a) => write!(f, "{a} is not a well-formed SRS address"),
            SrsError::BadHash(a) => write!(f, "{a} is a forged SRS address (its hash is not ours)"),
            SrsError::Expired(a) => write!(f, "{a} is an expired SRS address (too old to be a bounce of our forward)"),
            SrsError::BadStamp(a) => write!(f, "{a} has an invalid SRS timestamp"),
        }
    }
}

/// What checking found in a local part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversed {
    /// The address the bounce goes to.
    pub address: String,
}

/// Whether `local` looks like SRS (SRS0/SRS1 and a separator, any case):
/// such a local part in our domain is checked, never delivered as is.
pub fn is_srs(local: &str) -> bool {
    let b = local.as_bytes();
    b.len() > 4 && (b[..4].eq_ignore_ascii_case(b"SRS0") || b[..4].eq_ignore_ascii_case(b"SRS1")) && is_sep(b[4])
}

fn is_sep(b: u8) -> bool {
    matches!(b, b'=' | b'+' | b'-')
}

/// The rewriter: our domain, the secrets (the first signs), the maximum age.
pub struct Srs {
    domain: String,
    keys: Vec<ring::hmac::Key>,
    max_age_days: u64,
}

impl Srs {
    /// None without a secret: SRS is off.
    pub fn new(domain: &str, secrets: &[impl AsRef<[u8]>], max_age_days: u64) -> Option<Srs> {
        let keys: Vec<_> = secrets
            .iter()
            .map(|s| s.as_ref())
            .filter(|s| !s.is_empty())
            .map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, s))
            .collect();
        if keys.is_empty() || domain.is_empty() {
            return None;
        }
        Some(Srs { domain: domain.to_ascii_lowercase(), keys, max_age_days })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether `domain` is our SRS domain.
    pub fn is_ours(&self, domain: &str) -> bool {
        domain.eq_ignore_ascii_case(&self.domain)
    }

    fn hash_with(key: &ring::hmac::Key, fields: &[&str]) -> String {
        let mut ctx = ring::hmac::Context::with_key(key);
        for f in fields {
            ctx.update(f.to_ascii_lowercase().as_bytes());
        }
        let tag = ctx.sign();
        let mut h = crate::proto::base64::encode(tag.as_ref());
        h.truncate(HASH_LEN);
        h
    }

    fn hash(&self, fields: &[&str]) -> String {
        Srs::hash_with(&self.keys[0], fields)
    }

    /// Compared as bytes: `given` comes from the network and may cut a
    /// character in two at HASH_LEN (fuzz/fuzz_targets/srs.rs found that).
    fn check_hash(&self, given: &str, fields: &[&str]) -> bool {
        let Some(given) = given.as_bytes().get(..HASH_LEN) else { return false };
        self.keys.iter().any(|k| Srs::hash_with(k, fields).as_bytes()[..HASH_LEN].eq_ignore_ascii_case(given))
    }

    /// The SRS form of `sender` (local@domain) at `now` (unix seconds). An
    /// SRS0 from another host becomes SRS1; an SRS1 keeps its host and rest.
    pub fn forward(&self, sender: &str, now: u64) -> Option<String> {
        let at = sender.rfind('@')?;
        let (local, domain) = (&sender[..at], &sender[at + 1..]);
        if local.is_empty() || domain.is_empty() {
            return None;
        }
        if let Some((_, Parsed::Srs1 { host, user })) = parse(local) {
            // Keep host and rest, our hash.
            let h = self.hash(&[host, user]);
            return Some(format!("SRS1={h}={host}={user}@{}", self.domain));
        }
        if is_srs(local) && local.as_bytes()[3] == b'0' {
            // SRS0 made by `domain`: user keeps its separator ("=HHHH=TT=..").
            let user = &local[4..];
            let h = self.hash(&[domain, user]);
            return Some(format!("SRS1={h}={domain}={user}@{}", self.domain));
        }
        let tt = stamp(now);
        let h = self.hash(&[&tt, domain, local]);
        Some(format!("SRS0={h}={tt}={domain}={local}@{}", self.domain))
    }

    /// The address an SRS local part (of our domain) stands for, checked.
    pub fn reverse(&self, local: &str, now: u64) -> Result<Reversed, SrsError> {
        let (hash, rest) = parse(local).ok_or_else(|| SrsError::Syntax(local.to_string()))?;
        match rest {
            Parsed::Srs1 { host, user } => {
                if !self.check_hash(hash, &[host, user]) {
                    return Err(SrsError::BadHash(local.to_string()));
                }
                Ok(Reversed { address: format!("SRS0{user}@{host}") })
            }
            Parsed::Srs0 { stamp, domain, user } => {
                if !self.check_hash(hash, &[stamp, domain, user]) {
                    return Err(SrsError::BadHash(local.to_string()));
                }
                self.check_stamp(local, stamp, now)?;
                Ok(Reversed { address: format!("{user}@{domain}") })
            }
        }
    }

    fn check_stamp(&self, local: &str, tt: &str, now: u64) -> Result<(), SrsError> {
        let then = unstamp(tt).ok_or_else(|| SrsError::BadStamp(local.to_string()))?;
        let mut today = (now / DAY) % SLOTS;
        while today < then {
            today += SLOTS;
        }
        if today - then <= self.max_age_days {
            Ok(())
        } else {
            Err(SrsError::Expired(local.to_string()))
        }
    }
}

/// The fields of an SRS local part, before checking.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    Srs0 {
        stamp: &'a str,
        domain: &'a str,
        user: &'a str,
    },
    /// `user` keeps its leading separator (`=HHHH=TT=domain=local`).
    Srs1 {
        host: &'a str,
        user: &'a str,
    },
}

/// Split an SRS local part into its hash and fields; None if it is not one.
/// Only syntax: nothing is checked here (the fuzz target's entry).
pub fn parse(local: &str) -> Option<(&str, Parsed<'_>)> {
    if !is_srs(local) {
        return None;
    }
    let srs1 = local.as_bytes()[3] == b'1';
    let rest = &local[5..];
    let (hash, rest) = rest.split_once('=')?;
    if hash.is_empty() {
        return None;
    }
    if srs1 {
        let (host, user) = rest.split_once('=')?;
        if host.is_empty() || user.len() < 2 || !is_sep(user.as_bytes()[0]) {
            return None;
        }
        return Some((hash, Parsed::Srs1 { host, user }));
    }
    let (stamp, rest) = rest.split_once('=')?;
    let (domain, user) = rest.split_once('=')?;
    if stamp.len() != 2 || domain.is_empty() || user.is_empty() {
        return None;
    }
    Some((hash, Parsed::Srs0 { stamp, domain, user }))
}

/// The two-character day stamp of `now` (unix seconds).
pub fn stamp(now: u64) -> String {
    let d = (now / DAY) % SLOTS;
    let s = [BASE32[((d >> 5) & 31) as usize], BASE32[(d & 31) as usize]];
    String::from_utf8_lossy(&s).into_owned()
}

fn unstamp(tt: &str) -> Option<u64> {
    let b = tt.as_bytes();
    if b.len() != 2 {
        return None;
    }
    let v = |c: u8| BASE32.iter().position(|&x| x == c.to_ascii_uppercase()).map(|p| p as u64);
    Some((v(b[0])? << 5) | v(b[1])?)
}

/// The secrets in control/srssecret: one a line, the first signs, the others
/// (old ones) still check. Missing or empty: SRS is off.
pub fn read_secrets(path: &std::path::Path) -> std::io::Result<Vec<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(b.split(|&c| c == b'\n').map(|l| l.trim_ascii().to_vec()).filter(|l| !l.is_empty() && l[0] != b'#').collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The secret file of an installation.
pub fn secret_path(home: &crate::os::home::Home) -> std::path::PathBuf {
    home.root().join("control").join("srssecret")
}

/// Our rewriter from the control files: srssecret, srsdomain, srsmaxage.
/// Ok(None) when there is no secret (SRS off).
pub fn load(home: &crate::os::home::Home) -> Result<Option<Srs>, String> {
    use crate::config::{control::Control, settings};
    let path = secret_path(home);
    let secrets =
        read_secrets(&path).map_err(|e| format!("cannot read {}: {e}; check its owner and mode (see INSTALL)", path.display()))?;
    if secrets.is_empty() {
        return Ok(None);
    }
    let c = Control::new(home);
    let domain = c.text(&settings::SRSDOMAIN).map_err(|e| e.to_string())?;
    let age = c.number(&settings::SRSMAXAGE).map_err(|e| e.to_string())?;
    Ok(Srs::new(&domain, &secrets, age))
}

/// Seconds since the epoch, for `forward` and `reverse`.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What the queue (postern-q) does with SRS to an envelope it is given:
/// recipients that are valid SRS addresses in our domain become the addresses
/// they stand for (a bounce of one of our forwards, queued here by postern-send
/// or a local program; smtpd already did this at RCPT), and for a `forward`
/// the sender becomes SRS when it is neither null, a double bounce nor ours,
/// and some recipient is remote. A problem is logged, never fatal: the message
/// is queued as it came (as with DKIM signing). Returns whether it changed.
pub fn apply(home: &crate::os::home::Home, env: &mut crate::queue::Envelope, forward: bool, log: &mut dyn FnMut(&str)) -> bool {
    use crate::address::Address;
    use crate::config::routing::{Route, Routing};
    let srs_rcpt = env.recipients.iter().any(|r| is_srs(r.local()));
    if !forward && !srs_rcpt {
        return false;
    }
    if forward && (env.sender.is_null() || env.sender.is_double_bounce() || env.sender.domain().is_none()) && !srs_rcpt {
        return false;
    }
    let srs = match load(home) {
        Ok(Some(s)) => s,
        Ok(None) => return false,
        Err(e) => {
            log(&format!("{e}; queued without SRS"));
            return false;
        }
    };
    let now = now();
    let mut changed = false;
    for r in env.recipients.iter_mut() {
        if !(is_srs(r.local()) && r.domain().is_some_and(|d| srs.is_ours(d))) {
            continue;
        }
        match srs.reverse(r.local(), now).map(|b| Address::parse(b.address.as_bytes())) {
            Ok(Ok(a)) => {
                *r = a;
                changed = true;
            }
            Ok(Err(e)) => log(&format!("SRS recipient {r}: {e}; left as it is")),
            Err(e) => log(&format!("{e}; left as it is (it will bounce as unknown)")),
        }
    }
    if !forward || env.sender.is_null() || env.sender.is_double_bounce() || env.sender.domain().is_none() {
        return changed;
    }
    let routing = match Routing::load(&crate::config::control::Control::new(home)) {
        Ok(r) => r,
        Err(e) => {
            log(&format!("{e}; the forward is queued without SRS"));
            return changed;
        }
    };
    let mut users = crate::users::Users::open(home).ok();
    let mut is_virtual = |d: &str| users.as_mut().is_some_and(|u| u.is_virtual_domain(d));
    let ours = |a: &Address, v: &mut dyn FnMut(&str) -> bool| matches!(routing.route(v, a), Route::Local(_));
    if ours(&env.sender, &mut is_virtual) || env.sender.domain().is_some_and(|d| srs.is_ours(d)) {
        return changed;
    }
    if !env.recipients.iter().any(|r| !ours(r, &mut is_virtual)) {
        return changed;
    }
    match srs.forward(env.sender.as_str(), now).map(|s| Address::parse(s.as_bytes())) {
        Some(Ok(a)) => {
            env.sender = a;
            true
        }
        Some(Err(e)) => {
            log(&format!("the SRS form of {} is not an address ({e}); the forward is queued without SRS", env.sender));
            changed
        }
        None => changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000;

    fn srs(domain: &str, secrets: &[&str]) -> Srs {
        Srs::new(domain, secrets, 21).unwrap()
    }

    #[test]
    fn stamp_is_base32_days() {
        assert_eq!(stamp(0), "AA");
        assert_eq!(stamp(DAY * 33), "BB");
        assert_eq!(unstamp("bb"), Some(33));
        assert_eq!(unstamp("B1"), None);
        assert_eq!(unstamp(&stamp(T)), Some((T / DAY) % SLOTS));
    }

    #[test]
    fn known_value_from_libsrs2_rules() {
        // HMAC-SHA1("secret", "bb" "example.org" "user"), base64, first 4.
        let s = srs("fwd.example", &["secret"]);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"secret");
        let want = crate::proto::base64::encode(ring::hmac::sign(&key, b"bbexample.orguser").as_ref())[..4].to_string();
        assert_eq!(s.forward("User@Example.org", DAY * 33).unwrap(), format!("SRS0={want}=BB=Example.org=User@fwd.example"));
    }

    #[test]
    fn round_trip_and_case() {
        let s = srs("Fwd.Example", &["k1"]);
        let a = s.forward("alice@orig.example", T).unwrap();
        assert!(a.starts_with("SRS0=") && a.ends_with("@fwd.example"), "{a}");
        let local = &a[..a.rfind('@').unwrap()];
        assert_eq!(s.reverse(local, T).unwrap().address, "alice@orig.example");
        // Lower-cased on the way (hash and stamp are case-insensitive).
        assert_eq!(s.reverse(&local.to_ascii_lowercase(), T + DAY).unwrap().address, "alice@orig.example");
        assert_eq!(s.reverse(&local.to_ascii_uppercase(), T).unwrap().address, "ALICE@ORIG.EXAMPLE");
        // Other separators after the tag.
        assert!(s.reverse(&format!("SRS0+{}", &local[5..]), T).is_ok());
    }

    #[test]
    fn srs1_from_srs0_and_back() {
        let a = srs("a.example", &["ka"]);
        let b = srs("b.example", &["kb"]);
        let first = a.forward("u@orig.example", T).unwrap();
        let second = b.forward(&first, T).unwrap();
        let at = |x: &str| x.rfind('@').unwrap();
        assert_eq!(second, format!("SRS1={}=a.example={}@b.example", &second[5..9], &first[4..at(&first)]));
        // A third host keeps host and rest, with its own hash.
        let c = srs("c.example", &["kc"]);
        let third = c.forward(&second, T).unwrap();
        assert_eq!(third, format!("SRS1={}=a.example={}@c.example", &third[5..9], &first[4..at(&first)]));
        // b takes its SRS1 back to a's SRS0, which a takes back to the sender.
        let back = b.reverse(&second[..second.rfind('@').unwrap()], T).unwrap().address;
        assert_eq!(back, first);
        assert_eq!(a.reverse(&back[..back.rfind('@').unwrap()], T).unwrap().address, "u@orig.example");
        let back3 = c.reverse(&third[..third.rfind('@').unwrap()], T).unwrap().address;
        assert_eq!(back3, first);
    }

    #[test]
    fn forged_hash_and_other_secret() {
        let s = srs("fwd.example", &["k1"]);
        let a = s.forward("alice@orig.example", T).unwrap();
        let local = &a[..a.rfind('@').unwrap()];
        let forged = format!("SRS0=AAAA{}", &local[9..]);
        assert!(matches!(s.reverse(&forged, T), Err(SrsError::BadHash(_))));
        // A hash with a character cut in two at its end is refused, not a panic
        // (found by fuzz/fuzz_targets/srs.rs).
        assert!(s.reverse("srs0+xyz\u{c5}z=Fa=b=c", T).is_err());
        // The user changed: the hash no longer fits.
        assert!(matches!(s.reverse(&local.replace("alice", "mallory"), T), Err(SrsError::BadHash(_))));
        assert!(matches!(srs("fwd.example", &["other"]).reverse(local, T), Err(SrsError::BadHash(_))));
        // An old secret still checks; the new one signs.
        let rotated = srs("fwd.example", &["k2", "k1"]);
        assert!(rotated.reverse(local, T).is_ok());
        assert_ne!(rotated.forward("alice@orig.example", T).unwrap(), a);
    }

    #[test]
    fn expired_and_wrapping() {
        let s = srs("fwd.example", &["k1"]);
        let a = s.forward("alice@orig.example", T).unwrap();
        let local = &a[..a.rfind('@').unwrap()];
        assert!(s.reverse(local, T + 21 * DAY).is_ok());
        assert!(matches!(s.reverse(local, T + 22 * DAY), Err(SrsError::Expired(_))));
        // Across the 1024-day wrap.
        let edge = (1023 * DAY) + SLOTS * DAY * 19;
        let b = s.forward("x@y.example", edge).unwrap();
        assert!(s.reverse(&b[..b.rfind('@').unwrap()], edge + 2 * DAY).is_ok());
    }

    #[test]
    fn syntax() {
        assert!(is_srs("srs0=x") && is_srs("SRS1-x") && !is_srs("SRS2=x") && !is_srs("SRS0") && !is_srs("srs0x"));
        assert_eq!(parse("SRS0=h=TT=d=u=v"), Some(("h", Parsed::Srs0 { stamp: "TT", domain: "d", user: "u=v" })));
        assert_eq!(parse("SRS1=h=host==x=y"), Some(("h", Parsed::Srs1 { host: "host", user: "=x=y" })));
        for bad in ["SRS0=h=T=d=u", "SRS0==TT=d=u", "SRS0=h=TT=d", "SRS1=h=host", "SRS1=h=host=x", "SRS0=h=TT==u"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let s = srs("fwd.example", &["k"]);
        assert!(matches!(s.reverse("SRS0=abcd", T), Err(SrsError::Syntax(_))));
        assert!(s.forward("", T).is_none() && s.forward("nodomain", T).is_none());
        assert!(Srs::new("d", &[""], 21).is_none());
    }

    #[test]
    fn the_queue_rewrites_forwards_to_other_domains_only_and_takes_srs_recipients_back() {
        use crate::queue::Envelope;
        use crate::testing::addr;
        let d = crate::testing::scratch_dir("srs-apply");
        std::fs::create_dir_all(d.join("control")).unwrap();
        std::fs::write(d.join("control/me"), "here.example\n").unwrap();
        std::fs::write(d.join("control/locals"), "here.example\n").unwrap();
        let home = crate::os::home::Home::at(&d);
        let mut logged = Vec::new();
        let mut run = |sender: &str, rcpts: &[&str], forward: bool| {
            let mut env = Envelope::new(addr(sender), rcpts.iter().map(|r| addr(r)).collect());
            let changed = apply(&home, &mut env, forward, &mut |m| logged.push(m.to_string()));
            (changed, env.sender.to_string(), env.recipients.iter().map(|r| r.to_string()).collect::<Vec<_>>())
        };
        // No secret: off.
        assert!(!run("a@orig.example", &["x@far.example"], true).0);
        std::fs::write(d.join("control/srssecret"), "new\n\nold\n").unwrap();
        let (changed, sender, _) = run("a@orig.example", &["x@far.example"], true);
        assert!(changed && sender.starts_with("SRS0=") && sender.ends_with("=orig.example=a@here.example"), "{sender}");
        // Not a forward, a null or double-bounce sender, our own sender, or only local recipients: unchanged.
        assert!(!run("a@orig.example", &["x@far.example"], false).0);
        assert!(!run("", &["x@far.example"], true).0);
        assert!(!run("#@[]", &["x@far.example"], true).0);
        assert!(!run("u@HERE.example", &["x@far.example"], true).0);
        assert!(!run("a@orig.example", &["u@here.example"], true).0);
        // An SRS recipient of ours (signed with an old secret) goes back, for any submitter.
        let old = Srs::new("here.example", &["old"], 21).unwrap().forward("a@orig.example", now()).unwrap();
        let (changed, _, rcpts) = run("", &[&old, "v@far.example"], false);
        assert!(changed && rcpts == ["a@orig.example", "v@far.example"], "{rcpts:?}");
        // A forged one stays (and bounces as unknown), logged.
        let (changed, _, rcpts) = run("", &["SRS0=AAAA=AA=orig.example=a@here.example"], false);
        assert!(!changed && rcpts == ["SRS0=AAAA=AA=orig.example=a@here.example"]);
        assert!(logged.iter().any(|l| l.contains("forged SRS address")), "{logged:?}");
    }
}
