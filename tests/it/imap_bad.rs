//! IMAP bad input, with the raw fixture::Client: each is answered and the
//! server goes on serving (the same session, or the next client).

use crate::fixture::*;
use crate::imap::imap_instance;
use std::fs;
use std::time::{Duration, Instant};

/// An IMAP instance without a certificate: LOGIN in the clear is allowed (no
/// STARTTLS to ask for), so the raw client can reach the session.
fn plain_instance(tag: &str) -> Instance {
    let i = Instance::create_imap(tag);
    i.control("timeoutimap", "30\n");
    fs::remove_file(i.path().join("control/servercert.pem")).unwrap();
    fs::remove_file(i.path().join("control/serverkey.pem")).unwrap();
    i.adduser("carol", "pw-c");
    i.start();
    i
}

/// Read lines up to the one starting with `tag `; all of them.
fn until(c: &mut Client, tag: &str) -> Vec<String> {
    let mut v = Vec::new();
    loop {
        let l = c.read_line().unwrap_or_else(|| panic!("closed while waiting for {tag}; got {v:?}"));
        let done = l.starts_with(&format!("{tag} "));
        v.push(l);
        if done {
            return v;
        }
    }
}

fn last(c: &mut Client, tag: &str) -> String {
    until(c, tag).pop().unwrap()
}

fn login(i: &Instance) -> Client {
    let mut c = Client::connect(i.imap_port());
    assert!(c.line().starts_with("* OK "));
    c.send(format!("l LOGIN {} pw-c\r\n", i.address("carol")).as_bytes());
    let l = last(&mut c, "l");
    assert!(l.starts_with("l OK "), "{l}\n{}", i.imap_log());
    c
}

#[test]
fn before_login_only_the_login_commands_are_read() {
    let i = imap_instance("imapbadpre", &[("dave", "pw-d")]);
    let mut c = Client::connect(i.imap_port());
    assert!(c.line().starts_with("* OK [CAPABILITY "));
    c.send(b"a1 SELECT INBOX\r\na2 FETCH 1 (BODY[])\r\na3 LOGIN dave pw-d\r\na4 AUTHENTICATE PLAIN\r\n");
    assert!(last(&mut c, "a1").starts_with("a1 BAD not logged in"));
    assert!(last(&mut c, "a2").starts_with("a2 BAD not logged in"));
    assert!(last(&mut c, "a3").starts_with("a3 NO [PRIVACYREQUIRED]"), "no passwords in the clear");
    assert!(last(&mut c, "a4").starts_with("a4 NO [PRIVACYREQUIRED]"));
    // A literal over the login limit: refused before it is sent.
    c.send(b"a5 LOGIN {999999}\r\n");
    assert_eq!(last(&mut c, "a5"), "a5 NO [TOOBIG] literal of 999999 octets: at most 2048 in one command");
    // A non-synchronizing one is skipped whole.
    let mut big = b"a6 ID {5000+}\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 5000));
    big.extend_from_slice(b"\r\na7 NOOP\r\n");
    c.send(&big);
    assert!(last(&mut c, "a6").starts_with("a6 NO [TOOBIG]"));
    assert_eq!(last(&mut c, "a7"), "a7 OK NOOP completed");
    // A line too long, unbalanced parentheses, deep nesting, no tag.
    let mut long = b"a8 ID ".to_vec();
    long.extend(std::iter::repeat_n(b'y', 20_000));
    long.extend_from_slice(b"\r\na9 ID (\"a\" \"b\"\r\na10 ID ((((((((x))))))))\r\n\r\na11 CAPABILITY\r\n");
    c.send(&long);
    assert!(last(&mut c, "a8").starts_with("a8 BAD line too long"));
    assert!(last(&mut c, "a9").starts_with("a9 BAD unbalanced parentheses"));
    assert!(last(&mut c, "a10").starts_with("a10 BAD parentheses nested too deep"));
    let l = until(&mut c, "a11");
    assert!(l[0].starts_with("* BAD empty line"), "{l:?}");
    assert!(l[1].starts_with("* CAPABILITY ") && l[1].contains("STARTTLS"), "{l:?}");
    c.send(b"a12 LOGOUT\r\n");
    assert_eq!(until(&mut c, "a12"), vec!["* BYE logging out", "a12 OK LOGOUT completed"]);
    assert!(c.closed());
    assert!(!i.imap_log().contains("postern-auth"), "no login was attempted: {}", i.imap_log());
}

#[test]
fn commands_after_starttls_in_the_same_packet_are_never_run() {
    let i = imap_instance("imapbadtls", &[("erin", "pw-e")]);
    let mut c = Client::connect(i.imap_port());
    c.line();
    c.send(format!("s1 STARTTLS\r\ns2 LOGIN {} pw-e\r\ns3 SELECT INBOX\r\n", i.address("erin")).as_bytes());
    assert_eq!(c.line(), "s1 OK begin TLS negotiation now");
    // What follows is read as the TLS handshake, which fails: no answer to s2.
    while let Some(l) = c.read_line() {
        assert!(!l.starts_with("s2") && !l.starts_with("s3"), "{l}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = i.imap_log();
    assert!(!log.contains("postern-imapd"), "the pipelined LOGIN must not run: {log}");
    assert!(log.contains("TLS session ended"), "{log}");
    // The next client is served.
    let mut c = Client::connect(i.imap_port());
    assert!(c.line().starts_with("* OK "));
    c.send(b"n NOOP\r\n");
    assert_eq!(c.line(), "n OK NOOP completed");
}

#[test]
fn failed_logins_are_delayed_counted_and_refused_over_the_limit() {
    let i = Instance::create_imap("imapbadauth");
    fs::remove_file(i.path().join("control/servercert.pem")).unwrap();
    fs::remove_file(i.path().join("control/serverkey.pem")).unwrap();
    i.control("authfailmax", "4\n");
    i.adduser("frank", "right");
    i.start();
    let user = i.address("frank");
    let mut c = Client::connect(i.imap_port());
    c.line();
    for n in 1..=3 {
        c.send(format!("f{n} LOGIN {user} wrong\r\n").as_bytes());
        assert_eq!(last(&mut c, &format!("f{n}")), format!("f{n} NO [AUTHENTICATIONFAILED] authentication failed"));
    }
    assert_eq!(c.line(), "* BYE too many wrong logins");
    assert!(c.closed());
    // The address is over authfailmax after one more: then even the right
    // password is refused for now.
    let mut c = Client::connect(i.imap_port());
    c.line();
    c.send(format!("g1 LOGIN {user} wrong\r\ng2 LOGIN {user} right\r\n").as_bytes());
    assert!(last(&mut c, "g1").starts_with("g1 NO [AUTHENTICATIONFAILED]"));
    assert!(last(&mut c, "g2").starts_with("g2 NO [UNAVAILABLE]"), "{}", i.imap_log());
    let log = i.imap_log();
    assert_eq!(log.matches("authentication failed for").count(), 4, "{log}");
}

/// Issue 12: the delay itself (the other tests run with authfaildelay 0).
#[test]
fn failed_logins_wait_longer_each_time_and_unknown_users_wait_the_same() {
    let i = Instance::create_imap("imapdelay");
    fs::remove_file(i.path().join("control/servercert.pem")).unwrap();
    fs::remove_file(i.path().join("control/serverkey.pem")).unwrap();
    i.control("authfaildelay", "1\n");
    i.adduser("gwen", "right");
    i.start();
    let mut c = Client::connect(i.imap_port());
    c.line();
    let t = Instant::now();
    c.send(format!("d1 LOGIN {} wrong\r\n", i.address("gwen")).as_bytes());
    let bad = last(&mut c, "d1");
    let d1 = t.elapsed();
    let t = Instant::now();
    c.send(format!("d2 LOGIN {} wrong\r\n", i.address("nobody")).as_bytes());
    let unknown = last(&mut c, "d2");
    let d2 = t.elapsed();
    assert_eq!(bad, "d1 NO [AUTHENTICATIONFAILED] authentication failed");
    assert_eq!(unknown.replace("d2", "d1"), bad, "the same answer whether or not the user exists");
    // authfaildelay 1: a second after the first failure, two after the second.
    assert!(d1 >= Duration::from_secs(1) && d2 >= Duration::from_secs(2), "{d1:?} {d2:?}");
    // The right password still works in the same session.
    c.send(format!("d3 LOGIN {} right\r\n", i.address("gwen")).as_bytes());
    assert!(last(&mut c, "d3").starts_with("d3 OK"));
}

#[test]
fn bad_input_after_login_is_answered_and_the_session_goes_on() {
    let i = plain_instance("imapbadsess");
    i.deliver("carol", &[message("a", "one"), message("b", "two")]);
    // Pipelined, the login too (what follows it stays in the socket for
    // imapd): answered in order.
    let mut c = Client::connect(i.imap_port());
    assert!(c.line().starts_with("* OK "));
    c.send(
        format!("l LOGIN {} pw-c\r\np1 NOOP\r\np2 SELECT INBOX\r\np3 FETCH 1:2 (FLAGS)\r\np4 UID SEARCH ALL\r\n", i.address("carol"))
            .as_bytes(),
    );
    assert!(last(&mut c, "l").starts_with("l OK "));
    assert!(last(&mut c, "p1").starts_with("p1 OK"));
    let sel = until(&mut c, "p2");
    assert!(sel.contains(&"* 2 EXISTS".to_string()) && sel.last().unwrap().starts_with("p2 OK [READ-WRITE]"), "{sel:?}");
    assert_eq!(until(&mut c, "p3").len(), 3);
    assert!(last(&mut c, "p4").starts_with("p4 OK"));
    // A literal too big for APPEND, then the next command.
    c.send(b"b1 APPEND INBOX {999999999}\r\nb2 NOOP\r\n");
    assert!(last(&mut c, "b1").starts_with("b1 NO [TOOBIG]"));
    assert!(last(&mut c, "b2").starts_with("b2 OK"));
    // Deep nesting and unbalanced parentheses in SEARCH and FETCH.
    c.send(
        format!("b3 SEARCH {}ALL{}\r\nb4 FETCH 1 (FLAGS\r\nb5 FETCH 9 FLAGS\r\nb6 FETCH 1 BODY[1.0]\r\n", "(".repeat(40), ")".repeat(40))
            .as_bytes(),
    );
    assert!(last(&mut c, "b3").starts_with("b3 BAD parentheses nested too deep"));
    assert!(last(&mut c, "b4").starts_with("b4 BAD unbalanced"));
    assert!(last(&mut c, "b5").starts_with("b5 BAD message sequence number"));
    assert!(last(&mut c, "b6").starts_with("b6 BAD bad section"));
    // A very long line.
    let mut long = b"b7 SEARCH SUBJECT ".to_vec();
    long.extend(std::iter::repeat_n(b'z', 70_000));
    long.extend_from_slice(b"\r\nb8 NOOP\r\n");
    c.send(&long);
    assert!(last(&mut c, "b7").starts_with("b7 BAD line too long"));
    assert!(last(&mut c, "b8").starts_with("b8 OK"));
    // Folder names that must not become paths.
    c.send(b"n1 CREATE \"a..b\"\r\nn2 CREATE \"../escape\"\r\nn3 CREATE \"a/b\"\r\nn4 CREATE {3}\r\n");
    for t in ["n1", "n2", "n3"] {
        let l = last(&mut c, t);
        assert!(l.starts_with(&format!("{t} NO ")), "{l}");
    }
    assert_eq!(c.line(), "+ OK");
    c.send(b"a\0b\r\nn5 CREATE \"&Jjo\"\r\nn6 SELECT \"../../etc\"\r\n");
    for t in ["n4", "n5", "n6"] {
        let l = last(&mut c, t);
        assert!(l.starts_with(&format!("{t} NO ")), "{l}");
    }
    let home = i.user_home("carol");
    let mut names: Vec<String> = fs::read_dir(i.maildir("carol")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(names.iter().all(|n| !n.contains("escape") && !n.contains('/') && !n.contains('\0')), "{names:?}");
    assert!(!home.join("escape").exists() && !home.parent().unwrap().join("escape").exists());
    c.send(b"z LOGOUT\r\n");
    assert!(last(&mut c, "z").starts_with("z OK"));
}

#[test]
fn a_broken_file_and_a_missing_uid_list_still_select() {
    let i = plain_instance("imapbadmbox");
    i.deliver("carol", &[message("a", "one"), message("b", "two")]);
    let mut c = login(&i);
    c.send(b"s SELECT INBOX\r\n");
    let sel = until(&mut c, "s");
    let validity = sel.iter().find(|l| l.contains("UIDVALIDITY")).unwrap().clone();
    c.send(b"u UID SEARCH ALL\r\n");
    let uids = until(&mut c, "u")[0].clone();
    c.send(b"z LOGOUT\r\n");
    until(&mut c, "z");
    let md = i.maildir("carol");
    // Not a message: a directory and an empty file with odd names in cur/; and
    // the UID list gone.
    fs::create_dir(md.join("cur/not-a-message")).unwrap();
    fs::write(md.join("cur/empty:2,S"), b"").unwrap();
    fs::remove_file(md.join(postern::imap::uidlist::LIST_FILE)).unwrap();
    let mut c = login(&i);
    c.send(b"s SELECT INBOX\r\nf FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n");
    let sel = until(&mut c, "s");
    assert!(sel.last().unwrap().starts_with("s OK"), "{sel:?}\n{}", i.imap_log());
    let newv = sel.iter().find(|l| l.contains("UIDVALIDITY")).unwrap().clone();
    let f = until(&mut c, "f");
    c.send(b"u UID SEARCH ALL\r\n");
    let new_uids = until(&mut c, "u")[0].clone();
    // RFC 9051 2.3.1.1: the same UIDs, or a new UIDVALIDITY.
    assert!(newv != validity || new_uids == uids, "{validity} {uids} / {newv} {new_uids}");
    assert!(md.join(postern::imap::uidlist::LIST_FILE).is_file(), "the UID list is written again");
    assert!(f.last().unwrap().starts_with("f OK"), "{f:?}");
    assert!(f.iter().any(|l| l.contains("Subject: a")) && f.iter().any(|l| l.contains("Subject: b")), "{f:?}");
    c.send(b"z LOGOUT\r\n");
    until(&mut c, "z");
}

/// The extensions real clients lean on, over the raw client: ENABLE
/// IMAP4rev2 (ESEARCH answers), NAMESPACE, LIST-EXTENDED with LIST-STATUS and
/// SPECIAL-USE, LSUB, EXAMINE, UID EXPUNGE, APPEND with a date, UNSELECT, CLOSE.
#[test]
fn extensions_answer_as_their_rfcs_say() {
    let i = plain_instance("imapext");
    i.deliver("carol", &[message("a", "one"), message("b", "two"), message("c", "three")]);
    let mut c = login(&i);
    c.send(b"e1 ENABLE IMAP4rev2 CONDSTORE\r\ne2 NAMESPACE\r\ne3 ID NIL\r\n");
    assert_eq!(until(&mut c, "e1"), vec!["* ENABLED IMAP4rev2 CONDSTORE", "e1 OK ENABLE completed"]);
    assert_eq!(until(&mut c, "e2")[0], "* NAMESPACE ((\"\" \".\")) NIL NIL");
    assert!(until(&mut c, "e3")[0].starts_with("* ID (\"name\" \"postern\")"));
    c.send(b"l1 LIST (SPECIAL-USE) \"\" \"*\" RETURN (STATUS (MESSAGES UIDNEXT))\r\n");
    let l = until(&mut c, "l1");
    assert!(l.iter().any(|x| x.starts_with("* LIST (") && x.contains("\\Trash") && x.ends_with("\"Trash\"")), "{l:?}");
    assert!(!l.iter().any(|x| x.ends_with("\"INBOX\"")), "INBOX has no special use: {l:?}");
    assert!(l.iter().any(|x| x == "* STATUS \"Trash\" (MESSAGES 0 UIDNEXT 1)"), "{l:?}");
    c.send(b"l2 LIST \"\" \"%\" RETURN (SUBSCRIBED CHILDREN)\r\nl3 LSUB \"\" \"*\"\r\nl4 STATUS INBOX (MESSAGES UNSEEN SIZE)\r\n");
    let l = until(&mut c, "l2");
    assert!(l.iter().any(|x| x.contains("\\Subscribed") && x.ends_with("\"Sent\"")), "{l:?}");
    let l = until(&mut c, "l3");
    assert!(l.iter().any(|x| x.starts_with("* LSUB") && x.ends_with("\"Drafts\"")), "{l:?}");
    let l = until(&mut c, "l4");
    assert!(l[0].starts_with("* STATUS \"INBOX\" (MESSAGES 3 UNSEEN 3 SIZE "), "{l:?}");
    // EXAMINE is read-only; IMAP4rev2's SEARCH answers ESEARCH.
    c.send(b"x1 EXAMINE INBOX\r\nx2 STORE 1 +FLAGS (\\Seen)\r\nx3 UID SEARCH RETURN (MIN MAX COUNT) ALL\r\nx4 SEARCH UNSEEN\r\nx5 UNSELECT\r\nx6 FETCH 1 FLAGS\r\n");
    assert!(last(&mut c, "x1").starts_with("x1 OK [READ-ONLY]"));
    assert!(last(&mut c, "x2").starts_with("x2 NO "));
    let l = until(&mut c, "x3");
    assert!(l[0].starts_with("* ESEARCH (TAG \"x3\") UID MIN ") && l[0].ends_with(" COUNT 3"), "{l:?}");
    let l = until(&mut c, "x4");
    assert_eq!(l[0], "* ESEARCH (TAG \"x4\") ALL 1:3", "{l:?}");
    assert!(last(&mut c, "x5").starts_with("x5 OK"));
    assert!(last(&mut c, "x6").starts_with("x6 BAD no mailbox selected"));
    // APPEND with flags and a date, by a synchronizing literal.
    c.send(b"a1 APPEND INBOX (\\Flagged) \" 1-Feb-1994 21:52:25 -0800\" {20}\r\n");
    assert_eq!(c.line(), "+ OK");
    c.send(b"Subject: d\r\n\r\nfour\r\n\r\n"); // 20 octets, then the line end
    let a = last(&mut c, "a1");
    assert!(a.starts_with("a1 OK [APPENDUID "), "{a}");
    let uid = a.split(' ').nth(4).unwrap().trim_end_matches(']').to_string();
    c.send(format!("s1 SELECT INBOX\r\nf1 UID FETCH {uid} (FLAGS INTERNALDATE RFC822.SIZE)\r\n").as_bytes());
    assert!(until(&mut c, "s1").contains(&"* 4 EXISTS".to_string()));
    let f = until(&mut c, "f1");
    assert!(f[0].contains("\\Flagged"), "{f:?}");
    // The date given, in its own zone or as the same instant in UTC.
    assert!(
        f[0].contains("INTERNALDATE \"01-Feb-1994 21:52:25 -0800\"") || f[0].contains("INTERNALDATE \"02-Feb-1994 05:52:25 +0000\""),
        "{f:?}"
    );
    assert!(f[0].contains("RFC822.SIZE 20"), "{f:?}");
    // UID EXPUNGE removes only the named \Deleted message; CLOSE the rest.
    c.send(b"d1 STORE 1:2 +FLAGS.SILENT (\\Deleted)\r\nd2 UID SEARCH DELETED\r\n");
    // .SILENT: no FLAGS; CONDSTORE is on (e1), so the new MODSEQ still comes (RFC 7162 §3.1.3).
    let d1 = until(&mut c, "d1");
    assert_eq!(d1.len(), 3, "{d1:?}");
    assert!(d1[..2].iter().all(|l| l.contains(" FETCH (MODSEQ (") && !l.contains("FLAGS")), "{d1:?}");
    let l = until(&mut c, "d2");
    let deleted: Vec<String> = l[0].rsplit(' ').next().unwrap().split(':').map(str::to_string).collect();
    c.send(format!("d3 UID EXPUNGE {}\r\nd4 CLOSE\r\nd5 STATUS INBOX (MESSAGES)\r\n", deleted[0]).as_bytes());
    assert_eq!(until(&mut c, "d3"), vec!["* 1 EXPUNGE".to_string(), "d3 OK EXPUNGE completed".to_string()]);
    assert!(last(&mut c, "d4").starts_with("d4 OK CLOSE"));
    assert_eq!(until(&mut c, "d5")[0], "* STATUS \"INBOX\" (MESSAGES 2)");
}

/// Subscriptions outlive folders, and RECURSIVEMATCH reports subscribed
/// children the pattern leaves out (RFC 5258 sections 3 and 5).
#[test]
fn subscribed_names_without_folders_and_childinfo() {
    let i = plain_instance("imapsubs");
    let mut c = login(&i);
    c.send(b"c1 CREATE Work.Projects\r\nc2 SUBSCRIBE Work.Projects\r\nc3 SUBSCRIBE Gone\r\n");
    for t in ["c1", "c2", "c3"] {
        assert!(last(&mut c, t).starts_with(&format!("{t} OK")));
    }
    c.send(b"l1 LIST \"\" \"*\"\r\n");
    let l = until(&mut c, "l1");
    assert!(!l.iter().any(|x| x.contains("Gone")), "plain LIST shows no phantom: {l:?}");
    assert!(l.iter().any(|x| x.ends_with("\"Work\"")), "{l:?}");
    c.send(b"l2 LIST (SUBSCRIBED) \"\" \"*\"\r\n");
    let l = until(&mut c, "l2");
    let gone = l.iter().find(|x| x.ends_with("\"Gone\"")).unwrap_or_else(|| panic!("{l:?}"));
    assert!(gone.contains("\\NonExistent") && gone.contains("\\Subscribed"), "{gone}");
    assert!(l.iter().any(|x| x.ends_with("\"Work.Projects\"") && x.contains("\\Subscribed")), "{l:?}");
    assert!(!l.iter().any(|x| x.ends_with("\"Work\"")), "Work is not subscribed: {l:?}");
    c.send(b"l3 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"\r\n");
    let l = until(&mut c, "l3");
    // Work exists only as the parent level (Maildir++ needs no folder for it).
    assert!(
        l.contains(&"* LIST (\\NonExistent \\Noselect \\HasChildren) \".\" \"Work\" (\"CHILDINFO\" (\"SUBSCRIBED\"))".to_string()),
        "{l:?}"
    );
    assert!(!l.iter().any(|x| x.contains("Work.Projects")), "{l:?}");
    c.send(b"l4 LSUB \"\" \"*\"\r\n");
    let l = until(&mut c, "l4");
    assert!(l.contains(&"* LSUB (\\Noselect) \".\" \"Gone\"".to_string()), "{l:?}");
    // SELECT of the phantom fails; the session goes on.
    c.send(b"s1 SELECT Gone\r\nn1 NOOP\r\n");
    assert!(last(&mut c, "s1").starts_with("s1 NO"));
    assert!(last(&mut c, "n1").starts_with("n1 OK"));
}
