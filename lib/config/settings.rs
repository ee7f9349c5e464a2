//! The registry of every control file the suite reads, for `postern-admin showctl`
//! and for conf-samples/ (one commented sample per setting, checked by a test).
//!
//! A default of "" means none (the setting is off or empty when the file is
//! missing); "(NAME)" means the value of setting NAME (e.g. "(me)").

use crate::config::control::{Control, ControlError, Source};
use crate::os::home::Home;

/// How a control file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingKind {
    /// One value: the first meaningful line.
    Line,
    /// A whole number on the first meaningful line.
    Number,
    /// Every meaningful line.
    List,
}

#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub name: &'static str,
    /// "" = none, "(me)" = derived from me (generally "(NAME)": from setting NAME).
    pub default: &'static str,
    pub about: &'static str,
    pub kind: SettingKind,
}

const fn s(name: &'static str, kind: SettingKind, default: &'static str, about: &'static str) -> Setting {
    Setting { name, default, about, kind }
}

use SettingKind::{Line, List, Number};

pub const SETTINGS: &[Setting] = &[
    s("me", Line, "", "this host's fully-qualified name; the default for most other host settings (missing: the system host name)"),
    s("locals", List, "(me)", "domains delivered locally (the local part is the user)"),
    s("virtualdomains", List, "", "qmail's virtual domains: `domain:prefix` or `user@domain:prefix`; the local part becomes prefix-local"),
    s("rcpthosts", List, "", "domains postern-smtpd accepts mail for from unauthenticated clients (missing: refuse relaying for everyone)"),
    s("defaultdomain", Line, "", "postern-inject appends .defaultdomain to host names without a dot (missing: host names are left alone)"),
    s("defaulthost", Line, "(me)", "postern-inject appends @defaulthost to addresses without a host and uses it in the From it adds"),
    s("plusdomain", Line, "", "postern-inject replaces a trailing '+' in a host name with .plusdomain"),
    s("idhost", Line, "(defaulthost)", "host name in the Message-IDs postern-inject adds"),
    s("envnoathost", Line, "(me)", "domain appended to envelope recipients without '@'"),
    s("bouncefrom", Line, "MAILER-DAEMON", "local part of the sender of bounce messages"),
    s("bouncehost", Line, "(me)", "domain of the sender of bounce messages"),
    s("doublebounceto", Line, "postmaster", "who receives bounces that cannot be delivered (local part; empty line: discard them)"),
    s("doublebouncehost", Line, "(me)", "domain of doublebounceto"),
    s("concurrencylocal", Number, "10", "most local deliveries at once"),
    s("concurrencyremote", Number, "20", "most remote deliveries at once"),
    s("concurrencydomain", Number, "10", "most remote deliveries at once to one destination domain"),
    s("queuelifetime", Number, "604800", "seconds a message may stay in the queue before it bounces"),
    s("timeoutdelivery", Number, "86400", "seconds one local delivery may run before it is killed and retried"),
    s("defaultdelivery", List, "./Maildir/", "delivery instructions for users without a .qmail file (dot-qmail syntax)"),
    s("virtualhome", Line, "$POSTERN_HOME/mail", "where `postern-admin user add` creates virtual mailboxes"),
    s("databytes", Number, "0", "largest message postern-smtpd accepts, in bytes (0: no limit)"),
    s("timeoutsmtpd", Number, "1200", "seconds postern-smtpd waits for the client"),
    s("timeoutremote", Number, "1200", "seconds postern-remote waits for a remote server"),
    s("timeoutconnect", Number, "60", "seconds postern-remote waits for a connection"),
    s("smtproutes", List, "", "static routes: `domain:relay[:port]`; an empty relay means use MX"),
    s("badmailfrom", List, "", "envelope senders refused by postern-smtpd; `@domain` refuses a whole domain"),
    s("bouncemaxbytes", Number, "50000", "most bytes of the original message quoted in a bounce"),
    s("helohost", Line, "(me)", "the name postern-remote gives in HELO/EHLO"),
    s("timeoutpop3", Number, "1200", "seconds postern-popup and postern-pop3d wait for the POP3 client"),
    s("outgoingip", List, "", "per sender domain, the local address(es) and HELO name of outgoing SMTP: `senderdomain:IP[,[IPv6]][:heloname]`, `:IP[:helo]` for the rest"),
    s("tlsdestinations", List, "", "recipient domains that require TLS: `domain` (any certificate) or `domain:verify` (checked with tlsca.pem, else the public roots)"),
    s("dnsresolvers", List, "", "DNS servers postern-remote asks, `IP` or `IP:PORT` a line (missing: /etc/resolv.conf)"),
    s("maxrcpt", Number, "100", "most recipients postern-smtpd accepts in one message; more get 452 4.5.3"),
    s("authplaintext", Number, "0", "1: postern-smtpd offers AUTH without TLS (passwords then cross the network in clear)"),
    s("smtpgreeting", Line, "(me)", "the host name postern-smtpd gives in its greeting, EHLO reply and Received lines"),
];

pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// One setting as it is now in a home.
#[derive(Clone, Debug)]
pub struct Effective {
    pub name: &'static str,
    /// The value(s); empty when there is none.
    pub values: Vec<String>,
    pub source: Source,
    /// Set when the file exists but cannot be used; `values` then holds the default.
    pub error: Option<ControlError>,
}

/// Resolve a default: "(NAME)" follows NAME, "$POSTERN_HOME/..." uses the home.
fn default_of(c: &Control, home: &Home, setting: &Setting, depth: usize) -> Result<(Vec<String>, Source), ControlError> {
    let d = setting.default;
    if let Some(other) = d.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        let other = find(other).filter(|_| depth < 4).expect("registry defaults name registered settings");
        let (values, _) = value_of(c, home, other, depth + 1)?;
        return Ok((values, Source::From(other.name)));
    }
    if setting.name == "me" {
        return Ok((vec![crate::os::sys::hostname()], Source::Default));
    }
    let d = d.replace("$POSTERN_HOME", &home.root().display().to_string());
    Ok((if d.is_empty() { Vec::new() } else { vec![d] }, Source::Default))
}

fn value_of(c: &Control, home: &Home, setting: &Setting, depth: usize) -> Result<(Vec<String>, Source), ControlError> {
    let path = c.path(setting.name);
    let found = match setting.kind {
        Line => c.line(setting.name)?.map(|(v, src)| (vec![v], src)),
        List => c.list(setting.name)?.filter(|v| !v.is_empty()).map(|v| (v, Source::File(path.clone()))),
        Number => match c.number(setting.name, u64::MAX)? {
            (u64::MAX, Source::Default) => None,
            (n, src) => Some((vec![n.to_string()], src)),
        },
    };
    match found {
        Some(v) => Ok(v),
        None => default_of(c, home, setting, depth),
    }
}

/// Every registered setting's value and where it came from. A malformed file is
/// reported in `error` (naming file and line) and never stops the listing.
pub fn effective(home: &Home) -> Vec<Effective> {
    let c = Control::new(home);
    SETTINGS
        .iter()
        .map(|s| match value_of(&c, home, s, 0) {
            Ok((values, source)) => Effective { name: s.name, values, source, error: None },
            Err(e) => {
                let (values, source) = default_of(&c, home, s, 0).unwrap_or((Vec::new(), Source::Default));
                Effective { name: s.name, values, source, error: Some(e) }
            }
        })
        .collect()
}

/// qmail-showctl's listing: one group per setting.
pub fn format(items: &[Effective]) -> String {
    let mut out = String::new();
    for e in items {
        if let Some(err) = &e.error {
            out.push_str(&format!("{}: ERROR {err}\n", e.name));
            continue;
        }
        match e.values.len() {
            0 => out.push_str(&format!("{}: (none) [{}]\n", e.name, e.source)),
            1 => out.push_str(&format!("{}: {} [{}]\n", e.name, e.values[0], e.source)),
            _ => {
                out.push_str(&format!("{}: [{}]\n", e.name, e.source));
                for v in &e.values {
                    out.push_str(&format!("  {v}\n"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn sources_and_errors() {
        let d = std::env::temp_dir().join(format!("postern-settings-{}", std::process::id()));
        fs::create_dir_all(d.join("control")).unwrap();
        let home = Home::at(&d);
        fs::write(d.join("control/me"), "mx.example\n").unwrap();
        fs::write(d.join("control/locals"), "a.example\n# c\nb.example\n").unwrap();
        fs::write(d.join("control/concurrencylocal"), "# x\nabc\n").unwrap();
        fs::write(d.join("control/defaulthost"), "dh.example\n").unwrap();
        let all = effective(&home);
        let get = |n: &str| all.iter().find(|e| e.name == n).unwrap().clone();
        assert_eq!(get("me").values, ["mx.example"]);
        assert_eq!(get("me").source, Source::File(d.join("control/me")));
        assert_eq!(get("locals").values, ["a.example", "b.example"]);
        assert_eq!(get("bouncehost").values, ["mx.example"]);
        assert_eq!(get("bouncehost").source, Source::From("me"));
        assert_eq!(get("idhost").values, ["dh.example"]);
        assert_eq!(get("idhost").source, Source::From("defaulthost"));
        assert_eq!(get("concurrencyremote").values, ["20"]);
        assert_eq!(get("concurrencyremote").source, Source::Default);
        assert_eq!(get("virtualhome").values, [d.join("mail").display().to_string()]);
        assert!(get("rcpthosts").values.is_empty());
        let e = get("concurrencylocal").error.unwrap();
        assert_eq!(e.line, Some(2));
        let text = format(&all);
        assert!(text.contains("concurrencylocal: ERROR control file"), "{text}");
        assert!(text.contains("concurrencylocal line 2"), "{text}");
        assert!(text.contains("bouncefrom: MAILER-DAEMON [built-in default]"), "{text}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn every_setting_has_a_commented_sample() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf-samples");
        for s in SETTINGS {
            let p = dir.join(s.name);
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(text.lines().all(|l| l.is_empty() || l.starts_with('#')), "{} must hold only comments", p.display());
            assert!(text.contains("Default"), "{} must state the default", p.display());
            if let Some(o) = s.default.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
                assert!(find(o).is_some(), "{} defaults to unknown {o}", s.name);
            }
        }
    }
}
