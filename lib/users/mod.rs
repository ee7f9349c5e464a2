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
//!    being the extension. Nothing else is tried for a virtual domain.
//! 2. users/assign: an exact entry, else the longest wildcard prefix.
//! 3. The password database, as qmail-getpw: the whole local part, then shorter
//!    prefixes ending before a '-' (so `www-data` and `alice-list` both work); a
//!    user with uid 0, or whose home directory it does not own, gets no mail.
//! 4. The Unix user `alias` with the whole local part as extension
//!    (~alias/.qmail-LOCAL).
//!
//! # Keys in users/cdb
//! ```text
//! "=" local          exact assign entry     -> user NUL uid NUL gid NUL home NUL dash NUL ext
//! "+" prefix         wildcard assign entry  -> user NUL uid NUL gid NUL home NUL dash NUL pre
//! "V" address        virtual user           -> "" NUL uid NUL gid NUL home
//! "D" domain         virtual domain         -> ""
//! ```
//! (The first field of a V record once held the hash; it is empty now, see
//! passwd.cdb.)
//! Keys are lower-cased. The file is replaced atomically (postern::cdb::build), so a
//! reader sees the old or the new database, never a half-written one.

use crate::config::cdb::{self, CdbError, Db};
use crate::error::{Classify, Kind};
use crate::os::home::Home;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where and as whom one local delivery happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub dash: String,
    pub ext: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualUser {
    pub address: String,
    pub hash: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

#[derive(Debug)]
pub enum UsersError {
    /// users/cdb cannot be opened or read.
    Cdb(CdbError),
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
}

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsersError::Cdb(e) => write!(f, "{e}; run `postern-admin rebuild` to recreate it"),
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
        }
    }
}

impl Classify for UsersError {
    fn kind(&self) -> Kind {
        match self {
            UsersError::Cdb(_) | UsersError::Io(..) | UsersError::Syntax { .. } | UsersError::Passwd(..) | UsersError::Service(_) => {
                Kind::Temporary
            }
            UsersError::BadAddress(..)
            | UsersError::NotVirtualDomain(_)
            | UsersError::Exists(_)
            | UsersError::NoSuchUser(_)
            | UsersError::NoSuchDomain(_)
            | UsersError::DomainInUse(..) => Kind::Permanent,
        }
    }
}

fn cdb_path(home: &Home) -> PathBuf {
    home.users().join("cdb")
}

/// users/passwd.cdb: address -> password hash.
pub fn passwd_cdb_path(home: &Home) -> PathBuf {
    home.users().join("passwd.cdb")
}

/// The stored hash of a virtual user (any case), from users/passwd.cdb; None when
/// the user has no entry. An unreadable file is an error (temporary).
pub fn password_hash(home: &Home, address: &str) -> Result<Option<String>, UsersError> {
    let mut db = match Db::open(&passwd_cdb_path(home)).map_err(UsersError::Cdb)? {
        Some(db) => db,
        None => return Ok(None),
    };
    Ok(db.get(address.to_ascii_lowercase().as_bytes()).map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Lookups in users/cdb, then the password database.
pub struct Users {
    db: Option<Db>,
    home: Home,
}

impl Users {
    /// Opens $POSTERN_HOME/users/cdb (missing file = no entries). Cheap; callers
    /// reopen to see rebuilds.
    pub fn open(home: &Home) -> Result<Users, UsersError> {
        Ok(Users { db: Db::open(&cdb_path(home)).map_err(UsersError::Cdb)?, home: home.clone() })
    }

    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.db.as_mut().and_then(|db| db.get(key.as_bytes()))
    }

    /// Resolve a local delivery: `local` is the (already virtualdomains-rewritten)
    /// local part, `domain` its domain.
    pub fn lookup(&mut self, local: &str, domain: &str) -> Result<Option<Target>, UsersError> {
        if self.is_virtual_domain(domain) {
            return Ok(self.lookup_virtual(local, domain));
        }
        if let Some(t) = self.lookup_assign(local) {
            return Ok(Some(t));
        }
        if let Some(t) = unix_user(local)? {
            return Ok(Some(t));
        }
        // qmail's last resort: ~alias/.qmail-LOCAL.
        match passwd("alias")? {
            Some(pw) if pw.uid.as_raw() != 0 => Ok(Some(Target {
                user: "alias".into(),
                uid: pw.uid.as_raw(),
                gid: pw.gid.as_raw(),
                home: pw.dir,
                dash: "-".into(),
                ext: local.to_string(),
            })),
            _ => Ok(None),
        }
    }

    fn lookup_virtual(&mut self, local: &str, domain: &str) -> Option<Target> {
        let domain = domain.to_ascii_lowercase();
        let lower = local.to_ascii_lowercase();
        // The whole local part first, then shorter prefixes at '-' from the right.
        let mut cut = Some(lower.len());
        while let Some(end) = cut {
            let address = format!("{}@{domain}", &lower[..end]);
            if let Some(v) = self.virtual_record(&address) {
                let ext = if end < local.len() { local[end + 1..].to_string() } else { String::new() };
                let dash = if end < local.len() { "-" } else { "" };
                return Some(Target { user: v.address, uid: v.uid, gid: v.gid, home: v.home, dash: dash.into(), ext });
            }
            cut = lower[..end].rfind('-');
        }
        None
    }

    fn lookup_assign(&mut self, local: &str) -> Option<Target> {
        let lower = local.to_ascii_lowercase();
        if let Some(v) = self.get(&format!("={lower}")) {
            return decode_assign(&v, "");
        }
        // Longest wildcard prefix wins; the empty prefix is a catch-all.
        for end in (0..=lower.len()).rev() {
            if !lower.is_char_boundary(end) {
                continue;
            }
            if let Some(v) = self.get(&format!("+{}", &lower[..end])) {
                return decode_assign(&v, &local[end..]);
            }
        }
        None
    }

    /// True if `domain` (any case) hosts virtual users.
    pub fn is_virtual_domain(&mut self, domain: &str) -> bool {
        self.get(&format!("D{}", domain.to_ascii_lowercase())).is_some()
    }

    /// A virtual user by full address (any case). Its hash comes from
    /// users/passwd.cdb and is empty when the caller cannot read that file.
    pub fn virtual_user(&mut self, address: &str) -> Option<VirtualUser> {
        let mut v = self.virtual_record(address)?;
        v.hash = password_hash(&self.home, &v.address).ok().flatten().unwrap_or_default();
        Some(v)
    }

    /// uid, gid and home of a virtual user, without its hash.
    fn virtual_record(&mut self, address: &str) -> Option<VirtualUser> {
        let address = address.to_ascii_lowercase();
        let v = self.get(&format!("V{address}"))?;
        let text = String::from_utf8(v).ok()?;
        let f: Vec<&str> = text.split('\0').collect();
        if f.len() != 4 {
            return None;
        }
        Some(VirtualUser { address, hash: f[0].to_string(), uid: f[1].parse().ok()?, gid: f[2].parse().ok()?, home: PathBuf::from(f[3]) })
    }
}

/// An assign record from the cdb; `rest` is appended to its ext (wildcards).
fn decode_assign(v: &[u8], rest: &str) -> Option<Target> {
    let text = std::str::from_utf8(v).ok()?;
    let f: Vec<&str> = text.split('\0').collect();
    if f.len() != 6 {
        return None;
    }
    Some(Target {
        user: f[0].to_string(),
        uid: f[1].parse().ok()?,
        gid: f[2].parse().ok()?,
        home: PathBuf::from(f[3]),
        dash: f[4].to_string(),
        ext: format!("{}{rest}", f[5]),
    })
}

fn passwd(name: &str) -> Result<Option<nix::unistd::User>, UsersError> {
    nix::unistd::User::from_name(name).map_err(|e| UsersError::Passwd(name.to_string(), e.to_string()))
}

/// qmail-getpw: the longest prefix of `local` ending at a '-' (or the whole of it)
/// that names a Unix user with a uid other than 0 whose home directory it owns.
fn unix_user(local: &str) -> Result<Option<Target>, UsersError> {
    use std::os::unix::fs::MetadataExt;
    let lower = local.to_ascii_lowercase();
    let mut cut = Some(lower.len());
    while let Some(end) = cut {
        let name = &lower[..end];
        // Names longer than any real login are not worth asking about.
        if !name.is_empty() && name.len() <= 32 {
            if let Some(pw) = passwd(name)? {
                let owned = fs::metadata(&pw.dir).map(|m| m.uid() == pw.uid.as_raw()).unwrap_or(false);
                if pw.uid.as_raw() != 0 && owned {
                    let (dash, ext) = if end < local.len() { ("-", &local[end + 1..]) } else { ("", "") };
                    return Ok(Some(Target {
                        user: pw.name,
                        uid: pw.uid.as_raw(),
                        gid: pw.gid.as_raw(),
                        home: pw.dir,
                        dash: dash.into(),
                        ext: ext.into(),
                    }));
                }
            }
        }
        cut = lower[..end].rfind('-');
    }
    Ok(None)
}

fn syntax(path: &Path, line: usize, problem: impl Into<String>) -> UsersError {
    UsersError::Syntax { path: path.to_path_buf(), line, problem: problem.into() }
}

fn read_text(path: &Path) -> Result<Option<String>, UsersError> {
    match fs::read(path) {
        Ok(b) => String::from_utf8(b).map(Some).map_err(|e| {
            let line = e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            syntax(path, line, "not valid UTF-8")
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(UsersError::Io(path.to_path_buf(), e)),
    }
}

fn number(path: &Path, line: usize, what: &str, s: &str) -> Result<u32, UsersError> {
    s.parse().map_err(|_| syntax(path, line, format!("{what} {s:?} is not a number")))
}

/// cdb records: (key, value).
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Parse users/assign into cdb records. qmail's format: the file must end with a
/// line "." so a truncated file is noticed.
pub fn parse_assign(path: &Path, text: &str) -> Result<Records, UsersError> {
    let mut records = Vec::new();
    let mut ended = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line == "." {
            ended = true;
            break;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let kind = line.as_bytes()[0];
        if kind != b'=' && kind != b'+' {
            return Err(syntax(path, n, "a line must start with = (exact), + (wildcard) or be the final \".\""));
        }
        let body = line[1..].strip_suffix(':').unwrap_or(&line[1..]);
        let f: Vec<&str> = body.split(':').collect();
        if f.len() != 7 {
            return Err(syntax(path, n, format!("expected 7 fields (local:user:uid:gid:home:dash:ext:), found {}", f.len())));
        }
        if f[1].is_empty() {
            return Err(syntax(path, n, "the user field is empty"));
        }
        let uid = number(path, n, "uid", f[2])?;
        let gid = number(path, n, "gid", f[3])?;
        if !f[4].starts_with('/') {
            return Err(syntax(path, n, format!("home {:?} is not an absolute path", f[4])));
        }
        let key = format!("{}{}", kind as char, f[0].to_ascii_lowercase());
        let value = format!("{}\0{uid}\0{gid}\0{}\0{}\0{}", f[1], f[4], f[5], f[6]);
        records.push((key.into_bytes(), value.into_bytes()));
    }
    if !ended {
        return Err(syntax(path, text.lines().count().max(1), "missing the final line \".\" (is the file truncated?)"));
    }
    Ok(records)
}

/// Meaningful lines of a users/ list file: (line number, text).
fn list_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Parse one users/virtual line.
pub fn parse_virtual_line(path: &Path, n: usize, line: &str) -> Result<VirtualUser, UsersError> {
    let f: Vec<&str> = line.splitn(5, ':').collect();
    if f.len() != 5 {
        return Err(syntax(path, n, format!("expected address:hash:uid:gid:home, found {} field(s)", f.len())));
    }
    if !f[0].contains('@') {
        return Err(syntax(path, n, format!("address {:?} has no @domain", f[0])));
    }
    let uid = number(path, n, "uid", f[2])?;
    let gid = number(path, n, "gid", f[3])?;
    if !f[4].starts_with('/') {
        return Err(syntax(path, n, format!("home {:?} is not an absolute path", f[4])));
    }
    Ok(VirtualUser { address: f[0].to_ascii_lowercase(), hash: f[1].to_string(), uid, gid, home: PathBuf::from(f[4]) })
}

/// All virtual users in users/virtual.
pub fn read_virtual(home: &Home) -> Result<Vec<VirtualUser>, UsersError> {
    let path = home.users().join("virtual");
    let text = read_text(&path)?.unwrap_or_default();
    list_lines(&text).map(|(n, l)| parse_virtual_line(&path, n, l)).collect()
}

/// All domains in users/vdomains, lower-cased.
pub fn read_vdomains(home: &Home) -> Result<Vec<String>, UsersError> {
    let path = home.users().join("vdomains");
    let text = read_text(&path)?.unwrap_or_default();
    Ok(list_lines(&text).map(|(_, l)| l.to_ascii_lowercase()).collect())
}

/// Compile users/assign + users/virtual + users/vdomains into users/cdb atomically.
/// Returns the number of records. Takes the edit lock, so two rebuilds never share
/// the temporary file.
pub fn rebuild(home: &Home) -> Result<usize, UsersError> {
    let _lock = lock(home)?;
    compile(home)
}

/// `rebuild` for callers that already hold the edit lock.
fn compile(home: &Home) -> Result<usize, UsersError> {
    let dir = home.users();
    let mut records = Vec::new();
    let assign = dir.join("assign");
    if let Some(text) = read_text(&assign)? {
        records.extend(parse_assign(&assign, &text)?);
    }
    for d in read_vdomains(home)? {
        records.push((format!("D{d}").into_bytes(), Vec::new()));
    }
    let mut hashes = Vec::new();
    for v in read_virtual(home)? {
        let value = format!("\0{}\0{}\0{}", v.uid, v.gid, v.home.display());
        records.push((format!("V{}", v.address).into_bytes(), value.into_bytes()));
        hashes.push((v.address.into_bytes(), v.hash.into_bytes()));
    }
    // The hashes first: a reader never finds a user in cdb whose hash is not there
    // yet. passwd.cdb is private to its writer (and setuid-root postern-auth);
    // cdb has no secrets and every service may read it.
    let pw = passwd_cdb_path(home);
    cdb::build_mode(&pw, &hashes, 0o600).map_err(UsersError::Cdb)?;
    let path = cdb_path(home);
    cdb::build(&path, &records).map_err(UsersError::Cdb)?;
    Ok(records.len())
}

/// Held while an admin edits users/: two admins at once cannot lose an edit.
pub struct EditLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

pub fn lock(home: &Home) -> Result<EditLock, UsersError> {
    let path = home.users().join("lock");
    fs::create_dir_all(home.users()).map_err(|e| UsersError::Io(home.users(), e))?;
    let f =
        OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path).map_err(|e| UsersError::Io(path.clone(), e))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map(EditLock).map_err(|(_, e)| UsersError::Io(path, io::Error::from(e)))
}

/// Rewrite a users/ list file keeping comments: `keep` decides for each meaningful
/// line; `add` lines are appended.
fn edit_list(path: &Path, keep: impl Fn(&str) -> bool, add: Option<&str>) -> Result<(), UsersError> {
    let text = read_text(path)?.unwrap_or_default();
    let mut out = String::with_capacity(text.len() + 128);
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || keep(t) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some(a) = add {
        out.push_str(a);
        out.push('\n');
    }
    crate::os::fs::write_atomic(path, out.as_bytes(), 0o640).map_err(|e| UsersError::Io(path.to_path_buf(), e))
}

/// Split and check an address given to an admin command: (local, domain), lower-cased.
pub fn split_address(address: &str) -> Result<(String, String), UsersError> {
    let bad = |why: &str| UsersError::BadAddress(address.to_string(), why.to_string());
    let a = address.to_ascii_lowercase();
    let (local, domain) = a.rsplit_once('@').ok_or_else(|| bad("it needs a domain: local@domain"))?;
    if local.is_empty() || domain.is_empty() {
        return Err(bad("both the local part and the domain must be non-empty"));
    }
    // The local part names a directory and the line is ':'-separated.
    if a.chars().any(|c| c.is_control() || c.is_whitespace() || c == ':' || c == '/') || local.starts_with('.') {
        return Err(bad("no spaces, control characters, ':' or '/', and no leading '.'"));
    }
    crate::address::Address::parse(a.as_bytes()).map_err(|e| bad(&e.to_string()))?;
    Ok((local.to_string(), domain.to_string()))
}

/// What `user add` needs beyond the address.
pub struct NewUser {
    pub address: String,
    pub password: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub home: Option<PathBuf>,
}

/// The hash stored for a user added without a password: no password matches it.
pub const LOCKED: &str = "!";

/// Add a virtual user: check its domain, create its Maildir, add the line, rebuild.
/// Returns the user as stored.
pub fn add_virtual_user(home: &Home, new: &NewUser) -> Result<VirtualUser, UsersError> {
    let (local, domain) = split_address(&new.address)?;
    let address = format!("{local}@{domain}");
    let _lock = lock(home)?;
    if !read_vdomains(home)?.contains(&domain) {
        return Err(UsersError::NotVirtualDomain(domain));
    }
    if read_virtual(home)?.iter().any(|v| v.address == address) {
        return Err(UsersError::Exists(address));
    }
    let (uid, gid) = match (new.uid, new.gid) {
        (Some(u), Some(g)) => (u, g),
        (u, g) => {
            let (du, dg) = if crate::os::privs::is_root() {
                crate::os::privs::Service::Virtual.ids().map_err(UsersError::Service)?
            } else {
                (crate::os::sys::real_uid(), nix::unistd::getgid().as_raw())
            };
            (u.unwrap_or(du), g.unwrap_or(dg))
        }
    };
    let mailhome = match &new.home {
        Some(h) => h.clone(),
        None => virtual_home(home).join(&domain).join(&local),
    };
    if !mailhome.is_absolute() {
        return Err(UsersError::BadAddress(address, format!("home {} must be an absolute path", mailhome.display())));
    }
    make_mailbox(&mailhome, uid, gid)?;
    let hash = new.password.as_deref().map(hash_password).unwrap_or_else(|| LOCKED.to_string());
    let user = VirtualUser { address, hash, uid, gid, home: mailhome };
    let line = format!("{}:{}:{}:{}:{}", user.address, user.hash, user.uid, user.gid, user.home.display());
    edit_list(&home.users().join("virtual"), |_| true, Some(&line))?;
    compile(home)?;
    Ok(user)
}

/// control/virtualhome, else $POSTERN_HOME/mail.
pub fn virtual_home(home: &Home) -> PathBuf {
    match crate::config::control::Control::new(home).text(&crate::config::settings::VIRTUALHOME) {
        Ok(v) if !v.is_empty() => PathBuf::from(v),
        _ => home.mail(),
    }
}

/// Create home and home/Maildir/{tmp,new,cur}, mode 0700, owned by uid/gid when we
/// can (root). Existing directories are left as they are.
fn make_mailbox(dir: &Path, uid: u32, gid: u32) -> Result<(), UsersError> {
    let root = crate::os::privs::is_root();
    // Missing parents (mail/, mail/DOMAIN) are the admin's, mode 0755 whatever the
    // umask, so every mailbox owner can get through them to its own directory.
    if let Some(parent) = dir.parent() {
        let missing: Vec<&Path> = parent.ancestors().take_while(|p| !p.as_os_str().is_empty() && !p.exists()).collect();
        for p in missing.into_iter().rev() {
            match fs::create_dir(p) {
                Ok(()) => {
                    let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(UsersError::Io(p.to_path_buf(), e)),
            }
        }
    }
    let maildir = dir.join("Maildir");
    for d in [dir.to_path_buf(), maildir.clone(), maildir.join("tmp"), maildir.join("new"), maildir.join("cur")] {
        match fs::create_dir(&d) {
            Ok(()) => {
                let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
                if root {
                    std::os::unix::fs::chown(&d, Some(uid), Some(gid)).map_err(|e| UsersError::Io(d.clone(), e))?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(UsersError::Io(d, e)),
        }
    }
    Ok(())
}

/// Remove a virtual user (its mailbox stays). Returns the removed user.
pub fn del_virtual_user(home: &Home, address: &str) -> Result<VirtualUser, UsersError> {
    let (local, domain) = split_address(address)?;
    let address = format!("{local}@{domain}");
    let _lock = lock(home)?;
    let path = home.users().join("virtual");
    let user = read_virtual(home)?.into_iter().find(|v| v.address == address).ok_or_else(|| UsersError::NoSuchUser(address.clone()))?;
    edit_list(&path, |l| !line_address_is(l, &address), None)?;
    compile(home)?;
    Ok(user)
}

fn line_address_is(line: &str, address: &str) -> bool {
    line.split(':').next().is_some_and(|a| a.eq_ignore_ascii_case(address))
}

/// Set a virtual user's password.
pub fn set_password(home: &Home, address: &str, password: &str) -> Result<(), UsersError> {
    let (local, domain) = split_address(address)?;
    let address = format!("{local}@{domain}");
    let _lock = lock(home)?;
    let mut user = read_virtual(home)?.into_iter().find(|v| v.address == address).ok_or_else(|| UsersError::NoSuchUser(address.clone()))?;
    user.hash = hash_password(password);
    let line = format!("{}:{}:{}:{}:{}", user.address, user.hash, user.uid, user.gid, user.home.display());
    edit_list(&home.users().join("virtual"), |l| !line_address_is(l, &address), Some(&line))?;
    compile(home)?;
    Ok(())
}

/// Add a virtual domain (adding one that exists is not an error). Returns false if
/// it was already there.
pub fn add_domain(home: &Home, domain: &str) -> Result<bool, UsersError> {
    let d = check_domain(domain)?;
    let _lock = lock(home)?;
    if read_vdomains(home)?.contains(&d) {
        compile(home)?;
        return Ok(false);
    }
    edit_list(&home.users().join("vdomains"), |_| true, Some(&d))?;
    compile(home)?;
    Ok(true)
}

/// Remove a virtual domain that has no users left.
pub fn del_domain(home: &Home, domain: &str) -> Result<(), UsersError> {
    let d = check_domain(domain)?;
    let _lock = lock(home)?;
    if !read_vdomains(home)?.contains(&d) {
        return Err(UsersError::NoSuchDomain(d));
    }
    let n = read_virtual(home)?.iter().filter(|v| v.address.rsplit_once('@').is_some_and(|(_, vd)| vd == d)).count();
    if n > 0 {
        return Err(UsersError::DomainInUse(d, n));
    }
    edit_list(&home.users().join("vdomains"), |l| !l.eq_ignore_ascii_case(&d), None)?;
    compile(home)?;
    Ok(())
}

fn check_domain(domain: &str) -> Result<String, UsersError> {
    let d = domain.trim().to_ascii_lowercase();
    if d.is_empty() || d.starts_with('.') || !d.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '[' || c == ']') {
        return Err(UsersError::BadAddress(domain.to_string(), "a domain is letters, digits, '-' and '.'".into()));
    }
    Ok(d)
}

/// Random bytes from the kernel. Falls back to time and pid only if /dev/urandom is
/// unreadable, which on Linux does not happen in practice.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    if File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut x = t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    buf
}

/// An argon2id hash (PHC string, `$argon2id$v=19$...`) with a random salt and the
/// crate's default cost (19 MiB, 2 passes).
pub fn hash_password(pw: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&random_bytes(16)).expect("16 bytes make a valid salt");
    argon2::Argon2::default().hash_password(pw.as_bytes(), &salt).expect("default parameters are valid").to_string()
}

/// Whether a stored hash can match any password (false for LOCKED and junk).
pub fn has_password(hash: &str) -> bool {
    hash.starts_with("$argon2id$") || hash.starts_with("$6$") || hash.starts_with("$5$")
}

/// Whether `pw` matches `hash`: argon2id, or `$6$`/`$5$` SHA-crypt from older
/// systems; the libraries compare in constant time. Anything else (e.g. "!" for a
/// locked user) never matches.
pub fn check_password(pw: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2id$") {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        return PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(pw.as_bytes(), &h).is_ok());
    }
    if hash.starts_with("$6$") {
        return sha_crypt::sha512_check(pw, hash).is_ok();
    }
    hash.starts_with("$5$") && sha_crypt::sha256_check(pw, hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmphome(tag: &str) -> Home {
        let d = std::env::temp_dir().join(format!("postern-users-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
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
    fn root_never_gets_mail_and_missing_cdb_is_empty() {
        let h = tmphome("root");
        let mut u = Users::open(&h).unwrap();
        assert!(!u.is_virtual_domain("x"));
        let t = u.lookup("root", "x.example").unwrap();
        assert!(t.as_ref().map_or(true, |t| t.user != "root" && t.uid != 0), "{t:?}");
        fs::remove_dir_all(h.root()).unwrap();
    }

    #[test]
    fn passwords() {
        let h = hash_password("s3cret pw");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains(':'));
        assert!(has_password(&h));
        assert!(check_password("s3cret pw", &h));
        assert!(!check_password("s3cret pW", &h));
        assert!(!check_password("", LOCKED));
        assert!(!has_password(LOCKED));
        assert_ne!(hash_password("x"), hash_password("x"), "salts must differ");
        // Hashes made elsewhere: $6$ and $5$ SHA-crypt (as from mkpasswd/openssl).
        let p6 = sha_crypt::Sha512Params::new(5000).unwrap();
        let six = format!("$6$saltsalt${}", sha_crypt::sha512_crypt_b64(b"old pw", b"saltsalt", &p6).unwrap());
        assert!(check_password("old pw", &six) && !check_password("old pW", &six));
        let p5 = sha_crypt::Sha256Params::new(5000).unwrap();
        let five = format!("$5$saltsalt${}", sha_crypt::sha256_crypt_b64(b"old pw", b"saltsalt", &p5).unwrap());
        assert!(check_password("old pw", &five) && !check_password("x", &five));
        assert!(!check_password("old pw", "$argon2id$garbage"));
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
