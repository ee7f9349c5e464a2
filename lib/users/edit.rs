//! Changing users/: parsing the text files, compiling them into users/cdb and
//! users/passwd.cdb, and the admin edits (`postern-admin user`/`domain`), under
//! an edit lock so two admins cannot lose each other's change.

use super::lookup::{cdb_path, passwd_cdb_path, VirtualUser};
use super::password::hash_password;
use super::UsersError;
use crate::address::Address;
use crate::config::cdb;
use crate::os::home::Home;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
        // The cdb record separates its fields with NUL: one inside a field would
        // make the record unreadable (the user silently unknown).
        if line.contains('\0') {
            return Err(syntax(path, n, "a NUL byte is not allowed"));
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
    if line.contains('\0') {
        return Err(syntax(path, n, "a NUL byte is not allowed"));
    }
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

/// Compile users/assign + users/virtual + users/vdomains, and the dot-file names
/// of the homes (see `dot_files`), into users/cdb atomically. Returns the number
/// of entries from the three files. Takes the edit lock, so two rebuilds never share
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
    let mut homes: Vec<PathBuf> =
        records.iter().filter(|(k, _)| k[0] == b'=' || k[0] == b'+').filter_map(|(_, v)| assign_home(v)).collect();
    for v in read_virtual(home)? {
        let value = format!("\0{}\0{}\0{}", v.uid, v.gid, v.home.display());
        records.push((format!("V{}", v.address).into_bytes(), value.into_bytes()));
        hashes.push((v.address.into_bytes(), v.hash.into_bytes()));
        homes.push(v.home);
    }
    // The count reported is of the entries the admin wrote, not of the homes seen.
    let entries = records.len();
    homes.extend(unix_homes(home)?);
    homes.sort();
    homes.dedup();
    for h in homes {
        if let Some(names) = dot_files(&h) {
            records.push((dot_key(&h), names.join("\0").into_bytes()));
        }
    }
    // The hashes first: a reader never finds a user in cdb whose hash is not there
    // yet. passwd.cdb is private to its writer (and setuid-root postern-auth);
    // cdb has no secrets and every service may read it.
    let pw = passwd_cdb_path(home);
    cdb::build_mode(&pw, &hashes, 0o600).map_err(UsersError::Cdb)?;
    let path = cdb_path(home);
    cdb::build(&path, &records).map_err(UsersError::Cdb)?;
    Ok(entries)
}

/// The key of a home's dot-file record in users/cdb.
pub(super) fn dot_key(home: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut k = b"Q".to_vec();
    k.extend_from_slice(home.as_os_str().as_bytes());
    k
}

fn assign_home(v: &[u8]) -> Option<PathBuf> {
    std::str::from_utf8(v).ok()?.split('\0').nth(3).map(PathBuf::from)
}

/// The names of the dot-qmail files in a home (".qmail", ".qmail-foo", ...), for
/// postern-smtpd, which cannot read the homes. Names only: root reads no file
/// here. None when the directory cannot be listed (no record: smtpd then answers
/// 451 for addresses that need a dot file).
fn dot_files(home: &Path) -> Option<Vec<String>> {
    let mut names: Vec<String> =
        fs::read_dir(home).ok()?.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with(".qmail")).collect();
    names.sort();
    Some(names)
}

/// The homes of the Unix users who receive mail by login name (uid at least
/// control/minuid, home directory owned by the user), from /etc/passwd. Users
/// only in NIS or LDAP are not listed: smtpd answers 451 for their extensions
/// when it cannot read their homes.
fn unix_homes(home: &Home) -> Result<Vec<PathBuf>, UsersError> {
    use std::os::unix::fs::MetadataExt;
    let minuid = crate::config::control::Control::new(home).number(&crate::config::settings::MINUID).map_err(UsersError::Control)?;
    let mut homes = Vec::new();
    let text = match fs::read_to_string("/etc/passwd") {
        Ok(t) => t,
        Err(_) => return Ok(homes),
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let Some(uid) = f.get(2).and_then(|u| u.parse::<u64>().ok()) else { continue };
        let Some(dir) = f.get(5).filter(|d| d.starts_with('/')) else { continue };
        let alias = f[0] == "alias";
        if uid != 0 && (uid >= minuid || alias) && fs::metadata(dir).is_ok_and(|m| u64::from(m.uid()) == uid) {
            homes.push(PathBuf::from(dir));
        }
    }
    Ok(homes)
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
    let a = Address::parse(address.to_ascii_lowercase().as_bytes()).map_err(|e| bad(&e.to_string()))?;
    let (local, domain) = (a.local(), a.domain().ok_or_else(|| bad("it needs a domain: local@domain"))?);
    if local.is_empty() || domain.is_empty() {
        return Err(bad("both the local part and the domain must be non-empty"));
    }
    // The local part names a directory and the line is ':'-separated.
    if a.as_str().chars().any(|c| c.is_whitespace() || c == ':' || c == '/') || local.starts_with('.') {
        return Err(bad("no spaces, control characters, ':' or '/', and no leading '.'"));
    }
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
    let in_domain = |v: &VirtualUser| Address::parse(v.address.as_bytes()).ok().and_then(|a| a.domain_lower()).is_some_and(|vd| vd == d);
    let n = read_virtual(home)?.iter().filter(|v| in_domain(v)).count();
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
