//! The aliases file (aliases(5), `/etc/aliases` unless control/aliasfile says
//! otherwise), compiled by `newaliases` into users/aliases.cdb.
//!
//! # Syntax
//! `name: value, value, ...`; a line starting with a blank continues the one
//! before; `#` starts a comment line. Names are local parts, matched in any case.
//! A value is an address (`&` as in dot-qmail is not needed), `|command`,
//! `/file` (an mbox; `/dir/`, ending in a slash, is a Maildir), or
//! `:include:/path` (more values, one or more a line, read at each delivery).
//! Values holding commas or blanks are written in double quotes
//! (`"|/usr/bin/prog -x, y"`). `\name` is sendmail's "the user, not the alias":
//! accepted when `name` is not an alias itself (it then means the same).
//!
//! # Where aliases apply
//! For addresses of the local domains (control/locals, and virtualdomains that
//! map to them): `Users::lookup` asks here first, before users/assign and the
//! Unix users, as sendmail and Postfix do. A domain that is both in locals and
//! a virtual domain asks here when no virtual user takes the address; other
//! virtual domains never do. So smtpd accepts RCPT to an alias, and
//! postern-lspawn delivers it.
//!
//! # Who may write what
//! Alias deliveries run as the service user postern-a (the instance's owner in an
//! unprivileged instance), never as root, in the home `$POSTERN_HOME/alias`:
//! programs and files named here get postern-a's rights, no more.
//! - newaliases reads the aliases file only when it belongs to root (or to the
//!   user running it) and no group or other may write it.
//! - An `:include:` file is read at delivery, as postern-a. If anyone but root
//!   and postern-a owns the file or a directory on its path, that owner could
//!   change it: it may then list addresses only (a program or file line would
//!   run as postern-a on that user's say). If a group or others may write the
//!   file or a directory on its path, it is not used at all. Both defer the
//!   delivery (qmail's rule for a writable .qmail) with a message naming the
//!   file, so the admin can fix it without losing mail. See `deliver::alias`.

use super::UsersError;
use crate::address::Address;
use crate::config::cdb;
use crate::config::control::Control;
use crate::config::settings;
use crate::os::home::Home;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One value of an alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Address(String),
    Program(String),
    /// An mbox, or a Maildir when it ends in '/'.
    File(PathBuf),
    Include(PathBuf),
}

impl Item {
    /// Classify one value (already unquoted and trimmed).
    pub fn parse(value: &str) -> Result<Item, String> {
        if let Some(p) = value.strip_prefix('|') {
            if p.trim().is_empty() {
                return Err("a program line names no program".into());
            }
            return Ok(Item::Program(p.to_string()));
        }
        if value.starts_with('/') {
            return Ok(Item::File(PathBuf::from(value)));
        }
        if let Some(p) = value.get(..9).filter(|h| h.eq_ignore_ascii_case(":include:")).map(|_| value[9..].trim()) {
            if !p.starts_with('/') {
                return Err(format!(":include: needs an absolute path, not {p:?}"));
            }
            return Ok(Item::Include(PathBuf::from(p)));
        }
        let a = value.strip_prefix('<').and_then(|v| v.strip_suffix('>')).unwrap_or(value);
        // "</x>" would read back as a file: only real addresses here.
        if a.is_empty() || a.contains(char::is_whitespace) || a.starts_with(['/', '|', ':', '\\']) {
            return Err(format!("{a:?} is not an address (a comma missing?)"));
        }
        Address::parse(a.as_bytes()).map_err(|e| format!("{a:?} is not an address: {e}"))?;
        Ok(Item::Address(a.to_string()))
    }

    /// How it is stored in the cdb (and read back by `parse`).
    pub fn encode(&self) -> String {
        match self {
            Item::Address(a) => a.clone(),
            Item::Program(p) => format!("|{p}"),
            Item::File(p) => p.display().to_string(),
            Item::Include(p) => format!(":include:{}", p.display()),
        }
    }
}

/// The values of a right-hand side: split at commas outside double quotes,
/// unquoted and trimmed; empty ones skipped.
pub fn split_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect()
}

/// One alias: its name (lower case), values and the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    pub name: String,
    pub items: Vec<Item>,
    pub line: usize,
}

fn syntax(path: &Path, line: usize, problem: impl Into<String>) -> UsersError {
    UsersError::Aliases { path: path.to_path_buf(), line, problem: problem.into() }
}

/// Parse an aliases file's text (`path` names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Alias>, UsersError> {
    // Join continuation lines first, keeping each entry's first line number.
    let mut entries: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.contains('\0') {
            return Err(syntax(path, n, "holds a NUL byte"));
        }
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            match entries.last_mut() {
                Some((_, e)) => {
                    e.push(' ');
                    e.push_str(raw.trim());
                }
                None => return Err(syntax(path, n, "a continuation line (starting with a blank) with no entry before it")),
            }
        } else {
            entries.push((n, raw.trim_end().to_string()));
        }
    }
    let mut out: Vec<Alias> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut bypass: Vec<(String, usize)> = Vec::new();
    for (n, e) in entries {
        let (name, rhs) =
            e.split_once(':').ok_or_else(|| syntax(path, n, format!("{e:?} has no ':'; the format is name: value, value")))?;
        let name = name.trim().trim_matches('"').to_ascii_lowercase();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '@' || c == ',') {
            return Err(syntax(path, n, format!("{name:?} is not a local part to alias")));
        }
        if let Some(first) = seen.insert(name.clone(), n) {
            return Err(syntax(path, n, format!("{name} is already an alias on line {first}; merge the two lines")));
        }
        let mut items = Vec::new();
        for v in split_values(rhs) {
            if let Some(b) = v.strip_prefix('\\') {
                bypass.push((b.to_string(), n));
            }
            items.push(Item::parse(v.strip_prefix('\\').unwrap_or(&v)).map_err(|p| syntax(path, n, format!("{name}: {p}")))?);
        }
        if items.is_empty() {
            return Err(syntax(path, n, format!("{name} has no values")));
        }
        out.push(Alias { name, items, line: n });
    }
    // `\name` bypasses aliases in sendmail; here it is only accepted when it
    // cannot matter: name must not be an alias itself.
    for (name, n) in bypass {
        if seen.contains_key(&name.to_ascii_lowercase()) {
            return Err(syntax(
                path,
                n,
                format!("\\{name} would deliver to the user {name}, bypassing the alias {name}, which postern does not do; name a mailbox (/var/mail/{name}) or another address"),
            ));
        }
    }
    Ok(out)
}

/// users/aliases.cdb.
pub fn cdb_path(home: &Home) -> PathBuf {
    home.users().join("aliases.cdb")
}

/// The aliases file newaliases reads (control/aliasfile, default /etc/aliases).
pub fn source_path(home: &Home) -> Result<PathBuf, UsersError> {
    Ok(PathBuf::from(Control::new(home).text(&settings::ALIASFILE).map_err(UsersError::Control)?))
}

/// newaliases: check and compile the aliases file into users/aliases.cdb
/// (atomically, mode 0644). Returns the file and the number of aliases. A
/// missing file compiles to an empty database.
pub fn compile(home: &Home) -> Result<(PathBuf, usize), UsersError> {
    let path = source_path(home)?;
    let text = match fs::read(&path) {
        Ok(b) => {
            let meta = fs::metadata(&path).map_err(|e| UsersError::Io(path.clone(), e))?;
            check_source(&path, meta.uid(), meta.mode())?;
            String::from_utf8(b).map_err(|_| syntax(&path, 0, "is not valid UTF-8"))?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(UsersError::Io(path, e)),
    };
    let aliases = parse(&path, &text)?;
    let records: Vec<(Vec<u8>, Vec<u8>)> = aliases
        .iter()
        .map(|a| (a.name.clone().into_bytes(), a.items.iter().map(Item::encode).collect::<Vec<_>>().join("\0").into_bytes()))
        .collect();
    cdb::build(&cdb_path(home), &records).map_err(UsersError::Cdb)?;
    Ok((path, aliases.len()))
}

/// The aliases file must be root's (or the compiler's own, in an unprivileged
/// instance) and writable by its owner only: its programs run as postern-a.
fn check_source(path: &Path, owner: u32, mode: u32) -> Result<(), UsersError> {
    let me = crate::os::sys::effective_uid();
    if owner != 0 && owner != me {
        return Err(UsersError::Unsafe(path.to_path_buf(), format!("belongs to uid {owner}, not root; chown root {}", path.display())));
    }
    if mode & 0o022 != 0 {
        return Err(UsersError::Unsafe(path.to_path_buf(), format!("is writable by group or others; chmod go-w {}", path.display())));
    }
    Ok(())
}

/// Decode a record of users/aliases.cdb.
pub fn decode(value: &[u8]) -> Vec<Item> {
    String::from_utf8_lossy(value).split('\0').filter_map(|v| Item::parse(v).ok()).collect()
}

/// An alias's values from users/aliases.cdb; None when `name` is no alias (or
/// there is no database).
pub fn lookup(home: &Home, name: &str) -> Result<Option<Vec<Item>>, UsersError> {
    let Some(mut db) = cdb::Db::open(&cdb_path(home)).map_err(UsersError::Cdb)? else { return Ok(None) };
    Ok(db.get(name.to_ascii_lowercase().as_bytes()).map(|v| decode(&v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<Alias>, UsersError> {
        parse(Path::new("/etc/aliases"), text)
    }

    #[test]
    fn every_kind_of_value_and_continuations() {
        let a = p("# comment\n\nPostmaster: root\nroot: admin@example.org,\n  \"|/usr/bin/logger -t mail, x\", /var/log/root.mbox\nlist: :include:/etc/mail/list, /var/mail/box/, <a@b.example>\nme: \\bob\n")
            .unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!((a[0].name.as_str(), a[0].line), ("postmaster", 3));
        assert_eq!(
            a[1].items,
            vec![
                Item::Address("admin@example.org".into()),
                Item::Program("/usr/bin/logger -t mail, x".into()),
                Item::File("/var/log/root.mbox".into())
            ]
        );
        assert_eq!(
            a[2].items,
            vec![Item::Include("/etc/mail/list".into()), Item::File("/var/mail/box/".into()), Item::Address("a@b.example".into())]
        );
        assert_eq!(a[3].items, vec![Item::Address("bob".into())]);
        for i in a.iter().flat_map(|a| a.items.iter()) {
            assert_eq!(decode(i.encode().as_bytes()), vec![i.clone()]);
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("a: b\nno colon here\n", "line 2"),
            ("a: b\nA: c\n", "already an alias on line 1"),
            ("a:\n", "no values"),
            ("a: :include:relative\n", "absolute"),
            ("a: b c\n", "not an address"),
            ("  x\n", "continuation"),
            ("a: \\b\nb: c\n", "bypassing"),
            ("a b: c\n", "not a local part"),
            ("a: </etc/x>\n", "not an address"),
        ];
        // A multi-byte character across the length of ":include:" (fuzzing's find).
        assert!(p("a: \u{e9}\u{e9}\u{e9}\u{e9}\u{e9}x\n").is_ok());
        for (text, want) in cases {
            let e = p(text).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("/etc/aliases"), "{text:?}: {e}");
            assert!(e.contains("newaliases"), "{e}");
        }
    }

    #[test]
    fn only_an_owner_only_file_is_compiled() {
        let me = crate::os::sys::effective_uid();
        assert!(check_source(Path::new("/x"), me, 0o100644).is_ok());
        assert!(check_source(Path::new("/x"), 0, 0o100600).is_ok());
        let e = check_source(Path::new("/x"), me, 0o100664).unwrap_err().to_string();
        assert!(e.contains("chmod go-w /x"), "{e}");
        if me != 4242 && me != 0 {
            assert!(check_source(Path::new("/x"), 4242, 0o100644).is_err());
        }
    }

    #[test]
    fn compiled_and_looked_up_in_any_case() {
        let d = crate::testing::scratch_dir("aliases");
        fs::create_dir_all(d.join("users")).unwrap();
        fs::create_dir_all(d.join("control")).unwrap();
        let src = d.join("aliases");
        fs::write(d.join("control/aliasfile"), format!("{}\n", src.display())).unwrap();
        let h = Home::at(&d);
        assert_eq!(compile(&h).unwrap().1, 0, "no file: an empty database");
        fs::write(&src, "Root: a@b.example, |cat\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&src, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(compile(&h).unwrap(), (src.clone(), 1));
        assert_eq!(lookup(&h, "ROOT").unwrap().unwrap(), vec![Item::Address("a@b.example".into()), Item::Program("cat".into())]);
        assert_eq!(lookup(&h, "nobody").unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }
}
