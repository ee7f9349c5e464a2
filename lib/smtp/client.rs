//! The SMTP client: one message to the recipients of one domain, with
//! qmail-remote's interface (see programs/postern-remote.rs).
//!
//! The order of work: find the hosts (lib/smtp/mx.rs), pick the source address and
//! HELO name by the sender's domain and the TLS policy by the recipients' domain
//! (lib/smtp/outgoing.rs), then try each host until one takes the transaction.
//! Until MAIL FROM has been sent a failure moves on to the next host (connection
//! refused or timed out, a greeting or EHLO/HELO that is not 2xx, TLS that policy
//! requires and that failed). From MAIL FROM on, what the host says is the
//! result: 2xx delivered, 4xx retry, 5xx bounce, and a lost connection or timeout
//! is a retry (never reported as delivered).
//!
//! An opportunistic STARTTLS whose handshake fails is retried once on a new
//! connection to the same host in plain text.
//!
//! A delivery by MX first asks for the domain's MTA-STS policy
//! (lib/smtp/mtasts.rs). An enforced one narrows the hosts to those it lists and
//! makes TLS required and verified, whatever tlsdestinations says; a testing one
//! only adds log lines (the `sts_*` methods).
//!
//! DANE (lib/smtp/dane.rs, with control/dnssec) can make TLS mandatory per MX
//! host, with the certificate checked against its TLSA records
//! (lib/net/dane.rs): no STARTTLS, a failed handshake or a mismatch skips the
//! host with no plain-text retry, and the delivery report says `(TLS, dane)` or
//! `(TLS, dane-ta)`.

use crate::config::control::{Control, ControlError};
use crate::config::settings;
use crate::error::{Classify, Kind};
use crate::os::home::Home;
use crate::smtp::dane::{self, HostDane};
use crate::smtp::mtasts;
use crate::smtp::mx::{self, MxError, Peer, Relay, Routes};
use crate::smtp::outgoing::{self, Bind, DomainTable, Source, TlsPolicy};
use crate::smtp::reply::{self as smtpreply, Reply, ReplyError};
use crate::status::Status;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One invocation: HOST SENDER RECIPIENT...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub domain: String,
    pub sender: String,
    pub recipients: Vec<String>,
}

/// Settings read once from control/.
pub struct Config {
    pub helo: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub routes: Routes,
    pub sources: DomainTable<Source>,
    pub tls_policy: DomainTable<TlsPolicy>,
    /// control/tlsca.pem when it exists.
    pub tls_ca: Option<PathBuf>,
}

impl Config {
    pub fn load(control: &Control) -> Result<Config, ControlError> {
        let ca = control.file("tlsca.pem");
        Ok(Config {
            helo: control.text(&settings::HELOHOST)?,
            timeout: control.seconds(&settings::TIMEOUTREMOTE)?,
            connect_timeout: control.seconds(&settings::TIMEOUTCONNECT)?,
            routes: Routes::load(control)?,
            sources: outgoing::load_sources(control)?,
            tls_policy: outgoing::load_tls_policy(control)?,
            tls_ca: ca.exists().then_some(ca),
        })
    }
}

#[derive(Debug)]
pub enum RemoteError {
    Control(ControlError),
    Tls(crate::net::tls::TlsError),
    Route(MxError),
    /// Reading the message on fd 0.
    Message(io::Error),
    Connect(Peer, Option<IpAddr>, io::Error),
    /// outgoingip names no source address of the peer's family.
    NoSource(Peer, String),
    /// No reply (or write) within timeoutremote; the stage and the seconds.
    Timeout(Peer, &'static str, u64),
    Lost(Peer, &'static str),
    Io(Peer, &'static str, io::Error),
    BadReply(Peer, &'static str, ReplyError),
    Greeting(Peer, Reply),
    Helo(Peer, Reply),
    TlsHandshake(Peer, String),
    /// Policy requires TLS and the peer does not offer it or refused it.
    TlsRequired(Peer, String),
    /// DANE (lib/smtp/dane.rs) skips the host: why.
    Dane(Peer, String),
    TooBig(Peer, u64, u64),
    Needs8Bit(Peer),
    BadSender(String),
    Mail(Peer, String, Reply),
    Data(Peer, Reply),
    Final(Peer, Reply),
    /// No recipient accepted; true when one was refused temporarily.
    NoneAccepted(Peer, bool),
    /// An enforced MTA-STS policy (its label) refused the host: why, and the status.
    StsRefused(Peer, String, String, Status),
}

fn said(r: &Reply) -> String {
    format!("Remote host said: {}", r.quoted())
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RemoteError::*;
        match self {
            Control(e) => write!(f, "{e}; fix it and the message will be retried"),
            Tls(e) => write!(f, "{e}; fix it and the message will be retried"),
            Route(e) => write!(f, "{e}"),
            Message(e) => write!(f, "cannot read the message on fd 0: {e}"),
            Connect(p, Some(src), e) => write!(f, "cannot connect to {p} from {src}: {e}"),
            Connect(p, None, e) => write!(f, "cannot connect to {p}: {e}"),
            NoSource(p, d) => write!(f, "skipped {p}: control/outgoingip gives the sender domain {d:?} no address of that family"),
            Timeout(p, stage, s) => write!(f, "{p} did not answer within {s} seconds {stage}; will retry"),
            Lost(p, stage) => write!(f, "{p} closed the connection {stage}; will retry"),
            Io(p, stage, e) => write!(f, "connection to {p} failed {stage}: {e}; will retry"),
            BadReply(p, stage, e) => write!(f, "{p} {e} {stage}; will retry"),
            Greeting(p, r) => write!(f, "connected to {p} but its greeting was not 2xx.\n{}", said(r)),
            Helo(p, r) => write!(f, "connected to {p} but it refused my EHLO and HELO.\n{}", said(r)),
            TlsHandshake(p, e) => write!(f, "TLS with {p} failed: {e}"),
            TlsRequired(p, why) => {
                write!(f, "control/tlsdestinations requires TLS for this domain, and {p} {why}; will retry")
            }
            Dane(p, why) => write!(f, "skipped {p}: {why}; will retry"),
            TooBig(p, size, limit) => {
                write!(f, "the message is {size} bytes and {p} accepts at most {limit} bytes (its SIZE)")
            }
            Needs8Bit(p) => {
                write!(f, "the message contains 8-bit data and {p} does not offer 8BITMIME, so it cannot be sent unchanged")
            }
            BadSender(s) => write!(f, "the sender address {s:?} cannot be sent in SMTP (it contains a line break or angle bracket)"),
            Mail(p, s, r) => write!(f, "{p} does not like the sender <{s}>.\n{}", said(r)),
            Data(p, r) => write!(f, "{p} refused to accept the message (DATA).\n{}", said(r)),
            Final(p, r) => write!(f, "{p} refused the message after DATA.\n{}", said(r)),
            NoneAccepted(p, _) => write!(f, "giving up on {p}: it accepted no recipient"),
            StsRefused(p, label, why, _) => {
                write!(f, "the domain's MTA-STS policy ({label}) requires verified TLS with its listed MX hosts, and {p} {why}; will retry")
            }
        }
    }
}

impl RemoteError {
    /// The RFC 3463 status: decided here, or the remote server's own.
    pub fn status(&self) -> Status {
        use RemoteError::*;
        match self {
            Control(_) => Status::SYSTEM_CONFIG,
            Tls(_) | TlsHandshake(..) => Status::TLS_FAILED,
            Route(e) => e.status(),
            Message(_) => Status::MAIL_SYSTEM,
            Connect(..) | NoSource(..) => Status::NO_ANSWER,
            Timeout(..) | Lost(..) | Io(..) => Status::CONNECTION_DROPPED,
            BadReply(..) => Status::PROTOCOL,
            Greeting(_, r) | Helo(_, r) | Mail(_, _, r) | Data(_, r) | Final(_, r) => r.status_or_class(),
            TlsRequired(..) | Dane(..) => Status::TLS_REQUIRED,
            TooBig(..) => Status::TOO_BIG,
            Needs8Bit(_) => Status::CONVERSION_NEEDED,
            BadSender(_) => Status::BAD_SENDER,
            NoneAccepted(_, temporary) => Status::of_kind(if *temporary { Kind::Temporary } else { Kind::Permanent }),
            StsRefused(.., s) => *s,
        }
    }
}

impl Classify for RemoteError {
    fn kind(&self) -> Kind {
        use RemoteError::*;
        let by_reply = |r: &Reply| if r.class() == 5 { Kind::Permanent } else { Kind::Temporary };
        match self {
            Route(e) => e.kind(),
            Greeting(_, r) | Helo(_, r) | Mail(_, _, r) | Data(_, r) | Final(_, r) => by_reply(r),
            TooBig(..) | Needs8Bit(_) | BadSender(_) => Kind::Permanent,
            NoneAccepted(_, temp) => {
                if *temp {
                    Kind::Temporary
                } else {
                    Kind::Permanent
                }
            }
            _ => Kind::Temporary,
        }
    }
}

/// What postern-remote prints: one report per recipient (possibly none), then one
/// for the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reports {
    pub recipients: Vec<(u8, String)>,
    pub message: (u8, String),
}

impl Reports {
    /// A failure before any recipient was tried: only the message report.
    pub fn failed(e: &RemoteError) -> Reports {
        let letter = if e.kind() == Kind::Permanent { b'D' } else { b'Z' };
        Reports { recipients: Vec::new(), message: (letter, format!("{} {e}", e.status())) }
    }

    /// The bytes for fd 1: letter, text, NUL for each report. NULs in texts (from a
    /// peer) become '?'.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (letter, text) in self.recipients.iter().chain(std::iter::once(&self.message)) {
            out.push(*letter);
            out.extend(text.bytes().map(|b| if b == 0 { b'?' } else { b }));
            out.push(0);
        }
        out
    }
}

/// The message on fd 0 and what the session needs to know about it.
pub struct Message<'a> {
    file: &'a File,
    /// Size on the wire before dot-stuffing (LF counted as CRLF).
    pub wire_size: u64,
    pub eight_bit: bool,
}

const CHUNK: usize = 64 * 1024;

impl<'a> Message<'a> {
    /// One pass over the message for its size and whether it has 8-bit bytes.
    pub fn scan(file: &'a File) -> io::Result<Message<'a>> {
        let (mut off, mut lfs, mut eight_bit, mut last) = (0u64, 0u64, false, b'\n');
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file.read_at(&mut buf, off)?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            lfs += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            eight_bit |= chunk.iter().any(|&b| b >= 0x80);
            last = chunk[n - 1];
            off += n as u64;
        }
        let wire_size = off + lfs + if last == b'\n' { 0 } else { 2 };
        Ok(Message { file, wire_size, eight_bit })
    }

    /// Write the message as DATA wants it: CRLF line ends, leading dots doubled,
    /// a final line end and the terminating dot.
    fn send(&self, w: &mut impl Write) -> io::Result<()> {
        let mut inbuf = vec![0u8; CHUNK];
        let mut out = Vec::with_capacity(CHUNK + CHUNK / 8);
        let (mut off, mut at_start) = (0u64, true);
        loop {
            let n = self.file.read_at(&mut inbuf, off)?;
            if n == 0 {
                break;
            }
            off += n as u64;
            for &b in &inbuf[..n] {
                if at_start && b == b'.' {
                    out.push(b'.');
                }
                if b == b'\n' {
                    out.push(b'\r');
                }
                out.push(b);
                at_start = b == b'\n';
            }
            w.write_all(&out)?;
            out.clear();
        }
        if !at_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        w.write_all(&out)?;
        w.flush()
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// One connection: blocking socket with SO_RCVTIMEO/SO_SNDTIMEO set to
/// timeoutremote, so each read and write waits at most that long.
struct Conn {
    stream: Option<Stream>,
    buf: Vec<u8>,
    peer: Peer,
    secs: u64,
}

impl Conn {
    fn connect(cfg: &Config, target: &Peer, bind: Option<IpAddr>) -> Result<Conn, RemoteError> {
        let peer = target.clone();
        let err = |e: io::Error| RemoteError::Connect(peer.clone(), bind, e);
        let addr = SocketAddr::new(target.ip, target.port);
        let sock =
            socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, Some(socket2::Protocol::TCP)).map_err(err)?;
        if let Some(src) = bind {
            sock.bind(&SocketAddr::new(src, 0).into()).map_err(err)?;
        }
        sock.connect_timeout(&addr.into(), cfg.connect_timeout).map_err(err)?;
        let tcp: TcpStream = sock.into();
        tcp.set_read_timeout(Some(cfg.timeout)).map_err(err)?;
        tcp.set_write_timeout(Some(cfg.timeout)).map_err(err)?;
        // Commands are batched by us; no need for Nagle's delay.
        tcp.set_nodelay(true).map_err(err)?;
        Ok(Conn { stream: Some(Stream::Plain(tcp)), buf: Vec::new(), peer, secs: cfg.timeout.as_secs() })
    }

    fn io_err(&self, stage: &'static str, e: io::Error) -> RemoteError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => RemoteError::Timeout(self.peer.clone(), stage, self.secs),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                RemoteError::Lost(self.peer.clone(), stage)
            }
            _ => RemoteError::Io(self.peer.clone(), stage, e),
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self.stream.as_mut().expect("connection in use") {
            Stream::Plain(t) => t,
            Stream::Tls(t) => t.as_mut(),
        }
    }

    fn send(&mut self, data: &[u8], stage: &'static str) -> Result<(), RemoteError> {
        let w = self.writer();
        let r = w.write_all(data).and_then(|_| w.flush());
        r.map_err(|e| self.io_err(stage, e))
    }

    fn send_message(&mut self, msg: &Message, stage: &'static str) -> Result<(), RemoteError> {
        let r = msg.send(&mut self.writer());
        r.map_err(|e| self.io_err(stage, e))
    }

    fn reply(&mut self, stage: &'static str) -> Result<Reply, RemoteError> {
        let mut chunk = [0u8; 4096];
        loop {
            match smtpreply::parse(&self.buf) {
                Ok(Some((r, used))) => {
                    self.buf.drain(..used);
                    return Ok(r);
                }
                Ok(None) => {}
                Err(e) => return Err(RemoteError::BadReply(self.peer.clone(), stage, e)),
            }
            let n = match self.stream.as_mut().expect("connection in use") {
                Stream::Plain(t) => t.read(&mut chunk),
                Stream::Tls(t) => t.read(&mut chunk),
            };
            match n {
                Ok(0) => return Err(RemoteError::Lost(self.peer.clone(), stage)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(stage, e)),
            }
        }
    }

    fn command(&mut self, line: &str, stage: &'static str) -> Result<Reply, RemoteError> {
        self.send(format!("{line}\r\n").as_bytes(), stage)?;
        self.reply(stage)
    }

    fn start_tls(&mut self, config: Arc<rustls::ClientConfig>) -> Result<(), RemoteError> {
        let tcp = match self.stream.take() {
            Some(Stream::Plain(t)) => t,
            other => {
                self.stream = other;
                return Ok(());
            }
        };
        let t = &self.peer;
        let name = rustls::pki_types::ServerName::try_from(t.host.clone()).unwrap_or_else(|_| t.ip.into());
        let fail = |e: String| RemoteError::TlsHandshake(self.peer.clone(), e);
        let conn = rustls::ClientConnection::new(config, name).map_err(|e| fail(e.to_string()))?;
        let mut tls = Box::new(rustls::StreamOwned::new(conn, tcp));
        // Bytes the server sent before the handshake are not trusted (RFC 3207).
        self.buf.clear();
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => fail(format!("no answer within {} seconds", self.secs)),
                io::ErrorKind::UnexpectedEof => fail("the server closed the connection during the handshake".into()),
                _ => fail(e.to_string()),
            })?;
        }
        self.stream = Some(Stream::Tls(tls));
        Ok(())
    }

    /// QUIT politely, waiting briefly for the answer; errors no longer matter.
    fn quit(mut self) {
        if let Some(Stream::Plain(t)) = &self.stream {
            let _ = t.set_read_timeout(Some(Duration::from_secs(self.secs.min(10))));
        }
        if self.command("QUIT", "after QUIT").is_ok() {
            if let Some(Stream::Tls(t)) = &mut self.stream {
                t.conn.send_close_notify();
                let _ = t.conn.complete_io(&mut t.sock);
            }
        }
    }
}

/// What the EHLO reply offered.
#[derive(Default, Debug, Clone, Copy)]
struct Extensions {
    pipelining: bool,
    starttls: bool,
    eight_bit: bool,
    /// SIZE's limit; None when SIZE is not offered, Some(0) for no limit.
    size: Option<u64>,
}

impl Extensions {
    fn from(r: &Reply) -> Extensions {
        let mut x = Extensions::default();
        for (k, v) in r.keywords() {
            match k.as_str() {
                "PIPELINING" => x.pipelining = true,
                "STARTTLS" => x.starttls = true,
                "8BITMIME" => x.eight_bit = true,
                "SIZE" => x.size = Some(v.parse().unwrap_or(0)),
                _ => {}
            }
        }
        x
    }
}

/// How an attempt that did not reach MAIL FROM ended.
enum Next {
    /// Try the next host.
    Host(RemoteError),
    /// The opportunistic TLS handshake failed: reconnect in plain text.
    Plain(RemoteError),
}

/// Everything fixed for one run.
struct Run<'a> {
    cfg: &'a Config,
    job: &'a Job,
    msg: &'a Message<'a>,
    helo: String,
    source: Source,
    sender_domain: String,
    policy: TlsPolicy,
    /// The MTA-STS policy in force (lib/smtp/mtasts.rs), for MX deliveries.
    sts: Option<mtasts::Active>,
    /// DANE's decision per MX host that has one (lib/smtp/dane.rs).
    dane: HashMap<String, HostDane>,
    cache: RefCell<&'a mut Cache>,
}

/// Connections kept open after a delivery for the next message to the same
/// host: postern-rspawn's resident workers keep one (lib/send/rworker.rs);
/// postern-remote run alone keeps none. A connection is reused only for the
/// same recipient domain, host address, port, source address, HELO name and
/// TLS choice, so every policy decision that let it deliver still holds; it
/// is checked with RSET first, and let go (QUIT) when idle for `REUSE_IDLE`,
/// older than `REUSE_AGE` or used `REUSE_COUNT` times.
pub struct Cache {
    keep: bool,
    idle: Vec<Kept>,
}

pub const REUSE_IDLE: Duration = Duration::from_secs(4);
pub const REUSE_AGE: Duration = Duration::from_secs(300);
pub const REUSE_COUNT: u32 = 100;

#[derive(Clone, PartialEq, Eq)]
struct ConnKey {
    domain: String,
    peer: Peer,
    bind: Option<IpAddr>,
    helo: String,
    tls_allowed: bool,
}

struct Kept {
    key: ConnKey,
    conn: Conn,
    ext: Extensions,
    label: &'static str,
    born: Instant,
    used: u32,
    since: Instant,
}

impl Cache {
    /// A cache that keeps connections (`keep`), or one that closes each after
    /// its message.
    pub fn new(keep: bool) -> Cache {
        Cache { keep, idle: Vec::new() }
    }

    /// Let go of connections idle or old too long (QUIT each).
    pub fn expire(&mut self, now: Instant) {
        let (stale, fresh): (Vec<Kept>, Vec<Kept>) =
            self.idle.drain(..).partition(|k| now >= k.since + REUSE_IDLE || now >= k.born + REUSE_AGE);
        self.idle = fresh;
        for k in stale {
            k.conn.quit();
        }
    }

    fn take(&mut self, key: &ConnKey) -> Option<Kept> {
        self.expire(Instant::now());
        let i = self.idle.iter().position(|k| k.key == *key)?;
        Some(self.idle.swap_remove(i))
    }

    fn put(&mut self, k: Kept) {
        if self.keep && k.used < REUSE_COUNT {
            self.idle.push(k);
        } else {
            k.conn.quit();
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        for k in self.idle.drain(..) {
            k.conn.quit();
        }
    }
}

fn sender_domain(sender: &str) -> String {
    crate::address::Address::parse(sender.as_bytes()).ok().and_then(|a| a.domain_lower()).unwrap_or_default()
}

fn smtp_safe(addr: &str) -> bool {
    !addr.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'<' | b'>' | 0))
}

/// Deliver one message; never fails: every outcome is a report.
pub fn deliver(home: &Home, job: &Job, message: &File) -> Reports {
    deliver_with(home, job, message, &mut Cache::new(false))
}

/// `deliver`, reusing and keeping connections in `cache`.
pub fn deliver_with(home: &Home, job: &Job, message: &File, cache: &mut Cache) -> Reports {
    let control = Control::new(home);
    let cfg = match Config::load(&control) {
        Ok(c) => c,
        Err(e) => return Reports::failed(&RemoteError::Control(e)),
    };
    let msg = match Message::scan(message) {
        Ok(m) => m,
        Err(e) => return Reports::failed(&RemoteError::Message(e)),
    };
    if !smtp_safe(&job.sender) {
        return Reports::failed(&RemoteError::BadSender(job.sender.clone()));
    }
    let (targets, mx_secure) = match mx::peers_proven(&control, &cfg.routes, &job.domain) {
        Ok(t) => t,
        Err(e) => return Reports::failed(&RemoteError::Route(e)),
    };
    // DANE hook: only MX records that DNSSEC proved lead to TLSA lookups.
    let dane = if mx_secure {
        let mut hosts: Vec<&str> = targets.iter().map(|t| t.host.as_str()).collect();
        hosts.dedup();
        match dane::lookup(&control, &hosts) {
            Ok(d) => d,
            Err(e) => return Reports::failed(&RemoteError::Route(e)),
        }
    } else {
        HashMap::new()
    };
    let sd = sender_domain(&job.sender);
    let source = cfg.sources.find(&sd).unwrap_or_default();
    // MTA-STS: only for delivery by MX (an smtproutes relay is the admin's choice).
    let by_mx = cfg.routes.find(&job.domain).relay == Relay::Mx;
    let sts = match mtasts::Settings::load(home, &control, cfg.tls_ca.clone()) {
        Ok(s) if by_mx => mtasts::for_domain(&control, &s, &job.domain, &mut |m| sts_log(&m)),
        Ok(_) => None,
        Err(e) => return Reports::failed(&RemoteError::Control(e)),
    };
    let mut policy = cfg.tls_policy.find(&job.domain).unwrap_or(TlsPolicy::Opportunistic);
    if sts.as_ref().is_some_and(|a| a.enforce()) {
        policy = TlsPolicy::Verify;
    }
    let run = Run {
        cfg: &cfg,
        job,
        msg: &msg,
        helo: source.helo.clone().unwrap_or_else(|| cfg.helo.clone()),
        source,
        sender_domain: sd,
        policy,
        sts,
        dane,
        cache: RefCell::new(cache),
    };
    let reports = run.over(&targets);
    if by_mx {
        let label = run.sts.as_ref().map(|a| format!("{} ({})", a.label(), a.from)).unwrap_or_else(|| "no mta-sts policy".into());
        let outcome = match reports.message.0 {
            b'K' => "delivered",
            b'Z' => "deferred",
            _ => "failed",
        };
        sts_log(&format!("{}: {label}: {outcome}", job.domain));
    }
    reports
}

fn sts_log(m: &str) {
    crate::os::log::line("postern-remote", m);
}

impl Run<'_> {
    fn over(&self, targets: &[Peer]) -> Reports {
        let mut failures: Vec<RemoteError> = Vec::new();
        for t in targets {
            if let Some(e) = self.sts_skip(t) {
                failures.push(e);
                continue;
            }
            let mut tls = true;
            loop {
                match self.attempt(t, tls) {
                    Ok(reports) => return reports,
                    Err(Next::Plain(e)) if tls && self.policy == TlsPolicy::Opportunistic && !self.dane.contains_key(&t.host) => {
                        self.sts_testing(|label| format!("{label}: {e}; enforce would not send in plain text"));
                        failures.push(e);
                        tls = false;
                    }
                    Err(Next::Plain(e)) | Err(Next::Host(e)) => {
                        failures.push(self.sts_error(e));
                        break;
                    }
                }
            }
        }
        // Every host failed before MAIL FROM: permanent only if every failure was.
        let letter = if !failures.is_empty() && failures.iter().all(|e| e.kind() == Kind::Permanent) { b'D' } else { b'Z' };
        let text = if failures.is_empty() {
            format!("{} no host to try for {}", Status::NO_ROUTE, self.job.domain)
        } else {
            failures.iter().rev().map(|e| format!("{} {e}", e.status())).collect::<Vec<_>>().join("\n")
        };
        Reports { recipients: Vec::new(), message: (letter, text) }
    }

    /// One connection up to MAIL FROM; from there on the transaction's result.
    fn attempt(&self, t: &Peer, tls_allowed: bool) -> Result<Reports, Next> {
        let peer = t.clone();
        let bind = match self.source.bind_for(t.ip) {
            Bind::Any => None,
            Bind::Address(a) => Some(a),
            Bind::Skip => return Err(Next::Host(RemoteError::NoSource(peer, self.sender_domain.clone()))),
        };
        let dane = self.dane.get(&t.host);
        if let Some(HostDane::Failed(why)) = dane {
            return Err(Next::Host(RemoteError::Dane(peer, why.clone())));
        }
        let key = ConnKey { domain: self.job.domain.to_ascii_lowercase(), peer: t.clone(), bind, helo: self.helo.clone(), tls_allowed };
        let kept = self.cache.borrow_mut().take(&key);
        if let Some(mut k) = kept {
            // The server may have closed it meanwhile: then a new connection.
            if k.conn.command("RSET", "after RSET").is_ok_and(|r| r.is_ok()) {
                k.used += 1;
                return Ok(self.transaction(k));
            }
        }
        let mut c = Conn::connect(self.cfg, t, bind).map_err(Next::Host)?;
        let greeting = c.reply("in its greeting").map_err(Next::Host)?;
        if !greeting.is_ok() {
            let _ = c.command("QUIT", "after QUIT");
            return Err(Next::Host(RemoteError::Greeting(peer, greeting)));
        }
        let mut ext = self.hello(&mut c).map_err(Next::Host)?;
        let wants_tls = self.policy != TlsPolicy::Opportunistic || dane.is_some();
        // DANE's refusals name DANE, not control/tlsdestinations.
        let required = |why: String| match dane {
            Some(_) => RemoteError::Dane(peer.clone(), format!("DANE requires TLS (the host has DNSSEC-signed TLSA records) and it {why}")),
            None => RemoteError::TlsRequired(peer.clone(), why),
        };
        let matched = crate::net::dane::Matched::default();
        if ext.starttls && tls_allowed {
            let r = c.command("STARTTLS", "after STARTTLS").map_err(Next::Host)?;
            if r.code == 220 {
                let config = match dane {
                    Some(HostDane::Required(records)) => crate::net::dane::client_config(records.clone(), matched.clone()),
                    _ => self.tls_config().map_err(Next::Host)?,
                };
                c.start_tls(config).map_err(Next::Plain)?;
                self.sts_testing_cert(&c);
                ext = self.hello(&mut c).map_err(Next::Host)?;
            } else if wants_tls {
                return Err(Next::Host(required(format!("refused STARTTLS.\n{}", said(&r)))));
            } else {
                self.sts_testing(|label| format!("{label}: {peer} refused STARTTLS; enforce would not send in plain text"));
            }
        } else if wants_tls {
            let _ = c.command("QUIT", "after QUIT");
            return Err(Next::Host(required("does not offer STARTTLS".into())));
        } else if tls_allowed {
            self.sts_testing(|label| format!("{label}: {peer} does not offer STARTTLS; enforce would not send in plain text"));
        }
        // For the log: which DANE check the certificate passed.
        let label = match matched.load(std::sync::atomic::Ordering::Relaxed) {
            crate::net::dane::DANE_EE => " (TLS, dane)",
            crate::net::dane::DANE_TA => " (TLS, dane-ta)",
            _ => "",
        };
        let now = Instant::now();
        Ok(self.transaction(Kept { key, conn: c, ext, label, born: now, used: 1, since: now }))
    }

    // MTA-STS (lib/smtp/mtasts.rs): what an enforced policy refuses, and what a
    // testing one only logs.

    /// An enforced policy skips hosts it does not list; a testing one logs them.
    fn sts_skip(&self, t: &Peer) -> Option<RemoteError> {
        let a = self.sts.as_ref().filter(|a| !a.policy.allows(&t.host))?;
        let why = "is not among the MX hosts the policy lists";
        if a.enforce() {
            return Some(RemoteError::StsRefused(t.clone(), a.label(), why.into(), Status::TLS_FAILED));
        }
        self.sts_testing(|label| format!("{label}: {t} {why}; enforce would skip it"));
        None
    }

    /// A TLS failure under an enforced policy, said as the policy's.
    fn sts_error(&self, e: RemoteError) -> RemoteError {
        let Some(a) = self.sts.as_ref().filter(|a| a.enforce()) else { return e };
        match e {
            RemoteError::TlsRequired(p, why) => RemoteError::StsRefused(p, a.label(), why, Status::TLS_REQUIRED),
            RemoteError::TlsHandshake(p, why) => RemoteError::StsRefused(p, a.label(), format!("failed TLS: {why}"), Status::TLS_FAILED),
            e => e,
        }
    }

    /// Log a line for a testing policy; `what` gets the policy's label.
    fn sts_testing(&self, what: impl FnOnce(String) -> String) {
        if let Some(a) = self.sts.as_ref().filter(|a| a.testing()) {
            sts_log(&what(a.label()));
        }
    }

    /// Under a testing policy, check the certificate the host gave as enforce would.
    fn sts_testing_cert(&self, c: &Conn) {
        if !self.sts.as_ref().is_some_and(|a| a.testing()) || self.policy == TlsPolicy::Verify {
            return;
        }
        let Some(Stream::Tls(t)) = &c.stream else { return };
        let chain: Vec<_> = t.conn.peer_certificates().unwrap_or_default().iter().map(|c| c.clone().into_owned()).collect();
        if let Err(e) = mtasts::would_verify(self.cfg.tls_ca.as_deref(), &c.peer.host, &chain) {
            self.sts_testing(|label| {
                format!("{label}: the certificate of {} is not valid for it ({e}); enforce would not deliver", c.peer)
            });
        }
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, RemoteError> {
        match self.policy {
            TlsPolicy::Verify => crate::net::tls::client_config_verified(self.cfg.tls_ca.as_deref()).map_err(RemoteError::Tls),
            _ => Ok(crate::net::tls::client_config_any()),
        }
    }

    /// EHLO, falling back to HELO (no extensions) when EHLO is refused.
    fn hello(&self, c: &mut Conn) -> Result<Extensions, RemoteError> {
        let r = c.command(&format!("EHLO {}", self.helo), "after EHLO")?;
        if r.is_ok() {
            return Ok(Extensions::from(&r));
        }
        if r.code == 421 {
            return Err(RemoteError::Helo(c.peer.clone(), r));
        }
        let r = c.command(&format!("HELO {}", self.helo), "after HELO")?;
        if r.is_ok() {
            Ok(Extensions::default())
        } else {
            Err(RemoteError::Helo(c.peer.clone(), r))
        }
    }

    /// MAIL, RCPTs, DATA; never fails: the reports say what happened. The
    /// connection goes back to the cache after a delivery, else QUIT.
    fn transaction(&self, kept: Kept) -> Reports {
        let Kept { key, conn: mut c, ext, label, born, used, .. } = kept;
        let peer = c.peer.clone();
        if let Some(limit) = ext.size.filter(|&l| l > 0 && self.msg.wire_size > l) {
            c.quit();
            return Reports::failed(&RemoteError::TooBig(peer, self.msg.wire_size, limit));
        }
        if self.msg.eight_bit && !ext.eight_bit {
            c.quit();
            return Reports::failed(&RemoteError::Needs8Bit(peer));
        }
        let mut mail = format!("MAIL FROM:<{}>", self.job.sender);
        if ext.size.is_some() {
            mail.push_str(&format!(" SIZE={}", self.msg.wire_size));
        }
        if self.msg.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        let sendable: Vec<(usize, &String)> = self.job.recipients.iter().enumerate().filter(|(_, r)| smtp_safe(r)).collect();
        let mut reports: Vec<(u8, String)> = self
            .job
            .recipients
            .iter()
            .map(|r| (b'h', format!("5.1.3 the recipient address {r:?} cannot be sent in SMTP (a line break or angle bracket)")))
            .collect();
        let result = (|| {
            if ext.pipelining {
                let mut batch = format!("{mail}\r\n");
                for (_, r) in &sendable {
                    batch.push_str(&format!("RCPT TO:<{r}>\r\n"));
                }
                c.send(batch.as_bytes(), "after MAIL FROM").map_err(|e| (e, false))?;
            } else {
                c.send(format!("{mail}\r\n").as_bytes(), "after MAIL FROM").map_err(|e| (e, false))?;
            }
            let r = c.reply("after MAIL FROM").map_err(|e| (e, false))?;
            if !r.is_ok() {
                return Err((RemoteError::Mail(peer.clone(), self.job.sender.clone(), r), false));
            }
            let mut accepted = 0;
            let mut temporary = false;
            for (i, rcpt) in &sendable {
                let r = if ext.pipelining { c.reply("after RCPT TO") } else { c.command(&format!("RCPT TO:<{rcpt}>"), "after RCPT TO") }
                    .map_err(|e| (e, false))?;
                reports[*i] = match r.class() {
                    2 => {
                        accepted += 1;
                        (b'r', format!("{peer} accepted the recipient.\n{}", said(&r)))
                    }
                    4 => {
                        temporary = true;
                        (b's', format!("{} {peer} does not like recipient <{rcpt}>.\n{}", r.status_or_class(), said(&r)))
                    }
                    _ => (b'h', format!("{} {peer} does not like recipient <{rcpt}>.\n{}", r.status_or_class(), said(&r))),
                };
            }
            if accepted == 0 {
                return Err((RemoteError::NoneAccepted(peer.clone(), temporary), true));
            }
            let r = c.command("DATA", "after DATA").map_err(|e| (e, true))?;
            if r.code != 354 {
                return Err((RemoteError::Data(peer.clone(), r), true));
            }
            c.send_message(self.msg, "while sending the message").map_err(|e| (e, true))?;
            let r = c.reply("after the end of the message").map_err(|e| (e, true))?;
            if !r.is_ok() {
                return Err((RemoteError::Final(peer.clone(), r), true));
            }
            Ok(format!("{peer} accepted the message{label}.\n{}", said(&r)))
        })();
        if result.is_ok() {
            self.cache.borrow_mut().put(Kept { key, conn: c, ext, label, born, used, since: Instant::now() });
        } else {
            c.quit();
        }
        match result {
            Ok(text) => Reports { recipients: reports, message: (b'K', text) },
            Err((e, with_recipients)) => {
                let mut out = Reports::failed(&e);
                if with_recipients {
                    out.recipients = reports;
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfile(bytes: &[u8]) -> File {
        let p = crate::testing::scratch_dir(&format!("remote-{}", bytes.len())).join("message");
        std::fs::write(&p, bytes).unwrap();
        let f = File::open(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        f
    }

    #[test]
    fn data_is_crlf_and_dot_stuffed() {
        let f = memfile(b"Subject: x\n\n.hidden\n..two\nend.\n.");
        let m = Message::scan(&f).unwrap();
        let mut out = Vec::new();
        m.send(&mut out).unwrap();
        assert_eq!(out, b"Subject: x\r\n\r\n..hidden\r\n...two\r\nend.\r\n..\r\n.\r\n");
        assert_eq!(m.wire_size, 32 + 5 + 2);
        assert!(!m.eight_bit);
        assert!(Message::scan(&memfile("é\n".as_bytes())).unwrap().eight_bit);
    }

    #[test]
    fn reports_encode_with_nuls_and_no_nul_inside() {
        let r = Reports { recipients: vec![(b'r', "ok".into()), (b'h', "bad\0x".into())], message: (b'K', "done".into()) };
        assert_eq!(r.encode(), b"rok\0hbad?x\0Kdone\0");
    }

    #[test]
    fn peers_are_named_with_address_and_odd_ports() {
        let t = |h: &str, ip: &str, port| Peer { host: h.into(), ip: ip.parse().unwrap(), port };
        assert_eq!(t("mx.test", "127.0.0.2", 25).to_string(), "mx.test [127.0.0.2]");
        assert_eq!(t("127.0.0.2", "127.0.0.2", 2525).to_string(), "[127.0.0.2]:2525");
    }
}
