//! Authentication-Results fields (RFC 8601) in a message's header, as bytes:
//! finding the ones that claim an authserv-id, to remove them. Arriving mail may
//! carry a field claiming to be ours, forged to make a reader trust it (RFC 8601
//! section 5); fields of other hosts are left alone.

const NAME: &[u8] = b"authentication-results";

/// The message without the Authentication-Results fields of the header whose
/// authserv-id is `id` (compared without regard to case), and how many there were.
/// Lines end in LF or CRLF; the body is not looked at.
pub fn strip_ours(message: &[u8], id: &str) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(message.len());
    let mut removed = 0;
    let mut pos = 0;
    // Set while the field being copied or skipped goes on (continuation lines).
    let mut skipping = false;
    while pos < message.len() {
        let end = message[pos..].iter().position(|&b| b == b'\n').map_or(message.len(), |n| pos + n + 1);
        let line = &message[pos..end];
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        let continuation = matches!(line[0], b' ' | b'\t');
        if !continuation {
            skipping = field_end(message, pos).is_some_and(|value_end| claims(&message[pos..value_end], id));
            if skipping {
                removed += 1;
            }
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        pos = end;
    }
    out.extend_from_slice(&message[pos..]);
    (out, removed)
}

/// Where the field starting at `start` ends (after its last continuation line).
fn field_end(message: &[u8], start: usize) -> Option<usize> {
    let mut pos = start;
    loop {
        let end = message[pos..].iter().position(|&b| b == b'\n').map_or(message.len(), |n| pos + n + 1);
        pos = end;
        if pos >= message.len() || !matches!(message[pos], b' ' | b'\t') {
            return Some(pos);
        }
    }
}

/// Whether `field` (name, colon, value, continuations) is an
/// Authentication-Results field whose authserv-id is `id`.
fn claims(field: &[u8], id: &str) -> bool {
    let Some(colon) = field.iter().position(|&b| b == b':') else { return false };
    if !field[..colon].trim_ascii().eq_ignore_ascii_case(NAME) {
        return false;
    }
    authserv_id(&field[colon + 1..]).is_some_and(|v| v.eq_ignore_ascii_case(id.as_bytes()))
}

/// The authserv-id at the start of a value: a token or a quoted string, after
/// any white space and comments (CFWS).
fn authserv_id(value: &[u8]) -> Option<Vec<u8>> {
    let mut i = skip_cfws(value, 0);
    if value.get(i) == Some(&b'"') {
        let mut out = Vec::new();
        i += 1;
        while let Some(&b) = value.get(i) {
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    out.extend(value.get(i + 1));
                    i += 2;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        return None;
    }
    let start = i;
    while value.get(i).is_some_and(|&b| !b" \t\r\n;(\"".contains(&b)) {
        i += 1;
    }
    (i > start).then(|| value[start..i].to_vec())
}

fn skip_cfws(value: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&b) = value.get(i) {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Received: from x\n\tby y\nAuthentication-Results: mx.example; spf=pass\n smtp.mailfrom=a@b\n\
authentication-results:(forged) \"MX.Example\" 1; dkim=pass\nAuthentication-Results: other.example; dmarc=pass\n\
Subject: s\n\nAuthentication-Results: mx.example; in the body\n";

    #[test]
    fn removes_only_fields_claiming_our_id() {
        let (out, n) = strip_ours(MSG, "mx.example");
        assert_eq!(n, 2);
        assert_eq!(
            out,
            b"Received: from x\n\tby y\nAuthentication-Results: other.example; dmarc=pass\nSubject: s\n\nAuthentication-Results: mx.example; in the body\n"
        );
    }

    #[test]
    fn other_ids_prefixes_and_crlf() {
        let m = b"Authentication-Results: mx.example.org; x\r\nAuthentication-Results: mx.exampl; x\r\n\r\nbody";
        assert_eq!(strip_ours(m, "mx.example"), (m.to_vec(), 0));
        let (out, n) = strip_ours(b"Authentication-Results: mx.example;\r\n\tspf=fail\r\nTo: t\r\n\r\nb", "mx.example");
        assert_eq!((out.as_slice(), n), (&b"To: t\r\n\r\nb"[..], 1));
    }

    #[test]
    fn damaged_input_is_copied_not_lost() {
        for m in [&b""[..], b"no colon\n", b"Authentication-Results:\n", b"Authentication-Results: \"unterminated\n", b"(\n"] {
            let (out, n) = strip_ours(m, "mx.example");
            assert_eq!((out.as_slice(), n), (m, 0), "{:?}", String::from_utf8_lossy(m));
        }
    }
}
