//! MTA-STS (RFC 8461) in postern-remote: policies published through unbound
//! (the `_mta-sts` TXT record) and served over HTTPS by a server in this test
//! (rustls, with a certificate from a test CA that control/tlsca.pem trusts, on
//! the port control/mtastsport names), MX hosts played by fake SMTP servers.

use crate::fixture::*;
use crate::remote::{home, Outcome};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// Every test's zone: each DOMAIN.sts.test has the MX mx.DOMAIN.sts.test and the
/// policy host mta-sts.DOMAIN.sts.test, both on 127.0.0.1.
const DOMAINS: &[(&str, &str)] = &[
    ("good", "enforce"),
    ("plain", "enforce"),
    ("name", "enforce"),
    ("unlisted", "enforce"),
    ("tplain", "testing"),
    ("tname", "testing"),
    ("big", "enforce"),
];

fn zone() -> Vec<String> {
    let mut z = Vec::new();
    for (d, _) in DOMAINS {
        z.push(format!("{d}.sts.test. MX 10 mx.{d}.sts.test."));
        z.push(format!("mx.{d}.sts.test. A 127.0.0.1"));
        z.push(format!("mta-sts.{d}.sts.test. A 127.0.0.1"));
        z.push(format!("_mta-sts.{d}.sts.test. TXT \"v=STSv1; id={d}1\""));
    }
    // A domain without a policy.
    z.push("nopolicy.sts.test. MX 10 mx.nopolicy.sts.test.".into());
    z.push("mx.nopolicy.sts.test. A 127.0.0.1".into());
    z
}

/// The policy files the HTTPS server hands out, by Host.
fn policies() -> HashMap<String, Vec<u8>> {
    let mut m = HashMap::new();
    for (d, mode) in DOMAINS {
        let mx = match *d {
            "unlisted" => "mx.elsewhere.test".to_string(),
            "plain" => "*.plain.sts.test".to_string(),
            _ => format!("mx.{d}.sts.test"),
        };
        let mut body = format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n").into_bytes();
        if *d == "big" {
            // Valid lines, but more than 64 KiB of them.
            while body.len() <= 64 * 1024 {
                body.extend_from_slice(b"mx: padding.big.sts.test\r\n");
            }
        }
        let mut reply = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        reply.extend_from_slice(&body);
        m.insert(format!("mta-sts.{d}.sts.test"), reply);
    }
    m
}

/// A CA (`dir/ca.pem`) and for each (name, SANs) a certificate it signed, in
/// `dir/NAME/control/` as a home (or fake server) expects.
fn make_sts_certs(dir: &Path, leaves: &[(&str, Vec<String>)]) {
    let mut sh = format!(
        "set -e; cd '{}'
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj '/CN=postern sts test CA' -keyout ca.key -out ca.pem\n",
        dir.display()
    );
    for (name, sans) in leaves {
        let san: Vec<String> = sans.iter().map(|s| format!("DNS:{s}")).collect();
        sh.push_str(&format!(
            "mkdir -p {name}/control
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN={first}' -keyout {name}/control/serverkey.pem -out {name}.csr
            printf 'subjectAltName={san}\\n' > {name}.ext
            openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile {name}.ext -out {name}/control/servercert.pem\n",
            first = sans[0],
            san = san.join(",")
        ));
    }
    let out = Command::new("sh").arg("-c").arg(sh).output().unwrap();
    assert!(out.status.success(), "openssl: {}", text(&out));
}

/// An HTTPS server in a thread: answers each GET with the reply for its Host
/// (404 for others) and records the Hosts asked for.
struct FakeHttps {
    port: u16,
    hosts: Arc<Mutex<Vec<String>>>,
}

impl FakeHttps {
    fn start(cert_dir: PathBuf, replies: HashMap<String, Vec<u8>>) -> FakeHttps {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let (h2, replies) = (hosts.clone(), Arc::new(replies));
        let config = postern::net::tls::server_config(&postern::os::home::Home::at(cert_dir)).unwrap().unwrap();
        std::thread::spawn(move || {
            for stream in l.incoming().flatten() {
                let (config, replies, hosts) = (config.clone(), replies.clone(), h2.clone());
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let req = String::from_utf8_lossy(&req).into_owned();
                    let host = req.lines().find_map(|l| l.strip_prefix("Host: ")).unwrap_or("").trim().to_string();
                    let path_ok = req.starts_with("GET /.well-known/mta-sts.txt HTTP/1.");
                    hosts.lock().unwrap().push(host.clone());
                    let reply = match replies.get(&host) {
                        Some(r) if path_ok => r.clone(),
                        _ => b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno\r\n".to_vec(),
                    };
                    let _ = tls.write_all(&reply);
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        FakeHttps { port, hosts }
    }

    fn hits(&self, host: &str) -> usize {
        self.hosts.lock().unwrap().iter().filter(|h| *h == host).count()
    }
}

/// Everything one test needs: DNS, certificates (the HTTPS server's, a right
/// one per MX and a wrong one), the HTTPS server and a home pointed at them.
struct Setup {
    dns: Unbound,
    certs: TempDir,
    https: FakeHttps,
}

fn setup() -> Setup {
    let z = zone();
    let dns = Unbound::start(&z.iter().map(String::as_str).collect::<Vec<_>>());
    let certs = TempDir::new("sts-certs");
    let mut leaves = vec![
        ("https", DOMAINS.iter().map(|(d, _)| format!("mta-sts.{d}.sts.test")).collect::<Vec<_>>()),
        ("wrong", vec!["other.test".to_string()]),
    ];
    for (d, _) in DOMAINS {
        leaves.push((d, vec![format!("mx.{d}.sts.test")]));
    }
    make_sts_certs(certs.path(), &leaves);
    let https = FakeHttps::start(certs.path().join("https"), policies());
    Setup { dns, certs, https }
}

impl Setup {
    /// A home sending every domain by MX to `smtp_port`, trusting the test CA,
    /// fetching policies from our HTTPS server, with a cache postern-r may write.
    fn home(&self, tag: &str, smtp_port: u16) -> Home {
        let h = home(tag, smtp_port, self.dns.port());
        h.control("mtastsport", &format!("{}\n", self.https.port)).control("timeoutmtasts", "5\n");
        fs::copy(self.certs.path().join("ca.pem"), h.join("control/tlsca.pem")).unwrap();
        fs::create_dir_all(h.join("run/sts")).unwrap();
        if is_root() {
            let st = Command::new("chown").arg("postern-r").arg(h.join("run/sts")).status().unwrap();
            assert!(st.success());
        }
        h
    }

    /// A fake MX with STARTTLS and the certificate of `leaf` (a domain, or "wrong").
    fn tls_mx(&self, leaf: &str) -> FakeSmtp {
        let dir = self.certs.path().join(leaf);
        FakeSmtp::start("127.0.0.1", FakeScript { tls: FakeTls::Good, cert_dir: Some(dir), ..FakeScript::default() })
    }
}

/// Run postern-remote for one recipient at `domain`; its reports and its log.
fn send(h: &Home, domain: &str) -> (Outcome, String) {
    let path = h.join("message");
    fs::write(&path, message("sts", "secret body")).unwrap();
    let out = h
        .cmd("postern-remote")
        .arg(domain)
        .arg("me@a.test")
        .arg(format!("u@{domain}"))
        .stdin(Stdio::from(File::open(&path).unwrap()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut reports: Vec<(char, String)> = out.stdout[..out.stdout.len() - 1]
        .split(|&b| b == 0)
        .map(|r| (r[0] as char, String::from_utf8_lossy(&r[1..]).into_owned()))
        .collect();
    let message = reports.pop().unwrap();
    (Outcome { recipients: reports, message }, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn sent_mail(s: &FakeSession) -> bool {
    s.lines.iter().any(|l| l.starts_with("MAIL")) || !s.data.is_empty()
}

#[test]
fn enforce_delivers_over_verified_tls_and_caches_the_policy() {
    let s = setup();
    let mx = s.tls_mx("good");
    let h = s.home("sts-good", mx.port());
    let (o, log) = send(&h, "good.sts.test");
    assert_eq!(o.message.0, 'K', "{o:?}\n{log}");
    assert!(mx.sessions()[0].tls, "over TLS");
    assert!(log.contains("good.sts.test: mta-sts enforce id=good1 (fetched): delivered"), "{log}");
    let cached = fs::read_to_string(h.join("run/sts/good.sts.test")).unwrap();
    assert!(cached.contains("id good1\n") && cached.contains("mode: enforce"), "{cached}");
    assert_eq!(s.https.hits("mta-sts.good.sts.test"), 1);

    // The same id: the cache serves, no fetch.
    let (o, log) = send(&h, "good.sts.test");
    assert_eq!(o.message.0, 'K', "{o:?}\n{log}");
    assert!(log.contains("mta-sts enforce id=good1 (cached): delivered"), "{log}");
    assert_eq!(s.https.hits("mta-sts.good.sts.test"), 1);

    // A cached policy under another id: the TXT id changed, so it is fetched again.
    fs::write(h.join("run/sts/good.sts.test"), cached.replace("id good1\n", "id old\n")).unwrap();
    let (o, log) = send(&h, "good.sts.test");
    assert_eq!(o.message.0, 'K', "{o:?}\n{log}");
    assert!(log.contains("(fetched): delivered"), "{log}");
    assert_eq!(s.https.hits("mta-sts.good.sts.test"), 2);

    // The fetch fails (the policy host serves nothing on that port): the
    // unexpired cached policy still applies (RFC 8461 5.1).
    fs::write(h.join("run/sts/good.sts.test"), cached.replace("id good1\n", "id old\n")).unwrap();
    let dead = refused_port();
    h.control("mtastsport", &format!("{}\n", dead.port));
    let (o, log) = send(&h, "good.sts.test");
    assert_eq!(o.message.0, 'K', "{o:?}\n{log}");
    assert!(log.contains("failed") && log.contains("using the cached policy"), "{log}");
    assert!(log.contains("mta-sts enforce id=old (cached): delivered"), "{log}");
    assert!(mx.sessions().iter().all(|s| s.tls));
}

#[test]
fn enforce_never_sends_in_plain_text_nor_to_unlisted_hosts() {
    let s = setup();
    let mx = FakeSmtp::start("127.0.0.1", FakeScript::default());
    let h = s.home("sts-plain", mx.port());
    let (o, log) = send(&h, "plain.sts.test");
    assert_eq!(o.message.0, 'Z', "{o:?}\n{log}");
    assert!(o.message.1.starts_with("4.7.4 ") && o.message.1.contains("MTA-STS policy (mta-sts enforce id=plain1)"), "{o:?}");
    assert!(o.message.1.contains("does not offer STARTTLS"), "{o:?}");
    assert!(log.contains("plain.sts.test: mta-sts enforce id=plain1 (fetched): deferred"), "{log}");
    let sessions = mx.sessions();
    assert_eq!(sessions.len(), 1, "no plain-text retry: {sessions:?}");
    assert!(!sent_mail(&sessions[0]), "{sessions:?}");

    // The policy lists only mx.elsewhere.test: the domain's own MX is not tried.
    let (o, log) = send(&h, "unlisted.sts.test");
    assert_eq!(o.message.0, 'Z', "{o:?}\n{log}");
    assert!(o.message.1.contains("is not among the MX hosts the policy lists"), "{o:?}");
    assert_eq!(mx.sessions().len(), 1, "no connection");

    // Without a policy the same host gets the message (in plain text).
    let (o, log) = send(&h, "nopolicy.sts.test");
    assert_eq!(o.message.0, 'K', "{o:?}\n{log}");
    assert!(log.contains("nopolicy.sts.test: no mta-sts policy: delivered"), "{log}");
}

#[test]
fn enforce_refuses_a_certificate_for_another_name() {
    let s = setup();
    let mx = s.tls_mx("wrong");
    let h = s.home("sts-name", mx.port());
    let (o, log) = send(&h, "name.sts.test");
    assert_eq!(o.message.0, 'Z', "{o:?}\n{log}");
    assert!(o.message.1.starts_with("4.7.5 ") && o.message.1.contains("failed TLS") && o.message.1.contains("ertificate"), "{o:?}");
    let sessions = mx.sessions();
    assert_eq!(sessions.len(), 1, "no plain-text retry: {sessions:?}");
    assert!(!sent_mail(&sessions[0]), "{sessions:?}");
}

#[test]
fn testing_policies_deliver_and_log_what_enforce_would_refuse() {
    let s = setup();
    let plain = FakeSmtp::start("127.0.0.1", FakeScript::default());
    let h = s.home("sts-testing", plain.port());
    let (o, log) = send(&h, "tplain.sts.test");
    assert_eq!(o.message.0, 'K', "{o:?}\n{log}");
    assert!(log.contains("mta-sts testing id=tplain1: mx.tplain.sts.test [127.0.0.1]") && log.contains("does not offer STARTTLS"), "{log}");
    assert!(log.contains("tplain.sts.test: mta-sts testing id=tplain1 (fetched): delivered"), "{log}");
    assert!(sent_mail(&plain.sessions()[0]));

    let wrong = s.tls_mx("wrong");
    h.control("smtproutes", &format!("::{}\n", wrong.port()));
    let (o, log) = send(&h, "tname.sts.test");
    assert_eq!(o.message.0, 'K', "{o:?}\n{log}");
    assert!(
        log.contains("mta-sts testing id=tname1: the certificate of mx.tname.sts.test") && log.contains("enforce would not deliver"),
        "{log}"
    );
    let sessions = wrong.sessions();
    assert!(sessions[0].tls && sent_mail(&sessions[0]), "{sessions:?}");
}

#[test]
fn an_oversized_policy_is_refused_and_logged() {
    let s = setup();
    let mx = FakeSmtp::start("127.0.0.1", FakeScript::default());
    let h = s.home("sts-big", mx.port());
    let (o, log) = send(&h, "big.sts.test");
    assert_eq!(o.message.0, 'K', "no usable policy, delivered as without one: {o:?}\n{log}");
    assert!(log.contains("the policy is larger than 65536 bytes; refused"), "{log}");
    assert!(log.contains("big.sts.test: no mta-sts policy: delivered"), "{log}");
    assert!(!h.join("run/sts/big.sts.test").exists(), "not cached");
}
