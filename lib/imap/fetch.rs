//! FETCH item values: ENVELOPE, BODYSTRUCTURE, BODY[section]<partial>,
//! BINARY, RFC822.SIZE... written into the response buffer.
//!
//! The MIME structure is found by `mime::parse` over the file's bytes, so each
//! section is an exact slice of the file. Files hold LF line ends as qmail's
//! Maildirs do (or CRLF, as APPEND stored them); every bare LF goes out as CR
//! LF, and sizes and partial ranges count the bytes as sent.

use super::mailbox::Message;
use super::types::{FetchAtt, Section, SectionText, MONTHS};
use crate::maildir::name::crlf_size;

/// What one FETCH needs about a message besides the item list.
pub struct FetchCtx<'a> {
    pub msg: &'a Message,
    /// `Mailbox::flags_of(msg)`, already rendered as `(\Seen $Label1)`.
    pub flags: &'a str,
    /// The file's bytes; None when no item needs them (`FetchAtt::needs_file`).
    pub data: Option<&'a [u8]>,
}

/// Append `NAME value` for one item (e.g. `RFC822.SIZE 1234`,
/// `BODY[HEADER] {56}\r\n...`) to `out`. The caller writes `* n FETCH (`,
/// the spaces between items and `)\r\n`. An item that needs the bytes when
/// `data` is None gets NIL (the caller logs why the file was unreadable).
pub fn write_item(out: &mut Vec<u8>, att: &FetchAtt, ctx: &FetchCtx<'_>) {
    let data = ctx.data;
    match att {
        FetchAtt::Flags => {
            out.extend_from_slice(b"FLAGS ");
            out.extend_from_slice(ctx.flags.as_bytes());
        }
        FetchAtt::Uid => out.extend_from_slice(format!("UID {}", ctx.msg.uid).as_bytes()),
        FetchAtt::ModSeq => out.extend_from_slice(format!("MODSEQ ({})", ctx.msg.modseq).as_bytes()),
        FetchAtt::Rfc822Size => out.extend_from_slice(format!("RFC822.SIZE {}", ctx.msg.size).as_bytes()),
        FetchAtt::InternalDate => {
            out.extend_from_slice(b"INTERNALDATE \"");
            out.extend_from_slice(internal_date(ctx.msg.internal_date).as_bytes());
            out.push(b'"');
        }
        FetchAtt::Envelope => {
            out.extend_from_slice(b"ENVELOPE ");
            match data {
                Some(d) => envelope(out, header_of(d)),
                None => out.extend_from_slice(b"NIL"),
            }
        }
        FetchAtt::BodyStructure | FetchAtt::Body => {
            let ext = matches!(att, FetchAtt::BodyStructure);
            out.extend_from_slice(if ext { b"BODYSTRUCTURE " } else { b"BODY " });
            match data {
                Some(d) => body_structure(out, &mime::parse(d), ext),
                None => out.extend_from_slice(b"NIL"),
            }
        }
        FetchAtt::BodySection { section, partial: None, .. } if section.part.is_empty() && section.text == SectionText::Whole => {
            out.extend_from_slice(b"BODY[] ");
            write_crlf_literal(out, data.unwrap_or_default());
        }
        FetchAtt::BodySection { section, partial, .. } => {
            out.extend_from_slice(format!("BODY[{section}]").as_bytes());
            let bytes = data.map(|d| section_bytes(d, section)).unwrap_or_default();
            write_partial(out, &bytes, *partial, false);
        }
        FetchAtt::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            write_crlf_literal(out, data.unwrap_or_default());
        }
        FetchAtt::Rfc822Header => {
            out.extend_from_slice(b"RFC822.HEADER ");
            let d = data.unwrap_or_default();
            write_literal(out, &crlf(&d[..mime::split(d).1]));
        }
        FetchAtt::Rfc822Text => {
            out.extend_from_slice(b"RFC822.TEXT ");
            let d = data.unwrap_or_default();
            write_literal(out, &crlf(&d[mime::split(d).1..]));
        }
        FetchAtt::Binary { part, partial, .. } => {
            let s: Vec<String> = part.iter().map(u32::to_string).collect();
            out.extend_from_slice(format!("BINARY[{}]", s.join(".")).as_bytes());
            let bytes = data.map(|d| binary(d, part)).unwrap_or_default();
            write_partial(out, &bytes, *partial, true);
        }
        FetchAtt::BinarySize(part) => {
            let s: Vec<String> = part.iter().map(u32::to_string).collect();
            let n = data.map(|d| binary(d, part).len()).unwrap_or(0);
            out.extend_from_slice(format!("BINARY.SIZE[{}] {n}", s.join(".")).as_bytes());
        }
    }
}

/// Whether the item needs no more than the header block, so the header
/// cache (`cache::Headers`) can serve it.
pub fn header_only(att: &FetchAtt) -> bool {
    match att {
        FetchAtt::Envelope | FetchAtt::Rfc822Header => true,
        FetchAtt::BodySection { section, .. } => {
            section.part.is_empty()
                && matches!(section.text, SectionText::Header | SectionText::HeaderFields(_) | SectionText::HeaderFieldsNot(_))
        }
        a => !a.needs_file(),
    }
}

/// `<origin>` and the (partial) bytes as a literal (`~{n}` for BINARY with NUL).
fn write_partial(out: &mut Vec<u8>, bytes: &[u8], partial: Option<(u64, u32)>, binary: bool) {
    let slice = match partial {
        Some((origin, count)) => {
            out.extend_from_slice(format!("<{origin}>").as_bytes());
            let start = (origin as usize).min(bytes.len());
            let end = start.saturating_add(count as usize).min(bytes.len());
            &bytes[start..end]
        }
        None => bytes,
    };
    out.push(b' ');
    if binary && slice.contains(&0) {
        out.push(b'~');
    }
    write_literal(out, slice);
}

/// `dd-Mon-yyyy hh:mm:ss +0000`.
pub fn internal_date(t: i64) -> String {
    let days = t.div_euclid(86400);
    let sod = t.rem_euclid(86400);
    let (y, m, d) = crate::message::date::civil_from_days(days);
    format!("{d:02}-{}-{y:04} {:02}:{:02}:{:02} +0000", MONTHS[(m - 1) as usize], sod / 3600, sod % 3600 / 60, sod % 60)
}

/// Bytes with every bare LF as CR LF.
pub fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(crlf_len(data));
    crlf_into(&mut out, data);
    out
}

/// The length of `crlf(data)`. Maildir files hold bare LF: counting those
/// is enough when there is no CR at all.
fn crlf_len(data: &[u8]) -> usize {
    if memchr::memchr(b'\r', data).is_none() {
        return data.len() + memchr::memchr_iter(b'\n', data).count();
    }
    let mut cr = false;
    crlf_size(data, &mut cr) as usize
}

/// Append `crlf(data)` to `out`, line by line rather than byte by byte (a
/// full FETCH sends every byte of the folder through here).
fn crlf_into(out: &mut Vec<u8>, data: &[u8]) {
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        if nl > 0 && data[nl - 1] == b'\r' {
            out.extend_from_slice(&data[start..=nl]);
        } else {
            out.extend_from_slice(&data[start..nl]);
            out.extend_from_slice(b"\r\n");
        }
        start = nl + 1;
    }
    out.extend_from_slice(&data[start..]);
}

/// A literal of `crlf(data)`, converted straight into `out`.
fn write_crlf_literal(out: &mut Vec<u8>, data: &[u8]) {
    let n = crlf_len(data);
    out.reserve(n + 16);
    out.extend_from_slice(format!("{{{n}}}\r\n").as_bytes());
    crlf_into(out, data);
}

/// `{n}\r\n` and the bytes.
pub fn write_literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// Append an IMAP string: quoted if short and plain, else a literal.
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() > 1024 || s.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n' || b >= 0x80) {
        return write_literal(out, s);
    }
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Append an nstring: NIL for None.
pub fn write_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => write_string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

fn header_of(d: &[u8]) -> &[u8] {
    &d[..mime::split(d).0]
}

/// The bytes of a section, line ends as sent.
pub fn section_bytes(d: &[u8], s: &Section) -> Vec<u8> {
    // The top level's header and text need no MIME tree (the common
    // HEADER.FIELDS of a message list reads only the header).
    if s.part.is_empty() {
        let (he, bs) = mime::split(d);
        match &s.text {
            SectionText::Whole => return crlf(d),
            SectionText::Header => return crlf(&d[..bs]),
            SectionText::Text => return crlf(&d[bs..]),
            SectionText::HeaderFields(names) | SectionText::HeaderFieldsNot(names) => {
                return header_fields(&d[..he], names, matches!(s.text, SectionText::HeaderFieldsNot(_)));
            }
            SectionText::Mime => return Vec::new(),
        }
    }
    let root = mime::parse(d);
    let Some(p) = root.find(&s.part) else { return Vec::new() };
    // HEADER, TEXT and HEADER.FIELDS of a part apply to the message it carries.
    let msg = if s.part.is_empty() { Some(p) } else { p.message.as_deref() };
    let raw: &[u8] = match &s.text {
        SectionText::Whole if s.part.is_empty() => d,
        SectionText::Whole => p.body,
        SectionText::Mime => p.header_block,
        SectionText::Header => msg.map_or(&[][..], |m| m.header_block),
        SectionText::Text => msg.map_or(&[][..], |m| m.body),
        SectionText::HeaderFields(names) | SectionText::HeaderFieldsNot(names) => {
            let Some(m) = msg else { return Vec::new() };
            return header_fields(m.header, names, matches!(s.text, SectionText::HeaderFieldsNot(_)));
        }
    };
    crlf(raw)
}

/// HEADER.FIELDS (or .NOT): the chosen fields as written, then the blank line.
/// One pass over the lines, no allocation per field: a client listing a
/// folder asks this of every message.
fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let (mut pos, mut keep, mut prev) = (0, false, 0u8);
    while pos < header.len() {
        let end = header[pos..].iter().position(|&b| b == b'\n').map_or(header.len(), |i| pos + i + 1);
        let line = &header[pos..end];
        // A line starting with white space continues the field before it.
        if pos == 0 || (line[0] != b' ' && line[0] != b'\t') {
            let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
            let name = line[..colon].trim_ascii_end();
            keep = names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name)) != not;
        }
        if keep {
            for &b in line {
                if b == b'\n' && prev != b'\r' {
                    out.push(b'\r');
                }
                out.push(b);
                prev = b;
            }
        }
        pos = end;
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// BINARY[part]: the part's content with base64 or quoted-printable undone.
pub fn binary(d: &[u8], part: &[u32]) -> Vec<u8> {
    let root = mime::parse(d);
    let Some(p) = root.find(part) else { return Vec::new() };
    let body = p.body;
    match p.encoding.to_ascii_lowercase().as_str() {
        "base64" => {
            let clean: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            crate::proto::base64::decode(&clean).unwrap_or_else(|| crlf(body))
        }
        "quoted-printable" => quoted_printable(&crlf(body)),
        _ => crlf(body),
    }
}

fn quoted_printable(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16);
    while i < s.len() {
        if s[i] == b'=' {
            if s.get(i + 1..i + 3) == Some(b"\r\n") {
                i += 3;
                continue;
            }
            if let (Some(h), Some(l)) = (s.get(i + 1).and_then(|&b| hex(b)), s.get(i + 2).and_then(|&b| hex(b))) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// The unfolded value of the first field called `name`.
pub fn field_value(header: &[u8], name: &str) -> Option<Vec<u8>> {
    let f = crate::message::headers::fields(header).into_iter().find(|f| f.name.eq_ignore_ascii_case(name))?;
    let raw = &header[f.range];
    let colon = raw.iter().position(|&b| b == b':')?;
    let v: Vec<u8> = raw[colon + 1..].iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    Some(v[start..end.max(start)].to_vec())
}

/// ENVELOPE of a header section.
pub fn envelope(out: &mut Vec<u8>, h: &[u8]) {
    out.push(b'(');
    for (i, name) in ["Date", "Subject"].iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_nstring(out, field_value(h, name).as_deref());
    }
    let from = field_value(h, "From");
    for name in ["From", "Sender", "Reply-To", "To", "Cc", "Bcc"] {
        out.push(b' ');
        let v = field_value(h, name).filter(|v| !v.is_empty());
        // Sender and Reply-To default to From (RFC 3501 7.4.2).
        let v = if v.is_none() && (name == "Sender" || name == "Reply-To") { from.clone() } else { v };
        address_list(out, v.as_deref());
    }
    for name in ["In-Reply-To", "Message-ID"] {
        out.push(b' ');
        write_nstring(out, field_value(h, name).as_deref());
    }
    out.push(b')');
}

/// Split at top-level `sep` (outside quotes, <>, and comments).
fn split_top(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let (mut out, mut start, mut quote, mut depth, mut angle, mut esc) = (Vec::new(), 0, false, 0i32, false, false);
    for (i, &b) in s.iter().enumerate() {
        if esc {
            esc = false;
            continue;
        }
        match b {
            b'\\' if quote || depth > 0 => esc = true,
            b'"' if depth == 0 => quote = !quote,
            b'(' if !quote => depth += 1,
            b')' if !quote && depth > 0 => depth -= 1,
            b'<' if !quote && depth == 0 => angle = true,
            b'>' if !quote && depth == 0 => angle = false,
            _ if b == sep && !quote && depth == 0 && !angle => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn trim(s: &[u8]) -> &[u8] {
    let a = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    let z = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(a, |z| z + 1);
    &s[a..z.max(a)]
}

/// A display name without its quotes and escapes, comments dropped.
fn phrase(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut quote, mut depth, mut esc) = (false, 0, false);
    for &b in trim(s) {
        if esc {
            out.push(b);
            esc = false;
            continue;
        }
        match b {
            b'\\' if quote => esc = true,
            b'"' if depth == 0 => quote = !quote,
            b'(' if !quote => depth += 1,
            b')' if !quote && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(b),
        }
    }
    trim(&out).to_vec()
}

/// One `(name adl mailbox host)`.
fn address(out: &mut Vec<u8>, a: &[u8]) {
    let a = trim(a);
    let (name, spec) = match (a.iter().position(|&b| b == b'<'), a.iter().rposition(|&b| b == b'>')) {
        (Some(l), Some(r)) if l < r => (Some(phrase(&a[..l])), trim(&a[l + 1..r])),
        _ => {
            // addr-spec (comment): the comment is the old way to give a name.
            let c = a.iter().position(|&b| b == b'(');
            let name = c.and_then(|c| a[c..].iter().rposition(|&b| b == b')').map(|e| trim(&a[c + 1..c + e]).to_vec()));
            (name, trim(&a[..c.unwrap_or(a.len())]))
        }
    };
    // A source route @a,@b:user@host.
    let (adl, spec) = match spec.iter().position(|&b| b == b':') {
        Some(c) if spec.first() == Some(&b'@') => (Some(&spec[..c]), &spec[c + 1..]),
        _ => (None, spec),
    };
    let (mailbox, host) = match spec.iter().rposition(|&b| b == b'@') {
        Some(at) => (&spec[..at], Some(&spec[at + 1..])),
        None => (spec, None),
    };
    let mailbox = phrase(mailbox);
    out.push(b'(');
    write_nstring(out, name.as_deref().filter(|n| !n.is_empty()));
    out.push(b' ');
    write_nstring(out, adl);
    out.push(b' ');
    write_nstring(out, Some(&mailbox));
    out.push(b' ');
    // RFC 3501: an address without a host has host NIL only in group syntax;
    // a bare local part gets an empty-string host rather than ending a group.
    write_nstring(out, Some(host.unwrap_or(b"")));
    out.push(b')');
}

/// An address list, groups as `(NIL NIL "group" NIL) ... (NIL NIL NIL NIL)`.
fn address_list(out: &mut Vec<u8>, v: Option<&[u8]>) {
    let Some(v) = v.map(trim).filter(|v| !v.is_empty()) else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let mut items = Vec::new();
    let mut rest = v;
    // Groups: `name: a, b;`
    while !rest.is_empty() {
        let parts = split_top(rest, b':');
        let is_group = parts.len() > 1 && !parts[0].contains(&b'@') && !parts[0].contains(&b'<');
        if is_group {
            let name = parts[0];
            let after = &rest[name.len() + 1..];
            let end = after.iter().position(|&b| b == b';').unwrap_or(after.len());
            let mut g = Vec::new();
            g.extend_from_slice(b"(NIL NIL ");
            let pname = phrase(name);
            let before: Vec<&[u8]> = split_top(&pname, b',');
            write_nstring(&mut g, Some(trim(before.last().copied().unwrap_or_default())));
            g.extend_from_slice(b" NIL)");
            // Addresses before the group name (`a@b, G: c;`) come first.
            for a in split_top(name, b',').iter().rev().skip(1).rev() {
                if !trim(a).is_empty() {
                    address(&mut items, a);
                }
            }
            items.extend_from_slice(&g);
            for a in split_top(&after[..end], b',') {
                if !trim(a).is_empty() {
                    address(&mut items, a);
                }
            }
            items.extend_from_slice(b"(NIL NIL NIL NIL)");
            rest = trim(after.get(end + 1..).unwrap_or_default());
            rest = rest.strip_prefix(b",").unwrap_or(rest);
        } else {
            for a in split_top(rest, b',') {
                if !trim(a).is_empty() {
                    address(&mut items, a);
                }
            }
            break;
        }
    }
    if items.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        out.extend_from_slice(&items);
        out.push(b')');
    }
}

fn params(out: &mut Vec<u8>, ps: &[(String, Vec<u8>)]) {
    if ps.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in ps.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_string(out, k.as_bytes());
        out.push(b' ');
        write_string(out, v);
    }
    out.push(b')');
}

fn lines(b: &[u8]) -> usize {
    let n = b.iter().filter(|&&c| c == b'\n').count();
    n + usize::from(b.last().is_some_and(|&c| c != b'\n'))
}

/// BODYSTRUCTURE (`ext`) or BODY of a part.
pub fn body_structure(out: &mut Vec<u8>, p: &mime::Part<'_>, ext: bool) {
    out.push(b'(');
    if !p.children.is_empty() {
        for c in &p.children {
            body_structure(out, c, ext);
        }
        out.push(b' ');
        write_string(out, p.subtype.as_bytes());
        if ext {
            out.push(b' ');
            params(out, &p.params);
            extension(out, p);
        }
        out.push(b')');
        return;
    }
    write_string(out, p.ctype.as_bytes());
    out.push(b' ');
    write_string(out, p.subtype.as_bytes());
    out.push(b' ');
    params(out, &p.params);
    for name in ["Content-ID", "Content-Description"] {
        out.push(b' ');
        write_nstring(out, field_value(p.header, name).as_deref());
    }
    out.push(b' ');
    write_string(out, p.encoding.as_bytes());
    let mut cr = false;
    out.extend_from_slice(format!(" {}", crlf_size(p.body, &mut cr)).as_bytes());
    if let Some(m) = &p.message {
        out.push(b' ');
        envelope(out, m.header);
        out.push(b' ');
        body_structure(out, m, ext);
        out.extend_from_slice(format!(" {}", lines(p.body)).as_bytes());
    } else if p.ctype.eq_ignore_ascii_case("text") {
        out.extend_from_slice(format!(" {}", lines(p.body)).as_bytes());
    }
    if ext {
        out.push(b' ');
        write_nstring(out, field_value(p.header, "Content-MD5").as_deref());
        extension(out, p);
    }
    out.push(b')');
}

/// disposition, language, location.
fn extension(out: &mut Vec<u8>, p: &mime::Part<'_>) {
    out.push(b' ');
    match field_value(p.header, "Content-Disposition") {
        Some(v) if !v.is_empty() => {
            let (kind, ps) = mime::split_params(&v);
            out.push(b'(');
            write_string(out, kind.as_bytes());
            out.push(b' ');
            params(out, &ps);
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match field_value(p.header, "Content-Language") {
        Some(v) if !v.is_empty() => {
            let langs: Vec<&[u8]> = split_top(&v, b',').into_iter().map(trim).filter(|l| !l.is_empty()).collect();
            out.push(b'(');
            for (i, l) in langs.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_string(out, l);
            }
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    write_nstring(out, field_value(p.header, "Content-Location").as_deref());
}

/// The MIME tree of a message, as slices of its bytes.
pub mod mime {
    /// Nesting beyond this is served as an opaque leaf.
    const MAX_DEPTH: usize = 32;

    pub struct Part<'a> {
        /// The header fields (without the blank line).
        pub header: &'a [u8],
        /// The header with its blank line (BODY[HEADER], BODY[n.MIME]).
        pub header_block: &'a [u8],
        pub body: &'a [u8],
        pub ctype: String,
        pub subtype: String,
        pub params: Vec<(String, Vec<u8>)>,
        pub encoding: String,
        /// Parts of a multipart.
        pub children: Vec<Part<'a>>,
        /// The message a message/rfc822 part carries.
        pub message: Option<Box<Part<'a>>>,
    }

    /// `(end of the header fields, start of the body)`: the blank line
    /// (LF or CRLF) lies between. No blank line: the whole is header.
    pub fn split(d: &[u8]) -> (usize, usize) {
        if d.starts_with(b"\n") {
            return (0, 1);
        }
        if d.starts_with(b"\r\n") {
            return (0, 2);
        }
        let mut i = 0;
        while let Some(p) = d[i..].iter().position(|&b| b == b'\n') {
            let nl = i + p;
            match d.get(nl + 1) {
                Some(b'\n') => return (nl + 1, nl + 2),
                Some(b'\r') if d.get(nl + 2) == Some(&b'\n') => return (nl + 1, nl + 3),
                _ => i = nl + 1,
            }
        }
        (d.len(), d.len())
    }

    /// `value; a=b; c="d"` -> (lowercased value, params).
    pub fn split_params(v: &[u8]) -> (String, Vec<(String, Vec<u8>)>) {
        let parts = super::split_top(v, b';');
        let kind = String::from_utf8_lossy(super::trim(parts[0])).to_ascii_lowercase();
        let mut ps = Vec::new();
        for p in &parts[1..] {
            let p = super::trim(p);
            let Some(eq) = p.iter().position(|&b| b == b'=') else { continue };
            let k = String::from_utf8_lossy(super::trim(&p[..eq])).to_ascii_lowercase();
            let raw = super::trim(&p[eq + 1..]);
            let v = if raw.first() == Some(&b'"') { super::phrase(raw) } else { raw.to_vec() };
            if !k.is_empty() {
                ps.push((k, v));
            }
        }
        (kind, ps)
    }

    /// Parse a message or part. `digest`: the default type is message/rfc822.
    pub fn parse(d: &[u8]) -> Part<'_> {
        part(d, false, 0)
    }

    fn part(d: &[u8], digest: bool, depth: usize) -> Part<'_> {
        let (he, bs) = split(d);
        let header = &d[..he];
        let ct = super::field_value(header, "Content-Type").filter(|v| !v.is_empty());
        let (full, mut params) = match &ct {
            Some(v) => split_params(v),
            None if digest => ("message/rfc822".to_string(), Vec::new()),
            None => ("text/plain".to_string(), Vec::new()),
        };
        let (mut ctype, mut subtype) = match full.split_once('/') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => (a.trim().to_string(), b.trim().to_string()),
            _ => ("text".to_string(), "plain".to_string()),
        };
        if ctype == "text" && ct.is_none() {
            params.push(("charset".to_string(), b"us-ascii".to_vec()));
        }
        let encoding = super::field_value(header, "Content-Transfer-Encoding")
            .map(|v| String::from_utf8_lossy(&v).trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "7bit".to_string());
        let body = &d[bs..];
        let mut p = Part {
            header,
            header_block: &d[..bs],
            body,
            ctype: String::new(),
            subtype: String::new(),
            params,
            encoding,
            children: Vec::new(),
            message: None,
        };
        if depth < MAX_DEPTH {
            if ctype == "multipart" {
                let boundary = p.params.iter().find(|(k, _)| k == "boundary").map(|(_, v)| v.clone());
                match boundary.filter(|b| !b.is_empty()) {
                    Some(b) => {
                        let dig = subtype == "digest";
                        p.children = split_multipart(body, &b).into_iter().map(|c| part(c, dig, depth + 1)).collect();
                    }
                    None => {
                        // No boundary: RFC 2046 has no parts to find; serve it as text.
                        ctype = "text".to_string();
                        subtype = "plain".to_string();
                    }
                }
                if p.children.is_empty() && ctype == "multipart" {
                    // A multipart with no parts: one empty text part, as other servers do.
                    p.children.push(part(b"", false, depth + 1));
                }
            } else if ctype == "message" && (subtype == "rfc822" || subtype == "global") {
                p.message = Some(Box::new(part(body, false, depth + 1)));
            }
        }
        p.ctype = ctype;
        p.subtype = subtype;
        p
    }

    /// The parts between `--boundary` lines, each without the line break that
    /// belongs to the next delimiter.
    fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
        let mut delim = b"--".to_vec();
        delim.extend_from_slice(boundary);
        let mut out = Vec::new();
        let mut start: Option<usize> = None;
        let mut i = 0;
        while i <= body.len() {
            let line_end = body[i..].iter().position(|&b| b == b'\n').map_or(body.len(), |p| i + p);
            let line = &body[i..line_end];
            if line.starts_with(&delim) {
                let rest = &line[delim.len()..];
                let close = rest.starts_with(b"--");
                let tail = if close { &rest[2..] } else { rest };
                if tail.iter().all(|b| b.is_ascii_whitespace()) {
                    if let Some(s) = start {
                        // The CRLF or LF before the delimiter is the delimiter's.
                        let mut e = i.saturating_sub(1).max(s);
                        if e > s && body[e - 1] == b'\r' {
                            e -= 1;
                        }
                        out.push(&body[s..e.max(s)]);
                    }
                    if close {
                        return out;
                    }
                    start = Some((line_end + 1).min(body.len()));
                }
            }
            if line_end >= body.len() {
                break;
            }
            i = line_end + 1;
        }
        // No closing delimiter: the last part runs to the end.
        if let Some(s) = start {
            out.push(&body[s..]);
        }
        out
    }

    impl<'a> Part<'a> {
        /// The part a section's part path names (empty: this one).
        pub fn find(&self, path: &[u32]) -> Option<&Part<'a>> {
            let Some((&n, rest)) = path.split_first() else { return Some(self) };
            self.child(n)?.find(rest)
        }

        fn child(&self, n: u32) -> Option<&Part<'a>> {
            if n == 0 {
                return None;
            }
            if !self.children.is_empty() {
                return self.children.get(n as usize - 1);
            }
            if let Some(m) = &self.message {
                return m.child(n);
            }
            (n == 1).then_some(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::types::Section;

    const MSG: &[u8] = b"From: \"Doe, Jane\" <jane@example.org>\n\
To: team: a@x.org, Bob <b@y.org>;, c@z.org\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= \"quoted\"\n\
Date: Mon, 1 Feb 2024 10:00:00 +0100\n\
Message-ID: <1@example.org>\n\
MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"XX\"\n\
\n\
preamble\n\
--XX\n\
Content-Type: text/plain; charset=utf-8\n\
\n\
hello\n\
world\n\
--XX\n\
Content-Type: application/octet-stream; name=\"a.bin\"\n\
Content-Transfer-Encoding: base64\n\
Content-Disposition: attachment; filename=\"a.bin\"\n\
\n\
AAEC/w==\n\
--XX\n\
Content-Type: message/rfc822\n\
\n\
From: inner@example.org\n\
Subject: inner\n\
\n\
inner body\n\
--XX--\n\
epilogue\n";

    fn item(att: FetchAtt, data: &[u8]) -> String {
        String::from_utf8(item_bytes(att, data)).unwrap()
    }

    fn item_bytes(att: FetchAtt, data: &[u8]) -> Vec<u8> {
        let m = crate::imap::mailbox::Message {
            uid: 7,
            name: "n".into(),
            in_new: false,
            flags: 0,
            keywords: 0,
            size: 99,
            internal_date: 951868800 + 3661,
            recent: false,
            modseq: 1,
        };
        let mut out = Vec::new();
        write_item(&mut out, &att, &FetchCtx { msg: &m, flags: "(\\Seen)", data: Some(data) });
        out
    }

    fn sect(part: &[u32], text: SectionText) -> FetchAtt {
        FetchAtt::BodySection { peek: true, section: Section { part: part.to_vec(), text }, partial: None }
    }

    #[test]
    fn simple_items() {
        assert_eq!(item(FetchAtt::Uid, MSG), "UID 7");
        assert_eq!(item(FetchAtt::Flags, MSG), "FLAGS (\\Seen)");
        assert_eq!(item(FetchAtt::Rfc822Size, MSG), "RFC822.SIZE 99");
        assert_eq!(item(FetchAtt::InternalDate, MSG), "INTERNALDATE \"01-Mar-2000 01:01:01 +0000\"");
    }

    #[test]
    fn sections_are_exact_slices_with_crlf() {
        let text = |s: &str| s.replace('\n', "\r\n");
        let whole = item(sect(&[], SectionText::Whole), MSG);
        let want = text(std::str::from_utf8(MSG).unwrap());
        assert_eq!(whole, format!("BODY[] {{{}}}\r\n{want}", want.len()));
        assert_eq!(item(sect(&[1], SectionText::Whole), MSG), "BODY[1] {12}\r\nhello\r\nworld");
        assert_eq!(item(sect(&[1], SectionText::Mime), MSG), "BODY[1.MIME] {43}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
        assert_eq!(item(sect(&[2], SectionText::Whole), MSG), "BODY[2] {8}\r\nAAEC/w==");
        assert_eq!(item(sect(&[3, 1], SectionText::Whole), MSG), "BODY[3.1] {10}\r\ninner body");
        assert_eq!(
            item(sect(&[3], SectionText::Header), MSG),
            format!("BODY[3.HEADER] {{43}}\r\n{}", text("From: inner@example.org\nSubject: inner\n\n"))
        );
        assert_eq!(item(sect(&[3], SectionText::Text), MSG), "BODY[3.TEXT] {10}\r\ninner body");
        assert_eq!(item(sect(&[4], SectionText::Whole), MSG), "BODY[4] {0}\r\n", "a part that is not there is empty");
        let hf = item(sect(&[], SectionText::HeaderFields(vec!["subject".into(), "FROM".into()])), MSG);
        let want = text("From: \"Doe, Jane\" <jane@example.org>\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= \"quoted\"\n\n");
        assert_eq!(hf, format!("BODY[HEADER.FIELDS (SUBJECT FROM)] {{{}}}\r\n{want}", want.len()));
        let not = item(sect(&[], SectionText::HeaderFieldsNot(vec!["Content-Type".into()])), MSG);
        assert!(!not.contains("Content-Type:") && not.ends_with("Message-ID: <1@example.org>\r\nMIME-Version: 1.0\r\n\r\n"), "{not}");
        let body = item(sect(&[], SectionText::Text), MSG);
        assert!(body.starts_with("BODY[TEXT] {") && body.ends_with("--XX--\r\nepilogue\r\n"), "{body}");
        // Partial: origin and count on the bytes as sent.
        let p = FetchAtt::BodySection { peek: false, section: Section { part: vec![1], text: SectionText::Whole }, partial: Some((3, 4)) };
        assert_eq!(item(p, MSG), "BODY[1]<3> {4}\r\nlo\r\n");
        let p = FetchAtt::BodySection { peek: false, section: Section::whole(), partial: Some((100000, 4)) };
        assert_eq!(item(p, MSG), "BODY[]<100000> {0}\r\n");
        // A CRLF file is sent as it is.
        let crlf_msg = b"A: 1\r\n\r\nx\r\n";
        assert_eq!(item(FetchAtt::Rfc822, crlf_msg), "RFC822 {11}\r\nA: 1\r\n\r\nx\r\n");
        assert_eq!(item(FetchAtt::Rfc822Header, b"A: 1\n\nx\n"), "RFC822.HEADER {8}\r\nA: 1\r\n\r\n");
        assert_eq!(item(FetchAtt::Rfc822Text, b"A: 1\n\nx\n"), "RFC822.TEXT {3}\r\nx\r\n");
    }

    #[test]
    fn binary_undoes_the_transfer_encoding() {
        assert_eq!(item_bytes(FetchAtt::Binary { peek: true, part: vec![2], partial: None }, MSG), b"BINARY[2] ~{4}\r\n\x00\x01\x02\xff");
        assert_eq!(item(FetchAtt::BinarySize(vec![2]), MSG), "BINARY.SIZE[2] 4");
        let qp = b"Content-Transfer-Encoding: quoted-printable\n\na=3Db=\nc\n";
        assert_eq!(item(FetchAtt::Binary { peek: true, part: vec![1], partial: None }, qp), "BINARY[1] {6}\r\na=bc\r\n");
    }

    #[test]
    fn envelope_with_groups_and_quoted_names() {
        let e = item(FetchAtt::Envelope, MSG);
        assert_eq!(
            e,
            "ENVELOPE (\"Mon, 1 Feb 2024 10:00:00 +0100\" \"=?utf-8?q?Gr=C3=BC=C3=9Fe?= \\\"quoted\\\"\" \
((\"Doe, Jane\" NIL \"jane\" \"example.org\")) ((\"Doe, Jane\" NIL \"jane\" \"example.org\")) \
((\"Doe, Jane\" NIL \"jane\" \"example.org\")) \
((NIL NIL \"team\" NIL)(NIL NIL \"a\" \"x.org\")(\"Bob\" NIL \"b\" \"y.org\")(NIL NIL NIL NIL)(NIL NIL \"c\" \"z.org\")) \
NIL NIL NIL \"<1@example.org>\")"
        );
        assert_eq!(item(FetchAtt::Envelope, b"\nbody"), "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        let old = item(FetchAtt::Envelope, b"From: joe@x.org (Joe Q)\nTo: undisclosed-recipients:;\n\n");
        assert!(old.contains("((\"Joe Q\" NIL \"joe\" \"x.org\"))"), "{old}");
        assert!(old.contains("((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))"), "{old}");
    }

    #[test]
    fn bodystructure_of_a_nested_multipart() {
        let b = item(FetchAtt::BodyStructure, MSG);
        assert_eq!(
            b,
            "BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 2 NIL NIL NIL NIL)\
(\"application\" \"octet-stream\" (\"name\" \"a.bin\") NIL NIL \"base64\" 8 NIL (\"attachment\" (\"filename\" \"a.bin\")) NIL NIL)\
(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 53 \
(NIL \"inner\" ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"inner\" \"example.org\")) NIL NIL NIL NIL NIL) \
(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL) \
\"mixed\" (\"boundary\" \"XX\") NIL NIL NIL)"
        );
        let short = item(FetchAtt::Body, MSG);
        assert!(short.starts_with("BODY ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 2)"), "{short}");
        assert!(short.ends_with(" \"mixed\")"), "{short}");
        // Plain text, no Content-Type.
        assert_eq!(
            item(FetchAtt::BodyStructure, b"A: 1\n\nx\ny"),
            "BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 2 NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn multipart_edges() {
        // No closing delimiter; CRLF lines; a boundary-like line that is not one.
        let m = b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\r\none\r\n--bx\r\n--b \r\n\r\ntwo";
        let root = mime::parse(m);
        assert_eq!(root.children.len(), 2);
        assert_eq!(root.children[0].body, b"one\r\n--bx");
        assert_eq!(root.children[1].body, b"two");
        // Nesting deeper than the limit is a leaf, not a stack overflow.
        let mut deep = Vec::new();
        for _ in 0..10000 {
            deep.extend_from_slice(b"Content-Type: message/rfc822\n\n");
        }
        let p = mime::parse(&deep);
        let mut out = Vec::new();
        body_structure(&mut out, &p, true);
        assert!(out.len() > 100);
        // Every prefix of a message parses without panicking.
        for i in 0..MSG.len() {
            let mut out = Vec::new();
            body_structure(&mut out, &mime::parse(&MSG[..i]), true);
            envelope(&mut out, &MSG[..mime::split(&MSG[..i]).0]);
            let _ = section_bytes(&MSG[..i], &Section { part: vec![3, 1], text: SectionText::Text });
        }
    }

    #[test]
    fn strings_quote_or_go_literal() {
        let s = |b: &[u8]| {
            let mut o = Vec::new();
            write_string(&mut o, b);
            o
        };
        assert_eq!(s(b"a \"b\" \\c"), b"\"a \\\"b\\\" \\\\c\"");
        assert_eq!(s(b"line\r\nbreak"), b"{11}\r\nline\r\nbreak");
        assert_eq!(s("é".as_bytes()), b"{2}\r\n\xc3\xa9");
        let mut o = Vec::new();
        write_nstring(&mut o, None);
        assert_eq!(o, b"NIL");
    }

    /// Mangled messages (bytes flipped, cut, repeated) never panic and keep
    /// BODY[] byte-exact; a cheap stand-in for a fuzz run on every test.
    #[test]
    fn mangled_messages_never_panic() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let atts = [
            FetchAtt::Envelope,
            FetchAtt::BodyStructure,
            FetchAtt::Binary { peek: true, part: vec![2], partial: Some((1, 3)) },
            sect(&[3, 1], SectionText::Mime),
            sect(&[3], SectionText::HeaderFields(vec!["From".into()])),
            sect(&[1, 1, 1], SectionText::Text),
        ];
        for _ in 0..300 {
            let mut m = MSG.to_vec();
            for _ in 0..(next() % 8) {
                let i = (next() as usize) % m.len();
                match next() % 4 {
                    0 => m[i] = b"\n\r-\";:<>()@=\\x"[(next() % 12) as usize],
                    1 => m.truncate(i.max(1)),
                    2 => {
                        let chunk = m[i..].iter().take(40).copied().collect::<Vec<_>>();
                        m.splice(i..i, chunk);
                    }
                    _ => m.insert(i, 0xff),
                }
            }
            for a in &atts {
                item_bytes(a.clone(), &m);
            }
            let whole = item_bytes(sect(&[], SectionText::Whole), &m);
            assert!(whole.ends_with(&crlf(&m)));
        }
    }
}
