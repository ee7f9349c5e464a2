//! The routing files: virtualdomains (with locals), smtproutes, outgoingip and
//! tlsdestinations. The first byte picks the file, the rest is its contents; the
//! last line is also looked up as a domain and routed as an address. Any input:
//! no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postern::address::Address;
use postern::config::control::parse_lines;
use postern::config::routing::Routing;
use postern::smtp::mx::Routes;
use postern::smtp::outgoing::{sources_from_lines, tls_policy_from_lines, Bind};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let path = Path::new("control/x");
    let Ok(lines) = parse_lines(path, rest.to_vec()) else { return };
    let probe = lines.last().map(|(_, l)| l.clone()).unwrap_or_default();
    let domain = probe.rsplit('@').next().unwrap_or("").to_string();
    match which % 4 {
        0 => {
            let locals = lines.iter().map(|(_, l)| l.clone()).take(2).collect();
            if let Ok(r) = Routing::from_lines(path, lines, locals, "example.org".into()) {
                if let Ok(a) = Address::parse(probe.as_bytes()) {
                    let _ = r.route(&mut |d| d.len() % 3 == 0, &a);
                }
            }
        }
        1 => {
            if let Ok(r) = Routes::from_lines(path, lines) {
                let _ = r.find(&domain);
            }
        }
        2 => {
            if let Ok(t) = sources_from_lines(path, lines) {
                if let Some(s) = t.find(&domain) {
                    for ip in ["192.0.2.1", "2001:db8::1"] {
                        match s.bind_for(ip.parse().unwrap()) {
                            Bind::Address(a) => assert_eq!(a.is_ipv4(), ip.contains('.')),
                            Bind::Any | Bind::Skip => {}
                        }
                    }
                    assert!(!s.helo.is_some_and(|h| h.is_empty() || h.contains(char::is_whitespace)));
                }
            }
        }
        _ => {
            if let Ok(t) = tls_policy_from_lines(path, lines) {
                let _ = t.find(&domain);
            }
        }
    }
});
