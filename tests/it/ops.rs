//! Operating postern: install again, uninstall, the init script and its log
//! files, readiness (systemd's sd_notify), `--version`, and `postern-admin
//! check` over a corpus of broken configurations (tests/it/check-corpus/).

use crate::fixture::*;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    stdout(&out).split_whitespace().next().unwrap().to_string()
}

/// scripts/install into a fake root: /etc and /usr under `root`, the home at
/// root/var/postern. systemd units go in only when root/etc/systemd/system exists.
fn install(root: &Path) -> Output {
    let out = Command::new(repo().join("scripts/install"))
        .arg("--root")
        .arg(root)
        .arg("--home")
        .arg(root.join("var/postern"))
        .args(["--domain", "ops.test", "--postmaster", "pm@ops.test"])
        .env("POSTERN_BUILD", bin_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "install: {}", text(&out));
    out
}

fn uninstall(root: &Path, args: &[&str]) -> Output {
    let out = Command::new(repo().join("scripts/uninstall"))
        .arg("--root")
        .arg(root)
        .arg("--home")
        .arg(root.join("var/postern"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "uninstall: {}", text(&out));
    out
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn install_again_keeps_edited_files_and_uninstall_puts_sendmail_back() {
    require_root();
    service_users();
    let tmp = TempDir::new("ops-reinstall");
    let root = tmp.path();
    let home = root.join("var/postern");
    fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    fs::create_dir_all(root.join("usr/sbin")).unwrap();
    fs::write(root.join("usr/sbin/sendmail"), "#!/bin/sh\necho the old sendmail\n").unwrap();
    install(root);

    let unit = root.join("etc/systemd/system/postern-smtp.service");
    let defaults = root.join("etc/default/postern");
    for f in [&unit, &defaults, &root.join("etc/init.d/postern"), &root.join("etc/logrotate.d/postern")] {
        assert!(f.exists(), "{} installed", f.display());
    }
    let unit_text = fs::read_to_string(&unit).unwrap();
    assert!(unit_text.contains("${SMTP_ADDRESS} ${SMTP_PORT}"), "the listen address is a setting:\n{unit_text}");
    assert!(unit_text.contains(&format!("EnvironmentFile=-{}", defaults.display())), "{unit_text}");
    assert!(!unit_text.contains(" :: 25 "), "no hard-coded address:\n{unit_text}");
    assert_eq!(fs::read_link(root.join("usr/sbin/sendmail")).unwrap(), home.join("bin/postern-sendmail"));

    // The admin edits the listen address, a unit and a control file.
    let edited_defaults = fs::read_to_string(&defaults).unwrap().replace("SMTP_ADDRESS=::", "SMTP_ADDRESS=192.0.2.25");
    fs::write(&defaults, &edited_defaults).unwrap();
    fs::write(&unit, format!("{unit_text}# edited by the admin\n")).unwrap();
    fs::write(home.join("control/rcpthosts"), "ops.test\nother.test\n").unwrap();
    // A file install wrote and nobody touched since stands for an older
    // version: its recorded checksum matches, so an upgrade replaces it.
    let pop3 = root.join("etc/systemd/system/postern-pop3.service");
    let current = fs::read_to_string(&pop3).unwrap();
    fs::write(&pop3, "# an older postern-pop3.service\n").unwrap();
    let sums = home.join("doc/installed.sha256");
    let recorded = fs::read_to_string(&sums).unwrap();
    let line = format!("{}  {}", sha256(&pop3), pop3.display());
    let recorded: Vec<String> =
        recorded.lines().map(|l| if l.ends_with(&format!("  {}", pop3.display())) { line.clone() } else { l.to_string() }).collect();
    fs::write(&sums, recorded.join("\n") + "\n").unwrap();

    let out = install(root);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(fs::read_to_string(&defaults).unwrap(), edited_defaults, "an edited file is kept");
    assert!(fs::read_to_string(&unit).unwrap().ends_with("# edited by the admin\n"));
    assert_eq!(fs::read_to_string(PathBuf::from(format!("{}.postern-new", unit.display()))).unwrap(), unit_text, "the new one beside it");
    assert!(said.contains(&format!("{} was changed since postern installed it", defaults.display())), "{said}");
    assert_eq!(fs::read_to_string(&pop3).unwrap(), current, "an unedited file is upgraded");
    assert!(!PathBuf::from(format!("{}.postern-new", pop3.display())).exists());
    assert_eq!(fs::read_to_string(home.join("control/rcpthosts")).unwrap(), "ops.test\nother.test\n", "control files are never rewritten");

    // Mail in a mailbox, then uninstall: programs and service files go,
    // sendmail comes back, configuration and mail stay.
    let mail = home.join("mail/ops.test/pm/Maildir/new");
    fs::create_dir_all(&mail).unwrap();
    fs::write(mail.join("1.msg"), "Subject: kept\n\nx\n").unwrap();
    let out = uninstall(root, &[]);
    assert!(!home.join("bin").exists() && !unit.exists() && !pop3.exists() && !root.join("etc/init.d/postern").exists(), "{}", text(&out));
    let sendmail = root.join("usr/sbin/sendmail");
    assert!(!sendmail.is_symlink(), "{}", text(&out));
    assert_eq!(fs::read_to_string(&sendmail).unwrap(), "#!/bin/sh\necho the old sendmail\n");
    assert!(!root.join("usr/lib/sendmail").exists(), "the link install made, with nothing before it, is gone");
    assert!(home.join("control/rcpthosts").exists() && defaults.exists() && home.join("queue").exists());
    assert!(mail.join("1.msg").exists());

    let out = uninstall(root, &["--purge"]);
    assert!(!home.join("control").exists() && !home.join("users").exists() && !defaults.exists(), "{}", text(&out));
    assert!(!root.join("etc/logrotate.d/postern").exists());
    assert!(!home.join("queue").exists(), "an empty queue goes with --purge: {}", text(&out));
    assert!(mail.join("1.msg").exists(), "mail is never removed");
}

/// The port a listener logged in `log` ("ready on ADDR:PORT").
fn ready_port(log: &Path) -> u16 {
    let text = fs::read_to_string(log).unwrap();
    let line = text.lines().rev().find(|l| l.contains("postern-listen: ready on")).unwrap_or_else(|| panic!("no ready line in {text}"));
    let after = line.split("ready on ").nth(1).unwrap();
    let port = after.split(' ').next().unwrap().rsplit(':').next().unwrap();
    port.parse().unwrap()
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn the_init_script_waits_for_each_program_reports_failures_and_logs_to_rotated_files() {
    require_root();
    service_users();
    let tmp = TempDir::new("ops-init");
    let root = tmp.path();
    let home = root.join("var/postern");
    fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    let out = Command::new(repo().join("scripts/install"))
        .arg("--root")
        .arg(root)
        .arg("--home")
        .arg(&home)
        .args(["--domain", "init.test", "--postmaster", "pm@init.test", "--no-sendmail"])
        .env("POSTERN_BUILD", bin_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "install: {}", text(&out));
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let units: Vec<PathBuf> =
            ["postern", "postern-smtp", "postern-pop3"].iter().map(|u| root.join(format!("etc/systemd/system/{u}.service"))).collect();
        let out = Command::new("systemd-analyze").arg("verify").args(&units).output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "systemd-analyze verify: {}", text(&out));
    }
    // Listen on loopback, on ports the kernel picks.
    let defaults = root.join("etc/default/postern");
    let d = fs::read_to_string(&defaults).unwrap();
    let d = d.replace("SMTP_ADDRESS=::", "SMTP_ADDRESS=127.0.0.1").replace("SMTP_PORT=25", "SMTP_PORT=0");
    fs::write(&defaults, d.replace("POP3_ADDRESS=::", "POP3_ADDRESS=127.0.0.1").replace("POP3_PORT=110", "POP3_PORT=0")).unwrap();
    let init = root.join("etc/init.d/postern");
    let run = |arg: &str| Command::new(&init).arg(arg).stdin(Stdio::null()).output().unwrap();
    struct Stop(PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new(&self.0).arg("stop").output();
        }
    }
    let _stop = Stop(init.clone());

    let out = run("start");
    assert!(out.status.success(), "start: {}", text(&out));
    let logs = root.join("var/log/postern");
    let smtp_port = ready_port(&logs.join("smtp.log"));
    let mut c = Client::smtp(smtp_port);
    assert!(c.ask("EHLO client.test").starts_with("250"));
    assert!(run("status").status.success());

    // Reload reaches send and lspawn, and restarts postern-queued (which reads
    // its settings only at start); mail still goes in through it after.
    let bin = home.join("bin");
    let queued = wait_for(10, "postern-queued", || <[i32; 1]>::try_from(pids_of(&bin, "postern-queued")).ok());
    assert!(run("reload").status.success());
    let send_log = logs.join("send.log");
    wait_for(10, "the reload in the log", || {
        fs::read_to_string(&send_log).unwrap().contains("postern-lspawn: reread defaultdelivery").then_some(())
    });
    assert!(fs::read_to_string(&send_log).unwrap().contains("postern-queued restarts (timeoutsubmit, concurrencysubmit)"));
    wait_for(10, "a new postern-queued", || pids_of(&bin, "postern-queued").iter().any(|p| *p != queued[0]).then_some(()));
    let out = run_with_input(
        Command::new(home.join("bin/postern-sendmail")).env("POSTERN_HOME", &home).args(["-oi", "pm@init.test"]),
        &message("after the reload", "x"),
    );
    assert!(out.status.success(), "{}", text(&out));

    // logrotate takes the installed configuration, rotates, and the daemons
    // go on writing into the emptied file.
    let conf = root.join("etc/logrotate.d/postern");
    let state = root.join("logrotate.state");
    let out = Command::new("logrotate").arg("-d").arg("-s").arg(&state).arg(&conf).output().unwrap();
    let said = text(&out);
    assert!(out.status.success() && !said.to_lowercase().contains("error"), "logrotate -d: {said}");
    assert!(said.contains(&format!("{}/*.log", logs.display())), "{said}");
    let out = Command::new("logrotate").arg("-f").arg("-s").arg(&state).arg(&conf).output().unwrap();
    assert!(out.status.success(), "logrotate -f: {}", text(&out));
    assert!(fs::read_to_string(logs.join("send.log.1")).unwrap().contains("postern-send: started"));
    assert!(run("reload").status.success());
    wait_for(10, "a log line in the rotated send.log", || {
        let t = fs::read(&send_log).unwrap();
        // copytruncate leaves the file empty and the writer appends (O_APPEND): no hole of NULs.
        (!t.is_empty() && !t.contains(&0) && String::from_utf8_lossy(&t).contains("reread defaultdelivery")).then_some(())
    });
    let out = run("stop");
    assert!(out.status.success(), "stop: {}", text(&out));
    assert!(!run("status").status.success(), "stopped");

    // A setting postern-send refuses: start fails and names program, file and value.
    fs::write(home.join("control/concurrencylocal"), "0\n").unwrap();
    let out = run("start");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("postern-send: FAILED to start"), "{said}");
    assert!(said.contains("postern-send cannot start") && said.contains("concurrencylocal line 1: 0 is out of range"), "{said}");
    assert!(!said.contains("postern-lspawn exited"), "lspawn is not blamed: {said}");
    fs::remove_file(home.join("control/concurrencylocal")).unwrap();

    // An SMTP port already taken: the SMTP listener is named.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let d = fs::read_to_string(&defaults).unwrap().replace("SMTP_PORT=0", &format!("SMTP_PORT={port}"));
    fs::write(&defaults, d).unwrap();
    let out = run("start");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("postern-smtp: FAILED to start") && said.contains(&format!("127.0.0.1:{port}")), "{said}");
    assert!(said.contains("postern-pop3: started"), "the others still start: {said}");
}

/// Wait up to `secs` for one datagram on `sock`.
fn notice(sock: &UnixDatagram, secs: u64) -> Option<String> {
    sock.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut buf = [0u8; 512];
    sock.recv(&mut buf).ok().map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn postern_start_says_ready_only_when_up_and_names_a_refused_setting() {
    let home = Instance::create("ops-notify");
    let path = home.join("run/notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    // As systemd's own: postern-send (postern-s in a root instance) says it.
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let start = home.cmd("postern-start").env("NOTIFY_SOCKET", &path).stderr(Stdio::piped()).spawn().unwrap();
    let got = notice(&sock, 20);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(start.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let out = start.wait_with_output().unwrap();
    assert!(got.as_deref().is_some_and(|g| g.starts_with("READY=1\n")), "{got:?}\n{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("postern-send: started"));

    home.control("concurrencyremote", "# how many\nmany\n");
    let out = home.cmd("postern-start").env("NOTIFY_SOCKET", &path).output().unwrap();
    assert_eq!(code(&out), Some(111), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    let file = home.join("control/concurrencyremote");
    assert!(
        said.contains(&format!("postern-send cannot start: control file {} line 2: \"many\" is not a whole number", file.display())),
        "{said}"
    );
    assert!(said.contains("nothing started"), "{said}");
    assert_eq!(notice(&sock, 1), None, "never ready");
}

#[test]
fn postern_listen_says_ready_once_bound() {
    let tmp = TempDir::new("ops-listen-notify");
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut l = Command::new(bin("postern-listen"))
        .args(["127.0.0.1", "0", "/bin/true"])
        .env("NOTIFY_SOCKET", &path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let got = notice(&sock, 20);
    let mut first = String::new();
    BufReader::new(l.stderr.take().unwrap()).read_line(&mut first).unwrap();
    let _ = l.kill();
    let _ = l.wait();
    let got = got.expect("a READY notice");
    assert!(got.starts_with("READY=1\nSTATUS=listening on 127.0.0.1:"), "{got:?}");
    assert!(first.contains("ready on 127.0.0.1:"), "{first}");
}

#[test]
fn every_program_answers_version() {
    for p in postern::programs() {
        let out = Command::new(bin(p)).arg("--version").stdin(Stdio::null()).output().unwrap();
        assert_eq!(code(&out), Some(0), "{p}: {}", text(&out));
        assert_eq!(stdout(&out), format!("{p} (postern) {}\n", env!("CARGO_PKG_VERSION")), "{p}");
    }
}

/// Copy the files of `from` over `to` (a corpus case over an instance).
fn overlay(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            fs::create_dir_all(&target).unwrap();
            overlay(&e.path(), &target);
        } else if e.file_name() != "expect" {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn check(i: &Instance) -> Output {
    i.run("postern-admin", &["check"], b"")
}

#[test]
fn check_finds_nothing_in_a_fresh_instance_and_names_each_broken_file_of_the_corpus() {
    let corpus = repo().join("tests/it/check-corpus");
    let mut cases: Vec<PathBuf> = fs::read_dir(&corpus).unwrap().flatten().map(|e| e.path()).collect();
    cases.sort();
    assert!(cases.len() >= 15, "the corpus is there: {}", corpus.display());
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let i = Instance::create("check");
        let out = check(&i);
        assert_eq!(code(&out), Some(0), "{name}: a fresh instance is clean: {}", text(&out));
        assert!(stdout(&out).contains("no problems found"));
        overlay(&case, i.path());
        let out = check(&i);
        let said = stdout(&out);
        assert_eq!(code(&out), Some(111), "{name}: {}", text(&out));
        let home = i.path().display().to_string();
        for want in fs::read_to_string(case.join("expect")).unwrap().lines() {
            let want = want.replace("$HOME", &home);
            assert!(said.contains(&want), "{name}: check must say\n  {want}\nit said:\n{said}");
        }
        assert!(String::from_utf8_lossy(&out.stderr).contains("problem(s) in"), "{name}: {}", text(&out));
    }
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn check_names_wrong_owners_and_modes_of_a_system_install() {
    require_root();
    let i = Instance::create("check-modes");
    assert_eq!(code(&check(&i)), Some(0), "{}", text(&check(&i)));
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(i.join("bin/postern-queue"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(i.join("queue/new"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(i.join("control/serverkey.pem"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::rename(i.join("control/servercert.pem"), i.join("control/servercert.pem.old")).unwrap();
    let out = check(&i);
    let said = stdout(&out);
    assert_eq!(code(&out), Some(111), "{}", text(&out));
    let p = |s: &str| i.join(s).display().to_string();
    for want in [
        format!("{}: postern-q:postern mode 0755; should be postern-q:postern mode 6711", p("bin/postern-queue")),
        format!("{}: postern-q:postern mode 0777; should be postern-q:postern mode 2770", p("queue/new")),
        format!("{}: the private key is readable by everyone", p("control/serverkey.pem")),
        format!("{} is missing: STARTTLS and STLS are not offered and AUTH is refused", p("control/servercert.pem")),
    ] {
        assert!(said.contains(&want), "check must say\n  {want}\nit said:\n{said}");
    }
}

/// Python's smtplib against `port`: the SIZE the server offers, then the
/// replies to a small and to a big message (code, or 250 when accepted).
const SIZES: &str = r#"
import smtplib, sys
port, rcpt = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP("127.0.0.1", port)
s.ehlo("client.test")
print(s.esmtp_features.get("size", "none"))
for n in (100, 5000):
    msg = "Subject: %d bytes\r\n\r\n" % n + "x" * n + "\r\n"
    try:
        s.sendmail("sender@client.test", [rcpt], msg)
        print(250)
    except smtplib.SMTPResponseException as e:
        print(e.smtp_code)
    except smtplib.SMTPRecipientsRefused as e:
        print(list(e.recipients.values())[0][0])
s.quit()
"#;

#[test]
fn smtpd_takes_databytes_and_tcpremoteinfo_from_the_rules() {
    let i = Instance::create("rulesvars");
    i.control("tcp.smtp", "127.0.0.1:allow,DATABYTES=\"1000\",TCPREMOTEINFO=\"ident-user\"\n:allow\n");
    let md = i.adduser("joe", "pw");
    i.start();
    let rcpt = i.address("joe");
    let port = i.smtp_port().to_string();
    let got = python(SIZES, &[&port, &rcpt]);
    assert_eq!(got.lines().collect::<Vec<_>>(), ["1000", "250", "552"], "DATABYTES from the rule is the limit");
    let mail = i.wait_mail(&md, 1);
    let first = String::from_utf8_lossy(&mail[0]);
    assert!(first.contains("Received: from client.test (unknown [127.0.0.1] ident=ident-user)"), "{first}");

    // A value that is no number: logged, and control/databytes applies.
    i.control("tcp.smtp", "127.0.0.1:allow,DATABYTES=\"lots\"\n:allow\n");
    i.control("databytes", "3000\n");
    let out = i.run(
        "postern-listen",
        &["-X", &i.join("control/tcp.smtp").display().to_string(), &i.join("control/tcp.smtp.cdb").display().to_string()],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out));
    let got = python(SIZES, &[&port, &rcpt]);
    assert_eq!(got.lines().collect::<Vec<_>>(), ["3000", "250", "552"]);
    assert!(
        i.smtp_log().contains("DATABYTES \"lots\" from the access rules for 127.0.0.1 is not a whole number; control/databytes applies"),
        "{}",
        i.smtp_log()
    );
    let mail = i.wait_mail(&md, 2);
    assert!(mail.iter().all(|m| !String::from_utf8_lossy(m).contains("5000 bytes")), "the big ones were refused");
}

/// A checkpassword program of another suite, as small as the protocol allows:
/// login NUL password NUL timestamp NUL on fd 3; exit 1 for a wrong login,
/// else exec the rest of its arguments. It knows one password per login and
/// writes each login it is asked about to the file named in its argv[1].
const FOREIGN_CHECKPASSWORD: &str = r#"#!/usr/bin/python3
import os, sys
data = b""
while True:
    chunk = os.read(3, 512)
    if not chunk:
        break
    data += chunk
os.close(3)
login, password = data.split(b"\0")[:2]
with open(sys.argv[1], "a") as f:
    f.write(login.decode() + " uid=%d\n" % os.getuid())
if password == b"from-" + login.split(b"@")[0]:
    os.execvp(sys.argv[2], sys.argv[2:])
sys.exit(1)
"#;

const POP3_LOGIN: &str = r#"
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]))
try:
    p.user(sys.argv[2]); p.pass_(sys.argv[3])
    print("in", p.stat()[0])
    p.quit()
except poplib.error_proto as e:
    print("refused", e)
"#;

#[test]
fn a_foreign_checkpassword_checks_the_password_and_postern_auth_still_becomes_the_user() {
    let i = Instance::create("foreign");
    let md = i.adduser("joe", "postern-password");
    let prog = i.join("foreign-checkpassword");
    fs::write(&prog, FOREIGN_CHECKPASSWORD).unwrap();
    fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let asked = i.join("asked.log");
    i.control("checkpassword", &format!("{} {}\n", prog.display(), asked.display()));
    assert_eq!(code(&i.run("postern-admin", &["check"], b"")), Some(0), "check accepts it");
    i.start();
    i.deliver("joe", &[message("for joe", "hello")]);
    let port = i.pop3_port().to_string();
    let joe = i.address("joe");
    assert_eq!(python(POP3_LOGIN, &[&port, &joe, "from-joe"]).trim(), "in 1", "the foreign program's password opens joe's mailbox");
    assert!(python(POP3_LOGIN, &[&port, &joe, "postern-password"]).starts_with("refused"), "postern's own hash is not asked");
    // The foreign program accepts a name postern has no account for: refused.
    let ghost = i.address("ghost");
    assert!(python(POP3_LOGIN, &[&port, &ghost, "from-ghost"]).starts_with("refused"));
    wait_for(10, "the refusal in the log", || i.pop3_log().contains("postern has no such account").then_some(()));
    let log = fs::read_to_string(&asked).unwrap();
    assert_eq!(log.lines().filter(|l| l.starts_with(&joe)).count(), 2, "{log}");
    // It ran as postern-auth's uid (root in a system install), and joe's
    // mailbox was read as joe's owner: pop3d runs after postern-auth's switch.
    let owner = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&md).unwrap());
    assert!(log.lines().all(|l| l.ends_with(&format!("uid={}", nix::unistd::getuid()))), "{log}");
    let cur = md.join("cur");
    wait_for(10, "the message moved to cur/ by pop3d after the session", || (fs::read_dir(&cur).unwrap().count() == 1).then_some(()));
    let moved = fs::read_dir(&cur).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&fs::metadata(moved).unwrap()), owner);

    // SMTP AUTH (swaks, over STARTTLS) goes through the same postern-auth.
    let swaks = |pw: &str| {
        let server = format!("127.0.0.1:{}", i.smtp_port());
        Command::new("swaks")
            .args(["--server", &server, "--tls", "--auth", "PLAIN", "--auth-user", &joe, "--auth-password", pw])
            .args(["--from", &joe, "--to", &joe, "--quit-after", "AUTH"])
            .output()
            .unwrap()
    };
    let out = swaks("from-joe");
    assert!(out.status.success() && stdout(&out).contains("<~  235 "), "{}", text(&out));
    let out = swaks("postern-password");
    assert!(!out.status.success() && stdout(&out).contains("<~* 535 "), "{}", text(&out));
}
