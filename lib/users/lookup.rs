//! Who receives mail for a local address (see mod.rs for the order), and a
//! virtual user's record: reading users/cdb and the password database.

use super::UsersError;
use crate::config::cdb::Db;
use crate::config::control::Control;
use crate::config::settings;
use crate::os::home::Home;
use std::fs;
use std::path::PathBuf;

/// Where and as whom one local delivery happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalUser {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub dash: String,
    pub ext: String,
    /// An alias of users/aliases.cdb: the local part (lower case) names it, and
    /// its values are the delivery instructions (`deliver::alias`).
    pub alias: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualUser {
    pub address: String,
    pub hash: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

pub(super) fn cdb_path(home: &Home) -> PathBuf {
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
    /// control/minuid (Unix users below it get no mail by login name), read at
    /// the first lookup that needs it.
    minuid: Option<u32>,
    /// users/aliases.cdb, opened at the first lookup at a local domain.
    aliases: Option<Option<Db>>,
    /// control/locals (lower case), read when a virtual domain needs it.
    locals: Option<Vec<String>>,
}

impl Users {
    /// Opens $POSTERN_HOME/users/cdb (missing file = no entries). Cheap; callers
    /// reopen to see rebuilds.
    pub fn open(home: &Home) -> Result<Users, UsersError> {
        Ok(Users { db: Db::open(&cdb_path(home)).map_err(UsersError::Cdb)?, home: home.clone(), minuid: None, aliases: None, locals: None })
    }

    fn is_local_domain(&mut self, domain: &str) -> Result<bool, UsersError> {
        if self.locals.is_none() {
            let l = Control::new(&self.home).list(&settings::LOCALS).map_err(UsersError::Control)?;
            self.locals = Some(l.into_iter().map(|d| d.to_ascii_lowercase()).collect());
        }
        Ok(self.locals.as_ref().is_some_and(|l| l.iter().any(|d| d.eq_ignore_ascii_case(domain))))
    }

    fn minuid(&mut self) -> Result<u32, UsersError> {
        if let Some(m) = self.minuid {
            return Ok(m);
        }
        let m = Control::new(&self.home).number(&settings::MINUID).map_err(UsersError::Control)?;
        let m = u32::try_from(m).unwrap_or(u32::MAX);
        self.minuid = Some(m);
        Ok(m)
    }

    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.db.as_mut().and_then(|db| db.get(key.as_bytes()))
    }

    /// Resolve a local delivery: `local` is the (already virtualdomains-rewritten)
    /// local part, `domain` its domain.
    pub fn lookup(&mut self, local: &str, domain: &str) -> Result<Option<LocalUser>, UsersError> {
        if self.is_virtual_domain(domain) {
            if let Some(t) = self.lookup_virtual(local, domain) {
                return Ok(Some(t));
            }
            // A local domain that also hosts virtual users (install's --domain,
            // then `domain add`): root, postmaster, abuse... still reach the
            // aliases when no virtual user takes them.
            return if self.is_local_domain(domain)? { self.lookup_alias(local) } else { Ok(None) };
        }
        if let Some(t) = self.lookup_alias(local)? {
            return Ok(Some(t));
        }
        if let Some(t) = self.lookup_assign(local) {
            return Ok(Some(t));
        }
        if let Some(t) = unix_user(local, self.minuid()?)? {
            return Ok(Some(t));
        }
        // qmail's last resort: ~alias/.qmail-LOCAL.
        match passwd("alias")? {
            Some(pw) if pw.uid.as_raw() != 0 => Ok(Some(LocalUser {
                user: "alias".into(),
                uid: pw.uid.as_raw(),
                gid: pw.gid.as_raw(),
                home: pw.dir,
                dash: "-".into(),
                ext: local.to_string(),
                alias: false,
            })),
            _ => Ok(None),
        }
    }

    fn lookup_virtual(&mut self, local: &str, domain: &str) -> Option<LocalUser> {
        let domain = domain.to_ascii_lowercase();
        let lower = local.to_ascii_lowercase();
        // The whole local part first, then shorter prefixes at '-' from the right.
        let mut cut = Some(lower.len());
        while let Some(end) = cut {
            let address = format!("{}@{domain}", &lower[..end]);
            if let Some(v) = self.virtual_record(&address) {
                let ext = if end < local.len() { local[end + 1..].to_string() } else { String::new() };
                let dash = if end < local.len() { "-" } else { "" };
                return Some(LocalUser { user: v.address, uid: v.uid, gid: v.gid, home: v.home, dash: dash.into(), ext, alias: false });
            }
            cut = lower[..end].rfind('-');
        }
        None
    }

    /// An alias of users/aliases.cdb (see `aliases`): delivered as postern-a in
    /// `$POSTERN_HOME/alias` (as ourselves when not root: an unprivileged
    /// instance, or smtpd, which only asks whether it exists).
    fn lookup_alias(&mut self, local: &str) -> Result<Option<LocalUser>, UsersError> {
        if self.aliases.is_none() {
            self.aliases = Some(Db::open(&super::aliases::cdb_path(&self.home)).map_err(UsersError::Cdb)?);
        }
        let Some(Some(db)) = self.aliases.as_mut() else { return Ok(None) };
        if db.get(local.to_ascii_lowercase().as_bytes()).is_none() {
            return Ok(None);
        }
        let (uid, gid) = if crate::os::privs::is_root() {
            crate::os::privs::Service::Alias.ids().map_err(UsersError::AliasUser)?
        } else {
            (crate::os::sys::effective_uid(), nix::unistd::getegid().as_raw())
        };
        Ok(Some(LocalUser {
            user: crate::os::privs::Service::Alias.name().into(),
            uid,
            gid,
            home: self.home.alias(),
            dash: String::new(),
            ext: String::new(),
            alias: true,
        }))
    }

    fn lookup_assign(&mut self, local: &str) -> Option<LocalUser> {
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

    /// The dot-qmail file names in `home` when users/cdb was last built (see
    /// `edit::compile`); None when it has no record of that home.
    pub fn dot_files(&mut self, home: &std::path::Path) -> Option<Vec<String>> {
        let v = self.db.as_mut()?.get(&super::edit::dot_key(home))?;
        let text = String::from_utf8(v).ok()?;
        Some(text.split('\0').filter(|n| !n.is_empty()).map(str::to_string).collect())
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
pub fn decode_assign(v: &[u8], rest: &str) -> Option<LocalUser> {
    let text = std::str::from_utf8(v).ok()?;
    let f: Vec<&str> = text.split('\0').collect();
    if f.len() != 6 {
        return None;
    }
    Some(LocalUser {
        user: f[0].to_string(),
        uid: f[1].parse().ok()?,
        gid: f[2].parse().ok()?,
        home: PathBuf::from(f[3]),
        dash: f[4].to_string(),
        ext: format!("{}{rest}", f[5]),
        alias: false,
    })
}

fn passwd(name: &str) -> Result<Option<nix::unistd::User>, UsersError> {
    nix::unistd::User::from_name(name).map_err(|e| UsersError::Passwd(name.to_string(), e.to_string()))
}

/// qmail-getpw: the longest prefix of `local` ending at a '-' (or the whole of it)
/// that names a Unix user with a uid of at least `minuid` (and never 0) whose home
/// directory it owns. System accounts are left to users/assign and ~alias.
fn unix_user(local: &str, minuid: u32) -> Result<Option<LocalUser>, UsersError> {
    use std::os::unix::fs::MetadataExt;
    let lower = local.to_ascii_lowercase();
    let mut cut = Some(lower.len());
    while let Some(end) = cut {
        let name = &lower[..end];
        // Names longer than any real login are not worth asking about.
        if !name.is_empty() && name.len() <= 32 {
            if let Some(pw) = passwd(name)? {
                let owned = fs::metadata(&pw.dir).map(|m| m.uid() == pw.uid.as_raw()).unwrap_or(false);
                if pw.uid.as_raw() != 0 && pw.uid.as_raw() >= minuid && owned {
                    let (dash, ext) = if end < local.len() { ("-", &local[end + 1..]) } else { ("", "") };
                    return Ok(Some(LocalUser {
                        user: pw.name,
                        uid: pw.uid.as_raw(),
                        gid: pw.gid.as_raw(),
                        home: pw.dir,
                        dash: dash.into(),
                        ext: ext.into(),
                        alias: false,
                    }));
                }
            }
        }
        cut = lower[..end].rfind('-');
    }
    Ok(None)
}
