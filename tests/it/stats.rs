//! postern-admin stats: counters written by a real postern-smtpd and
//! postern-send while they accept, refuse, deliver, defer and bounce, and the
//! Prometheus text format, parsed strictly.

use crate::fixture::*;
use std::collections::BTreeMap;

/// far.test's server: `nobody` is refused for good, `later` for now.
fn far_rcpt(addr: &str) -> String {
    if addr.starts_with("nobody@") {
        "550 5.1.1 no such user here".into()
    } else if addr.starts_with("later@") {
        "451 4.3.0 try again later".into()
    } else {
        "250 2.1.5 ok".into()
    }
}

/// One sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parse the text exposition format strictly: every family starts with
/// `# HELP name text` then `# TYPE name counter|gauge`, and every sample line
/// that follows is `name{label="value",...} number` of that family, with
/// valid names and escapes. Panics naming the line otherwise.
fn parse_prometheus(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    fn is_name(s: &str) -> bool {
        let mut c = s.chars();
        matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
    }
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let (mut samples, mut types) = (Vec::new(), BTreeMap::new());
    let mut family: Option<String> = None;
    let mut expect_type: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(expect_type.is_none(), "HELP without TYPE before {}", at());
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("HELP without text, {}", at()));
            assert!(is_name(name) && !help.trim().is_empty(), "{}", at());
            assert!(!types.contains_key(name), "family {name} given twice, {}", at());
            expect_type = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
            assert_eq!(Some(name.to_string()), expect_type.take(), "TYPE must follow its HELP, {}", at());
            assert!(kind == "counter" || kind == "gauge", "{}", at());
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter names end in _total, {}", at());
            }
            types.insert(name.to_string(), kind.to_string());
            family = Some(name.to_string());
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "stray line, {}", at());
            assert!(expect_type.is_none(), "sample before TYPE, {}", at());
            let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{}", at()));
            let name = &line[..name_end];
            assert_eq!(Some(name), family.as_deref(), "sample outside its family, {}", at());
            let mut labels = BTreeMap::new();
            let mut rest = &line[name_end..];
            if let Some(r) = rest.strip_prefix('{') {
                let mut r = r;
                loop {
                    let eq = r.find("=\"").unwrap_or_else(|| panic!("label without =\", {}", at()));
                    let key = &r[..eq];
                    assert!(is_name(key) && !key.starts_with("__"), "label name {key:?}, {}", at());
                    let mut value = String::new();
                    let mut chars = r[eq + 2..].char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, '\\')) => value.push('\\'),
                                Some((_, '"')) => value.push('"'),
                                Some((_, 'n')) => value.push('\n'),
                                _ => panic!("bad escape, {}", at()),
                            },
                            Some((i, '"')) => break eq + 2 + i + 1,
                            Some((_, c)) => value.push(c),
                            None => panic!("unterminated label value, {}", at()),
                        }
                    };
                    assert!(labels.insert(key.to_string(), value).is_none(), "label {key} twice, {}", at());
                    r = &r[end..];
                    if let Some(more) = r.strip_prefix(',') {
                        r = more;
                    } else if let Some(done) = r.strip_prefix('}') {
                        rest = done;
                        break;
                    } else {
                        panic!("expected , or }}, {}", at());
                    }
                }
            }
            let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("one space before the value, {}", at()));
            assert!(!value.contains(' '), "no timestamps here, {}", at());
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("value {value:?}, {}", at()));
            assert!(v >= 0.0 && v.fract() == 0.0, "{}", at());
            assert!(!samples.iter().any(|(n, l, _): &Sample| n == name && *l == labels), "the same series twice, {}", at());
            samples.push((name.to_string(), labels, v));
        }
    }
    assert!(expect_type.is_none(), "the last HELP has no TYPE");
    (samples, types)
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples
        .iter()
        .find(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.get(k) == Some(v)))
        .map(|s| s.2)
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

fn prometheus(i: &Instance) -> (Vec<Sample>, BTreeMap<String, String>) {
    let o = i.run("postern-admin", &["stats", "--prometheus"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    parse_prometheus(&String::from_utf8(o.stdout).unwrap())
}

#[test]
fn stats_count_what_smtpd_and_send_did_and_prometheus_reads_them() {
    let far = FakeSmtp::start("127.0.0.1", FakeScript { rcpt: far_rcpt, ..FakeScript::default() });
    let i = Instance::create("stats");
    i.control("smtproutes", &format!("far.test:127.0.0.1:{}\n", far.port()));
    i.start();
    let alice = i.adduser("alice", "pw");
    let _ = alice;
    let md = i.maildir("alice");

    // Before anything happened: every family is there, at zero.
    let (s, types) = prometheus(&i);
    assert_eq!(value(&s, "postern_smtp_accepted_messages_total", &[]), 0.0);
    assert_eq!(value(&s, "postern_queue_messages", &[]), 0.0);
    assert_eq!(types.get("postern_queue_oldest_message_age_seconds").map(String::as_str), Some("gauge"));
    assert_eq!(types.get("postern_deliveries_total").map(String::as_str), Some("counter"));

    // By SMTP: one message accepted; an unknown user and a relay attempt refused.
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<someone@sender.test>", 250);
    c.expect(&format!("RCPT TO:<{}>", i.address("alice")), 250);
    let (code, reply) = c.cmd(&format!("RCPT TO:<nobody@{}>", i.domain));
    assert!(code == 550 && reply.contains("5.1.1"), "{code} {reply}");
    let (code, reply) = c.cmd("RCPT TO:<someone@elsewhere.example>");
    assert!(code == 554 && reply.contains("5.7.1"), "{code} {reply}");
    c.expect("DATA", 354);
    c.send(b"Subject: counted\r\n\r\nhello\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    c.expect("QUIT", 221);
    i.wait_mail(&md, 1);

    // Remote: delivered, refused for good (a bounce to alice), refused for now.
    i.send(&i.address("alice"), &["ok@far.test", "nobody@far.test", "later@far.test"], b"Subject: out\n\nbye\n");
    i.wait_mail(&md, 2);

    let (s, _) = wait_for(20, "the remote results counted", || {
        let (s, t) = prometheus(&i);
        (value(&s, "postern_bounces_total", &[]) >= 1.0 && value(&s, "postern_queue_messages", &[]) == 1.0).then_some((s, t))
    });
    assert_eq!(value(&s, "postern_smtp_accepted_messages_total", &[]), 1.0);
    assert!(value(&s, "postern_smtp_accepted_bytes_total", &[]) > 20.0);
    assert_eq!(value(&s, "postern_smtp_refusals_total", &[("status", "5.1.1"), ("reason", "no such mailbox")]), 1.0);
    assert_eq!(value(&s, "postern_smtp_refusals_total", &[("status", "5.7.1")]), 1.0);
    // alice's message by SMTP and the bounce.
    assert_eq!(value(&s, "postern_deliveries_total", &[("channel", "local"), ("result", "delivered")]), 2.0);
    assert_eq!(value(&s, "postern_deliveries_total", &[("channel", "remote"), ("result", "delivered")]), 1.0);
    assert_eq!(value(&s, "postern_deliveries_total", &[("channel", "remote"), ("result", "failed")]), 1.0);
    assert!(value(&s, "postern_deliveries_total", &[("channel", "remote"), ("result", "deferred")]) >= 1.0);
    assert_eq!(value(&s, "postern_remote_deliveries_total", &[("domain", "far.test"), ("result", "delivered")]), 1.0);
    assert_eq!(value(&s, "postern_remote_deliveries_total", &[("domain", "far.test"), ("result", "failed")]), 1.0);
    assert_eq!(value(&s, "postern_bounces_total", &[]), 1.0);
    assert_eq!(value(&s, "postern_queue_messages", &[]), 1.0);
    assert_eq!(value(&s, "postern_queue_pending_recipients", &[]), 1.0);

    // The same for people, and as a file for node_exporter's textfile collector.
    let o = i.run("postern-admin", &["stats"], b"");
    let human = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(human.contains("smtp: 1 messages accepted"), "{human}");
    assert!(human.contains("5.1.1") && human.contains("no such mailbox"), "{human}");
    assert!(human.contains("far.test") && human.contains("queue: 1 messages, 1 recipients pending"), "{human}");
    let prom = i.path().join("postern.prom");
    let o = i.run("postern-admin", &["stats", "--prometheus", "--output", prom.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (f, _) = parse_prometheus(&std::fs::read_to_string(&prom).unwrap());
    assert_eq!(value(&f, "postern_bounces_total", &[]), 1.0);
    let leftovers: Vec<_> =
        std::fs::read_dir(i.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Counters outlive a restart of the daemons.
    i.stop();
    i.start();
    let (s, _) = prometheus(&i);
    assert_eq!(value(&s, "postern_remote_deliveries_total", &[("domain", "far.test"), ("result", "delivered")]), 1.0);
    assert_eq!(value(&s, "postern_smtp_accepted_messages_total", &[]), 1.0);
}

#[test]
fn a_damaged_counter_file_is_named_and_mail_still_flows() {
    let i = Instance::started("statsbad");
    i.adduser("bob", "pw");
    std::fs::write(i.path().join("run/stats/smtpd"), vec![7u8; 4096]).unwrap();
    let o = i.run("postern-admin", &["stats"], b"");
    assert_eq!(o.status.code(), Some(111), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("run/stats/smtpd") && err.contains("remove it"), "{err}");
    // smtpd cannot count but still accepts, and says why in its log.
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<someone@sender.test>", 250);
    c.expect(&format!("RCPT TO:<{}>", i.address("bob")), 250);
    c.expect("DATA", 354);
    c.send(b"Subject: uncounted\r\n\r\nhello\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    i.wait_mail(&i.maildir("bob"), 1);
    assert!(i.smtp_log().contains("not counting for postern-admin stats"), "{}", i.smtp_log());
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_full_disk_under_the_counters_stops_the_counting_not_the_mail() {
    require_root();
    let i = Instance::create("statsfull");
    let dir = i.path().join("run/stats");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let _full = Tmpfs::mount(&dir, "64k");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.join("filler")).unwrap();
        while f.write_all(&[1u8; 4096]).is_ok() {}
    }
    i.start();
    i.adduser("bob", "pw");
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<someone@sender.test>", 250);
    c.expect(&format!("RCPT TO:<{}>", i.address("bob")), 250);
    c.expect("DATA", 354);
    c.send(b"Subject: disk full\r\n\r\nhello\r\n.\r\n");
    assert_eq!(c.reply().0, 250, "smtpd survives counting on a full disk");
    i.wait_mail(&i.maildir("bob"), 1);
    assert!(i.smtp_log().contains("not counting for postern-admin stats"), "{}", i.smtp_log());
    assert!(i.send_log().contains("not counting for postern-admin stats"), "{}", i.send_log());
}

#[test]
fn parser_rejects_what_prometheus_would() {
    for bad in [
        "# TYPE a_total counter\na_total 1\n",
        "# HELP a_total x\n# TYPE a_total counter\nb_total 1\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"x} 1\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total 1 2 3\n",
        "# HELP a_total x\n# TYPE a_total summary\na_total 1\n",
    ] {
        let r = std::panic::catch_unwind(|| parse_prometheus(bad));
        assert!(r.is_err(), "accepted {bad:?}");
    }
}
