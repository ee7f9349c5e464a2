//! DKIM signing of outgoing mail (RFC 6376; Ed25519 from RFC 8463), done by the
//! queue writer (postern-queue, postern-queued's workers, uid postern-q) when the
//! submitter asks for it (`queue::submit`, the `POSTERN_DKIM` variable and the
//! `S` hello). The keys are readable only by postern-q: no program that reads the
//! network before authentication can read them.
//!
//! Keys: `control/dkim/DOMAIN/SELECTOR.key`, PEM (PKCS#8, or PKCS#1 for RSA),
//! written by `postern-admin dkim keygen` (keygen.rs). The domain is that of the
//! message's From: field (one field, every address of it in one domain). The
//! selectors are the ones control/outgoingip lists for that domain (its fourth
//! field), else every `*.key` in the domain's directory, in name order. Each key
//! gives one DKIM-Signature field: an RSA and an Ed25519 key sign together.
//!
//! A key that cannot be read or parsed, or a signature that cannot be made, is
//! reported (`Signed::problems`, logged by the caller with the path) and the
//! message goes on without that signature: signing never loses or refuses mail.

pub mod keygen;

use crate::config::control::Control;
use crate::message::headers;
use mail_auth::common::crypto::{Algorithm, DkimKey, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::headers::Writable;
use mail_auth::dkim::DkimSigner;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

/// The fields signed when present, From first. From is also signed once more
/// than it occurs (oversigned), so no From can be added without breaking the
/// signature. Fields that are absent are not listed: a mailing list that adds
/// List-Id to a message that had none keeps our signature intact.
pub const SIGNED_FIELDS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Content-ID",
    "Content-Description",
    "Content-Language",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
    "Autocrypt",
    "Openpgp",
];

/// What went wrong with one key or one signature.
#[derive(Debug)]
pub enum DkimError {
    /// The key file or the domain's key directory cannot be read.
    Read(PathBuf, std::io::Error),
    /// The key file is not a PEM RSA or Ed25519 private key.
    Parse(PathBuf, String),
    /// The library refused to sign with this key.
    Sign(PathBuf, String),
    /// A selector or domain name that cannot be a file name or a DNS label.
    Name(String),
}

impl fmt::Display for DkimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DkimError::Read(p, e) => write!(f, "cannot read DKIM key {}: {e} (it must belong to postern-q, mode 0600)", p.display()),
            DkimError::Parse(p, e) => write!(f, "DKIM key {} is not a PEM RSA or Ed25519 private key: {e}", p.display()),
            DkimError::Sign(p, e) => write!(f, "cannot sign with DKIM key {}: {e}", p.display()),
            DkimError::Name(n) => write!(f, "{n:?} cannot be a DKIM domain or selector (letters, digits, '-', '_' and '.' only)"),
        }
    }
}

impl crate::error::Classify for DkimError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            DkimError::Name(_) => crate::error::Kind::Permanent,
            _ => crate::error::Kind::Temporary,
        }
    }
}

/// Parse a PEM private key: PKCS#8 (RSA or Ed25519, as openssl genpkey writes
/// them) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
pub fn parse_key(pem: &[u8], path: &Path) -> Result<DkimKey, DkimError> {
    let bad = |e: String| DkimError::Parse(path.to_path_buf(), e);
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| bad(e.to_string()))?;
    match der {
        PrivateKeyDer::Pkcs8(ref p8) => {
            // openssl writes Ed25519 as PKCS#8 v1, which ring's strict parser refuses.
            if let Ok(k) = Ed25519Key::from_pkcs8_maybe_unchecked_der(p8.secret_pkcs8_der()) {
                return Ok(DkimKey::Ed25519(k));
            }
            RsaKey::<Sha256>::from_key_der(der).map(DkimKey::Rsa).map_err(|e| bad(e.to_string()))
        }
        PrivateKeyDer::Pkcs1(_) => RsaKey::<Sha256>::from_key_der(der).map(DkimKey::Rsa).map_err(|e| bad(e.to_string())),
        _ => Err(bad("an EC (SEC1) key; DKIM takes RSA or Ed25519".into())),
    }
}

/// `rsa` or `ed25519`: the record's k= value.
pub fn kind(key: &DkimKey) -> &'static str {
    match key {
        DkimKey::Rsa(_) => "rsa",
        DkimKey::Ed25519(_) => "ed25519",
    }
}

/// Letters, digits, '-', '_' and '.', not starting with '.': safe to join to a
/// path and to put in a DNS name.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('.')
        && !s.contains("..")
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `control/dkim`.
pub fn dir(control: &Control) -> PathBuf {
    control.file("dkim")
}

/// The key files of `domain`: the selectors given, else every `*.key` in its
/// directory (none when there is no directory).
pub fn key_paths(control: &Control, domain: &str, selectors: &[String]) -> Result<Vec<(String, PathBuf)>, DkimError> {
    if !valid_name(domain) {
        return Err(DkimError::Name(domain.to_string()));
    }
    let d = dir(control).join(domain);
    if !selectors.is_empty() {
        return selectors
            .iter()
            .map(|s| if valid_name(s) { Ok((s.clone(), d.join(format!("{s}.key")))) } else { Err(DkimError::Name(s.clone())) })
            .collect();
    }
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DkimError::Read(d, e)),
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let sel = name.strip_suffix(".key")?;
            valid_name(sel).then(|| (sel.to_string(), e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// A parsed key with the mtime and size of the file it came from.
type Cached = (SystemTime, u64, Rc<DkimKey>);

thread_local! {
    /// Parsed keys by path, with the file's mtime and size: a postern-queued
    /// worker signs many messages, and parsing an RSA key costs more than a signature.
    static CACHE: RefCell<HashMap<PathBuf, Cached>> = RefCell::new(HashMap::new());
}

/// Read and parse a key file (cached while the file is unchanged).
pub fn load(path: &Path) -> Result<Rc<DkimKey>, DkimError> {
    let meta = std::fs::metadata(path).map_err(|e| DkimError::Read(path.to_path_buf(), e))?;
    let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
    if let Some(k) = CACHE.with(|c| c.borrow().get(path).filter(|(m, l, _)| (*m, *l) == stamp).map(|(_, _, k)| k.clone())) {
        return Ok(k);
    }
    let pem = std::fs::read(path).map_err(|e| DkimError::Read(path.to_path_buf(), e))?;
    let key = Rc::new(parse_key(&pem, path)?);
    CACHE.with(|c| c.borrow_mut().insert(path.to_path_buf(), (stamp.0, stamp.1, key.clone())));
    Ok(key)
}

/// The domain of the From: field, when there is exactly one From: field and all
/// its addresses are in one domain (lower case); None otherwise.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let (end, _) = headers::split(message);
    let header = &message[..end];
    let froms: Vec<_> = headers::fields(header).into_iter().filter(|f| f.name.eq_ignore_ascii_case("From")).collect();
    let [from] = froms.as_slice() else { return None };
    let parsed = mail_parser::MessageParser::new().parse_headers(&header[from.range.clone()])?;
    let mut domains = parsed
        .from()?
        .iter()
        .filter_map(|a| a.address())
        .map(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).filter(|d| !d.is_empty()));
    let first = domains.next()??;
    domains.all(|d| d.as_deref() == Some(first.as_str())).then_some(first)
}

/// The outcome of signing one message.
#[derive(Debug, Default)]
pub struct Signed {
    /// The DKIM-Signature fields to put before the message, LF line ends.
    pub fields: Vec<u8>,
    /// `selector (kind)` of each signature made.
    pub made: Vec<String>,
    /// Keys that could not be used; the message goes on without their signature.
    pub problems: Vec<DkimError>,
    /// The From: domain, when there is one to sign for.
    pub domain: Option<String>,
}

/// Sign an LF-terminated message (the queue's form) with `domain`'s keys.
pub fn sign_with(message: &[u8], domain: &str, keys: &[(String, PathBuf)]) -> Signed {
    let mut out = Signed { domain: Some(domain.to_string()), ..Signed::default() };
    if keys.is_empty() {
        return out;
    }
    // Verifiers see the message as it goes out: with CRLF line ends.
    let wire = lf_to_crlf(message);
    let fields = field_list(message);
    for (selector, path) in keys {
        let key = match load(path) {
            Ok(k) => k,
            Err(e) => {
                out.problems.push(e);
                continue;
            }
        };
        let sig = sign_one(&key, domain, selector, &fields, &wire);
        match sig {
            Ok(h) => {
                out.fields.extend_from_slice(&headers::crlf_to_lf(h.as_bytes()));
                out.made.push(format!("{selector} ({})", kind(&key)));
            }
            Err(e) => out.problems.push(DkimError::Sign(path.clone(), e)),
        }
    }
    out
}

/// The library's signer takes its key by value; keys are cached, so it gets this.
struct ByRef<'a>(&'a DkimKey);

impl SigningKey for ByRef<'_> {
    type Hasher = Sha256;
    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }
    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

fn sign_one(key: &DkimKey, domain: &str, selector: &str, fields: &[String], wire: &[u8]) -> Result<String, String> {
    DkimSigner::from_key(ByRef(key))
        .domain(domain)
        .selector(selector)
        .headers(fields.iter().cloned())
        .sign(wire)
        .map(|s| s.to_header())
        .map_err(|e| e.to_string())
}

/// The h= list for this message: each of SIGNED_FIELDS that it has, and From once more.
fn field_list(message: &[u8]) -> Vec<String> {
    let (end, _) = headers::split(message);
    let present = headers::fields(&message[..end]);
    let mut list: Vec<String> =
        SIGNED_FIELDS.iter().filter(|n| present.iter().any(|f| f.name.eq_ignore_ascii_case(n))).map(|n| n.to_string()).collect();
    // The library signs every occurrence of a listed name, then lists each name it
    // did not find once more: a second "From" is never found, so it is oversigned.
    list.push("From".into());
    list
}

fn lf_to_crlf(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 40);
    let mut prev = 0u8;
    for &b in msg {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The queue's whole signing step: find the From: domain, its selectors and keys,
/// and sign. Never fails: what goes wrong is in `problems`.
pub fn sign_message(control: &Control, message: &[u8]) -> Signed {
    let Some(domain) = from_domain(message) else { return Signed::default() };
    let selectors = match crate::smtp::outgoing::load_sources(control) {
        Ok(t) => t.find(&domain).map(|s| s.selectors).unwrap_or_default(),
        Err(e) => {
            // The source addresses are postern-remote's business; here a broken file
            // only means we fall back to the keys on disk.
            crate::os::log::line("postern-queue", &format!("{e}; DKIM uses the keys found under control/dkim"));
            Vec::new()
        }
    };
    match key_paths(control, &domain, &selectors) {
        Ok(keys) => sign_with(message, &domain, &keys),
        Err(e) => Signed { problems: vec![e], domain: Some(domain), ..Signed::default() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_domain_needs_one_field_and_one_domain() {
        assert_eq!(from_domain(b"Subject: x\nFrom: A <a@Ex.TEST>\n\nbody\n").as_deref(), Some("ex.test"));
        assert_eq!(from_domain(b"From: a@x.test, b@x.test\n\n").as_deref(), Some("x.test"));
        assert_eq!(from_domain(b"From: a@x.test, b@y.test\n\n"), None);
        assert_eq!(from_domain(b"From: a@x.test\nFrom: b@x.test\n\n"), None);
        assert_eq!(from_domain(b"To: a@x.test\n\n"), None);
        assert_eq!(from_domain(b"From: nobody\n\n"), None);
        // Found by fuzz/fuzz_targets/auth_headers.rs: an address ending in '@'
        // has no domain to sign for (it gave Some("")).
        assert_eq!(from_domain(b"From: \"q\" <qa.tt>se@\n\n"), None);
    }

    #[test]
    fn field_list_signs_what_is_there_and_oversigns_from() {
        let l = field_list(b"From: a@x.test\nto: b@y.test\nX-Other: 1\nSubject: s\n\nbody\n");
        assert_eq!(l, vec!["From", "Subject", "To", "From"]);
    }

    #[test]
    fn names_that_could_escape_a_directory_are_refused() {
        assert!(valid_name("mail-2024_a"));
        assert!(valid_name("ex.test"));
        for bad in ["", "..", "../x", ".x", "a/b", "a b", "a..b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn line_ends() {
        assert_eq!(lf_to_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc");
    }
}
