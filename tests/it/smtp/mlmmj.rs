//! A real mailing-list manager on an instance: mlmmj hooked in with dot-qmail
//! program lines, sending its mail back through postern-smtpd.

use super::*;
use std::os::unix::fs::MetadataExt;

fn send(port: u16, from: &str, to: &str, msg: &str) {
    let mut c = Client::smtp(port);
    c.expect("EHLO list.test", 250);
    c.expect(&format!("MAIL FROM:<{from}>"), 250);
    c.expect(&format!("RCPT TO:<{to}>"), 250);
    c.expect("DATA", 354);
    c.send(&crlf(format!("{msg}.\n").as_bytes()));
    assert_eq!(c.reply().0, 250);
    c.expect("QUIT", 221);
}

#[test]
fn mlmmj_takes_a_subscription_and_fans_out_a_post() {
    let i = Instance::create("mlmmj");
    i.allow_relay();
    let list_md = i.adduser("list", "x");
    let subs: Vec<PathBuf> = ["s1", "s2", "s3"].iter().map(|s| i.adduser(s, "x")).collect();
    let list_home = i.user_home("list");
    let spool = i.path().join("mlmmj");
    fs::create_dir_all(&spool).unwrap();
    let out = run_with_input(
        Command::new("/usr/bin/mlmmj-make-ml").args(["-L", "list", "-s", spool.to_str().unwrap()]),
        format!("{}\npostmaster@{}\n\n", i.domain, i.domain).as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let ml = spool.join("list");
    for (f, v) in [("delimiter", "-"), ("relayhost", "127.0.0.1")] {
        fs::write(ml.join("control").join(f), format!("{v}\n")).unwrap();
    }
    let receive = format!("|/usr/bin/mlmmj-receive -F -L {}", ml.display());
    i.dot_file("list", ".qmail", &format!("{receive}\n"));
    i.dot_file("list", ".qmail-default", &format!("{receive}\n"));
    i.start();
    // mlmmj reads its control files when it runs: the port can come after the start.
    let port = i.smtp_port();
    fs::write(ml.join("control/smtpport"), format!("{port}\n")).unwrap();
    if is_root() {
        let m = fs::metadata(&list_home).unwrap();
        let st = Command::new("chown").args(["-R", &format!("{}:{}", m.uid(), m.gid())]).arg(&ml).status().unwrap();
        assert!(st.success());
    }

    // s1 subscribes by mail and confirms.
    let s1 = i.address("s1");
    send(port, &s1, &i.address("list-subscribe"), &format!("From: {s1}\nTo: {}\nSubject: subscribe\n\n", i.address("list-subscribe")));
    let confirm = i.wait_mail(&subs[0], 1);
    let text0 = String::from_utf8_lossy(&confirm[0]).into_owned();
    let confsub = text0
        .split(|c: char| c.is_whitespace() || c == '<' || c == '>')
        .find(|w| w.starts_with("list-confsub-"))
        .unwrap_or_else(|| panic!("no confirmation address in:\n{text0}\nsmtp log:\n{}\nsend log:\n{}", i.smtp_log(), i.send_log()))
        .to_string();
    send(port, &s1, &confsub, &format!("From: {s1}\nTo: {confsub}\nSubject: Re: confirm\n\n"));
    let two = i.wait_mail(&subs[0], 2);
    assert!(two.iter().any(|m| String::from_utf8_lossy(m).to_lowercase().contains("welcome")), "no welcome message for s1");
    let subscribed =
        fs::read_dir(ml.join("subscribers.d")).unwrap().map(|e| fs::read_to_string(e.unwrap().path()).unwrap()).collect::<String>();
    assert!(subscribed.contains(&s1), "{subscribed}");

    // Two more subscribers, added by the list owner without confirmation.
    for s in ["s2", "s3"] {
        let out =
            Command::new("/usr/bin/mlmmj-sub").args(["-L", ml.to_str().unwrap(), "-a", &i.address(s), "-f", "-q", "-s"]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }

    // A post fans out to all three through postern-smtpd.
    send(port, &s1, &i.address("list"), &format!("From: {s1}\nTo: {}\nSubject: hello list\n\nA post for everyone.\n", i.address("list")));
    for (n, md) in subs.iter().enumerate() {
        // Maildir names do not sort by time: find the post among the messages.
        let got = i.wait_mail(md, if n == 0 { 3 } else { 1 });
        let post =
            got.iter().map(|m| String::from_utf8_lossy(m).into_owned()).find(|m| m.contains("Subject: hello list")).unwrap_or_default();
        assert!(post.contains("Subject: hello list") && post.contains("A post for everyone."), "{post}");
        assert!(post.contains("(postern-smtpd)"), "the post came back through SMTP:\n{post}");
    }
    assert!(maildir_new(&list_md).is_empty(), "the list's own mailbox is not used");
}
