//! postern-remote against real peers on loopback: unbound serving the tests' own
//! zone, Postfix's smtp-sink, and scripted fake servers (threads here) for the
//! faults and for recording the peer address, HELO and commands.
//!
//! Most tests run postern-remote directly in a harness::Home with control files
//! pointing it at those peers; DNS is always control/dnsresolvers, never the
//! machine's resolver.

mod dns;
mod e2e;
mod fake;
mod smtp;
mod tls;

use crate::harness::*;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// What postern-remote printed.
#[derive(Debug)]
pub struct Outcome {
    pub recipients: Vec<(char, String)>,
    pub message: (char, String),
}

/// Run postern-remote HOST SENDER RCPTS... with `msg` on a seekable fd 0.
pub fn remote(home: &Home, host: &str, sender: &str, rcpts: &[&str], msg: &[u8]) -> Outcome {
    let path = home.join("message");
    fs::write(&path, msg).unwrap();
    let out = home.cmd("postern-remote").arg(host).arg(sender).args(rcpts).stdin(Stdio::from(File::open(&path).unwrap())).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.ends_with(b"\0"), "{}", text(&out));
    let mut reports: Vec<(char, String)> = out.stdout[..out.stdout.len() - 1]
        .split(|&b| b == 0)
        .map(|r| (r[0] as char, String::from_utf8_lossy(&r[1..]).into_owned()))
        .collect();
    let message = reports.pop().unwrap();
    assert!("KZD".contains(message.0), "{}", text(&out));
    assert!(reports.is_empty() || reports.len() == rcpts.len(), "{}", text(&out));
    Outcome { recipients: reports, message }
}

/// A home whose every domain goes by MX on `port` (smtproutes `::port`), with
/// short timeouts and DNS from `dns_port`.
pub fn home(tag: &str, port: u16, dns_port: u16) -> Home {
    let h = Home::new(tag);
    h.control("smtproutes", &format!("::{port}\n"))
        .control("dnsresolvers", &format!("127.0.0.1:{dns_port}\n"))
        .control("timeoutremote", "5\n")
        .control("timeoutconnect", "5\n");
    h
}

/// The zone every DNS test shares (all under test.).
pub const ZONE: &[&str] = &[
    "mx.test. MX 10 mail.mx.test.",
    "mail.mx.test. A 127.0.0.1",
    "twomx.test. MX 10 dead.twomx.test.",
    "twomx.test. MX 20 live.twomx.test.",
    "dead.twomx.test. A 127.0.0.9",
    "live.twomx.test. A 127.0.0.1",
    "implicit.test. A 127.0.0.1",
    "six.test. MX 10 v6.six.test.",
    "v6.six.test. AAAA ::1",
    "nullmx.test. MX 0 .",
    "alias.test. CNAME mx.test.",
    "loop1.test. CNAME loop2.test.",
    "loop2.test. CNAME loop1.test.",
    "tls.test. MX 10 mx.tls.test.",
    "mx.tls.test. A 127.0.0.1",
    "a.test. MX 10 mail.mx.test.",
];

/// unbound on 127.0.0.1:port serving `records` and refusing everything else (it
/// never asks the Internet).
pub struct Unbound {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Unbound {
    pub fn start(records: &[&str]) -> Unbound {
        let dir = TempDir::new("unbound");
        for _ in 0..5 {
            let port = free_port();
            let mut conf = format!(
                "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-daemonize: no\n  use-syslog: no\n  logfile: \"\"\n  chroot: \"\"\n  username: \"\"\n  pidfile: \"\"\n  directory: \"{}\"\n  do-ip6: no\n  verbosity: 1\n  module-config: \"iterator\"\n  local-zone: \".\" refuse\n  local-zone: \"test.\" static\n",
                dir.path().display()
            );
            for r in records {
                conf.push_str(&format!("  local-data: \"{r}\"\n"));
            }
            conf.push_str("remote-control:\n  control-enable: no\n");
            let cf = dir.path().join("unbound.conf");
            fs::write(&cf, conf).unwrap();
            let log = dir.path().join("log");
            let mut child = Command::new("/usr/sbin/unbound")
                .args(["-d", "-c"])
                .arg(&cf)
                .stdout(Stdio::null())
                .stderr(Stdio::from(File::create(&log).unwrap()))
                .spawn()
                .expect("unbound (apt-get install unbound)");
            let up = wait_until(5, || {
                let l = fs::read_to_string(&log).unwrap_or_default();
                l.contains("start of service") || l.contains("error") || l.contains("fatal")
            });
            let l = fs::read_to_string(&log).unwrap_or_default();
            if up && l.contains("start of service") {
                return Unbound { port, child, _dir: dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(l.contains("bind") || l.contains("address already in use"), "unbound failed:\n{l}");
        }
        panic!("unbound could not get a port");
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` every 20 ms for up to `secs`.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
}

/// Postfix's smtp-sink on ip:port, dumping each transaction to a file.
pub struct Sink {
    pub port: u16,
    child: Child,
    pub dir: TempDir,
}

impl Sink {
    pub fn start(ip: &str, extra: &[&str]) -> Sink {
        let dir = TempDir::new("sink");
        let dump = dir.path().join("dump");
        fs::create_dir_all(&dump).unwrap();
        fs::set_permissions(&dump, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let port = free_port();
        let mut cmd = Command::new("/usr/sbin/smtp-sink");
        if is_root() {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .args(extra)
            .arg("-d")
            .arg(format!("{}/msg.", dump.display()))
            .arg(format!("{ip}:{port}"))
            .arg("64")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink (apt-get install postfix)");
        assert!(wait_until(5, || std::net::TcpStream::connect((ip, port)).is_ok()), "smtp-sink did not start");
        Sink { port, child, dir }
    }

    /// The dumped transactions (smtp-sink's format: X- headers, then the message).
    pub fn messages(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.dir.path().join("dump"))
            .unwrap()
            .flatten()
            .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        v.sort();
        v
    }

    pub fn wait_messages(&self, n: usize) -> Vec<String> {
        wait_until(10, || self.messages().iter().filter(|m| m.contains("\n.\n") || m.ends_with('\n')).count() >= n);
        self.messages()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for `name` (and 127.0.0.1, ::1) signed by it, in
/// `dir`: ca.pem, and control/servercert.pem + serverkey.pem as a home expects.
pub fn make_certs(dir: &Path, name: &str) {
    fs::create_dir_all(dir.join("control")).unwrap();
    let sh = format!(
        "set -e; cd '{d}'
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj '/CN=postern test CA' -keyout ca.key -out ca.pem
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN={name}' -keyout control/serverkey.pem -out server.csr
        printf 'subjectAltName=DNS:{name},IP:127.0.0.1,IP:::1\\n' > ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out control/servercert.pem",
        d = dir.display()
    );
    let out = Command::new("sh").arg("-c").arg(sh).output().unwrap();
    assert!(out.status.success(), "openssl: {}", text(&out));
}
