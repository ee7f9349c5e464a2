//! Issue 15 regression tests: session.

use super::*;

/// SMTP session: the EHLO/MAIL/DATA dialogue up to 354.
fn up_to_data(c: &mut Client, to: &str) {
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<s@sender.test>", 250);
    c.expect(&format!("RCPT TO:<{to}>"), 250);
    c.expect("DATA", 354);
}

/// Nothing in the queue, and nothing left half-written in queue/tmp.
fn assert_nothing_queued(i: &Instance) {
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(i.queued(), 0);
    assert_eq!(fs::read_dir(i.join("queue/tmp")).unwrap().count(), 0, "a file left in queue/tmp");
}

/// Writes `data` a byte at a time, `gap` apart, from another thread, until it
/// is all sent or the server has closed the connection.
fn trickle(c: &Client, data: Vec<u8>, gap: std::time::Duration) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    let mut s = c.writer();
    std::thread::spawn(move || {
        for b in data {
            if s.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(gap);
        }
    })
}

/// An install is not unlimited (databytes has a default, advertised in EHLO),
/// MAIL's SIZE= over it is refused with 552 5.3.4, and a message is measured as
/// RFC 1870 says: the octets sent, each CRLF two (it used to count one).
#[test]
fn issue15_size_has_a_default_limit_and_counts_crlf_as_sent() {
    let i = Instance::create("i15-size");
    let md = i.adduser("alice", "x");
    i.start();
    let a = i.address("alice");
    let mut c = Client::smtp(i.smtp_port());
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.contains("SIZE 36700160\n"), "35 MB by default: {ehlo}");
    let t = c.expect("MAIL FROM:<s@sender.test> SIZE=36700161", 552);
    assert!(t.starts_with("5.3.4"), "{t}");
    c.expect("QUIT", 221);

    // 100 lines of "x": 300 bytes as sent, 200 once stored with LF.
    i.control("databytes", "250\n");
    let mut c = Client::smtp(i.smtp_port());
    up_to_data(&mut c, &a);
    c.send(&b"x\r\n".repeat(100));
    c.send(b".\r\n");
    let (code, t) = c.reply();
    assert_eq!(code, 552, "300 bytes as sent are over 250: {t}");
    assert!(t.starts_with("5.3.4"), "{t}");
    assert_nothing_queued(&i);
    // The session goes on; 50 lines (150 bytes) fit.
    c.expect("MAIL FROM:<s@sender.test>", 250);
    c.expect(&format!("RCPT TO:<{a}>"), 250);
    c.expect("DATA", 354);
    c.send(&b"y\r\n".repeat(50));
    c.send(b".\r\n");
    assert_eq!(c.reply().0, 250);
    let got = i.wait_mail(&md, 1);
    assert!(got[0].ends_with(&b"y\n".repeat(50)), "{}", String::from_utf8_lossy(&got[0]));
}

/// A command line sent a byte at a time (each read well within timeoutsmtpd)
/// is cut off by timeoutsmtpdline: 421 4.4.2 and the connection closed.
#[test]
fn issue15_a_slow_command_line_meets_its_deadline() {
    let i = Instance::create("i15-slowline");
    i.control("timeoutsmtpd", "30\n");
    i.control("timeoutsmtpdline", "2\n");
    i.start();
    let mut c = Client::smtp(i.smtp_port());
    let t0 = std::time::Instant::now();
    // 40 bytes, 250 ms apart: 10 s, five times the deadline.
    let mut line = b"NOOP ".to_vec();
    line.extend_from_slice(&[b'x'; 33]);
    line.extend_from_slice(b"\r\n");
    let w = trickle(&c, line, std::time::Duration::from_millis(250));
    let (code, t) = c.reply();
    assert_eq!(code, 421, "{t}");
    assert!(t.starts_with("4.4.2"), "{t}");
    assert!(t0.elapsed() >= std::time::Duration::from_millis(1900), "not before the deadline");
    assert!(c.closed());
    w.join().unwrap();
}

/// A message sent a byte at a time is cut off by timeoutsmtpddata: 421 4.4.2,
/// closed, nothing queued.
#[test]
fn issue15_a_slow_message_meets_its_deadline() {
    let i = Instance::create("i15-slowdata");
    i.adduser("alice", "x");
    i.control("timeoutsmtpd", "30\n");
    i.control("timeoutsmtpddata", "3\n");
    i.start();
    let mut c = Client::smtp(i.smtp_port());
    up_to_data(&mut c, &i.address("alice"));
    // 48 bytes, 250 ms apart: 12 s, four times the deadline.
    let w = trickle(
        &c,
        b"Subject: slow\r\n\r\n".iter().chain(&b"x\r\n".repeat(9)).chain(b".\r\n").copied().collect(),
        std::time::Duration::from_millis(250),
    );
    let (code, t) = c.reply();
    assert_eq!(code, 421, "{t}");
    assert!(t.starts_with("4.4.2"), "{t}");
    assert!(c.closed());
    w.join().unwrap();
    assert_nothing_queued(&i);
}

/// Refused recipients count as errors: after smtpdsofterrors each reply waits
/// longer, and smtpdmaxerrors ends the session with 421 (3,000 unknown RCPTs
/// used to get 3,000 quick 550s).
#[test]
fn issue15_refused_recipients_slow_down_and_end_the_session() {
    let i = Instance::create("i15-harvest");
    i.adduser("alice", "x");
    i.control("smtpdmaxerrors", "6\n");
    i.control("smtpdsofterrors", "2\n");
    i.control("smtpderrordelay", "300\n");
    i.start();
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<s@sender.test>", 250);
    let t0 = std::time::Instant::now();
    let mut codes = Vec::new();
    for n in 0..50 {
        let (code, t) = c.cmd(&format!("RCPT TO:<{}>", i.address(&format!("guess{n}"))));
        codes.push(code);
        if code == 421 {
            assert!(t.starts_with("4.7.0"), "{t}");
            break;
        }
    }
    assert_eq!(codes, [550, 550, 550, 550, 550, 421], "five refusals, then 421");
    // The 3rd, 4th and 5th waited 300, 600 and 900 ms.
    assert!(t0.elapsed() >= std::time::Duration::from_millis(1800), "{:?}", t0.elapsed());
    assert!(c.closed());
    // A relaying attempt counts too.
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<s@sender.test>", 250);
    let codes: Vec<u16> = (0..6).map(|n| c.cmd(&format!("RCPT TO:<x{n}@elsewhere.example>")).0).collect();
    assert_eq!(codes, [554, 554, 554, 554, 554, 421]);
}

/// A NUL byte in a message is refused after the final dot with 554 5.6.0 (it
/// used to be stored as is); the session goes on.
#[test]
fn issue15_a_nul_in_data_is_refused_and_the_session_goes_on() {
    let i = Instance::create("i15-nul");
    let md = i.adduser("alice", "x");
    i.start();
    let a = i.address("alice");
    let mut c = Client::smtp(i.smtp_port());
    up_to_data(&mut c, &a);
    c.send(b"Subject: nul\r\n\r\nbefore\0after\r\n.\r\n");
    let (code, t) = c.reply();
    assert_eq!(code, 554, "{t}");
    assert!(t.starts_with("5.6.0") && t.contains("NUL"), "{t}");
    assert_nothing_queued(&i);
    c.expect("MAIL FROM:<s@sender.test>", 250);
    c.expect(&format!("RCPT TO:<{a}>"), 250);
    c.expect("DATA", 354);
    c.send(b"Subject: clean\r\n\r\nfine\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    let got = i.wait_mail(&md, 1);
    assert!(got[0].ends_with(b"Subject: clean\n\nfine\n"), "{}", String::from_utf8_lossy(&got[0]));
}

/// Message text sent with DATA, before the 354 reply (RFC 2920 lets DATA end a
/// pipelined group, not carry the message), is refused with 554 5.5.0 and the
/// connection closed: it used to be taken as the message, and after a failed
/// DATA its lines would have run as commands.
#[test]
fn issue15_text_before_the_354_is_refused_and_the_session_closed() {
    let i = Instance::create("i15-pipe");
    i.adduser("alice", "x");
    i.start();
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<s@sender.test>", 250);
    c.expect(&format!("RCPT TO:<{}>", i.address("alice")), 250);
    c.send(b"DATA\r\nSubject: early\r\n\r\nsmuggled\r\n.\r\n");
    let (code, t) = c.reply();
    assert_eq!(code, 554, "{t}");
    assert!(t.starts_with("5.5.0") && t.contains("pipelining"), "{t}");
    assert!(c.closed());
    assert_nothing_queued(&i);
    // A DATA that would fail (no MAIL) does not run the text after it as commands.
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO client.test", 250);
    c.send(b"DATA\r\nMAIL FROM:<s@sender.test>\r\n");
    let (code, t) = c.reply();
    assert_eq!(code, 554, "{t}");
    assert!(c.closed());
}

/// The -c and -C of the `postern-listen ... postern-smtpd` line of an install
/// file, or of its SMTP_LIMITS (the setting in /etc/default/postern, and the
/// defaults the unit and the init script have without it).
fn smtp_limits(file: &str) -> (usize, usize) {
    let text = fs::read_to_string(repo().join(file)).unwrap();
    let line = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| match l.split_once("SMTP_LIMITS=") {
            Some((_, rest)) => Some(rest.trim_start_matches('"').split('"').next().unwrap_or("").to_string()),
            None => (l.contains("postern-listen") && l.contains("postern-smtpd") && l.contains(" -c ")).then(|| l.to_string()),
        })
        .unwrap_or_else(|| panic!("{file}: no SMTP listener"));
    let line = line.as_str();
    let words: Vec<&str> = line.split_whitespace().collect();
    let opt = |o: &str| {
        words
            .iter()
            .position(|w| *w == o)
            .and_then(|i| words.get(i + 1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{file}: no {o} in {line}"))
    };
    (opt("-c"), opt("-C"))
}

/// Installs (the systemd unit and the init script scripts/install puts in
/// place) give one client address at most a tenth of the SMTP connections, so
/// that one host cannot take every slot (they allowed a fifth). Test instances
/// keep -C as high as -c: all their clients come from 127.0.0.1.
#[test]
fn issue15_installs_limit_smtp_connections_per_address_well_below_the_total() {
    for file in ["scripts/postern.default", "scripts/postern-smtp.service", "scripts/postern.init"] {
        let (total, per_address) = smtp_limits(file);
        assert!(per_address * 10 <= total, "{file}: -C {per_address} of -c {total}");
    }
    assert_eq!(smtp_limits("scripts/instance").0, smtp_limits("scripts/instance").1);
}

/// A TLS ClientHello, made by Python's ssl module (no connection).
fn client_hello() -> Vec<u8> {
    let script = "import ssl,sys\nctx=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\nctx.check_hostname=False\nctx.verify_mode=ssl.CERT_NONE\n\
                  i,o=ssl.MemoryBIO(),ssl.MemoryBIO()\ns=ctx.wrap_bio(i,o)\ntry: s.do_handshake()\nexcept ssl.SSLWantReadError: pass\nsys.stdout.buffer.write(o.read())";
    let out = std::process::Command::new("python3").args(["-c", script]).output().unwrap();
    assert!(out.status.success() && out.stdout.len() > 100, "{}", text(&out));
    out.stdout
}

/// The TLS handshake after STARTTLS is bounded like a command line: a
/// ClientHello sent a byte at a time no longer holds the session.
#[test]
fn issue15_a_slow_tls_handshake_meets_the_line_deadline() {
    let i = Instance::create("i15-slowtls");
    i.control("timeoutsmtpd", "30\n");
    i.control("timeoutsmtpdline", "2\n");
    i.start();
    let mut c = Client::smtp(i.smtp_port());
    c.expect("EHLO client.test", 250);
    c.expect("STARTTLS", 220);
    // About 500 bytes, 250 ms apart: two minutes.
    let w = trickle(&c, client_hello(), std::time::Duration::from_millis(250));
    assert!(c.closed(), "the server hangs up (within the client's 15 s read timeout)");
    w.join().unwrap();
}
