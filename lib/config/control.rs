//! Control files: one setting or one list per file, in qmail's names and formats.
//!
//! A missing file means "use the default"; a file that exists but cannot be read or
//! does not parse is an error naming the file and line, and it is temporary: mail
//! waits until the sysadmin fixes it, nothing is lost.

use crate::os::home::Home;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ControlError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub problem: String,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "control file {} line {n}: {}", self.path.display(), self.problem),
            None => write!(f, "control file {}: {}", self.path.display(), self.problem),
        }
    }
}

impl crate::error::Classify for ControlError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Temporary
    }
}

/// Where a setting's value came from, for `postern-admin showctl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Default,
    /// Derived from another setting (e.g. `bouncehost` from `me`).
    From(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Default => f.write_str("built-in default"),
            Source::From(n) => write!(f, "from {n}"),
        }
    }
}

/// The non-comment, non-blank lines of a file, with their line numbers; `None` if
/// the file does not exist.
pub fn read_lines(path: &Path) -> Result<Option<Vec<(usize, String)>>, ControlError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ControlError { path: path.to_path_buf(), line: None, problem: format!("cannot read: {e}") }),
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        ControlError { path: path.to_path_buf(), line: Some(line), problem: "not valid UTF-8".into() }
    })?;
    Ok(Some(
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim().to_string()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .collect(),
    ))
}

/// Reads the control directory of one home.
#[derive(Clone, Debug)]
pub struct Control {
    dir: PathBuf,
}

impl Control {
    pub fn new(home: &Home) -> Control {
        Control { dir: home.control() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A list file (rcpthosts, locals, ...): `None` if missing.
    pub fn list(&self, name: &str) -> Result<Option<Vec<String>>, ControlError> {
        Ok(read_lines(&self.path(name))?.map(|v| v.into_iter().map(|(_, l)| l).collect()))
    }

    /// A one-line setting: the first meaningful line, or `None` if missing or empty.
    pub fn line(&self, name: &str) -> Result<Option<(String, Source)>, ControlError> {
        let path = self.path(name);
        Ok(read_lines(&path)?.and_then(|v| v.into_iter().next()).map(|(_, l)| (l, Source::File(path))))
    }

    /// A one-line setting with a default.
    pub fn line_or(&self, name: &str, default: &str) -> Result<(String, Source), ControlError> {
        Ok(self.line(name)?.unwrap_or_else(|| (default.to_string(), Source::Default)))
    }

    /// A number with a default; a malformed number is an error naming the file.
    pub fn number(&self, name: &str, default: u64) -> Result<(u64, Source), ControlError> {
        let path = self.path(name);
        match read_lines(&path)? {
            None => Ok((default, Source::Default)),
            Some(lines) => match lines.into_iter().next() {
                None => Ok((default, Source::Default)),
                Some((n, l)) => l.parse::<u64>().map(|v| (v, Source::File(path.clone()))).map_err(|_| ControlError {
                    path,
                    line: Some(n),
                    problem: format!("{l:?} is not a whole number"),
                }),
            },
        }
    }

    /// `me`, falling back to the host name.
    pub fn me(&self) -> Result<(String, Source), ControlError> {
        Ok(self.line("me")?.unwrap_or_else(|| (crate::os::sys::hostname(), Source::Default)))
    }

    /// A host setting that defaults to `me` (bouncehost, defaulthost, ...).
    pub fn host_or_me(&self, name: &str) -> Result<(String, Source), ControlError> {
        match self.line(name)? {
            Some(v) => Ok(v),
            None => Ok((self.me()?.0, Source::From("me"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("postern-control-{tag}-{}", std::process::id()));
        fs::create_dir_all(d.join("control")).unwrap();
        d
    }

    #[test]
    fn numbers_and_errors_name_file_and_line() {
        let d = tmpdir("num");
        let c = Control::new(&Home::at(&d));
        assert_eq!(c.number("concurrencylocal", 10).unwrap(), (10, Source::Default));
        fs::write(d.join("control/concurrencylocal"), "# comment\n\n 7 \n").unwrap();
        assert_eq!(c.number("concurrencylocal", 10).unwrap().0, 7);
        fs::write(d.join("control/concurrencylocal"), "# comment\nseven\n").unwrap();
        let e = c.number("concurrencylocal", 10).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("concurrencylocal line 2"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn lists_skip_comments() {
        let d = tmpdir("list");
        let c = Control::new(&Home::at(&d));
        assert_eq!(c.list("locals").unwrap(), None);
        fs::write(d.join("control/locals"), "a.example\n#x\nb.example\n").unwrap();
        assert_eq!(c.list("locals").unwrap().unwrap(), vec!["a.example", "b.example"]);
        fs::write(d.join("control/locals"), b"a\n\xff\n").unwrap();
        assert_eq!(c.list("locals").unwrap_err().line, Some(2));
        fs::remove_dir_all(&d).unwrap();
    }
}
