//! postern-listen on its own: environment, limits, rules, privileges, IPv6,
//! SIGTERM, the rules compiler.

use crate::fixture::*;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;

const SHOW_ENV: &[&str] = &["/bin/sh", "-c", "echo \"$PROTO $TCPREMOTEIP $TCPLOCALIP $TCPLOCALPORT ${TCPREMOTEPORT:+port} ${RELAYCLIENT-unset} $(id -u) $(grep SigBlk /proc/self/status | tr -d '\\t')\""];

#[test]
fn runs_the_program_per_connection_with_the_tcp_environment() {
    let d = TempDir::new("listen-env");
    let l = Listener::start(d.path(), &[], "127.0.0.1", SHOW_ENV);
    let out = l.output("127.0.0.1");
    let uid = nix::unistd::geteuid().as_raw();
    assert_eq!(out.trim(), format!("TCP 127.0.0.1 127.0.0.1 {} port unset {uid} SigBlk:0000000000000000", l.port));
    let log = wait_for(5, "the end line", || {
        let log = l.log();
        log.contains(" status 0").then_some(log)
    });
    assert!(log.contains(" from 127.0.0.1:"), "{log}");
    assert!(log.lines().any(|x| x.contains("postern-listen: end ") && x.ends_with("status 0")), "{log}");
}

#[test]
fn listens_on_ipv6() {
    let d = TempDir::new("listen-v6");
    let l = Listener::start(d.path(), &[], "::1", &["/bin/sh", "-c", "echo \"$TCPREMOTEIP\""]);
    assert_eq!(l.output("::1").trim(), "::1");
}

#[test]
fn rules_deny_allow_and_set_variables() {
    let d = TempDir::new("listen-rules");
    let src = d.path().join("tcp.test");
    let cdb = d.path().join("tcp.test.cdb");
    fs::write(&src, "# local clients relay\n127.0.0.1:allow,RELAYCLIENT=\"\"\n127.0.0.2:deny\n:allow\n").unwrap();
    let out = Command::new(bin("postern-listen")).arg("-X").arg(&src).arg(&cdb).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 rules compiled"), "{}", text(&out));
    let l = Listener::start(d.path(), &["-x", cdb.to_str().unwrap()], "0", SHOW_ENV);
    let out = l.output("127.0.0.1");
    assert!(out.starts_with("TCP 127.0.0.1 127.0.0.1") && out.contains(" port  "), "RELAYCLIENT set and empty: {out:?}");
    // 127.0.0.2 is denied: the connection closes with nothing said.
    assert_eq!(l.output_from("127.0.0.2"), "");
    assert!(l.log().contains("deny 127.0.0.2:"), "{}", l.log());
    assert!(l.output_from("127.0.0.3").contains(" unset "), "the default line sets nothing");
    // Rules are read per connection: a recompile applies to the next one.
    fs::write(&src, ":deny\n").unwrap();
    assert!(Command::new(bin("postern-listen")).arg("-X").arg(&src).arg(&cdb).output().unwrap().status.success());
    assert_eq!(l.output("127.0.0.1"), "");
    // A missing rules file refuses everyone (fail closed).
    fs::remove_file(&cdb).unwrap();
    assert_eq!(l.output("127.0.0.1"), "");
    assert!(l.log().contains("refused 127.0.0.1:") && l.log().contains("tcp.test.cdb"), "{}", l.log());
}

#[test]
fn bad_rules_and_arguments_are_named() {
    let d = TempDir::new("listen-bad");
    let src = d.path().join("tcp.bad");
    fs::write(&src, ":allow\n10.0.0.300:deny\n").unwrap();
    let out = Command::new(bin("postern-listen")).arg("-X").arg(&src).arg(d.path().join("x.cdb")).output().unwrap();
    assert_eq!(out.status.code(), Some(111));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("rules file {} line 2:", src.display())), "{}", text(&out));
    let out = Command::new(bin("postern-listen")).args(["-c", "x", "0", "25", "/bin/true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"), "{}", text(&out));
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = Command::new(bin("postern-listen")).args(["127.0.0.1", &port, "/bin/true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(111));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on 127.0.0.1:{port}")), "{}", text(&out));
}

/// Hold connections open until each has its program running.
fn hold(l: &Listener, n: usize) -> Vec<BufReader<TcpStream>> {
    (0..n)
        .map(|_| {
            let mut r = BufReader::new(l.connect("127.0.0.1"));
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "hi\n");
            r
        })
        .collect()
}

#[test]
fn per_address_and_total_limits_close_extra_connections() {
    let d = TempDir::new("listen-limits");
    let prog = ["/bin/sh", "-c", "echo hi; read x"];
    let l = Listener::start(d.path(), &["-C", "2"], "127.0.0.1", &prog);
    let held = hold(&l, 2);
    assert_eq!(l.output("127.0.0.1"), "", "a third connection from one address is closed");
    assert!(l.log().contains("refused 127.0.0.1:") && l.log().contains("(-C)"), "{}", l.log());
    // When one ends, there is room again.
    drop(held);
    wait_for(5, "both children reaped", || (l.log().matches("postern-listen: end ").count() >= 2).then_some(()));
    let _again = hold(&l, 2);

    let l = Listener::start(d.path(), &["-c", "1"], "0", &prog);
    let _one = hold(&l, 1);
    assert_eq!(l.output_from("127.0.0.2"), "", "the total counts every address");
    assert!(l.log().contains("refused 127.0.0.2:") && l.log().contains("(-c)"), "{}", l.log());
}

#[test]
fn sigterm_stops_accepting_and_running_connections_finish() {
    let d = TempDir::new("listen-term");
    let mut l = Listener::start(d.path(), &[], "127.0.0.1", &["/bin/sh", "-c", "echo hi; read x; echo bye"]);
    let mut held = hold(&l, 1);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(l.child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let st = l.child.wait().unwrap();
    assert_eq!(st.code(), Some(0));
    assert!(TcpStream::connect(("127.0.0.1", l.port)).is_err(), "no longer accepting");
    held[0].get_mut().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    held[0].read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "bye\n", "the running connection finished");
    assert!(l.log().contains("stopping on signal 15; 1 connection(s) left to finish"), "{}", l.log());
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn drops_to_the_user_given_with_u_after_binding() {
    require_root();
    service_users();
    let d = TempDir::new("listen-user");
    let l = Listener::start(d.path(), &["-u", "postern-d"], "127.0.0.1", &["/bin/sh", "-c", "id -u; id -G"]);
    let uid = uid_of("postern-d").unwrap();
    let gid = nix::unistd::User::from_name("postern-d").unwrap().unwrap().gid.as_raw();
    assert_eq!(l.output("127.0.0.1"), format!("{uid}\n{gid}\n"), "only the user's own group");
    assert_eq!(proc_uid(l.child.id() as i32), Some(uid), "the listener itself runs as postern-d");
}
