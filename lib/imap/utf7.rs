//! Modified UTF-7 (RFC 3501 5.1.3), the wire and on-disk form of folder names.
//!
//! Printable ASCII stands for itself except `&`, written `&-`; everything else
//! is UTF-16 in base64 (with `,` for `/`) between `&` and `-`. Decoding is
//! strict, so each name has exactly one spelling and two clients cannot make
//! two folders that look alike: printable ASCII inside a shift, an empty
//! shift other than `&-`, two shifts in a row, non-zero padding bits, a lone
//! surrogate or a missing `-` are refused.

use std::fmt;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Why bytes are not modified UTF-7.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Utf7Error(pub &'static str);

impl fmt::Display for Utf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad modified UTF-7: {}", self.0)
    }
}

impl std::error::Error for Utf7Error {}

/// UTF-8 to modified UTF-7.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
            let chars = (chunk.len() * 8).div_ceil(6);
            for i in 0..chars {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out.push('-');
        pending.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

fn b64_value(c: u8) -> Option<u32> {
    B64.iter().position(|&b| b == c).map(|p| p as u32)
}

/// Modified UTF-7 to UTF-8, strictly.
pub fn decode(b: &[u8]) -> Result<String, Utf7Error> {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    let mut last_shift_end = usize::MAX;
    while i < b.len() {
        let c = b[i];
        if !(0x20..=0x7e).contains(&c) {
            return Err(Utf7Error("a byte outside printable ASCII"));
        }
        if c != b'&' {
            out.push(c as char);
            i += 1;
            continue;
        }
        let end = b[i + 1..].iter().position(|&x| x == b'-').map(|p| i + 1 + p).ok_or(Utf7Error("'&' without its closing '-'"))?;
        let body = &b[i + 1..end];
        if body.is_empty() {
            out.push('&');
            i = end + 1;
            continue;
        }
        if last_shift_end == i {
            return Err(Utf7Error("two encoded runs in a row (they must be one)"));
        }
        let (mut bits, mut nbits, mut units) = (0u32, 0u32, Vec::new());
        for &x in body {
            let v = b64_value(x).ok_or(Utf7Error("a character outside modified base64 inside '&...-'"))?;
            bits = (bits << 6) | v;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push((bits >> nbits) as u16);
                bits &= (1 << nbits) - 1;
            }
        }
        if nbits >= 6 || bits != 0 {
            return Err(Utf7Error("leftover bits at the end of an encoded run"));
        }
        for r in char::decode_utf16(units.iter().copied()) {
            let ch = r.map_err(|_| Utf7Error("a lone UTF-16 surrogate"))?;
            if (' '..='~').contains(&ch) {
                return Err(Utf7Error("printable ASCII encoded in base64"));
            }
            out.push(ch);
        }
        i = end + 1;
        last_shift_end = i;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rfc_examples() {
        // RFC 3501 5.1.3's example.
        assert_eq!(decode(b"~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(), "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}");
        assert_eq!(encode("~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(encode("Entw\u{fc}rfe"), "Entw&APw-rfe");
        assert_eq!(encode("A&B"), "A&-B");
        for s in ["", "plain", "Gel\u{f6}scht", "\u{1f600} emoji", "a&b&", "\u{e9}\u{e8}\u{ea}x\u{e9}", "Σ", "日本語"] {
            assert_eq!(decode(encode(s).as_bytes()).unwrap(), s, "{s}");
        }
    }

    #[test]
    fn refuses_every_other_spelling() {
        for bad in [
            &b"&"[..],     // no closing '-'
            b"&Jjo",       // no closing '-'
            b"&AGE-",      // 'a' encoded
            b"&Jjo-&Jjo-", // two runs in a row
            b"&Jj-",       // leftover bits
            b"&Jjp-",      // non-zero padding bits
            b"&2D0-",      // lone high surrogate
            b"&Jjo!-",     // not base64
            b"a\x00b",     // NUL
            b"\xc3\xa9",   // raw UTF-8
            b"tab\there",  // control
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(decode(b"&Jjo-x&Jjo-").unwrap(), "\u{263a}x\u{263a}", "runs apart are fine");
    }
}
