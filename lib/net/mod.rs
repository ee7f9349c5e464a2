//! The network: postern-listen, sessions on fd 0/1 with timeouts, TLS.

pub mod dane;
pub mod implicit;
pub mod listen;
pub mod prelogin;
pub mod session;
pub mod tls;
pub mod tlsrelay;
