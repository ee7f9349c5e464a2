//! The start shared by the pre-login programs (postern-popup, postern-imapup):
//! the connection on fds 0 and 1, the arguments checked, then down to the
//! network user postern-d before anything is read from the client.

use crate::net::session::Session;
use crate::os::log;
use crate::os::privs::{self, Service};
use std::time::Duration;

/// `Err` is the exit code: 2 for a wrong invocation (no connection, too few
/// arguments; the client is told `misconfigured`), 111 when the privileges
/// cannot be dropped. Each is logged, naming what to fix.
pub fn open(me: &str, args_ok: bool, usage: &str, misconfigured: &[u8]) -> Result<Session, i32> {
    let mut net = Session::stdio(Duration::from_secs(60)).map_err(|e| {
        log::line(me, &format!("the connection must be on fds 0 and 1: {e}"));
        2
    })?;
    if !args_ok {
        log::line(me, &format!("usage: {usage}"));
        net.write(misconfigured);
        let _ = net.flush();
        return Err(2);
    }
    privs::drop_to(Service::Daemon).map_err(|e| {
        log::line(me, &e.to_string());
        111
    })?;
    Ok(net)
}
