//! An alias's delivery instructions (`users::aliases`), read as the alias user:
//! its values from users/aliases.cdb, with `:include:` files read now and
//! checked for who may have written them.
//!
//! The rule (see `users::aliases` for the whole story): the people who can
//! change a file are its owner, the owners of the directories on its path, and
//! anyone a group or other write bit lets in. Root and the alias user itself
//! (our euid) are trusted with everything; any other owner may list addresses
//! only; a group or other write bit on the file or on a directory above it
//! makes the file unusable. Every refusal defers the delivery (4.7.0), naming
//! the file, so nothing is lost while the admin fixes it.

use crate::deliver::dotqmail::{self, Line};
use crate::error::Kind;
use crate::os::home::Home;
use crate::status::Status;
use crate::users::aliases::{self, Item};
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Nested `:include:` files deeper than this are a loop.
const MAX_DEPTH: usize = 8;

#[derive(Debug)]
pub enum AliasError {
    /// users/aliases.cdb cannot be read, or the alias is gone since the lookup.
    Lookup(String),
    Include(PathBuf, String),
    /// An include file that someone else controls names a program or a file.
    Restricted {
        path: PathBuf,
        who: String,
        value: String,
    },
}

impl fmt::Display for AliasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AliasError::Lookup(e) => write!(f, "alias: {e}"),
            AliasError::Include(p, why) => write!(f, ":include:{} {why}", p.display()),
            AliasError::Restricted { path, who, value } => write!(
                f,
                ":include:{} can be changed by {who}, so it may list addresses only, not {value:?}; move the line to the aliases file or chown the file to root",
                path.display()
            ),
        }
    }
}

impl AliasError {
    pub fn status(&self) -> Status {
        match self {
            AliasError::Lookup(_) => Status::MAIL_SYSTEM,
            AliasError::Include(..) | AliasError::Restricted { .. } => Status::new(4, 7, 0),
        }
    }

    pub fn kind(&self) -> Kind {
        Kind::Temporary
    }
}

/// How far an include file is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    Full,
    /// Someone else can change it (named): addresses only.
    AddressesOnly(String),
}

/// Who can change `path`: checks the file and every directory above it, after
/// resolving symbolic links. `me` is the alias user's uid.
pub fn trust(path: &Path, me: u32) -> Result<Trust, AliasError> {
    let inc = |why: String| AliasError::Include(path.to_path_buf(), why);
    let real = fs::canonicalize(path).map_err(|e| inc(format!("cannot be read: {e}")))?;
    let meta = fs::metadata(&real).map_err(|e| inc(format!("cannot be read: {e}")))?;
    if !meta.is_file() {
        return Err(inc("is not a regular file".into()));
    }
    let mut verdict = Trust::Full;
    let mut p: Option<&Path> = Some(&real);
    while let Some(cur) = p {
        let m = fs::metadata(cur).map_err(|e| inc(format!("cannot check {}: {e}", cur.display())))?;
        // A sticky directory (/tmp) lets others add names, not replace ours: the
        // file's own owner is what counts there.
        let sticky_dir = m.is_dir() && m.mode() & 0o1000 != 0;
        if m.mode() & 0o022 != 0 && !sticky_dir {
            return Err(inc(format!("is not used: {} is writable by group or others; chmod go-w it", cur.display())));
        }
        if m.uid() != 0 && m.uid() != me && verdict == Trust::Full {
            let name =
                nix::unistd::User::from_uid(m.uid().into()).ok().flatten().map(|u| u.name).unwrap_or_else(|| format!("uid {}", m.uid()));
            verdict = Trust::AddressesOnly(format!("{name} (owner of {})", cur.display()));
        }
        p = cur.parent();
    }
    Ok(verdict)
}

/// The dot-qmail lines of one alias value.
fn line_of(item: &Item) -> Option<Line> {
    match item {
        Item::Address(a) => Some(Line::Forward(a.clone())),
        Item::Program(p) => Some(Line::Program(p.clone())),
        Item::File(p) => dotqmail::classify(&p.display().to_string()),
        Item::Include(_) => None,
    }
}

/// Expand `items` into delivery lines, reading include files (as us).
pub fn expand(items: &[Item], me: u32) -> Result<Vec<Line>, AliasError> {
    let mut out = Vec::new();
    expand_into(items, me, &Trust::Full, 0, &mut out)?;
    Ok(out)
}

fn expand_into(items: &[Item], me: u32, trust_here: &Trust, depth: usize, out: &mut Vec<Line>) -> Result<(), AliasError> {
    for item in items {
        if let (Trust::AddressesOnly(who), false) = (trust_here, matches!(item, Item::Address(_))) {
            return Err(AliasError::Restricted { path: PathBuf::new(), who: who.clone(), value: item.encode() });
        }
        match item {
            Item::Include(path) => {
                if depth >= MAX_DEPTH {
                    return Err(AliasError::Include(path.clone(), format!("is nested more than {MAX_DEPTH} deep (an include loop?)")));
                }
                let t = trust(path, me)?;
                let text = fs::read_to_string(path).map_err(|e| AliasError::Include(path.clone(), format!("cannot be read: {e}")))?;
                let mut inner = Vec::new();
                for (n, line) in text.lines().enumerate() {
                    if line.trim_start().starts_with('#') {
                        continue;
                    }
                    for v in aliases::split_values(line) {
                        let it = Item::parse(&v).map_err(|e| AliasError::Include(path.clone(), format!("line {}: {e}", n + 1)))?;
                        inner.push(it);
                    }
                }
                expand_into(&inner, me, &t, depth + 1, out).map_err(|e| match e {
                    AliasError::Restricted { path: p, who, value } if p.as_os_str().is_empty() => {
                        AliasError::Restricted { path: path.clone(), who, value }
                    }
                    other => other,
                })?;
            }
            other => out.extend(line_of(other)),
        }
    }
    Ok(())
}

/// The delivery lines of alias `name`, as `deliver::local` uses them.
pub fn instructions(home: &Home, name: &str) -> Result<Vec<Line>, AliasError> {
    let items = aliases::lookup(home, name)
        .map_err(|e| AliasError::Lookup(e.to_string()))?
        .ok_or_else(|| AliasError::Lookup(format!("{name} is no longer an alias (newaliases ran since); the message will be retried")))?;
    expand(&items, crate::os::sys::effective_uid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn values_become_dot_qmail_lines_and_includes_are_read() {
        let d = crate::testing::scratch_dir("alias-expand");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        let inc = d.join("list");
        fs::write(&inc, "# members\na@x.example, b@x.example\n\"|cat > /dev/null\"\n").unwrap();
        fs::set_permissions(&inc, fs::Permissions::from_mode(0o644)).unwrap();
        let me = crate::os::sys::effective_uid();
        let items =
            vec![Item::Address("root".into()), Item::File("/var/mail/x".into()), Item::File("/m/".into()), Item::Include(inc.clone())];
        let lines = expand(&items, me);
        // The scratch directory's parents (/tmp: sticky) decide whether it is trusted.
        match lines {
            Ok(lines) => assert_eq!(
                lines,
                vec![
                    Line::Forward("root".into()),
                    Line::Mbox("/var/mail/x".into()),
                    Line::Maildir("/m/".into()),
                    Line::Forward("a@x.example".into()),
                    Line::Forward("b@x.example".into()),
                    Line::Program("cat > /dev/null".into()),
                ]
            ),
            Err(e) => panic!("{e}"),
        }
        fs::set_permissions(&inc, fs::Permissions::from_mode(0o664)).unwrap();
        let e = expand(&items, me).unwrap_err().to_string();
        assert!(e.contains("writable by group or others") && e.contains(&inc.display().to_string()), "{e}");
        fs::set_permissions(&inc, fs::Permissions::from_mode(0o644)).unwrap();
        // Someone else's file: addresses only.
        if me != 0 {
            let e = expand(&items, me + 1).unwrap_err().to_string();
            assert!(e.contains("addresses only"), "{e}");
        }
        fs::write(&inc, ":include:".to_string() + &inc.display().to_string() + "\n").unwrap();
        let e = expand(&items, me).unwrap_err().to_string();
        assert!(e.contains("nested"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }
}
