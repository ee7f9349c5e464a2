//! Who receives mail for a local address: qmail's users/assign, the Unix password
//! database, and virtual users (an address with a mailbox and a password hash but no
//! Unix account).
//!
//! # Files (under `$POSTERN_HOME/users`)
//! ```text
//! assign    qmail-users(5) exactly: `=local:user:uid:gid:home:dash:ext:` and
//!           `+prefix:user:uid:gid:home:dash:pre:`, ending with a line ".".
//!           (Extension: blank lines and lines starting with # are skipped.)
//! virtual   one virtual user per line: `address:hash:uid:gid:home`
//! vdomains  one virtual domain per line
//! cdb       all three compiled by `postern-admin rebuild`, without password hashes;
//!           mode 0644, since the network daemons check recipients with it
//! passwd.cdb  the password hashes only: lower-case address -> hash; mode 0600, so
//!           only its writer (root in a system install, the owner of an unprivileged
//!           instance) and postern-auth (setuid root) can read it
//! lock      taken by admin edits so two admins cannot lose each other's change
//! ```
//! users/virtual keeps the hashes as the admin's source (mode 0640).
//! Hashes: new passwords get argon2id (`$argon2id$...`); `$6$` and `$5$` SHA-crypt
//! hashes from older systems keep working.
//! In virtual and vdomains, blank lines and lines starting with # are skipped.
//!
//! # Lookup order (`Users::lookup`)
//! 1. A virtual domain: the virtual user local@domain, else the longest prefix of
//!    local ending before a '-' (alice-foo-bar: alice-foo, then alice), the rest
//!    being the extension. Nothing else is tried for a virtual domain, except
//!    the aliases when the domain is also in control/locals.
//! 2. The aliases (users/aliases.cdb, see `aliases`): the whole local part.
//! 3. users/assign: an exact entry, else the longest wildcard prefix.
//! 4. The password database, as qmail-getpw: the whole local part, then shorter
//!    prefixes ending before a '-' (so `alice-list` works); a user with uid 0 or
//!    below control/minuid (default 1000: system accounts such as postgres), or
//!    whose home directory it does not own, gets no mail by login name.
//! 5. The Unix user `alias` with the whole local part as extension
//!    (~alias/.qmail-LOCAL).
//!
//! # Keys in users/cdb
//! ```text
//! "=" local          exact assign entry     -> user NUL uid NUL gid NUL home NUL dash NUL ext
//! "+" prefix         wildcard assign entry  -> user NUL uid NUL gid NUL home NUL dash NUL pre
//! "V" address        virtual user           -> "" NUL uid NUL gid NUL home
//! "D" domain         virtual domain         -> ""
//! "Q" home           the dot-qmail file names in that home, NUL-separated
//! ```
//! The Q records let postern-smtpd (the network user, who cannot read 0700
//! homes) refuse extension addresses no dot file takes. `rebuild` (run by root:
//! `postern-admin rebuild` and every `user`/`domain` edit) lists the names, never
//! the contents, in the homes of the virtual users, the users/assign entries,
//! the Unix users of /etc/passwd at or above control/minuid, and `alias`. A home
//! that cannot be listed gets no record.
//! (The first field of a V record once held the hash; it is empty now, see
//! passwd.cdb.)
//! Keys are lower-cased. The file is replaced atomically (config::cdb::build), so a
//! reader sees the old or the new database, never a half-written one.

pub mod aliases;
pub mod edit;
pub mod lookup;
pub mod password;

pub use edit::{add_domain, add_virtual_user, del_domain, del_virtual_user, read_vdomains, read_virtual, rebuild, set_password, NewUser};
pub use lookup::{password_hash, LocalUser, Users, VirtualUser};

use crate::config::cdb::CdbError;
use crate::error::{Classify, Kind};
use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum UsersError {
    /// users/cdb cannot be opened or read.
    Cdb(CdbError),
    /// control/minuid does not parse.
    Control(crate::config::control::ControlError),
    /// A text file cannot be read or written.
    Io(PathBuf, io::Error),
    /// A line of users/assign, users/virtual or users/vdomains does not parse.
    Syntax {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    /// The password database could not be asked (NIS/LDAP down, ...).
    Passwd(String, String),
    /// An address given to an admin command is unusable.
    BadAddress(String, String),
    /// `user add` for a domain that was not added with `domain add`.
    NotVirtualDomain(String),
    Exists(String),
    NoSuchUser(String),
    NoSuchDomain(String),
    /// `domain del` while the domain still has users.
    DomainInUse(String, usize),
    /// The postern-v service user (for root's default uid/gid) is missing.
    Service(crate::os::privs::PrivError),
    /// A line of the aliases file does not parse (line 0: the whole file).
    Aliases {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    /// The aliases file may be changed by someone it must not trust.
    Unsafe(PathBuf, String),
    /// The alias user (postern-a) is missing.
    AliasUser(crate::os::privs::PrivError),
}

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsersError::Cdb(e) => write!(f, "{e}; run `postern-admin rebuild` to recreate it"),
            UsersError::Control(e) => e.fmt(f),
            UsersError::Io(p, e) => write!(f, "cannot access {}: {e}", p.display()),
            UsersError::Syntax { path, line, problem } => {
                write!(f, "{} line {line}: {problem}; fix the line and run `postern-admin rebuild`", path.display())
            }
            UsersError::Passwd(u, e) => write!(f, "cannot look up {u:?} in the password database: {e}"),
            UsersError::BadAddress(a, why) => write!(f, "bad address {a:?}: {why}"),
            UsersError::NotVirtualDomain(d) => {
                write!(f, "{d} is not a virtual domain; run `postern-admin domain add {d}` first")
            }
            UsersError::Exists(a) => write!(f, "{a} already exists; use `postern-admin user passwd` to change its password"),
            UsersError::NoSuchUser(a) => write!(f, "no virtual user {a}; see `postern-admin user list`"),
            UsersError::NoSuchDomain(d) => write!(f, "no virtual domain {d}; see `postern-admin domain list`"),
            UsersError::DomainInUse(d, n) => {
                write!(f, "virtual domain {d} still has {n} user(s); delete them with `postern-admin user del` first")
            }
            UsersError::Service(e) => write!(f, "{e} (or give --uid and --gid)"),
            UsersError::Aliases { path, line: 0, problem } => write!(f, "{}: {problem}; fix it and run newaliases", path.display()),
            UsersError::Aliases { path, line, problem } => {
                write!(f, "{} line {line}: {problem}; fix the line and run newaliases", path.display())
            }
            UsersError::Unsafe(p, why) => write!(f, "aliases file {} {why}, then run newaliases", p.display()),
            UsersError::AliasUser(e) => write!(f, "{e} (alias deliveries run as postern-a)"),
        }
    }
}

impl Classify for UsersError {
    fn kind(&self) -> Kind {
        match self {
            UsersError::Cdb(_)
            | UsersError::Control(_)
            | UsersError::Io(..)
            | UsersError::Syntax { .. }
            | UsersError::Passwd(..)
            | UsersError::Service(_)
            | UsersError::Aliases { .. }
            | UsersError::Unsafe(..)
            | UsersError::AliasUser(_) => Kind::Temporary,
            UsersError::BadAddress(..)
            | UsersError::NotVirtualDomain(_)
            | UsersError::Exists(_)
            | UsersError::NoSuchUser(_)
            | UsersError::NoSuchDomain(_)
            | UsersError::DomainInUse(..) => Kind::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::edit::*;
    use super::lookup::*;
    use super::password::*;
    use super::*;
    use crate::os::home::Home;
    use std::fs;
    use std::path::{Path, PathBuf};

    fn tmphome(tag: &str) -> Home {
        let d = crate::testing::scratch_dir(&format!("users-{tag}"));
        fs::create_dir_all(d.join("users")).unwrap();
        fs::create_dir_all(d.join("control")).unwrap();
        Home::at(d)
    }

    #[test]
    fn assign_exact_and_wildcards() {
        let h = tmphome("assign");
        fs::write(
            h.users().join("assign"),
            "# a comment\n=joe:joe:1001:1001:/home/joe:::\n+list-:mlm:1002:1002:/var/mlm:-:l-:\n+list-big-:big:1003:1003:/var/big:-::\n+:catch:1004:1004:/var/catch:-:all-:\n.\n",
        )
        .unwrap();
        assert_eq!(rebuild(&h).unwrap(), 4);
        let mut u = Users::open(&h).unwrap();
        let t = u.lookup("Joe", "x.example").unwrap().unwrap();
        assert_eq!((t.user.as_str(), t.uid, t.dash.as_str(), t.ext.as_str()), ("joe", 1001, "", ""));
        let t = u.lookup("list-foo", "x.example").unwrap().unwrap();
        assert_eq!((t.user.as_str(), t.ext.as_str()), ("mlm", "l-foo"));
        let t = u.lookup("LIST-big-x", "x.example").unwrap().unwrap();
        assert_eq!((t.user.as_str(), t.ext.as_str(), t.home.to_str().unwrap()), ("big", "x", "/var/big"));
        let t = u.lookup("zzz9-q", "x.example").unwrap().unwrap();
        assert_eq!((t.user.as_str(), t.ext.as_str()), ("catch", "all-zzz9-q"));
        fs::remove_dir_all(h.root()).unwrap();
    }

    #[test]
    fn assign_errors_name_file_and_line() {
        let p = Path::new("/x/users/assign");
        let e = parse_assign(p, "=a:a:1:1:/h:::\n=b:b:x:1:/h:::\n.\n").unwrap_err();
        assert!(e.to_string().contains("/x/users/assign line 2"), "{e}");
        assert!(e.to_string().contains("uid \"x\""), "{e}");
        let e = parse_assign(p, "=a:a:1:1:/h:::\n").unwrap_err();
        assert!(e.to_string().contains("final line"), "{e}");
        let e = parse_assign(p, "=a:a:1:1:/h:::\n\n=b:b:1:1\n.\n").unwrap_err();
        assert!(e.to_string().contains("line 3") && e.to_string().contains("7 fields"), "{e}");
        let e = parse_assign(p, "joe\n.\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = parse_assign(p, "=a:a:1:1:relative:::\n.\n").unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        // Everything after the final dot is ignored, as qmail-newu does.
        assert_eq!(parse_assign(p, "=a:a:1:1:/h:::\n.\ngarbage\n").unwrap().len(), 1);
    }

    /// Found by fuzz/fuzz_targets/users.rs: a NUL inside a field made a record
    /// that lookups cannot decode (the user silently unknown); it is refused.
    #[test]
    fn issue15_nul_in_users_files_is_refused() {
        let p = Path::new("/x/users/assign");
        let e = parse_assign(p, "=a:a:1:1:/h:::\n=b:b:1:1:/h\0x:::\n.\n").unwrap_err();
        assert!(e.to_string().contains("line 2") && e.to_string().contains("NUL"), "{e}");
        let e = parse_virtual_line(Path::new("/x/users/virtual"), 3, "a@b.example:$6$s\0h:5:6:/m/a").unwrap_err();
        assert!(e.to_string().contains("line 3") && e.to_string().contains("NUL"), "{e}");
    }

    #[test]
    fn virtual_users_and_extensions() {
        let h = tmphome("virtual");
        fs::write(h.users().join("vdomains"), "# domains\nV.Example\n").unwrap();
        fs::write(h.users().join("virtual"), "alice@v.example:$6$s$h:5:6:/m/alice\nalice-foo@v.example:!:5:6:/m/af\n").unwrap();
        rebuild(&h).unwrap();
        let mut u = Users::open(&h).unwrap();
        assert!(u.is_virtual_domain("v.EXAMPLE"));
        assert!(!u.is_virtual_domain("w.example"));
        let t = u.lookup("Alice", "v.example").unwrap().unwrap();
        assert_eq!((t.user.as_str(), t.dash.as_str(), t.ext.as_str(), t.uid, t.gid), ("alice@v.example", "", "", 5, 6));
        let t = u.lookup("alice-foo-bar", "v.example").unwrap().unwrap();
        assert_eq!((t.user.as_str(), t.dash.as_str(), t.ext.as_str()), ("alice-foo@v.example", "-", "bar"));
        assert_eq!(t.home, PathBuf::from("/m/af"));
        let t = u.lookup("alice-x-y", "v.example").unwrap().unwrap();
        assert_eq!((t.user.as_str(), t.ext.as_str()), ("alice@v.example", "x-y"));
        assert_eq!(u.lookup("bob", "v.example").unwrap(), None);
        assert_eq!(u.virtual_user("ALICE@v.example").unwrap().hash, "$6$s$h");
        // The hashes live in passwd.cdb (0600), not in the shared cdb (0644).
        assert_eq!(password_hash(&h, "Alice@V.example").unwrap().as_deref(), Some("$6$s$h"));
        let cdb = fs::read(h.users().join("cdb")).unwrap();
        assert!(!cdb.windows(6).any(|w| w == b"$6$s$h"), "no hash in users/cdb");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(h.users().join("passwd.cdb")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(h.users().join("cdb")).unwrap().mode() & 0o777, 0o644);
        fs::write(h.users().join("virtual"), "alice@v.example:h:5:6\n").unwrap();
        let e = rebuild(&h).unwrap_err();
        assert!(e.to_string().contains("virtual line 1"), "{e}");
        fs::remove_dir_all(h.root()).unwrap();
    }

    #[test]
    fn rebuild_records_the_dot_files_of_each_home() {
        let h = tmphome("dots");
        let m = h.root().join("m");
        fs::create_dir_all(m.join("alice")).unwrap();
        for f in [".qmail-foo", ".qmail-list-default", ".profile"] {
            fs::write(m.join("alice").join(f), "./Maildir/\n").unwrap();
        }
        fs::write(h.users().join("vdomains"), "v.example\n").unwrap();
        let virt = format!("alice@v.example:!:5:6:{}\nbob@v.example:!:5:6:{}\n", m.join("alice").display(), m.join("bob").display());
        fs::write(h.users().join("virtual"), virt).unwrap();
        rebuild(&h).unwrap();
        let mut u = Users::open(&h).unwrap();
        let names = u.dot_files(&m.join("alice")).unwrap();
        assert_eq!(names, [".qmail-foo", ".qmail-list-default"]);
        assert_eq!(u.dot_files(&m.join("bob")), None, "no home, no record");
        fs::create_dir_all(m.join("bob")).unwrap();
        rebuild(&h).unwrap();
        assert_eq!(Users::open(&h).unwrap().dot_files(&m.join("bob")), Some(vec![]), "a home without dot files");
        fs::remove_dir_all(h.root()).unwrap();
    }

    #[test]
    fn a_broken_minuid_is_a_temporary_error_naming_the_file() {
        // The uid rule itself needs real accounts: tests/it/regression.rs, as root.
        let h = tmphome("minuid");
        fs::write(h.control().join("minuid"), "many\n").unwrap();
        let e = Users::open(&h).unwrap().lookup("nobody-here", "x.example").expect_err("minuid does not parse");
        assert!(e.to_string().contains("minuid"), "{e}");
        assert_eq!(e.kind(), Kind::Temporary);
        fs::remove_dir_all(h.root()).unwrap();
    }

    #[test]
    fn root_never_gets_mail_and_missing_cdb_is_empty() {
        let h = tmphome("root");
        let mut u = Users::open(&h).unwrap();
        assert!(!u.is_virtual_domain("x"));
        let t = u.lookup("root", "x.example").unwrap();
        assert!(t.as_ref().is_none_or(|t| t.user != "root" && t.uid != 0), "{t:?}");
        fs::remove_dir_all(h.root()).unwrap();
    }

    #[test]
    fn admin_edits() {
        let h = tmphome("edits");
        // Explicit ids: as root the default would be postern-v, which may not exist here.
        let me = (crate::os::sys::real_uid(), nix::unistd::getgid().as_raw());
        let new = |a: &str| NewUser { address: a.into(), password: Some("pw".into()), uid: Some(me.0), gid: Some(me.1), home: None };
        assert!(matches!(add_virtual_user(&h, &new("a@d.example")), Err(UsersError::NotVirtualDomain(_))));
        assert!(add_domain(&h, "D.example").unwrap());
        assert!(!add_domain(&h, "d.example").unwrap());
        let v = add_virtual_user(&h, &new("A@d.example")).unwrap();
        assert_eq!(v.home, h.mail().join("d.example/a"));
        assert!(v.home.join("Maildir/new").is_dir());
        use std::os::unix::fs::MetadataExt;
        for (p, mode) in [(h.mail(), 0o755), (h.mail().join("d.example"), 0o755), (v.home.clone(), 0o700)] {
            assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, mode, "{}", p.display());
        }
        assert!(matches!(add_virtual_user(&h, &new("a@d.example")), Err(UsersError::Exists(_))));
        assert!(matches!(add_virtual_user(&h, &new("../x@d.example")), Err(UsersError::BadAddress(..))));
        set_password(&h, "a@D.example", "new").unwrap();
        let mut u = Users::open(&h).unwrap();
        assert!(check_password("new", &u.virtual_user("a@d.example").unwrap().hash));
        assert!(matches!(del_domain(&h, "d.example"), Err(UsersError::DomainInUse(_, 1))));
        del_virtual_user(&h, "a@d.example").unwrap();
        assert!(v.home.is_dir(), "mailbox is kept");
        assert!(Users::open(&h).unwrap().virtual_user("a@d.example").is_none());
        del_domain(&h, "d.example").unwrap();
        assert!(!Users::open(&h).unwrap().is_virtual_domain("d.example"));
        fs::remove_dir_all(h.root()).unwrap();
    }
}
