//! MTA-STS (RFC 8461): a recipient domain's published promise that its MX hosts
//! speak TLS with certificates valid for their names. postern-remote (postern-r)
//! asks for it before delivering by MX (not over an smtproutes relay).
//!
//! The steps, each decided here:
//! - The TXT record `_mta-sts.DOMAIN`: exactly one record starting `v=STSv1`,
//!   with an `id`; anything else means "no policy published".
//! - The policy, `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`, fetched with
//!   a hand-written HTTP/1.0 GET over TLS verified against control/tlsca.pem (or
//!   the public web roots): 200 only (no redirects, RFC 8461 3.3), text/plain, at
//!   most `MAX_POLICY` bytes, the whole fetch within `timeoutmtasts` seconds. The
//!   port is `mtastsport` (443; other values are for tests).
//! - The cache, `run/sts/DOMAIN` (postern-r's, 0700): fetch time, id, the
//!   policy as fetched. It is used while unexpired (fetched + max_age) when the
//!   TXT id is the same, when the TXT record is missing or its lookup fails, and
//!   when a fetch fails (RFC 8461 5.1). A policy whose fetch or parse failed is
//!   never cached.
//! - `enforce`: only MX hosts matching an `mx` pattern are tried, STARTTLS is
//!   required and the certificate must be valid for the MX host's name; failing
//!   that, the host is skipped and the message deferred (never sent in plain
//!   text). `testing`: delivery as without a policy, with a log line for what
//!   enforce would have refused. `none`: nothing.
//!
//! Parsers here take bytes and do no I/O (`parse_txt`, `parse_policy`,
//! `parse_response`, `Cached::parse`); fuzz/fuzz_targets/mtasts.rs feeds them.

use crate::config::control::{Control, ControlError};
use crate::config::settings;
use crate::os::home::Home;
use hickory_resolver::proto::rr::{RData, RecordType};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest policy body accepted (RFC 8461 3.3 suggests 64 KiB).
pub const MAX_POLICY: usize = 64 * 1024;
/// The most bytes of status line and header fields read before the body.
pub const MAX_HEAD: usize = 8 * 1024;
/// RFC 8461 3.2: max_age is at most 31557600 (a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// Lowercased, without a trailing dot; `*.` patterns match one label.
    pub mx: Vec<String>,
    pub max_age: u64,
}

/// The `id` of a `_mta-sts` TXT record (`v=STSv1; id=...`), or None when the
/// record is not an STSv1 record or has no valid id (1 to 32 letters and digits).
pub fn parse_txt(record: &str) -> Option<String> {
    let mut fields = record.split(';').map(str::trim);
    if fields.next() != Some("v=STSv1") {
        return None;
    }
    let mut id = None;
    for f in fields.filter(|f| !f.is_empty()) {
        let (k, v) = f.split_once('=')?;
        if k.trim() == "id" && id.is_none() {
            let v = v.trim();
            if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return None;
            }
            id = Some(v.to_string());
        }
    }
    id
}

/// The id from every TXT record at `_mta-sts.DOMAIN`: records not starting
/// with `v=STSv1` are ignored; none or more than one left means no policy
/// (RFC 8461 3.1).
pub fn id_from_records(records: &[String]) -> Option<String> {
    let sts: Vec<&String> = records.iter().filter(|r| r.starts_with("v=STSv1")).collect();
    match sts.as_slice() {
        [one] => parse_txt(one),
        _ => None,
    }
}

/// The policy file (RFC 8461 3.2): `key: value` lines, CRLF or LF. version must
/// be STSv1; mode and max_age are required, and at least one mx unless the mode
/// is none. Unknown keys are ignored; of a repeated key other than mx the first
/// counts. max_age above a year is cut to a year.
pub fn parse_policy(body: &[u8]) -> Result<Policy, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the policy is not UTF-8".to_string())?;
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(format!("the line {:?} is not key: value", show(line)));
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "version" if version.is_none() => version = Some(v),
            "mode" if mode.is_none() => {
                mode = Some(match v {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("unknown mode {:?}", show(other))),
                })
            }
            "max_age" if max_age.is_none() => {
                if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("max_age {:?} is not a number of seconds", show(v)));
                }
                max_age = Some(v.parse::<u64>().map_err(|e| e.to_string())?.min(MAX_AGE_LIMIT));
            }
            "mx" => {
                let p = v.trim_end_matches('.').to_ascii_lowercase();
                let host = p.strip_prefix("*.").unwrap_or(&p);
                if host.is_empty() || !host.split('.').all(valid_label) {
                    return Err(format!("mx {:?} is not a host name or *.pattern", show(v)));
                }
                mx.push(p);
            }
            _ => {}
        }
    }
    match version {
        Some("STSv1") => {}
        Some(v) => return Err(format!("version {:?} is not STSv1", show(v))),
        None => return Err("no version field".into()),
    }
    let mode = mode.ok_or("no mode field")?;
    let max_age = max_age.ok_or("no max_age field")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("no mx field".into());
    }
    Ok(Policy { mode, mx, max_age })
}

fn show(s: &str) -> String {
    s.chars().take(80).collect()
}

fn valid_label(l: &str) -> bool {
    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `host` (an MX name) matches the pattern: equal, or `*.rest` with
/// exactly one label in place of the star (RFC 8461 4.1). Case-insensitive.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(rest) => host.split_once('.').is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
        None => host == pattern,
    }
}

impl Policy {
    pub fn allows(&self, host: &str) -> bool {
        self.mx.iter().any(|p| mx_matches(p, host))
    }
}

/// Why a fetched reply is not a usable policy file.
#[derive(Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The status line and fields did not end within MAX_HEAD bytes, or the
    /// stream ended before they did.
    BadHead(String),
    Status(String),
    ContentType(String),
    /// The body is larger than MAX_POLICY.
    TooBig,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadHead(why) => write!(f, "the HTTP reply is malformed: {why}"),
            HttpError::Status(line) => write!(f, "the server answered {line:?}, not 200 (redirects are not followed)"),
            HttpError::ContentType(t) => write!(f, "the policy's Content-Type is {t:?}, not text/plain"),
            HttpError::TooBig => write!(f, "the policy is larger than {MAX_POLICY} bytes; refused"),
        }
    }
}

/// The body of a whole HTTP/1.x reply (read to the end of the stream): 200,
/// Content-Type text/plain, at most MAX_POLICY bytes.
pub fn parse_response(reply: &[u8]) -> Result<&[u8], HttpError> {
    let end = find(reply, b"\r\n\r\n").map(|i| (i, i + 4)).or_else(|| find(reply, b"\n\n").map(|i| (i, i + 2)));
    let Some((head_end, body_start)) = end.filter(|&(h, _)| h <= MAX_HEAD) else {
        return Err(HttpError::BadHead(if reply.len() > MAX_HEAD {
            format!("no end of the header within {MAX_HEAD} bytes")
        } else {
            "the reply ended inside its header".into()
        }));
    };
    let head = String::from_utf8_lossy(&reply[..head_end]);
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status = lines.next().unwrap_or("");
    let mut parts = status.split(' ');
    let (proto, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !proto.starts_with("HTTP/1.") {
        return Err(HttpError::BadHead(format!("{:?} is not an HTTP/1 status line", show(status))));
    }
    if code != "200" {
        return Err(HttpError::Status(show(status)));
    }
    let mut ctype = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-type") && ctype.is_none() {
                ctype = Some(v.trim().to_string());
            }
        }
    }
    let ctype = ctype.unwrap_or_default();
    let media = ctype.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("text/plain") {
        return Err(HttpError::ContentType(show(&ctype)));
    }
    let body = &reply[body_start..];
    if body.len() > MAX_POLICY {
        return Err(HttpError::TooBig);
    }
    Ok(body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A policy in the cache: when it was fetched, under which TXT id, and the
/// policy file as fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    pub fetched: u64,
    pub id: String,
    pub policy: Policy,
    pub body: Vec<u8>,
}

impl Cached {
    /// The cache file: `fetched SECONDS\nid ID\n` then the policy body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("fetched {}\nid {}\n", self.fetched, self.id).into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Cached, String> {
        let mut rest = bytes;
        let mut line = |key: &str| -> Result<String, String> {
            let i = rest.iter().position(|&b| b == b'\n').ok_or("truncated")?;
            let l = std::str::from_utf8(&rest[..i]).map_err(|_| "not UTF-8")?;
            rest = &rest[i + 1..];
            l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).map(str::to_string).ok_or(format!("no {key} line"))
        };
        let fetched = line("fetched")?.parse().map_err(|_| "fetched is not a number")?;
        let id = line("id")?;
        let policy = parse_policy(rest)?;
        Ok(Cached { fetched, id, policy, body: rest.to_vec() })
    }

    pub fn fresh(&self, now: u64) -> bool {
        now < self.fetched.saturating_add(self.policy.max_age)
    }
}

/// The policy that applies to one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Active {
    pub id: String,
    pub policy: Policy,
    /// "fetched" or "cached": for the log line.
    pub from: &'static str,
}

impl Active {
    /// How log lines and reports name it: `mta-sts enforce id=ID`.
    pub fn label(&self) -> String {
        format!("mta-sts {} id={}", self.policy.mode, self.id)
    }

    pub fn enforce(&self) -> bool {
        self.policy.mode == Mode::Enforce
    }

    pub fn testing(&self) -> bool {
        self.policy.mode == Mode::Testing
    }
}

/// Why a policy could not be had.
#[derive(Debug)]
pub enum StsError {
    Control(ControlError),
    Setup(String),
    Dns(String),
    /// mta-sts.DOMAIN has no address, or none answered.
    Connect(String, String),
    Tls(String, String),
    Io(String, String),
    /// No complete reply within timeoutmtasts.
    Timeout(String, u64),
    Http(String, HttpError),
    Policy(String, String),
    /// The domain cannot name a cache file.
    BadDomain(String),
}

impl fmt::Display for StsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StsError::Control(e) => write!(f, "{e}"),
            StsError::Setup(e) => write!(f, "cannot set up DNS or TLS for MTA-STS: {e}"),
            StsError::Dns(e) => write!(f, "DNS: {e}"),
            StsError::Connect(h, e) => write!(f, "cannot connect to {h}: {e}"),
            StsError::Tls(h, e) => write!(f, "TLS with {h} failed: {e}"),
            StsError::Io(h, e) => write!(f, "reading from {h} failed: {e}"),
            StsError::Timeout(h, s) => write!(f, "{h} did not send the whole policy within {s} seconds"),
            StsError::Http(h, e) => write!(f, "{h}: {e}"),
            StsError::Policy(h, e) => write!(f, "the policy from {h} does not parse: {e}"),
            StsError::BadDomain(d) => write!(f, "{d:?} is not a domain name"),
        }
    }
}

/// Settings for MTA-STS, read once per delivery.
pub struct Settings {
    pub enabled: bool,
    pub port: u16,
    pub timeout: Duration,
    pub ca: Option<PathBuf>,
    pub cache: PathBuf,
}

impl Settings {
    pub fn load(home: &Home, control: &Control, ca: Option<PathBuf>) -> Result<Settings, ControlError> {
        let port = control.number(&settings::MTASTSPORT)?;
        Ok(Settings {
            enabled: control.number(&settings::MTASTS)? != 0,
            port: u16::try_from(port).map_err(|_| ControlError {
                path: control.path(&settings::MTASTSPORT),
                line: None,
                problem: format!("{port} is not a port number"),
            })?,
            timeout: control.seconds(&settings::TIMEOUTMTASTS)?,
            ca,
            cache: home.root().join("run/sts"),
        })
    }
}

/// A domain usable as a cache file name and in a URL: letters, digits, '-',
/// '_' and dots between labels.
fn domain_ok(d: &str) -> bool {
    !d.is_empty() && d.len() <= 253 && d.split('.').all(valid_label)
}

/// The policy for `domain`, with one log line through `log` for every
/// problem on the way (a missing policy is not a problem). None: no policy
/// applies.
pub fn for_domain(control: &Control, s: &Settings, domain: &str, log: &mut dyn FnMut(String)) -> Option<Active> {
    if !s.enabled {
        return None;
    }
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !domain_ok(&domain) {
        log(format!("mta-sts: {}", StsError::BadDomain(domain)));
        return None;
    }
    let now = crate::os::time::now();
    let cache_file = s.cache.join(&domain);
    let cached = match std::fs::read(&cache_file) {
        Ok(b) => match Cached::parse(&b) {
            Ok(c) => Some(c),
            Err(e) => {
                log(format!("mta-sts: ignoring the cache {}: {e}", cache_file.display()));
                None
            }
        },
        Err(_) => None,
    }
    .filter(|c| c.fresh(now));
    let use_cache = |c: Cached| Active { id: c.id, policy: c.policy, from: "cached" };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log(format!("mta-sts: {}", StsError::Setup(e.to_string())));
            return cached.map(use_cache);
        }
    };
    let resolver = match crate::smtp::mx::resolver(control, s.timeout) {
        Ok(r) => r,
        Err(e) => {
            log(format!("mta-sts: {}", StsError::Setup(e.to_string())));
            return cached.map(use_cache);
        }
    };
    let id = match txt_id(&rt, &resolver, &domain) {
        Ok(Some(id)) => id,
        // No record (or a failed lookup): a fresh cached policy still holds (RFC 8461 5.1).
        Ok(None) => return cached.map(use_cache),
        Err(e) => {
            log(format!("mta-sts: _mta-sts.{domain} TXT: {e}"));
            return cached.map(use_cache);
        }
    };
    if let Some(c) = cached.as_ref().filter(|c| c.id == id) {
        return Some(use_cache(c.clone()));
    }
    match fetch(&rt, &resolver, s, &domain) {
        Ok((policy, body)) => {
            let c = Cached { fetched: now, id: id.clone(), policy: policy.clone(), body };
            if let Err(e) = store(&s.cache, &cache_file, &c) {
                log(format!("mta-sts: cannot cache the policy of {domain} in {}: {e}", cache_file.display()));
            }
            Some(Active { id, policy, from: "fetched" })
        }
        Err(e) => {
            let fallback = if cached.is_some() { "using the cached policy" } else { "no policy applies" };
            log(format!("mta-sts: fetching the policy of {domain} (id={id}) failed: {e}; {fallback}"));
            cached.map(use_cache)
        }
    }
}

fn store(dir: &Path, file: &Path, c: &Cached) -> io::Result<()> {
    if !dir.exists() {
        std::fs::create_dir(dir)?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    }
    crate::os::fs::write_atomic(file, &c.encode(), 0o600)
}

fn txt_id(rt: &tokio::runtime::Runtime, resolver: &hickory_resolver::TokioResolver, domain: &str) -> Result<Option<String>, StsError> {
    use hickory_resolver::net::{DnsError, NetError};
    let name = format!("_mta-sts.{domain}.");
    match rt.block_on(resolver.lookup(name.as_str(), RecordType::TXT)) {
        Ok(l) => {
            let records: Vec<String> = l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => Some(t.txt_data.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect()),
                    _ => None,
                })
                .collect();
            Ok(id_from_records(&records))
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok(None),
        Err(e) => Err(StsError::Dns(e.to_string())),
    }
}

/// GET the policy of `domain`; the parsed policy and its body.
fn fetch(
    rt: &tokio::runtime::Runtime,
    resolver: &hickory_resolver::TokioResolver,
    s: &Settings,
    domain: &str,
) -> Result<(Policy, Vec<u8>), StsError> {
    let host = format!("mta-sts.{domain}");
    let deadline = Instant::now() + s.timeout;
    let ips: Vec<IpAddr> = rt
        .block_on(resolver.lookup_ip(format!("{host}.").as_str()))
        .map_err(|e| StsError::Connect(host.clone(), format!("no address: {e}")))?
        .iter()
        .collect();
    let config = crate::net::tls::client_config_verified(s.ca.as_deref()).map_err(|e| StsError::Setup(e.to_string()))?;
    let mut last = StsError::Connect(host.clone(), "no address".into());
    for ip in ips {
        match get(&config, &host, SocketAddr::new(ip, s.port), deadline, s.timeout.as_secs()) {
            Ok(reply) => {
                let body = parse_response(&reply).map_err(|e| StsError::Http(host.clone(), e))?;
                let policy = parse_policy(body).map_err(|e| StsError::Policy(host.clone(), e))?;
                return Ok((policy, body.to_vec()));
            }
            Err(e @ StsError::Connect(..)) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// One GET over TLS; the whole reply, at most MAX_HEAD + MAX_POLICY + 1 bytes
/// (one more than parse_response accepts, so an oversized policy is seen as such).
fn get(config: &Arc<rustls::ClientConfig>, host: &str, addr: SocketAddr, deadline: Instant, secs: u64) -> Result<Vec<u8>, StsError> {
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let tcp = TcpStream::connect_timeout(&addr, left()).map_err(|e| StsError::Connect(host.into(), format!("{addr}: {e}")))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| StsError::Tls(host.into(), e.to_string()))?;
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| StsError::Tls(host.into(), e.to_string()))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let timed_out = |e: &io::Error| matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut);
    tls.sock.set_write_timeout(Some(left())).map_err(|e| StsError::Io(host.into(), e.to_string()))?;
    let req = format!("GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\nUser-Agent: postern\r\nConnection: close\r\n\r\n");
    // The handshake happens in this write; a certificate problem shows here.
    tls.write_all(req.as_bytes()).and_then(|_| tls.flush()).map_err(|e| {
        if timed_out(&e) {
            StsError::Timeout(host.into(), secs)
        } else {
            StsError::Tls(host.into(), e.to_string())
        }
    })?;
    let cap = MAX_HEAD + MAX_POLICY + 1;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while reply.len() < cap {
        if Instant::now() >= deadline {
            return Err(StsError::Timeout(host.into(), secs));
        }
        tls.sock.set_read_timeout(Some(left())).map_err(|e| StsError::Io(host.into(), e.to_string()))?;
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n.min(cap - reply.len())]),
            // HTTP/1.0 ends at the close; servers often skip close_notify.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) if timed_out(&e) => return Err(StsError::Timeout(host.into(), secs)),
            Err(e) => return Err(StsError::Io(host.into(), e.to_string())),
        }
    }
    Ok(reply)
}

/// Check a certificate chain the way an enforced policy would (valid for
/// `host` under control/tlsca.pem or the web roots), for `testing` policies,
/// whose deliveries used any certificate.
pub fn would_verify(ca: Option<&Path>, host: &str, chain: &[rustls::pki_types::CertificateDer<'static>]) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    let (end, intermediates) = chain.split_first().ok_or("no certificate")?;
    let roots = crate::net::tls::root_store(ca).map_err(|e| e.to_string())?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::net::tls::provider())
        .build()
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    verifier.verify_server_cert(end, intermediates, &name, &[], rustls::pki_types::UnixTime::now()).map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_records() {
        assert_eq!(parse_txt("v=STSv1; id=20160831085700Z;"), Some("20160831085700Z".into()));
        assert_eq!(parse_txt("v=STSv1;id=abc"), Some("abc".into()));
        assert_eq!(parse_txt("v=STSv1; id=abc; ext=1"), Some("abc".into()));
        assert_eq!(parse_txt("v=STSv2; id=abc"), None);
        assert_eq!(parse_txt("v=STSv1"), None);
        assert_eq!(parse_txt("v=STSv1; id=a-b"), None);
        assert_eq!(parse_txt(&format!("v=STSv1; id={}", "a".repeat(33))), None);
        assert_eq!(parse_txt("v=STSv1; garbage"), None);
        let recs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(id_from_records(&recs(&["v=spf1 -all", "v=STSv1; id=x1"])), Some("x1".into()));
        assert_eq!(id_from_records(&recs(&["v=STSv1; id=x1", "v=STSv1; id=x2"])), None);
        assert_eq!(id_from_records(&recs(&[])), None);
    }

    #[test]
    fn policies_parse() {
        let p =
            parse_policy(b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.net.\r\nmax_age: 86400\r\n").unwrap();
        assert_eq!(p, Policy { mode: Mode::Enforce, mx: vec!["mail.example.com".into(), "*.example.net".into()], max_age: 86400 });
        let p = parse_policy(b"version: STSv1\nmode: testing\nmx: a.test\nmax_age: 99999999999\n").unwrap_err();
        assert!(p.contains("max_age"), "{p}");
        let p = parse_policy(b"version: STSv1\nmode: testing\nmx: a.test\nmax_age: 9999999999\nfuture: x\n").unwrap();
        assert_eq!((p.mode, p.max_age), (Mode::Testing, MAX_AGE_LIMIT));
        assert_eq!(parse_policy(b"version: STSv1\nmode: none\nmax_age: 1\n").unwrap().mode, Mode::None);
        assert!(parse_policy(b"version: STSv1\nmode: enforce\nmax_age: 1\n").unwrap_err().contains("mx"));
        assert!(parse_policy(b"mode: enforce\nmx: a\nmax_age: 1\n").unwrap_err().contains("version"));
        assert!(parse_policy(b"version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n").is_err());
        assert!(parse_policy(b"version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n").is_err());
        assert!(parse_policy(b"version: STSv1\nmode: enforce\nmx: a\nmax_age: -1\n").is_err());
        assert!(parse_policy(b"version: STSv1\nmode: enforce\nmx: a b\nmax_age: 1\n").is_err());
        assert!(parse_policy(b"version: STSv1\nmode: enforce\nmx: a\n").is_err());
        assert!(parse_policy(b"<html>not a policy</html>").is_err());
        assert!(parse_policy(b"\xff").is_err());
    }

    #[test]
    fn mx_patterns() {
        assert!(mx_matches("mail.example.com", "MAIL.example.com."));
        assert!(mx_matches("*.example.com", "mx1.example.com"));
        assert!(!mx_matches("*.example.com", "example.com"));
        assert!(!mx_matches("*.example.com", "a.b.example.com"));
        assert!(!mx_matches("*.example.com", "mx1.example.net"));
        assert!(!mx_matches("mail.example.com", "other.example.com"));
        assert!(!mx_matches("*.example.com", ".example.com"));
    }

    #[test]
    fn http_replies() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nversion: STSv1\r\n";
        assert_eq!(parse_response(ok), Ok(&b"version: STSv1\r\n"[..]));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\ncontent-type: TEXT/PLAIN\n\nx"), Ok(&b"x"[..]));
        assert!(matches!(parse_response(b"HTTP/1.0 301 Moved\r\nLocation: x\r\n\r\n"), Err(HttpError::Status(_))));
        assert!(matches!(parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\nx"), Err(HttpError::ContentType(_))));
        assert!(matches!(parse_response(b"HTTP/1.0 200 OK\r\n\r\nx"), Err(HttpError::ContentType(_))));
        assert!(matches!(parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"), Err(HttpError::BadHead(_))));
        assert!(matches!(parse_response(b"SMTP 200\r\n\r\n"), Err(HttpError::BadHead(_))));
        let mut big = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        big.resize(big.len() + MAX_POLICY, b'a');
        assert!(parse_response(&big).is_ok());
        big.push(b'a');
        assert_eq!(parse_response(&big), Err(HttpError::TooBig));
        let long_head = vec![b'x'; MAX_HEAD + 10];
        assert!(matches!(parse_response(&long_head), Err(HttpError::BadHead(_))));
    }

    #[test]
    fn cache_files_round_trip_and_expire() {
        let body = b"version: STSv1\nmode: enforce\nmx: *.a.test\nmax_age: 100\n".to_vec();
        let c = Cached { fetched: 1000, id: "abc".into(), policy: parse_policy(&body).unwrap(), body };
        assert_eq!(Cached::parse(&c.encode()), Ok(c.clone()));
        assert!(c.fresh(1099) && !c.fresh(1100));
        assert!(Cached::parse(b"fetched x\nid a\n").is_err());
        assert!(Cached::parse(b"fetched 1\n").is_err());
        assert!(Cached::parse(b"fetched 1\nid a\nversion: STSv1\n").is_err());
    }

    #[test]
    fn domains_for_cache_names() {
        assert!(domain_ok("a-b.example.com"));
        assert!(!domain_ok("../etc"));
        assert!(!domain_ok("a/b"));
        assert!(!domain_ok(""));
        assert!(!domain_ok("a..b"));
    }
}
