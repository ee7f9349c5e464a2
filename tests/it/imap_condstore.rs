//! CONDSTORE and QRESYNC (RFC 7162) end to end: real imapd processes through
//! the instance's IMAPS listener, a raw-socket client for the commands
//! imaplib does not know, imaplib and poplib as the other sessions changing
//! the mailbox, instance restarts and a broken UID list.

use crate::fixture::*;
use crate::imap::{fields, imap_instance as instance};
use std::fs;

/// The raw client: sends a tagged command, returns the untagged lines and
/// the tagged one. Responses here carry no literals (FLAGS, MODSEQ, UID).
const RAW: &str = r#"
import socket, ssl, sys, re, imaplib, poplib
def say(k, v):
    print(k, v)
class Raw:
    def __init__(self, port, cert, user, pw):
        ctx = ssl.create_default_context(cafile=cert)
        self.s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname="127.0.0.1")
        self.f = self.s.makefile("rb")
        self.n = 0
        self.f.readline()
        u, st = self.cmd('LOGIN "%s" "%s"' % (user, pw))
        assert st.startswith("OK "), st
    def cmd(self, line):
        self.n += 1
        tag = "t%d" % self.n
        self.s.sendall((tag + " " + line + "\r\n").encode())
        out = []
        while True:
            l = self.f.readline().decode().rstrip("\r\n")
            if not l:
                raise Exception("connection closed after " + line)
            if l.startswith(tag + " "):
                return out, l[len(tag) + 1:]
            out.append(l)
def code(lines, name):
    m = re.search(name + r" (\d+)", " ".join(lines))
    return int(m.group(1)) if m else None
def fetches(lines):
    return [l for l in lines if " FETCH (" in l]
def modseq(line):
    return int(re.search(r"MODSEQ \((\d+)\)", line).group(1))
def uid_of(line):
    return int(re.search(r"UID (\d+)", line).group(1))
sport, pop3, user, pw, cert = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def other():
    ctx = ssl.create_default_context(cafile=cert)
    o = imaplib.IMAP4_SSL("127.0.0.1", sport, ssl_context=ctx, timeout=20)
    o.login(user, pw)
    return o
"#;

/// CONDSTORE: CHANGEDSINCE after another session's flag and a POP3 DELE,
/// STORE UNCHANGEDSINCE losing to another session, SEARCH MODSEQ, STATUS.
const CONDSTORE: &str = r#"
a = Raw(sport, cert, user, pw)
u, st = a.cmd("CAPABILITY")
say("caps", u[0])
u, st = a.cmd("SELECT INBOX (CONDSTORE)")
h0 = code(u, "HIGHESTMODSEQ")
say("h0", h0)
u, st = a.cmd("UID FETCH 1:* (MODSEQ)")
uids = [uid_of(l) for l in fetches(u)]
say("uids", " ".join(map(str, uids)))
say("modseqs", " ".join(str(modseq(l)) for l in fetches(u)))
# Another session flags message 2.
o = other()
o.select("INBOX")
o.store("2", "+FLAGS", "\\Flagged")
o.logout()
u, st = a.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h0)
say("changed", " | ".join(fetches(u)))
say("changed_status", st)
h1 = max(modseq(l) for l in fetches(u))
# A second client, CONDSTORE only, watches POP3 delete message 1.
c = Raw(sport, cert, user, pw)
u, st = c.cmd("STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
say("status_before", u[0])
u, st = c.cmd("SELECT INBOX (CONDSTORE)")
p = poplib.POP3("127.0.0.1", pop3, timeout=20)
p.user(user)
p.pass_(pw)
p.dele(1)
p.quit()
u, st = c.cmd("NOOP")
say("noop_after_dele", " | ".join(u))
u, st = c.cmd("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h1)
say("changed_after_dele", " | ".join(fetches(u)) or "none")
u, st = c.cmd("STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
say("status_after", u[0])
# Conditional STOREs: c wins with the modseq both saw, a loses with it.
u, st = a.cmd("NOOP")
u, st = a.cmd("FETCH 1 (MODSEQ)")
m = modseq(fetches(u)[0])
u, st = c.cmd("STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % m)
say("winner", st + " | " + " | ".join(fetches(u)))
won = modseq(fetches(u)[0])
u, st = a.cmd("STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Answered)" % m)
say("loser", st + " | " + (" | ".join(fetches(u)) or "none"))
u, st = a.cmd("UID STORE %d (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Answered)" % (uids[1], won))
say("retry", st + " | " + " | ".join(fetches(u)))
u, st = a.cmd("UID SEARCH MODSEQ %d" % (won + 1))
say("search", u[0])
u, st = a.cmd("UID SEARCH RETURN (ALL) MODSEQ 1")
say("esearch", u[0])
u, st = a.cmd("FETCH 1 (FLAGS) (CHANGEDSINCE x)")
say("bad", st)
"#;

#[test]
fn condstore_changedsince_unchangedsince_and_search_see_other_sessions_and_pop3() {
    let i = instance("imapcond", &[("carol", "pw-c")]);
    i.deliver("carol", &[message("one", "1"), message("two", "2"), message("three", "3")]);
    let args = [i.imaps_port().to_string(), i.pop3_port().to_string(), i.address("carol"), "pw-c".into(), i.cert().display().to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(&format!("{RAW}{CONDSTORE}"), &args);
    let f = fields(&out);
    let log = i.imap_log();
    let get = |k: &str| f.get(k).unwrap_or_else(|| panic!("no {k} in:\n{out}\nlog:\n{log}")).as_str();
    assert!(get("caps").contains(" CONDSTORE") && get("caps").contains(" QRESYNC"), "{out}");
    let h0: u64 = get("h0").parse().unwrap();
    let uids: Vec<&str> = get("uids").split(' ').collect();
    assert_eq!(uids.len(), 3, "{out}");
    assert!(get("modseqs").split(' ').all(|m| m.parse::<u64>().unwrap() <= h0), "{out}");
    // Only message 2 changed since h0: the update and the answer both name it.
    let changed = get("changed");
    assert!(
        !changed.is_empty() && changed.split(" | ").all(|l| l.contains(&format!("UID {} ", uids[1])) && l.contains("\\Flagged")),
        "{out}"
    );
    assert!(changed.contains("MODSEQ ("), "{out}");
    assert_eq!(get("changed_status"), "OK UID FETCH completed");
    // POP3's DELE: an expunge for the CONDSTORE client, nothing else changed,
    // and a higher HIGHESTMODSEQ.
    assert_eq!(get("noop_after_dele"), "* 1 EXPUNGE | * 2 EXISTS", "{out}");
    assert_eq!(get("changed_after_dele"), "none", "{out}");
    let num = |s: &str, k: &str| -> u64 {
        let w: Vec<&str> = s.trim_end_matches(')').split([' ', '(']).collect();
        w[w.iter().position(|x| *x == k).unwrap() + 1].parse().unwrap()
    };
    assert_eq!(num(get("status_before"), "MESSAGES"), 3);
    assert_eq!(num(get("status_after"), "MESSAGES"), 2);
    assert!(num(get("status_after"), "HIGHESTMODSEQ") > num(get("status_before"), "HIGHESTMODSEQ"), "{out}");
    // The conditional STORE that saw an older modseq is refused with MODIFIED.
    assert!(get("winner").starts_with("OK STORE completed | * 1 FETCH (FLAGS (\\Seen \\Flagged) MODSEQ ("), "{out}");
    assert!(get("loser").starts_with("OK [MODIFIED 1] "), "{out}");
    assert!(!get("loser").contains("\\Answered"), "{out}");
    // .SILENT with CONDSTORE: no FLAGS, still the new MODSEQ.
    assert!(get("retry").starts_with(&format!("OK UID STORE completed | * 1 FETCH (UID {} MODSEQ (", uids[1])), "{out}");
    assert!(get("search").starts_with(&format!("* SEARCH {} (MODSEQ ", uids[1])), "{out}");
    assert!(get("esearch").contains(&format!(" ALL {}:{} MODSEQ ", uids[1], uids[2])), "{out}");
    assert!(get("bad").starts_with("BAD "), "{out}");
    // The flags are in the file name, where POP3 and mbsync see them.
    let cur: Vec<String> =
        fs::read_dir(i.maildir("carol").join("cur")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(cur.len(), 2, "{cur:?}");
    assert!(cur.iter().any(|n| n.ends_with(":2,FRS")), "{cur:?}");
    let list = fs::read_to_string(i.maildir("carol").join("postern-uidlist")).unwrap();
    assert!(list.starts_with("postern-uidlist 2 ") && list.contains(&format!("\nX {} ", uids[0])), "the tombstone: {list}");
}

/// QRESYNC: the first run caches, another session flags and expunges, a
/// second client resynchronises; then, per mode, after a restart or with
/// the UID list broken or gone.
const QRESYNC: &str = r#"
mode = sys.argv[6]
if mode == "first":
    a = Raw(sport, cert, user, pw)
    u, st = a.cmd("SELECT INBOX (QRESYNC (1 1))")
    say("not_enabled", st)
    u, st = a.cmd("ENABLE QRESYNC")
    say("enabled", u[0])
    u, st = a.cmd("SELECT INBOX")
    v, h = code(u, "UIDVALIDITY"), code(u, "HIGHESTMODSEQ")
    u, st = a.cmd("UID FETCH 1:* (FLAGS)")
    uids = [uid_of(l) for l in fetches(u)]
    a.cmd("LOGOUT")
    say("uids", " ".join(map(str, uids)))
    o = other()
    o.select("INBOX")
    o.store("2", "+FLAGS", "\\Flagged")
    o.store("3", "+FLAGS", "\\Deleted")
    o.expunge()
    o.logout()
    b = Raw(sport, cert, user, pw)
    b.cmd("ENABLE QRESYNC")
    u, st = b.cmd("SELECT INBOX (QRESYNC (%d %d %d:%d))" % (v, h, uids[0], uids[-1]))
    say("resync", " | ".join(l for l in u if "VANISHED" in l or "FETCH" in l))
    say("resync_status", st)
    u, st = b.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h)
    say("fetch_vanished", " | ".join(u))
    u, st = b.cmd("SELECT INBOX (QRESYNC (%d %d %d))" % (v, h, uids[0]))
    say("known_only_first", " | ".join(l for l in u if "VANISHED" in l or "FETCH" in l) or "none")
    say("closed", u[0])
    u, st = b.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    say("silent_store", " | ".join(u))
    u, st = b.cmd("EXPUNGE")
    say("expunge", " | ".join(u))
    u, st = b.cmd("STATUS INBOX (HIGHESTMODSEQ UIDVALIDITY)")
    say("status", u[0])
else:
    v, h = int(sys.argv[7]), int(sys.argv[8])
    b = Raw(sport, cert, user, pw)
    b.cmd("ENABLE QRESYNC")
    u, st = b.cmd("SELECT INBOX (QRESYNC (%d %d))" % (v, h))
    say("select", " | ".join(u))
    say("uidvalidity", code(u, "UIDVALIDITY"))
    say("highest", code(u, "HIGHESTMODSEQ"))
    say("exists", [l for l in u if l.endswith(" EXISTS")][0])
    say("resync", " | ".join(l for l in u if "VANISHED" in l or "FETCH" in l) or "none")
"#;

#[test]
fn qresync_select_tells_what_was_expunged_and_flagged_and_survives_restarts_and_a_lost_uid_list() {
    let i = instance("imapqres", &[("dave", "pw-d")]);
    i.deliver("dave", &[message("one", "1"), message("two", "2"), message("three", "3"), message("four", "4")]);
    let run = |extra: &[&str]| {
        let mut args =
            vec![i.imaps_port().to_string(), i.pop3_port().to_string(), i.address("dave"), "pw-d".into(), i.cert().display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = python(&format!("{RAW}{QRESYNC}"), &args);
        (fields(&out), out)
    };
    let (f, out) = run(&["first"]);
    let get = |k: &str| f.get(k).unwrap_or_else(|| panic!("no {k} in:\n{out}\nlog:\n{}", i.imap_log())).clone();
    assert!(get("not_enabled").starts_with("BAD ") && get("not_enabled").contains("ENABLE QRESYNC"), "{out}");
    assert_eq!(get("enabled"), "* ENABLED QRESYNC");
    let uids: Vec<String> = get("uids").split(' ').map(String::from).collect();
    assert_eq!(uids.len(), 4);
    // What the cached client missed: UID 3 expunged, message 2 flagged; 1 and 4 untouched.
    let resync = get("resync");
    assert!(
        resync.starts_with(&format!("* VANISHED (EARLIER) {} | * 2 FETCH (UID {} FLAGS (\\Flagged) MODSEQ (", uids[2], uids[1])),
        "{out}"
    );
    assert_eq!(resync.matches("FETCH").count(), 1, "{out}");
    assert!(get("resync_status").starts_with("OK [READ-WRITE]"), "{out}");
    let fv = get("fetch_vanished");
    assert!(fv.starts_with(&format!("* VANISHED (EARLIER) {} | * 2 FETCH (UID {} FLAGS (\\Flagged) MODSEQ (", uids[2], uids[1])), "{out}");
    assert_eq!(get("known_only_first"), "none", "VANISHED and FETCH keep to the known UIDs: {out}");
    assert!(get("closed").starts_with("* OK [CLOSED]"), "QRESYNC: the SELECT closing INBOX says so first: {out}");
    // QRESYNC: STORE answers carry the UID (the client's cache key) and MODSEQ.
    assert!(get("silent_store").starts_with(&format!("* 1 FETCH (UID {} MODSEQ (", uids[0])), "{out}");
    // With QRESYNC on, an expunge is a VANISHED, not an EXPUNGE.
    assert_eq!(get("expunge"), format!("* VANISHED {}", uids[0]), "{out}");
    let status = get("status");
    let words: Vec<&str> = status.trim_end_matches(')').split([' ', '(']).collect();
    let after = |k: &str| words[words.iter().position(|w| *w == k).unwrap() + 1].to_string();
    let (v, h) = (after("UIDVALIDITY"), after("HIGHESTMODSEQ"));

    // Restarted: the same UIDVALIDITY and HIGHESTMODSEQ, nothing to resync.
    i.stop();
    i.start();
    let (f, out) = run(&["again", &v, &h]);
    assert_eq!((f["uidvalidity"].as_str(), f["highest"].as_str(), f["resync"].as_str()), (v.as_str(), h.as_str(), "none"), "{out}");
    assert_eq!(f["exists"], "* 2 EXISTS", "{out}");

    // A broken list, then a missing one: a new UIDVALIDITY each time, the
    // client's QRESYNC data ignored (it reloads), modseqs start again.
    let list = i.maildir("dave").join("postern-uidlist");
    let mut last_v: u64 = v.parse().unwrap();
    for (what, broken) in [("broken", true), ("missing", false)] {
        if broken {
            fs::write(&list, b"postern-uidlist 2 garbage\n").unwrap();
        } else {
            fs::remove_file(&list).unwrap();
        }
        let (f, out) = run(&[what, &v, &h]);
        let nv: u64 = f["uidvalidity"].parse().unwrap();
        assert!(nv > last_v, "{what}: a new, larger UIDVALIDITY: {out}");
        last_v = nv;
        assert_eq!(f["resync"], "none", "{what}: no VANISHED or FETCH for another UIDVALIDITY: {out}");
        assert_eq!(f["highest"], "1", "{what}: {out}");
        assert_eq!(f["exists"], "* 2 EXISTS", "{what}: {out}");
    }
    assert!(i.imap_log().contains("UID list unreadable"), "the broken list is logged: {}", i.imap_log());
}

/// The tmux screen of session `s`.
fn screen(s: &str) -> String {
    let out = std::process::Command::new("tmux").args(["capture-pane", "-p", "-t", s]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// NeoMutt in tmux on this muttrc, logging its IMAP conversation to `log`;
/// returns the index screen once `what` shows, then quits it.
fn neomutt_index(session: &str, home: &std::path::Path, rc: &std::path::Path, log: &std::path::Path, what: &str) -> String {
    let ok = std::process::Command::new("tmux")
        .args(["new-session", "-d", "-s", session, "-x", "160", "-y", "40"])
        .arg(format!("HOME={} TERM=xterm neomutt -n -F {} -d 5 -l {}", home.display(), rc.display(), log.display()))
        .status()
        .unwrap();
    assert!(ok.success());
    let sc = try_wait_for(20, || {
        let sc = screen(session);
        sc.contains(what).then_some(sc)
    });
    let _ = std::process::Command::new("tmux").args(["send-keys", "-t", session, "q"]).status();
    let gone = try_wait_for(10, || {
        let alive = std::process::Command::new("tmux").args(["has-session", "-t", session]).status().unwrap().success();
        (!alive).then_some(())
    });
    if gone.is_none() {
        let _ = std::process::Command::new("tmux").args(["kill-session", "-t", session]).status();
    }
    sc.unwrap_or_else(|| panic!("no {what:?} on neomutt's screen:\n{}\n{}", screen(session), fs::read_to_string(log).unwrap_or_default()))
}

const FLAG_AND_EXPUNGE: &str = r#"
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[4])
o = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx, timeout=20)
o.login(sys.argv[2], sys.argv[3])
o.select("INBOX")
typ, d = o.search(None, "SUBJECT", "alpha")
o.store(d[0].decode(), "+FLAGS", "\\Flagged")
typ, d = o.search(None, "SUBJECT", "beta")
o.store(d[0].decode(), "+FLAGS", "\\Deleted")
o.expunge()
o.logout()
print("done")
"#;

/// A real client: NeoMutt with its header cache and QRESYNC on opens INBOX,
/// leaves; another session flags one message and expunges another; NeoMutt
/// opens INBOX again, asks what changed since its cached HIGHESTMODSEQ and
/// shows both changes. (NeoMutt 20220429 then checks its cache against the
/// folder, finds the count changed by the expunge and reloads the flags:
/// its own fallback, logged as "QRESYNC failed"; the index is right.)
#[test]
fn neomutt_with_qresync_resyncs_from_its_header_cache() {
    let i = instance("imapqmutt", &[("erin", "pw-e")]);
    i.deliver("erin", &[message("alpha", "a"), message("beta", "b"), message("gamma", "c")]);
    let t = TempDir::new("neomutt-qresync");
    let rc = t.path().join("muttrc");
    fs::create_dir(t.path().join("hcache")).unwrap();
    fs::write(
        &rc,
        format!(
            "set imap_user=\"{}\"\nset imap_pass=\"pw-e\"\nset folder=\"imaps://localhost:{}/\"\nset spoolfile=\"+INBOX\"\n\
             set certificate_file=\"{}\"\nset header_cache=\"{}/\"\nset message_cachedir=\"\"\nset mail_check=1\nset timeout=1\n\
             set imap_condstore=yes\nset imap_qresync=yes\nset sort=date-sent\nset wait_key=no\nset quit=yes\n",
            i.address("erin"),
            i.imaps_port(),
            i.cert().display(),
            t.path().join("hcache").display()
        ),
    )
    .unwrap();
    let session = format!("postern-qmutt-{}", std::process::id());
    let log1 = t.path().join("log1");
    let first = neomutt_index(&session, t.path(), &rc, &log1, "gamma");
    assert!(first.contains("alpha") && first.contains("beta"), "{first}");
    let out = python(FLAG_AND_EXPUNGE, &[&i.imaps_port().to_string(), &i.address("erin"), "pw-e", i.cert().to_str().unwrap()]);
    assert_eq!(out.trim(), "done");
    let log2 = t.path().join("log2");
    let second = neomutt_index(&session, t.path(), &rc, &log2, "gamma");
    // neomutt -l keeps the previous log as log2.0 and so on: read what is there.
    let talk: String = fs::read_dir(t.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("log2"))
        .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    // NeoMutt (2022) asks with ENABLE QRESYNC, SELECT (CONDSTORE) and
    // UID FETCH ... (CHANGEDSINCE cached-modseq VANISHED).
    assert!(talk.contains("< * ENABLED QRESYNC"), "QRESYNC on:\n{talk}");
    assert!(talk.contains("(CHANGEDSINCE ") && talk.contains(" VANISHED)"), "NeoMutt asked for what changed:\n{talk}");
    assert!(talk.contains("< * VANISHED (EARLIER) "), "and heard what vanished:\n{talk}");
    assert!(!second.contains("beta"), "the expunged message is gone from the index:\n{second}");
    let alpha = second.lines().find(|l| l.contains("alpha")).unwrap_or_else(|| panic!("{second}"));
    assert!(alpha.contains('!'), "alpha shows as flagged: {alpha}\n{second}");
}
