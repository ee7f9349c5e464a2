//! postern-imapup [-s] HOSTNAME AUTHPROG [ARG...]: the IMAP login, e.g.
//! `postern-imapup mail.example postern-auth postern-imapd Maildir`.
//!
//! Runs as postern-d on a connection on fd 0/1 (from postern-listen, tcpserver
//! or inetd). A login goes to AUTHPROG by the checkpassword interface; see
//! lib/imap/login.rs. After STARTTLS, or at once with -s (port 993, implicit
//! TLS), this process becomes the TLS relay and a fresh imapup runs behind it
//! (lib/net/tlsrelay.rs).

use postern::config::control::Control;
use postern::config::settings::{AUTHFAILDELAY, TIMEOUTIMAP};
use postern::imap::login::{Imapup, Outcome, INNER_ENV};
use postern::net::session::Session;
use postern::os::home::Home;
use postern::os::log;
use std::ffi::OsString;
use std::time::Duration;

const ME: &str = "postern-imapup";

fn main() {
    postern::version::exit_if_asked(ME);
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let implicit = args.first().is_some_and(|a| a == "-s");
    if implicit {
        args.remove(0);
    }
    let mut net = postern::net::prelogin::open(
        ME,
        args.len() >= 2,
        "postern-imapup [-s] HOSTNAME AUTHPROG [ARG...]",
        b"* BYE server misconfigured\r\n",
    )
    .unwrap_or_else(|code| std::process::exit(code));
    let home = Home::from_env();
    let timeout = Control::new(&home).seconds_or_default(&TIMEOUTIMAP, |m| log::line(ME, m));
    let fail_delay = Control::new(&home).number_or_default(&AUTHFAILDELAY, |m| log::line(ME, m));
    let tls = postern::net::tls::server_config(&home).unwrap_or_else(|e| {
        log::line(ME, &format!("{e}; STARTTLS is not offered (and -s cannot serve) until it is fixed"));
        None
    });
    let inner = std::env::var(INNER_ENV).ok();
    let remote = std::env::var("TCPREMOTEIP").unwrap_or_else(|_| "unknown".into());
    net.set_timeout(timeout);
    if implicit && inner.is_none() {
        // Port 993: TLS from the first byte, the IMAP greeting inside it.
        let Some(config) = tls else {
            log::line(ME, &format!("{remote}: -s (implicit TLS) needs control/servercert.pem and serverkey.pem; dropped"));
            std::process::exit(111);
        };
        std::process::exit(relay(config, net, &args, "implicit", timeout));
    }
    let up = Imapup {
        hostname: args[0].to_string_lossy().into_owned(),
        child: args[1..].to_vec(),
        tls: tls.clone(),
        secure: inner.is_some(),
        greet: inner.as_deref() != Some("starttls"),
        fail_delay: Duration::from_secs(fail_delay),
        max_failures: 3,
        remote: remote.clone(),
    };
    match up.run(&mut net, &mut |m| log::line(ME, m)) {
        Outcome::StartTls => {
            let config = tls.expect("STARTTLS is accepted only with a certificate");
            std::process::exit(relay(config, net, &args, "starttls", timeout));
        }
        Outcome::Served(code) => std::process::exit(code.unwrap_or(0)),
        Outcome::Dropped(why) => log::line(ME, &format!("{remote} left before logging in: {why}")),
        Outcome::Logout | Outcome::TooManyFailures => {}
    }
}

/// Become the TLS relay for a fresh imapup (args as given to this one).
fn relay(config: std::sync::Arc<rustls::ServerConfig>, net: Session, args: &[OsString], mode: &str, timeout: Duration) -> i32 {
    let Ok(fds) = net.into_plain() else {
        log::line(ME, "TLS asked for on a session that is not plain");
        return 111;
    };
    postern::net::tlsrelay::relay_to_self(ME, config, fds, args, (INNER_ENV, mode), timeout)
}
