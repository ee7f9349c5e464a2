//! The TLS side of a POP3 session after STLS.
//!
//! A TLS session lives in one process's memory and cannot follow the exec chain
//! popup -> checkpassword -> pop3d. So after `+OK` to STLS, postern-popup becomes
//! this relay: it terminates TLS on the client's fd 0/1 and passes the plaintext over a Unix
//! socket pair to a fresh postern-popup (and, after the login, postern-pop3d as the
//! mailbox owner) running on the other end. The relay knows nothing of POP3; it
//! ends when either side closes. Plain sessions never get here: popup hands the
//! client's descriptors straight down the chain.

use crate::net::session::{FdPair, NetError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// Most plaintext held for the inner side before the relay stops reading the client.
const MAX_PENDING: usize = 256 * 1024;

/// Relay between TLS on the client's descriptors and `inner` until one side is
/// done. `timeout` bounds both the idle time and every single write.
pub fn relay(config: Arc<rustls::ServerConfig>, mut net: FdPair, mut inner: UnixStream, timeout: Duration) -> Result<(), NetError> {
    let mut conn = rustls::ServerConnection::new(config).map_err(|e| NetError::Tls(e.to_string()))?;
    inner.set_nonblocking(true)?;
    let mut to_inner: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let (mut client_done, mut inner_done, mut shut) = (false, false, false);
    let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
    loop {
        while conn.wants_write() {
            conn.write_tls(&mut net)?;
        }
        if inner_done {
            return Ok(());
        }
        if client_done && to_inner.is_empty() && !shut {
            // The client is gone: let the inner side see end of input.
            let _ = inner.shutdown(std::net::Shutdown::Write);
            shut = true;
        }
        let want_client = !client_done && to_inner.len() < MAX_PENDING;
        let mut inner_flags = PollFlags::POLLIN;
        if !to_inner.is_empty() {
            inner_flags |= PollFlags::POLLOUT;
        }
        let mut fds = vec![PollFd::new(inner.as_fd(), inner_flags)];
        if want_client {
            fds.push(PollFd::new(net.input(), PollFlags::POLLIN));
        }
        match poll(&mut fds, ms) {
            Ok(0) => return Err(NetError::Timeout),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(NetError::Io(e.into())),
        }
        let ready = |i: usize, f: PollFlags| fds.get(i).and_then(|p| p.revents()).is_some_and(|r| r.intersects(f));
        let hup = PollFlags::POLLHUP | PollFlags::POLLERR;
        let (inner_in, inner_out) = (ready(0, PollFlags::POLLIN | hup), ready(0, PollFlags::POLLOUT));
        let client_in = want_client && ready(1, PollFlags::POLLIN | hup);
        drop(fds);
        if client_in {
            match conn.read_tls(&mut net) {
                Ok(0) => client_done = true,
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        // Tell the client why (an alert), then stop.
                        let _ = conn.write_tls(&mut net);
                        return Err(NetError::Tls(e.to_string()));
                    }
                    loop {
                        match conn.reader().read(&mut buf) {
                            Ok(0) => {
                                client_done = true; // close_notify
                                break;
                            }
                            Ok(n) => to_inner.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if inner_out {
            match inner.write(&to_inner) {
                Ok(n) => {
                    to_inner.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The inner side is gone; what it wrote is still relayed below.
                Err(_) => to_inner.clear(),
            }
        }
        if inner_in {
            match inner.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Ok(0) | Err(_) => {
                    inner_done = true;
                    conn.send_close_notify();
                }
                Ok(n) => conn.writer().write_all(&buf[..n])?,
            }
        }
    }
}

/// Run this program again (same arguments, plus `env`) on one end of a socket
/// pair and relay TLS on `net` to it until either side is done; then wait for it.
/// For STARTTLS/STLS and for implicit TLS (ports 993, 995) alike. Returns the
/// exit code for the caller: 0 however the session ended (logged as `me`),
/// 111 when the program could not be started (the server's fault).
pub fn relay_to_self(
    me: &str,
    config: Arc<rustls::ServerConfig>,
    net: FdPair,
    args: &[std::ffi::OsString],
    env: (&str, &str),
    timeout: Duration,
) -> i32 {
    use std::process::{Command, Stdio};
    let started = UnixStream::pair().and_then(|(outer, inner)| {
        let child = Command::new(std::env::current_exe()?)
            .args(args)
            .env(env.0, env.1)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(inner.try_clone()?)))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(inner)))
            .spawn()?;
        Ok((outer, child))
    });
    let (outer, mut child) = match started {
        Ok(v) => v,
        Err(e) => {
            crate::os::log::error(me, &format!("cannot start {me} behind TLS: {e}"));
            return crate::error::EXIT_TEMP;
        }
    };
    if let Err(e) = relay(config, net, outer, timeout) {
        crate::os::log::line(me, &format!("TLS session ended: {e}"));
    }
    let _ = child.wait();
    0
}
