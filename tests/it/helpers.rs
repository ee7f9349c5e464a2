//! The qmail helper programs, each run from a dot-file line by the real
//! postern-local, so they see exactly the environment and fd 0 they get in use.

use crate::fixture::*;

#[test]
fn forward_queues_with_dtline_and_newsender() {
    let u = LocalUser::new("helpers-forward");
    u.dot(".qmail-f", &format!("|{} bob@x.example carol@y.example\n./Maildir/\n", u.bin("postern-forward")));
    let o = u.deliver("f", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.maildir().len(), 1);
    let q = u.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender.as_str(), SENDER);
    let rcpts: Vec<_> = q[0].recipients.iter().map(|r| r.address.as_str().to_string()).collect();
    assert_eq!(rcpts, vec!["bob@x.example", "carol@y.example"]);
    let m = q[0].read_message().unwrap();
    assert!(m.ends_with(&[b"Delivered-To: u-f@test.example\n".as_slice(), MSG1].concat()), "{}", String::from_utf8_lossy(&m));
}

#[test]
fn preline_adds_the_three_lines() {
    let u = LocalUser::new("helpers-preline");
    let p = u.bin("postern-preline");
    u.dot(".qmail", &format!("|{p} /bin/sh -c 'cat > all.out'\n|{p} -fr /bin/sh -c 'cat > dt.out'\n|{p} -d -f cat\n"));
    let o = u.deliver("", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    let all = u.read("all.out");
    let (from_line, rest) = all.split_once('\n').unwrap();
    assert!(from_line.starts_with(&format!("From {SENDER} ")), "{all}");
    assert_eq!(rest.as_bytes(), [prefix("u").as_bytes(), MSG1].concat());
    assert_eq!(u.read("dt.out").as_bytes(), [b"Delivered-To: u@test.example\n".as_slice(), MSG1].concat());
    // preline passes the program's exit code on.
    u.dot(".qmail-x", &format!("|{p} /bin/sh -c 'cat >/dev/null; exit 100'\n"));
    assert_eq!(code(&u.deliver("x", MSG1)), Some(100));
}

#[test]
fn condredirect_redirects_only_on_success() {
    let u = LocalUser::new("helpers-condredirect");
    let c = u.bin("postern-condredirect");
    u.dot(".qmail", &format!("|{c} boss@x.example grep -q URGENT\n./Maildir/\n"));
    // No match: the program exits 1, condredirect 0, delivery goes on.
    let o = u.deliver("", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.maildir().len(), 1);
    assert!(u.queued().is_empty());
    // Match: forwarded (the grep read fd 0, condredirect rewound it) and 99.
    let urgent = b"Subject: URGENT\n\nnow\n";
    let o = u.deliver("", urgent);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.maildir().len(), 1, "99 skipped the Maildir line");
    let q = u.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].recipients[0].address.as_str(), "boss@x.example");
    assert!(q[0].read_message().unwrap().ends_with(&[b"Delivered-To: u@test.example\n".as_slice(), urgent].concat()));
    // 111 from the program stays temporary.
    u.dot(".qmail-t", &format!("|{c} boss@x.example /bin/sh -c 'exit 111'\n"));
    assert_eq!(code(&u.deliver("t", MSG1)), Some(111));
}

#[test]
fn bouncesaying_always_or_when_the_program_says_so() {
    let u = LocalUser::new("helpers-bounce");
    let b = u.bin("postern-bouncesaying");
    u.dot(".qmail-gone", &format!("|{b} '5.1.6 This address is no longer in use.'\n./Maildir/\n"));
    let o = u.deliver("gone", MSG1);
    assert_eq!(code(&o), Some(100), "{}", text(&o));
    assert!(stdout(&o).contains("This address is no longer in use."), "{}", text(&o));
    u.dot(".qmail", &format!("|{b} 'No spam here.' grep -q SPAM\n./Maildir/\n"));
    let o = u.deliver("", b"Subject: SPAM\n\nbuy\n");
    assert_eq!(code(&o), Some(100), "{}", text(&o));
    assert!(stdout(&o).contains("No spam here."), "{}", text(&o));
    let o = u.deliver("", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.maildir().len(), 1);
}

#[test]
fn except_inverts_success_and_bounce() {
    let u = LocalUser::new("helpers-except");
    let e = u.bin("postern-except");
    u.dot(".qmail-a", &format!("|{e} /bin/true\n./Maildir/\n"));
    u.dot(".qmail-b", &format!("|{e} /bin/sh -c 'exit 100'\n./Maildir/\n"));
    u.dot(".qmail-c", &format!("|{e} /bin/sh -c 'exit 111'\n./Maildir/\n"));
    assert_eq!(code(&u.deliver("a", MSG1)), Some(100));
    let o = u.deliver("b", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(code(&u.deliver("c", MSG1)), Some(111));
    assert_eq!(u.maildir().len(), 1);
}

fn vacation_user(tag: &str) -> LocalUser {
    let u = LocalUser::new(tag);
    std::fs::write(u.dir.join("vacation.txt"), "I am away until Monday.\n").unwrap();
    u.dot(".qmail", &format!("|{} -d vac.db vacation.txt\n./Maildir/\n", u.bin("postern-vacation")));
    u
}

const TO_ME: &[u8] =
    b"From: s@sender.example\nTo: Someone <u@test.example>\nSubject: Lunch?\nMessage-ID: <m1@sender.example>\n\nShall we?\n";

#[test]
fn vacation_answers_once_per_sender() {
    let u = vacation_user("helpers-vacation");
    let o = u.deliver("", TO_ME);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.maildir().len(), 1, "the mail itself is still delivered");
    let q = u.queued();
    assert_eq!(q.len(), 1);
    assert!(q[0].sender.is_null(), "replies go out with the null sender");
    assert_eq!(q[0].recipients[0].address.as_str(), SENDER);
    let reply = q[0].read_message().unwrap();
    assert_eq!(header(&reply, "To").as_deref(), Some(SENDER));
    assert_eq!(header(&reply, "From").as_deref(), Some("u@test.example"));
    assert_eq!(header(&reply, "Subject").as_deref(), Some("Re: Lunch?"));
    assert_eq!(header(&reply, "In-Reply-To").as_deref(), Some("<m1@sender.example>"));
    assert_eq!(header(&reply, "Auto-Submitted").as_deref(), Some("auto-replied"));
    assert_eq!(body(&reply), b"I am away until Monday.\n");
    // Same sender again within the period: no second answer.
    assert_eq!(code(&u.deliver("", TO_ME)), Some(0));
    assert_eq!(u.queued().len(), 1);
    assert_eq!(u.maildir().len(), 2);
    // Another sender is answered.
    assert_eq!(code(&u.deliver_from("", "other@sender.example", TO_ME)), Some(0));
    assert_eq!(u.queued().len(), 2);
    assert!(u.read("vac.db").contains("other@sender.example "));
}

#[test]
fn vacation_period_expires() {
    let u = vacation_user("helpers-vacation-period");
    u.dot(".qmail", &format!("|{} -p 0 -d vac.db vacation.txt\n./Maildir/\n", u.bin("postern-vacation")));
    assert_eq!(code(&u.deliver("", TO_ME)), Some(0));
    assert_eq!(code(&u.deliver("", TO_ME)), Some(0));
    assert_eq!(u.queued().len(), 2);
}

#[test]
fn vacation_never_answers_lists_robots_or_bcc() {
    let u = vacation_user("helpers-vacation-no");
    let cases: [(&str, &[u8]); 6] = [
        ("", TO_ME),
        ("MAILER-DAEMON@sender.example", TO_ME),
        (SENDER, b"To: u@test.example\nPrecedence: bulk\n\nx\n"),
        (SENDER, b"To: u@test.example\nList-Id: <l.sender.example>\n\nx\n"),
        (SENDER, b"To: u@test.example\nAuto-Submitted: auto-generated\n\nx\n"),
        (SENDER, b"To: someone-else@test.example\n\nx\n"),
    ];
    for (sender, msg) in cases {
        let o = u.deliver_from("", sender, msg);
        assert_eq!(code(&o), Some(0), "{}", text(&o));
    }
    assert!(u.queued().is_empty());
    assert_eq!(u.maildir().len(), 6);
}
