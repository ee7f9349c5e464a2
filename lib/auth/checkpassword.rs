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
    /// Every place for a password check stayed taken (authconcurrency, authwait).
    Busy(u32, std::time::Duration),
    /// This client address had too many failed logins; seconds left.
    Refused(String, u64),
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
            CheckError::Busy(n, wait) => write!(
                f,
                "all {n} places for password checks stayed busy for {} s (authconcurrency, authwait): too many logins at once",
                wait.as_secs()
            ),
            CheckError::Refused(ip, left) => {
                write!(f, "too many failed logins from {ip}: its logins are refused for {left} more seconds (authfailmax, authfailwindow)")
            }
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

/// Start `cmd` (an auth program and what it runs) with `request` on its fd 3.
/// Its other descriptors are the caller's choice (popup hands it the client).
pub fn spawn(cmd: &mut Command, request: &[u8]) -> io::Result<std::process::Child> {
    let (r, w) = crate::os::sys::pipe()?;
    let child = crate::os::sys::spawn_with_fds(cmd, &[(r, 3)])?;
    // At most 512 bytes: the pipe holds them even if the child never reads.
    let _ = std::fs::File::from(w).write_all(request);
    Ok(child)
}

/// How one login through a checkpassword chain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The chain served the session; its exit status.
    Served(Option<i32>),
    /// A wrong login (or a misused checkpassword program).
    Failed,
    /// The login could not be checked now (exit 111).
    Temporary,
}

/// Run `child` (AUTHPROG and its arguments) with the login on fd 3 and wait:
/// what POP3's and IMAP's pre-login programs do for each attempt. `setup`
/// adjusts the command (its environment); `log` gets the real reason of a
/// failure, which the client is never told.
pub fn attempt(
    child: &[std::ffi::OsString],
    setup: impl FnOnce(&mut Command),
    login: &[u8],
    password: &[u8],
    remote: &str,
    log: &mut dyn FnMut(&str),
) -> Attempt {
    let who = crate::os::log::show(login);
    let Some(req) = encode(login, password, b"") else {
        log(&format!("login {who:?} from {remote}: too long or holds NUL"));
        return Attempt::Failed;
    };
    let prog = child[0].to_string_lossy();
    let mut cmd = Command::new(&child[0]);
    cmd.args(&child[1..]);
    setup(&mut cmd);
    let code = match spawn(&mut cmd, &req).and_then(|mut c| c.wait()) {
        Ok(st) => st.code(),
        Err(e) => {
            log(&format!("cannot run {prog}: {e}; check the command line"));
            return Attempt::Failed;
        }
    };
    match code {
        Some(EXIT_BAD) => log(&format!("authentication failed for {who:?} from {remote}")),
        Some(EXIT_MISUSE) => log(&format!("{prog} says it was misused (exit 2) for {who:?}")),
        Some(EXIT_TEMP) => {
            log(&format!("{prog} failed temporarily (exit 111) for {who:?}; see its log line"));
            return Attempt::Temporary;
        }
        other => return Attempt::Served(other),
    }
    Attempt::Failed
}

/// Ask a foreign checkpassword program (control/checkpassword: the program and
/// its arguments, split at blanks) whether login and password are right: it
/// runs with the request on fd 3 and `/bin/true` as the program to run on
/// success, so only its verdict counts; whatever uid it switched to ends with
/// it. Ok(false): it said no (exit 1).
pub fn ask_foreign(command_line: &str, login: &[u8], password: &[u8]) -> Result<bool, CheckError> {
    let mut words = command_line.split_whitespace();
    let program = PathBuf::from(words.next().unwrap_or_default());
    let Some(req) = encode(login, password, b"") else { return Ok(false) };
    let mut cmd = Command::new(&program);
    cmd.args(words).arg("/bin/true").env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // Programs that log or limit by address (vchkpw, checkpassword-pam) see the client.
    if let Some(ip) = std::env::var_os("TCPREMOTEIP") {
        cmd.env("TCPREMOTEIP", ip);
    }
    // Setuid root (postern-auth in a system install) leaves the real uid the
    // caller's: the program gets root whole, as under tcpserver in qmail.
    if crate::os::privs::is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(0).gid(0);
    }
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    let mut child = spawn(&mut cmd, &req).map_err(|e| CheckError::Spawn(program.clone(), e))?;
    let st = child.wait().map_err(|e| CheckError::Spawn(program.clone(), e))?;
    match st.code() {
        Some(0) => Ok(true),
        Some(EXIT_BAD) => Ok(false),
        c => Err(CheckError::Exit(program, c)),
    }
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
}
