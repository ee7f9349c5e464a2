//! systemd's readiness protocol (sd_notify): a datagram `READY=1` to the
//! socket named by NOTIFY_SOCKET, so `systemctl start` returns once the
//! service is up and fails when it never comes up. Without NOTIFY_SOCKET
//! (init scripts, instances, tcpserver) it does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Tell the service manager we are up; `status` is shown by systemctl status.
/// Failures are returned for the log: the service runs either way.
pub fn ready(status: &str) -> std::io::Result<()> {
    send(&format!("READY=1\nSTATUS={status}\n"))
}

fn send(message: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(()) };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        // An abstract socket: its name starts with a NUL.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(&path)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}
