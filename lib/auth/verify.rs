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
/// both cost about one hash, so the time does not tell them apart either.
pub fn verify(home: &Home, login: &[u8], password: &[u8]) -> Result<Option<Account>, CheckError> {
    let found = match std::str::from_utf8(login) {
        Ok(l) if !l.is_empty() && !l.chars().any(|c| c.is_control() || c == '/') => {
            if l.contains('@') {
                virtual_account(home, l, password)?
            } else {
                unix_account(l, password)?
            }
        }
        _ => None,
    };
    match found {
        Some(Lookup { account, matched: true }) if account.uid != 0 => Ok(Some(account)),
        Some(_) => Ok(None),
        None => {
            // Spend what a real check would.
            let _ = crate::users::password::hash_password(&String::from_utf8_lossy(password));
            Ok(None)
        }
    }
}

/// A user that exists, and whether the password matched.
struct Lookup {
    account: Account,
    matched: bool,
}

fn virtual_account(home: &Home, address: &str, password: &[u8]) -> Result<Option<Lookup>, CheckError> {
    let db = |e: crate::users::UsersError| CheckError::Database(e.to_string());
    let mut users = crate::users::Users::open(home).map_err(db)?;
    let Some(v) = users.virtual_user(address) else { return Ok(None) };
    let hash = crate::users::password_hash(home, &v.address).map_err(db)?.unwrap_or_default();
    let pw = String::from_utf8_lossy(password);
    let matched = if crate::users::password::has_password(&hash) {
        std::str::from_utf8(password).is_ok() && crate::users::password::check_password(&pw, &hash)
    } else {
        // A locked user costs as much as any other.
        let _ = crate::users::password::hash_password(&pw);
        false
    };
    let account = Account { name: v.address, uid: v.uid, gid: v.gid, home: v.home, shell: None };
    Ok(Some(Lookup { account, matched }))
}

fn unix_account(name: &str, password: &[u8]) -> Result<Option<Lookup>, CheckError> {
    let pw = nix::unistd::User::from_name(name)
        .map_err(|e| CheckError::Database(format!("cannot look up {name:?} in the password database: {e}")))?;
    let Some(pw) = pw else { return Ok(None) };
    let hash = match crate::os::sys::shadow_hash(&pw.name) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        // Only root reads shadow; an unprivileged instance cannot check Unix users.
        Err(e) if e.raw_os_error() == Some(libc::EACCES) && !crate::os::privs::is_root() => return Ok(None),
        Err(e) => return Err(CheckError::Database(format!("cannot read the shadow entry of {name:?}: {e}"))),
    };
    // "!", "*", "x" and "" are locked or password-less accounts: never a match.
    let matched =
        hash.starts_with('$') && crate::os::sys::crypt(password, &hash).is_some_and(|c| constant_time_eq(c.as_bytes(), hash.as_bytes()));
    let shell = pw.shell.to_string_lossy().into_owned();
    let account = Account { name: pw.name, uid: pw.uid.as_raw(), gid: pw.gid.as_raw(), home: pw.dir, shell: Some(shell) };
    Ok(Some(Lookup { account, matched }))
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
    fn compares_in_constant_time_shape() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
