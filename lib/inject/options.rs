//! Command-line options as sendmail and qmail-inject take them.

/// sendmail/qmail-inject style short options: `-x`, `-xVALUE`, `-x VALUE`; the scan
/// stops at `--` or at the first argument that is not an option.
pub struct ShortOptions {
    args: std::iter::Peekable<std::vec::IntoIter<String>>,
}

impl ShortOptions {
    pub fn new(args: Vec<String>) -> ShortOptions {
        ShortOptions { args: args.into_iter().peekable() }
    }

    /// The next option as (its letter, whatever follows the letter), or None when
    /// the options are over.
    pub fn next_option(&mut self) -> Option<(String, String)> {
        let a = self.args.peek()?;
        if a == "--" {
            self.args.next();
            return None;
        }
        if !a.starts_with('-') || a.len() < 2 || !a.is_char_boundary(2) {
            return None;
        }
        let a = self.args.next()?;
        Some((a[1..2].to_string(), a[2..].to_string()))
    }

    /// An option's value: attached (`-fjoe`) or the next argument (`-f joe`).
    pub fn value(&mut self, attached: &str) -> Option<String> {
        if attached.is_empty() {
            self.args.next()
        } else {
            Some(attached.to_string())
        }
    }

    /// The arguments after the options.
    pub fn rest(self) -> Vec<String> {
        self.args.collect()
    }
}
