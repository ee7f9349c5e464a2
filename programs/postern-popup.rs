//! postern-popup HOSTNAME AUTHPROG [ARG...]: the POP3 login (qmail-popup's
//! interface), e.g. `postern-popup mail.example postern-auth postern-pop3d Maildir`.
//!
//! Runs as postern-d on a connection on fd 0/1 (from postern-listen or tcpserver).
//! A login goes to AUTHPROG by the checkpassword interface; see lib/pop3/login.rs.
//! After STLS this process becomes the TLS relay and a fresh popup runs behind it
//! (lib/net/tlsrelay.rs). With POSTERN_TLS=implicit (port 995, lib/net/implicit.rs)
//! it becomes that relay at once, before the greeting.

use postern::config::control::Control;
use postern::config::settings::{AUTHFAILDELAY, TIMEOUTPOP3};
use postern::net::implicit::{self, PortMode};
use postern::net::session::FdPair;
use postern::os::home::Home;
use postern::os::log;
use postern::pop3::login::{Outcome, Popup, INNER_ENV};
use std::time::Duration;

const ME: &str = "postern-popup";

fn main() {
    postern::version::exit_if_asked(ME);
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut net = postern::net::prelogin::open(
        ME,
        args.len() >= 3,
        "postern-popup HOSTNAME AUTHPROG [ARG...]",
        b"-ERR [SYS/PERM] server misconfigured\r\n",
    )
    .unwrap_or_else(|code| std::process::exit(code));
    let home = Home::from_env();
    let timeout = Control::new(&home).seconds_or_default(&TIMEOUTPOP3, |m| log::line(ME, m));
    let fail_delay = Control::new(&home).number_or_default(&AUTHFAILDELAY, |m| log::line(ME, m));
    // Behind the relay: "tls" after STLS, "implicit" on an implicit-TLS port.
    let inner = std::env::var(INNER_ENV).ok();
    if inner.is_none() {
        let fail = |e: &dyn std::fmt::Display| -> ! {
            log::line(ME, &e.to_string());
            std::process::exit(111)
        };
        if PortMode::from_env().unwrap_or_else(|e| fail(&e)).implicit_tls {
            let config = implicit::server_config(&home).unwrap_or_else(|e| fail(&e));
            let Ok(fds) = net.into_plain() else { fail(&"cannot relay TLS on this connection") };
            std::process::exit(relay(config, fds, &args, timeout, "implicit"));
        }
    }
    let tls = postern::net::tls::server_config(&home).unwrap_or_else(|e| {
        log::line(ME, &format!("{e}; STLS is not offered until it is fixed"));
        None
    });
    let popup = Popup {
        hostname: args[1].to_string_lossy().into_owned(),
        child: args[2..].to_vec(),
        tls: tls.clone(),
        secure: inner.is_some(),
        greet: inner.as_deref() != Some("tls"),
        fail_delay: Duration::from_secs(fail_delay),
        max_failures: 3,
        remote: std::env::var("TCPREMOTEIP").unwrap_or_else(|_| "unknown".into()),
    };
    net.set_timeout(timeout);
    let outcome = popup.run(&mut net, &mut |m| log::line(ME, m));
    match outcome {
        Outcome::StartTls => {
            let config = tls.expect("STLS is accepted only with a certificate");
            let Ok(fds) = net.into_plain() else {
                log::line(ME, "STLS on a session that is not plain");
                std::process::exit(111);
            };
            std::process::exit(relay(config, fds, &args, timeout, "tls"));
        }
        Outcome::Served(code) => std::process::exit(code.unwrap_or(0)),
        Outcome::Dropped(why) => log::line(ME, &format!("{} left before logging in: {why}", popup.remote)),
        Outcome::Quit | Outcome::TooManyFailures => {}
    }
}

/// Run a fresh popup (`role` in its INNER_ENV) behind a TLS relay.
fn relay(config: std::sync::Arc<rustls::ServerConfig>, fds: FdPair, args: &[std::ffi::OsString], timeout: Duration, role: &str) -> i32 {
    postern::net::tlsrelay::relay_to_self(ME, config, fds, &args[1..], (INNER_ENV, role), timeout)
}
