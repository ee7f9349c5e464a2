//! POP3 end to end: instances from scripts/instance serving their virtual users
//! through postern-listen, popup, auth and pop3d; real clients (Python's poplib,
//! fetchmail, mpop) over plain and STLS, and the raw fixture::Client for the bad
//! input.

use crate::fixture::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A started instance with a short POP3 timeout and these control files.
fn pop3_instance(tag: &str, control: &[(&str, &str)]) -> Instance {
    let i = Instance::create(tag);
    i.control("timeoutpop3", "20\n");
    for (name, value) in control {
        i.control(name, &format!("{value}\n"));
    }
    i.start();
    i
}

/// poplib: log in (plain or STLS), then print per message "N UIDL HEX(bytes)",
/// optionally deleting everything.
const POPLIB: &str = r#"
import poplib, ssl, sys
port, user, pw, cert, dele = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
p = poplib.POP3("127.0.0.1", port, timeout=20)
if cert:
    p.stls(ssl.create_default_context(cafile=cert))
p.user(user)
p.pass_(pw)
n, _ = p.stat()
uidls = dict(l.split() for l in p.uidl()[1])
for i in range(1, n + 1):
    resp, lines, octets = p.retr(i)
    data = b"".join(l + b"\n" for l in lines)
    print(i, uidls[str(i).encode()].decode(), data.hex())
    if dele:
        p.dele(i)
p.quit()
"#;

fn poplib(port: u16, user: &str, pw: &str, cert: Option<&Path>, dele: bool) -> Vec<(String, Vec<u8>)> {
    let cert = cert.map(|c| c.to_str().unwrap().to_string()).unwrap_or_default();
    let out = python(POPLIB, &[&port.to_string(), user, pw, &cert, if dele { "1" } else { "0" }]);
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let bytes = (0..f[2].len()).step_by(2).map(|i| u8::from_str_radix(&f[2][i..i + 2], 16).unwrap()).collect();
            (f[1].to_string(), bytes)
        })
        .collect()
}

fn sample_messages() -> Vec<Vec<u8>> {
    let mut big = String::new();
    for i in 0..3000 {
        big.push_str(&format!("line {i} of a big message, with enough text to be long\n"));
        if i % 100 == 0 {
            big.push_str(".a line starting with a dot\n..two dots\n.\n");
        }
    }
    vec![message("one", "Hello.\n.\nA dot alone above."), message("two", &big), message("three", "no trailing newline")]
}

#[test]
fn poplib_plain_and_stls_get_exactly_what_was_delivered_and_uidls_are_stable() {
    let p = pop3_instance("pop3lib", &[]);
    p.adduser("alice", "pw-a");
    let delivered = p.deliver("alice", &sample_messages());
    let user = p.address("alice");
    let plain = poplib(p.pop3_port(), &user, "pw-a", None, false);
    assert_eq!(plain.len(), 3, "log:\n{}", p.pop3_log());
    let got: Vec<Vec<u8>> = plain.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(got, delivered, "RETR gives the delivered bytes (LF lines, dots unstuffed)");
    // Moved new/ -> cur/ with :2, as qmail-pop3d does, once the session has
    // hung up (so the client did not wait for it).
    wait_for(10, "the listed messages to move to cur/", || maildir_new(&p.maildir("alice")).is_empty().then_some(()));
    let cur: Vec<String> =
        fs::read_dir(p.maildir("alice").join("cur")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(cur.len() == 3 && cur.iter().all(|n| n.ends_with(":2,")), "{cur:?}");
    // Over STLS, and again after a restart: the same UIDLs.
    let tls = poplib(p.pop3_port(), &user, "pw-a", Some(&p.cert()), false);
    assert_eq!(tls, plain);
    p.stop();
    p.start();
    let again = poplib(p.pop3_port(), &user, "pw-a", Some(&p.cert()), true);
    assert_eq!(again, plain, "UIDLs survive a restart");
    let uidls: std::collections::HashSet<_> = plain.iter().map(|(u, _)| u.clone()).collect();
    assert_eq!(uidls.len(), 3, "UIDLs are unique");
    // Deleted at QUIT.
    assert!(poplib(p.pop3_port(), &user, "pw-a", None, false).is_empty());
    assert_eq!(fs::read_dir(p.maildir("alice").join("cur")).unwrap().count(), 0);
}

/// Fetch (and delete) everything of `local` with fetchmail over STLS, checking
/// the certificate; the messages, smallest first.
fn fetchmail(p: &Instance, local: &str, pw: &str) -> Vec<Vec<u8>> {
    let t = TempDir::new("fetchmail");
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    let rc = t.path().join("fetchmailrc");
    fs::write(
        &rc,
        format!(
            "set invisible\npoll 127.0.0.1 service {} protocol pop3 user '{}' there with password '{pw}' is root here\n  sslproto tls1.2+ sslcertck sslcertfile {} sslcommonname {} fetchall no keep no rewrite\n  mda \"cat > {}/m.$$\"\n",
            p.pop3_port(),
            p.address(local),
            p.cert().display(),
            p.domain,
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
    assert!(o.status.success(), "fetchmail: {}\npop3 log:\n{}", text(&o), p.pop3_log());
    assert!(String::from_utf8_lossy(&o.stdout).contains("POP3> STLS"), "{}", text(&o));
    let mut got: Vec<Vec<u8>> = fs::read_dir(&out).unwrap().map(|e| fs::read(e.unwrap().path()).unwrap()).collect();
    got.sort_by_key(|m| m.len());
    got
}

#[test]
fn fetchmail_over_stls_gets_the_delivered_bytes() {
    let p = pop3_instance("pop3fm", &[]);
    p.adduser("bob", "pw b");
    let mut delivered = p.deliver("bob", &sample_messages()[..2]);
    delivered.sort_by_key(|m| m.len());
    assert_eq!(fetchmail(&p, "bob", "pw b"), delivered, "fetchmail's copies equal the delivered messages");
    assert_eq!(fs::read_dir(p.maildir("bob").join("cur")).unwrap().count(), 0, "fetched and deleted");
}

#[test]
fn sent_by_smtp_and_read_with_fetchmail_over_stls() {
    let p = pop3_instance("pop3e2e", &[]);
    let md = p.adduser("kim", "pw-k");
    let sent = message("by smtp", "Sent with SMTP.\n.leading dot\nRead with fetchmail over STLS.");
    let sent_crlf = String::from_utf8(sent.clone()).unwrap().replace('\n', "\r\n");
    python(
        r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.sendmail("sender@sender.test", [sys.argv[2]], sys.argv[3].encode())
s.quit()
"#,
        &[&p.smtp_port().to_string(), &p.address("kim"), &sent_crlf],
    );
    let delivered = p.wait_mail(&md, 1);
    let got = fetchmail(&p, "kim", "pw-k");
    assert_eq!(got, delivered, "fetchmail gets the delivered bytes");
    assert!(got[0].ends_with(&sent), "and they end with what was sent:\n{}", String::from_utf8_lossy(&got[0]));
}

#[test]
fn mpop_over_stls_with_auth_plain_delivers_to_a_maildir() {
    let p = pop3_instance("pop3mp", &[]);
    p.adduser("carol", "pw-c");
    let delivered = p.deliver("carol", &sample_messages());
    let t = TempDir::new("mpop");
    let md = t.path().join("Maildir");
    make_maildir(&md);
    let conf = t.path().join("mpoprc");
    fs::write(
        &conf,
        format!(
            "account default\nhost 127.0.0.1\nport {}\nuser {}\npassword pw-c\nauth plain\ntls on\ntls_starttls on\ntls_trust_file {}\ndelivery maildir {}\nreceived_header off\nkeep off\nuidls_file {}/uidls\n",
            p.pop3_port(),
            p.address("carol"),
            p.cert().display(),
            md.display(),
            t.path().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).unwrap();
    let o = Command::new("mpop").args(["-C", conf.to_str().unwrap(), "-a"]).env("HOME", t.path()).output().unwrap();
    assert!(o.status.success(), "mpop: {}\npop3 log:\n{}", text(&o), p.pop3_log());
    let mut got = maildir_new(&md);
    got.sort();
    let mut want = delivered;
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn bad_commands_get_errors_and_the_session_goes_on() {
    let p = pop3_instance("pop3bad", &[]);
    p.adduser("dave", "pw-d");
    p.deliver("dave", &[message("a", "first"), message("b", "second")]);
    let mut c = Client::connect(p.pop3_port());
    let greeting = c.line();
    assert!(greeting.starts_with("+OK ") && !greeting.contains('<'), "no APOP banner: {greeting}");
    // Wrong state before the login.
    assert!(c.ask("STAT").starts_with("-ERR"));
    assert!(c.ask("RETR 1").starts_with("-ERR"));
    assert!(c.ask("PASS x").starts_with("-ERR"), "PASS before USER");
    assert_eq!(c.ask("CAPA"), "+OK capability list follows");
    let capa = String::from_utf8(c.dot_body()).unwrap();
    for k in ["USER", "UIDL", "TOP", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "SASL PLAIN", "STLS", "IMPLEMENTATION"] {
        assert!(capa.contains(k), "{k} in {capa}");
    }
    // An over-long line and a NUL, before and after the login.
    assert!(c.ask(&format!("USER {}", "x".repeat(300))).starts_with("-ERR line too long"));
    c.send(b"US\0ER x\r\n");
    assert!(c.line().starts_with("-ERR NUL"));
    assert!(c.login(&p.address("dave"), "pw-d").starts_with("+OK 2 messages"));
    assert!(c.ask(&format!("NOOP {}", "y".repeat(5000))).starts_with("-ERR line too long"));
    c.send(b"NOOP\0\r\n");
    assert!(c.line().starts_with("-ERR NUL"));
    // Numbers.
    for bad in ["RETR 0", "RETR 3", "RETR x", "RETR -1", "RETR 99999999999999999999", "LIST 7", "UIDL abc", "TOP 1", "DELE", "TOP 1 x"] {
        assert!(c.ask(bad).starts_with("-ERR"), "{bad}");
    }
    // Wrong state after the login.
    assert!(c.ask("USER again").starts_with("-ERR"));
    assert!(c.ask("STLS").starts_with("-ERR"));
    assert!(c.ask("FOO").starts_with("-ERR unknown"));
    // Still serving: DELE, deleted messages vanish from lists, RSET brings them back.
    assert_eq!(c.ask("NOOP"), "+OK");
    assert!(c.ask("DELE 1").starts_with("+OK"));
    assert!(c.ask("DELE 1").starts_with("-ERR"), "twice");
    assert!(c.ask("RETR 1").starts_with("-ERR"));
    let stat = c.ask("STAT");
    assert!(stat.starts_with("+OK 1 "), "{stat}");
    assert!(c.ask("RSET").starts_with("+OK 2 messages"));
    assert!(c.ask("TOP 2 0").starts_with("+OK"));
    let top = c.dot_body();
    assert!(top.ends_with(b"\n\n") && !top.windows(6).any(|w| w == b"second"), "{}", String::from_utf8_lossy(&top));
    // Pipelined: all replies come, in order.
    c.send(b"STAT\r\nLIST 1\r\nUIDL 2\r\nNOOP\r\n");
    let replies: Vec<String> = (0..4).map(|_| c.line()).collect();
    assert!(
        replies[0].starts_with("+OK 2 ") && replies[1].starts_with("+OK 1 ") && replies[2].starts_with("+OK 2 ") && replies[3] == "+OK",
        "{replies:?}"
    );
    assert!(c.ask("QUIT").starts_with("+OK"));
    // RSET undid the DELE: both move to cur/ once the session has hung up.
    wait_for(10, "both messages in cur/", || (fs::read_dir(p.maildir("dave").join("cur")).unwrap().count() == 2).then_some(()));
}

#[test]
fn disconnect_before_quit_deletes_nothing_and_a_second_session_is_refused() {
    let p = pop3_instance("pop3drop", &[]);
    p.adduser("erin", "pw-e");
    p.deliver("erin", &[message("a", "1"), message("b", "2")]);
    let user = p.address("erin");
    let mut c = Client::pop3(p.pop3_port());
    assert!(c.login(&user, "pw-e").starts_with("+OK 2 messages"));
    assert!(c.ask("DELE 1").starts_with("+OK") && c.ask("DELE 2").starts_with("+OK"));
    // Meanwhile: a second session on the same mailbox, and a new message.
    let mut c2 = Client::pop3(p.pop3_port());
    let r = c2.login(&user, "pw-e");
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    p.deliver("erin", &[message("c", "3")]);
    assert!(c.ask("STAT").starts_with("+OK 0 "), "a message that arrives during a session is not seen");
    drop(c);
    let log = wait_for(10, "pop3d to log the dropped session", || {
        let l = p.pop3_log();
        l.contains("without QUIT").then_some(l)
    });
    assert!(log.contains("nothing deleted"), "{log}");
    let mut c = Client::pop3(p.pop3_port());
    assert!(c.login(&user, "pw-e").starts_with("+OK 3 messages"), "both kept, and the new one is seen now");
    c.ask("QUIT");
}

#[test]
fn a_broken_file_is_skipped_and_a_missing_maildir_is_a_clear_error() {
    let p = pop3_instance("pop3broken", &[]);
    let md = p.adduser("fay", "pw-f");
    p.deliver("fay", &[message("a", "good one"), message("b", "unreadable")]);
    // One message unreadable by the owner, one directory where a message should be.
    let names: Vec<PathBuf> = fs::read_dir(md.join("new")).unwrap().map(|e| e.unwrap().path()).collect();
    let victim = names.iter().find(|n| fs::read_to_string(n).unwrap().contains("unreadable")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(victim, fs::Permissions::from_mode(0o000)).unwrap();
    fs::create_dir(md.join("cur/1700000000.Mdir.host:2,")).unwrap();
    let mut c = Client::pop3(p.pop3_port());
    let r = c.login(&p.address("fay"), "pw-f");
    // Both are listed: postern's delivery writes the size into the name (,W=),
    // so login opens no file; the directory is skipped.
    assert!(r.starts_with("+OK 2 messages"), "{r}\n{}", p.pop3_log());
    assert!(c.ask("RETR 1").starts_with("+OK"));
    assert!(String::from_utf8(c.dot_body()).unwrap().contains("good one"));
    if is_root() {
        // pop3d runs as the mailbox owner (postern-v), who cannot read a 000 file:
        // that message gets a -ERR, and the session goes on.
        let r = c.ask("RETR 2");
        assert!(r.starts_with("-ERR [SYS/TEMP] message 2 cannot be read now"), "{r}");
        assert!(c.ask("STAT").starts_with("+OK 2 "));
    }
    c.ask("QUIT");
    let log = p.pop3_log();
    assert!(log.contains("skipping") && log.contains("1700000000.Mdir.host:2,") && log.contains("not a regular file"), "{log}");
    if is_root() {
        assert!(log.contains("Permission denied"), "{log}");
    }
    // The maildir gone altogether.
    fs::rename(&md, md.with_file_name("Maildir.away")).unwrap();
    let mut c = Client::pop3(p.pop3_port());
    let r = c.login(&p.address("fay"), "pw-f");
    assert!(r.starts_with("-ERR [SYS/TEMP]") && r.contains("does not exist"), "{r}");
    assert!(c.closed());
    let log = p.pop3_log();
    assert!(log.contains("Maildir does not exist"), "{log}");
}

#[test]
fn wrong_logins_are_delayed_the_same_for_unknown_users_and_end_the_session() {
    let p = pop3_instance("pop3fail", &[("authfaildelay", "1")]);
    p.adduser("gus", "right");
    let mut c = Client::pop3(p.pop3_port());
    let t = Instant::now();
    let bad = c.login(&p.address("gus"), "wrong");
    let d1 = t.elapsed();
    let t = Instant::now();
    let unknown = c.login(&p.address("nobody"), "wrong");
    let d2 = t.elapsed();
    assert_eq!(bad, "-ERR [AUTH] authentication failed");
    assert_eq!(unknown, bad, "the same answer whether or not the user exists");
    // authfaildelay 1: a second for the first failure, two for the second.
    assert!(d1 >= Duration::from_secs(1) && d2 >= Duration::from_secs(2), "{d1:?} {d2:?}");
    // AUTH PLAIN with a wrong password is the third failure: disconnected.
    let r = c.ask(&format!("AUTH PLAIN {}", sasl_plain(&p.address("gus"), "wrong")));
    assert_eq!(r, "-ERR [AUTH] authentication failed");
    assert!(c.closed(), "three failures end the session");
    // A right login after a wrong one in the same session works.
    let mut c = Client::pop3(p.pop3_port());
    assert!(c.login(&p.address("gus"), "nope").starts_with("-ERR [AUTH]"));
    assert!(c.login(&p.address("gus"), "right").starts_with("+OK 0 messages"));
    c.ask("QUIT");
    let log = p.pop3_log();
    assert!(log.contains("authentication failed for \"nobody@pop3fail.test\""), "{log}");
}

#[test]
fn auth_plain_with_continuation_and_pipelining_across_the_login() {
    let p = pop3_instance("pop3sasl", &[]);
    p.adduser("hal", "pw h");
    p.deliver("hal", &[message("x", "pipelined")]);
    let mut c = Client::pop3(p.pop3_port());
    assert_eq!(c.ask("AUTH PLAIN"), "+ ");
    assert_eq!(c.ask("*"), "-ERR authentication cancelled");
    assert_eq!(c.ask("AUTH PLAIN"), "+ ");
    // The login and the commands after it in one write: pop3d gets them.
    c.send(format!("{}\r\nSTAT\r\nQUIT\r\n", sasl_plain(&p.address("hal"), "pw h")).as_bytes());
    assert!(c.line().starts_with("+OK 1 messages"));
    assert!(c.line().starts_with("+OK 1 "));
    assert!(c.line().starts_with("+OK"));
    assert!(c.closed());
}

#[test]
fn stls_discards_pipelined_plaintext_and_is_refused_twice() {
    let p = pop3_instance("pop3stls", &[]);
    p.adduser("ida", "pw-i");
    // Commands sent in clear right after STLS must not be executed inside TLS.
    let mut c = Client::pop3(p.pop3_port());
    c.send(format!("STLS\r\nUSER {}\r\nPASS pw-i\r\nQUIT\r\n", p.address("ida")).as_bytes());
    assert_eq!(c.line(), "+OK begin TLS negotiation");
    let rest = c.read_line();
    assert!(!matches!(&rest, Some(l) if l.starts_with("+OK")), "no plaintext command may be answered after STLS: {rest:?}");
    // A real TLS client: a second STLS is refused, CAPA no longer lists it.
    let out = python(
        r#"
import poplib, ssl, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=20)
p.stls(ssl.create_default_context(cafile=sys.argv[2]))
print("STLS" in p.capa())
try:
    p._shortcmd("STLS"); print("accepted")
except poplib.error_proto as e:
    print(e)
p.user(sys.argv[3]); print(p.pass_("pw-i").decode()); p.quit()
"#,
        &[&p.pop3_port().to_string(), p.cert().to_str().unwrap(), &p.address("ida")],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "False", "{out}");
    assert!(lines[1].contains("-ERR TLS is already active"), "{out}");
    assert!(lines[2].starts_with("+OK 0 messages"), "{out}");
}

#[test]
fn large_message_is_streamed_byte_exact() {
    let p = pop3_instance("pop3big", &[]);
    let md = p.adduser("jo", "pw-j");
    // 6 MiB with CRLF and bare-LF lines mixed, written straight into the Maildir.
    let mut msg = b"Subject: big\r\n\r\n".to_vec();
    let mut i = 0u64;
    while msg.len() < 6 << 20 {
        msg.extend_from_slice(
            format!(".{i} some text to fill the line up a bit{}", if i.is_multiple_of(2) { "\n" } else { "\r\n" }).as_bytes(),
        );
        i += 1;
    }
    fs::write(md.join("new/1700000001.M1P1Q1.big"), &msg).unwrap();
    if is_root() {
        let owner = fs::metadata(&md).unwrap();
        use std::os::unix::fs::MetadataExt;
        std::os::unix::fs::chown(md.join("new/1700000001.M1P1Q1.big"), Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    let mut c = Client::pop3(p.pop3_port());
    c.login(&p.address("jo"), "pw-j");
    let crlf_size = msg.len() + msg.windows(2).filter(|w| w[1] == b'\n' && w[0] != b'\r').count() + usize::from(msg[0] == b'\n');
    assert_eq!(c.ask("LIST 1"), format!("+OK 1 {crlf_size}"));
    assert_eq!(c.ask("RETR 1"), format!("+OK {crlf_size} octets"));
    let got = c.dot_body();
    let want: Vec<u8> = String::from_utf8(msg).unwrap().replace("\r\n", "\n").into_bytes();
    assert!(got == want, "RETR of 6 MiB is byte exact ({} vs {} bytes)", got.len(), want.len());
    c.ask("QUIT");
}
