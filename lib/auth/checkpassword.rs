//! The checkpassword interface, both sides (D. J. Bernstein's, as qmail-popup and
//! qmail-pop3d use it, so any checkpassword program works in postern-auth's place).
//!
//! The caller runs `AUTHPROG PROG [ARG...]` with fd 3 the read end of a pipe that
//! carries `login NUL password NUL timestamp NUL` (at most 512 bytes; the timestamp
//! may be empty). AUTHPROG reads it and closes fd 3. On success it becomes the
//! user (uid, gid, groups), sets HOME and USER (and SHELL for Unix users), changes
//! to HOME and execs PROG ARGS. Otherwise it exits: 1 wrong login or password
//! (the same for an unknown user, so nothing tells which users exist), 2 misuse
//! (no fd 3, a malformed request), 111 a temporary problem (a database that cannot
//! be read).
//!
//! postern-auth's logins: an address (`alice@example.org`) is a virtual user:
//! uid/gid/home from users/cdb, the hash from users/passwd.cdb (argon2id, `$6$`,
//! `$5$`). Anything else is a Unix user: the password database for uid, gid, home
//! and shell, shadow for the hash, checked with crypt(3) (yescrypt, `$6$`, ...).
//! uid 0 never logs in. A postern-auth that is not root (an unprivileged instance)
//! cannot switch users, so it accepts only users with its own uid.

use crate::error::{Classify, Kind};
use crate::os::home::Home;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The most the request may hold, NULs included.
pub const MAX_REQUEST: usize = 512;
/// Exit codes of the interface.
pub const EXIT_BAD: i32 = 1;
pub const EXIT_MISUSE: i32 = 2;
pub const EXIT_TEMP: i32 = 111;

#[derive(Debug)]
pub enum CheckError {
    /// fd 3 is missing, or what came on it is not `login\0password\0timestamp\0`.
    Misuse(String),
    /// A user database could not be read.
    Database(String),
    /// The login was right but this process cannot become the user.
    Become(String, String),
    /// Running the auth program failed.
    Spawn(PathBuf, io::Error),
    /// The auth program said neither yes nor no.
    Exit(PathBuf, Option<i32>),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Misuse(why) => {
                write!(f, "{why}; run me as a checkpassword program: login NUL password NUL timestamp NUL on fd 3, then PROG [ARG...]")
            }
            CheckError::Database(e) => write!(f, "{e}"),
            CheckError::Become(user, e) => write!(f, "cannot become {user}: {e}"),
            CheckError::Spawn(p, e) => write!(f, "cannot run {}: {e}; check that it exists and is executable", p.display()),
            CheckError::Exit(p, Some(c)) => write!(f, "{} exited {c} (1 = bad login, 2 = misuse, 111 = try later)", p.display()),
            CheckError::Exit(p, None) => write!(f, "{} was killed by a signal", p.display()),
        }
    }
}

impl Classify for CheckError {
    fn kind(&self) -> Kind {
        match self {
            CheckError::Misuse(_) => Kind::Permanent,
            _ => Kind::Temporary,
        }
    }
}

/// One login attempt as it travels on fd 3.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub login: Vec<u8>,
    pub password: Vec<u8>,
    pub timestamp: Vec<u8>,
}

/// The bytes for fd 3; None when a field holds a NUL or the whole is too long.
pub fn encode(login: &[u8], password: &[u8], timestamp: &[u8]) -> Option<Vec<u8>> {
    if [login, password, timestamp].iter().any(|f| f.contains(&0)) {
        return None;
    }
    let mut v = Vec::with_capacity(login.len() + password.len() + timestamp.len() + 3);
    for f in [login, password, timestamp] {
        v.extend_from_slice(f);
        v.push(0);
    }
    (v.len() <= MAX_REQUEST).then_some(v)
}

/// Split a request. The timestamp and its NUL may be missing (some callers send
/// only login and password), but login and password must be terminated.
pub fn parse(buf: &[u8]) -> Result<Request, CheckError> {
    if buf.len() > MAX_REQUEST {
        return Err(CheckError::Misuse(format!("more than {MAX_REQUEST} bytes on fd 3")));
    }
    let mut parts = buf.splitn(3, |&b| b == 0);
    let login = parts.next().unwrap_or_default();
    let password = parts.next().ok_or_else(|| CheckError::Misuse("no NUL after the login on fd 3".into()))?;
    let rest = parts.next().ok_or_else(|| CheckError::Misuse("no NUL after the password on fd 3".into()))?;
    let timestamp = rest.split(|&b| b == 0).next().unwrap_or_default();
    Ok(Request { login: login.to_vec(), password: password.to_vec(), timestamp: timestamp.to_vec() })
}

/// Read the request from fd 3 and close it (the auth program's side).
pub fn read_fd3() -> Result<Request, CheckError> {
    let f = std::fs::File::from(crate::os::sys::take_fd(3).map_err(|e| CheckError::Misuse(e.to_string()))?);
    let mut buf = Vec::with_capacity(MAX_REQUEST + 1);
    f.take(MAX_REQUEST as u64 + 1).read_to_end(&mut buf).map_err(|e| CheckError::Misuse(format!("cannot read fd 3: {e}")))?;
    parse(&buf)
}

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
            let _ = crate::users::hash_password(&String::from_utf8_lossy(password));
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
    let matched = if crate::users::has_password(&hash) {
        std::str::from_utf8(password).is_ok() && crate::users::check_password(&pw, &hash)
    } else {
        // A locked user costs as much as any other.
        let _ = crate::users::hash_password(&pw);
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

/// Start `cmd` (an auth program and what it runs) with `request` on its fd 3.
/// Its other descriptors are the caller's choice (popup hands it the client).
pub fn spawn(cmd: &mut Command, request: &[u8]) -> io::Result<std::process::Child> {
    let (r, w) = crate::os::sys::pipe()?;
    let child = crate::os::sys::spawn_with_fds(cmd, &[(r, 3)])?;
    // At most 512 bytes: the pipe holds them even if the child never reads.
    let _ = std::fs::File::from(w).write_all(request);
    Ok(child)
}

/// Ask `postern-auth /bin/true` of `home` whether login and password are right
/// (for SMTP AUTH). Ok(false) is a wrong login; Err a temporary failure.
pub fn check(home: &Home, login: &str, password: &str) -> Result<bool, CheckError> {
    check_with(home, &home.bin("postern-auth"), login, password)
}

/// `check` with another checkpassword program (run with POSTERN_HOME=home).
pub fn check_with(home: &Home, auth: &Path, login: &str, password: &str) -> Result<bool, CheckError> {
    let Some(req) = encode(login.as_bytes(), password.as_bytes(), b"") else { return Ok(false) };
    let mut cmd = Command::new(auth);
    cmd.arg("/bin/true").env("POSTERN_HOME", home.root()).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    let mut child = spawn(&mut cmd, &req).map_err(|e| CheckError::Spawn(auth.to_path_buf(), e))?;
    let st = child.wait().map_err(|e| CheckError::Spawn(auth.to_path_buf(), e))?;
    match st.code() {
        Some(0) => Ok(true),
        Some(EXIT_BAD) => Ok(false),
        c => Err(CheckError::Exit(auth.to_path_buf(), c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_limits() {
        let r = encode(b"alice@x", b"pw", b"<1.2@h>").unwrap();
        assert_eq!(r, b"alice@x\0pw\0<1.2@h>\0");
        assert_eq!(parse(&r).unwrap(), Request { login: b"alice@x".to_vec(), password: b"pw".to_vec(), timestamp: b"<1.2@h>".to_vec() });
        // Timestamp missing entirely, or empty.
        assert_eq!(parse(b"a\0b\0").unwrap().password, b"b");
        assert_eq!(parse(b"a\0b\0\0").unwrap().timestamp, b"");
        assert!(matches!(parse(b"a\0b"), Err(CheckError::Misuse(_))));
        assert!(matches!(parse(b"nothing"), Err(CheckError::Misuse(_))));
        assert!(encode(b"a", b"p\0w", b"").is_none());
        assert!(encode(b"a", &[b'x'; 509], b"").is_none());
        assert!(encode(b"a", &[b'x'; 508], b"").is_some(), "exactly 512 bytes fit");
        assert!(matches!(parse(&[b'x'; 513]), Err(CheckError::Misuse(_))));
    }

    #[test]
    fn compares_in_constant_time_shape() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
