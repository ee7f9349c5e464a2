//! The SMTP conversation and its faults, against fake servers and smtp-sink,
//! routed by smtproutes (no DNS needed: relays are [IP]).

use super::*;

/// A home routing every domain to [ip]:port.
fn routed(tag: &str, ip: &str, port: u16) -> Home {
    let h = Home::new(tag);
    h.control("smtproutes", &format!(":[{ip}]:{port}\n")).control("timeoutremote", "2\n").control("timeoutconnect", "2\n");
    h
}

fn by_user(addr: &str) -> String {
    match addr.split('@').next().unwrap() {
        "bad" => "550 5.1.1 no such user".into(),
        "busy" => "450 4.2.1 mailbox busy".into(),
        _ => "250 2.1.5 ok".into(),
    }
}

#[test]
fn delivers_crlf_dot_stuffed_and_pipelined() {
    let f = FakeSmtp::start("127.0.0.1", FakeScript::default());
    let h = routed("r-basic", "127.0.0.1", f.port());
    let msg = b"Subject: dots\n\n.leading dot\nplain\n..two\n";
    let o = remote(&h, "x.test", "me@a.test", &["you@x.test", "other@x.test"], msg);
    assert_eq!(o.message.0, 'K', "{o:?}");
    assert!(o.message.1.contains("[127.0.0.1]") && o.message.1.contains("250 2.0.0 queued as FAKE1"), "{o:?}");
    assert_eq!(o.recipients.iter().map(|r| r.0).collect::<String>(), "rr");
    let s = &f.sessions()[0];
    assert_eq!(s.data, b"Subject: dots\r\n\r\n..leading dot\r\nplain\r\n...two\r\n");
    assert!(s.pipelined, "MAIL and RCPTs in one write: {s:?}");
    assert_eq!(s.helo, "test.example", "HELO defaults to me");
    assert!(s.lines.contains(&format!("MAIL FROM:<me@a.test> SIZE={}", msg.len() + 5)), "{s:?}");
    assert!(s.lines.contains(&"RCPT TO:<other@x.test>".to_string()));
}

#[test]
fn per_recipient_results_are_passed_back_exactly() {
    let f = FakeSmtp::start("127.0.0.1", FakeScript { rcpt: by_user, ..FakeScript::default() });
    let h = routed("r-mixed", "127.0.0.1", f.port());
    let o = remote(&h, "x.test", "me@a.test", &["ok@x.test", "bad@x.test", "busy@x.test"], &message("m", "b"));
    let letters: String = o.recipients.iter().map(|r| r.0).collect();
    assert_eq!(letters, "rhs", "{o:?}");
    assert!(o.recipients[1].1.starts_with("5.1.1 ") && o.recipients[1].1.contains("550 5.1.1 no such user"), "{o:?}");
    assert!(
        o.recipients[2].1.starts_with("4.2.1 [127.0.0.1]:") && o.recipients[2].1.contains("Remote host said: 450 4.2.1 mailbox busy"),
        "{o:?}"
    );
    assert_eq!(o.message.0, 'K', "{o:?}");
}

#[test]
fn no_recipient_accepted_sends_no_data() {
    let f = FakeSmtp::start("127.0.0.1", FakeScript { rcpt: by_user, ..FakeScript::default() });
    let h = routed("r-none", "127.0.0.1", f.port());
    let o = remote(&h, "x.test", "", &["bad@x.test"], &message("m", "b"));
    assert_eq!(o.recipients[0].0, 'h');
    assert_eq!(o.message.0, 'D', "{o:?}");
    let s = &f.sessions()[0];
    assert!(s.lines.iter().any(|l| l.starts_with("MAIL FROM:<> ")), "null sender: {s:?}");
    assert!(!s.lines.contains(&"DATA".to_string()), "{s:?}");
}

#[test]
fn helo_when_ehlo_is_refused_and_no_pipelining() {
    let f = FakeSmtp::start("127.0.0.1", FakeScript { ehlo: None, ..FakeScript::default() });
    let h = routed("r-helo", "127.0.0.1", f.port());
    h.control("helohost", "out.example\n");
    let o = remote(&h, "x.test", "me@a.test", &["a@x.test", "b@x.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'K', "{o:?}");
    let s = &f.sessions()[0];
    assert_eq!(s.lines[..2], ["EHLO out.example".to_string(), "HELO out.example".to_string()]);
    assert!(!s.pipelined);
    assert!(s.lines.contains(&"MAIL FROM:<me@a.test>".to_string()), "no SIZE without EHLO: {s:?}");
}

#[test]
fn size_limit_smaller_than_the_message_bounces_before_mail() {
    let f = FakeSmtp::start("127.0.0.1", FakeScript { ehlo: Some(vec!["SIZE 100".into()]), ..FakeScript::default() });
    let h = routed("r-size", "127.0.0.1", f.port());
    let o = remote(&h, "x.test", "me@a.test", &["a@x.test"], &message("big", &"x".repeat(500)));
    assert_eq!(o.message.0, 'D', "{o:?}");
    assert!(o.message.1.starts_with("5.3.4 ") && o.message.1.contains("at most 100 bytes"), "{o:?}");
    assert!(o.recipients.is_empty());
    assert!(!f.sessions()[0].lines.iter().any(|l| l.starts_with("MAIL")));
}

#[test]
fn eight_bit_message_uses_8bitmime_or_is_refused_correctly() {
    let msg = "Subject: caf\u{e9}\n\nna\u{ef}ve\n".as_bytes();
    let f = FakeSmtp::start("127.0.0.1", FakeScript::default());
    let h = routed("r-8bit", "127.0.0.1", f.port());
    let o = remote(&h, "x.test", "me@a.test", &["a@x.test"], msg);
    assert_eq!(o.message.0, 'K', "{o:?}");
    assert!(f.sessions()[0].lines.iter().any(|l| l.starts_with("MAIL FROM:<me@a.test>") && l.ends_with(" BODY=8BITMIME")));

    let f = FakeSmtp::start("127.0.0.1", FakeScript { ehlo: Some(vec!["PIPELINING".into()]), ..FakeScript::default() });
    let h = routed("r-7bit", "127.0.0.1", f.port());
    let o = remote(&h, "x.test", "me@a.test", &["a@x.test"], msg);
    assert_eq!(o.message.0, 'D', "{o:?}");
    assert!(o.message.1.starts_with("5.6.3 ") && o.message.1.contains("8BITMIME"), "{o:?}");
}

#[test]
fn a_peer_that_never_answers_times_out_temporarily() {
    let f = FakeSmtp::start("127.0.0.1", FakeScript { silent: true, ..FakeScript::default() });
    let h = routed("r-silent", "127.0.0.1", f.port());
    let t = std::time::Instant::now();
    let o = remote(&h, "x.test", "me@a.test", &["a@x.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.contains("did not answer within 2 seconds"), "{o:?}");
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn a_peer_that_closes_mid_data_is_retried_not_delivered() {
    let f = FakeSmtp::start("127.0.0.1", FakeScript { close_in_data: true, ..FakeScript::default() });
    let h = routed("r-close", "127.0.0.1", f.port());
    let body = "line\n".repeat(50_000);
    let o = remote(&h, "x.test", "me@a.test", &["a@x.test"], &message("m", &body));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.starts_with("4.4.2 ") && o.message.1.contains("closed the connection"), "{o:?}");
    assert_eq!(o.recipients[0].0, 'r', "accepted, so the Z retries it: {o:?}");
}

#[test]
fn garbage_and_over_long_replies_are_temporary_with_a_clear_text() {
    for (tag, raw, want) in [
        ("r-garbage", b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), "not an SMTP reply"),
        ("r-long", [b"250-".to_vec(), vec![b'x'; 100_000]].concat(), "longer than"),
    ] {
        let f = FakeSmtp::start("127.0.0.1", FakeScript { ehlo_raw: Some(raw), ..FakeScript::default() });
        let h = routed(tag, "127.0.0.1", f.port());
        let o = remote(&h, "x.test", "me@a.test", &["a@x.test"], &message("m", "b"));
        assert_eq!(o.message.0, 'Z', "{o:?}");
        assert!(o.message.1.contains(want) && o.message.1.contains("[127.0.0.1]"), "{o:?}");
    }
}

#[test]
fn greeting_421_moves_to_the_next_host_and_5xx_greeting_alone_bounces() {
    let f = FakeSmtp::start("127.0.0.1", FakeScript { greeting: "554 5.7.1 go away".into(), ..FakeScript::default() });
    let h = routed("r-554", "127.0.0.1", f.port());
    let o = remote(&h, "x.test", "me@a.test", &["a@x.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'D', "{o:?}");
    assert!(o.message.1.starts_with("5.7.1 ") && o.message.1.contains("554 5.7.1 go away"), "{o:?}");

    let f = FakeSmtp::start("127.0.0.1", FakeScript { greeting: "421 4.3.2 busy".into(), ..FakeScript::default() });
    let h = routed("r-421", "127.0.0.1", f.port());
    let o = remote(&h, "x.test", "me@a.test", &["a@x.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.contains("421 4.3.2 busy"), "{o:?}");
}

#[test]
fn connection_refused_is_temporary() {
    let dead = refused_port();
    let h = routed("r-refused", "127.0.0.1", dead.port);
    let o = remote(&h, "x.test", "me@a.test", &["a@x.test"], &message("m", "b"));
    assert_eq!(o.message.0, 'Z', "{o:?}");
    assert!(o.message.1.starts_with("4.4.1 cannot connect to [127.0.0.1]:"), "{o:?}");
}

#[test]
fn each_sender_domain_leaves_from_its_own_address_and_name() {
    let f = FakeSmtp::start("127.0.0.1", FakeScript::default());
    let h = routed("r-source", "127.0.0.1", f.port());
    h.control("outgoingip", "a.test:127.0.0.2:mail.a.test\nb.test:127.0.0.3:mail.b.test\n:127.0.0.4\n");
    for sender in ["x@a.test", "y@b.test", "z@c.test", ""] {
        let o = remote(&h, "x.test", sender, &["r@x.test"], &message("m", "b"));
        assert_eq!(o.message.0, 'K', "{sender}: {o:?}");
    }
    let got: Vec<(String, String)> = f.sessions().iter().map(|s| (s.peer.unwrap().ip().to_string(), s.helo.clone())).collect();
    assert_eq!(
        got,
        [("127.0.0.2", "mail.a.test"), ("127.0.0.3", "mail.b.test"), ("127.0.0.4", "test.example"), ("127.0.0.4", "test.example")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

#[test]
fn smtp_sink_records_the_message_peer_and_helo() {
    let sink = SmtpSink::start("127.0.0.1", &[]);
    let h = routed("r-sink", "127.0.0.1", sink.port());
    h.control("outgoingip", "a.test:127.0.0.3:mail.a.test\n");
    let msg = message("to the sink", "hello sink\n.dot");
    let o = remote(&h, "x.test", "me@a.test", &["one@x.test", "two@x.test"], &msg);
    assert_eq!(o.message.0, 'K', "{o:?}");
    let got = sink.wait_messages(1);
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert!(m.contains("X-Client-Addr: 127.0.0.3"), "{m}");
    assert!(m.contains("X-Helo-Args: mail.a.test"), "{m}");
    assert!(m.contains("X-Rcpt-Args: <one@x.test>") && m.contains("X-Rcpt-Args: <two@x.test>"), "{m}");
    assert!(m.contains("Subject: to the sink") && m.contains("hello sink\n.dot"), "{m}");
}

#[test]
fn smtp_sink_soft_and_hard_refusals_map_to_s_and_h() {
    let sink = SmtpSink::start("127.0.0.1", &["-r", "RCPT"]);
    let h = routed("r-sink4", "127.0.0.1", sink.port());
    let o = remote(&h, "x.test", "me@a.test", &["one@x.test"], &message("m", "b"));
    assert_eq!(o.recipients[0].0, 's', "{o:?}");
    assert!(o.recipients[0].1.contains("Remote host said: 450"), "{o:?}");
    let sink = SmtpSink::start("127.0.0.1", &["-f", "MAIL"]);
    let h = routed("r-sink5", "127.0.0.1", sink.port());
    let o = remote(&h, "x.test", "me@a.test", &["one@x.test"], &message("m", "b"));
    assert!(o.recipients.is_empty() && o.message.0 == 'D', "{o:?}");
    assert!(o.message.1.contains("does not like the sender <me@a.test>"), "{o:?}");
}
