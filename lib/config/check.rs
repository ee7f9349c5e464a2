//! `postern-admin check` (postfix check's job): read every control file and
//! database the way the programs read them, and report each problem naming the
//! file (and line) and what to do. Nothing is changed.
//!
//! - every registered setting, with the parsers of the programs that read it
//!   (ranges, addresses, routes, resolvers, sources, TLS policies, trust
//!   anchors, defaultdelivery's forwards, a checkpassword program that runs);
//! - users/assign, users/virtual, users/vdomains, and users/cdb not older
//!   than them; control/tcp.smtp and its cdb likewise;
//! - DKIM keys that parse, readable by nobody but their owner;
//! - the server certificate and key, when there is one;
//! - in a system install (the queue belongs to postern-q), the owners and
//!   modes scripts/install sets on the queue, the setuid programs and the
//!   secrets, and that there is a server certificate.
//!
//! `setting_errors` is also what showctl uses to mark values that do not parse.

use super::control::{Control, ControlError};
use super::settings::{self, Setting};
use crate::os::home::Home;
use crate::os::privs::Service;
use std::fmt;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One problem, in words that name the file (and line) at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem(pub String);

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Default)]
struct Found(Vec<Problem>);

impl Found {
    fn add(&mut self, p: impl fmt::Display) {
        let p = Problem(p.to_string());
        if !self.0.contains(&p) {
            self.0.push(p);
        }
    }
}

/// Every problem in `home`, in the order: settings, databases, keys and
/// certificates, owners and modes. Empty: all is well.
pub fn check(home: &Home) -> Vec<Problem> {
    let mut found = Found::default();
    let c = Control::new(home);
    for e in setting_errors(home) {
        found.add(e);
    }
    users(home, &mut found);
    rules(&c, &mut found);
    dkim(home, &mut found);
    tls(home, &mut found);
    if system_install(home) {
        owners_and_modes(home, &mut found);
    }
    found.0
}

/// Settings that are 0 or 1.
const SWITCHES: &[&Setting] = &[
    &settings::AUTHPLAINTEXT,
    &settings::MTASTS,
    &settings::DNSSEC,
    &settings::AUTHCHECK,
    &settings::AUTHCHECKSPF,
    &settings::AUTHCHECKDMARC,
];

/// What the programs would refuse in the control files: each registered
/// setting read as its kind, then each through the parsers of its readers.
pub fn setting_errors(home: &Home) -> Vec<ControlError> {
    let c = Control::new(home);
    let mut out: Vec<ControlError> = Vec::new();
    let mut add = |r: Result<(), ControlError>| {
        if let Err(e) = r {
            if !out.iter().any(|o| o.path == e.path) {
                out.push(e);
            }
        }
    };
    for s in settings::ALL {
        add(c.value(s).map(drop));
    }
    let slots = 1..=crate::send::spawn::MAX_SLOTS as u64;
    for s in [&settings::CONCURRENCYLOCAL, &settings::CONCURRENCYREMOTE, &settings::CONCURRENCYDOMAIN] {
        add(c.number_in(s, slots.clone()).map(drop));
    }
    for s in SWITCHES {
        add(c.number_in(s, 0..=1).map(drop));
    }
    add(c.number_in(&settings::MTASTSPORT, 1..=65535).map(drop));
    // The programs' own loaders: what they refuse, they name.
    add(crate::send::daemon::Config::load(home).map(drop));
    add(crate::smtp::server::Config::load(home).map(drop));
    add(crate::smtp::client::Config::load(&c).map(drop));
    add(crate::config::routing::Routing::load(&c).map(drop));
    add(resolvers(&c));
    add(trust_anchors(&c));
    add(default_delivery(&c));
    add(program(&c, &settings::CHECKPASSWORD, true));
    add(program(&c, &settings::REMOTEPROGRAM, false));
    out
}

/// control/checkpassword (a program and its arguments) and
/// control/remoteprogram (a path) name a program that can run.
fn program(c: &Control, s: &settings::Setting, with_args: bool) -> Result<(), ControlError> {
    let Some(line) = c.optional(s)? else { return Ok(()) };
    let program = if with_args { line.split_whitespace().next().unwrap_or_default() } else { line.as_str() };
    let runnable = fs::metadata(program).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0);
    if !runnable {
        let problem = format!("{program:?} is not an executable file");
        return Err(ControlError { path: c.path(s), line: None, problem });
    }
    Ok(())
}

/// showctl's listing: every setting, with what its readers refuse marked.
pub fn effective(home: &Home) -> Vec<super::control::Effective> {
    let errors = setting_errors(home);
    let c = Control::new(home);
    let mut all = super::control::effective(home);
    for e in all.iter_mut().filter(|e| e.error.is_none()) {
        e.error = errors.iter().find(|x| x.path == c.path(e.setting)).cloned();
    }
    all
}

fn resolvers(c: &Control) -> Result<(), ControlError> {
    for (n, line) in c.numbered_lines(&settings::DNSRESOLVERS)? {
        if crate::smtp::mx::parse_resolver(&line).is_none() {
            let problem = format!("{line:?} is not IP or IP:PORT");
            return Err(ControlError { path: c.path(&settings::DNSRESOLVERS), line: Some(n), problem });
        }
    }
    Ok(())
}

fn trust_anchors(c: &Control) -> Result<(), ControlError> {
    if let Some(p) = c.optional(&settings::TRUSTANCHORS)? {
        if let Err(e) = fs::File::open(&p) {
            let problem = format!("cannot read the trust anchors in {p}: {e}");
            return Err(ControlError { path: c.path(&settings::TRUSTANCHORS), line: None, problem });
        }
        crate::smtp::dane::trust_anchors(c).map_err(|e| ControlError {
            path: c.path(&settings::TRUSTANCHORS),
            line: None,
            problem: e.to_string(),
        })?;
    }
    Ok(())
}

/// defaultdelivery's forwards must look like addresses: dot-qmail forwards
/// any line that is not a program or a path, so `Maildir/` (without `./`)
/// would send every user's mail to the address "Maildir/".
fn default_delivery(c: &Control) -> Result<(), ControlError> {
    let Some(lines) = super::control::read_lines(&c.path(&settings::DEFAULTDELIVERY))? else { return Ok(()) };
    for (n, line) in lines {
        if let Some(crate::deliver::dotqmail::Line::Forward(a)) = crate::deliver::dotqmail::classify(&line) {
            let problem = if a.contains(char::is_whitespace) {
                format!("{a:?} is forwarded as an address, and an address has no blanks")
            } else if a.contains('/') && !a.contains('@') {
                format!("{a:?} is forwarded as an address; a Maildir or mbox must start with ./ or /")
            } else {
                continue;
            };
            return Err(ControlError { path: c.path(&settings::DEFAULTDELIVERY), line: Some(n), problem });
        }
    }
    Ok(())
}

fn modified(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// `db` is at least as new as each existing source, else `fix` says what to run.
fn up_to_date(db: &Path, sources: &[PathBuf], fix: &str, found: &mut Found) {
    let present: Vec<&PathBuf> = sources.iter().filter(|s| s.exists()).collect();
    if present.is_empty() {
        return;
    }
    let Some(built) = modified(db) else {
        found.add(format!("{} is missing: {fix}", db.display()));
        return;
    };
    for s in present {
        if modified(s).is_some_and(|t| t > built) {
            found.add(format!("{} is older than {}: {fix}", db.display(), s.display()));
        }
    }
}

fn users(home: &Home, found: &mut Found) {
    let dir = home.users();
    let assign = dir.join("assign");
    match fs::read(&assign) {
        Ok(b) => match String::from_utf8(b) {
            Ok(text) => {
                if let Err(e) = crate::users::edit::parse_assign(&assign, &text) {
                    found.add(e);
                }
            }
            Err(_) => found.add(format!("{}: not valid UTF-8", assign.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => found.add(format!("{}: cannot read: {e}", assign.display())),
    }
    if let Err(e) = crate::users::read_virtual(home) {
        found.add(e);
    }
    if let Err(e) = crate::users::read_vdomains(home) {
        found.add(e);
    }
    let sources = [assign, dir.join("virtual"), dir.join("vdomains")];
    up_to_date(&dir.join("cdb"), &sources, "run postern-admin rebuild", found);
}

fn rules(c: &Control, found: &mut Found) {
    let src = c.file("tcp.smtp");
    let Ok(text) = fs::read(&src) else { return };
    match String::from_utf8(text) {
        Ok(t) => {
            if let Err(e) = super::rules::parse(&src, &t) {
                found.add(e);
            }
        }
        Err(_) => found.add(format!("{}: not valid UTF-8", src.display())),
    }
    let db = c.file("tcp.smtp.cdb");
    let fix = format!("run postern-listen -X {} {} (the units and the init script do at each start)", src.display(), db.display());
    up_to_date(&db, &[src], &fix, found);
}

fn dkim(home: &Home, found: &mut Found) {
    let dir = crate::dkim::dir(&Control::new(home));
    let Ok(domains) = fs::read_dir(&dir) else { return };
    let queue_uid = Service::Queue.ids().ok().map(|(u, _)| u);
    for d in domains.flatten() {
        let Ok(keys) = fs::read_dir(d.path()) else { continue };
        for k in keys.flatten() {
            let p = k.path();
            if p.extension().is_none_or(|e| e != "key") {
                continue;
            }
            if let Err(e) = crate::dkim::load(&p) {
                found.add(e);
                continue;
            }
            let Ok(m) = fs::metadata(&p) else { continue };
            if m.mode() & 0o077 != 0 {
                found.add(format!("DKIM key {}: mode {:04o}: others can read it; chmod 600 it", p.display(), m.mode() & 0o7777));
            }
            if system_install(home) && queue_uid.is_some_and(|q| q != m.uid()) {
                found.add(format!("DKIM key {}: must belong to postern-q, which signs; chown postern-q it", p.display()));
            }
        }
    }
}

fn tls(home: &Home, found: &mut Found) {
    if let Err(e) = crate::net::tls::server_config(home) {
        found.add(e);
    }
    for name in ["serverkey.pem", "servercert.pem"] {
        let p = home.control_file(name);
        // The key (in serverkey.pem, or in servercert.pem without it) is for
        // the network daemons' group only.
        let holds_key = name == "serverkey.pem" || !home.control_file("serverkey.pem").exists();
        if let (true, Ok(m)) = (holds_key, fs::metadata(&p)) {
            if m.mode() & 0o004 != 0 {
                found.add(format!("{}: the private key is readable by everyone; chmod 640 it (group postern-d)", p.display()));
            }
        }
    }
}

/// A system install (scripts/install, or an instance made by root): the queue
/// belongs to postern-q. Instances of ordinary users run as one uid and have
/// none of the owners below.
fn system_install(home: &Home) -> bool {
    let q = Service::Queue.ids().ok().map(|(u, _)| u);
    fs::metadata(home.queue()).ok().zip(q).is_some_and(|(m, q)| m.uid() == q)
}

/// Who should own what, and with which mode, in a system install (as
/// scripts/install sets them).
struct Expect {
    path: &'static str,
    user: &'static str,
    group: &'static str,
    mode: u32,
}

const EXPECT: &[Expect] = &[
    Expect { path: "queue", user: "postern-q", group: "postern", mode: 0o750 },
    Expect { path: "queue/tmp", user: "postern-q", group: "postern", mode: 0o2770 },
    Expect { path: "queue/new", user: "postern-q", group: "postern", mode: 0o2770 },
    Expect { path: "queue/mess", user: "postern-q", group: "postern", mode: 0o2770 },
    Expect { path: "queue/free", user: "postern-q", group: "postern", mode: 0o2770 },
    Expect { path: "queue/bad", user: "postern-q", group: "postern", mode: 0o2770 },
    Expect { path: "queue/lock", user: "postern-q", group: "postern", mode: 0o750 },
    Expect { path: "queue/lock/trigger", user: "postern-s", group: "postern", mode: 0o620 },
    Expect { path: "run/queue", user: "postern-q", group: "postern", mode: 0o755 },
    Expect { path: "bin/postern-queue", user: "postern-q", group: "postern", mode: 0o6711 },
    Expect { path: "bin/postern-auth", user: "root", group: "postern-d", mode: 0o4750 },
    Expect { path: "control/srssecret", user: "postern-q", group: "postern-d", mode: 0o640 },
];

fn owners_and_modes(home: &Home, found: &mut Found) {
    let cert = home.control_file("servercert.pem");
    if !cert.exists() {
        found.add(format!(
            "{} is missing: STARTTLS and STLS are not offered and AUTH is refused; put the certificate chain (and key, or the key in serverkey.pem, group postern-d, mode 640) there",
            cert.display()
        ));
    }
    let uid = |n: &str| nix::unistd::User::from_name(n).ok().flatten().map(|u| u.uid.as_raw());
    let gid = |n: &str| nix::unistd::Group::from_name(n).ok().flatten().map(|g| g.gid.as_raw());
    for e in EXPECT {
        let p = home.root().join(e.path);
        let Ok(m) = fs::symlink_metadata(&p) else {
            if e.path != "control/srssecret" {
                found.add(format!("{} is missing: scripts/install makes it", p.display()));
            }
            continue;
        };
        let mode = m.mode() & 0o7777;
        let owner_ok = uid(e.user) == Some(m.uid()) && gid(e.group) == Some(m.gid());
        if !owner_ok || mode != e.mode {
            found.add(format!(
                "{}: {}:{} mode {mode:04o}; should be {}:{} mode {:04o} (chown {}:{}, chmod {:o}; scripts/install sets it)",
                p.display(),
                name_of_uid(m.uid()),
                name_of_gid(m.gid()),
                e.user,
                e.group,
                e.mode,
                e.user,
                e.group,
                e.mode
            ));
        }
        if e.path == "queue/lock/trigger" && !m.file_type().is_fifo() {
            found.add(format!("{} is not a FIFO: remove it and run mkfifo (scripts/install does)", p.display()));
        }
    }
}

fn name_of_uid(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string())
}

fn name_of_gid(gid: u32) -> String {
    nix::unistd::Group::from_gid(gid.into()).ok().flatten().map(|g| g.name).unwrap_or_else(|| gid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(tag: &str) -> (PathBuf, Home) {
        let d = crate::testing::scratch_dir(&format!("check-{tag}"));
        for sub in ["control", "users", "queue"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        fs::write(d.join("control/me"), "mx.example\n").unwrap();
        (d.clone(), Home::at(&d))
    }

    #[test]
    fn a_bare_home_is_clean_and_each_broken_file_is_named_once() {
        let (d, h) = home("files");
        assert_eq!(check(&h), vec![], "nothing to say about defaults");
        fs::write(d.join("control/concurrencyremote"), "# x\n0\n").unwrap();
        fs::write(d.join("control/mtasts"), "2\n").unwrap();
        fs::write(d.join("control/virtualdomains"), "example.net\n").unwrap();
        fs::write(d.join("control/dnsresolvers"), "127.0.0.1\nresolver.example\n").unwrap();
        fs::write(d.join("control/defaultdelivery"), "./Maildir/\nMaildir/\n").unwrap();
        let got: Vec<String> = check(&h).into_iter().map(|p| p.0).collect();
        let control = d.join("control");
        let want = [
            format!("control file {}/concurrencyremote line 2: 0 is out of range 1..4096", control.display()),
            format!("control file {}/mtasts line 1: 2 is out of range 0..1", control.display()),
            format!("control file {}/virtualdomains line 1: \"example.net\" has no ':'", control.display()),
            format!("control file {}/dnsresolvers line 2: \"resolver.example\" is not IP or IP:PORT", control.display()),
            format!("control file {}/defaultdelivery line 2: \"Maildir/\" is forwarded as an address; a Maildir", control.display()),
        ];
        for w in &want {
            assert_eq!(got.iter().filter(|g| g.starts_with(w.as_str())).count(), 1, "{w}\n in {got:#?}");
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
        let listing = super::super::control::format(&effective(&h));
        assert!(listing.contains("mtasts: 2 ["), "the value is shown: {listing}");
        assert!(listing.contains("  ERROR control file") && listing.contains("mtasts line 1: 2 is out of range 0..1"), "{listing}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stale_databases_are_named_with_the_command_that_rebuilds_them() {
        let (d, h) = home("stale");
        fs::write(d.join("users/assign"), "=joe:joe:1000:1000:/home/joe:::\n.\n").unwrap();
        let got = check(&h);
        assert!(got.iter().any(|p| p.0.ends_with("users/cdb is missing: run postern-admin rebuild")), "{got:?}");
        crate::users::rebuild(&h).unwrap();
        assert_eq!(check(&h), vec![]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(d.join("users/assign"), "=joe:joe:1000:1000:/home/joe:::\n=ann:ann:1001:1001:/home/ann:::\n.\n").unwrap();
        let got = check(&h);
        assert!(got.iter().any(|p| p.0.contains("users/cdb is older than") && p.0.ends_with("run postern-admin rebuild")), "{got:?}");
        fs::remove_dir_all(&d).unwrap();
    }
}
