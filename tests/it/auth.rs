//! postern-auth, the checkpassword program: virtual and Unix users, the identity
//! and environment it hands on, misuse, the library's client side, and popup
//! working with a checkpassword program that is not ours.

use crate::fixture::*;
use postern::auth::checkpassword;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A script that records who and where it runs: uid, gid, groups, cwd, env.
fn show_script(dir: &Path) -> PathBuf {
    let p = dir.join("show.sh");
    fs::write(
        &p,
        "#!/bin/sh\n{ id -u; id -g; id -G; pwd; echo \"HOME=$HOME\"; echo \"USER=$USER\"; echo \"SHELL=${SHELL-unset}\"; } > \"$1\"\n",
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A directory anyone may write (PROG runs as the user it logs in).
fn open_dir(tag: &str) -> TempDir {
    let t = TempDir::new(tag);
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o777)).unwrap();
    t
}

/// Run `auth PROG ARGS` with `request` on fd 3; its exit code.
fn run_auth(auth: &Path, home: &Path, request: &[u8], prog: &[&str]) -> Option<i32> {
    let mut cmd = Command::new(auth);
    cmd.args(prog).env("POSTERN_HOME", home).stdin(Stdio::null());
    let mut child = checkpassword::spawn(&mut cmd, request).unwrap();
    child.wait().unwrap().code()
}

fn admin_ok(h: &Home, args: &[&str], stdin: &[u8]) {
    let o = h.run("postern-admin", args, stdin);
    assert!(o.status.success(), "postern-admin {args:?}: {}", text(&o));
}

#[test]
fn virtual_users_right_wrong_unknown_and_what_prog_gets() {
    let h = Home::new("auth-virtual");
    let out = open_dir("auth-out");
    let show = show_script(out.path());
    // A uid other than ours when we can switch (root), else our own.
    let (uid, gid) = if is_root() { (65534u32, 65534u32) } else { (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw()) };
    let mbox = h.path().join("mail/v.test/ann");
    admin_ok(&h, &["domain", "add", "v.test"], b"");
    admin_ok(
        &h,
        &[
            "user",
            "add",
            "ann@v.test",
            "--password-stdin",
            "--uid",
            &uid.to_string(),
            "--gid",
            &gid.to_string(),
            "--home",
            mbox.to_str().unwrap(),
        ],
        b"s3cret pw\n",
    );
    // New hashes are argon2id, kept out of users/cdb, in passwd.cdb (0600).
    let virt = fs::read_to_string(h.join("users/virtual")).unwrap();
    assert!(virt.contains("ann@v.test:$argon2id$"), "{virt}");
    let hash = virt.lines().find(|l| l.starts_with("ann@")).unwrap().split(':').nth(1).unwrap().to_string();
    let cdb = fs::read(h.join("users/cdb")).unwrap();
    assert!(!cdb.windows(hash.len()).any(|w| w == hash.as_bytes()), "no hash in users/cdb");
    assert_eq!(fs::metadata(h.join("users/cdb")).unwrap().mode() & 0o777, 0o644);
    assert_eq!(fs::metadata(h.join("users/passwd.cdb")).unwrap().mode() & 0o777, 0o600);

    let auth = h.join("bin/postern-auth");
    let result = out.path().join("result");
    let prog = [show.to_str().unwrap(), result.to_str().unwrap()];
    assert_eq!(run_auth(&auth, h.path(), b"Ann@V.test\0s3cret pw\0<1.2@x>\0", &prog), Some(0));
    let got = fs::read_to_string(&result).unwrap();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines[0], uid.to_string(), "{got}");
    assert_eq!(lines[1], gid.to_string(), "{got}");
    if is_root() {
        assert_eq!(lines[2], gid.to_string(), "a virtual user gets only its gid as group: {got}");
    }
    assert_eq!(lines[3], mbox.to_str().unwrap(), "in HOME: {got}");
    assert_eq!(lines[4], format!("HOME={}", mbox.display()));
    assert_eq!(lines[5], "USER=ann@v.test");
    assert_eq!(lines[6], "SHELL=unset", "no shell for a virtual user");
    fs::remove_file(&result).unwrap();

    // Wrong password and unknown user: the same exit, nothing run.
    assert_eq!(run_auth(&auth, h.path(), b"ann@v.test\0s3cret pW\0\0", &prog), Some(1));
    assert_eq!(run_auth(&auth, h.path(), b"nobody@v.test\0s3cret pw\0\0", &prog), Some(1));
    assert_eq!(run_auth(&auth, h.path(), b"nobody\0s3cret pw\0\0", &prog), Some(1));
    assert_eq!(run_auth(&auth, h.path(), b"\0\0\0", &prog), Some(1));
    assert!(!result.exists());

    // A $6$ hash from an older system works as it is.
    let six = Command::new("openssl").args(["passwd", "-6", "-salt", "oldsalt", "old pw"]).output().unwrap();
    let six = String::from_utf8(six.stdout).unwrap().trim().to_string();
    assert!(six.starts_with("$6$oldsalt$"), "{six}");
    let line = format!("old@v.test:{six}:{uid}:{gid}:{}\n", mbox.display());
    fs::write(h.join("users/virtual"), format!("{virt}{line}")).unwrap();
    admin_ok(&h, &["rebuild"], b"");
    assert_eq!(run_auth(&auth, h.path(), b"old@v.test\0old pw\0\0", &prog), Some(0));
    assert_eq!(run_auth(&auth, h.path(), b"old@v.test\0old pW\0\0", &prog), Some(1));

    // The library's client side, as SMTP AUTH uses it.
    assert!(checkpassword::check_with(&h.lib(), &auth, "ann@v.test", "s3cret pw").unwrap());
    assert!(!checkpassword::check_with(&h.lib(), &auth, "ann@v.test", "nope").unwrap());
    assert!(!checkpassword::check_with(&h.lib(), &auth, "who@v.test", "s3cret pw").unwrap());

    // An unreadable password database is a temporary failure, not a wrong login.
    fs::remove_file(h.join("users/passwd.cdb")).unwrap();
    fs::create_dir(h.join("users/passwd.cdb")).unwrap();
    assert_eq!(run_auth(&auth, h.path(), b"ann@v.test\0s3cret pw\0\0", &prog), Some(111));
    assert!(checkpassword::check_with(&h.lib(), &auth, "ann@v.test", "s3cret pw").is_err());
}

#[test]
fn misuse_exits_2() {
    let h = Home::new("auth-misuse");
    let auth = h.join("bin/postern-auth");
    // No fd 3 (closed explicitly: a parallel test may have left one open in us).
    let o = Command::new("sh").args(["-c", "exec 3<&-; exec \"$0\" /bin/true"]).arg(&auth).env("POSTERN_HOME", h.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("fd 3 is not open"), "{}", text(&o));
    // No program, and a request without its NULs.
    assert_eq!(run_auth(&auth, h.path(), b"a@b\0pw\0\0", &[]), Some(2));
    assert_eq!(run_auth(&auth, h.path(), b"a@b pw", &["/bin/true"]), Some(2));
    assert_eq!(run_auth(&auth, h.path(), &[b'x'; 600], &["/bin/true"]), Some(2));
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn unix_users_by_shadow_with_their_groups() {
    require_root();
    let name = format!("pstu{}", std::process::id() % 100000);
    let group = format!("pstg{}", std::process::id() % 100000);
    let run = |c: &[&str]| {
        let o = Command::new(c[0]).args(&c[1..]).output().unwrap();
        assert!(o.status.success(), "{c:?}: {}", text(&o));
    };
    let _ = Command::new("userdel").args(["-r", &name]).output();
    let _ = Command::new("groupdel").arg(&group).output();
    run(&["groupadd", &group]);
    run(&["useradd", "-m", "-s", "/bin/sh", "-G", &group, &name]);
    let o = Command::new("chpasswd").stdin(Stdio::piped()).spawn().and_then(|mut c| {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(format!("{name}:unix pw\n").as_bytes())?;
        c.wait()
    });
    assert!(o.unwrap().success());
    let h = Home::new("auth-unix");
    let out = open_dir("auth-unix-out");
    let show = show_script(out.path());
    let result = out.path().join("result");
    let prog = [show.to_str().unwrap(), result.to_str().unwrap()];
    let auth = h.join("bin/postern-auth");
    let wrong = run_auth(&auth, h.path(), format!("{name}\0unix pW\0\0").as_bytes(), &prog);
    let right = run_auth(&auth, h.path(), format!("{name}\0unix pw\0\0").as_bytes(), &prog);
    let got = fs::read_to_string(&result).unwrap_or_default();
    let pw = nix::unistd::User::from_name(&name).unwrap().unwrap();
    let gid = nix::unistd::Group::from_name(&group).unwrap().unwrap().gid.as_raw();
    let _ = Command::new("userdel").args(["-r", &name]).output();
    let _ = Command::new("groupdel").arg(&group).output();
    assert_eq!(wrong, Some(1));
    assert_eq!(right, Some(0));
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines[0], pw.uid.to_string(), "{got}");
    assert!(lines[2].split(' ').any(|g| g == gid.to_string()), "the user's groups (initgroups): {got}");
    assert_eq!(lines[3], pw.dir.to_str().unwrap());
    assert_eq!(lines[5], format!("USER={name}"));
    assert_eq!(lines[6], "SHELL=/bin/sh");
    // root never logs in, whatever the password.
    assert_eq!(run_auth(&auth, h.path(), b"root\0x\0\0", &prog), Some(1));
}

#[test]
fn popup_works_with_a_checkpassword_program_of_our_own() {
    if is_root() {
        service_users();
    }
    let h = Home::new("auth-own");
    let t = open_dir("auth-own");
    let home = t.path().join("carol");
    make_maildir(&home.join("Maildir"));
    fs::write(home.join("Maildir/new/1700000000.M1P1Q1.host"), b"Subject: own\n\nvia our own checkpassword\n").unwrap();
    // popup drops to postern-d as root; our checkpassword does not switch users.
    if is_root() {
        let st = Command::new("chown").args(["-R", "postern-d"]).arg(t.path()).status().unwrap();
        assert!(st.success());
    }
    let script = t.path().join("checkpw");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nhead -c 512 <&3 > {dir}/request\nexec 3<&-\nlogin=$(tr '\\0' '\\n' < {dir}/request | sed -n 1p)\npw=$(tr '\\0' '\\n' < {dir}/request | sed -n 2p)\n[ \"$login\" = carol ] && [ \"$pw\" = 'secret pw' ] || exit 1\nHOME={home}; USER=carol; export HOME USER\ncd \"$HOME\" || exit 111\nexec \"$@\"\n",
            dir = t.path().display(),
            home = home.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let input = b"USER carol\r\nPASS wrong\r\nUSER carol\r\nPASS secret pw\r\nSTAT\r\nRETR 1\r\nQUIT\r\n";
    let o =
        h.run("postern-popup", &["own.test", script.to_str().unwrap(), h.join("bin/postern-pop3d").to_str().unwrap(), "Maildir"], input);
    let reply = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = reply.lines().collect();
    assert!(lines.len() >= 9, "{}", text(&o));
    assert!(lines[0].starts_with("+OK own.test"), "{reply}");
    assert_eq!(lines[2], "-ERR [AUTH] authentication failed", "{reply}");
    assert!(lines[4].starts_with("+OK 1 messages"), "the commands pipelined after PASS reach pop3d: {reply}");
    assert!(lines[5].starts_with("+OK 1 "), "{reply}");
    assert!(reply.contains("via our own checkpassword\r\n.\r\n+OK bye"), "{reply}");
    assert_eq!(fs::read(t.path().join("request")).unwrap(), b"carol\0secret pw\0\0", "the checkpassword request on fd 3");
}
