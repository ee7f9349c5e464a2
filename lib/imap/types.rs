//! The values an IMAP command carries once parsed, shared by the command parser
//! (which builds them) and the mailbox layer (which evaluates them): sequence
//! sets, flags, search keys and fetch items. Each is validated once, here.

use std::fmt;

/// One end of a sequence range: a number (MSN or UID, never 0) or `*`, the
/// largest number in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqNum {
    Num(u32),
    Star,
}

impl SeqNum {
    /// The number this stands for in a mailbox whose largest number is `max`.
    pub fn value(self, max: u32) -> u32 {
        match self {
            SeqNum::Num(n) => n,
            SeqNum::Star => max,
        }
    }
}

/// A sequence set (RFC 3501 `sequence-set`): ranges of MSNs or of UIDs, the
/// command says which. Ranges keep their written order; `a:b` with a > b means
/// the same as `b:a`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqSet(pub Vec<(SeqNum, SeqNum)>);

/// Why bytes are not a sequence set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqSetError(pub String);

impl fmt::Display for SeqSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad sequence set {:?}: expected numbers (1 or more), '*', 'a:b', joined by ','", self.0)
    }
}

impl std::error::Error for SeqSetError {}

fn seq_num(b: &[u8]) -> Option<SeqNum> {
    if b == b"*" {
        return Some(SeqNum::Star);
    }
    if b.is_empty() || b.len() > 10 || !b.iter().all(u8::is_ascii_digit) || b[0] == b'0' {
        return None;
    }
    let n: u64 = std::str::from_utf8(b).ok()?.parse().ok()?;
    u32::try_from(n).ok().map(SeqNum::Num)
}

impl SeqSet {
    /// Parse `1`, `2:4`, `5:*`, `*`, `1,3:5,9:*`. Zero, empty parts, signs and
    /// numbers above 2^32-1 are refused.
    pub fn parse(b: &[u8]) -> Result<SeqSet, SeqSetError> {
        let bad = || SeqSetError(String::from_utf8_lossy(b).into_owned());
        let mut ranges = Vec::new();
        for part in b.split(|&c| c == b',') {
            let mut ends = part.splitn(2, |&c| c == b':');
            let a = seq_num(ends.next().unwrap_or_default()).ok_or_else(bad)?;
            let z = match ends.next() {
                Some(z) => seq_num(z).ok_or_else(bad)?,
                None => a,
            };
            ranges.push((a, z));
        }
        Ok(SeqSet(ranges))
    }

    /// A set of single numbers, e.g. for the UIDs a COPY produced.
    pub fn from_numbers(ns: &[u32]) -> SeqSet {
        SeqSet(ns.iter().map(|&n| (SeqNum::Num(n), SeqNum::Num(n))).collect())
    }

    /// Whether `n` is in the set when the largest number in use is `max` (`*`
    /// stands for `max`; in an empty mailbox `*` matches nothing).
    pub fn contains(&self, n: u32, max: u32) -> bool {
        self.0.iter().any(|&(a, z)| {
            let (a, z) = (a.value(max), z.value(max));
            let (lo, hi) = if a <= z { (a, z) } else { (z, a) };
            lo != 0 && lo <= n && n <= hi
        })
    }

    /// Whether the set names a number above `max` that is not `*` (a FETCH of
    /// MSN 7 in a mailbox of 5 is a BAD; for UIDs that is fine).
    pub fn exceeds(&self, max: u32) -> bool {
        self.0.iter().any(|&(a, z)| matches!(a, SeqNum::Num(n) if n > max) || matches!(z, SeqNum::Num(n) if n > max))
    }
}

impl fmt::Display for SeqSet {
    /// The wire form: `1:3,7,9:*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = |n: SeqNum| match n {
            SeqNum::Num(n) => n.to_string(),
            SeqNum::Star => "*".to_string(),
        };
        for (i, &(a, z)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == z {
                f.write_str(&one(a))?;
            } else {
                write!(f, "{}:{}", one(a), one(z))?;
            }
        }
        Ok(())
    }
}

/// Write ascending numbers compactly as a sequence set (`1:3,7`), as UIDPLUS
/// and ESEARCH answers do. Empty input writes nothing.
pub fn compact_set(sorted: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// A message flag: the system flags, or a keyword (an IMAP atom, stored as
/// written; keywords compare case-insensitively).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    /// `\Recent`: session state only, never stored; STORE must not set it.
    Recent,
    Keyword(String),
}

/// Why a word is not a flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagError(pub String);

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad flag {:?}: expected \\Seen, \\Answered, \\Flagged, \\Deleted, \\Draft or a keyword atom (no spaces, parentheses, quotes, '%', '*', ']' or '\\')",
            self.0
        )
    }
}

impl std::error::Error for FlagError {}

/// ATOM-CHAR minus the characters a keyword may not hold (RFC 3501 `atom`).
pub fn is_atom_char(c: u8) -> bool {
    c > b' ' && c < 0x7f && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

impl Flag {
    /// Parse a flag as written in STORE, APPEND or SEARCH KEYWORD. System flags
    /// are case-insensitive; an unknown `\Word` is refused (flag-extension is
    /// not stored here).
    pub fn parse(b: &[u8]) -> Result<Flag, FlagError> {
        let bad = || FlagError(String::from_utf8_lossy(b).into_owned());
        if let Some(rest) = b.strip_prefix(b"\\") {
            let f = match rest.to_ascii_lowercase().as_slice() {
                b"seen" => Flag::Seen,
                b"answered" => Flag::Answered,
                b"flagged" => Flag::Flagged,
                b"deleted" => Flag::Deleted,
                b"draft" => Flag::Draft,
                b"recent" => Flag::Recent,
                _ => return Err(bad()),
            };
            return Ok(f);
        }
        if b.is_empty() || b.len() > 200 || !b.iter().all(|&c| is_atom_char(c)) {
            return Err(bad());
        }
        Ok(Flag::Keyword(String::from_utf8_lossy(b).into_owned()))
    }

    /// The Maildir info letter of a system flag (`:2,` letters, kept sorted).
    pub fn maildir_letter(&self) -> Option<char> {
        match self {
            Flag::Draft => Some('D'),
            Flag::Flagged => Some('F'),
            Flag::Answered => Some('R'),
            Flag::Seen => Some('S'),
            Flag::Deleted => Some('T'),
            _ => None,
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Recent => "\\Recent",
            Flag::Keyword(k) => k,
        })
    }
}

/// A calendar date as SEARCH uses it (`1-Feb-1994`), no time, no zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

pub const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Why bytes are not a date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateError(pub String);

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad date {:?}: expected day-Mon-year, e.g. 1-Feb-2024", self.0)
    }
}

impl std::error::Error for DateError {}

impl Date {
    /// Parse `d-Mon-yyyy` or `dd-Mon-yyyy` (RFC 3501 `date-text`, quotes
    /// already removed by the parser).
    pub fn parse(b: &[u8]) -> Result<Date, DateError> {
        let bad = || DateError(String::from_utf8_lossy(b).into_owned());
        let s = std::str::from_utf8(b).map_err(|_| bad())?;
        let mut it = s.split('-');
        let (d, m, y) = (it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?);
        if it.next().is_some() || d.is_empty() || d.len() > 2 || y.len() != 4 {
            return Err(bad());
        }
        if !d.bytes().chain(y.bytes()).all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let day: u32 = d.parse().map_err(|_| bad())?;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month = MONTHS.iter().position(|n| n.eq_ignore_ascii_case(m)).ok_or_else(bad)? as u32 + 1;
        if day == 0 || day > days_in_month(year, month) {
            return Err(bad());
        }
        Ok(Date { year, month, day })
    }

    /// Days since 1970-01-01.
    pub fn days(self) -> i64 {
        days_from_civil(self.year as i64, self.month, self.day)
    }

    /// The date of a moment, `offset` seconds east of UTC.
    pub fn of(unix: i64, offset: i64) -> Date {
        let (y, m, d) = crate::message::date::civil_from_days((unix + offset).div_euclid(86400));
        Date { year: y as i32, month: m, day: d }
    }
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm, the inverse
/// of `message::date::civil_from_days`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// A SEARCH key, as a tree. Strings are bytes as sent (the charset is UTF-8 or
/// US-ASCII; the parser refuses others).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchKey {
    All,
    /// Message sequence numbers.
    Seq(SeqSet),
    Uid(SeqSet),
    Answered,
    Unanswered,
    Deleted,
    Undeleted,
    Draft,
    Undraft,
    Flagged,
    Unflagged,
    Seen,
    Unseen,
    /// `\Recent` and not `\Seen`.
    New,
    /// Not `\Recent`.
    Old,
    Recent,
    Keyword(String),
    Unkeyword(String),
    From(Vec<u8>),
    To(Vec<u8>),
    Cc(Vec<u8>),
    Bcc(Vec<u8>),
    Subject(Vec<u8>),
    /// Field name, substring (an empty substring matches any message with the field).
    Header(Vec<u8>, Vec<u8>),
    Body(Vec<u8>),
    Text(Vec<u8>),
    /// Internal date (the file's mtime), compared by date only.
    Since(Date),
    Before(Date),
    On(Date),
    /// The Date: header, compared by date only.
    SentSince(Date),
    SentBefore(Date),
    SentOn(Date),
    /// RFC822.SIZE strictly larger / smaller.
    Larger(u64),
    Smaller(u64),
    /// CONDSTORE `MODSEQ n`: messages whose modseq is n or more.
    ModSeq(u64),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    /// Every key must match (a parenthesised list, or the top level).
    And(Vec<SearchKey>),
}

impl SearchKey {
    /// Whether evaluating this key needs the message's header (else flags,
    /// sizes and dates from the listing suffice).
    pub fn needs_header(&self) -> bool {
        use SearchKey::*;
        match self {
            From(_) | To(_) | Cc(_) | Bcc(_) | Subject(_) | Header(..) | SentSince(_) | SentBefore(_) | SentOn(_) => true,
            Body(_) | Text(_) => true,
            Not(k) => k.needs_header(),
            Or(a, b) => a.needs_header() || b.needs_header(),
            And(ks) => ks.iter().any(SearchKey::needs_header),
            _ => false,
        }
    }

    /// Whether evaluating this key needs the message's body.
    pub fn needs_body(&self) -> bool {
        use SearchKey::*;
        match self {
            Body(_) | Text(_) => true,
            Not(k) => k.needs_body(),
            Or(a, b) => a.needs_body() || b.needs_body(),
            And(ks) => ks.iter().any(SearchKey::needs_body),
            _ => false,
        }
    }

    /// Whether a MODSEQ key is in it (SEARCH then answers with the highest
    /// modseq of the hits, RFC 7162 §3.1.5).
    pub fn has_modseq(&self) -> bool {
        use SearchKey::*;
        match self {
            ModSeq(_) => true,
            Not(k) => k.has_modseq(),
            Or(a, b) => a.has_modseq() || b.has_modseq(),
            And(ks) => ks.iter().any(SearchKey::has_modseq),
            _ => false,
        }
    }
}

/// A CONDSTORE mod-sequence value as sent: digits, at most 2^63-1.
pub fn parse_modseq(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok().filter(|&n: &u64| n <= i64::MAX as u64)
}

/// What part of a message a BODY[...] or BINARY[...] names: a part path
/// (`1.2.3`, empty for the whole message) and what of that part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Part numbers, each 1 or more; empty means the message itself.
    pub part: Vec<u32>,
    pub text: SectionText,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionText {
    /// `BODY[]` or `BODY[1.2]`: the whole message, or the part's content.
    Whole,
    /// `HEADER`: the header of the message (or of a message/rfc822 part), with
    /// its blank line.
    Header,
    /// `HEADER.FIELDS (A B)`: only those fields (names as sent), and the blank line.
    HeaderFields(Vec<String>),
    /// `HEADER.FIELDS.NOT (A B)`.
    HeaderFieldsNot(Vec<String>),
    /// `TEXT`: the body after the header.
    Text,
    /// `MIME`: the MIME header of a part (only with a part number).
    Mime,
}

impl Section {
    pub fn whole() -> Section {
        Section { part: Vec::new(), text: SectionText::Whole }
    }
}

impl fmt::Display for Section {
    /// The section as it is echoed in a FETCH response: `1.2.HEADER.FIELDS (FROM TO)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part: Vec<String> = self.part.iter().map(u32::to_string).collect();
        f.write_str(&part.join("."))?;
        let dot = if self.part.is_empty() { "" } else { "." };
        let names = |ns: &Vec<String>| ns.iter().map(|n| n.to_ascii_uppercase()).collect::<Vec<_>>().join(" ");
        match &self.text {
            SectionText::Whole => Ok(()),
            SectionText::Header => write!(f, "{dot}HEADER"),
            SectionText::HeaderFields(ns) => write!(f, "{dot}HEADER.FIELDS ({})", names(ns)),
            SectionText::HeaderFieldsNot(ns) => write!(f, "{dot}HEADER.FIELDS.NOT ({})", names(ns)),
            SectionText::Text => write!(f, "{dot}TEXT"),
            SectionText::Mime => write!(f, "{dot}MIME"),
        }
    }
}

/// A FETCH data item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchAtt {
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    BodyStructure,
    /// `BODY` without a section: the non-extensible BODYSTRUCTURE.
    Body,
    Uid,
    /// CONDSTORE `MODSEQ`.
    ModSeq,
    /// `BODY[section]<origin.count>`; `peek` is BODY.PEEK (does not set \Seen).
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u64, u32)>,
    },
    /// `BINARY[part]<origin.count>`: the part's content with its transfer
    /// encoding undone.
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<(u64, u32)>,
    },
    /// `BINARY.SIZE[part]`.
    BinarySize(Vec<u32>),
    /// `RFC822`: same as BODY[] (sets \Seen).
    Rfc822,
    /// `RFC822.HEADER`: same as BODY.PEEK[HEADER].
    Rfc822Header,
    /// `RFC822.TEXT`: same as BODY[TEXT] (sets \Seen).
    Rfc822Text,
}

impl FetchAtt {
    /// Whether fetching this item sets \Seen (in a read-write mailbox).
    pub fn sets_seen(&self) -> bool {
        match self {
            FetchAtt::BodySection { peek, .. } | FetchAtt::Binary { peek, .. } => !peek,
            FetchAtt::Rfc822 | FetchAtt::Rfc822Text => true,
            _ => false,
        }
    }

    /// Whether this item needs the message's bytes (else the listing suffices).
    pub fn needs_file(&self) -> bool {
        !matches!(self, FetchAtt::Flags | FetchAtt::InternalDate | FetchAtt::Rfc822Size | FetchAtt::Uid | FetchAtt::ModSeq)
    }

    /// The ALL, FAST and FULL macros.
    pub fn macro_items(name: &[u8]) -> Option<Vec<FetchAtt>> {
        use FetchAtt::*;
        Some(match name.to_ascii_uppercase().as_slice() {
            b"ALL" => vec![Flags, InternalDate, Rfc822Size, Envelope],
            b"FAST" => vec![Flags, InternalDate, Rfc822Size],
            b"FULL" => vec![Flags, InternalDate, Rfc822Size, Envelope, Body],
            _ => return None,
        })
    }
}

/// How STORE changes flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// `+FLAGS`
    Add,
    /// `-FLAGS`
    Remove,
    /// `FLAGS`
    Replace,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_sets_parse_and_match() {
        let s = SeqSet::parse(b"1,3:5,9:*").unwrap();
        let got: Vec<u32> = (1..=12).filter(|&n| s.contains(n, 12)).collect();
        assert_eq!(got, vec![1, 3, 4, 5, 9, 10, 11, 12]);
        assert_eq!(s.to_string(), "1,3:5,9:*");
        // Reversed ranges mean the same; `*` beyond max and a:* below a.
        let r = SeqSet::parse(b"5:2").unwrap();
        assert!(r.contains(2, 10) && r.contains(5, 10) && !r.contains(6, 10));
        let star = SeqSet::parse(b"7:*").unwrap();
        assert!(star.contains(4, 4), "7:* with max 4 is 4:7");
        assert!(!SeqSet::parse(b"*").unwrap().contains(0, 0), "* in an empty mailbox is nothing");
        assert!(SeqSet::parse(b"4294967295").unwrap().contains(u32::MAX, 1));
        for bad in [&b""[..], b"0", b"1,", b",1", b"1:", b"a", b"-1", b"4294967296", b"1::2", b"01", b"1 2", b"*:"] {
            assert!(SeqSet::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(SeqSet::parse(b"1:9").unwrap().exceeds(5));
        assert!(!SeqSet::parse(b"1:*").unwrap().exceeds(5));
    }

    #[test]
    fn compact_sets() {
        assert_eq!(compact_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(compact_set(&[]), "");
        assert_eq!(compact_set(&[u32::MAX]), "4294967295");
    }

    #[test]
    fn flags_parse() {
        assert_eq!(Flag::parse(b"\\SEEN").unwrap(), Flag::Seen);
        assert_eq!(Flag::parse(b"$Forwarded").unwrap(), Flag::Keyword("$Forwarded".into()));
        for bad in [&b"\\Foo"[..], b"", b"a b", b"a(", b"a]", b"a\\b", b"\xc3\xa9"] {
            assert!(Flag::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(Flag::Deleted.maildir_letter(), Some('T'));
        assert_eq!(Flag::Keyword("x".into()).maildir_letter(), None);
    }

    #[test]
    fn dates_parse_and_count_days() {
        assert_eq!(Date::parse(b"1-Feb-1994").unwrap(), Date { year: 1994, month: 2, day: 1 });
        assert_eq!(Date::parse(b"29-feb-2024").unwrap().day, 29);
        for bad in [&b"29-Feb-2023"[..], b"0-Jan-2000", b"1-Foo-2000", b"1-Jan-99", b"1-Jan-2000-1", b"x-Jan-2000", b"123-Jan-2000"] {
            assert!(Date::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(Date { year: 1970, month: 1, day: 1 }.days(), 0);
        assert_eq!(Date { year: 2000, month: 3, day: 1 }.days(), 11017);
        assert_eq!(Date::of(951868800, 0), Date { year: 2000, month: 3, day: 1 });
        assert_eq!(Date::of(951868800, -1), Date { year: 2000, month: 2, day: 29 });
    }

    #[test]
    fn sections_echo_as_sent() {
        let s = Section { part: vec![1, 2], text: SectionText::HeaderFields(vec!["From".into(), "subject".into()]) };
        assert_eq!(s.to_string(), "1.2.HEADER.FIELDS (FROM SUBJECT)");
        assert_eq!(Section { part: vec![], text: SectionText::Text }.to_string(), "TEXT");
        assert_eq!(Section::whole().to_string(), "");
    }

    #[test]
    fn search_keys_say_what_they_read() {
        let k = SearchKey::And(vec![SearchKey::Seen, SearchKey::Not(Box::new(SearchKey::From(b"a".to_vec())))]);
        assert!(k.needs_header() && !k.needs_body());
        assert!(SearchKey::Or(Box::new(SearchKey::All), Box::new(SearchKey::Body(b"x".to_vec()))).needs_body());
        assert!(!SearchKey::Larger(5).needs_header());
    }
}
