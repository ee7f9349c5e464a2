//! IMAP end to end: instances from scripts/instance serving their virtual users
//! through postern-listen, imapup, auth and imapd, on a STARTTLS port and an
//! implicit-TLS port (as 143 and 993); Python's imaplib as the client, and mail
//! delivered by SMTP while a client IDLEs.

use crate::fixture::*;
use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// A started instance with IMAP and IMAPS listeners and these users.
pub fn imap_instance(tag: &str, users: &[(&str, &str)]) -> Instance {
    let i = Instance::create_imap(tag);
    i.control("timeoutimap", "60\n");
    for (u, pw) in users {
        i.adduser(u, pw);
    }
    i.start();
    i
}

/// `key value` lines printed by a script, one value per key (the last).
pub fn fields(out: &str) -> HashMap<String, String> {
    out.lines().filter_map(|l| l.split_once(' ')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
}

/// The whole tour over STARTTLS, then the same account over implicit TLS.
const TOUR: &str = r#"
import imaplib, ssl, sys
port, sport, user, pw, cert = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cert)
def say(k, v):
    print(k, v if isinstance(v, str) else repr(v))
m = imaplib.IMAP4("127.0.0.1", port, timeout=20)
say("caps_before", " ".join(m.capabilities))
try:
    m.login(user, pw)
    say("plain_login", "accepted")
except imaplib.IMAP4.error as e:
    say("plain_login", str(e))
m.starttls(ctx)
typ, d = m.login(user, pw)
say("login", typ)
typ, d = m.capability()
say("caps_after", d[0].decode())
typ, d = m.select("INBOX")
say("exists", d[0].decode())
typ, d = m.fetch("1:*", "(UID RFC822.SIZE BODY.PEEK[])")
n = 0
for item in d:
    if isinstance(item, tuple):
        n += 1
        say("head%d" % n, item[0].decode())
        say("body%d" % n, item[1].hex())
typ, d = m.search(None, "SUBJECT", "two")
say("search_subject", d[0].decode())
typ, d = m.search(None, "BODY", "trailing")
say("search_body", d[0].decode())
typ, d = m.search(None, "OR", "SUBJECT", "one", "LARGER", "5000")
say("search_or", d[0].decode())
typ, d = m.uid("SEARCH", "ALL")
uids = d[0].decode().split()
say("uids", " ".join(uids))
typ, d = m.store("1", "+FLAGS", "(\\Flagged $Work)")
say("store", b" ".join(d).decode())
typ, d = m.fetch("1", "(FLAGS)")
say("flags1", d[0].decode())
typ, d = m.create("Work")
say("create", typ)
typ, d = m.copy("1", "Work")
say("copy", d[0].decode())
m.response("COPYUID")  # forget COPY's
typ, d = m.uid("MOVE", uids[1], "Trash")
say("move", typ + " " + m.response("COPYUID")[1][-1].decode())
typ, d = m.select("INBOX")
say("exists_after_move", d[0].decode())
typ, d = m.store("1", "+FLAGS", "\\Deleted")
typ, d = m.expunge()
say("expunge", " ".join(x.decode() for x in d if x))
typ, d = m.append("Drafts", "(\\Draft)", None, b"Subject: draft\r\n\r\nunfinished\r\n")
say("append", typ + " " + d[0].decode())
typ, d = m.list()
say("list", " | ".join(x.decode() for x in d))
typ, d = m.rename("Work", "Work2")
say("rename", typ)
typ, d = m.status("Work2", "(MESSAGES UIDNEXT)")
say("status", d[0].decode())
typ, d = m.delete("Work2")
say("delete", typ)
typ, d = m.status("Trash", "(MESSAGES)")
say("trash", d[0].decode())
m.logout()
s = imaplib.IMAP4_SSL("127.0.0.1", sport, ssl_context=ctx, timeout=20)
say("ssl_caps", " ".join(s.capabilities))
s.login(user, pw)
typ, d = s.select("Trash", readonly=True)
typ, d = s.fetch("1", "(BODY.PEEK[])")
say("trash_body", d[0][1].hex())
typ, d = s.select("Drafts")
typ, d = s.fetch("1", "(FLAGS BODY[])")
say("draft", d[0][0].decode())
say("draft_body", d[0][1].hex())
s.logout()
"#;

#[test]
fn imaplib_over_starttls_and_implicit_tls_reads_files_byte_for_byte_and_changes_the_maildir() {
    let i = imap_instance("imaptour", &[("alice", "pw-a")]);
    let msgs = vec![
        message("one", "Hello.\n.\nA dot alone above."),
        message("two", &"a longer line of text\n".repeat(400)),
        message("three", "no trailing newline"),
    ];
    let delivered = i.deliver("alice", &msgs);
    let cert = i.cert();
    let out = python(TOUR, &[&i.imap_port().to_string(), &i.imaps_port().to_string(), &i.address("alice"), "pw-a", cert.to_str().unwrap()]);
    let f = fields(&out);
    let log = i.imap_log();
    let get = |k: &str| f.get(k).unwrap_or_else(|| panic!("no {k} in:\n{out}\nlog:\n{log}")).as_str();
    assert!(get("caps_before").contains("STARTTLS") && get("caps_before").contains("LOGINDISABLED"), "{out}");
    assert!(get("plain_login").contains("PRIVACYREQUIRED"), "no password in the clear: {out}");
    assert_eq!(get("login"), "OK");
    for cap in ["IMAP4REV2", "IDLE", "UIDPLUS", "MOVE", "LIST-EXTENDED", "SPECIAL-USE", "ESEARCH", "NAMESPACE"] {
        assert!(get("caps_after").to_ascii_uppercase().split(' ').any(|c| c == cap), "{cap}: {out}");
    }
    assert!(!get("ssl_caps").contains("STARTTLS") && get("ssl_caps").contains("AUTH=PLAIN"), "993: TLS already: {out}");
    assert_eq!(get("exists"), "3");
    // BODY[] is the delivered file, lines ending CR LF as IMAP sends them.
    for (n, file) in delivered.iter().enumerate() {
        let body = unhex(get(&format!("body{}", n + 1)));
        assert_eq!(body, crlf(file), "message {} byte for byte", n + 1);
        assert!(get(&format!("head{}", n + 1)).contains(&format!("RFC822.SIZE {}", body.len())), "{out}");
    }
    assert_eq!(get("search_subject"), "2");
    assert_eq!(get("search_body"), "3");
    assert_eq!(get("search_or"), "1 2");
    let uids: Vec<&str> = get("uids").split(' ').collect();
    assert_eq!(uids.len(), 3);
    assert!(get("flags1").contains("\\Flagged") && get("flags1").contains("$Work"), "{out}");
    assert!(get("copy").starts_with("[COPYUID "), "{out}");
    assert!(get("move").starts_with("OK "), "{out}");
    assert_eq!(get("move").split(' ').nth(2), Some(uids[1]), "COPYUID names the moved UID: {out}");
    assert_eq!(get("exists_after_move"), "2");
    assert_eq!(get("expunge"), "1");
    assert!(get("append").starts_with("OK [APPENDUID "), "{out}");
    for folder in ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Work"] {
        assert!(get("list").contains(&format!("\"{folder}\"")) || get("list").contains(&format!(" {folder}")), "{folder}: {out}");
    }
    assert!(get("list").contains("\\Sent") && get("list").contains("\\Trash"), "SPECIAL-USE: {out}");
    assert_eq!(get("rename"), "OK");
    assert!(get("status").contains("MESSAGES 1"), "{out}");
    assert_eq!(get("delete"), "OK");
    assert!(get("trash").contains("MESSAGES 1"), "{out}");
    // Over 993: the moved message in Trash, and the APPENDed draft.
    assert_eq!(unhex(get("trash_body")), crlf(&delivered[1]));
    assert!(get("draft").contains("\\Draft"), "{out}");
    assert_eq!(unhex(get("draft_body")), b"Subject: draft\r\n\r\nunfinished\r\n");
    // The Maildir++ side: folders are directories, flags are in the names.
    let md = i.maildir("alice");
    assert!(md.join(".Trash/cur").is_dir() && !md.join(".Work2").exists());
    let inbox: Vec<String> = fs::read_dir(md.join("cur")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(inbox.len(), 1, "one left in INBOX: {inbox:?}");
    assert_eq!(fs::read(md.join("cur").join(&inbox[0])).unwrap(), delivered[2], "the one neither expunged nor moved");
    assert!(inbox[0].ends_with(":2,"), "no flags on it (BODY.PEEK): {inbox:?}");
    let work: Vec<String> = fs::read_dir(md.join(".Drafts/cur")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(work.len() == 1 && work[0].ends_with(":2,DS"), "APPEND's flags and FETCH BODY[]'s \\Seen in the name: {work:?}");
}

/// IDLE in INBOX while mail comes by SMTP and a second session flags and
/// expunges; prints what the idling client heard and how long after each file
/// appeared in new/.
const IDLE: &str = r#"
import imaplib, ssl, sys, time, threading, smtplib, os
sport, smtp, user, pw, cert, newdir, count = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7])
ctx = ssl.create_default_context(cafile=cert)
# Generous: on a loaded machine a delivery by SMTP can take a while.
m = imaplib.IMAP4_SSL("127.0.0.1", sport, ssl_context=ctx, timeout=90)
m.login(user, pw)
typ, d = m.select("INBOX")
start = int(d[0])
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
print("cont", m.readline().decode().strip())
seen = {}
def deliver():
    curdir = os.path.join(os.path.dirname(newdir), "cur")
    def names():
        # new/ and cur/ alike: imapd may move a file on before we look.
        return {n.split(":")[0] for d in (newdir, curdir) for n in os.listdir(d)}
    for k in range(count):
        before = names()
        s = smtplib.SMTP("127.0.0.1", smtp, timeout=20)
        s.sendmail("sender@sender.test", [user], b"Subject: idle %d\r\n\r\nbody %d\r\n" % (k, k))
        s.quit()
        # When did the file appear?
        t0 = time.time()
        while time.time() - t0 < 20:
            if names() - before:
                break
            time.sleep(0.002)
        seen[k] = time.time()
t = threading.Thread(target=deliver)
t.start()
heard = []
want = start + count
while True:
    line = m.readline().decode().strip()
    heard.append((time.time(), line))
    if line.endswith("EXISTS") and int(line.split()[1]) >= want:
        break
t.join()
exists_at = heard[-1][0]
print("exists", heard[-1][1])
print("latency_ms", int((exists_at - seen[count - 1]) * 1000))
# Another session flags message 1 and expunges message 2.
o = imaplib.IMAP4_SSL("127.0.0.1", sport, ssl_context=ctx, timeout=20)
o.login(user, pw)
o.select("INBOX")
o.store("1", "+FLAGS", "\\Flagged")
o.store("2", "+FLAGS", "\\Deleted")
o.expunge()
o.logout()
got_flags = got_expunge = False
while not (got_flags and got_expunge):
    line = m.readline().decode().strip()
    got_flags = got_flags or ("FETCH" in line and "\\Flagged" in line)
    got_expunge = got_expunge or line == "* 2 EXPUNGE"
    print("update", line)
m.send(b"DONE\r\n")
while True:
    line = m.readline().decode().strip()
    if line.startswith(tag.decode()):
        print("done", line)
        break
typ, d = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print("subjects", " ".join(x[1].decode().strip().replace(" ", "_") for x in d if isinstance(x, tuple)))
m.logout()
"#;

#[test]
fn idle_hears_of_concurrent_deliveries_and_of_another_sessions_flags_and_expunges() {
    let i = imap_instance("imapidle", &[("bob", "pw-b")]);
    i.deliver("bob", &[message("first", "already here")]);
    let md = i.maildir("bob");
    let out = python(
        IDLE,
        &[
            &i.imaps_port().to_string(),
            &i.smtp_port().to_string(),
            &i.address("bob"),
            "pw-b",
            i.cert().to_str().unwrap(),
            md.join("new").to_str().unwrap(),
            "5",
        ],
    );
    let f = fields(&out);
    assert_eq!(f["cont"], "+ idling", "{out}");
    assert_eq!(f["exists"], "* 6 EXISTS", "{out}");
    assert!(out.contains("update * 2 EXPUNGE"), "{out}");
    assert!(f["done"].ends_with("OK IDLE terminated"), "{out}");
    assert_eq!(f["subjects"], "Subject:_first Subject:_idle_1 Subject:_idle_2 Subject:_idle_3 Subject:_idle_4", "{out}");
    // The figure for the report (not a timed assertion: see scripts/bench).
    eprintln!("IDLE: EXISTS {} ms after the last file appeared in new/", f["latency_ms"]);
    assert!(Path::new(&md).join("cur").is_dir());
}
