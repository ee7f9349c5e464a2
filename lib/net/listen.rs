//! postern-listen's job: a TCP super-server in tcpserver's manner. It binds one
//! address, accepts, and runs one program per connection with the socket on fd 0
//! and fd 1 and the TCP* variables set, within a total and a per-address limit and
//! the access rules of rules.rs.
//!
//! Signals arrive on a signalfd polled together with the listening socket, so the
//! loop never blocks in accept with a child to reap or a SIGTERM waiting.

use crate::config::rules;
use crate::error::{Classify, Kind};
use crate::os::log;
use crate::os::sys::ChildFds;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const PROGRAM: &str = "postern-listen";

pub const USAGE: &str = "usage: postern-listen [-u USER] [-c MAXCONN] [-C MAXPERIP] [-x RULES.cdb] [-E] HOST PORT PROGRAM [ARG...]\n       postern-listen -X RULES.txt RULES.cdb   (compile access rules)";

#[derive(Debug)]
pub enum ListenError {
    Usage(String),
    Bind(String, std::io::Error),
    User(String),
    Privs(crate::os::privs::PrivError),
    Rules(rules::RulesError),
    /// The event loop itself failed (poll, signalfd).
    Io(String),
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::Usage(s) => write!(f, "{s}\n{USAGE}"),
            ListenError::Bind(a, e) => {
                write!(f, "cannot listen on {a}: {e} (is another server on that port, or is it below 1024 without root?)")
            }
            ListenError::User(u) => write!(f, "no user {u:?} for -u; create it or give another"),
            ListenError::Privs(e) => write!(f, "{e}"),
            ListenError::Rules(e) => write!(f, "{e}"),
            ListenError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Classify for ListenError {
    fn kind(&self) -> Kind {
        match self {
            ListenError::Usage(_) | ListenError::User(_) => Kind::Permanent,
            ListenError::Rules(e) => e.kind(),
            _ => Kind::Temporary,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub user: Option<String>,
    pub max_conn: usize,
    pub max_per_ip: usize,
    pub rules: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    pub program: Vec<OsString>,
    /// -E: always exec PROGRAM, even where a built-in session could run.
    pub exec_always: bool,
}

/// A session run in the forked child instead of exec'ing PROGRAM: its code is
/// linked into this binary. Returns the exit code.
pub type Builtin = fn() -> i32;

#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    Serve(Options),
    /// -X SRC DST
    Compile(PathBuf, PathBuf),
}

/// Parse the arguments after the program name.
pub fn parse_args(args: &[OsString]) -> Result<Mode, ListenError> {
    let usage = |s: &str| ListenError::Usage(s.to_string());
    let mut o = Options {
        user: None,
        max_conn: 40,
        max_per_ip: 10,
        rules: None,
        host: String::new(),
        port: 0,
        program: Vec::new(),
        exec_always: false,
    };
    let mut i = 0;
    let text = |i: usize| args.get(i).and_then(|a| a.to_str()).map(str::to_string);
    while let Some(a) = text(i).filter(|a| a.starts_with('-') && a.len() > 1) {
        let value = || text(i + 1).ok_or_else(|| usage(&format!("{a} needs a value")));
        let number =
            |v: String| v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| usage(&format!("{a} needs a number above 0, not {v:?}")));
        if a == "-E" {
            o.exec_always = true;
            i += 1;
            continue;
        }
        match a.as_str() {
            "-u" => o.user = Some(value()?),
            "-c" => o.max_conn = number(value()?)?,
            "-C" => o.max_per_ip = number(value()?)?,
            "-x" => o.rules = Some(PathBuf::from(value()?)),
            "-X" => {
                return match (args.get(i + 1), args.get(i + 2), args.len() == i + 3) {
                    (Some(s), Some(d), true) => Ok(Mode::Compile(PathBuf::from(s), PathBuf::from(d))),
                    _ => Err(usage("-X takes exactly SRC and DST")),
                }
            }
            "--" => {
                i += 1;
                break;
            }
            _ => return Err(usage(&format!("unknown option {a}"))),
        }
        i += 2;
    }
    let rest = &args[i..];
    if rest.len() < 3 {
        return Err(usage("HOST, PORT and PROGRAM are needed"));
    }
    o.host = rest[0].to_str().ok_or_else(|| usage("HOST is not text"))?.to_string();
    o.port = rest[1].to_str().and_then(|p| p.parse().ok()).ok_or_else(|| usage(&format!("{:?} is not a port number", rest[1])))?;
    o.program = rest[2..].to_vec();
    Ok(Mode::Serve(o))
}

/// Bind HOST:PORT. "0" means every IPv4 address, "::" every address.
pub fn bind(host: &str, port: u16) -> Result<TcpListener, ListenError> {
    let ip: IpAddr = match host {
        "0" => IpAddr::from([0, 0, 0, 0]),
        h => h.parse().map_err(|_| ListenError::Usage(format!("{h:?} is not an IPv4 or IPv6 address")))?,
    };
    let addr = SocketAddr::new(ip, port);
    TcpListener::bind(addr).map_err(|e| ListenError::Bind(addr.to_string(), e))
}

/// If root and a user was named, become that user (its uid, its gid as the only group).
pub fn drop_privileges(user: Option<&str>) -> Result<(), ListenError> {
    let Some(name) = user else { return Ok(()) };
    if !crate::os::privs::is_root() {
        log::line(PROGRAM, &format!("not root: -u {name} ignored, running as who started me"));
        return Ok(());
    }
    let u = nix::unistd::User::from_name(name).ok().flatten().ok_or_else(|| ListenError::User(name.to_string()))?;
    crate::os::privs::become_ids(u.uid.as_raw(), u.gid.as_raw()).map_err(ListenError::Privs)
}

/// The accept loop's state.
struct Server<'a> {
    opts: &'a Options,
    listener: &'a TcpListener,
    builtin: Option<Builtin>,
    children: HashMap<Pid, IpAddr>,
    per_ip: HashMap<IpAddr, usize>,
}

fn io(what: &str) -> impl Fn(nix::Error) -> ListenError + '_ {
    move |e| ListenError::Io(format!("{what}: {e}"))
}

/// Accept and run until SIGTERM (or SIGINT). Running children are left to finish.
pub fn serve(listener: TcpListener, opts: &Options, builtin: Option<Builtin>) -> Result<(), ListenError> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(s);
    }
    // Blocked here and read from the signalfd; each child gets an empty mask.
    mask.thread_block().map_err(io("blocking signals"))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(io("signalfd"))?;
    listener.set_nonblocking(true).map_err(|e| ListenError::Io(format!("listener: {e}")))?;
    let mut server = Server { opts, listener: &listener, builtin, children: HashMap::new(), per_ip: HashMap::new() };
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN), PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io("poll")(e)),
            Ok(_) => {}
        }
        let (conn_ready, sig_ready) = (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false));
        if sig_ready {
            while let Some(info) = sfd.read_signal().map_err(io("reading signals"))? {
                if info.ssi_signo == Signal::SIGCHLD as u32 {
                    server.reap();
                } else {
                    log::line(
                        PROGRAM,
                        &format!(
                            "stopping on signal {}; {} connection(s) left to finish (signal sent by pid {}, uid {})",
                            info.ssi_signo,
                            server.children.len(),
                            info.ssi_pid,
                            info.ssi_uid
                        ),
                    );
                    return Ok(());
                }
            }
        }
        if conn_ready {
            // A bounded batch, so a stream of clients cannot starve the signals.
            for _ in 0..64 {
                match listener.accept() {
                    Ok((stream, peer)) => server.connection(stream, peer),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // EMFILE, ENOBUFS, ECONNABORTED: log, and try again later.
                        log::line(PROGRAM, &format!("accept: {e}"));
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        break;
                    }
                }
            }
        }
    }
}

impl Server<'_> {
    fn reap(&mut self) {
        loop {
            let (pid, how) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, format!("status {code}")),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, format!("signal {sig}")),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            if let Some(ip) = self.children.remove(&pid) {
                if let Some(n) = self.per_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_ip.remove(&ip);
                    }
                }
            }
            log::line(PROGRAM, &format!("end {pid} {how}"));
        }
    }

    fn connection(&mut self, stream: TcpStream, peer: SocketAddr) {
        let ip = rules::canonical(peer.ip());
        let who = SocketAddr::new(ip, peer.port());
        // Under load the accept loop can run ahead of SIGCHLD: count only the
        // living before refusing anyone.
        if self.children.len() >= self.opts.max_conn || self.per_ip.get(&ip).copied().unwrap_or(0) >= self.opts.max_per_ip {
            self.reap();
        }
        if self.children.len() >= self.opts.max_conn {
            log::line(PROGRAM, &format!("refused {who}: {} connections, the limit (-c)", self.children.len()));
            return;
        }
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.opts.max_per_ip {
            log::line(PROGRAM, &format!("refused {who}: {} connections from {ip}, the limit (-C)", self.opts.max_per_ip));
            return;
        }
        let decision = match &self.opts.rules {
            None => rules::Decision { allow: true, env: Vec::new() },
            Some(path) => match rules::decide(path, ip) {
                Ok(d) => d,
                Err(e) => {
                    log::line(PROGRAM, &format!("refused {who}: {e}"));
                    return;
                }
            },
        };
        if !decision.allow {
            log::line(PROGRAM, &format!("deny {who}"));
            return;
        }
        match self.spawn(stream, who, &decision.env) {
            Ok(pid) => {
                log::line(PROGRAM, &format!("{pid} from {who}"));
                self.children.insert(pid, ip);
                *self.per_ip.entry(ip).or_insert(0) += 1;
            }
            Err(e) => log::error(PROGRAM, &format!("cannot run {:?} for {who}: {e}", self.opts.program[0])),
        }
    }

    fn spawn(&self, stream: TcpStream, peer: SocketAddr, env: &[(String, String)]) -> std::io::Result<Pid> {
        let local = stream.local_addr()?;
        stream.set_nonblocking(false)?;
        let vars = [
            ("PROTO", "TCP".to_string()),
            ("TCPLOCALIP", rules::canonical(local.ip()).to_string()),
            ("TCPLOCALPORT", local.port().to_string()),
            ("TCPREMOTEIP", peer.ip().to_string()),
            ("TCPREMOTEPORT", peer.port().to_string()),
        ];
        if let Some(session) = self.builtin {
            // What an exec would give PROGRAM: the socket on fds 0 and 1, not the
            // listening socket (a long session must not keep the port bound),
            // no signal blocked, the variables.
            let fds = ChildFds::new().put(stream, &[0, 1]).close(self.listener);
            let env = env.to_vec();
            return crate::os::sys::fork_run(fds, move || {
                crate::os::sys::set_process_name(c"postern-smtpd");
                std::env::remove_var("TCPREMOTEHOST");
                for (k, v) in vars.iter().map(|(k, v)| (*k, v.as_str())).chain(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
                    std::env::set_var(k, v);
                }
                session()
            });
        }
        let out = OwnedFd::from(stream.try_clone()?);
        let mut cmd = Command::new(&self.opts.program[0]);
        cmd.args(&self.opts.program[1..])
            .stdin(Stdio::from(OwnedFd::from(stream)))
            .stdout(Stdio::from(out))
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .env_remove("TCPREMOTEHOST")
            .envs(env.iter().map(|(k, v)| (k, v)));
        crate::os::sys::unblock_signals_on_exec(&mut cmd);
        let child = cmd.spawn()?;
        // Reaped through SIGCHLD in `reap`; the handle is not needed.
        Ok(Pid::from_raw(child.id() as i32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn arguments() {
        let Mode::Serve(o) = parse_args(&args("-u postern-d -c 5 -C 2 -x r.cdb :: 25 /bin/smtpd -v")).unwrap() else { panic!() };
        assert_eq!((o.user.as_deref(), o.max_conn, o.max_per_ip, o.host.as_str(), o.port), (Some("postern-d"), 5, 2, "::", 25));
        assert_eq!(o.rules, Some(PathBuf::from("r.cdb")));
        assert_eq!(o.program, args("/bin/smtpd -v"));
        assert!(!o.exec_always);
        let Mode::Serve(o) = parse_args(&args("-E -c 3 0 25 p")).unwrap() else { panic!() };
        assert!(o.exec_always);
        assert_eq!(o.max_conn, 3);
        let Mode::Serve(o) = parse_args(&args("0 2525 prog")).unwrap() else { panic!() };
        assert_eq!((o.max_conn, o.max_per_ip), (40, 10));
        assert_eq!(parse_args(&args("-X a b")).unwrap(), Mode::Compile("a".into(), "b".into()));
        for bad in ["-c 0 0 25 p", "-c", "0 25", "0 port p", "-q 0 25 p", "-X a"] {
            assert!(matches!(parse_args(&args(bad)), Err(ListenError::Usage(_))), "{bad}");
        }
        assert!(bind("localhost", 0).is_err());
        let l = bind("127.0.0.1", 0).unwrap();
        assert!(l.local_addr().unwrap().port() > 0);
    }
}
