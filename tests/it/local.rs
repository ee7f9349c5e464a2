//! postern-local run directly, as postern-lspawn runs it: a fake user's home
//! inside a test home, the message on fd 0 as a real (seekable) file.

use crate::harness::*;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const SENDER: &str = "s@sender.example";

/// A test home with one user directory `u/` holding an empty Maildir.
pub struct User {
    pub home: Home,
    pub dir: PathBuf,
}

static MSG: AtomicUsize = AtomicUsize::new(0);

impl User {
    pub fn new(tag: &str) -> User {
        let home = Home::new(tag);
        let dir = home.join("u");
        make_maildir(&dir.join("Maildir"));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        User { home, dir }
    }

    /// Write a dot file (".qmail", ".qmail-foo", ...).
    pub fn dot(&self, name: &str, content: &str) -> &User {
        let p = self.dir.join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        self
    }

    /// The path of one of the suite's programs, for dot-file lines.
    pub fn bin(&self, program: &str) -> String {
        self.home.join("bin").join(program).display().to_string()
    }

    /// A file holding `bytes`, opened for reading (seekable, like lspawn's memfd).
    pub fn message_file(&self, bytes: &[u8]) -> File {
        let p = self.home.join(&format!("msg-{}", MSG.fetch_add(1, Ordering::SeqCst)));
        fs::write(&p, bytes).unwrap();
        File::open(p).unwrap()
    }

    /// Run postern-local for LOCAL = "u" or "u-EXT" at test.example.
    pub fn deliver_from(&self, ext: &str, sender: &str, msg: &[u8]) -> Output {
        let (local, dash) = if ext.is_empty() { ("u".to_string(), "") } else { (format!("u-{ext}"), "-") };
        let dir = self.dir.display().to_string();
        self.home
            .cmd("postern-local")
            .args(["u", &dir, &local, dash, ext, "test.example", sender, "./Maildir/"])
            .stdin(Stdio::from(self.message_file(msg)))
            .output()
            .unwrap()
    }

    pub fn deliver(&self, ext: &str, msg: &[u8]) -> Output {
        self.deliver_from(ext, SENDER, msg)
    }

    pub fn maildir(&self) -> Vec<Vec<u8>> {
        maildir_new(&self.dir.join("Maildir"))
    }

    pub fn read(&self, name: &str) -> String {
        String::from_utf8(fs::read(self.dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))).unwrap()
    }

    /// Queue files in queue/new, opened.
    pub fn queued(&self) -> Vec<postern::queue::QueueFile> {
        let mut v: Vec<_> = fs::read_dir(self.home.join("queue/new")).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v.iter().map(|p| postern::queue::QueueFile::open(p, false).unwrap()).collect()
    }
}

/// What a Maildir or mbox copy starts with.
pub fn prefix(local: &str) -> String {
    format!("Return-Path: <{SENDER}>\nDelivered-To: {local}@test.example\n")
}

pub const MSG1: &[u8] = b"From: a@b.example\nTo: u@test.example\nSubject: hi\n\nhello\nFrom the start\n";

pub fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn env_map(text: &str) -> std::collections::HashMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn default_delivery_to_maildir() {
    let u = User::new("local-default");
    let o = u.deliver("", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert!(out(&o).starts_with("2.0.0 "), "{}", text(&o));
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
    let u = User::new("local-nomaildir");
    u.dot(".qmail", "./Nowhere/\n");
    let o = u.deliver("", MSG1);
    assert_eq!(code(&o), Some(111), "{}", text(&o));
    assert!(out(&o).contains("Nowhere") && out(&o).contains("maildirmake"), "{}", text(&o));
}

#[test]
fn maildir_mbox_and_program_lines() {
    let u = User::new("local-lines");
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
    let u = User::new("local-ext");
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
    let u = User::new("local-noext");
    u.dot(".qmail", "./Maildir/\n");
    let o = u.deliver("nosuch", MSG1);
    assert_eq!(code(&o), Some(100), "{}", text(&o));
    assert!(out(&o).starts_with("5.1.1 Sorry, no mailbox here by that name."), "{}", text(&o));
    assert!(u.maildir().is_empty());
}

#[test]
fn program_exit_codes() {
    let u = User::new("local-codes");
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
    assert_eq!(out(&o).trim(), "5.7.1 not wanted");
    let o = u.deliver("e111", MSG1);
    assert_eq!(code(&o), Some(111), "{}", text(&o));
    assert!(out(&o).starts_with("4.3.0 "), "{}", text(&o));
    assert_eq!(code(&u.deliver("e3", MSG1)), Some(111));
    // sendmail's EX_NOPERM: permanent, as in qmail-command(8).
    assert_eq!(code(&u.deliver("e77", MSG1)), Some(100));
    let o = u.deliver("kill", MSG1);
    assert_eq!(code(&o), Some(111), "{}", text(&o));
    assert!(out(&o).contains("signal 9"), "{}", text(&o));
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
    let u = User::new("local-timeout");
    u.home.control("timeoutdelivery", "1\n");
    u.dot(".qmail", "|sleep 100 & echo $! > bg.pid; sleep 100\n./Maildir/\n");
    let t = Instant::now();
    let o = u.deliver("", MSG1);
    assert_eq!(code(&o), Some(111), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    assert!(out(&o).contains("timeoutdelivery"), "{}", text(&o));
    let pid: i32 = u.read("bg.pid").trim().parse().unwrap();
    wait_for(5, "the background sleep to die", || (!alive(pid)).then_some(()));
    assert!(u.maildir().is_empty());
}

#[test]
fn looping_message_bounces() {
    let u = User::new("local-loop");
    let msg = b"Delivered-To: other@test.example\ndelivered-to: U@Test.Example\nSubject: x\n\nbody\n";
    let o = u.deliver("", msg);
    assert_eq!(code(&o), Some(100), "{}", text(&o));
    assert!(out(&o).starts_with("5.4.6 This message is looping"), "{}", text(&o));
    assert!(u.maildir().is_empty());
    // The same line in the body is no loop.
    let msg = b"Subject: x\n\nDelivered-To: u@test.example\n";
    assert_eq!(code(&u.deliver("", msg)), Some(0));
}

#[test]
fn forward_lines_queue_one_copy() {
    let u = User::new("local-forward");
    u.dot(".qmail-fw", "&bob@elsewhere.example\ncarol@x.example\n./Maildir/\n");
    let o = u.deliver("fw", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert!(out(&o).contains("forwarded to bob@elsewhere.example, carol@x.example"), "{}", text(&o));
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
    let u = User::new("local-owner");
    u.dot(".qmail-list", "&member@x.example\n");
    u.dot(".qmail-list-owner", "&admin@x.example\n");
    let o = u.deliver("list", MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.queued()[0].sender.as_str(), "u-list-owner@test.example");
}

#[test]
fn concurrent_mbox_appends_keep_every_message_once() {
    let u = User::new("local-mboxrace");
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
    let u = User::new("local-discard");
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
    let u = User::new("local-pipe");
    u.dot(".qmail", "./Maildir/\n|cat > a.out\n");
    let dir = u.dir.display().to_string();
    let o = u.home.run("postern-local", &["u", &dir, "u", "", "", "test.example", "", "./Maildir/"], MSG1);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(u.maildir()[0], [b"Return-Path: <>\nDelivered-To: u@test.example\n".as_slice(), MSG1].concat());
    assert_eq!(u.read("a.out").as_bytes(), MSG1);
}

#[test]
fn wrong_arguments_are_temporary() {
    let u = User::new("local-usage");
    let o = u.home.run("postern-local", &["u"], MSG1);
    assert_eq!(code(&o), Some(111), "{}", text(&o));
    assert!(out(&o).contains("usage"), "{}", text(&o));
}

#[allow(dead_code)]
pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
