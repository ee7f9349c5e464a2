//! postern-listen's access rules: which clients may connect, and the environment
//! their program gets (RELAYCLIENT and the like), in tcpserver's rules format,
//! compiled to a cdb with `postern-listen -X SRC DST`.
//!
//! # The text format (tcprules', plus CIDR and IPv6)
//! ```text
//! # comment
//! 127.0.0.1:allow,RELAYCLIENT=""      one address
//! 10.0.:deny                          a dotted prefix (10.0.0.0/16)
//! 192.168.1.10-19:allow,X="y z"       a range in the last octet
//! 172.16.0.0/12:deny                  CIDR
//! 2001:db8::/32:allow,RELAYCLIENT=""  IPv6 CIDR; ::1:deny one address;
//! fe80:1::deny                        an IPv6 prefix of whole groups (fe80:1:)
//! :allow                              everyone else (the default)
//! ```
//! The address ends at the first `:allow` or `:deny`. Variables follow
//! as `,NAME=value` (value unquoted, or in "..." or '...'). The most specific
//! (longest) prefix wins; between equal ones, the first line. With no matching line
//! a connection is allowed with nothing added, as tcpserver does.
//!
//! # The cdb
//! Key `4` or `6` followed by the prefix's bits as '0'/'1' characters (the default
//! rule's key is empty); value `A` or `D` then `NAME=value\0` per variable.

use crate::error::{Classify, Kind};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum RulesError {
    /// A line of the text file does not parse.
    Syntax {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    Read(PathBuf, std::io::Error),
    Cdb(crate::config::cdb::CdbError),
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RulesError::Syntax { path, line, problem } => {
                write!(f, "rules file {} line {line}: {problem}; fix it and compile again with postern-listen -X", path.display())
            }
            RulesError::Read(p, e) => write!(f, "cannot read rules file {}: {e}", p.display()),
            RulesError::Cdb(e) => write!(f, "{e}; compile the rules again with postern-listen -X SRC DST"),
        }
    }
}

impl Classify for RulesError {
    fn kind(&self) -> Kind {
        match self {
            RulesError::Syntax { .. } => Kind::Permanent,
            _ => Kind::Temporary,
        }
    }
}

/// What a rule says about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub env: Vec<(String, String)>,
}

/// One line: the cdb key of its prefix and the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub keys: Vec<String>,
    pub decision: Decision,
}

fn bits(bytes: &[u8], n: usize) -> String {
    (0..n).map(|i| if bytes[i / 8] >> (7 - i % 8) & 1 == 1 { '1' } else { '0' }).collect()
}

/// The key for the first `len` bits of `ip`.
fn key(ip: IpAddr, len: usize) -> String {
    match ip {
        IpAddr::V4(a) => format!("4{}", bits(&a.octets(), len)),
        IpAddr::V6(a) => format!("6{}", bits(&a.octets(), len)),
    }
}

/// An IPv4-mapped IPv6 client (a dual-stack "::" listener) is matched as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The keys an address expression stands for.
fn address_keys(addr: &str) -> Result<Vec<String>, String> {
    if addr.is_empty() {
        return Ok(vec![String::new()]);
    }
    if let Some((a, len)) = addr.split_once('/') {
        let ip: IpAddr = a.parse().map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len: usize = len.parse().ok().filter(|&l| l <= max).ok_or_else(|| format!("/{len} is not a prefix length 0..{max}"))?;
        return Ok(vec![key(ip, len)]);
    }
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return Ok(vec![key(ip, if ip.is_ipv4() { 32 } else { 128 })]);
    }
    if addr.contains(':') {
        // An IPv6 prefix of whole groups: "2001:db8:".
        let groups: Vec<&str> =
            addr.strip_suffix(':').ok_or_else(|| format!("{addr:?} is not an IPv6 address or prefix"))?.split(':').collect();
        if groups.len() > 7 || groups.iter().any(|g| g.is_empty() || g.len() > 4 || u16::from_str_radix(g, 16).is_err()) {
            return Err(format!("{addr:?} is not an IPv6 prefix (whole groups ending in ':')"));
        }
        let mut full = groups.join(":");
        full.push_str("::");
        let ip: Ipv6Addr = full.parse().map_err(|_| format!("{addr:?} is not an IPv6 prefix"))?;
        return Ok(vec![key(IpAddr::V6(ip), groups.len() * 16)]);
    }
    // IPv4: "1.2.3." prefixes and "1.2.3.4-7" ranges.
    let parts: Vec<&str> = addr.split('.').collect();
    let bad = || format!("{addr:?} is not an IPv4 address, prefix (ending in '.') or range (a.b.c.d-e)");
    if let Some(last) = parts.last().filter(|l| l.contains('-')) {
        if parts.len() != 4 {
            return Err(bad());
        }
        let (lo, hi) = last.split_once('-').ok_or_else(bad)?;
        let (lo, hi): (u8, u8) = (lo.parse().map_err(|_| bad())?, hi.parse().map_err(|_| bad())?);
        let base: Vec<u8> = parts[..3].iter().map(|p| p.parse::<u8>()).collect::<Result<_, _>>().map_err(|_| bad())?;
        return Ok((lo..=hi).map(|o| key(IpAddr::V4(Ipv4Addr::new(base[0], base[1], base[2], o)), 32)).collect());
    }
    if parts.len() < 2 || parts.len() > 4 || !parts.last().is_some_and(|l| l.is_empty()) {
        return Err(bad());
    }
    let mut octets = [0u8; 4];
    let n = parts.len() - 1;
    for (i, p) in parts[..n].iter().enumerate() {
        octets[i] = p.parse().map_err(|_| bad())?;
    }
    Ok(vec![key(IpAddr::V4(Ipv4Addr::from(octets)), n * 8)])
}

/// `allow,NAME="v",...` or `deny`.
fn parse_instruction(s: &str) -> Result<Decision, String> {
    let (word, mut rest) = match s.find(',') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let allow = match word.trim() {
        "allow" => true,
        "deny" => false,
        w => return Err(format!("{w:?} must be allow or deny")),
    };
    let mut env = Vec::new();
    while let Some(r) = rest.strip_prefix(',') {
        let (name, after) = r.split_once('=').ok_or_else(|| format!("{r:?}: a variable must be NAME=value"))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("{name:?} is not a variable name"));
        }
        let (value, next) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let end = after[1..].find(q).ok_or_else(|| format!("the value of {name} has no closing {q}"))?;
                (&after[1..end + 1], &after[end + 2..])
            }
            _ => match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            },
        };
        // The cdb stores NAME=value NUL-terminated, and an environment value
        // cannot hold NUL: one would split into another variable.
        if value.contains('\0') {
            return Err(format!("the value of {name} contains a NUL byte"));
        }
        if !next.is_empty() && !next.starts_with(',') {
            return Err(format!("unexpected {next:?} after the value of {name}"));
        }
        env.push((name.to_string(), value.to_string()));
        rest = next;
    }
    Ok(Decision { allow, env })
}

/// Parse the text format (see the module docs).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Rule>, RulesError> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let syntax = |problem: String| RulesError::Syntax { path: path.to_path_buf(), line: i + 1, problem };
        let cut = [":allow", ":deny"]
            .iter()
            .filter_map(|w| line.find(w))
            .min()
            .ok_or_else(|| syntax("expected ADDRESS:allow or ADDRESS:deny".into()))?;
        let keys = address_keys(&line[..cut]).map_err(syntax)?;
        let decision = parse_instruction(&line[cut + 1..]).map_err(syntax)?;
        rules.push(Rule { keys, decision });
    }
    Ok(rules)
}

fn encode(d: &Decision) -> Vec<u8> {
    let mut v = vec![if d.allow { b'A' } else { b'D' }];
    for (k, val) in &d.env {
        v.extend_from_slice(format!("{k}={val}\0").as_bytes());
    }
    v
}

fn decode(v: &[u8]) -> Option<Decision> {
    let allow = match v.first()? {
        b'A' => true,
        b'D' => false,
        _ => return None,
    };
    let text = std::str::from_utf8(&v[1..]).ok()?;
    let env = text.split_terminator('\0').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Some(Decision { allow, env })
}

/// Compile `src` into the cdb `dst` (atomically). Returns the number of rules.
pub fn compile(src: &Path, dst: &Path) -> Result<usize, RulesError> {
    let text = std::fs::read_to_string(src).map_err(|e| RulesError::Read(src.to_path_buf(), e))?;
    let rules = parse(src, &text)?;
    crate::config::cdb::build(dst, &records(&rules)).map_err(RulesError::Cdb)?;
    Ok(rules.len())
}

/// The cdb records of parsed rules: (prefix key, encoded decision).
pub fn records(rules: &[Rule]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut seen = std::collections::HashSet::new();
    let mut records = Vec::new();
    for r in rules {
        for k in &r.keys {
            // The first line for a prefix wins, as with tcprules.
            if seen.insert(k.clone()) {
                records.push((k.as_bytes().to_vec(), encode(&r.decision)));
            }
        }
    }
    records
}

/// The rule for a client: the longest matching prefix, else the default line,
/// else None (no rule: allowed, nothing set).
pub fn lookup(db: &mut crate::config::cdb::Db, ip: IpAddr) -> Option<Decision> {
    lookup_with(|k| db.get(k), ip)
}

/// `lookup` through any cdb reader (`get` gives the value stored under a key).
pub fn lookup_with(mut get: impl FnMut(&[u8]) -> Option<Vec<u8>>, ip: IpAddr) -> Option<Decision> {
    let ip = canonical(ip);
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let full = key(ip, max);
    (1..=full.len()).rev().find_map(|n| get(&full.as_bytes()[..n])).or_else(|| get(b"")).and_then(|v| decode(&v))
}

/// Open a rules cdb and decide for `ip`. A missing or unreadable file is an error:
/// the caller refuses the connection (a broken rules file must not open the door).
pub fn decide(path: &Path, ip: IpAddr) -> Result<Decision, RulesError> {
    let db = crate::config::cdb::Db::open(path).map_err(RulesError::Cdb)?;
    let mut db = db.ok_or_else(|| RulesError::Read(path.to_path_buf(), std::io::Error::from(std::io::ErrorKind::NotFound)))?;
    Ok(lookup(&mut db, ip).unwrap_or(Decision { allow: true, env: Vec::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn compiles_and_matches_longest_prefix() {
        let d = crate::testing::scratch_dir("rules");
        let src = d.join("tcp.smtp");
        std::fs::write(
            &src,
            "# test\n127.0.0.1:allow,RELAYCLIENT=\"\",GREETING='a, b'\n10.0.:deny\n10.0.5.1-3:allow,X=1,Y=two\n\
             172.16.0.0/12:deny\n2001:db8::/32:allow,RELAYCLIENT=\"\"\n::1:deny\nfe80:1::deny\n:allow,DEFAULT=yes\n",
        )
        .unwrap();
        let cdb = d.join("tcp.smtp.cdb");
        assert_eq!(compile(&src, &cdb).unwrap(), 8);
        let dec = |a: &str| decide(&cdb, ip(a)).unwrap();
        assert_eq!(
            dec("127.0.0.1"),
            Decision { allow: true, env: vec![("RELAYCLIENT".into(), "".into()), ("GREETING".into(), "a, b".into())] }
        );
        assert!(!dec("10.0.9.9").allow);
        assert_eq!(dec("10.0.5.2").env, vec![("X".into(), "1".into()), ("Y".into(), "two".into())]);
        assert!(!dec("10.0.5.4").allow);
        assert!(!dec("172.31.255.255").allow);
        assert!(dec("172.32.0.1").allow);
        assert_eq!(dec("2001:db8:1::5").env, vec![("RELAYCLIENT".into(), "".into())]);
        assert!(!dec("::1").allow);
        assert!(!dec("fe80:1::2").allow);
        assert!(!dec("::ffff:10.0.1.1").allow, "IPv4-mapped clients match IPv4 rules");
        assert_eq!(dec("192.0.2.1").env, vec![("DEFAULT".into(), "yes".into())]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Found by fuzz/fuzz_targets/rules.rs: a NUL in a value came back from the
    /// cdb as a second variable (`X="a\0Y=b"` set Y); it is refused.
    #[test]
    fn issue15_nul_in_a_rule_value_is_refused() {
        let e = parse(Path::new("/x/tcp.smtp"), "127.0.0.1:allow,X=\"a\0RELAYCLIENT=\"\n").unwrap_err();
        assert!(e.to_string().contains("line 1") && e.to_string().contains("NUL"), "{e}");
    }

    #[test]
    fn errors_name_file_and_line() {
        let p = Path::new("/x/tcp.smtp");
        for bad in
            ["1.2.3.4:maybe", "1.2.3.4", "300.1.:deny", "1.2.3.4/40:deny", ":allow,X", ":allow,X=\"open", "a.b.:deny", "1.2.3.9-1x:deny"]
        {
            let e = parse(p, &format!("# c\n{bad}\n")).unwrap_err();
            assert!(e.to_string().starts_with("rules file /x/tcp.smtp line 2:"), "{bad}: {e}");
        }
        assert!(decide(Path::new("/nonexistent/rules.cdb"), ip("127.0.0.1")).is_err());
    }
}
