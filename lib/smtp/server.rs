//! One SMTP session on a net::session::Session (fd 0/1 from postern-listen, tcpserver,
//! inetd or systemd): the state machine, relay control, recipient checks, STARTTLS,
//! AUTH, and the hand-over to postern-queue.
//!
//! The message is streamed to postern-queue's fd 0 as it arrives (behind our
//! Received line), never held whole in memory; the envelope goes to its fd 1 only
//! when the message ended cleanly and within `databytes`. Anything else (a client
//! that disconnects or stalls, a bare CR or LF, a message too big) closes the pipes
//! without an envelope, so postern-queue exits without queueing. 250 after DATA
//! means postern-queue exited 0, so the message is on disk.

use crate::address::Address;
use crate::config::control::{Control, ControlError};
use crate::config::routing::{Route, Routing};
use crate::config::settings;
use crate::error::{Classify, Kind};
use crate::net::implicit::{self, PortError, PortMode};
use crate::net::session::{NetError, Session};
use crate::os::home::Home;
use crate::os::log;
use crate::proto::base64;
use crate::proto::line::{Line, LineReader};
use crate::proto::sasl::{self, Exchange, Mechanism, SaslError, Step};
use crate::queue::dsnparams::{MessageDsn, RcptDsn};
use crate::queue::submit::exit;
use crate::queue::{Envelope, Submission};
use crate::smtp::command::{self, Command, MailParams, RcptParams, MAX_COMMAND_LINE};
use crate::smtp::data::{DataReader, DataStatus};
use crate::smtp::reply;
use crate::smtp::submission::HeaderCompleter;
use crate::status::Status;
use crate::users::Users;
use std::fmt;
use std::time::{Duration, Instant};

const PROGRAM: &str = "postern-smtpd";
/// Failed AUTH attempts before we hang up; each one waits a second longer.
const MAX_AUTH_FAILURES: u32 = 3;
/// Received lines beyond which a message is taken to be looping (qmail's 100).
const MAX_HOPS: usize = 100;

#[derive(Debug)]
pub enum SmtpdError {
    Control(ControlError),
    /// The client went away or stalled, or TLS broke.
    Net(NetError),
}

impl fmt::Display for SmtpdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmtpdError::Control(e) => write!(f, "{e}"),
            SmtpdError::Net(e) => write!(f, "client: {e}"),
        }
    }
}

impl Classify for SmtpdError {
    fn kind(&self) -> Kind {
        Kind::Temporary
    }
}

impl From<NetError> for SmtpdError {
    fn from(e: NetError) -> Self {
        SmtpdError::Net(e)
    }
}

impl From<ControlError> for SmtpdError {
    fn from(e: ControlError) -> Self {
        SmtpdError::Control(e)
    }
}

/// The control files postern-smtpd reads, once per session.
pub struct Config {
    /// The name in the greeting and the Received line (`smtpgreeting`, else `me`).
    pub greeting: String,
    pub rcpthosts: Vec<String>,
    pub routing: Routing,
    /// 0: no limit.
    pub databytes: u64,
    /// Each read and write.
    pub timeout: Duration,
    /// A whole command line (`timeoutsmtpdline`).
    pub line_timeout: Duration,
    /// A whole message, 354 to the dot (`timeoutsmtpddata`).
    pub data_timeout: Duration,
    /// Errors before 421 and hang-up (`smtpdmaxerrors`).
    pub max_errors: usize,
    /// Errors answered at once (`smtpdsofterrors`); each later one waits
    /// `error_delay` per error beyond them.
    pub soft_errors: usize,
    pub error_delay: Duration,
    pub maxrcpt: usize,
    pub badmailfrom: Vec<String>,
    /// AUTH offered without TLS (`authplaintext` is 1).
    pub auth_plaintext: bool,
    /// Added to the wait after each failed login (`authfaildelay`).
    pub auth_fail_delay: Duration,
    pub tls_available: bool,
    /// The arrival checks (authcheck, authcheckspf, authcheckdmarc, authservid).
    pub authcheck: crate::mailauth::Policy,
}

impl Config {
    pub fn load(home: &Home) -> Result<Config, ControlError> {
        let c = Control::new(home);
        let lower = |v: Vec<String>| v.into_iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>();
        Ok(Config {
            greeting: c.text(&settings::SMTPGREETING)?,
            rcpthosts: lower(c.list(&settings::RCPTHOSTS)?),
            databytes: c.number(&settings::DATABYTES)?,
            timeout: c.seconds(&settings::TIMEOUTSMTPD)?,
            line_timeout: c.seconds(&settings::TIMEOUTSMTPDLINE)?,
            data_timeout: c.seconds(&settings::TIMEOUTSMTPDDATA)?,
            max_errors: c.number(&settings::SMTPDMAXERRORS)?.max(1) as usize,
            soft_errors: c.number(&settings::SMTPDSOFTERRORS)? as usize,
            error_delay: Duration::from_millis(c.number(&settings::SMTPDERRORDELAY)?),
            maxrcpt: c.number(&settings::MAXRCPT)?.max(1) as usize,
            badmailfrom: lower(c.list(&settings::BADMAILFROM)?),
            auth_plaintext: c.number(&settings::AUTHPLAINTEXT)? == 1,
            auth_fail_delay: Duration::from_secs(c.number(&settings::AUTHFAILDELAY)?),
            tls_available: c.file("servercert.pem").exists(),
            routing: Routing::load(&c)?,
            authcheck: crate::mailauth::Policy::load(&c)?,
        })
    }

    /// qmail's rcpthosts: a domain, or `.domain` for every name under it.
    fn is_rcpthost(&self, domain: &str) -> bool {
        let d = domain.to_ascii_lowercase();
        self.rcpthosts.iter().any(|h| *h == d || (h.starts_with('.') && d.ends_with(h.as_str())))
    }

    fn is_badmailfrom(&self, sender: &Address) -> bool {
        let s = sender.as_str().to_ascii_lowercase();
        let at = sender.domain_lower().map(|d| format!("@{d}"));
        self.badmailfrom.iter().any(|b| *b == s || Some(b) == at.as_ref())
    }
}

/// Who is on the other end, from the super-server's environment.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: String,
    pub host: Option<String>,
    /// RELAYCLIENT from listen's rules (or tcpserver's): may relay; the value is
    /// appended to each recipient, as in qmail.
    pub relayclient: Option<String>,
    /// `sendmail -bs`: a local user's session on stdin and stdout (this uid).
    pub local_uid: Option<u32>,
    /// DATABYTES from the rules: this client's size limit, over control/databytes.
    pub databytes: Option<String>,
    /// TCPREMOTEINFO (tcpserver's ident answer, or a rule's): in the Received line.
    pub info: Option<String>,
}

impl Client {
    pub fn from_env() -> Client {
        let var = |n: &str| std::env::var(n).ok();
        Client {
            ip: var("TCPREMOTEIP").unwrap_or_else(|| "unknown".into()),
            host: var("TCPREMOTEHOST").filter(|h| !h.is_empty()),
            relayclient: var("RELAYCLIENT"),
            local_uid: None,
            databytes: var("DATABYTES"),
            info: var("TCPREMOTEINFO").filter(|i| !i.is_empty()),
        }
    }

    /// What the rules set for this client over the control files, as
    /// qmail-smtpd reads them: DATABYTES (0: no limit). Err: a value that is
    /// not a number, for the log; the control file's limit stays.
    pub fn apply(&self, cfg: &mut Config) -> Result<(), String> {
        let Some(d) = &self.databytes else { return Ok(()) };
        match d.trim().parse::<u64>() {
            Ok(n) => {
                cfg.databytes = n;
                Ok(())
            }
            Err(_) => {
                Err(format!("DATABYTES {d:?} from the access rules for {} is not a whole number; control/databytes applies", self.ip))
            }
        }
    }
}

struct Transaction {
    sender: Address,
    params: MailParams,
    rcpts: Vec<Address>,
    /// NOTIFY and ORCPT of each accepted recipient.
    rcpt_dsn: Vec<RcptDsn>,
    /// RCPT commands tried, accepted or not (DATA's "no valid recipients").
    tried: usize,
}

/// How a session ended, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    Quit,
    /// We hung up (too many errors, bare newline, failed logins, timeout).
    Dropped(&'static str),
}

pub struct Smtpd<'a> {
    home: &'a Home,
    cfg: &'a Config,
    client: &'a Client,
    net: Session,
    /// The client's input; DATA reads it raw.
    lines: LineReader,
    users: Option<Users>,
    helo: Option<String>,
    esmtp: bool,
    auth_user: Option<String>,
    auth_failures: u32,
    errors: usize,
    mail: Option<Transaction>,
    /// The arrival checks' resolver, made at the first MAIL that needs it.
    checker: Option<crate::mailauth::Checker>,
    /// On a submission port (smtp::submission): control/idhost, for the
    /// Message-IDs added.
    submission: Option<String>,
    /// SRS (control/srssecret), read at the first SRS recipient; None inside: off.
    srs: Option<Option<crate::srs::Srs>>,
    log: super::sessionlog::SessionLog,
}

/// What a command handler tells the loop.
enum Next {
    Go,
    Stop(End),
}

impl<'a> Smtpd<'a> {
    pub fn new(home: &'a Home, cfg: &'a Config, client: &'a Client, net: Session) -> Smtpd<'a> {
        Smtpd {
            home,
            cfg,
            client,
            net,
            lines: LineReader::new(MAX_COMMAND_LINE),
            users: None,
            helo: None,
            esmtp: false,
            auth_user: None,
            auth_failures: 0,
            errors: 0,
            mail: None,
            checker: None,
            srs: None,
            submission: None,
            log: Default::default(),
        }
    }

    /// Serve a submission port (RFC 6409): AUTH before MAIL, and missing Date
    /// and Message-ID added, with `idhost` in the Message-IDs.
    pub fn submission(mut self, idhost: String) -> Smtpd<'a> {
        self.submission = Some(idhost);
        self
    }

    /// The client as the log names it (`sessionlog::who`).
    fn who(&self) -> String {
        super::sessionlog::who(&self.client.ip, self.helo.as_deref(), self.net.tls_info(), self.auth_user.as_deref())
    }

    /// A reply with its enhanced status.
    fn reply(&mut self, code: u16, status: Status, text: &str) {
        crate::stats::smtpd_reply(self.home, code, status);
        self.net.write(&reply::format(code, Some(status), text));
    }

    /// A reply without one (greeting, EHLO, 354, 334).
    fn reply_plain(&mut self, code: u16, text: &str) {
        self.net.write(&reply::format(code, None, text));
    }

    /// Read more input by `deadline`, flushing pending replies first
    /// (PIPELINING: one write per batch of commands).
    fn fill(&mut self, deadline: Instant) -> Result<(), NetError> {
        self.net.flush()?;
        let mut buf = [0u8; 16384];
        let n = self.net.read_by(&mut buf, deadline)?;
        self.lines.push(&buf[..n]);
        Ok(())
    }

    /// The next command line (None: it was too long and has been skipped),
    /// whole within `timeoutsmtpdline`.
    fn read_line(&mut self) -> Result<Option<Vec<u8>>, NetError> {
        let deadline = Instant::now() + self.cfg.line_timeout;
        loop {
            match self.lines.next_line() {
                Some(Line::Text(l)) => return Ok(Some(l)),
                Some(Line::TooLong) => return Ok(None),
                None => self.fill(deadline)?,
            }
        }
    }

    /// Serve until QUIT or the client goes. Replies 421 on a timeout.
    pub fn run(&mut self) -> Result<End, SmtpdError> {
        let greeting = format!("{} ESMTP postern", self.cfg.greeting);
        self.reply_plain(220, &greeting);
        let r = self.serve();
        if let Err(SmtpdError::Net(NetError::Timeout)) = &r {
            self.reply(421, Status::CONNECTION_DROPPED, "timeout; closing connection");
        }
        self.net.close();
        let how = match &r {
            Ok(End::Quit) => "quit".to_string(),
            Ok(End::Dropped(why)) => format!("dropped: {why}"),
            Err(SmtpdError::Net(NetError::Closed)) => "the client closed the connection".to_string(),
            Err(e) => e.to_string(),
        };
        log::line(PROGRAM, &self.log.ended(&self.who(), &how));
        r
    }

    fn serve(&mut self) -> Result<End, SmtpdError> {
        loop {
            let next = match self.read_line()? {
                None => self.error(500, Status::SYNTAX, "line too long"),
                Some(line) => match command::parse_command(&line) {
                    Ok(cmd) => self.command(cmd)?,
                    Err(e) => {
                        let (code, status, text) = e.reply();
                        self.error(code, status, &text)
                    }
                },
            };
            if let Next::Stop(end) = next {
                return Ok(end);
            }
        }
    }

    /// An error (a bad command, a refused sender or recipient): the reply,
    /// later and later after `soft_errors` of them, and a hang-up after
    /// `max_errors`, so that guessing addresses or commands costs time and
    /// connections.
    fn error(&mut self, code: u16, status: Status, text: &str) -> Next {
        self.errors += 1;
        if self.errors >= self.cfg.max_errors {
            log::line(PROGRAM, &format!("{} errors from {}; hanging up", self.errors, self.client.ip));
            self.reply(421, Status::SECURITY, "too many errors; closing connection");
            return Next::Stop(End::Dropped("too many errors"));
        }
        if self.errors > self.cfg.soft_errors && !self.cfg.error_delay.is_zero() {
            let _ = self.net.flush();
            std::thread::sleep(self.cfg.error_delay.saturating_mul((self.errors - self.cfg.soft_errors) as u32));
        }
        self.reply(code, status, text);
        Next::Go
    }

    fn command(&mut self, cmd: Command) -> Result<Next, SmtpdError> {
        if cmd == Command::Data {
            if let Some(stop) = self.pipelined_after_data() {
                return Ok(stop);
            }
        }
        let need_helo = matches!(cmd, Command::Mail(..) | Command::Rcpt(..) | Command::Data | Command::Auth(..));
        if need_helo && self.helo.is_none() {
            return Ok(self.error(503, Status::INVALID_COMMAND, "send EHLO or HELO first"));
        }
        match cmd {
            Command::Ehlo(h) | Command::Helo(h) if h.len() > 255 => {
                return Ok(self.error(501, Status::BAD_ARGUMENTS, "host name too long"))
            }
            Command::Ehlo(h) => self.ehlo(h),
            Command::Helo(h) => {
                self.mail = None;
                self.esmtp = false;
                let text = format!("{} Hello {}", self.cfg.greeting, sanitize(&h));
                self.helo = Some(h);
                self.reply_plain(250, &text);
            }
            Command::Mail(path, params) => return Ok(self.mail_from(path, params)),
            Command::Rcpt(path, params) => return Ok(self.rcpt(path, params)),
            Command::Data => return self.data(),
            Command::Rset => {
                self.mail = None;
                self.reply(250, Status::OK, "ok");
            }
            Command::Noop => self.reply(250, Status::OK, "ok"),
            Command::Quit => {
                let text = format!("{} closing connection", self.cfg.greeting);
                self.reply(221, Status::OK, &text);
                return Ok(Next::Stop(End::Quit));
            }
            Command::Vrfy => self.reply(252, Status::CANNOT_VERIFY, "cannot VRFY; send the message and delivery will be attempted"),
            Command::Help => {
                self.reply(214, Status::OK, "commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH\nsee RFC 5321")
            }
            Command::StartTls => return self.starttls(),
            Command::Auth(mech, initial) => return self.auth(&mech, initial),
        }
        Ok(Next::Go)
    }

    fn auth_offered(&self) -> bool {
        self.auth_user.is_none() && (self.net.is_tls() || self.cfg.auth_plaintext)
    }

    fn ehlo(&mut self, h: String) {
        self.mail = None;
        self.esmtp = true;
        let mut lines = vec![format!("{} Hello {} [{}]", self.cfg.greeting, sanitize(&h), self.client.ip), "PIPELINING".into()];
        lines.push(if self.cfg.databytes > 0 { format!("SIZE {}", self.cfg.databytes) } else { "SIZE".into() });
        lines.extend(["8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN"].map(String::from));
        if self.cfg.tls_available && !self.net.is_tls() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("HELP".into());
        self.helo = Some(h);
        self.reply_plain(250, &lines.join("\n"));
    }

    fn mail_from(&mut self, path: String, params: MailParams) -> Next {
        if self.mail.is_some() {
            return self.error(503, Status::INVALID_COMMAND, "nested MAIL command; send RSET first");
        }
        if self.submission.is_some() && self.auth_user.is_none() {
            let text = if self.auth_offered() {
                "authentication required: this is the submission port; send AUTH first"
            } else {
                "authentication required: this is the submission port; send STARTTLS, then AUTH"
            };
            return self.error(530, Status::AUTH_REQUIRED, text);
        }
        let sender = match Address::parse(path.as_bytes()) {
            Ok(a) => a,
            Err(e) => return self.error(553, Status::BAD_SENDER, &format!("bad sender address: {e}")),
        };
        if !path.is_ascii() && !params.smtputf8 {
            return self.error(553, Status::NEEDS_UTF8, "non-ASCII address without SMTPUTF8");
        }
        if let (Some(size), true) = (params.size, self.cfg.databytes > 0) {
            if size > self.cfg.databytes {
                let text = format!("message size {size} exceeds the limit of {} bytes", self.cfg.databytes);
                return self.error(552, Status::TOO_BIG, &text);
            }
        }
        if self.cfg.is_badmailfrom(&sender) {
            log::line(PROGRAM, &format!("refused sender <{sender}> from {}: badmailfrom", self.client.ip));
            return self.error(553, Status::DENIED, "sender refused by this server's badmailfrom list");
        }
        if let Some((code, status, text)) = self.spf_refusal(&sender) {
            self.reply(code, status, &text);
            return Next::Go;
        }
        self.mail = Some(Transaction { sender, params, rcpts: Vec::new(), rcpt_dsn: Vec::new(), tried: 0 });
        self.reply(250, Status::SENDER_OK, "sender ok");
        Next::Go
    }

    /// Are this client's messages checked on arrival (postern-authcheck)? Not
    /// for authenticated or relay clients: they are ours.
    fn checks_apply(&self) -> bool {
        self.cfg.authcheck.enabled && self.auth_user.is_none() && self.client.relayclient.is_none()
    }

    /// `authcheckspf`: SPF for MAIL FROM, now; the reply when it refuses.
    fn spf_refusal(&mut self, sender: &Address) -> Option<(u16, Status, String)> {
        use crate::mailauth::{Checker, Decision};
        if !self.checks_apply() || !self.cfg.authcheck.spf_refuse {
            return None;
        }
        let ip = self.client.ip.parse().ok()?;
        if self.checker.is_none() {
            // Not fatal: postern-authcheck meets the same problem at DATA and says 451.
            self.checker = Checker::new(self.home).map_err(|e| log::line(PROGRAM, &e.to_string())).ok();
        }
        let (decision, why) = self.checker.as_ref()?.spf_at_mail(ip, self.helo.as_deref().unwrap_or(""), sender.as_str());
        let (code, status, text) = match decision {
            Decision::Accept => return None,
            Decision::Refuse(s, t) => (550, s, t),
            Decision::Defer(s, t) => (451, s, t),
        };
        log::line(PROGRAM, &format!("refused sender <{sender}> from {} ({code}): {why}", self.client.ip));
        Some((code, status, text))
    }

    fn rcpt(&mut self, path: String, params: RcptParams) -> Next {
        let Some(t) = self.mail.as_mut() else { return self.error(503, Status::INVALID_COMMAND, "send MAIL first") };
        t.tried += 1;
        let utf8 = t.params.smtputf8;
        if t.rcpts.len() >= self.cfg.maxrcpt {
            self.reply(452, Status::TOO_MANY_RECIPIENTS, "too many recipients; send the rest in another message");
            return Next::Go;
        }
        let path = match &self.client.relayclient {
            Some(suffix) => format!("{path}{suffix}"),
            None => path,
        };
        let rcpt = match Address::parse(path.as_bytes()) {
            Ok(a) => a,
            Err(e) => return self.error(553, Status::BAD_DESTINATION_SYNTAX, &format!("bad recipient address: {e}")),
        };
        if !path.is_ascii() && !utf8 {
            return self.error(553, Status::NEEDS_UTF8, "non-ASCII address without SMTPUTF8");
        }
        let (rcpt, srs_ok) = match self.srs_recipient(rcpt) {
            Ok(r) => r,
            Err((code, status, text)) => return self.error(code, status, &text),
        };
        let (code, status, text) =
            if srs_ok { (250, Status::RECIPIENT_OK, "recipient ok (a bounce of our forward)".into()) } else { self.check_recipient(&rcpt) };
        // Refused recipients count as errors (address harvesting).
        if code >= 500 {
            return self.error(code, status, &text);
        }
        if code == 250 {
            if let Some(t) = self.mail.as_mut() {
                t.rcpts.push(rcpt);
                t.rcpt_dsn.push(RcptDsn { notify: params.notify, orcpt: params.orcpt });
            }
        }
        self.reply(code, status, &text);
        Next::Go
    }

    /// A bounce to one of our SRS addresses (srsdomain, SRS0=/SRS1=, any case):
    /// checked here, so a forged or expired one is refused (never accepted and
    /// bounced), and a valid one becomes the address it stands for, accepted
    /// as mail to us even when that address is elsewhere. (rcpt, true) then;
    /// (rcpt, false) for any other address.
    fn srs_recipient(&mut self, rcpt: Address) -> Result<(Address, bool), (u16, Status, String)> {
        let Some(domain) = rcpt.domain() else { return Ok((rcpt, false)) };
        if !crate::srs::is_srs(rcpt.local()) {
            return Ok((rcpt, false));
        }
        if self.srs.is_none() {
            match crate::srs::load(self.home) {
                Ok(s) => self.srs = Some(s),
                Err(e) => {
                    log::line(PROGRAM, &format!("checking <{rcpt}>: {e}"));
                    return Err((451, Status::MAIL_SYSTEM, "cannot check this SRS address now; try again later".into()));
                }
            }
        }
        let Some(Some(srs)) = self.srs.as_ref() else { return Ok((rcpt, false)) };
        if !srs.is_ours(domain) {
            return Ok((rcpt, false));
        }
        match srs.reverse(rcpt.local(), crate::srs::now()) {
            Ok(r) => match Address::parse(r.address.as_bytes()) {
                Ok(a) => {
                    log::line(PROGRAM, &format!("SRS <{rcpt}> from {} goes back to <{a}>", self.client.ip));
                    Ok((a, true))
                }
                Err(e) => Err((553, Status::BAD_DESTINATION_SYNTAX, format!("<{rcpt}>: its SRS address is not valid: {e}"))),
            },
            Err(e) => {
                log::line(PROGRAM, &format!("refused SRS recipient from {}: {e}", self.client.ip));
                Err((550, Status::DENIED, format!("<{rcpt}>: {e}; this server takes back only its own recent forwards")))
            }
        }
    }

    /// Relay control and the local recipient check (no backscatter: unknown local
    /// users are refused here, not bounced later).
    fn check_recipient(&mut self, rcpt: &Address) -> (u16, Status, String) {
        if self.users.is_none() {
            match Users::open(self.home) {
                Ok(u) => self.users = Some(u),
                Err(e) => {
                    log::line(PROGRAM, &e.to_string());
                    return (451, Status::MAIL_SYSTEM, "cannot read the users database; try again later".into());
                }
            }
        }
        let users = self.users.as_mut().expect("opened above");
        match self.cfg.routing.route(&mut |d| users.is_virtual_domain(d), rcpt) {
            Route::Local(addr) => match local_exists(users, &addr) {
                Ok(Some(true)) => (250, Status::RECIPIENT_OK, "recipient ok".into()),
                Ok(Some(false)) => (550, Status::NO_MAILBOX, format!("<{rcpt}>: no mailbox here by that name")),
                Ok(None) => {
                    log::line(
                        PROGRAM,
                        &format!("checking <{rcpt}>: users/cdb has no record of its home's dot files; run `postern-admin rebuild`"),
                    );
                    (451, Status::MAIL_SYSTEM, "cannot check the recipient now; try again later".into())
                }
                Err(e) => {
                    log::line(PROGRAM, &format!("checking <{rcpt}>: {e}"));
                    (451, Status::MAIL_SYSTEM, "cannot check the recipient now; try again later".into())
                }
            },
            Route::Remote(addr) => {
                let domain = addr.domain_lower().unwrap_or_default();
                // postmaster here, sent on to control/postmaster (set by the admin).
                let postmaster = self.cfg.routing.postmaster(&mut |d| users.is_virtual_domain(d), rcpt).is_some();
                if postmaster || self.client.relayclient.is_some() || self.auth_user.is_some() || self.cfg.is_rcpthost(&domain) {
                    (250, Status::RECIPIENT_OK, "recipient ok".into())
                } else {
                    (554, Status::DENIED, format!("<{rcpt}>: relaying denied; this server does not accept mail for {domain}"))
                }
            }
        }
    }

    fn received(&self) -> String {
        let proto = match (self.mail.as_ref().is_some_and(|t| t.params.smtputf8), self.esmtp) {
            (true, _) => "UTF8SMTP",
            (false, true) => "ESMTP",
            (false, false) => "SMTP",
        };
        let suffix = format!("{}{}", if self.net.is_tls() { "S" } else { "" }, if self.auth_user.is_some() { "A" } else { "" });
        let helo = sanitize(self.helo.as_deref().unwrap_or("unknown"));
        if let Some(uid) = self.client.local_uid {
            return format!(
                "Received: from {helo} (uid {uid})\n\tby {} (postern-sendmail -bs) with {proto};\n\t{}\n",
                self.cfg.greeting,
                crate::message::date::rfc2822(std::time::SystemTime::now())
            );
        }
        let host = self.client.host.as_deref().map(sanitize).unwrap_or_else(|| "unknown".into());
        let ident = self.client.info.as_deref().map(|i| format!(" ident={}", sanitize(i))).unwrap_or_default();
        format!(
            "Received: from {helo} ({host} [{}]{ident})\n\tby {} (postern-smtpd) with {proto}{suffix};\n\t{}\n",
            self.client.ip,
            self.cfg.greeting,
            crate::message::date::rfc2822(std::time::SystemTime::now())
        )
    }

    /// Text after DATA before our 354 reply: refused, and we hang up.
    fn pipelined_after_data(&mut self) -> Option<Next> {
        // RFC 2920 3.1: DATA may end a pipelined group, but the message waits for
        // 354. Bytes already here would be read as the message if DATA succeeds
        // and as commands if it fails: a client (or a proxy) that disagrees with
        // us on which is smuggling, so neither happens (Postfix: "improper
        // command pipelining after DATA").
        if !self.lines.is_empty() || self.net.input_waiting() {
            log::line(PROGRAM, &format!("improper command pipelining after DATA from {}; hanging up", self.client.ip));
            self.lines.clear();
            self.mail = None;
            self.reply(
                554,
                Status::PROTOCOL_VIOLATION,
                "improper pipelining: text sent after DATA before the 354 reply (RFC 2920 3.1); closing connection",
            );
            return Some(Next::Stop(End::Dropped("text sent after DATA before 354")));
        }
        None
    }

    fn data(&mut self) -> Result<Next, SmtpdError> {
        let Some(t) = self.mail.as_ref() else { return Ok(self.error(503, Status::INVALID_COMMAND, "send MAIL first")) };
        if t.tried == 0 {
            return Ok(self.error(503, Status::INVALID_COMMAND, "send RCPT first"));
        }
        if t.rcpts.is_empty() {
            return Ok(self.error(554, Status::INVALID_COMMAND, "no valid recipients"));
        }
        // DKIM signing only for clients we trust to use our domains' names: a
        // forged From: of ours from outside must not leave with our signature.
        // The clients checked on arrival are exactly the others.
        let sign = self.auth_user.is_some() || self.client.relayclient.is_some();
        let began = Instant::now();
        let checked = self.checks_apply();
        let started = if checked {
            let helo = self.helo.clone().unwrap_or_default();
            let env = [("TCPREMOTEIP", self.client.ip.as_str()), ("POSTERN_HELO", helo.as_str())];
            Submission::start_program(self.home, &self.home.bin("postern-authcheck"), &env)
        } else {
            Submission::start_with(self.home, sign)
        };
        let mut spool = match started {
            Ok(s) => s,
            Err(e) => {
                log::line(PROGRAM, &e.to_string());
                self.reply(451, Status::MAIL_SYSTEM, "cannot start the queue; try again later");
                return Ok(Next::Go);
            }
        };
        self.reply_plain(354, "go ahead; end with <CRLF>.<CRLF>");
        spool.write(self.received().as_bytes());
        let mut reader = DataReader::default();
        let mut hops = Hops::default();
        let mut out = Vec::with_capacity(65536);
        let mut completer = self.submission.as_ref().map(|idhost| HeaderCompleter::new(idhost, std::time::SystemTime::now()));
        let mut completed = Vec::new();
        let limit = if self.cfg.databytes > 0 { self.cfg.databytes } else { u64::MAX };
        let deadline = Instant::now() + self.cfg.data_timeout;
        let status = loop {
            out.clear();
            let (used, status) = reader.feed(self.lines.pending(), &mut out);
            self.lines.consume(used);
            hops.scan(&out);
            if reader.bytes <= limit {
                match completer.as_mut() {
                    Some(c) => {
                        completed.clear();
                        c.feed(&out, &mut completed);
                        spool.write(&completed);
                    }
                    None => spool.write(&out),
                }
            }
            if status != DataStatus::NeedMore {
                break status;
            }
            if let Err(e) = self.fill(deadline) {
                spool.abort();
                self.mail = None;
                return Err(e.into());
            }
        };
        let t = self.mail.take().expect("checked above");
        if status == DataStatus::BareNewline {
            spool.abort();
            log::line(PROGRAM, &format!("refused message from {}: bare CR or LF in DATA", self.client.ip));
            self.reply(521, Status::SYNTAX, "bare CR or LF in the message; lines must end with CRLF (RFC 5321 2.3.8); closing connection");
            return Ok(Next::Stop(End::Dropped("bare CR or LF in DATA")));
        }
        if reader.bytes > limit {
            spool.abort();
            self.reply(552, Status::TOO_BIG, &format!("message exceeds the limit of {limit} bytes"));
            return Ok(Next::Go);
        }
        if reader.nul {
            spool.abort();
            log::line(PROGRAM, &format!("refused message from {}: NUL byte in DATA", self.client.ip));
            self.reply(554, Status::BAD_CONTENT, "NUL byte in the message; mail may not contain NUL (RFC 5322 2.3)");
            return Ok(Next::Go);
        }
        if hops.count > MAX_HOPS {
            spool.abort();
            self.reply(554, Status::LOOP, &format!("too many Received lines ({}); the message is looping", hops.count));
            return Ok(Next::Go);
        }
        if let Some(c) = completer.as_mut() {
            completed.clear();
            c.finish(&mut completed);
            spool.write(&completed);
        }
        let dsn = MessageDsn { ret: t.params.ret, envid: t.params.envid.clone() };
        let envelope = Envelope { sender: t.sender.clone(), recipients: t.rcpts.clone(), dsn, rcpt_dsn: t.rcpt_dsn.clone() };
        match spool.commit_id(&envelope) {
            Ok(id) => {
                let who = self.who();
                log::line(PROGRAM, &self.log.accepted(&who, id.as_ref(), &t.sender, &t.rcpts, reader.bytes, began.elapsed()));
                crate::stats::smtpd_accepted(self.home, reader.bytes);
                match id {
                    Some(id) => self.reply(250, Status::OK, &format!("ok: queued as {id}")),
                    None => self.reply(250, Status::OK, "ok: queued"),
                }
            }
            Err(e) => {
                log::warn(PROGRAM, &format!("queueing a message from {} failed: {e}", self.client.ip));
                use crate::mailauth::filter::{DEFERRED, REFUSED};
                match e.kind() {
                    // postern-authcheck's verdicts (it logged the reason).
                    _ if checked && e.code == REFUSED => {
                        self.reply(550, Status::DENIED, "message refused: it fails the DMARC policy (p=reject) of its From domain")
                    }
                    _ if checked && e.code == DEFERRED => {
                        self.reply(451, Status::SECURITY, "cannot check the DMARC policy of the From domain now (DNS); try again later")
                    }
                    Kind::Permanent => self.reply(554, Status::REFUSED, exit::describe(e.code)),
                    Kind::Temporary => self.reply(451, Status::MAIL_SYSTEM, &format!("{}; try again later", exit::describe(e.code))),
                }
            }
        }
        Ok(Next::Go)
    }

    fn starttls(&mut self) -> Result<Next, SmtpdError> {
        if self.net.is_tls() {
            return Ok(self.error(503, Status::INVALID_COMMAND, "TLS is already active"));
        }
        let config = match (self.cfg.tls_available, crate::net::tls::server_config(self.home)) {
            (true, Ok(Some(c))) => c,
            (_, Err(e)) => {
                log::line(PROGRAM, &e.to_string());
                self.reply(454, Status::SECURITY, "TLS not available now");
                return Ok(Next::Go);
            }
            _ => {
                self.reply(454, Status::SECURITY, "TLS not available");
                return Ok(Next::Go);
            }
        };
        self.reply(220, Status::OK, "ready to start TLS");
        // RFC 3207: anything sent after STARTTLS before the handshake is discarded,
        // or an attacker could inject commands into the protected session.
        self.lines.clear();
        // The handshake is bounded like a command line.
        self.net.set_read_deadline(Some(Instant::now() + self.cfg.line_timeout));
        let r = self.net.start_tls(config);
        self.net.set_read_deadline(None);
        r?;
        self.helo = None;
        self.esmtp = false;
        self.mail = None;
        self.auth_user = None;
        Ok(Next::Go)
    }

    fn auth(&mut self, mech: &str, initial: Option<String>) -> Result<Next, SmtpdError> {
        if self.auth_user.is_some() {
            return Ok(self.error(503, Status::INVALID_COMMAND, "already authenticated"));
        }
        if self.mail.is_some() {
            return Ok(self.error(503, Status::INVALID_COMMAND, "AUTH is not allowed during a mail transaction"));
        }
        if !self.auth_offered() {
            return Ok(self.error(538, Status::ENCRYPTION_REQUIRED, "encryption required: send STARTTLS first"));
        }
        let Some(mechanism) = Mechanism::parse(mech) else {
            return Ok(self.error(504, Status::BAD_ARGUMENTS, "mechanism not supported; use PLAIN or LOGIN"));
        };
        let mut step = Exchange::start(mechanism, initial.as_deref().map(str::as_bytes));
        let credentials = loop {
            match step {
                Ok((_, Step::Done(c))) => break c,
                Ok((mut x, Step::Challenge(prompt))) => {
                    self.reply_plain(334, &base64::encode(prompt));
                    let Some(line) = self.read_line()? else {
                        self.reply(500, Status::SYNTAX, "line too long");
                        return Ok(Next::Go);
                    };
                    step = x.respond(&line).map(|s| (x, s));
                }
                Err(SaslError::Cancelled) => {
                    self.reply(501, Status::new(5, 0, 0), "AUTH cancelled");
                    return Ok(Next::Go);
                }
                Err(e) => {
                    self.reply(501, Status::SYNTAX, &format!("AUTH {}", e));
                    return Ok(Next::Go);
                }
            }
        };
        let sasl::Credentials { login, password } = credentials;
        let (Ok(login), Ok(password)) = (String::from_utf8(login), String::from_utf8(password)) else {
            return Ok(self.failed_login("(not UTF-8)"));
        };
        match crate::auth::checkpassword::check(self.home, &login, &password) {
            Ok(true) => {
                log::line(PROGRAM, &format!("{} authenticated as {login}", self.client.ip));
                self.auth_user = Some(login);
                self.reply(235, Status::AUTHENTICATED, "authentication successful");
                Ok(Next::Go)
            }
            Ok(false) => Ok(self.failed_login(&login)),
            Err(e) => {
                log::line(PROGRAM, &format!("checking the password of {login}: {e}"));
                self.reply(454, Status::SECURITY, "temporary authentication failure; try again later");
                Ok(Next::Go)
            }
        }
    }

    /// A wrong login: wait longer each time, hang up after a few.
    fn failed_login(&mut self, login: &str) -> Next {
        self.auth_failures += 1;
        log::warn(PROGRAM, &format!("failed login for {login} from {} ({} so far)", self.client.ip, self.auth_failures));
        let _ = self.net.flush();
        std::thread::sleep(self.cfg.auth_fail_delay * self.auth_failures);
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.reply(421, Status::SECURITY, "too many failed logins; closing connection");
            return Next::Stop(End::Dropped("too many failed logins"));
        }
        self.reply(535, Status::AUTH_FAILED, "authentication failed");
        Next::Go
    }
}

/// Does a local address (after virtualdomains) have a mailbox? An address with
/// an extension needs a dot file (as postern-local does). We run as the network
/// user and may not read the home: then users/cdb's record of its dot files,
/// made by `postern-admin rebuild`, decides; without a record we cannot tell.
fn local_exists(users: &mut Users, addr: &Address) -> Result<Option<bool>, crate::users::UsersError> {
    use crate::deliver::dotqmail;
    let Some(t) = users.lookup(addr.local(), addr.domain().unwrap_or(""))? else { return Ok(Some(false)) };
    if t.dash.is_empty() && t.ext.is_empty() {
        return Ok(Some(true));
    }
    if std::fs::read_dir(&t.home).is_ok() {
        // A dot file that cannot be read defers the delivery; it does not bounce.
        return Ok(Some(!matches!(dotqmail::find(&t.home, &t.dash, &t.ext), Ok(None))));
    }
    let Some(names) = users.dot_files(&t.home) else { return Ok(None) };
    Ok(Some(dotqmail::candidates(&t.dash, &t.ext).iter().any(|c| names.contains(&c.name))))
}

/// A client-supplied name made safe for a header: printable ASCII, short.
fn sanitize(s: &str) -> String {
    s.chars().take(128).map(|c| if c.is_ascii_graphic() && !"()\\".contains(c) { c } else { '?' }).collect()
}

/// Counts Received lines in the header as the message streams by.
#[derive(Default)]
struct Hops {
    count: usize,
    line: Vec<u8>,
    body: bool,
}

impl Hops {
    fn scan(&mut self, data: &[u8]) {
        for &b in data {
            if self.body {
                return;
            }
            if b != b'\n' {
                if self.line.len() < 9 {
                    self.line.push(b);
                }
                continue;
            }
            if self.line.is_empty() {
                self.body = true;
            } else if self.line.eq_ignore_ascii_case(b"received:") {
                self.count += 1;
            }
            self.line.clear();
        }
    }
}

/// The whole of postern-smtpd after it starts, whether exec'd or forked by
/// postern-listen (which runs it without an exec: see lib/net/listen.rs): become
/// postern-d if root, load the configuration, run the session on fds 0 and 1.
/// Returns the exit code: 0 after QUIT, 1 when the session ended otherwise, 111
/// when it could not start.
pub fn session_main() -> i32 {
    if let Err(e) = crate::os::privs::drop_to(crate::os::privs::Service::Daemon) {
        log::line(PROGRAM, &e.to_string());
        return crate::error::EXIT_TEMP;
    }
    let net = match Session::stdio(Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => {
            log::line(PROGRAM, &format!("the connection must be on fds 0 and 1: {e}"));
            return crate::error::EXIT_TEMP;
        }
    };
    let mode = match PortMode::from_env() {
        Ok(m) => m,
        Err(e) => {
            log::line(PROGRAM, &e.to_string());
            return crate::error::EXIT_TEMP;
        }
    };
    serve(net, Client::from_env(), mode, |_| {})
}

/// `sendmail -bs`: one SMTP session with the calling user on stdin and stdout,
/// as that user (no network, no privilege change). A local user may send
/// anywhere, as with `sendmail` itself (relaying, DKIM signing), and is not
/// offered STARTTLS or AUTH, which need the server's key and postern-auth.
pub fn local_session_main() -> i32 {
    let net = match Session::stdio(Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => {
            log::line("postern-sendmail", &format!("-bs needs standard input and output: {e}"));
            return crate::error::EXIT_TEMP;
        }
    };
    let uid = crate::os::sys::real_uid();
    let client =
        Client { ip: "127.0.0.1".into(), host: None, relayclient: Some(String::new()), local_uid: Some(uid), databytes: None, info: None };
    serve(net, client, PortMode::default(), |cfg| {
        cfg.tls_available = false;
        cfg.auth_plaintext = false;
    })
}

fn serve(mut net: Session, client: Client, mode: PortMode, adjust: impl FnOnce(&mut Config)) -> i32 {
    let home = Home::from_env();
    // The submission port's Message-IDs name control/idhost.
    let loaded = Config::load(&home).and_then(|mut c| {
        adjust(&mut c);
        let idhost = if mode.submission { Some(Control::new(&home).text(&settings::IDHOST)?) } else { None };
        Ok((c, idhost))
    });
    let (mut cfg, idhost) = match loaded {
        Ok(c) => c,
        Err(e) => {
            // Say why to the client too: it will retry, and the admin sees the log.
            log::line(PROGRAM, &e.to_string());
            if !mode.implicit_tls {
                net.write(&reply::format(421, Some(Status::MAIL_SYSTEM), "server configuration error; try again later"));
            }
            net.close();
            return crate::error::EXIT_TEMP;
        }
    };
    if let Err(e) = client.apply(&mut cfg) {
        log::line(PROGRAM, &e);
    }
    net.set_timeout(cfg.timeout);
    if mode.implicit_tls {
        // RFC 8314: port 465 starts with the handshake, bounded like a command line.
        if let Err(e) = implicit::start(&mut net, &home, Instant::now() + cfg.line_timeout) {
            log::line(PROGRAM, &format!("{}: {e}", client.ip));
            return if matches!(e, PortError::Handshake(_)) { 1 } else { crate::error::EXIT_TEMP };
        }
    }
    let mut smtpd = Smtpd::new(&home, &cfg, &client, net);
    if let Some(idhost) = idhost {
        smtpd = smtpd.submission(idhost);
    }
    // run() logs the session's line, however it ended.
    match smtpd.run() {
        Ok(End::Quit) => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_counted_in_the_header_only() {
        let mut h = Hops::default();
        let msg = b"Received: a\nreceived: b\n x\nSubject: s\n\nReceived: c\n";
        for c in msg.chunks(3) {
            h.scan(c);
        }
        assert_eq!(h.count, 2);
    }

    #[test]
    fn sanitize_keeps_headers_safe() {
        assert_eq!(sanitize("mx.example"), "mx.example");
        assert_eq!(sanitize("a (b)\r\nX: y"), "a??b???X:?y");
    }
}
