//! postern-local run directly, as postern-lspawn runs it (fixture::LocalUser):
//! dot-qmail files, the environment, exit codes, mbox, forwards.

use crate::fixture::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn env_map(text: &str) -> std::collections::HashMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn default_delivery_to_maildir() {
    let u = LocalUser::new("local-default");
    let o = u.deliver("", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert!(stdout(&o).starts_with("2.0.0 "), "{}", text(&o));
    let got = u.maildir();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0], [prefix("u").as_bytes(), MSG1].concat());
    assert_eq!(fs::read_dir(u.dir.join("Maildir/tmp")).unwrap().count(), 0);
    // An empty .qmail also means the default delivery.
    u.dot(".qmail", "");
    assert_eq!(code(&u.deliver("", MSG1)), Some(0));
    assert_eq!(u.maildir().len(), 2);
}

#[test]
fn missing_maildir_is_temporary_and_names_it() {
    let u = LocalUser::new("local-nomaildir");
    u.dot(".qmail", "./Nowhere/\n");
    let o = u.deliver("", MSG1);
    assert_eq!(code(&o), Some(111), "{}", text(&o));
    assert!(stdout(&o).contains("Nowhere") && stdout(&o).contains("maildirmake"), "{}", text(&o));
}

#[test]
fn maildir_mbox_and_program_lines() {
    let u = LocalUser::new("local-lines");
    u.dot(".qmail", "# all three\n./Maildir/\n./mbox\n|cat > prog.out\n");
    let o = u.deliver("", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.maildir(), vec![[prefix("u").as_bytes(), MSG1].concat()]);
    let mbox = u.read("mbox");
    let (first, rest) = mbox.split_once('\n').unwrap();
    assert!(first.starts_with(&format!("From {SENDER} ")), "{mbox}");
    assert_eq!(first.split(' ').filter(|s| !s.is_empty()).count(), 7, "From_ line with asctime date: {first}");
    let quoted = String::from_utf8(MSG1.to_vec()).unwrap().replace("\nFrom the", "\n>From the");
    assert_eq!(rest, format!("{}{quoted}\n", prefix("u")));
    // Programs get the message as it came, without our prefix lines.
    assert_eq!(u.read("prog.out").as_bytes(), MSG1);
}

#[test]
fn extension_and_default_files_set_the_environment() {
    let u = LocalUser::new("local-ext");
    u.dot(".qmail-foo", "|env > foo.env\n");
    u.dot(".qmail-list-default", "|env > list.env\n");
    u.dot(".qmail-default", "|env > default.env\n");
    let o = u.deliver("Foo", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    let e = env_map(&u.read("foo.env"));
    assert_eq!(e["EXT"], "Foo");
    assert_eq!(e["LOCAL"], "u-Foo");
    assert_eq!(e["RECIPIENT"], "u-Foo@test.example");
    assert_eq!(e["SENDER"], SENDER);
    assert_eq!(e["NEWSENDER"], SENDER);
    assert_eq!(e["HOST"], "test.example");
    assert_eq!(e["HOST2"], "test");
    assert_eq!(e["USER"], "u");
    assert_eq!(e["HOME"], u.dir.display().to_string());
    assert!(!e.contains_key("DEFAULT"));

    let o = u.deliver("list-join-me", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    let e = env_map(&u.read("list.env"));
    assert_eq!(e["DEFAULT"], "join-me");
    assert_eq!(e["EXT"], "list-join-me");
    assert_eq!(e["EXT2"], "join-me");
    assert_eq!(e["EXT3"], "me");
    assert_eq!(e["EXT4"], "");

    let o = u.deliver("other", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(env_map(&u.read("default.env"))["DEFAULT"], "other");

    // DTLINE and RPLINE end with a newline, so env shows them over two lines.
    assert!(u.read("default.env").contains("DTLINE=Delivered-To: u-other@test.example\n"));
}

#[test]
fn no_file_for_an_extension_is_permanent() {
    let u = LocalUser::new("local-noext");
    u.dot(".qmail", "./Maildir/\n");
    let o = u.deliver("nosuch", MSG1);
    assert_eq!(code(&o), Some(100), "{}", text(&o));
    assert!(stdout(&o).starts_with("5.1.1 Sorry, no mailbox here by that name."), "{}", text(&o));
    assert!(u.maildir().is_empty());
}

#[test]
fn program_exit_codes() {
    let u = LocalUser::new("local-codes");
    for (ext, line) in [
        ("e0", "exit 0"),
        ("e99", "exit 99"),
        ("e100", "echo 5.7.1 not wanted; exit 100"),
        ("e111", "exit 111"),
        ("e3", "exit 3"),
        ("e77", "exit 77"),
        ("kill", "kill -9 $$"),
    ] {
        u.dot(&format!(".qmail-{ext}"), &format!("|{line}\n./Maildir/\n"));
    }
    let o = u.deliver("e0", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.maildir().len(), 1);
    // 99: success, and the rest of the file is skipped.
    let o = u.deliver("e99", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.maildir().len(), 1);
    let o = u.deliver("e100", MSG1);
    assert_eq!(code(&o), Some(100), "{}", text(&o));
    assert_eq!(stdout(&o).trim(), "5.7.1 not wanted");
    let o = u.deliver("e111", MSG1);
    assert_eq!(code(&o), Some(111), "{}", text(&o));
    assert!(stdout(&o).starts_with("4.3.0 "), "{}", text(&o));
    assert_eq!(code(&u.deliver("e3", MSG1)), Some(111));
    // sendmail's EX_NOPERM: permanent, as in qmail-command(8).
    assert_eq!(code(&u.deliver("e77", MSG1)), Some(100));
    let o = u.deliver("kill", MSG1);
    assert_eq!(code(&o), Some(111), "{}", text(&o));
    assert!(stdout(&o).contains("signal 9"), "{}", text(&o));
    assert_eq!(u.maildir().len(), 1);
}

fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie nobody reaps (pid 1 in a container may not) is dead for us.
        Ok(s) => s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

#[test]
fn hanging_program_is_killed_with_its_children() {
    let u = LocalUser::new("local-timeout");
    u.home.control("timeoutdelivery", "1\n");
    u.dot(".qmail", "|sleep 100 & echo $! > bg.pid; sleep 100\n./Maildir/\n");
    let t = Instant::now();
    let o = u.deliver("", MSG1);
    assert_eq!(code(&o), Some(111), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    assert!(stdout(&o).contains("timeoutdelivery"), "{}", text(&o));
    let pid: i32 = u.read("bg.pid").trim().parse().unwrap();
    wait_for(5, "the background sleep to die", || (!alive(pid)).then_some(()));
    assert!(u.maildir().is_empty());
}

#[test]
fn looping_message_bounces() {
    let u = LocalUser::new("local-loop");
    let msg = b"Delivered-To: other@test.example\ndelivered-to: U@Test.Example\nSubject: x\n\nbody\n";
    let o = u.deliver("", msg);
    assert_eq!(code(&o), Some(100), "{}", text(&o));
    assert!(stdout(&o).starts_with("5.4.6 This message is looping"), "{}", text(&o));
    assert!(u.maildir().is_empty());
    // The same line in the body is no loop.
    let msg = b"Subject: x\n\nDelivered-To: u@test.example\n";
    assert_eq!(code(&u.deliver("", msg)), Some(0));
}

#[test]
fn forward_lines_queue_one_copy() {
    let u = LocalUser::new("local-forward");
    u.dot(".qmail-fw", "&bob@elsewhere.example\ncarol@x.example\n./Maildir/\n");
    let o = u.deliver("fw", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert!(stdout(&o).contains("forwarded to bob@elsewhere.example, carol@x.example"), "{}", text(&o));
    assert_eq!(u.maildir().len(), 1);
    let q = u.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender.as_str(), SENDER);
    let rcpts: Vec<_> = q[0].recipients.iter().map(|r| r.address.as_str().to_string()).collect();
    assert_eq!(rcpts, vec!["bob@elsewhere.example", "carol@x.example"]);
    let m = q[0].read_message().unwrap();
    let dt = b"Delivered-To: u-fw@test.example\n";
    let at = m.windows(dt.len()).position(|w| w == dt).expect("DTLINE in the forwarded copy");
    assert_eq!(&m[at..], [&dt[..], MSG1].concat());
}

#[test]
fn owner_file_sets_newsender() {
    let u = LocalUser::new("local-owner");
    u.dot(".qmail-list", "&member@x.example\n");
    u.dot(".qmail-list-owner", "&admin@x.example\n");
    let o = u.deliver("list", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.queued()[0].sender.as_str(), "u-list-owner@test.example");
}

#[test]
fn concurrent_mbox_appends_keep_every_message_once() {
    let u = LocalUser::new("local-mboxrace");
    u.dot(".qmail", "./mbox\n");
    let dir = u.dir.display().to_string();
    let children: Vec<_> = (0..20)
        .map(|i| {
            let msg = format!("Subject: n{i}\n\nFrom the start {i}\n>From quoted {i}\nbody {i}\n{}\n", "x".repeat(i * 1000));
            u.home
                .cmd("postern-local")
                .args(["u", &dir, "u", "", "", "test.example", SENDER, "./Maildir/"])
                .stdin(Stdio::from(u.message_file(msg.as_bytes())))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(code(&o), Some(0), "{}", text(&o));
    }
    let mbox = u.read("mbox");
    let from_lines: Vec<&str> = mbox.lines().filter(|l| l.starts_with("From ")).collect();
    assert_eq!(from_lines.len(), 20, "{mbox}");
    assert!(from_lines.iter().all(|l| l.starts_with(&format!("From {SENDER} "))));
    for i in 0..20 {
        let want =
            format!("{}Subject: n{i}\n\n>From the start {i}\n>>From quoted {i}\nbody {i}\n{}\n\nFrom ", prefix("u"), "x".repeat(i * 1000));
        // Each message is followed by a blank line and the next From_ line.
        assert_eq!(format!("{mbox}From ").matches(&want).count(), 1, "message {i}");
    }
    assert!(!u.dir.join("mbox.lock").exists());
}

#[test]
fn comment_only_file_discards_and_forward_only_refuses_programs() {
    let u = LocalUser::new("local-discard");
    u.dot(".qmail-junk", "# throw it away\n");
    let o = u.deliver("junk", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert!(u.maildir().is_empty());
    u.dot(".qmail-fo", "|true\n");
    fs::set_permissions(u.dir.join(".qmail-fo"), fs::Permissions::from_mode(0o744)).unwrap();
    let o = u.deliver("fo", MSG1);
    assert_eq!(code(&o), Some(111), "{}", text(&o));
}

#[test]
fn stdin_pipe_works_too() {
    let u = LocalUser::new("local-pipe");
    u.dot(".qmail", "./Maildir/\n|cat > a.out\n");
    let dir = u.dir.display().to_string();
    let o = u.home.run("postern-local", &["u", &dir, "u", "", "", "test.example", "", "./Maildir/"], MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.maildir()[0], [b"Return-Path: <>\nDelivered-To: u@test.example\n".as_slice(), MSG1].concat());
    assert_eq!(u.read("a.out").as_bytes(), MSG1);
}

#[test]
fn wrong_arguments_are_temporary() {
    let u = LocalUser::new("local-usage");
    let o = u.home.run("postern-local", &["u"], MSG1);
    assert_eq!(code(&o), Some(111), "{}", text(&o));
    assert!(stdout(&o).contains("usage"), "{}", text(&o));
}
