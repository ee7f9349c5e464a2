//! Issue 15 regression tests: what fuzzing found in the configuration parsers.

use super::*;

/// A NUL in a tcp.smtp value came back from the compiled cdb as a second
/// variable: `X="a<NUL>RELAYCLIENT="` let the client relay. The compiler now
/// refuses it, naming the line (found by fuzz/fuzz_targets/rules.rs).
#[test]
fn issue15_a_nul_in_a_rules_value_is_refused() {
    let d = TempDir::new("i15-rules-nul");
    let src = d.path().join("tcp.smtp");
    fs::write(&src, ":allow\n127.0.0.1:allow,X=\"a\0RELAYCLIENT=\"\n").unwrap();
    let out = std::process::Command::new(bin("postern-listen")).arg("-X").arg(&src).arg(d.path().join("tcp.smtp.cdb")).output().unwrap();
    assert_eq!(out.status.code(), Some(111), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("NUL"), "{err}");
}

/// A NUL inside a users/assign field made a record lookups cannot decode (the
/// user silently unknown); rebuild now refuses it, naming the line, and the old
/// database stays (found by fuzz/fuzz_targets/users.rs).
#[test]
fn issue15_a_nul_in_users_assign_is_refused() {
    let home = Home::new("i15-assign-nul");
    fs::write(home.join("users/assign"), "=pm:pm:2001:2001:/var/pm:::\n.\n").unwrap();
    assert!(home.run("postern-admin", &["rebuild"], b"").status.success());
    fs::write(home.join("users/assign"), "=pm:pm:2001:2001:/var/pm:::\n=x:x:1:1:/h\0y:::\n.\n").unwrap();
    let o = home.run("postern-admin", &["rebuild"], b"");
    assert_eq!(o.status.code(), Some(111), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("users/assign line 2") && err.contains("NUL"), "{err}");
    let mut u = postern::users::Users::open(&home.lib()).unwrap();
    assert!(u.lookup("pm", "test.example").unwrap().is_some());
}
