//! Maildir++ folders: INBOX is the Maildir itself, every other folder a
//! directory `.Name` in it, subfolders `.Parent.Child` (the hierarchy
//! delimiter is `.`). Names are kept on disk as they go on the wire, in
//! modified UTF-7, as Courier and Dovecot keep them, so those servers read the
//! same tree.
//!
//! A name is refused unless it decodes strictly (see `utf7`) and has no empty
//! level (`..`, a leading or trailing `.`), no `/`, no control character and
//! at most 200 bytes. The first level `INBOX` is case-insensitive.
//!
//! Subscriptions live in `courierimapsubscribed` (Courier's file, one name a
//! line). The special folders (Sent, Drafts, Trash, Junk, Archive) are created
//! and subscribed at login if missing, and LIST gives them their SPECIAL-USE
//! attribute (RFC 6154).

use super::utf7;
use super::StoreError;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A user's mail store: the Maildir (INBOX) and its `.Folder` subdirectories.
pub struct Store {
    pub root: PathBuf,
}

/// One folder as LIST shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    /// The name on the wire (modified UTF-7), `.` between levels.
    pub name: String,
    /// `\HasChildren`/`\HasNoChildren`, `\NonExistent` for a level that only
    /// has children, SPECIAL-USE (`\Sent`...).
    pub attrs: Vec<&'static str>,
    pub subscribed: bool,
    /// Only a subscription names it: no folder, no child. Plain LIST leaves
    /// it out; LSUB and LIST (SUBSCRIBED) show it `\NonExistent`.
    pub phantom: bool,
}

/// The hierarchy delimiter.
pub const DELIMITER: char = '.';
pub const SUBSCRIPTIONS: &str = "courierimapsubscribed";
/// The special folders and their SPECIAL-USE attributes.
pub const SPECIAL: [(&str, &str); 5] =
    [("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")];

/// Make a Maildir's tmp/, new/ and cur/.
fn make_maildir(dir: &Path) -> Result<(), StoreError> {
    for s in ["tmp", "new", "cur"] {
        let p = dir.join(s);
        match fs::create_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::Io(p, e)),
        }
    }
    Ok(())
}

impl Store {
    pub fn new(root: PathBuf) -> Store {
        Store { root }
    }

    /// Validate a folder name and put it in canonical form (`inbox.x` -> `INBOX.x`).
    pub fn canonical(&self, name: &str) -> Result<String, StoreError> {
        let bad = |why| Err(StoreError::BadName(name.to_string(), why));
        if name.is_empty() {
            return bad("empty");
        }
        if name.len() > 200 {
            return bad("longer than 200 bytes");
        }
        if name.contains('/') {
            return bad("'/' is not allowed (the hierarchy delimiter is '.')");
        }
        if name.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return bad("control characters (NUL, CR, LF...) are not allowed");
        }
        if let Err(e) = utf7::decode(name.as_bytes()) {
            return Err(StoreError::BadName(name.to_string(), e.0));
        }
        if name.split(DELIMITER).any(str::is_empty) {
            return bad("an empty level ('..', or '.' at the start or end)");
        }
        let (first, rest) = match name.split_once(DELIMITER) {
            Some((f, r)) => (f, Some(r)),
            None => (name, None),
        };
        if first.eq_ignore_ascii_case("INBOX") {
            return Ok(match rest {
                Some(r) => format!("INBOX.{r}"),
                None => "INBOX".to_string(),
            });
        }
        Ok(name.to_string())
    }

    /// The directory of a folder (which need not exist), or why the name is refused.
    pub fn dir_of(&self, name: &str) -> Result<PathBuf, StoreError> {
        let c = self.canonical(name)?;
        Ok(if c == "INBOX" { self.root.clone() } else { self.root.join(format!(".{c}")) })
    }

    /// Whether a folder exists (has cur/).
    pub fn exists(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.dir_of(name)?.join("cur").is_dir())
    }

    /// The directory of an existing folder, else NoFolder.
    pub fn existing(&self, name: &str) -> Result<PathBuf, StoreError> {
        let d = self.dir_of(name)?;
        if !d.join("cur").is_dir() {
            return Err(StoreError::NoFolder(name.to_string()));
        }
        Ok(d)
    }

    /// Create INBOX's tmp/new/cur if missing and the special folders,
    /// subscribed. Run at each login; cheap when they exist.
    pub fn ensure_special(&self) -> Result<(), StoreError> {
        make_maildir(&self.root)?;
        for (name, _) in SPECIAL {
            let d = self.root.join(format!(".{name}"));
            if !d.join("cur").is_dir() {
                self.create(name)?;
                self.subscribe(name)?;
            }
        }
        Ok(())
    }

    /// Every folder name on disk (canonical wire names), unsorted, INBOX included.
    fn names(&self) -> Result<Vec<String>, StoreError> {
        let mut out = vec!["INBOX".to_string()];
        for e in fs::read_dir(&self.root).map_err(StoreError::io(&self.root))? {
            let e = e.map_err(StoreError::io(&self.root))?;
            let Ok(n) = e.file_name().into_string() else { continue };
            let Some(name) = n.strip_prefix('.') else { continue };
            if name.is_empty() || name == "." || !e.path().join("cur").is_dir() {
                continue;
            }
            // A directory another tool made with a name we would refuse is left out.
            if matches!(self.canonical(name), Ok(c) if c == name) {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    /// Every folder, INBOX first, then by name; levels that exist only as a
    /// parent of others are listed `\NonExistent` (with \Noselect).
    pub fn list(&self) -> Result<Vec<FolderInfo>, StoreError> {
        let mut names = self.names()?;
        names.sort();
        let real: std::collections::HashSet<String> = names.iter().cloned().collect();
        let mut all: std::collections::BTreeSet<String> = names.iter().cloned().collect();
        for n in &names {
            let mut cut = n.as_str();
            while let Some((p, _)) = cut.rsplit_once(DELIMITER) {
                all.insert(p.to_string());
                cut = p;
            }
        }
        let subs: std::collections::HashSet<String> = self.subscriptions()?.into_iter().collect();
        let phantoms: Vec<String> = subs.iter().filter(|s| !all.contains(*s) && s.as_str() != "INBOX").cloned().collect();
        all.extend(phantoms.iter().cloned());
        let mut out = Vec::new();
        for n in all {
            let mut attrs = Vec::new();
            if !real.contains(&n) {
                attrs.push("\\NonExistent");
                attrs.push("\\Noselect");
            }
            let prefix = format!("{n}{DELIMITER}");
            let kids = real.iter().any(|o| o.starts_with(&prefix));
            attrs.push(if kids { "\\HasChildren" } else { "\\HasNoChildren" });
            if let Some((_, a)) = SPECIAL.iter().find(|(s, _)| *s == n) {
                attrs.push(a);
            }
            let phantom = phantoms.contains(&n);
            out.push(FolderInfo { subscribed: subs.contains(&n), name: n, attrs, phantom });
        }
        out.sort_by(|a, b| (a.name != "INBOX", &a.name).cmp(&(b.name != "INBOX", &b.name)));
        Ok(out)
    }

    pub fn create(&self, name: &str) -> Result<(), StoreError> {
        let c = self.canonical(name)?;
        if c == "INBOX" || self.exists(&c)? {
            return Err(StoreError::Exists(name.to_string()));
        }
        let d = self.dir_of(&c)?;
        match fs::create_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::Io(d, e)),
        }
        make_maildir(&d)?;
        // Maildir++ marks folders so delivery agents know not to treat them as INBOX.
        let marker = d.join("maildirfolder");
        fs::write(&marker, b"").map_err(StoreError::io(&marker))?;
        crate::os::fs::sync_dir(&self.root).map_err(StoreError::io(&self.root))
    }

    /// DELETE: the folder and its messages go; its subfolders stay (the name
    /// then lists as \NonExistent).
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let c = self.canonical(name)?;
        if c == "INBOX" {
            return Err(StoreError::Inbox("cannot be deleted"));
        }
        let d = self.existing(&c)?;
        // Renamed out of sight first, so no session finds half a folder.
        let gone = self.root.join("tmp").join(format!("deleted-{}", crate::maildir::name::unique()));
        fs::rename(&d, &gone).map_err(StoreError::io(&d))?;
        fs::remove_dir_all(&gone).map_err(StoreError::io(&gone))?;
        let _ = self.unsubscribe(&c);
        Ok(())
    }

    /// RENAME, subfolders with it. Renaming INBOX moves its messages to the new
    /// folder and leaves INBOX empty (RFC 3501 6.3.5).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (f, t) = (self.canonical(from)?, self.canonical(to)?);
        if t == "INBOX" || self.exists(&t)? {
            return Err(StoreError::Exists(to.to_string()));
        }
        if t.starts_with(&format!("{f}{DELIMITER}")) {
            return Err(StoreError::BadName(to.to_string(), "a folder cannot move inside itself"));
        }
        if f == "INBOX" {
            self.create(&t)?;
            let dest = self.dir_of(&t)?;
            for sub in ["new", "cur"] {
                let src = self.root.join(sub);
                for e in fs::read_dir(&src).map_err(StoreError::io(&src))?.flatten() {
                    let n = e.file_name();
                    fs::rename(e.path(), dest.join(sub).join(&n)).map_err(StoreError::io(e.path()))?;
                }
            }
            return Ok(());
        }
        let src = self.existing(&f)?;
        let prefix = format!("{f}{DELIMITER}");
        let kids: Vec<String> = self.names()?.into_iter().filter(|n| n.starts_with(&prefix)).collect();
        let dest = self.dir_of(&t)?;
        fs::rename(&src, &dest).map_err(StoreError::io(&src))?;
        // A new name must not show the old UIDs under the same UIDVALIDITY a
        // folder once called `to` had; a fresh UIDVALIDITY is safe.
        renumber_validity(&dest)?;
        let subs = self.subscriptions()?;
        for k in &kids {
            let nk = format!("{t}{}", &k[f.len()..]);
            let (a, b) = (self.dir_of(k)?, self.dir_of(&nk)?);
            fs::rename(&a, &b).map_err(StoreError::io(&a))?;
            renumber_validity(&b)?;
        }
        let renamed: Vec<String> =
            subs.into_iter().map(|s| if s == f || s.starts_with(&prefix) { format!("{t}{}", &s[f.len()..]) } else { s }).collect();
        self.write_subscriptions(&renamed)?;
        crate::os::fs::sync_dir(&self.root).map_err(StoreError::io(&self.root))
    }

    pub fn subscribe(&self, name: &str) -> Result<(), StoreError> {
        let c = self.canonical(name)?;
        let mut subs = self.subscriptions()?;
        if !subs.contains(&c) {
            subs.push(c);
            self.write_subscriptions(&subs)?;
        }
        Ok(())
    }

    pub fn unsubscribe(&self, name: &str) -> Result<(), StoreError> {
        let c = self.canonical(name)?;
        let mut subs = self.subscriptions()?;
        let n = subs.len();
        subs.retain(|s| *s != c);
        if subs.len() != n {
            self.write_subscriptions(&subs)?;
        }
        Ok(())
    }

    /// Subscribed names (INBOX always counts as subscribed).
    pub fn subscriptions(&self) -> Result<Vec<String>, StoreError> {
        let p = self.root.join(SUBSCRIPTIONS);
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(StoreError::Io(p, e)),
        };
        let mut out = vec!["INBOX".to_string()];
        for l in text.lines() {
            // Courier writes INBOX.Sent; its namespace prefix is not ours.
            let l = l.trim();
            if let Ok(c) = self.canonical(l) {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    fn write_subscriptions(&self, subs: &[String]) -> Result<(), StoreError> {
        let p = self.root.join(SUBSCRIPTIONS);
        let _l = super::uidlist::lock(&self.root)?;
        let body: String = subs.iter().filter(|s| *s != "INBOX").map(|s| format!("{s}\n")).collect();
        crate::os::fs::write_atomic(&p, body.as_bytes(), 0o600).map_err(StoreError::io(&p))
    }
}

/// Give a renamed folder a new UIDVALIDITY (its UIDs stay).
fn renumber_validity(dir: &Path) -> Result<(), StoreError> {
    use super::uidlist;
    let _l = uidlist::lock(dir)?;
    let mut list = uidlist::load_locked(dir, &mut |_| {})?;
    list.uidvalidity = uidlist::next_uidvalidity(uidlist::root_of(dir))?;
    uidlist::save(dir, &list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(tag: &str) -> Store {
        let d = crate::testing::scratch_dir(tag);
        let s = Store::new(d);
        s.ensure_special().unwrap();
        s
    }

    #[test]
    fn names_map_to_directories_and_bad_ones_are_refused() {
        let s = store("folders-names");
        assert_eq!(s.dir_of("INBOX").unwrap(), s.root);
        assert_eq!(s.dir_of("inbox").unwrap(), s.root);
        assert_eq!(s.dir_of("Inbox.x").unwrap(), s.root.join(".INBOX.x"));
        assert_eq!(s.dir_of("A.B").unwrap(), s.root.join(".A.B"));
        assert_eq!(s.dir_of("Entw&APw-rfe").unwrap(), s.root.join(".Entw&APw-rfe"));
        for bad in ["", "..", "a..b", ".a", "a.", "../etc", "a/b", "a\0b", "x\ny", "&Jjo", "&AGE-", "\u{e9}", "."] {
            let e = s.dir_of(bad).unwrap_err();
            assert!(matches!(e, StoreError::BadName(..)), "{bad:?}: {e}");
            assert!(e.to_string().contains("bad folder name"), "{e}");
        }
        assert!(s.dir_of(&"a".repeat(201)).is_err());
        fs::remove_dir_all(&s.root).unwrap();
    }

    #[test]
    fn special_folders_list_with_attributes_and_children() {
        let s = store("folders-list");
        s.create("Work.Projects.2024").unwrap();
        s.create("Work").unwrap();
        s.create("Lists.Rust").unwrap();
        assert!(matches!(s.create("work"), Ok(())), "names are case-sensitive except INBOX");
        assert!(matches!(s.create("Work"), Err(StoreError::Exists(_))));
        assert!(matches!(s.create("inbox"), Err(StoreError::Exists(_))));
        let l = s.list().unwrap();
        let names: Vec<&str> = l.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "INBOX",
                "Archive",
                "Drafts",
                "Junk",
                "Lists",
                "Lists.Rust",
                "Sent",
                "Trash",
                "Work",
                "Work.Projects",
                "Work.Projects.2024",
                "work"
            ]
        );
        let get = |n: &str| l.iter().find(|f| f.name == n).unwrap().clone();
        assert_eq!(get("Sent").attrs, ["\\HasNoChildren", "\\Sent"]);
        assert!(get("Sent").subscribed && get("INBOX").subscribed && !get("Work").subscribed);
        assert_eq!(get("Work").attrs, ["\\HasChildren"]);
        assert_eq!(get("Lists").attrs, ["\\NonExistent", "\\Noselect", "\\HasChildren"]);
        assert!(!get("Lists").phantom && l.iter().all(|f| !f.phantom));
        assert!(s.root.join(".Work.Projects.2024/cur").is_dir() && s.root.join(".Work/maildirfolder").exists());
        fs::remove_dir_all(&s.root).unwrap();
    }

    #[test]
    fn delete_rename_and_subscriptions() {
        let s = store("folders-edit");
        s.create("A").unwrap();
        s.create("A.B").unwrap();
        s.subscribe("A.B").unwrap();
        fs::write(s.root.join(".A.B/cur/1.x:2,S"), b"m").unwrap();
        s.rename("A", "Z").unwrap();
        assert!(!s.exists("A").unwrap() && !s.exists("A.B").unwrap());
        assert!(s.root.join(".Z.B/cur/1.x:2,S").exists(), "subfolders move too");
        assert!(s.subscriptions().unwrap().contains(&"Z.B".to_string()));
        assert!(matches!(s.rename("Z", "Z.C"), Err(StoreError::BadName(..))));
        assert!(matches!(s.rename("Nope", "Q"), Err(StoreError::NoFolder(_))));
        assert!(matches!(s.rename("Z", "Sent"), Err(StoreError::Exists(_))));
        s.delete("Z").unwrap();
        assert!(!s.exists("Z").unwrap() && s.exists("Z.B").unwrap(), "children stay");
        assert!(matches!(s.delete("INBOX"), Err(StoreError::Inbox(_))));
        assert!(matches!(s.delete("Z"), Err(StoreError::NoFolder(_))));
        // RENAME INBOX moves its messages.
        fs::write(s.root.join("new/2.y"), b"m").unwrap();
        s.rename("INBOX", "Old").unwrap();
        assert!(s.root.join(".Old/new/2.y").exists() && !s.root.join("new/2.y").exists());
        // A subscription outlives its folder (RFC 3501 6.3.6): listed, but only as a phantom.
        s.subscribe("Gone").unwrap();
        let gone = s.list().unwrap().into_iter().find(|f| f.name == "Gone").unwrap();
        assert!(gone.phantom && gone.subscribed && gone.attrs.contains(&"\\NonExistent"));
        s.unsubscribe("Z.B").unwrap();
        assert!(!s.subscriptions().unwrap().contains(&"Z.B".to_string()));
        fs::remove_dir_all(&s.root).unwrap();
    }
}
