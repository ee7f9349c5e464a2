//! postern-sendmail and postern-inject: recipients, header completion, line ends,
//! the "." ending, and queue filters named by $QMAILQUEUE / $POSTERN_QUEUE.

use crate::fixture::*;
use postern::queue::QueueFile;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

/// Run a program as a known sender: USER=tester, no other identity variables.
fn run_as_tester(home: &Home, program: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut c = home.cmd(program);
    for v in [
        "QMAILUSER",
        "MAILUSER",
        "LOGNAME",
        "QMAILNAME",
        "MAILNAME",
        "NAME",
        "QMAILHOST",
        "MAILHOST",
        "QMAILSUSER",
        "QMAILSHOST",
        "QMAILQUEUE",
        "POSTERN_QUEUE",
    ] {
        c.env_remove(v);
    }
    c.env("USER", "tester").env("NAME", "Test Er");
    run_with_input(c.args(args), stdin)
}

fn only_message(home: &Home) -> (QueueFile, String) {
    let mut files = home.queue_files();
    assert_eq!(files.len(), 1, "exactly one queued message expected");
    let f = files.remove(0);
    let m = String::from_utf8(f.read_message().unwrap()).unwrap();
    (f, m)
}

fn recipients(f: &QueueFile) -> Vec<String> {
    f.recipients.iter().map(|r| r.address.as_str().to_string()).collect()
}

#[test]
fn sendmail_t_takes_header_recipients_and_completes_headers() {
    let home = Home::new("inject-t");
    let msg =
        b"To: Alice <alice@a.example>, bob\r\nCc: team: carol@c.example;\r\nBcc: secret@s.example\r\nSubject: hello\r\n\r\nbody line\r\n";
    let o = run_as_tester(&home, "postern-sendmail", &["-t", "extra@e.example"], msg);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (f, m) = only_message(&home);
    assert_eq!(recipients(&f), ["alice@a.example", "bob@test.example", "carol@c.example", "secret@s.example", "extra@e.example"]);
    assert_eq!(f.sender.as_str(), "tester@test.example");
    assert!(!m.contains("secret"), "Bcc must not be queued:\n{m}");
    assert!(!m.contains('\r'), "line ends must be LF:\n{m}");
    assert!(header(m.as_bytes(), "Date").is_some(), "{m}");
    let mid = header(m.as_bytes(), "Message-ID").expect("Message-ID added");
    assert!(mid.starts_with('<') && mid.ends_with("@test.example>"), "{mid}");
    assert_eq!(header(m.as_bytes(), "From").as_deref(), Some("Test Er <tester@test.example>"));
    assert_eq!(header(m.as_bytes(), "Subject").as_deref(), Some("hello"));
    assert_eq!(body(m.as_bytes()), b"body line\n");
    // postern-queue's Received comes first.
    assert!(m.starts_with("Received: "), "{m}");
}

#[test]
fn sendmail_f_and_capital_f_and_control_hosts() {
    let home = Home::new("inject-f");
    home.control("defaulthost", "dh.example\n").control("idhost", "ids.example\n");
    let o = run_as_tester(
        &home,
        "postern-sendmail",
        &["-fbounces@list.example", "-F", "Jane Doe", "-oem", "-odi", "-v", "r@x.example"],
        b"Subject: s\n\nb\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (f, m) = only_message(&home);
    assert_eq!(f.sender.as_str(), "bounces@list.example");
    assert_eq!(recipients(&f), ["r@x.example"]);
    assert_eq!(header(m.as_bytes(), "From").as_deref(), Some("Jane Doe <tester@dh.example>"));
    assert!(header(m.as_bytes(), "Message-ID").unwrap().ends_with("@ids.example>"));
    // An existing From, Date and Message-ID are kept as they are.
    let home = Home::new("inject-keep");
    let msg = b"From: me@mine.example\nDate: Mon, 1 Jan 2001 00:00:00 +0000\nMessage-ID: <fixed@x>\n\nb\n";
    let o = run_as_tester(&home, "postern-sendmail", &["-f", "", "r@x.example"], msg);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (f, m) = only_message(&home);
    assert!(f.sender.is_null(), "-f '' is the null sender");
    assert!(m.ends_with(std::str::from_utf8(msg).unwrap()), "{m}");
}

#[test]
fn dot_ends_input_unless_i() {
    let home = Home::new("inject-dot");
    let o = run_as_tester(&home, "postern-sendmail", &["r@x.example"], b"Subject: a\n\nbefore\n.\nafter\n");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (_, m) = only_message(&home);
    assert_eq!(body(m.as_bytes()), b"before\n");

    for flag in ["-oi", "-i"] {
        let home = Home::new("inject-oi");
        let o = run_as_tester(&home, "postern-sendmail", &[flag, "r@x.example"], b"Subject: a\n\nbefore\n.\nafter\n");
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let (_, m) = only_message(&home);
        assert_eq!(body(m.as_bytes()), b"before\n.\nafter\n", "{flag}");
    }
}

#[test]
fn sendmail_refusals() {
    let home = Home::new("inject-refuse");
    let o = run_as_tester(&home, "postern-sendmail", &[], b"To: a@b.example\n\nx\n");
    assert_eq!(o.status.code(), Some(100), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no recipients"), "{}", text(&o));
    let o = run_as_tester(&home, "postern-sendmail", &["-t"], b"Subject: nobody\n\nx\n");
    assert_eq!(o.status.code(), Some(100), "{}", text(&o));
    // Sendmail's daemon mode: postern's daemons are other programs.
    let o = run_as_tester(&home, "postern-sendmail", &["-bd"], b"");
    assert_eq!(o.status.code(), Some(100), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not supported"), "{}", text(&o));
    let o = run_as_tester(&home, "postern-sendmail", &["bad\u{1}addr@x.example"], b"x\n");
    assert_eq!(o.status.code(), Some(100), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad recipient"), "{}", text(&o));
    assert_eq!(home.queued(), 0);
}

#[test]
fn inject_arguments_or_headers() {
    let home = Home::new("inject-args");
    let msg = b"To: header@h.example\nSubject: s\n\n.\nbody\n";
    let o = run_as_tester(&home, "postern-inject", &["-f", "s@s.example", "arg1@a.example", "arg2"], msg);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (f, m) = only_message(&home);
    assert_eq!(recipients(&f), ["arg1@a.example", "arg2@test.example"]);
    assert_eq!(f.sender.as_str(), "s@s.example");
    assert_eq!(body(m.as_bytes()), b".\nbody\n", "postern-inject never treats '.' specially");

    let home = Home::new("inject-hdr");
    let o = run_as_tester(&home, "postern-inject", &[], msg);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (f, _) = only_message(&home);
    assert_eq!(recipients(&f), ["header@h.example"]);

    let home = Home::new("inject-none");
    let o = run_as_tester(&home, "postern-inject", &[], b"Subject: s\n\nx\n");
    assert_eq!(o.status.code(), Some(100), "{}", text(&o));
}

/// A queue filter in qmail's style: records what it got, then runs the real queue.
fn filter_script(home: &Home, code: Option<i32>) -> std::path::PathBuf {
    let script = home.join("filter.sh");
    let tail = match code {
        None => format!("exec {} <\"$D/msg\" 1<\"$D/env\"\n", home.join("bin/postern-queue").display()),
        Some(c) => format!("exit {c}\n"),
    };
    let body = format!("#!/bin/sh\nD={}\ncat >\"$D/msg\"\ncat <&1 >\"$D/env\"\n{tail}", home.path().display());
    fs::write(&script, body).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn queue_filters_are_honoured() {
    for var in ["QMAILQUEUE", "POSTERN_QUEUE"] {
        let home = Home::new("inject-filter");
        let script = filter_script(&home, None);
        let mut c = home.cmd("postern-sendmail");
        c.env("USER", "tester").env(var, &script).args(["-f", "s@s.example", "r@r.example"]);
        let o = run_with_input(&mut c, b"Subject: filtered\n\nx\n");
        assert_eq!(o.status.code(), Some(0), "{var}: {}", text(&o));
        let msg = fs::read_to_string(home.join("msg")).unwrap();
        assert!(msg.contains("Subject: filtered\n"), "{msg}");
        assert_eq!(fs::read(home.join("env")).unwrap(), b"Fs@s.example\0Tr@r.example\0\0");
        let (f, m) = only_message(&home);
        assert_eq!(recipients(&f), ["r@r.example"]);
        assert!(m.contains("Subject: filtered\n"));
    }
    // The filter's exit code decides: 31 is permanent (100), 71 temporary (111).
    for (code, want) in [(31, 100), (71, 111)] {
        let home = Home::new("inject-filter-code");
        let script = filter_script(&home, Some(code));
        let mut c = home.cmd("postern-inject");
        c.env("QMAILQUEUE", &script).arg("r@r.example");
        let o = run_with_input(&mut c, b"Subject: x\n\nx\n");
        assert_eq!(o.status.code(), Some(want), "{}", text(&o));
        assert!(!o.stderr.is_empty());
        assert_eq!(home.queued(), 0);
    }
}
