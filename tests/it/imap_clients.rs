//! Real IMAP clients against an instance: isync (mbsync) syncing both ways with
//! flag changes and moves, and fetchmail over IMAP with STARTTLS.

use crate::fixture::*;
use crate::imap::imap_instance;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of a Maildir folder's new/ and cur/, as (name, bytes), by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(rd) = fs::read_dir(dir.join(sub)) else { continue };
        for e in rd.flatten() {
            v.push((e.file_name().into_string().unwrap(), fs::read(e.path()).unwrap()));
        }
    }
    v.sort();
    v
}

fn info(name: &str) -> &str {
    name.split_once(":2,").map(|(_, f)| f).unwrap_or("")
}

struct Mbsync {
    dir: TempDir,
    rc: PathBuf,
}

impl Mbsync {
    fn new(i: &Instance, user: &str, pw: &str) -> Mbsync {
        let dir = TempDir::new("mbsync");
        let local = dir.path().join("mail");
        fs::create_dir_all(&local).unwrap();
        let rc = dir.path().join("mbsyncrc");
        fs::write(
            &rc,
            format!(
                "IMAPAccount a\nHost localhost\nPort {}\nUser {user}\nPass {pw}\nSSLType IMAPS\nCertificateFile {}\nAuthMechs LOGIN\n\n\
                 IMAPStore far\nAccount a\n\nMaildirStore near\nPath {}/\nInbox {}/INBOX\nSubFolders Verbatim\n\n\
                 Channel c\nFar :far:\nNear :near:\nPatterns *\nCreate Both\nExpunge Both\nSyncState *\n",
                i.imaps_port(),
                i.cert().display(),
                local.display(),
                local.display()
            ),
        )
        .unwrap();
        Mbsync { dir, rc }
    }

    fn run(&self, i: &Instance) {
        let o = Command::new("mbsync").args(["-c", self.rc.to_str().unwrap(), "-a"]).env("HOME", self.dir.path()).output().unwrap();
        assert!(o.status.success(), "mbsync: {}\nimap log:\n{}", text(&o), i.imap_log());
    }

    fn folder(&self, name: &str) -> PathBuf {
        self.dir.path().join("mail").join(name)
    }
}

#[test]
fn mbsync_syncs_both_ways_with_flags_and_moves() {
    let i = imap_instance("imapmbsync", &[("gina", "pw-g")]);
    let delivered = i.deliver("gina", &[message("m1", "first"), message("m2", "second"), message("m3", "third")]);
    let m = Mbsync::new(&i, &i.address("gina"), "pw-g");
    m.run(&i);
    let near = files(&m.folder("INBOX"));
    assert_eq!(near.len(), 3, "{near:?}");
    let mut got: Vec<&[u8]> = near.iter().map(|(_, b)| body(b)).collect();
    let mut want: Vec<&[u8]> = delivered.iter().map(|b| body(b)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "mbsync's copies hold the delivered bodies");
    assert!(m.folder("Trash").is_dir() && m.folder("Sent").is_dir(), "the special folders came down too");
    // Near side: flag one message, move another to Trash, then sync.
    let inbox = m.folder("INBOX");
    let find = |subj: &str| -> PathBuf {
        for sub in ["new", "cur"] {
            for e in fs::read_dir(inbox.join(sub)).unwrap().flatten() {
                if String::from_utf8_lossy(&fs::read(e.path()).unwrap()).contains(&format!("Subject: {subj}")) {
                    return e.path();
                }
            }
        }
        panic!("no {subj} near");
    };
    let p1 = find("m1");
    let base = p1.file_name().unwrap().to_string_lossy().split(":2,").next().unwrap().to_string();
    fs::rename(&p1, inbox.join("cur").join(format!("{base}:2,FS"))).unwrap();
    let p2 = find("m2");
    let trash_name = p2.file_name().unwrap().to_string_lossy().split(",U=").next().unwrap().to_string();
    fs::rename(&p2, m.folder("Trash").join("cur").join(format!("{}:2,S", trash_name.split(":2,").next().unwrap()))).unwrap();
    m.run(&i);
    let md = i.maildir("gina");
    let far: Vec<(String, Vec<u8>)> = files(&md);
    assert_eq!(far.len(), 2, "m2 left INBOX on the server: {:?}", far.iter().map(|f| &f.0).collect::<Vec<_>>());
    let flagged = far.iter().find(|(_, b)| String::from_utf8_lossy(b).contains("Subject: m1")).expect("m1 on the server");
    assert_eq!(info(&flagged.0), "FS", "flags in the server's file name: {}", flagged.0);
    let trash = files(&md.join(".Trash"));
    assert_eq!(trash.len(), 1);
    assert!(String::from_utf8_lossy(&trash[0].1).contains("Subject: m2"));
    // Far side: a new delivery comes down.
    i.deliver("gina", &[message("m4", "fourth")]);
    m.run(&i);
    let near = files(&m.folder("INBOX"));
    assert_eq!(near.len(), 3);
    assert!(near.iter().any(|(_, b)| String::from_utf8_lossy(b).contains("Subject: m4")));
}

#[test]
fn fetchmail_over_imap_starttls_gets_the_delivered_bytes_and_deletes_them() {
    let i = imap_instance("imapfm", &[("hank", "pw h")]);
    let mut delivered = i.deliver("hank", &[message("f1", "one"), message("f2", &"two\n".repeat(500))]);
    delivered.sort_by_key(|m| m.len());
    let t = TempDir::new("fetchmail");
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    let rc = t.path().join("fetchmailrc");
    fs::write(
        &rc,
        format!(
            "set invisible\npoll 127.0.0.1 service {} protocol imap user '{}' there with password 'pw h' is root here\n  sslproto tls1.2+ sslcertck sslcertfile {} sslcommonname {} fetchall no keep no rewrite\n  mda \"cat > {}/m.$$\"\n",
            i.imap_port(),
            i.address("hank"),
            i.cert().display(),
            i.domain,
            out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).unwrap();
    let o = Command::new("fetchmail")
        .args(["-f", rc.to_str().unwrap(), "--nodetach", "-v"])
        .env("HOME", t.path())
        .env("FETCHMAILHOME", t.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "fetchmail: {}\nimap log:\n{}", text(&o), i.imap_log());
    assert!(String::from_utf8_lossy(&o.stdout).contains("STARTTLS"), "{}", text(&o));
    let mut got: Vec<Vec<u8>> = fs::read_dir(&out).unwrap().map(|e| fs::read(e.unwrap().path()).unwrap()).collect();
    got.sort_by_key(|m| m.len());
    assert_eq!(got, delivered, "fetchmail's copies equal the delivered files");
    assert!(files(&i.maildir("hank")).is_empty(), "fetched and deleted (STORE \\Deleted, EXPUNGE)");
}

#[test]
fn offlineimap_syncs_mail_down_and_flags_up() {
    let i = imap_instance("imapoffl", &[("ivy", "pw-i")]);
    let delivered = i.deliver("ivy", &[message("o1", "first"), message("o2", "second")]);
    let t = TempDir::new("offlineimap");
    let rc = t.path().join("rc");
    fs::write(
        &rc,
        format!(
            "[general]\naccounts = a\nmetadata = {dir}/meta\n\n[Account a]\nlocalrepository = l\nremoterepository = r\n\n\
             [Repository l]\ntype = Maildir\nlocalfolders = {dir}/mail\n\n\
             [Repository r]\ntype = IMAP\nremotehost = localhost\nremoteport = {port}\nremoteuser = {user}\nremotepass = pw-i\nssl = yes\nsslcacertfile = {cert}\n",
            dir = t.path().display(),
            port = i.imaps_port(),
            user = i.address("ivy"),
            cert = i.cert().display()
        ),
    )
    .unwrap();
    let run = || {
        let o = Command::new("offlineimap").args(["-c", rc.to_str().unwrap(), "-o", "-u", "basic"]).env("HOME", t.path()).output().unwrap();
        assert!(
            o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("ERROR"),
            "offlineimap: {}\nimap log:\n{}",
            text(&o),
            i.imap_log()
        );
    };
    run();
    let inbox = t.path().join("mail/INBOX");
    let near = files(&inbox);
    let mut got: Vec<&[u8]> = near.iter().map(|(_, b)| body(b)).collect();
    let mut want: Vec<&[u8]> = delivered.iter().map(|b| body(b)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "offlineimap's copies hold the delivered bodies");
    assert!(t.path().join("mail/Trash").is_dir(), "folders came down");
    // Flag o1 locally (Maildir flags in the name), sync: the server's file says so.
    let (name, _) = near.iter().find(|(_, b)| String::from_utf8_lossy(b).contains("Subject: o1")).unwrap();
    let from = if inbox.join("cur").join(name).exists() { inbox.join("cur").join(name) } else { inbox.join("new").join(name) };
    let base = name.split(":2,").next().unwrap();
    fs::rename(&from, inbox.join("cur").join(format!("{base}:2,FS"))).unwrap();
    run();
    let far = files(&i.maildir("ivy"));
    let o1 = far.iter().find(|(_, b)| String::from_utf8_lossy(b).contains("Subject: o1")).expect("o1 on the server");
    assert_eq!(info(&o1.0), "FS", "{}", o1.0);
}

/// The tmux screen of session `s`.
fn screen(s: &str) -> String {
    String::from_utf8_lossy(&Command::new("tmux").args(["capture-pane", "-p", "-t", s]).output().unwrap().stdout).into_owned()
}

fn wait_screen(s: &str, what: &str) -> String {
    try_wait_for(20, || {
        let sc = screen(s);
        sc.contains(what).then_some(sc)
    })
    .unwrap_or_else(|| panic!("no {what:?} on neomutt's screen:\n{}", screen(s)))
}

fn keys(s: &str, k: &[&str]) {
    assert!(Command::new("tmux").args(["send-keys", "-t", s]).args(k).status().unwrap().success());
}

#[test]
fn neomutt_in_tmux_lists_reads_flags_moves_and_deletes() {
    let i = imap_instance("imapmutt", &[("jo", "pw-j")]);
    i.deliver("jo", &[message("alpha", "the alpha body"), message("beta", "the beta body"), message("gamma", "the gamma body")]);
    let t = TempDir::new("neomutt");
    let rc = t.path().join("muttrc");
    fs::write(
        &rc,
        format!(
            "set imap_user=\"{}\"\nset imap_pass=\"pw-j\"\nset folder=\"imaps://localhost:{}/\"\nset spoolfile=\"+INBOX\"\n\
             set certificate_file=\"{}\"\nset header_cache=\"\"\nset message_cachedir=\"\"\nset mail_check=1\nset timeout=1\n\
             set confirmappend=no\nset delete=yes\nset move=no\nset sort=date-sent\nset pager_stop=yes\nset wait_key=no\nset imap_idle=yes\n",
            i.address("jo"),
            i.imaps_port(),
            i.cert().display()
        ),
    )
    .unwrap();
    let s = format!("postern-mutt-{}", std::process::id());
    let ok = Command::new("tmux")
        .args(["new-session", "-d", "-s", &s, "-x", "160", "-y", "40"])
        .arg(format!("HOME={} TERM=xterm neomutt -n -F {}", t.path().display(), rc.display()))
        .status()
        .unwrap();
    assert!(ok.success());
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).status();
        }
    }
    let _kill = Kill(s.clone());
    // The index lists all three (messages dated alike: the order is delivery's).
    let sc = wait_screen(&s, "gamma");
    assert!(sc.contains("alpha") && sc.contains("beta"), "{sc}");
    // Read the first: the pager shows its body.
    keys(&s, &["1", "Enter"]);
    keys(&s, &["Enter"]);
    wait_screen(&s, "the alpha body");
    keys(&s, &["i"]);
    wait_screen(&s, "gamma");
    // Flag the first, move the second to Trash, delete the third; then sync.
    keys(&s, &["1", "Enter", "F"]);
    keys(&s, &["2", "Enter", "s"]);
    wait_screen(&s, "Save to mailbox");
    keys(&s, &["C-u", "=Trash", "Enter"]);
    keys(&s, &["3", "Enter", "d", "$"]);
    let md = i.maildir("jo");
    let done = try_wait_for(20, || {
        let inbox = files(&md);
        let trash = files(&md.join(".Trash"));
        (inbox.len() == 1 && trash.len() == 1).then_some((inbox, trash))
    });
    let (inbox, trash) = done.unwrap_or_else(|| {
        panic!(
            "server after neomutt: {:?} / {:?}\n{}\n{}",
            files(&md).iter().map(|f| &f.0).collect::<Vec<_>>(),
            files(&md.join(".Trash")).iter().map(|f| &f.0).collect::<Vec<_>>(),
            screen(&s),
            i.imap_log()
        )
    });
    assert!(String::from_utf8_lossy(&inbox[0].1).contains("Subject: alpha"));
    assert!(info(&inbox[0].0).contains('F') && info(&inbox[0].0).contains('S'), "flagged and read: {}", inbox[0].0);
    assert!(String::from_utf8_lossy(&trash[0].1).contains("Subject: beta"));
    keys(&s, &["q"]);
}
