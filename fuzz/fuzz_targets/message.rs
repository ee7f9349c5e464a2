//! A message's header section as injection and bounces read it (untrusted bytes
//! from any sender): line ends, splitting header from body, fields, removal, and
//! the DSN that quotes the original message and a remote server's reply text.
//! Nothing in postern parses incoming bounces; this is the DSN writer's reading.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::address::Address;
use postern::message::headers::{crlf_to_lf, fields, has, remove, split};
use postern::queue::dsnparams::Ret;
use postern::send::dsn::{Dsn, Failure};
use postern::status::Status;

fuzz_target!(|data: &[u8]| {
    let msg = crlf_to_lf(data);
    // Only CRLF pairs of the input go ("\r\r\n" leaves "\r\n": a lone CR stays).
    assert_eq!(msg.len(), data.len() - data.windows(2).filter(|w| w == b"\r\n").count());
    let (hend, bstart) = split(&msg);
    assert!(hend <= bstart && bstart <= msg.len() && bstart - hend <= 1);
    let header = &msg[..hend];
    let fs = fields(header);
    // The fields cover the header section exactly, in order.
    let mut at = 0;
    for f in &fs {
        assert_eq!(f.range.start, at);
        at = f.range.end;
    }
    assert_eq!(at, header.len());
    let kept = remove(header, &["Bcc", "Received"]);
    assert!(!has(&kept, "bcc") && kept.len() <= header.len());
    assert_eq!(remove(header, &[]), header);

    // A bounce quoting this message, whole or header only, with the reply text.
    let text = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
    let failures = [Failure::failed(Address::parse(b"rcpt@example.org").unwrap(), Status::NO_MAILBOX, text)];
    for (max_bytes, ret, envid) in [(0, None, None), (data.len(), Some(Ret::Hdrs), Some("id+2Bx")), (data.len(), Some(Ret::Full), None)] {
        let out = Dsn {
            reporting_host: "mx.example.org",
            from: "MAILER-DAEMON@example.org",
            to: "sender@example.net",
            queue_id: "1700000000.000001.42",
            arrival: 1_700_000_000,
            failures: &failures,
            original: data,
            max_bytes,
            ret,
            envid,
        }
        .render();
        assert!(out.starts_with(b"From: ") && out.ends_with(b"--\n"));
    }
});
