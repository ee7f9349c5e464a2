//! The IMAP header cache (`postern-headers`, lib/imap/cache.rs) against a
//! Maildir that changes between sessions: a message removed behind the
//! server's back (as POP3 DELE does), one delivered, a forged record and a
//! garbled tail. Header FETCH and SEARCH must answer from the files' truth.

use crate::fixture::*;
use crate::imap::imap_instance;
use std::fs;

/// Log in over 993, SELECT, print the Subject of each message as a header
/// FETCH gives it, an ENVELOPE's subject and two header SEARCHes.
const LIST: &str = r#"
import imaplib, ssl, sys
sport, user, pw, cert = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cert)
m = imaplib.IMAP4_SSL("127.0.0.1", sport, ssl_context=ctx, timeout=30)
m.login(user, pw)
typ, d = m.select("INBOX")
print("exists", d[0].decode())
typ, d = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
subs = [x[1].decode().strip().replace("Subject: ", "") for x in d if isinstance(x, tuple)]
print("subjects", ",".join(subs))
typ, d = m.fetch("1", "(ENVELOPE)")
print("envelope1", d[0].decode())
for w in ("two", "four", "one"):
    typ, d = m.search(None, "SUBJECT", w)
    print("search_" + w, d[0].decode() or "-")
m.logout()
"#;

fn listing(i: &Instance) -> std::collections::HashMap<String, String> {
    let out = python(LIST, &[&i.imaps_port().to_string(), &i.address("alice"), "pw-a", i.cert().to_str().unwrap()]);
    out.lines().filter_map(|l| l.split_once(' ')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The base name (what the cache is keyed by) of the file in cur/ whose
/// header says `Subject: subject`.
fn base_of(md: &std::path::Path, subject: &str) -> (String, std::path::PathBuf) {
    for e in fs::read_dir(md.join("cur")).unwrap() {
        let p = e.unwrap().path();
        if fs::read_to_string(&p).unwrap().contains(&format!("Subject: {subject}\n")) {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            return (name.split(':').next().unwrap().split(',').next().unwrap().to_string(), p);
        }
    }
    panic!("no message {subject} in {}", md.display());
}

#[test]
fn header_fetch_and_search_stay_true_while_the_maildir_changes_under_the_cache() {
    let i = imap_instance("imapcache", &[("alice", "pw-a")]);
    // Enough messages for the cache to be used (cache::MIN_MESSAGES).
    let fillers: Vec<String> = (0..37).map(|k| format!("filler {k}")).collect();
    let mut msgs = vec![message("one", "first"), message("two", "second"), message("three", "third")];
    msgs.extend(fillers.iter().map(|s| message(s, "more")));
    i.deliver("alice", &msgs);
    let f = listing(&i);
    let log = i.imap_log();
    assert_eq!(f["subjects"], format!("one,two,three,{}", fillers.join(",")), "{f:?}\n{log}");
    assert_eq!((f["search_two"].as_str(), f["search_four"].as_str()), ("2", "-"), "{f:?}");
    let md = i.maildir("alice");
    let cache = md.join("postern-headers");
    let text = fs::read_to_string(&cache).unwrap_or_else(|e| panic!("no {}: {e}\n{log}", cache.display()));
    let (one, one_path) = base_of(&md, "one");
    let (two, _) = base_of(&md, "two");
    assert!(text.contains(&format!("{one} ")) && text.contains("Subject: three"), "the first listing filled the cache:\n{text}");

    // Behind the server's back: "one" goes (POP3's DELE unlinks it), "four"
    // comes; a record for "two" at another size says something else, and a
    // garbled line ends the file.
    fs::remove_file(&one_path).unwrap();
    i.deliver("alice", &[message("four", "fourth")]);
    let mut f2 = fs::OpenOptions::new().append(true).open(&cache).unwrap();
    use std::io::Write;
    f2.write_all(format!("{two} 7 17\nSubject: forged\n\n\nnot a record\n").as_bytes()).unwrap();
    drop(f2);

    let f = listing(&i);
    let log = i.imap_log();
    assert_eq!(f["exists"], "40", "{f:?}\n{log}");
    assert_eq!(
        f["subjects"],
        format!("two,three,{},four", fillers.join(",")),
        "the files' own headers, never the forged record: {f:?}\n{log}"
    );
    assert!(f["envelope1"].contains("\"two\""), "{f:?}");
    assert_eq!((f["search_two"].as_str(), f["search_four"].as_str(), f["search_one"].as_str()), ("1", "40", "-"), "{f:?}");
    // The garbled file was rewritten: only the folder's messages, at their sizes.
    let text = fs::read_to_string(&cache).unwrap();
    assert!(!text.contains("forged") && !text.contains("not a record") && !text.contains(&format!("{one} ")), "{text}");
    for s in ["two", "three", "four"] {
        assert!(text.contains(&format!("Subject: {s}\n")), "{s} cached again:\n{text}");
    }
}
