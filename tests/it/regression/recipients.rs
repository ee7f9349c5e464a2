//! Issue 15 regression tests: recipients.

use super::*;

/// An SMTP session up to MAIL FROM, from a client the rules do not let relay.
fn smtp_session(i: &Instance) -> Client {
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<someone@sender.test>", 250);
    c
}

/// Send one message in an open session whose recipients were accepted.
fn smtp_data(c: &mut Client, subject: &str) {
    c.expect("DATA", 354);
    c.send(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").as_bytes());
    assert_eq!(c.reply().0, 250);
}

/// An extension address of a virtual user (whose home postern-smtpd, as the
/// network user, cannot read) is accepted only when a dot file would take it,
/// as users/cdb recorded at the last `postern-admin rebuild`; it used to get 250
/// and then bounce to a possibly forged sender (backscatter).
#[test]
fn issue15_extension_addresses_of_virtual_users_need_their_dot_file() {
    let i = Instance::create("i15-vext");
    let md = i.adduser("alice", "x");
    // dot_file runs `postern-admin rebuild` after writing, as the admin must.
    i.dot_file("alice", ".qmail-lists", "./Maildir/\n");
    i.start();
    let mut c = smtp_session(&i);
    let t = c.expect(&format!("RCPT TO:<alice-anything@{}>", i.domain), 550);
    assert!(t.starts_with("5.1.1"), "{t}");
    c.expect(&format!("RCPT TO:<Alice-Lists@{}>", i.domain), 250);
    c.expect(&format!("RCPT TO:<alice@{}>", i.domain), 250);
    smtp_data(&mut c, "to lists");
    c.expect("QUIT", 221);
    assert_eq!(i.wait_mail(&md, 2).len(), 2, "both copies delivered");

    // A catch-all takes every extension.
    i.dot_file("alice", ".qmail-default", "./Maildir/\n");
    let mut c = smtp_session(&i);
    c.expect(&format!("RCPT TO:<alice-anything@{}>", i.domain), 250);
    c.expect(&format!("RCPT TO:<bob-anything@{}>", i.domain), 550);
    smtp_data(&mut c, "to anything");
    assert_eq!(i.wait_mail(&md, 3).len(), 3);
    i.wait_empty();
}

/// The same for a Unix user's ~/.qmail-foo behind a home of mode 0700.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn issue15_extension_addresses_of_unix_users_need_their_dot_file() {
    require_root();
    let u = UnixUser::new("15x", false);
    let md = u.maildir();
    u.file(".qmail-foo", "./Maildir/\n");
    let i = Instance::create("i15-uext");
    let out = i.run("postern-admin", &["rebuild"], b"");
    assert!(out.status.success(), "{}", text(&out));
    i.start();
    let mut c = smtp_session(&i);
    let t = c.expect(&format!("RCPT TO:<{}-bar@localhost>", u.name), 550);
    assert!(t.starts_with("5.1.1"), "{t}");
    c.expect(&format!("RCPT TO:<{}-foo@localhost>", u.name), 250);
    c.expect(&format!("RCPT TO:<{}@localhost>", u.name), 250);
    smtp_data(&mut c, "to foo");
    c.expect("QUIT", 221);
    let got = i.wait_mail(&md, 2);
    let text = String::from_utf8_lossy(&got.concat()).into_owned();
    assert!(text.contains(&format!("Delivered-To: {}-foo@localhost", u.name)), "{text}");
    i.wait_empty();
}

/// postmaster, bare (RFC 5321 4.5.1) and at every local and virtual domain, in
/// any case, goes to control/postmaster; it used to get 550.
#[test]
fn issue15_postmaster_is_accepted_everywhere_and_delivered() {
    let i = Instance::create("i15-pm");
    let md = i.adduser("admin", "x");
    i.control("postmaster", &format!("{}\n", i.address("admin")));
    i.start();
    let mut c = smtp_session(&i);
    for pm in ["postmaster".to_string(), "PostMaster@LOCALHOST".into(), format!("POSTMASTER@{}", i.domain)] {
        let t = c.expect(&format!("RCPT TO:<{pm}>"), 250);
        assert!(t.starts_with("2.1.5"), "{pm}: {t}");
    }
    c.expect("RCPT TO:<postmaster@elsewhere.test>", 554);
    smtp_data(&mut c, "to postmaster");
    c.expect("QUIT", 221);
    let got = String::from_utf8_lossy(&i.wait_mail(&md, 1)[0]).into_owned();
    assert!(got.contains("Subject: to postmaster"), "{got}");
    i.wait_empty();
    assert_eq!(maildir_new(&md).len(), 3, "one copy per recipient, as qmail delivers");
}

/// A double bounce goes to doublebounceto (default postmaster@me), which
/// control/postmaster turns into a real mailbox; it used to fail there and be
/// discarded as a triple bounce.
#[test]
fn issue15_double_bounces_reach_the_postmaster() {
    let i = Instance::create("i15-double");
    let md = i.adduser("admin", "x");
    i.control("postmaster", &format!("{}\n", i.address("admin")));
    i.start();
    let out = i.run("postern-inject", &["-f", "", &i.address("ghost")], &message("from nobody", "x"));
    assert!(out.status.success(), "{}", text(&out));
    let got = String::from_utf8_lossy(&i.wait_mail(&md, 1)[0]).into_owned();
    assert!(got.starts_with("Return-Path: <#@[]>\n"), "{got}");
    assert!(got.contains(&format!("Final-Recipient: rfc822; {}", i.address("ghost"))), "{got}");
    i.wait_empty();
    assert!(!i.send_log().contains("triple bounce"), "{}", i.send_log());
}

/// System accounts (uid below control/minuid, default 1000) get no mail by login
/// name: RCPT is refused instead of queueing mail nobody reads. They used to
/// get 250 from anyone.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn issue15_system_accounts_get_no_mail_by_login_name() {
    require_root();
    let sys = UnixUser::new("15s", true);
    assert!(sys.uid < 1000, "a system account: {}", sys.uid);
    let person = UnixUser::new("15p", false);
    let i = Instance::create("i15-sys");
    i.start();
    let mut c = smtp_session(&i);
    let t = c.expect(&format!("RCPT TO:<{}@localhost>", sys.name), 550);
    assert!(t.starts_with("5.1.1"), "{t}");
    c.expect(&format!("RCPT TO:<{}@localhost>", person.name), 250);
    c.expect("QUIT", 221);
    // The admin may lower the limit.
    i.control("minuid", &format!("{}\n", sys.uid));
    let mut c = smtp_session(&i);
    c.expect(&format!("RCPT TO:<{}@localhost>", sys.name), 250);
    c.expect("QUIT", 221);
}
