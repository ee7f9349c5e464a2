//! `postern-admin dkim keygen` and `dkim show`: making a key with openssl
//! genpkey, storing it where only the queue's uid reads it, and the DNS TXT
//! record to publish for it.
//!
//! RSA's p= is the SubjectPublicKeyInfo (RFC 6376 appendix C, what opendkim and
//! dkimpy publish); Ed25519's is the bare 32-byte key (RFC 8463 section 4.2).

use super::{kind, load, valid_name, DkimError};
use crate::config::control::Control;
use crate::error::{Classify, Kind};
use mail_auth::common::crypto::DkimKey;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug)]
pub enum KeygenError {
    /// A bad domain, selector or key type (permanent).
    Usage(String),
    /// The key file exists: it is never overwritten.
    Exists(PathBuf),
    /// openssl could not be run or failed.
    Openssl(String),
    /// Creating the directory or the file failed.
    Write(PathBuf, std::io::Error),
    /// The key written cannot be read back (a bug or a broken openssl).
    Key(DkimError),
}

impl fmt::Display for KeygenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeygenError::Usage(s) => f.write_str(s),
            KeygenError::Exists(p) => {
                write!(f, "{} exists; remove it first, or choose another selector (--selector) to roll keys", p.display())
            }
            KeygenError::Openssl(s) => write!(f, "openssl genpkey: {s} (is openssl installed?)"),
            KeygenError::Write(p, e) => write!(f, "cannot write {}: {e}", p.display()),
            KeygenError::Key(e) => write!(f, "{e}"),
        }
    }
}

impl Classify for KeygenError {
    fn kind(&self) -> Kind {
        match self {
            KeygenError::Usage(_) | KeygenError::Exists(_) => Kind::Permanent,
            _ => Kind::Temporary,
        }
    }
}

/// The selector keygen picks when none is given: the key type and the month,
/// `rsa202611` or `ed202611`, so a later key (a rollover) gets a new name.
pub fn default_selector(key_type: &str, now: std::time::SystemTime) -> String {
    let days = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86400).unwrap_or(0) as i64;
    let (y, m, _) = crate::message::date::civil_from_days(days);
    format!("{}{y}{m:02}", if key_type == "ed25519" { "ed" } else { "rsa" })
}

/// A key on disk and its record.
pub struct Published {
    pub domain: String,
    pub selector: String,
    pub path: PathBuf,
    /// The whole zone-file line.
    pub record: String,
}

/// Make a key for `domain` with `selector` (`rsa`: 2048 bits, or `ed25519`),
/// owned by `owner` (uid, gid) when given, mode 0600, in a directory of mode 0700.
pub fn keygen(
    control: &Control,
    domain: &str,
    selector: &str,
    key_type: &str,
    owner: Option<(u32, u32)>,
) -> Result<Published, KeygenError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    for n in [&domain, &selector.to_string()] {
        if !valid_name(n) {
            return Err(KeygenError::Usage(DkimError::Name(n.clone()).to_string()));
        }
    }
    let args: &[&str] = match key_type {
        "rsa" => &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "ed25519" => &["genpkey", "-algorithm", "ed25519"],
        other => return Err(KeygenError::Usage(format!("{other:?} is not a key type: rsa or ed25519"))),
    };
    let dkim = super::dir(control);
    let dir = dkim.join(&domain);
    let path = dir.join(format!("{selector}.key"));
    if path.exists() {
        return Err(KeygenError::Exists(path));
    }
    // The PEM goes to our stdout pipe: no file with the secret exists before ours.
    let out = std::process::Command::new("openssl").args(args).output().map_err(|e| KeygenError::Openssl(e.to_string()))?;
    if !out.status.success() {
        return Err(KeygenError::Openssl(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    create_dir(&dkim, 0o755, None)?;
    create_dir(&dir, 0o700, owner)?;
    write_new(&path, &out.stdout, owner)?;
    let key = load(&path).map_err(KeygenError::Key)?;
    Ok(Published { record: record(&domain, selector, &key), domain, selector: selector.to_string(), path })
}

fn create_dir(dir: &std::path::Path, mode: u32, owner: Option<(u32, u32)>) -> Result<(), KeygenError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let werr = |e| KeygenError::Write(dir.to_path_buf(), e);
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(werr)?;
            if let Some((u, g)) = owner {
                std::os::unix::fs::chown(dir, Some(u), Some(g)).map_err(werr)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(werr(e)),
    }
}

/// Create `path` with mode 0600 before any byte is in it, then give it to `owner`.
fn write_new(path: &std::path::Path, content: &[u8], owner: Option<(u32, u32)>) -> Result<(), KeygenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let werr = |e| KeygenError::Write(path.to_path_buf(), e);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(werr)?;
    if let Some((u, g)) = owner {
        std::os::unix::fs::fchown(&f, Some(u), Some(g)).map_err(werr)?;
    }
    f.write_all(content).and_then(|()| f.sync_all()).map_err(werr)?;
    crate::os::fs::sync_dir(path.parent().unwrap_or(std::path::Path::new("."))).map_err(werr)
}

/// The key's p= value, base64.
pub fn public_key(key: &DkimKey) -> String {
    let raw = match key {
        DkimKey::Rsa(k) => spki_rsa(&k.public_key()),
        DkimKey::Ed25519(k) => k.public_key(),
    };
    crate::proto::base64::encode(&raw)
}

/// `SELECTOR._domainkey.DOMAIN. IN TXT "..." "..."`: the record's text in
/// strings of at most 255 bytes (one TXT record; resolvers join the strings).
pub fn record(domain: &str, selector: &str, key: &DkimKey) -> String {
    let text = format!("v=DKIM1; k={}; p={}", kind(key), public_key(key));
    let strings: Vec<String> = text.as_bytes().chunks(255).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
    format!("{selector}._domainkey.{domain}. IN TXT {}", strings.join(" "))
}

/// Every key under control/dkim (or only `domain`'s), with its record or why
/// there is none; sorted by domain and selector.
pub fn show(control: &Control, domain: Option<&str>) -> Result<Vec<Result<Published, DkimError>>, DkimError> {
    let dkim = super::dir(control);
    let domains: Vec<String> = match domain {
        Some(d) => vec![d.trim_end_matches('.').to_ascii_lowercase()],
        None => match std::fs::read_dir(&dkim) {
            Ok(entries) => {
                let mut v: Vec<String> =
                    entries.flatten().filter(|e| e.path().is_dir()).filter_map(|e| e.file_name().into_string().ok()).collect();
                v.sort();
                v
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(DkimError::Read(dkim, e)),
        },
    };
    let mut out = Vec::new();
    for d in domains {
        for (selector, path) in super::key_paths(control, &d, &[])? {
            out.push(load(&path).map(|k| Published { record: record(&d, &selector, &k), domain: d.clone(), selector, path: path.clone() }));
        }
    }
    Ok(out)
}

/// showctl's last part: each sender domain named in control/outgoingip or
/// with keys under control/dkim, with its source address, HELO name and the
/// DKIM keys that sign its mail (and why a key cannot).
pub fn sender_domains(control: &Control) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("sender domains (control/outgoingip and control/dkim/DOMAIN/):\n");
    let table = match crate::smtp::outgoing::load_sources(control) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(out, "  ERROR {e}");
            Default::default()
        }
    };
    let mut domains: Vec<String> = table.keys().map(str::to_string).collect();
    if let Ok(entries) = std::fs::read_dir(super::dir(control)) {
        let mut on_disk: Vec<String> =
            entries.flatten().filter(|e| e.path().is_dir()).filter_map(|e| e.file_name().into_string().ok()).collect();
        on_disk.sort();
        domains.extend(on_disk.into_iter().filter(|d| !table.keys().any(|k| k == d)));
    }
    if domains.is_empty() {
        out.push_str("  (none: the kernel picks the address, HELO is helohost, nothing is signed)\n");
    }
    for d in domains {
        let src = table.find(&d).unwrap_or_default();
        let addrs: Vec<String> = [src.v4, src.v6].iter().flatten().map(|a| a.to_string()).collect();
        let name = if d.is_empty() { "(every other domain)" } else { d.as_str() };
        let _ = write!(
            out,
            "  {name}: address {}; helo {}; dkim ",
            if addrs.is_empty() { "(any)".to_string() } else { addrs.join(",") },
            src.helo.as_deref().unwrap_or("(helohost)")
        );
        let keys = if d.is_empty() || d.starts_with('.') {
            let _ = writeln!(
                out,
                "{}",
                if src.selectors.is_empty() {
                    "(keys of each From: domain)".to_string()
                } else {
                    format!("selectors {} of each From: domain", src.selectors.join(","))
                }
            );
            continue;
        } else {
            super::key_paths(control, &d, &src.selectors)
        };
        match keys {
            Ok(k) if k.is_empty() => out.push_str("(no keys: not signed)\n"),
            Ok(k) => {
                let shown: Vec<String> = k
                    .iter()
                    .map(|(sel, path)| match load(path) {
                        Ok(key) => format!("{sel} ({})", kind(&key)),
                        Err(e) => format!("{sel} (ERROR {e})"),
                    })
                    .collect();
                let _ = writeln!(out, "{}", shown.join(", "));
            }
            Err(e) => {
                let _ = writeln!(out, "ERROR {e}");
            }
        }
    }
    out
}

/// An RSA key's SubjectPublicKeyInfo from its PKCS#1 RSAPublicKey: the
/// rsaEncryption algorithm identifier and the key in a BIT STRING (DER).
fn spki_rsa(pkcs1: &[u8]) -> Vec<u8> {
    const ALG: &[u8] = &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut body = ALG.to_vec();
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut v = vec![tag];
    if n < 0x80 {
        v.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().iter().copied().skip_while(|&b| b == 0).collect();
        v.push(0x80 | bytes.len() as u8);
        v.extend(bytes);
    }
    v.extend_from_slice(content);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }
}
