//! A network session on a pair of descriptors (fd 0 in, fd 1 out), as postern-listen,
//! tcpserver, inetd and systemd's Accept=yes all hand it over; plain or TLS after
//! STARTTLS/STLS; every read and write bounded by a timeout.
//!
//! Protocol parsers never do I/O: they take the bytes `read` returns and say what
//! they need next. Replies are buffered and go out on `flush`, so a pipelined batch
//! of commands gets its replies in one write.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

#[derive(Debug)]
pub enum NetError {
    /// Nothing arrived (or could be sent) within the timeout.
    Timeout,
    /// The peer closed the connection.
    Closed,
    /// TLS failed (handshake or a bad record).
    Tls(String),
    Io(io::Error),
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetError::Timeout => f.write_str("timed out"),
            NetError::Closed => f.write_str("connection closed by the client"),
            NetError::Tls(e) => write!(f, "TLS: {e}"),
            NetError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for NetError {
    fn from(e: io::Error) -> NetError {
        match e.kind() {
            io::ErrorKind::TimedOut => NetError::Timeout,
            io::ErrorKind::InvalidData => NetError::Tls(e.to_string()),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => NetError::Closed,
            _ => NetError::Io(e),
        }
    }
}

/// A connection's two descriptors (fd 0 in, fd 1 out) with a timeout on each
/// wait, and reads bounded by a deadline too while one is set.
pub struct FdPair {
    rfd: OwnedFd,
    wfd: OwnedFd,
    timeout: Duration,
    read_deadline: Option<Instant>,
}

fn wait(fd: BorrowedFd<'_>, flags: PollFlags, timeout: Duration) -> io::Result<()> {
    let mut fds = [PollFd::new(fd, flags)];
    let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
    loop {
        match poll(&mut fds, ms) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl FdPair {
    pub fn new(rfd: OwnedFd, wfd: OwnedFd, timeout: Duration) -> FdPair {
        FdPair { rfd, wfd, timeout, read_deadline: None }
    }

    /// fd 0 and fd 1, claimed (see `os::sys::take_fd`).
    pub fn stdio(timeout: Duration) -> io::Result<FdPair> {
        Ok(FdPair::new(crate::os::sys::take_fd(0)?, crate::os::sys::take_fd(1)?, timeout))
    }

    /// The input side, to poll on.
    pub fn input(&self) -> BorrowedFd<'_> {
        self.rfd.as_fd()
    }
}

/// Wait until `fd` is ready for `flags` (at most `timeout`), then run `op`,
/// again after EINTR, and after waiting again on EAGAIN (a descriptor shared
/// with another process may be non-blocking).
fn when_ready(fd: BorrowedFd<'_>, flags: PollFlags, timeout: Duration, mut op: impl FnMut() -> nix::Result<usize>) -> io::Result<usize> {
    wait(fd, flags, timeout)?;
    loop {
        match op() {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => wait(fd, flags, timeout)?,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Read for FdPair {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = match self.read_deadline {
            // Here, not in Session, so that TLS records trickled a byte at a
            // time meet the deadline too.
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
                }
                self.timeout.min(left)
            }
            None => self.timeout,
        };
        when_ready(self.rfd.as_fd(), PollFlags::POLLIN, timeout, || nix::unistd::read(self.rfd.as_raw_fd(), buf))
    }
}

impl Write for FdPair {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        when_ready(self.wfd.as_fd(), PollFlags::POLLOUT, self.timeout, || nix::unistd::write(self.wfd.as_fd(), buf))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Stream {
    Plain(FdPair),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, FdPair>>),
    /// Only while switching to TLS.
    Gone,
}

/// One client connection.
pub struct Session {
    stream: Stream,
    out: Vec<u8>,
}

impl Session {
    /// The session on fd 0 and fd 1.
    pub fn stdio(timeout: Duration) -> io::Result<Session> {
        Ok(Session::new(FdPair::stdio(timeout)?))
    }

    pub fn new(fds: FdPair) -> Session {
        Session { stream: Stream::Plain(fds), out: Vec::new() }
    }

    /// Every read and write waits at most this long from now on.
    pub fn set_timeout(&mut self, timeout: Duration) {
        match &mut self.stream {
            Stream::Plain(p) => p.timeout = timeout,
            Stream::Tls(t) => t.sock.timeout = timeout,
            Stream::Gone => {}
        }
    }

    /// Reads (the TLS handshake's too) wait no later than `deadline` from now
    /// on; None: only the timeout.
    pub fn set_read_deadline(&mut self, deadline: Option<Instant>) {
        match &mut self.stream {
            Stream::Plain(p) => p.read_deadline = deadline,
            Stream::Tls(t) => t.sock.read_deadline = deadline,
            Stream::Gone => {}
        }
    }

    /// The descriptors of a plain session, its replies flushed (to relay TLS
    /// for another process); the session itself back when it is not plain.
    pub fn into_plain(mut self) -> Result<FdPair, Session> {
        if self.flush().is_err() || !matches!(self.stream, Stream::Plain(_)) {
            return Err(self);
        }
        match std::mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(p) => Ok(p),
            _ => unreachable!("checked above"),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// `TLSv1.3/TLS13_AES_256_GCM_SHA384` once TLS is on, for the log.
    pub fn tls_info(&self) -> Option<String> {
        let Stream::Tls(t) = &self.stream else { return None };
        let version = match t.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            Some(v) => v.as_str().unwrap_or("TLS"),
            None => "TLS",
        };
        let suite = t.conn.negotiated_cipher_suite().and_then(|c| c.suite().as_str()).unwrap_or("unknown");
        Some(format!("{version}/{suite}"))
    }

    /// Read what is there (waiting up to the timeout). Ok(0) never happens: end of
    /// input is `NetError::Closed`.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        let n = match &mut self.stream {
            Stream::Plain(p) => p.read(buf)?,
            Stream::Tls(t) => t.read(buf)?,
            Stream::Gone => return Err(NetError::Closed),
        };
        if n == 0 {
            return Err(NetError::Closed);
        }
        Ok(n)
    }

    /// `read`, but waiting no later than `deadline` either (a whole command line
    /// or message must arrive by then, however steadily its bytes trickle in).
    pub fn read_by(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, NetError> {
        self.set_read_deadline(Some(deadline));
        let r = self.read(buf);
        self.set_read_deadline(None);
        r
    }

    /// Has the client sent bytes not read yet (plain sessions; a TLS session's
    /// bytes are records, read whole by `read`)? For the pipelining check.
    pub fn input_waiting(&self) -> bool {
        match &self.stream {
            Stream::Plain(p) => wait(p.rfd.as_fd(), PollFlags::POLLIN, Duration::ZERO).is_ok(),
            _ => false,
        }
    }

    /// Queue a reply; it goes out on `flush`.
    pub fn write(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
    }

    pub fn flush(&mut self) -> Result<(), NetError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        match &mut self.stream {
            Stream::Plain(p) => p.write_all(&out)?,
            Stream::Tls(t) => {
                t.write_all(&out)?;
                t.flush()?;
            }
            Stream::Gone => return Err(NetError::Closed),
        }
        Ok(())
    }

    /// Switch to TLS (after the 220 of STARTTLS or +OK of STLS has been flushed)
    /// and complete the handshake. Anything the client sent before the handshake
    /// must have been discarded by the caller (RFC 3207's rule against injection).
    pub fn start_tls(&mut self, config: Arc<rustls::ServerConfig>) -> Result<(), NetError> {
        self.flush()?;
        let plain = match std::mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(p) => p,
            other => {
                self.stream = other;
                return Err(NetError::Tls("TLS is already active".into()));
            }
        };
        let conn = rustls::ServerConnection::new(config).map_err(|e| NetError::Tls(e.to_string()))?;
        let mut tls = Box::new(rustls::StreamOwned::new(conn, plain));
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| match NetError::from(e) {
                NetError::Io(e) => NetError::Tls(e.to_string()),
                other => other,
            })?;
        }
        self.stream = Stream::Tls(tls);
        Ok(())
    }

    /// Close the TLS layer politely (close_notify); plain sessions need nothing.
    pub fn close(&mut self) {
        let _ = self.flush();
        if let Stream::Tls(t) = &mut self.stream {
            t.conn.send_close_notify();
            let _ = t.conn.complete_io(&mut t.sock);
        }
    }
}
