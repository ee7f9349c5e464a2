//! The registry of every setting the suite reads: its control file, how it is
//! read, its default and what it means. Every program reads a setting through
//! `Control` with its entry here, so a default is written once, in this file;
//! `postern-admin showctl` lists the same entries, and conf-samples/ holds one
//! commented sample per entry (a test checks that).

/// How a control file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One value: the first meaningful line.
    Line,
    /// A whole number on the first meaningful line.
    Number,
    /// Every meaningful line.
    List,
}

/// What a setting is when its file is missing (or holds no meaningful line).
#[derive(Clone, Copy, Debug)]
pub enum Default {
    /// Nothing: the setting is off or empty.
    None,
    Text(&'static str),
    Number(u64),
    /// The value of another setting.
    Follows(&'static Setting),
    /// The system's host name.
    Hostname,
    /// A path under the home: `$POSTERN_HOME/<this>`.
    InHome(&'static str),
}

#[derive(Debug)]
pub struct Setting {
    /// The file under control/.
    pub name: &'static str,
    pub kind: Kind,
    pub default: Default,
    pub about: &'static str,
}

use self::Default::{Follows, Hostname, InHome, Number as N, Text};
use Kind::{Line, List, Number};

macro_rules! settings {
    ($($id:ident $name:literal $kind:ident $default:expr, $about:literal;)*) => {
        $(pub static $id: Setting = Setting { name: $name, kind: $kind, default: $default, about: $about };)*
        /// Every setting, in showctl's order.
        pub static ALL: &[&Setting] = &[$(&$id),*];
    };
}

settings! {
    ME "me" Line Hostname, "this host's fully-qualified name; the default for most other host settings (missing: the system host name)";
    LOCALS "locals" List Follows(&ME), "domains delivered locally (the local part is the user)";
    VIRTUALDOMAINS "virtualdomains" List Default::None, "qmail's virtual domains: `domain:prefix` or `user@domain:prefix`; the local part becomes prefix-local";
    RCPTHOSTS "rcpthosts" List Default::None, "domains postern-smtpd accepts mail for from unauthenticated clients (missing: refuse relaying for everyone)";
    DEFAULTDOMAIN "defaultdomain" Line Default::None, "postern-inject appends .defaultdomain to host names without a dot (missing: host names are left alone)";
    DEFAULTHOST "defaulthost" Line Follows(&ME), "postern-inject appends @defaulthost to addresses without a host and uses it in the From it adds";
    PLUSDOMAIN "plusdomain" Line Default::None, "postern-inject replaces a trailing '+' in a host name with .plusdomain";
    IDHOST "idhost" Line Follows(&DEFAULTHOST), "host name in the Message-IDs postern-inject adds";
    ENVNOATHOST "envnoathost" Line Follows(&ME), "domain appended to envelope recipients without '@'";
    BOUNCEFROM "bouncefrom" Line Text("MAILER-DAEMON"), "local part of the sender of bounce messages";
    BOUNCEHOST "bouncehost" Line Follows(&ME), "domain of the sender of bounce messages";
    DOUBLEBOUNCETO "doublebounceto" Line Text("postmaster"), "who receives bounces that cannot be delivered (a local part, or a whole address)";
    DOUBLEBOUNCEHOST "doublebouncehost" Line Follows(&ME), "domain of doublebounceto";
    CONCURRENCYLOCAL "concurrencylocal" Number N(10), "most local deliveries at once";
    CONCURRENCYREMOTE "concurrencyremote" Number N(20), "most remote deliveries at once";
    CONCURRENCYDOMAIN "concurrencydomain" Number N(10), "most remote deliveries at once to one destination domain";
    QUEUELIFETIME "queuelifetime" Number N(604800), "seconds a message may stay in the queue before it bounces";
    TIMEOUTDELIVERY "timeoutdelivery" Number N(86400), "seconds one local delivery may run before it is killed and retried";
    DEFAULTDELIVERY "defaultdelivery" List Text("./Maildir/"), "delivery instructions for users without a .qmail file (dot-qmail syntax)";
    VIRTUALHOME "virtualhome" Line InHome("mail"), "where `postern-admin user add` creates virtual mailboxes";
    DATABYTES "databytes" Number N(36700160), "largest message postern-smtpd accepts, in bytes as sent (RFC 1870: CRLF counted, stuffed dots not); 0: no limit (anyone may fill the disk)";
    TIMEOUTSMTPD "timeoutsmtpd" Number N(1200), "seconds postern-smtpd waits for each read from (or write to) the client";
    TIMEOUTSMTPDLINE "timeoutsmtpdline" Number N(300), "seconds postern-smtpd gives the client for a whole command line, counted from when it starts waiting for it (a client sending a byte at a time cannot hold a session); then 421 4.4.2";
    TIMEOUTSMTPDDATA "timeoutsmtpddata" Number N(3600), "seconds postern-smtpd gives the client for a whole message, from the 354 reply to the final dot (3600 s carries a databytes message at 10 kB/s); then 421 4.4.2";
    SMTPDMAXERRORS "smtpdmaxerrors" Number N(20), "errors in one postern-smtpd session (refused senders and recipients, bad commands) after which it answers 421 4.7.0 and hangs up";
    SMTPDSOFTERRORS "smtpdsofterrors" Number N(3), "errors in one postern-smtpd session after which each error reply waits smtpderrordelay times the errors beyond this number";
    SMTPDERRORDELAY "smtpderrordelay" Number N(1000), "milliseconds each error beyond smtpdsofterrors waits per error beyond it (1 s, 2 s, 3 s... by default): slows address harvesting; 0 for none";
    REMOTEPROGRAM "remoteprogram" Line Default::None, "a qmail-remote-compatible program postern-rspawn runs for each remote delivery, as postern-r (missing: resident workers deliver with postern-remote's code and reuse connections)";
    TIMEOUTREMOTE "timeoutremote" Number N(1200), "seconds postern-remote waits for a remote server";
    TIMEOUTCONNECT "timeoutconnect" Number N(60), "seconds postern-remote waits for a connection";
    SMTPROUTES "smtproutes" List Default::None, "static routes: `domain:relay[:port]`; an empty relay means use MX";
    BADMAILFROM "badmailfrom" List Default::None, "envelope senders refused by postern-smtpd; `@domain` refuses a whole domain";
    BOUNCEMAXBYTES "bouncemaxbytes" Number N(50000), "most bytes of the original message quoted in a bounce";
    SRSDOMAIN "srsdomain" Line Follows(&ME), "the domain of SRS senders (forwards to other domains, when control/srssecret exists); bounces to SRS addresses in it are checked and sent back";
    SRSMAXAGE "srsmaxage" Number N(21), "days an SRS address stays valid for bounces";
    HELOHOST "helohost" Line Follows(&ME), "the name postern-remote gives in HELO/EHLO";
    TIMEOUTPOP3 "timeoutpop3" Number N(1200), "seconds postern-popup and postern-pop3d wait for the POP3 client";
    TIMEOUTIMAP "timeoutimap" Number N(1800), "seconds postern-imapup and postern-imapd wait for the IMAP client (an IDLE client renews its IDLE within 29 minutes)";
    OUTGOINGIP "outgoingip" List Default::None, "per sender domain, the local address(es) and HELO name of outgoing SMTP and the DKIM selectors that sign its mail: `senderdomain:IP[,[IPv6]][:heloname[:selector[,selector]]]`, `:IP[:helo]` for the rest; without selectors, every control/dkim/DOMAIN/*.key signs";
    TLSDESTINATIONS "tlsdestinations" List Default::None, "recipient domains that require TLS: `domain` (any certificate) or `domain:verify` (checked with tlsca.pem, else the public roots)";
    MTASTS "mtasts" Number N(1), "1: postern-remote applies the MTA-STS policy (RFC 8461) a recipient domain publishes when delivering by MX (enforce: only its MX hosts, verified TLS, else the message waits); policies are cached in run/sts/; 0: ignore MTA-STS";
    MTASTSPORT "mtastsport" Number N(443), "the HTTPS port postern-remote fetches MTA-STS policies from (RFC 8461 fixes 443; other values are for tests)";
    TIMEOUTMTASTS "timeoutmtasts" Number N(10), "seconds postern-remote gives each DNS query for an MTA-STS policy (asked at most twice) and its whole HTTPS fetch";
    DNSRESOLVERS "dnsresolvers" List Default::None, "DNS servers postern-remote asks, `IP` or `IP:PORT` a line (missing: /etc/resolv.conf)";
    DNSSEC "dnssec" Number N(0), "1: postern-remote validates DNSSEC itself and applies DANE (RFC 7672): an MX host with secure TLSA records gets mail only over TLS with a certificate matching them; a bogus answer defers";
    TRUSTANCHORS "trustanchors" Line Default::None, "with dnssec, a file of DNSKEY records that anchor validation, e.g. for a private signed zone (missing: the root zone's keys built into the resolver)";
    MAXRCPT "maxrcpt" Number N(100), "most recipients postern-smtpd accepts in one message; more get 452 4.5.3";
    AUTHPLAINTEXT "authplaintext" Number N(0), "1: postern-smtpd offers AUTH without TLS (passwords then cross the network in clear)";
    AUTHFAILDELAY "authfaildelay" Number N(1), "seconds a failed login waits per failure so far in its session (1 s, 2 s, 3 s, then the session ends); 0 for none";
    AUTHCONCURRENCY "authconcurrency" Number N(0), "most password checks postern-auth runs at once, across processes (each argon2id check holds about 20 MiB); 0: the number of CPUs";
    AUTHWAIT "authwait" Number N(30), "seconds a password check waits for one of the authconcurrency places before the login fails temporarily";
    AUTHFAILMAX "authfailmax" Number N(10), "failed logins from one client address (IPv6: its /64) within authfailwindow after which its logins are refused for authfailwindow seconds; 0: no limit";
    AUTHFAILWINDOW "authfailwindow" Number N(600), "seconds over which authfailmax counts failed logins, and how long an address over it is refused";
    TIMEOUTSUBMIT "timeoutsubmit" Number N(300), "seconds a local user has for the rest of a submission after its hello (postern's own users: for each read) before postern-queued drops it";
    CONCURRENCYSUBMIT "concurrencysubmit" Number N(10), "most unfinished submissions to postern-queued at once from one uid (root and postern's own users are not limited); more are refused for now; 0: no limit";
    AUTHCHECK "authcheck" Number N(0), "1: check SPF, DKIM, DMARC and ARC on mail from clients that are neither authenticated nor relay clients (postern-authcheck) and record the results in an Authentication-Results field";
    AUTHCHECKSPF "authcheckspf" Number N(0), "1 (with authcheck): refuse at MAIL a sender whose SPF record says fail for the client (550 5.7.23; a DNS failure gets 451 4.7.24); 0: record only";
    AUTHCHECKDMARC "authcheckdmarc" Number N(0), "1 (with authcheck): refuse after DATA a message failing DMARC whose From domain publishes p=reject (550 5.7.1; a DNS failure gets 451); 0: record only";
    AUTHSERVID "authservid" Line Follows(&ME), "the authserv-id naming this host in the Authentication-Results fields it adds; arriving fields that claim it are removed";
    SMTPGREETING "smtpgreeting" Line Follows(&ME), "the host name postern-smtpd gives in its greeting, EHLO reply and Received lines";
    POSTMASTER "postmaster" Line Default::None, "the address that receives mail for postmaster (bare, and at every local and virtual domain), and so double bounces (missing: qmail's way, users/assign or ~alias/.qmail-postmaster)";
    ALIASFILE "aliasfile" Line Text("/etc/aliases"), "the aliases file (aliases(5)) that newaliases compiles into users/aliases.cdb, for the local domains";
    CHECKPASSWORD "checkpassword" Line Default::None, "a checkpassword program (and its arguments) that checks passwords in postern-auth's place, e.g. /usr/sbin/checkpassword-pam -s pop3; postern-auth still admits the client (authfailmax, authconcurrency), finds the account (users/cdb, then the password database) and becomes it; missing: postern-auth checks the hashes itself";
    MINUID "minuid" Number N(1000), "smallest uid of a Unix user who receives mail by login name; system accounts below it reach people through users/assign or ~alias/.qmail-NAME";
}

impl Setting {
    /// The default of a Number setting, for a program that goes on with it when
    /// the file is broken (after logging why).
    pub fn default_number(&self) -> u64 {
        match self.default {
            N(n) => n,
            _ => panic!("{} is not a number setting", self.name),
        }
    }
}

/// A registered setting by file name.
pub fn find(name: &str) -> Option<&'static Setting> {
    ALL.iter().copied().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn names_are_unique_and_defaults_fit_their_kind() {
        for (i, s) in ALL.iter().enumerate() {
            assert!(ALL[..i].iter().all(|o| o.name != s.name), "{} twice", s.name);
            match (s.kind, s.default) {
                (Number, N(_)) | (Line | List, Default::None | Text(_) | Follows(_) | Hostname | InHome(_)) => {}
                (k, d) => panic!("{}: a {k:?} setting with default {d:?}", s.name),
            }
            if let Follows(o) = s.default {
                assert!(find(o.name).is_some(), "{} follows an unregistered setting", s.name);
            }
        }
    }

    #[test]
    fn every_setting_has_a_commented_sample_stating_its_default() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf-samples");
        for s in ALL {
            let p = dir.join(s.name);
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(text.lines().all(|l| l.is_empty() || l.starts_with('#')), "{} must hold only comments", p.display());
            assert!(text.contains("Default"), "{} must state the default", p.display());
        }
    }
}
