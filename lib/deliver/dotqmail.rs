//! Dot-qmail files: which one applies to an address, and what its lines mean.
//!
//! The search is qmail-local's (see dot-qmail(5)): for an empty extension `.qmail`;
//! otherwise `.qmail-EXT`, then `.qmail-PREFIX-default` for each shorter prefix of
//! EXT that ends at a '-', then `.qmail-default`. The extension is lower-cased and
//! its dots become colons, so `.qmail-a.b` can never name `..` or a hidden file.

use crate::error::{Classify, Kind};
use crate::status::Status;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum DotQmailError {
    /// Reading or checking the file failed (not "does not exist").
    Read(PathBuf, io::Error),
    /// The file is writable by others: someone else could deliver as the owner.
    Writable(PathBuf),
}

impl fmt::Display for DotQmailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DotQmailError::Read(p, e) => write!(f, "cannot read delivery file {}: {e}; check its permissions", p.display()),
            DotQmailError::Writable(p) => {
                write!(f, "delivery file {} is writable by others; run chmod go-w on it", p.display())
            }
        }
    }
}

impl DotQmailError {
    pub fn status(&self) -> Status {
        match self {
            DotQmailError::Read(..) => Status::MAIL_SYSTEM,
            DotQmailError::Writable(_) => Status::SECURITY,
        }
    }
}

impl Classify for DotQmailError {
    fn kind(&self) -> Kind {
        Kind::Temporary
    }
}

/// The extension as it appears in file names: lower case, '.' mapped to ':'.
pub fn safe_ext(ext: &str) -> String {
    ext.chars().map(|c| if c == '.' { ':' } else { c.to_ascii_lowercase() }).collect()
}

/// One candidate file name and the value of $DEFAULT when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub default: Option<String>,
}

/// The file names to try, in order (relative to the home directory).
pub fn candidates(dash: &str, ext: &str) -> Vec<Candidate> {
    if dash.is_empty() && ext.is_empty() {
        return vec![Candidate { name: ".qmail".into(), default: None }];
    }
    let safe = safe_ext(ext);
    let mut v = vec![Candidate { name: format!(".qmail{dash}{safe}"), default: None }];
    let b = safe.as_bytes();
    for i in (0..=b.len()).rev() {
        if i == 0 || b[i - 1] == b'-' {
            // DEFAULT is the original (not lower-cased) rest of the extension.
            let default = if dash.is_empty() { None } else { Some(ext.get(i..).unwrap_or("").to_string()) };
            v.push(Candidate { name: format!(".qmail{dash}{}default", &safe[..i]), default });
        }
    }
    v
}

/// A dot file that was found.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub default: Option<String>,
    pub contents: Vec<u8>,
    /// The owner-execute bit is set: forwards only (qmail's rule).
    pub forward_only: bool,
}

/// Find the dot file for an address in `homedir`; `None` if no candidate exists.
pub fn find(homedir: &Path, dash: &str, ext: &str) -> Result<Option<Found>, DotQmailError> {
    for c in candidates(dash, ext) {
        let path = homedir.join(&c.name);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            // ENOTDIR: ".qmail-a/b" where .qmail-a is a file, so it does not exist.
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
            Err(e) => return Err(DotQmailError::Read(path, e)),
        };
        let mode = meta.permissions().mode();
        if mode & 0o002 != 0 {
            return Err(DotQmailError::Writable(path));
        }
        let contents = fs::read(&path).map_err(|e| DotQmailError::Read(path.clone(), e))?;
        return Ok(Some(Found { path, default: c.default, contents, forward_only: mode & 0o100 != 0 }));
    }
    Ok(None)
}

/// Whether `.qmail{dash}{ext}{suffix}` exists (for the -owner rule of NEWSENDER).
pub fn exists(homedir: &Path, dash: &str, ext: &str, suffix: &str) -> bool {
    homedir.join(format!(".qmail{dash}{}{suffix}", safe_ext(ext))).exists()
}

/// One delivery instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `|command`: run by /bin/sh -c.
    Program(String),
    /// `&address` or a line starting with a letter or digit.
    Forward(String),
    /// A path ending in '/'.
    Maildir(PathBuf),
    /// Any other path starting with '/' or '.'.
    Mbox(PathBuf),
}

/// The delivery lines of a file: comments and blank lines skipped, trailing blanks
/// trimmed (qmail-local does both).
pub fn parse(contents: &[u8]) -> Vec<Line> {
    let text = String::from_utf8_lossy(contents);
    text.lines().filter_map(classify).collect()
}

/// Classify one line; `None` for comments and blank lines.
pub fn classify(line: &str) -> Option<Line> {
    let line = line.trim_end_matches([' ', '\t', '\r']);
    let first = line.chars().next()?;
    match first {
        '#' => None,
        '|' => Some(Line::Program(line[1..].to_string())),
        '/' | '.' => {
            if line.ends_with('/') {
                Some(Line::Maildir(PathBuf::from(line)))
            } else {
                Some(Line::Mbox(PathBuf::from(line)))
            }
        }
        '&' => {
            let a = line[1..].trim();
            if a.is_empty() {
                None
            } else {
                Some(Line::Forward(a.to_string()))
            }
        }
        // qmail forwards anything else; leading blanks are not an address.
        _ => {
            let a = line.trim_start();
            if a.is_empty() {
                None
            } else {
                Some(Line::Forward(a.to_string()))
            }
        }
    }
}

/// The delivery instructions of `control/defaultdelivery` (or the built-in
/// `./Maildir/`) as passed on our command line: one or more lines.
pub fn parse_default(spec: &str) -> Vec<Line> {
    parse(spec.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dash: &str, ext: &str) -> Vec<(String, Option<String>)> {
        candidates(dash, ext).into_iter().map(|c| (c.name, c.default)).collect()
    }

    #[test]
    fn search_order() {
        assert_eq!(names("", ""), vec![(".qmail".to_string(), None)]);
        assert_eq!(
            names("-", "Foo-Bar-baz"),
            vec![
                (".qmail-foo-bar-baz".into(), None),
                (".qmail-foo-bar-default".into(), Some("baz".into())),
                (".qmail-foo-default".into(), Some("Bar-baz".into())),
                (".qmail-default".into(), Some("Foo-Bar-baz".into())),
            ]
        );
        assert_eq!(names("-", "x.y")[0].0, ".qmail-x:y");
        assert_eq!(names("-", "a-")[1], (".qmail-a-default".into(), Some("".into())));
        assert_eq!(names("-", "a")[1], (".qmail-default".into(), Some("a".into())));
    }

    #[test]
    fn finds_most_specific_existing() {
        let d = crate::testing::scratch_dir("dotqmail");
        fs::write(d.join(".qmail-default"), "./Maildir/\n").unwrap();
        fs::write(d.join(".qmail-list-default"), "|true\n").unwrap();
        let f = find(&d, "-", "list-join-x").unwrap().unwrap();
        assert_eq!(f.path, d.join(".qmail-list-default"));
        assert_eq!(f.default.as_deref(), Some("join-x"));
        let f = find(&d, "-", "other").unwrap().unwrap();
        assert_eq!(f.path, d.join(".qmail-default"));
        assert!(find(&d, "", "").unwrap().is_none());
        fs::set_permissions(d.join(".qmail-default"), fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(find(&d, "-", "other"), Err(DotQmailError::Writable(_))));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn line_kinds() {
        let lines = parse(b"# comment\n\n|preline procmail  \n&bob@example.org\nalice@example.org\n./Maildir/\n/var/mail/u\n./mbox\t\n");
        assert_eq!(
            lines,
            vec![
                Line::Program("preline procmail".into()),
                Line::Forward("bob@example.org".into()),
                Line::Forward("alice@example.org".into()),
                Line::Maildir("./Maildir/".into()),
                Line::Mbox("/var/mail/u".into()),
                Line::Mbox("./mbox".into()),
            ]
        );
        assert_eq!(classify("   "), None);
        assert_eq!(classify("&"), None);
    }
}
