//! postern-auth's side of a login: which account a login names, whether the
//! password is right, and becoming that account.
//!
//! postern-auth's logins: an address (`alice@example.org`) is a virtual user:
//! uid/gid/home from users/cdb, the hash from users/passwd.cdb (argon2id, `$6$`,
//! `$5$`). Anything else is a Unix user: the password database for uid, gid, home
//! and shell, shadow for the hash, checked with crypt(3) (yescrypt, `$6$`, ...).
//! uid 0 never logs in. A postern-auth that is not root (an unprivileged instance)
//! cannot switch users, so it accepts only users with its own uid.

use super::checkpassword::CheckError;
use crate::os::home::Home;
use std::path::PathBuf;
use std::process::Command;

/// Who a successful login becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// USER: the Unix login or the virtual address.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// Unix users only: their login shell (and their groups come from initgroups).
    pub shell: Option<String>,
}

impl Account {
    fn is_unix(&self) -> bool {
        self.shell.is_some()
    }
}

/// Check a login. Ok(None) for a wrong password and for an unknown user alike;
/// each costs one hash of the kind a real check of that name would run (see
/// `virtual_account` and `unix_account`), so the time does not tell them apart.
pub fn verify(home: &Home, login: &[u8], password: &[u8]) -> Result<Option<Account>, CheckError> {
    let found = match std::str::from_utf8(login) {
        Ok(l) if !l.is_empty() && !l.chars().any(|c| c.is_control() || c == '/') => {
            if l.contains('@') {
                virtual_account(home, l, password)?
            } else {
                unix_account(l, password)?
            }
        }
        _ => {
            // No user can have this name: spend what a virtual user's check would.
            let _ = crate::users::password::hash_password(&String::from_utf8_lossy(password));
            None
        }
    };
    match found {
        Some(Lookup { account, matched: true }) if account.uid != 0 => Ok(Some(account)),
        _ => Ok(None),
    }
}

/// The account `login` names, without checking a password: for a foreign
/// checkpassword program that did the check (control/checkpassword). Virtual
/// users by address, Unix users by login name; uid 0 never.
pub fn account(home: &Home, login: &[u8]) -> Result<Option<Account>, CheckError> {
    let Ok(l) = std::str::from_utf8(login) else { return Ok(None) };
    if l.is_empty() || l.chars().any(|c| c.is_control() || c == '/') {
        return Ok(None);
    }
    let found = if l.contains('@') {
        let mut users = crate::users::Users::open(home).map_err(|e| CheckError::Database(e.to_string()))?;
        users.virtual_user(l).map(|v| Account { name: v.address, uid: v.uid, gid: v.gid, home: v.home, shell: None })
    } else {
        let pw = nix::unistd::User::from_name(l)
            .map_err(|e| CheckError::Database(format!("cannot look up {l:?} in the password database: {e}")))?;
        pw.map(|pw| Account {
            name: pw.name,
            uid: pw.uid.as_raw(),
            gid: pw.gid.as_raw(),
            home: pw.dir,
            shell: Some(pw.shell.to_string_lossy().into_owned()),
        })
    };
    Ok(found.filter(|a| a.uid != 0))
}

/// A user that exists, and whether the password matched.
struct Lookup {
    account: Account,
    matched: bool,
}

/// A virtual user: its hash from passwd.cdb. Unknown and locked users cost one
/// argon2id hash with the default cost, as a user's check does (postern-admin
/// makes every new hash with that cost).
fn virtual_account(home: &Home, address: &str, password: &[u8]) -> Result<Option<Lookup>, CheckError> {
    let db = |e: crate::users::UsersError| CheckError::Database(e.to_string());
    let mut users = crate::users::Users::open(home).map_err(db)?;
    let pw = String::from_utf8_lossy(password);
    let Some(v) = users.virtual_user(address) else {
        let _ = crate::users::password::hash_password(&pw);
        return Ok(None);
    };
    let hash = crate::users::password_hash(home, &v.address).map_err(db)?.unwrap_or_default();
    // The hash runs first, whatever the password's bytes: a password that is not
    // UTF-8 fails only after the same work.
    let matched = if crate::users::password::has_password(&hash) {
        crate::users::password::check_password(&pw, &hash)
    } else {
        let _ = crate::users::password::hash_password(&pw);
        false
    } && std::str::from_utf8(password).is_ok();
    let account = Account { name: v.address, uid: v.uid, gid: v.gid, home: v.home, shell: None };
    Ok(Some(Lookup { account, matched }))
}

/// Where Unix hashes are when nothing else is asked (the stand-in's source).
const SHADOW: &str = "/etc/shadow";
/// The stand-in when no account has a crypt hash (then no Unix login can succeed).
const FALLBACK_SETTING: &str = "$6$postern.standin$";

/// A Unix user: the password database, then shadow, checked with crypt(3). An
/// unknown name, a locked account ("!", "*") or one without a password costs one
/// crypt(3) with a stand-in setting of the kind and cost most accounts here have
/// (`stand_in`), as OpenSSH does, so that it takes as long as a wrong password.
fn unix_account(name: &str, password: &[u8]) -> Result<Option<Lookup>, CheckError> {
    let pw = nix::unistd::User::from_name(name)
        .map_err(|e| CheckError::Database(format!("cannot look up {name:?} in the password database: {e}")))?;
    let hash = match &pw {
        None => String::new(),
        Some(pw) => match crate::os::sys::shadow_hash(&pw.name) {
            Ok(h) => h.unwrap_or_default(),
            // Only root reads shadow; an unprivileged instance cannot check Unix users.
            Err(e) if e.raw_os_error() == Some(libc::EACCES) && !crate::os::privs::is_root() => String::new(),
            Err(e) => return Err(CheckError::Database(format!("cannot read the shadow entry of {name:?}: {e}"))),
        },
    };
    // "!", "*", "x" and "" are locked or password-less accounts: never a match.
    let usable = hash.starts_with('$');
    let setting = if usable { hash.clone() } else { stand_in() };
    let computed = crate::os::sys::crypt(password, &setting);
    let matched = usable && computed.is_some_and(|c| constant_time_eq(c.as_bytes(), hash.as_bytes()));
    let Some(pw) = pw else { return Ok(None) };
    let shell = pw.shell.to_string_lossy().into_owned();
    let account = Account { name: pw.name, uid: pw.uid.as_raw(), gid: pw.gid.as_raw(), home: pw.dir, shell: Some(shell) };
    Ok(Some(Lookup { account, matched }))
}

/// The stand-in setting for a name without a usable hash (see `unix_account`).
fn stand_in() -> String {
    let shadow = std::fs::read(SHADOW).unwrap_or_default();
    most_common_setting(&String::from_utf8_lossy(&shadow)).unwrap_or_else(|| FALLBACK_SETTING.to_string())
}

/// The first hash in a shadow file of the kind and cost most of its hashes
/// share (`$y$j9T`, `$6$rounds=N`, `$6`: what is left without salt and hash).
fn most_common_setting(shadow: &str) -> Option<String> {
    let kind = |h: &str| h.rsplitn(3, '$').nth(2).unwrap_or("").to_string();
    let mut kinds: Vec<(String, usize, &str)> = Vec::new();
    for h in shadow.lines().filter_map(|l| l.split(':').nth(1)).filter(|h| h.starts_with('$')) {
        let k = kind(h);
        match kinds.iter_mut().find(|(seen, _, _)| *seen == k) {
            Some(entry) => entry.1 += 1,
            None => kinds.push((k, 1, h)),
        }
    }
    // max_by_key keeps the last of equals: reversed, that is the first seen.
    kinds.iter().rev().max_by_key(|(_, n, _)| *n).map(|(_, _, h)| h.to_string())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Become the account: as root, its uid, gid and groups (a Unix user's groups,
/// only its gid for a virtual one). Not root: only our own uid can be served.
pub fn become_account(a: &Account) -> Result<(), CheckError> {
    let err = |e: String| CheckError::Become(a.name.clone(), e);
    if !crate::os::privs::is_root() {
        if a.uid != crate::os::sys::real_uid() {
            return Err(err(format!(
                "uid {} is not mine ({}): an unprivileged postern-auth serves only its own uid",
                a.uid,
                crate::os::sys::real_uid()
            )));
        }
        return Ok(());
    }
    if a.is_unix() {
        use nix::unistd::{Gid, Uid};
        let name = std::ffi::CString::new(a.name.as_str()).map_err(|e| err(e.to_string()))?;
        nix::unistd::initgroups(&name, Gid::from_raw(a.gid)).map_err(|e| err(format!("initgroups: {e}")))?;
        nix::unistd::setgid(Gid::from_raw(a.gid)).map_err(|e| err(format!("setgid: {e}")))?;
        nix::unistd::setuid(Uid::from_raw(a.uid)).map_err(|e| err(format!("setuid: {e}")))?;
        Ok(())
    } else {
        crate::os::privs::become_ids(a.uid, a.gid).map_err(|e| err(e.to_string()))
    }
}

/// The command that runs PROG for the account: HOME, USER (and SHELL), in HOME.
pub fn command_for(a: &Account, prog: &std::ffi::OsStr, args: &[std::ffi::OsString]) -> Command {
    let mut c = Command::new(prog);
    c.args(args).env("HOME", &a.home).env("USER", &a.name).current_dir(&a.home);
    match &a.shell {
        Some(sh) => c.env("SHELL", sh),
        None => c.env_remove("SHELL"),
    };
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stand_in_is_the_most_common_kind_first_seen() {
        let shadow =
            "root:*:1::::::\na:$6$s1$h1:1::::::\nb:$y$j9T$s2$h2:1::::::\nc:!:1::::::\nd:$y$j9T$s3$h3:1::::::\ne:$6$s4$h4:1::::::\n";
        assert_eq!(most_common_setting(shadow).as_deref(), Some("$6$s1$h1"), "a tie: the first seen");
        let more = format!("{shadow}f:$y$j9T$s5$h5:1::::::\n");
        assert_eq!(most_common_setting(&more).as_deref(), Some("$y$j9T$s2$h2"));
        let rounds = "a:$6$rounds=9000$s$h:1\nb:$6$s$h:1\nc:$6$rounds=9000$t$h:1\n";
        assert_eq!(most_common_setting(rounds).as_deref(), Some("$6$rounds=9000$s$h"), "the cost is part of the kind");
        assert_eq!(most_common_setting("root:*:1\nx:!:1\n"), None);
        assert!(
            crate::os::sys::crypt(b"x", FALLBACK_SETTING).is_some_and(|c| c.starts_with("$6$")),
            "the fallback is a setting crypt takes"
        );
    }

    #[test]
    fn compares_in_constant_time_shape() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
