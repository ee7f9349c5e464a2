//! The POP3 TRANSACTION and UPDATE states (RFC 1939) on an open mailbox.
//!
//! postern-pop3d starts after the login (postern-popup and the checkpassword
//! program did that), so its first line is the +OK that answers PASS or AUTH.
//! Replies are buffered and flushed once per batch of pipelined commands;
//! messages go out in chunks of CHUNK bytes from a memory map, converted on the
//! fly. Every bad command gets a -ERR and the session goes on.

use crate::net::session::Session;
use crate::pop3::command::{self as pop3, Command};
use crate::pop3::mailbox::{self, Mailbox, Message, Stuffer};
use crate::proto::line::{Line, LineReader};

/// How much of a message is converted and sent at a time.
pub const CHUNK: usize = 64 * 1024;

/// What CAPA lists once the user is logged in (RFC 2449).
pub const CAPA_TRANSACTION: &str =
    "+OK capability list follows\r\nTOP\r\nUIDL\r\nPIPELINING\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nIMPLEMENTATION postern\r\n.\r\n";

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// QUIT: deletions done (how many).
    Quit(usize),
    /// The client went away or timed out: nothing deleted.
    Dropped(String),
}

/// The TRANSACTION state's session: the mailbox and the client.
pub struct Pop3d<'a> {
    mb: &'a mut Mailbox,
    net: &'a mut Session,
    log: &'a mut dyn FnMut(&str),
}

impl<'a> Pop3d<'a> {
    pub fn new(mb: &'a mut Mailbox, net: &'a mut Session, log: &'a mut dyn FnMut(&str)) -> Pop3d<'a> {
        Pop3d { mb, net, log }
    }

    /// The greeting (+OK to the login), then commands until QUIT or the end.
    pub fn run(&mut self) -> End {
        let (n, octets) = self.totals();
        self.net.write(format!("+OK {n} messages ({octets} octets)\r\n").as_bytes());
        let mut lines = LineReader::new(pop3::MAX_COMMAND);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if let Err(e) = self.net.flush() {
                return End::Dropped(e.to_string());
            }
            match self.net.read(&mut buf) {
                Ok(k) => lines.push(&buf[..k]),
                Err(e) => return End::Dropped(e.to_string()),
            }
            while let Some(line) = lines.next_line() {
                let reply = match line {
                    Line::Text(t) if t.contains(&0) => Err(pop3::NUL_REPLY.into()),
                    Line::Text(t) => self.command(pop3::parse(&t)),
                    Line::TooLong => Err(format!("-ERR line too long: at most {} octets", pop3::MAX_COMMAND)),
                };
                match reply {
                    Ok(Some(end)) => {
                        let _ = self.net.flush();
                        return end;
                    }
                    Ok(None) => {}
                    Err(text) => {
                        self.net.write(text.as_bytes());
                        self.net.write(b"\r\n");
                    }
                }
            }
        }
    }

    fn totals(&self) -> (usize, u64) {
        let live = self.mb.messages.iter().filter(|m| !m.deleted);
        live.fold((0, 0), |(n, s), m| (n + 1, s + m.size))
    }

    /// The message numbered `n` (1-based) if it exists and is not deleted.
    fn get(&self, n: u64) -> Result<(usize, &Message), String> {
        let i = (n as usize).checked_sub(1).filter(|&i| i < self.mb.messages.len() && n <= usize::MAX as u64);
        match i.map(|i| (i, &self.mb.messages[i])) {
            None => Err(format!("-ERR no message {n}; there are {}", self.mb.messages.len())),
            Some((_, m)) if m.deleted => Err(format!("-ERR message {n} is deleted")),
            Some(found) => Ok(found),
        }
    }

    /// Ok(Some) ends the session; Err is a one-line error reply.
    fn command(&mut self, cmd: Command) -> Result<Option<End>, String> {
        match cmd {
            Command::Stat => {
                let (n, octets) = self.totals();
                self.reply(format!("+OK {n} {octets}"));
            }
            Command::List(None) | Command::Uidl(None) => {
                let uidl = matches!(cmd, Command::Uidl(_));
                let mut out = String::with_capacity(32 + self.mb.messages.len() * 40);
                out.push_str("+OK\r\n");
                for (i, m) in self.mb.messages.iter().enumerate().filter(|(_, m)| !m.deleted) {
                    if uidl {
                        out.push_str(&format!("{} {}\r\n", i + 1, m.uidl));
                    } else {
                        out.push_str(&format!("{} {}\r\n", i + 1, m.size));
                    }
                }
                out.push_str(".\r\n");
                self.net.write(out.as_bytes());
            }
            Command::List(Some(n)) => {
                let (_, m) = self.get(n)?;
                let r = format!("+OK {n} {}", m.size);
                self.reply(r);
            }
            Command::Uidl(Some(n)) => {
                let (_, m) = self.get(n)?;
                let r = format!("+OK {n} {}", m.uidl);
                self.reply(r);
            }
            Command::Retr(n) => self.send(n, None)?,
            Command::Top(n, k) => self.send(n, Some(k))?,
            Command::Dele(n) => {
                let (i, _) = self.get(n)?;
                self.mb.messages[i].deleted = true;
                self.reply(format!("+OK message {n} deleted"));
            }
            Command::Rset => {
                self.mb.messages.iter_mut().for_each(|m| m.deleted = false);
                let (n, octets) = self.totals();
                self.reply(format!("+OK {n} messages ({octets} octets)"));
            }
            Command::Noop => self.reply("+OK".into()),
            Command::Capa => self.net.write(CAPA_TRANSACTION.as_bytes()),
            Command::Quit => return Ok(Some(self.quit())),
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } | Command::Stls => {
                return Err("-ERR already logged in: not allowed in the TRANSACTION state".into())
            }
            Command::Bad(why) => return Err(format!("-ERR {why}")),
            Command::Unknown(v) => return Err(format!("-ERR unknown command {v:?}")),
        }
        Ok(None)
    }

    fn reply(&mut self, line: String) {
        self.net.write(line.as_bytes());
        self.net.write(b"\r\n");
    }

    /// RETR (lines None) or TOP: the message from a memory map, chunk by chunk.
    fn send(&mut self, n: u64, lines: Option<u64>) -> Result<(), String> {
        let (_, m) = self.get(n)?;
        let (path, size) = (self.mb.path(m), m.size);
        let map = match self.mb.open_message(m).and_then(|f| crate::os::sys::map_file(&f)) {
            Ok(map) => map,
            Err(e) => {
                (self.log)(&format!("cannot read {}: {e}", path.display()));
                return Err(format!("-ERR [SYS/TEMP] message {n} cannot be read now"));
            }
        };
        let data: &[u8] = &map;
        let data = match lines {
            Some(k) => &data[..mailbox::top_len(data, k)],
            None => data,
        };
        match lines {
            None => self.reply(format!("+OK {size} octets")),
            Some(_) => self.reply("+OK".into()),
        }
        let mut stuffer = Stuffer::new();
        let mut out = Vec::with_capacity(CHUNK + CHUNK / 8);
        for chunk in data.chunks(CHUNK) {
            stuffer.encode(chunk, &mut out);
            // Bounded memory: a big message never sits whole in the reply buffer.
            // The tail and the final dot go out with the next flush, in one
            // write: a lone ".\r\n" segment would wait for the client's delayed
            // ACK (Nagle) and cost 40 ms per message.
            if out.len() >= CHUNK {
                self.net.write(&out);
                out.clear();
                self.net.flush().map_err(|e| format!("-ERR {e}"))?;
            }
        }
        stuffer.finish(&mut out);
        self.net.write(&out);
        Ok(())
    }

    /// UPDATE state: remove what was deleted.
    fn quit(&mut self) -> End {
        let (n, failed) = self.mb.commit();
        for f in &failed {
            (self.log)(f);
        }
        if failed.is_empty() {
            self.reply(format!("+OK bye, {n} message(s) deleted"));
        } else {
            self.reply(format!("-ERR [SYS/TEMP] {} message(s) could not be deleted; they stay in the mailbox", failed.len()));
        }
        End::Quit(n)
    }
}
