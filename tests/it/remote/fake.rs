//! A scripted SMTP server in a thread: answers as its Script says and records
//! each session (peer address, HELO, command lines, message, TLS, pipelining).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tls {
    None,
    /// STARTTLS offered and done with this certificate directory's servercert.pem.
    Good,
    /// STARTTLS offered, 220 answered, then garbage instead of a handshake.
    Broken,
}

#[derive(Clone)]
pub struct Script {
    pub greeting: String,
    /// EHLO keywords; None refuses EHLO (502) so the client must use HELO.
    pub ehlo: Option<Vec<String>>,
    /// Raw bytes sent instead of the EHLO reply (garbage, over-long lines).
    pub ehlo_raw: Option<Vec<u8>>,
    pub rcpt: fn(&str) -> String,
    pub data_reply: String,
    /// Say nothing at all after accepting the connection.
    pub silent: bool,
    /// Close the connection after the first bytes of the message.
    pub close_in_data: bool,
    pub tls: Tls,
    pub cert_dir: Option<std::path::PathBuf>,
}

fn ok_rcpt(_: &str) -> String {
    "250 2.1.5 ok".into()
}

impl Default for Script {
    fn default() -> Script {
        Script {
            greeting: "220 fake.test ESMTP".into(),
            ehlo: Some(vec!["PIPELINING".into(), "8BITMIME".into(), "SIZE 10000000".into()]),
            ehlo_raw: None,
            rcpt: ok_rcpt,
            data_reply: "250 2.0.0 queued as FAKE1".into(),
            silent: false,
            close_in_data: false,
            tls: Tls::None,
            cert_dir: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Session {
    pub peer: Option<SocketAddr>,
    pub helo: String,
    pub lines: Vec<String>,
    pub data: Vec<u8>,
    pub tls: bool,
    /// RCPT TO arrived together with MAIL FROM.
    pub pipelined: bool,
}

pub struct Fake {
    pub addr: SocketAddr,
    sessions: Arc<Mutex<Vec<Session>>>,
}

trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}

struct Conn {
    s: Box<dyn Rw>,
    buf: Vec<u8>,
}

impl Conn {
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                let l = l.strip_suffix(b"\n").unwrap_or(&l);
                return Some(String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned());
            }
            let mut chunk = [0u8; 8192];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn say(&mut self, s: &str) -> bool {
        self.s.write_all(format!("{s}\r\n").as_bytes()).and_then(|_| self.s.flush()).is_ok()
    }
}

impl Fake {
    /// Listen on ip:0 and serve every connection with `script`.
    pub fn start(ip: &str, script: Script) -> Fake {
        let l = TcpListener::bind((ip, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let s2 = sessions.clone();
        std::thread::spawn(move || {
            for stream in l.incoming().flatten() {
                let i = {
                    let mut v = s2.lock().unwrap();
                    v.push(Session { peer: stream.peer_addr().ok(), ..Session::default() });
                    v.len() - 1
                };
                let (sc, s3) = (script.clone(), s2.clone());
                std::thread::spawn(move || serve(stream, sc, move |f: &dyn Fn(&mut Session)| f(&mut s3.lock().unwrap()[i])));
            }
        });
        Fake { addr, sessions }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn sessions(&self) -> Vec<Session> {
        // The client may have gone before our thread finished recording QUIT.
        std::thread::sleep(Duration::from_millis(50));
        self.sessions.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, sc: Script, rec: impl Fn(&dyn Fn(&mut Session))) {
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    if sc.silent {
        let mut sink = [0u8; 1024];
        let mut s = stream;
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        return;
    }
    let tcp = stream.try_clone().unwrap();
    let mut c = Conn { s: Box::new(stream), buf: Vec::new() };
    c.say(&sc.greeting);
    if !sc.greeting.starts_with('2') {
        c.line();
        return;
    }
    let mut tls_done = false;
    while let Some(line) = c.line() {
        rec(&|s| s.lines.push(line.clone()));
        let upper = line.to_ascii_uppercase();
        let verb = upper.split([' ', ':']).next().unwrap_or("").to_string();
        match verb.as_str() {
            "EHLO" | "HELO" => {
                let name = line[4..].trim().to_string();
                rec(&|s| s.helo = name.clone());
                if let Some(raw) = &sc.ehlo_raw {
                    let _ = c.s.write_all(raw);
                    continue;
                }
                match (&sc.ehlo, verb.as_str()) {
                    (None, "EHLO") => c.say("502 5.5.1 EHLO not here"),
                    (None, _) => c.say("250 fake.test"),
                    (Some(ext), _) => {
                        let mut lines = vec!["fake.test hello".to_string()];
                        lines.extend(ext.iter().cloned());
                        if sc.tls != Tls::None && !tls_done {
                            lines.push("STARTTLS".into());
                        }
                        let n = lines.len();
                        let r: Vec<String> =
                            lines.iter().enumerate().map(|(i, l)| format!("250{}{l}", if i + 1 == n { ' ' } else { '-' })).collect();
                        c.say(&r.join("\r\n"))
                    }
                };
            }
            "STARTTLS" => {
                c.say("220 2.0.0 go ahead");
                if sc.tls == Tls::Broken {
                    let _ = c.s.write_all(b"this is not TLS at all\r\n");
                    return;
                }
                let home = postern::os::home::Home::at(sc.cert_dir.clone().unwrap());
                let config = postern::net::tls::server_config(&home).unwrap().unwrap();
                let conn = rustls::ServerConnection::new(config).unwrap();
                c = Conn { s: Box::new(rustls::StreamOwned::new(conn, tcp.try_clone().unwrap())), buf: Vec::new() };
                tls_done = true;
                rec(&|s| s.tls = true);
            }
            "MAIL" => {
                let piped = !c.buf.is_empty();
                rec(&|s| s.pipelined = piped);
                c.say("250 2.1.0 ok");
            }
            "RCPT" => {
                let addr = line.split_once('<').and_then(|(_, r)| r.split_once('>')).map(|(a, _)| a.to_string()).unwrap_or_default();
                let r = (sc.rcpt)(&addr);
                c.say(&r);
            }
            "DATA" => {
                c.say("354 go ahead");
                let mut data = Vec::new();
                loop {
                    if sc.close_in_data && !data.is_empty() {
                        return;
                    }
                    let Some(l) = c.line() else { return };
                    if l == "." {
                        break;
                    }
                    data.extend_from_slice(l.as_bytes());
                    data.extend_from_slice(b"\r\n");
                }
                rec(&|s| s.data = data.clone());
                c.say(&sc.data_reply);
            }
            "QUIT" => {
                c.say("221 2.0.0 bye");
                return;
            }
            _ => {
                c.say("502 5.5.2 what?");
            }
        }
    }
}
