//! postern-queued: postern-queue's job without a program start per message.
//!
//! Starting postern-queue costs more CPU than writing the message (a setuid
//! exec, the dynamic loader, the runtime), and SMTP pays it once per message.
//! So postern-start also runs postern-queued, as postern-q. It listens on
//! `run/queue/submit` (mode 0666: anyone may queue, as anyone may run the setuid
//! postern-queue), and for each connection forks a worker that takes two
//! descriptors sent with one byte (SCM_RIGHTS), the message and the envelope
//! (the byte is `Q`, or `S` to ask for DKIM signing, as POSTERN_DKIM=sign does
//! for postern-queue),
//! and does exactly what postern-queue does with its fd 0 and fd 1
//! (`queue::queue_one`). The worker answers with one byte, postern-queue's exit
//! code, only after the message is durable, and exits. No answer (a worker
//! killed) is a temporary failure to the client. The Received line names the
//! client's uid, which the kernel gives us (SO_PEERCRED), not the client.
//!
//! A worker that finds one of `POOL` places free stays after its message and
//! takes the next connection itself, until it has been idle for `IDLE` or has
//! written `PER_WORKER` messages: under load most messages then cost no fork
//! either. The daemon keeps accepting and forking too, so a slow client holding a
//! worker never holds up anyone else. (A worker killed by a signal keeps its
//! place until the daemon restarts; the daemon then just forks more.)
//!
//! Clients (`queue::Submission`) use the socket when it answers and neither
//! POSTERN_QUEUE nor QMAILQUEUE is set; otherwise they run the queue program,
//! so nothing depends on this daemon being up.

use super::store::{queue_one, DEATH_SECONDS};
use super::submit::{daemon_socket, exit};
use crate::os::home::Home;
use crate::os::sys::ChildFds;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

const PROGRAM: &str = "postern-queued";
/// A client that connects and sends nothing is dropped after this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);
/// Workers that stay for more messages.
const POOL: u32 = 8;
/// How long a staying worker waits for a connection before it leaves; also how
/// often the daemon's own accept wakes up (the timeout is the socket's).
const IDLE: Duration = Duration::from_secs(10);
/// Messages a staying worker writes before it leaves (and a fresh one takes over).
const PER_WORKER: u32 = 10_000;

/// Accept and fork, forever. Single-threaded, as `sys::fork_run` requires.
pub fn serve(home: &Home, listener: UnixListener) -> io::Result<()> {
    // It lives as long as the process, and every worker accepts on it too.
    let listener: &'static UnixListener = Box::leak(Box::new(listener));
    crate::os::sys::reap_children_automatically()?;
    crate::os::sys::unlink_on_term(&daemon_socket(home))?;
    let places = crate::os::sys::SharedCounter::new()?;
    set_accept_timeout(listener, IDLE)?;
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                // Out of descriptors or memory: say so, and let load drain.
                crate::os::log::line(PROGRAM, &format!("accept: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let home = home.clone();
        let forked = crate::os::sys::fork_run(ChildFds::new(), move || {
            crate::os::sys::set_process_name(c"postern-queue");
            // The daemon's handler would remove the socket: not a worker's job.
            crate::os::sys::default_term_signals();
            work(&home, stream);
            if places.take(POOL) {
                stay(&home, listener);
                places.release();
            }
            0
        });
        if let Err(e) = forked {
            crate::os::log::line(PROGRAM, &format!("cannot fork a worker: {e}"));
        }
    }
}

/// A worker with a place: take connections until idle or done.
fn stay(home: &Home, listener: &UnixListener) {
    for _ in 1..PER_WORKER {
        match listener.accept() {
            Ok((stream, _)) => work(home, stream),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// The listening socket's receive timeout, which accept(2) obeys; it belongs to
/// the socket, so the daemon and every worker share it.
fn set_accept_timeout(listener: &UnixListener, t: Duration) -> io::Result<()> {
    let tv = nix::sys::time::TimeVal::new(t.as_secs() as _, 0);
    nix::sys::socket::setsockopt(listener, nix::sys::socket::sockopt::ReceiveTimeout, &tv).map_err(io::Error::from)
}

/// One message, in a worker.
fn work(home: &Home, mut stream: UnixStream) {
    let code = match receive(&stream) {
        Ok((uid, sign, mut message, mut envelope)) => {
            nix::unistd::alarm::set(DEATH_SECONDS);
            let code = queue_one(home, &mut message, &mut envelope, uid, sign);
            nix::unistd::alarm::cancel();
            code
        }
        Err(e) => {
            crate::os::log::line(PROGRAM, &format!("bad request: {e}"));
            exit::READ
        }
    };
    let _ = stream.write_all(&[code as u8]);
}

/// Who asked, whether to sign, and the two descriptors.
fn receive(stream: &UnixStream) -> io::Result<(u32, bool, File, File)> {
    let uid = crate::os::sys::peer_uid(stream)?;
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let mut fds = VecDeque::new();
    let mut byte = [0u8; 1];
    let n = crate::os::sys::recv_with_fds(stream, &mut byte, &mut fds)?;
    match (n, fds.pop_front(), fds.pop_front(), fds.is_empty()) {
        (1, Some(m), Some(e), true) if matches!(byte[0], b'Q' | b'S') => Ok((uid, byte[0] == b'S', File::from(m), File::from(e))),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "expected one byte 'Q' or 'S' with two descriptors")),
    }
}

/// Bind the socket: a stale one from an earlier run is replaced.
pub fn bind(home: &Home) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = daemon_socket(home);
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    Ok(l)
}
