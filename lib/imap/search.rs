//! SEARCH: a key tree evaluated against one message.
//!
//! Flags, sizes, sequence numbers and internal dates come from the listing;
//! the session maps the file only when `SearchKey::needs_header` says so, and
//! header keys look only at the header section. Header keys match raw values
//! case-insensitively, then values with RFC 2047 words decoded (by
//! mail-parser) when the raw one contains any; BODY and TEXT match the parts
//! as written, else the text parts decoded (transfer encoding and charset
//! undone). Neither looks into binary attachments (application, image,
//! audio, video).

use super::fetch::{field_value, mime};
use super::mailbox::{Message, ANSWERED, DELETED, DRAFT, FLAGGED, SEEN};
use super::types::{Date, SearchKey};

/// What a search key is evaluated against.
pub struct SearchCtx<'a> {
    pub msg: &'a Message,
    /// 1-based sequence number, and the largest MSN and UID (for `*`).
    pub msn: u32,
    pub max_msn: u32,
    pub max_uid: u32,
    /// Keyword names of the folder (index = letter).
    pub keywords: &'a [String],
    /// The message bytes, if the key needs them (`SearchKey::needs_header`).
    pub data: Option<&'a [u8]>,
}

/// Whether the message matches. A key that needs the bytes when `data` is
/// None does not match.
pub fn matches(key: &SearchKey, ctx: &SearchCtx<'_>) -> bool {
    let mut cache = Cache::default();
    eval(key, ctx, &mut cache)
}

/// Parsed once per message, whichever keys need it.
#[derive(Default)]
struct Cache {
    body_text: Option<String>,
}

fn has_keyword(ctx: &SearchCtx<'_>, k: &str) -> bool {
    ctx.keywords.iter().position(|n| !n.is_empty() && n.eq_ignore_ascii_case(k)).is_some_and(|i| ctx.msg.keywords & (1 << i) != 0)
}

fn eval(key: &SearchKey, ctx: &SearchCtx<'_>, cache: &mut Cache) -> bool {
    use SearchKey::*;
    let m = ctx.msg;
    let f = |b: u8| m.flags & b != 0;
    let date = Date::of(m.internal_date, 0).days();
    match key {
        All => true,
        Seq(s) => s.contains(ctx.msn, ctx.max_msn),
        Uid(s) => s.contains(m.uid, ctx.max_uid),
        Answered => f(ANSWERED),
        Unanswered => !f(ANSWERED),
        Deleted => f(DELETED),
        Undeleted => !f(DELETED),
        Draft => f(DRAFT),
        Undraft => !f(DRAFT),
        Flagged => f(FLAGGED),
        Unflagged => !f(FLAGGED),
        Seen => f(SEEN),
        Unseen => !f(SEEN),
        New => m.recent && !f(SEEN),
        Old => !m.recent,
        Recent => m.recent,
        Keyword(k) => has_keyword(ctx, k),
        Unkeyword(k) => !has_keyword(ctx, k),
        Larger(n) => m.size > *n,
        Smaller(n) => m.size < *n,
        ModSeq(n) => m.modseq >= *n,
        Since(d) => date >= d.days(),
        Before(d) => date < d.days(),
        On(d) => date == d.days(),
        SentSince(d) => sent(ctx).is_some_and(|s| s >= d.days()),
        SentBefore(d) => sent(ctx).is_some_and(|s| s < d.days()),
        SentOn(d) => sent(ctx).is_some_and(|s| s == d.days()),
        From(s) => header_has(ctx, "From", s),
        To(s) => header_has(ctx, "To", s),
        Cc(s) => header_has(ctx, "Cc", s),
        Bcc(s) => header_has(ctx, "Bcc", s),
        Subject(s) => header_has(ctx, "Subject", s),
        Header(name, s) => header_has(ctx, &String::from_utf8_lossy(name), s),
        Body(s) => body_has(ctx, cache, s),
        Text(s) => ctx.data.is_some_and(|d| contains(&d[..mime::split(d).0], s)) || body_has(ctx, cache, s),
        Not(k) => !eval(k, ctx, cache),
        Or(a, b) => eval(a, ctx, cache) || eval(b, ctx, cache),
        And(ks) => ks.iter().all(|k| eval(k, ctx, cache)),
    }
}

/// Case-insensitive substring (ASCII fast path; Unicode case folding for the rest).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if needle.is_ascii() {
        // Candidates by their first byte (either case), then the rest.
        let (lo, up) = (needle[0].to_ascii_lowercase(), needle[0].to_ascii_uppercase());
        let Some(last) = hay.len().checked_sub(needle.len()) else { return false };
        let mut i = 0;
        while let Some(k) = memchr::memchr2(lo, up, &hay[i..=last]) {
            let at = i + k;
            if hay[at..at + needle.len()].eq_ignore_ascii_case(needle) {
                return true;
            }
            i = at + 1;
        }
        return false;
    }
    String::from_utf8_lossy(hay).to_lowercase().contains(&String::from_utf8_lossy(needle).to_lowercase())
}

fn header_has(ctx: &SearchCtx<'_>, name: &str, needle: &[u8]) -> bool {
    let Some(d) = ctx.data else { return false };
    let h = &d[..mime::split(d).0];
    let fields = crate::message::headers::fields(h);
    let mut any = false;
    for fl in fields.iter().filter(|fl| fl.name.eq_ignore_ascii_case(name)) {
        any = true;
        let raw = &h[fl.range.clone()];
        let value = &raw[raw.iter().position(|&b| b == b':').map_or(0, |c| c + 1)..];
        let unfolded: Vec<u8> = value.iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
        if contains(&unfolded, needle) {
            return true;
        }
    }
    if !any || !contains(h, b"=?") {
        return false;
    }
    decoded_header(h, name).is_some_and(|v| contains(v.as_bytes(), needle))
}

/// A header's value with encoded words decoded (addresses as `name <addr>`).
fn decoded_header(h: &[u8], name: &str) -> Option<String> {
    let msg = mail_parser::MessageParser::default().parse_headers(h)?;
    let v = msg.header(name)?;
    if let Some(t) = v.as_text() {
        return Some(t.to_string());
    }
    if let Some(a) = v.as_address() {
        return Some(
            a.iter()
                .map(|x| format!("{} <{}>", x.name.as_deref().unwrap_or(""), x.address.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    v.as_text_list().map(|l| l.join(" "))
}

fn body_has(ctx: &SearchCtx<'_>, cache: &mut Cache, needle: &[u8]) -> bool {
    let Some(d) = ctx.data else { return false };
    let root = mime::parse(d);
    if raw_has(&root, needle) {
        return true;
    }
    // Decoding is the costly part of a body search; only an encoded text
    // part or a non-ASCII word (another charset) can match decoded and not raw.
    if needle.is_ascii() && !encoded_text(&root) {
        return false;
    }
    let text = cache.body_text.get_or_insert_with(|| {
        let Some(msg) = mail_parser::MessageParser::default().parse(d) else { return String::new() };
        let mut t = String::new();
        for p in &msg.parts {
            match &p.body {
                mail_parser::PartType::Text(s) | mail_parser::PartType::Html(s) => {
                    t.push_str(s);
                    t.push('\n');
                }
                _ => {}
            }
        }
        t
    });
    contains(text.as_bytes(), needle)
}

/// An attachment of a binary type (application, image, audio, video): its
/// bytes as written (base64, mostly) mean nothing to a reader, so BODY and
/// TEXT do not look into it, raw or decoded.
fn binary_part(p: &mime::Part<'_>) -> bool {
    ["application", "image", "audio", "video"].iter().any(|t| p.ctype.eq_ignore_ascii_case(t))
}

/// Whether the body of a leaf part that is not binary contains the needle
/// as written.
fn raw_has(p: &mime::Part<'_>, needle: &[u8]) -> bool {
    if !p.children.is_empty() {
        return p.children.iter().any(|c| raw_has(c, needle));
    }
    !binary_part(p) && contains(p.body, needle)
}

/// Whether a part that may hold text is base64 or quoted-printable.
fn encoded_text(p: &mime::Part<'_>) -> bool {
    if !p.children.is_empty() {
        return p.children.iter().any(encoded_text);
    }
    if let Some(m) = &p.message {
        return encoded_text(m);
    }
    !binary_part(p) && (p.encoding == "base64" || p.encoding == "quoted-printable")
}

/// The Date: header's day (in its own zone, as RFC 3501 asks: time and zone
/// disregarded).
fn sent(ctx: &SearchCtx<'_>) -> Option<i64> {
    let d = ctx.data?;
    let v = field_value(&d[..mime::split(d).0], "Date")?;
    parse_date_header(&v).map(|d| d.days())
}

/// `[Mon,] 1 Feb 1994 21:52:25 -0800` -> the date part.
pub fn parse_date_header(v: &[u8]) -> Option<Date> {
    let s = String::from_utf8_lossy(v);
    let s = match s.split_once(',') {
        Some((_, r)) => r.to_string(),
        None => s.to_string(),
    };
    let mut w = s.split_ascii_whitespace();
    let (d, m, y) = (w.next()?, w.next()?, w.next()?);
    let mut y: i32 = y.parse().ok()?;
    // Two-digit years (RFC 5322 obsolete syntax).
    if y < 50 {
        y += 2000;
    } else if y < 1000 {
        y += 1900;
    }
    Date::parse(format!("{}-{}-{y:04}", d.parse::<u32>().ok()?, m).as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::types::SeqSet;

    const MSG: &[u8] = b"From: =?utf-8?q?J=C3=BCrgen?= <jurgen@example.org>\n\
To: team@example.org\n\
Subject: Quarterly report\n\
Date: Thu, 29 Feb 2024 23:30:00 -0800\n\
X-Tag: blue\n\
Content-Type: text/plain; charset=utf-8\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
Gr=C3=BC=C3=9Fe aus K=C3=B6ln, the numbers are in.\n";

    fn msg() -> Message {
        Message {
            uid: 10,
            name: "n".into(),
            in_new: false,
            flags: SEEN | FLAGGED,
            keywords: 0b10,
            size: 300,
            internal_date: Date { year: 2024, month: 3, day: 2 }.days() * 86400 + 3600,
            recent: true,
            modseq: 5,
        }
    }

    fn is(key: SearchKey) -> bool {
        let m = msg();
        let kws = vec![String::new(), "$Work".to_string()];
        let data = if key.needs_header() { Some(MSG) } else { None };
        matches(&key, &SearchCtx { msg: &m, msn: 3, max_msn: 5, max_uid: 12, keywords: &kws, data })
    }

    fn d(s: &str) -> Date {
        Date::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn flags_numbers_sizes_and_dates() {
        use SearchKey::*;
        assert!(is(All) && is(Seen) && !is(Unseen) && is(Flagged) && !is(Deleted) && is(Undeleted) && !is(Answered));
        assert!(is(Recent) && !is(New) && !is(Old) && !is(Draft) && is(Undraft));
        assert!(is(Keyword("$work".into())) && !is(Keyword("$Other".into())) && is(Unkeyword("$Other".into())));
        assert!(
            is(Seq(SeqSet::parse(b"3").unwrap())) && is(Seq(SeqSet::parse(b"*:3").unwrap())) && !is(Seq(SeqSet::parse(b"4:*").unwrap()))
        );
        assert!(is(Uid(SeqSet::parse(b"10").unwrap())) && !is(Uid(SeqSet::parse(b"11:*").unwrap())));
        assert!(is(Larger(299)) && !is(Larger(300)) && is(Smaller(301)) && !is(Smaller(300)));
        assert!(is(On(d("2-Mar-2024"))) && is(Since(d("2-Mar-2024"))) && !is(Before(d("2-Mar-2024"))) && is(Before(d("3-Mar-2024"))));
        // The Date: header's own day, zone disregarded.
        assert!(is(SentOn(d("29-Feb-2024"))) && is(SentBefore(d("1-Mar-2024"))) && !is(SentSince(d("1-Mar-2024"))));
        assert!(is(Not(Box::new(Deleted))) && is(Or(Box::new(Deleted), Box::new(Seen))) && !is(And(vec![Seen, Deleted])));
    }

    #[test]
    fn headers_and_body() {
        use SearchKey::*;
        assert!(is(Subject(b"QUARTERLY".to_vec())) && !is(Subject(b"annual".to_vec())));
        assert!(is(From(b"jurgen@EXAMPLE".to_vec())));
        assert!(is(From("Jürgen".as_bytes().to_vec())), "encoded words decoded");
        assert!(is(From("jürgen".as_bytes().to_vec())), "Unicode case folding");
        assert!(is(To(b"team".to_vec())) && !is(Cc(b"team".to_vec())) && !is(Bcc(b"".to_vec())));
        assert!(is(Header(b"x-tag".to_vec(), b"BLU".to_vec())) && is(Header(b"X-Tag".to_vec(), b"".to_vec())));
        assert!(!is(Header(b"X-Missing".to_vec(), b"".to_vec())));
        assert!(is(Body(b"numbers".to_vec())) && !is(Body(b"Quarterly".to_vec())));
        assert!(is(Body("grüße aus köln".as_bytes().to_vec())), "quoted-printable undone");
        assert!(is(Text(b"quarterly".to_vec())) && is(Text(b"numbers".to_vec())));
        // No bytes: header keys cannot match.
        let m = msg();
        let ctx = SearchCtx { msg: &m, msn: 1, max_msn: 1, max_uid: 10, keywords: &[], data: None };
        assert!(!matches(&Subject(b"q".to_vec()), &ctx));
    }

    #[test]
    fn substrings_any_case() {
        assert!(contains(b"Hello World", b"wORLD") && contains(b"x", b"") && !contains(b"ab", b"abc"));
        assert!(contains(b"aaab", b"AAB") && !contains(b"Hello", b"hellp") && contains(b"K\xc3\x96LN", "köln".as_bytes()));
    }

    #[test]
    fn body_decodes_text_parts_only() {
        // "needle" base64 is bmVlZGxl: in a text part it is found decoded, in
        // an application part it is not looked for.
        let mk = |ctype: &str| {
            format!(
                "Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nplain words\n\
                 --b\nContent-Type: {ctype}\nContent-Transfer-Encoding: base64\n\nbmVlZGxl\n--b--\n"
            )
        };
        let m = msg();
        let hit = |d: &str, w: &[u8]| {
            let ctx = SearchCtx { msg: &m, msn: 1, max_msn: 1, max_uid: 10, keywords: &[], data: Some(d.as_bytes()) };
            matches(&SearchKey::Body(w.to_vec()), &ctx)
        };
        assert!(hit(&mk("text/plain"), b"NEEDLE"));
        assert!(!hit(&mk("application/octet-stream"), b"needle"));
        assert!(!hit(&mk("application/octet-stream"), b"bmVlZ") && hit(&mk("text/plain"), b"bmVlZ"), "raw: text parts only");
        assert!(hit(&mk("application/octet-stream"), b"plain words") && !hit(&mk("text/plain"), b"absent"));
    }

    #[test]
    fn date_headers() {
        assert_eq!(parse_date_header(b"Mon, 1 Feb 1994 21:52:25 -0800"), Some(Date { year: 1994, month: 2, day: 1 }));
        assert_eq!(parse_date_header(b"1 Feb 94 21:52:25 GMT"), Some(Date { year: 1994, month: 2, day: 1 }));
        assert_eq!(parse_date_header(b"garbage"), None);
        assert_eq!(parse_date_header(b"31 Feb 2024 00:00 +0000"), None);
    }
}
