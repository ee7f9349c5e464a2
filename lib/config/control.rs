//! Control files: one setting or one list per file, in qmail's names and formats,
//! read through the registry (settings.rs) so every default comes from there.
//!
//! A missing file, or one without a meaningful line, means the default; a file
//! that exists but cannot be read or does not parse is an error naming the file
//! and line, and it is temporary: mail waits until the sysadmin fixes it, nothing
//! is lost.

use super::settings::{Default, Kind, Setting};
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
    /// Followed another setting (e.g. `bouncehost` from `me`).
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

/// The non-comment, non-blank lines of a file, trimmed, with their line numbers;
/// `None` if the file does not exist.
pub fn read_lines(path: &Path) -> Result<Option<Vec<(usize, String)>>, ControlError> {
    match fs::read(path) {
        Ok(b) => parse_lines(path, b).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ControlError { path: path.to_path_buf(), line: None, problem: format!("cannot read: {e}") }),
    }
}

/// `read_lines` on the contents of `path`, already read.
pub fn parse_lines(path: &Path, bytes: Vec<u8>) -> Result<Vec<(usize, String)>, ControlError> {
    let text = String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        ControlError { path: path.to_path_buf(), line: Some(line), problem: "not valid UTF-8".into() }
    })?;
    Ok(text.lines().enumerate().map(|(i, l)| (i + 1, l.trim().to_string())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#')).collect())
}

/// Reads the control directory of one home.
#[derive(Clone, Debug)]
pub struct Control {
    home: Home,
}

impl Control {
    pub fn new(home: &Home) -> Control {
        Control { home: home.clone() }
    }

    /// A file in control/ that is not a setting (certificates, access rules).
    pub fn file(&self, name: &str) -> PathBuf {
        self.home.control().join(name)
    }

    pub fn path(&self, s: &Setting) -> PathBuf {
        self.file(s.name)
    }

    /// The meaningful lines of a setting's file, numbered (for parsers that
    /// name the line at fault); empty when the file is missing. Defaults do not
    /// apply: for List settings whose default is None.
    pub fn numbered_lines(&self, s: &Setting) -> Result<Vec<(usize, String)>, ControlError> {
        assert!(s.kind == Kind::List && matches!(s.default, Default::None), "{} has a default", s.name);
        Ok(read_lines(&self.path(s))?.unwrap_or_default())
    }

    /// The file's own numbered lines, or None when it is missing or has none.
    fn own(&self, s: &Setting) -> Result<Option<Vec<(usize, String)>>, ControlError> {
        Ok(read_lines(&self.path(s))?.filter(|l| !l.is_empty()))
    }

    /// A setting's values (one for Line and Number, any number for List) and
    /// where they came from. A Number is checked to be one, naming its line.
    pub fn value(&self, s: &Setting) -> Result<(Vec<String>, Source), ControlError> {
        self.value_at(s, 0)
    }

    fn value_at(&self, s: &Setting, depth: usize) -> Result<(Vec<String>, Source), ControlError> {
        if let Some(lines) = self.own(s)? {
            let path = self.path(s);
            let values: Vec<(usize, String)> = match s.kind {
                Kind::List => lines,
                Kind::Line | Kind::Number => lines.into_iter().take(1).collect(),
            };
            if s.kind == Kind::Number {
                let (n, l) = &values[0];
                if l.parse::<u64>().is_err() {
                    return Err(ControlError { path, line: Some(*n), problem: format!("{l:?} is not a whole number") });
                }
            }
            return Ok((values.into_iter().map(|(_, l)| l).collect(), Source::File(path)));
        }
        Ok(match s.default {
            Default::None => (Vec::new(), Source::Default),
            Default::Text(t) => (vec![t.to_string()], Source::Default),
            Default::Number(n) => (vec![n.to_string()], Source::Default),
            Default::Hostname => (vec![crate::os::sys::hostname()], Source::Default),
            Default::InHome(p) => (vec![self.home.root().join(p).display().to_string()], Source::Default),
            Default::Follows(other) => {
                assert!(depth < 8, "settings follow each other in a loop at {}", s.name);
                (self.value_at(other, depth + 1)?.0, Source::From(other.name))
            }
        })
    }

    /// A Line setting's value; "" when it has none.
    pub fn text(&self, s: &Setting) -> Result<String, ControlError> {
        assert_eq!(s.kind, Kind::Line, "{} is read as a {:?}", s.name, s.kind);
        Ok(self.value(s)?.0.into_iter().next().unwrap_or_default())
    }

    /// A Line setting that may be unset (its default is None).
    pub fn optional(&self, s: &Setting) -> Result<Option<String>, ControlError> {
        Ok(Some(self.text(s)?).filter(|v| !v.is_empty()))
    }

    pub fn number(&self, s: &Setting) -> Result<u64, ControlError> {
        assert_eq!(s.kind, Kind::Number, "{} is read as a {:?}", s.name, s.kind);
        let (v, _) = self.value(s)?;
        Ok(v.first().and_then(|n| n.parse().ok()).expect("value() checked the number and defaults are numbers"))
    }

    /// A Number setting that must lie in `range`: outside it, an error naming
    /// the line and the value.
    pub fn number_in(&self, s: &Setting, range: std::ops::RangeInclusive<u64>) -> Result<u64, ControlError> {
        let v = self.number(s)?;
        if range.contains(&v) {
            return Ok(v);
        }
        let line = self.own(s)?.and_then(|l| l.first().map(|(n, _)| *n));
        Err(ControlError { path: self.path(s), line, problem: format!("{v} is out of range {}..{}", range.start(), range.end()) })
    }

    pub fn list(&self, s: &Setting) -> Result<Vec<String>, ControlError> {
        assert_eq!(s.kind, Kind::List, "{} is read as a {:?}", s.name, s.kind);
        Ok(self.value(s)?.0)
    }

    /// A timeout setting in seconds, as a Duration of at least one second.
    pub fn seconds(&self, s: &Setting) -> Result<std::time::Duration, ControlError> {
        Ok(std::time::Duration::from_secs(self.number(s)?.max(1)))
    }

    /// For a program that serves on with the default rather than stop: the
    /// number, or on a bad file the default, after handing `warn` the line to
    /// log (the file, its line, and the default used).
    pub fn number_or_default(&self, s: &Setting, warn: impl FnOnce(&str)) -> u64 {
        self.number(s).unwrap_or_else(|e| {
            warn(&format!("{e}; using the default, {}", s.default_number()));
            s.default_number()
        })
    }

    /// `seconds`, or on a bad file the default (as `number_or_default`).
    pub fn seconds_or_default(&self, s: &Setting, warn: impl FnOnce(&str)) -> std::time::Duration {
        self.seconds(s).unwrap_or_else(|e| {
            warn(&format!("{e}; using the default, {} seconds", s.default_number()));
            std::time::Duration::from_secs(s.default_number().max(1))
        })
    }
}

/// One setting as it is now in a home, for showctl.
#[derive(Clone, Debug)]
pub struct Effective {
    pub setting: &'static Setting,
    /// The value(s); empty when there is none.
    pub values: Vec<String>,
    pub source: Source,
    /// Set when the file exists but cannot be used: `values` is then empty
    /// when it cannot even be read as its kind, else what the readers refuse.
    pub error: Option<ControlError>,
}

/// Every registered setting's value and where it came from. A malformed file is
/// reported in `error` (naming file and line) and never stops the listing.
pub fn effective(home: &Home) -> Vec<Effective> {
    let c = Control::new(home);
    super::settings::ALL
        .iter()
        .map(|&setting| match c.value(setting) {
            Ok((values, source)) => Effective { setting, values, source, error: None },
            Err(e) => Effective { setting, values: Vec::new(), source: Source::File(c.path(setting)), error: Some(e) },
        })
        .collect()
}

/// qmail-showctl's listing: one group per setting.
pub fn format(items: &[Effective]) -> String {
    let mut out = String::new();
    for e in items {
        let name = e.setting.name;
        match &e.error {
            Some(err) if e.values.is_empty() => {
                out.push_str(&format!("{name}: ERROR {err}\n"));
                continue;
            }
            _ => {}
        }
        match e.values.as_slice() {
            [] => out.push_str(&format!("{name}: (none) [{}]\n", e.source)),
            [one] => out.push_str(&format!("{name}: {one} [{}]\n", e.source)),
            many => {
                out.push_str(&format!("{name}: [{}]\n", e.source));
                for v in many {
                    out.push_str(&format!("  {v}\n"));
                }
            }
        }
        // Read, but refused by the programs that use it (see check.rs).
        if let Some(err) = &e.error {
            out.push_str(&format!("  ERROR {err}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::settings::*;
    use super::*;

    fn tmphome(tag: &str) -> (PathBuf, Control) {
        let d = crate::testing::scratch_dir(&format!("control-{tag}"));
        fs::create_dir_all(d.join("control")).unwrap();
        let c = Control::new(&Home::at(&d));
        (d, c)
    }

    #[test]
    fn numbers_and_errors_name_file_and_line() {
        let (d, c) = tmphome("num");
        assert_eq!(c.number(&CONCURRENCYLOCAL).unwrap(), 10);
        fs::write(d.join("control/concurrencylocal"), "# comment\n\n 7 \n").unwrap();
        assert_eq!(c.number(&CONCURRENCYLOCAL).unwrap(), 7);
        fs::write(d.join("control/concurrencylocal"), "# comment\nseven\n").unwrap();
        let e = c.number(&CONCURRENCYLOCAL).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("concurrencylocal line 2"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_bad_number_falls_back_to_its_default_and_says_so() {
        let (d, c) = tmphome("numdef");
        let mut said = Vec::new();
        assert_eq!(c.number_or_default(&CONCURRENCYLOCAL, |m| said.push(m.to_string())), 10);
        assert!(said.is_empty(), "a missing file is the default, nothing to say");
        fs::write(d.join("control/timeoutpop3"), "soon\n").unwrap();
        let t = c.seconds_or_default(&TIMEOUTPOP3, |m| said.push(m.to_string()));
        assert_eq!(t, std::time::Duration::from_secs(TIMEOUTPOP3.default_number()));
        assert_eq!(said.len(), 1);
        assert!(said[0].contains("timeoutpop3 line 1") && said[0].ends_with("using the default, 1200 seconds"), "{}", said[0]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn lists_lines_and_defaults() {
        let (d, c) = tmphome("list");
        fs::write(d.join("control/me"), "mx.example\n").unwrap();
        assert_eq!(c.list(&LOCALS).unwrap(), vec!["mx.example"], "locals follows me");
        fs::write(d.join("control/locals"), "a.example\n#x\nb.example\n").unwrap();
        assert_eq!(c.list(&LOCALS).unwrap(), vec!["a.example", "b.example"]);
        fs::write(d.join("control/locals"), "# only a comment\n").unwrap();
        assert_eq!(c.value(&LOCALS).unwrap(), (vec!["mx.example".to_string()], Source::From("me")), "no meaningful line: the default");
        fs::write(d.join("control/locals"), b"a\n\xff\n").unwrap();
        assert_eq!(c.list(&LOCALS).unwrap_err().line, Some(2));
        assert_eq!(c.optional(&PLUSDOMAIN).unwrap(), None);
        assert_eq!(c.text(&BOUNCEFROM).unwrap(), "MAILER-DAEMON");
        assert_eq!(c.text(&IDHOST).unwrap(), "mx.example", "idhost follows defaulthost, which follows me");
        assert_eq!(c.text(&VIRTUALHOME).unwrap(), d.join("mail").display().to_string());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn showctl_sources_and_errors() {
        let (d, c) = tmphome("showctl");
        fs::write(d.join("control/me"), "mx.example\n").unwrap();
        fs::write(d.join("control/concurrencylocal"), "# x\nabc\n").unwrap();
        fs::write(d.join("control/defaulthost"), "dh.example\n").unwrap();
        drop(c);
        let all = effective(&Home::at(&d));
        let get = |n: &str| all.iter().find(|e| e.setting.name == n).unwrap().clone();
        assert_eq!(get("me").source, Source::File(d.join("control/me")));
        assert_eq!((get("bouncehost").values, get("bouncehost").source), (vec!["mx.example".to_string()], Source::From("me")));
        assert_eq!((get("idhost").values, get("idhost").source), (vec!["dh.example".to_string()], Source::From("defaulthost")));
        assert_eq!((get("concurrencyremote").values, get("concurrencyremote").source), (vec!["20".to_string()], Source::Default));
        assert!(get("rcpthosts").values.is_empty());
        assert_eq!(get("concurrencylocal").error.unwrap().line, Some(2));
        let text = format(&all);
        assert!(text.contains("concurrencylocal: ERROR control file"), "{text}");
        assert!(text.contains("concurrencylocal line 2"), "{text}");
        assert!(text.contains("bouncefrom: MAILER-DAEMON [built-in default]"), "{text}");
        fs::remove_dir_all(&d).unwrap();
    }
}
