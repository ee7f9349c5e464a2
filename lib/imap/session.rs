//! The authenticated and selected states (postern-imapd): every command after
//! login, on the mailbox layer of lib/imap/{folders,mailbox,fetch,search}.rs.
//!
//! Commands are read by lib/imap/parse.rs and answered in order (pipelined
//! commands included; replies go out when no further command is buffered).
//! After each command the selected folder is rescanned if inotify saw it
//! change, and the changes reported before the tagged reply: EXISTS, FETCH
//! FLAGS, and EXPUNGE except after FETCH, STORE and SEARCH, whose sequence
//! numbers the client may still be using (RFC 9051 §7.5.1).
//!
//! CONDSTORE (RFC 7162) is on once a command uses it (ENABLE, SELECT
//! (CONDSTORE), FETCH MODSEQ or CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH
//! MODSEQ, STATUS HIGHESTMODSEQ): flag updates then carry MODSEQ. QRESYNC is
//! on after ENABLE QRESYNC: expunges are then sent as `* VANISHED uids`.

use super::cache::{self, Headers};
use super::command::{self, Command, List, Qresync, SearchReturn, StatusItem};
use super::fetch::{self, FetchCtx};
use super::folders::{FolderInfo, Store, DELIMITER};
use super::idle::{self, Watch, Woke};
use super::mailbox::{self, Changes, Mailbox};
use super::parse::{Event, Limits, Reader};
use super::response::{ID_RESPONSE, SESSION_CAPABILITIES};
use super::search::{self, SearchCtx};
use super::types::{compact_set, FetchAtt, Flag, StoreOp};
use super::StoreError;
use crate::net::session::{NetError, Session};
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// Replies buffered past this are sent before more is added (big FETCHes).
const FLUSH_AT: usize = 256 * 1024;

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    Logout,
    Dropped(String),
}

pub struct Imapd<'a> {
    store: Store,
    selected: Option<Selected>,
    net: &'a mut Session,
    /// The client's input descriptor, for IDLE's wait.
    input_fd: BorrowedFd<'a>,
    input: Reader,
    log: &'a mut dyn FnMut(&str),
    /// ENABLE IMAP4rev2.
    rev2: bool,
    /// The tag of the command being answered (ESEARCH names it).
    tag: String,
    /// CONDSTORE in use (RFC 7162 §3.1).
    condstore: bool,
    /// ENABLE QRESYNC (implies condstore).
    qresync: bool,
    timeout: Duration,
}

struct Selected {
    mb: Mailbox,
    /// None when inotify cannot watch it: rescan every time.
    watch: Option<Watch>,
}

/// The answer to one command: its tagged status line (without the tag).
type Reply = Result<String, String>;

fn no(e: &StoreError) -> String {
    if e.try_create() {
        format!("NO [TRYCREATE] {e}")
    } else if matches!(e, StoreError::Io(..)) {
        format!("NO [UNAVAILABLE] {e}; try again later")
    } else if matches!(e, StoreError::BadName(..)) {
        format!("NO [CANNOT] {e}")
    } else {
        format!("NO {e}")
    }
}

/// A mailbox name from the wire: INBOX in any case is INBOX.
fn name_of(raw: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "NO [CANNOT] a mailbox name must be modified UTF-7 (ASCII)".to_string())?;
    if s.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    if s.len() > 6 && s[..6].eq_ignore_ascii_case("INBOX.") {
        return Ok(format!("INBOX{}", &s[5..]));
    }
    Ok(s.to_string())
}

fn quoted(s: &str) -> String {
    let mut o = Vec::new();
    fetch::write_string(&mut o, s.as_bytes());
    String::from_utf8_lossy(&o).into_owned()
}

/// `*` matches anything, `%` anything but the delimiter. Dynamic programming
/// over the name, one row per pattern byte: O(pattern x name) whatever the
/// client sends (the obvious backtracking is exponential in the `*`s).
fn wildcard(pat: &[u8], name: &[u8]) -> bool {
    // ok[j]: the pattern so far matches name[..j].
    let mut ok = vec![false; name.len() + 1];
    ok[0] = true;
    for &c in pat {
        match c {
            b'*' | b'%' => {
                // Extend each match over any run of bytes (for %, none a delimiter).
                for j in 1..=name.len() {
                    if !ok[j] && ok[j - 1] && (c == b'*' || name[j - 1] != DELIMITER as u8) {
                        ok[j] = true;
                    }
                }
            }
            _ => {
                for j in (1..=name.len()).rev() {
                    ok[j] = ok[j - 1] && name[j - 1] == c;
                }
                ok[0] = false;
            }
        }
        if !ok.contains(&true) {
            return false;
        }
    }
    ok[name.len()]
}

fn matches_pattern(reference: &[u8], pattern: &[u8], name: &str) -> bool {
    let mut full = reference.to_vec();
    full.extend_from_slice(pattern);
    if full.len() >= 5 && full[..5].eq_ignore_ascii_case(b"INBOX") && (full.len() == 5 || full[5] == DELIMITER as u8) {
        full[..5].copy_from_slice(b"INBOX");
    }
    wildcard(&full, name.as_bytes())
}

fn flag_list(flags: &[Flag]) -> String {
    let v: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    format!("({})", v.join(" "))
}

impl<'a> Imapd<'a> {
    pub fn new(store: Store, net: &'a mut Session, input_fd: BorrowedFd<'a>, timeout: Duration, log: &'a mut dyn FnMut(&str)) -> Imapd<'a> {
        Imapd {
            store,
            selected: None,
            net,
            input_fd,
            input: Reader::new(Limits::SESSION),
            log,
            rev2: false,
            tag: String::new(),
            condstore: false,
            qresync: false,
            timeout,
        }
    }

    /// Answer the login (imapd is where it is known to have worked), then serve.
    pub fn run(mut self, login_tag: &str) -> End {
        if let Err(e) = self.store.ensure_special() {
            (self.log)(&format!("cannot set up the mail folders: {e}"));
            self.net.write(format!("{login_tag} NO [UNAVAILABLE] your mailbox cannot be opened now: try again later\r\n").as_bytes());
            let _ = self.net.flush();
            return End::Dropped(e.to_string());
        }
        self.net.write(format!("{login_tag} OK [CAPABILITY {SESSION_CAPABILITIES}] logged in\r\n").as_bytes());
        match self.serve() {
            Ok(()) => End::Logout,
            Err(e) => End::Dropped(e.to_string()),
        }
    }

    fn serve(&mut self) -> Result<(), NetError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.input.event() {
                Event::NeedMore => {
                    self.net.flush()?;
                    let n = self.net.read(&mut buf)?;
                    self.input.push(&buf[..n]);
                }
                Event::Continue => {
                    self.net.write(b"+ OK\r\n");
                    self.net.flush()?;
                }
                Event::Reject(r) => self.net.write(r.line().as_bytes()),
                Event::Command(tag, tokens) => {
                    let cmd = match command::parse(&tag, &tokens) {
                        Ok(c) => c,
                        Err(r) => {
                            self.net.write(r.line().as_bytes());
                            continue;
                        }
                    };
                    if cmd == Command::Logout {
                        self.net.write(format!("* BYE logging out\r\n{tag} OK LOGOUT completed\r\n").as_bytes());
                        self.net.flush()?;
                        return Ok(());
                    }
                    if cmd == Command::Idle {
                        self.idle(&tag)?;
                        continue;
                    }
                    let expunge_ok = !matches!(
                        cmd,
                        Command::Fetch { uid: false, .. } | Command::Store { uid: false, .. } | Command::Search { uid: false, .. }
                    );
                    // What these compare against must be current: look first
                    // (inotify says whether anything changed).
                    let fresh_first =
                        matches!(&cmd, Command::Fetch { changed_since: Some(_), .. } | Command::Store { unchanged_since: Some(_), .. })
                            || matches!(&cmd, Command::Search { key, .. } if key.has_modseq());
                    if fresh_first {
                        self.updates(expunge_ok, false);
                    }
                    self.tag = tag.clone();
                    let reply = self.command(cmd)?;
                    self.updates(expunge_ok, false);
                    let status = match reply {
                        Ok(s) | Err(s) => s,
                    };
                    self.net.write(format!("{tag} {status}\r\n").as_bytes());
                }
            }
        }
    }

    /// Report what changed in the selected folder.
    fn updates(&mut self, expunge_ok: bool, force: bool) {
        let Some(sel) = &mut self.selected else { return };
        let changed = match &mut sel.watch {
            Some(w) => w.take(),
            None => true,
        };
        if !changed && !force {
            return;
        }
        let log = &mut *self.log;
        let ch: Changes = match sel.mb.rescan(expunge_ok, log) {
            Ok(c) => c,
            Err(e) => {
                log(&format!("cannot rescan {}: {e}", sel.mb.name));
                return;
            }
        };
        let x = mailbox::Expunged { msns: ch.expunged, uids: ch.vanished };
        self.net.write(expunge_lines(&x, self.qresync).as_bytes());
        if let Some(n) = ch.exists {
            self.net.write(format!("* {n} EXISTS\r\n").as_bytes());
        }
        for &n in &ch.flags {
            if let Some(m) = sel.mb.messages().get(n as usize - 1) {
                let f = flag_list(&sel.mb.flags_of(m));
                let ms = if self.condstore { format!(" MODSEQ ({})", m.modseq) } else { String::new() };
                self.net.write(format!("* {n} FETCH (UID {} FLAGS {f}{ms})\r\n", m.uid).as_bytes());
            }
        }
    }

    fn idle(&mut self, tag: &str) -> Result<(), NetError> {
        self.updates(true, false);
        self.net.write(b"+ idling\r\n");
        self.net.flush()?;
        crate::os::sys::release_free_memory();
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            if let Some(line) = self.input.take_line() {
                if line.eq_ignore_ascii_case(b"DONE") {
                    self.updates(true, false);
                    self.net.write(format!("{tag} OK IDLE terminated\r\n").as_bytes());
                    return Ok(());
                }
                self.net.write(format!("{tag} BAD expected DONE to end IDLE\r\n").as_bytes());
                return Ok(());
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                self.net.write(b"* BYE IDLE for too long without DONE\r\n");
                self.net.flush()?;
                return Err(NetError::Timeout);
            }
            // Without a watch (inotify limits), look every few seconds.
            let step = left.min(Duration::from_secs(if self.watch_ok() { 60 } else { 5 }));
            let woke = match self.selected.as_mut().and_then(|s| s.watch.as_mut()) {
                Some(w) => w.wait(self.input_fd, step),
                None => idle::wait_input(self.input_fd, step),
            };
            match woke {
                Woke::Input => {
                    let mut buf = [0u8; 4096];
                    let n = self.net.read(&mut buf)?;
                    self.input.push(&buf[..n]);
                }
                Woke::Folder | Woke::Timeout => {
                    // Let a burst of renames settle into one report.
                    if woke == Woke::Folder {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let force = woke == Woke::Timeout && !self.watch_ok();
                    self.updates(true, force);
                    self.net.flush()?;
                }
            }
        }
    }

    fn watch_ok(&self) -> bool {
        self.selected.as_ref().is_some_and(|s| s.watch.is_some())
    }

    fn command(&mut self, cmd: Command) -> Result<Reply, NetError> {
        use Command as C;
        Ok(match cmd {
            C::Capability => {
                self.net.write(format!("* CAPABILITY {SESSION_CAPABILITIES}\r\n").as_bytes());
                Ok("OK CAPABILITY completed".into())
            }
            C::Noop | C::Check => {
                if let Some(sel) = &mut self.selected {
                    if sel.watch.is_none() {
                        self.updates(true, true);
                    }
                }
                Ok("OK NOOP completed".into())
            }
            C::Id => {
                self.net.write(ID_RESPONSE.as_bytes());
                Ok("OK ID completed".into())
            }
            C::Login { .. } | C::Authenticate { .. } => Err("BAD already logged in".into()),
            C::StartTls => Err("BAD already logged in; TLS is set up before login".into()),
            C::Enable(caps) => {
                let mut on = Vec::new();
                for c in caps {
                    if c == "IMAP4REV2" && !self.rev2 {
                        self.rev2 = true;
                        on.push("IMAP4rev2");
                    }
                    if c == "CONDSTORE" && !self.condstore {
                        self.condstore = true;
                        on.push("CONDSTORE");
                    }
                    if c == "QRESYNC" && !self.qresync {
                        // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
                        self.qresync = true;
                        self.condstore = true;
                        on.push("QRESYNC");
                    }
                }
                self.net.write(format!("* ENABLED{}{}\r\n", if on.is_empty() { "" } else { " " }, on.join(" ")).as_bytes());
                Ok("OK ENABLE completed".into())
            }
            C::Namespace => {
                self.net.write(b"* NAMESPACE ((\"\" \".\")) NIL NIL\r\n");
                Ok("OK NAMESPACE completed".into())
            }
            C::Select { mailbox, read_only, condstore, qresync } => {
                if qresync.is_some() && !self.qresync {
                    // RFC 7162 §3.2.5: only after ENABLE QRESYNC.
                    self.selected = None;
                    Err("BAD QRESYNC must be enabled first (ENABLE QRESYNC)".into())
                } else {
                    self.condstore |= condstore;
                    self.select(&mailbox, read_only, qresync.as_ref())
                }
            }
            C::Create(m) => self.folder_op(&m, |s, n| s.create(n.trim_end_matches(DELIMITER)), "CREATE"),
            C::Delete(m) => {
                let r = self.folder_op(&m, |s, n| s.delete(n), "DELETE");
                if r.is_ok() && self.selected.as_ref().is_some_and(|s| name_of(&m).is_ok_and(|n| n == s.mb.name)) {
                    self.selected = None;
                }
                r
            }
            C::Subscribe(m) => self.folder_op(&m, |s, n| s.subscribe(n), "SUBSCRIBE"),
            C::Unsubscribe(m) => self.folder_op(&m, |s, n| s.unsubscribe(n), "UNSUBSCRIBE"),
            C::Rename { from, to } => match (name_of(&from), name_of(&to)) {
                (Ok(f), Ok(t)) => match self.store.rename(&f, &t) {
                    Ok(()) => Ok("OK RENAME completed".into()),
                    Err(e) => Err(no(&e)),
                },
                (Err(e), _) | (_, Err(e)) => Err(e),
            },
            C::List(l) => self.list(&l),
            C::Lsub { reference, pattern } => self.lsub(&reference, &pattern),
            C::Status { mailbox, items } => {
                self.condstore |= items.contains(&StatusItem::HighestModSeq);
                name_of(&mailbox).and_then(|n| self.status(&n, &items))
            }
            C::Append { mailbox, flags, date, message } => match name_of(&mailbox) {
                Ok(n) => match mailbox::append(&self.store, &n, &message, &flags, date) {
                    Ok((v, uid)) => Ok(format!("OK [APPENDUID {v} {uid}] APPEND completed")),
                    Err(e) => Err(no(&e)),
                },
                Err(e) => Err(e),
            },
            C::Idle | C::Logout => unreachable!("handled by the loop"),
            other => self.selected_command(other)?,
        })
    }

    fn status(&mut self, name: &str, items: &[StatusItem]) -> Reply {
        let st = mailbox::status(&self.store, name).map_err(|e| no(&e))?;
        self.net.write(status_line(name, &st, items).as_bytes());
        Ok("OK STATUS completed".into())
    }

    fn folder_op(&mut self, raw: &[u8], op: impl Fn(&Store, &str) -> Result<(), StoreError>, what: &str) -> Reply {
        let n = name_of(raw)?;
        op(&self.store, &n).map_err(|e| no(&e))?;
        Ok(format!("OK {what} completed"))
    }

    fn select(&mut self, raw: &[u8], read_only: bool, qresync: Option<&Qresync>) -> Reply {
        let had = self.selected.take().is_some();
        // RFC 9051 §7.1, and RFC 7162 §3.2.11 once QRESYNC is on.
        if had && (self.rev2 || self.qresync) {
            self.net.write(b"* OK [CLOSED] previous mailbox closed\r\n");
        }
        let name = name_of(raw)?;
        let mb = Mailbox::open(&self.store, &name, read_only, &mut *self.log).map_err(|e| no(&e))?;
        let watch = match Watch::new(&mb.dir) {
            Ok(w) => Some(w),
            Err(e) => {
                (self.log)(&format!("{e}; rescanning {name} at every command instead"));
                None
            }
        };
        let msgs = mb.messages();
        let mut out = format!("* {} EXISTS\r\n", msgs.len());
        if !self.rev2 {
            out.push_str(&format!("* {} RECENT\r\n", msgs.iter().filter(|m| m.recent).count()));
        }
        let mut kws: Vec<String> = mb.keyword_names().into_iter().filter(|k| !k.is_empty()).collect();
        kws.sort();
        let kw = if kws.is_empty() { String::new() } else { format!(" {}", kws.join(" ")) };
        out.push_str(&format!("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw})\r\n"));
        if read_only {
            out.push_str("* OK [PERMANENTFLAGS ()] read-only\r\n");
        } else {
            out.push_str(&format!("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw} \\*)] flags kept\r\n"));
        }
        if !self.rev2 {
            if let Some(i) = msgs.iter().position(|m| m.flags & mailbox::SEEN == 0) {
                out.push_str(&format!("* OK [UNSEEN {}] first unseen\r\n", i + 1));
            }
        }
        out.push_str(&format!("* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] predicted next UID\r\n", mb.uidvalidity, mb.uidnext));
        // Every folder keeps modseqs: never NOMODSEQ.
        out.push_str(&format!("* OK [HIGHESTMODSEQ {}] modseqs kept\r\n", mb.highest_modseq));
        if self.rev2 {
            out.push_str(&format!("* LIST () \".\" {}\r\n", quoted(&name)));
        }
        // QRESYNC for a UIDVALIDITY the client still has: what it missed. For
        // another one it reloads anyway (RFC 7162 §3.2.5: parameters ignored).
        if let Some(q) = qresync.filter(|q| q.uidvalidity == mb.uidvalidity) {
            let gone = mb.vanished_since(q.modseq, q.known_uids.as_ref());
            if !gone.is_empty() {
                out.push_str(&format!("* VANISHED (EARLIER) {}\r\n", range_text(&gone)));
            }
            // Flag changes too only for the UIDs the client says it knows (RFC 5162 §3.1).
            let max = mb.uidnext.saturating_sub(1);
            let known = |u: u32| q.known_uids.as_ref().is_none_or(|s| s.contains(u, max));
            for (i, m) in msgs.iter().enumerate().filter(|(_, m)| m.modseq > q.modseq && known(m.uid)) {
                let f = flag_list(&mb.flags_of(m));
                out.push_str(&format!("* {} FETCH (UID {} FLAGS {f} MODSEQ ({}))\r\n", i + 1, m.uid, m.modseq));
            }
        }
        self.net.write(out.as_bytes());
        self.selected = Some(Selected { mb, watch });
        Ok(format!(
            "OK [{}] {} completed",
            if read_only { "READ-ONLY" } else { "READ-WRITE" },
            if read_only { "EXAMINE" } else { "SELECT" }
        ))
    }

    fn list(&mut self, l: &List) -> Reply {
        if l.patterns.iter().all(|p| p.is_empty()) && !l.extended {
            self.net.write(b"* LIST (\\Noselect) \".\" \"\"\r\n");
            return Ok("OK LIST completed".into());
        }
        let folders = self.store.list().map_err(|e| no(&e))?;
        let matches = |name: &str| l.patterns.iter().any(|p| matches_pattern(&l.reference, p, name));
        for f in &folders {
            if !matches(&f.name) || (f.phantom && !l.subscribed) {
                continue;
            }
            // RFC 5258 RECURSIVEMATCH: a name that is not itself subscribed
            // but has a subscribed descendant the patterns leave out.
            let prefix = format!("{}{DELIMITER}", f.name);
            let childinfo = l.subscribed
                && l.recursive
                && !f.subscribed
                && folders.iter().any(|g| g.subscribed && g.name.starts_with(&prefix) && !matches(&g.name));
            if l.subscribed && !f.subscribed && !childinfo {
                continue;
            }
            if l.special_use && !f.attrs.iter().any(|a| is_special_use(a)) {
                continue;
            }
            let mut attrs: Vec<&str> = f.attrs.clone();
            if (l.subscribed || l.return_subscribed) && f.subscribed {
                attrs.push("\\Subscribed");
            }
            let extra = if childinfo { " (\"CHILDINFO\" (\"SUBSCRIBED\"))" } else { "" };
            self.net.write(format!("* LIST ({}) \".\" {}{extra}\r\n", attrs.join(" "), quoted(&f.name)).as_bytes());
            if !l.status.is_empty()
                && !f.attrs.iter().any(|a| a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent"))
            {
                match mailbox::status(&self.store, &f.name) {
                    Ok(st) => self.net.write(status_line(&f.name, &st, &l.status).as_bytes()),
                    Err(e) => (self.log)(&format!("LIST-STATUS of {}: {e}", f.name)),
                }
            }
        }
        Ok("OK LIST completed".into())
    }

    fn lsub(&mut self, reference: &[u8], pattern: &[u8]) -> Reply {
        let folders: Vec<FolderInfo> = self.store.list().map_err(|e| no(&e))?;
        for f in folders.iter().filter(|f| f.subscribed && matches_pattern(reference, pattern, &f.name)) {
            let attrs: Vec<&str> = f.attrs.iter().copied().filter(|a| a.eq_ignore_ascii_case("\\Noselect")).collect();
            self.net.write(format!("* LSUB ({}) \".\" {}\r\n", attrs.join(" "), quoted(&f.name)).as_bytes());
        }
        Ok("OK LSUB completed".into())
    }

    /// Commands that need a selected folder.
    fn selected_command(&mut self, cmd: Command) -> Result<Reply, NetError> {
        use Command as C;
        if self.selected.is_none() {
            return Ok(Err("BAD no mailbox selected: SELECT or EXAMINE first".into()));
        }
        Ok(match cmd {
            C::Close | C::Unselect => {
                let sel = self.selected.take().expect("checked above");
                let mut mb = sel.mb;
                if cmd == C::Close && !mb.read_only {
                    if let Err(e) = mb.expunge(None) {
                        (self.log)(&format!("CLOSE could not expunge {}: {e}", mb.name));
                    }
                }
                Ok(format!("OK {} completed", if cmd == C::Close { "CLOSE" } else { "UNSELECT" }))
            }
            C::Expunge => self.expunge(None),
            C::UidExpunge(set) => {
                let uids = self.sel().resolve(&set, true);
                self.expunge(Some(uids))
            }
            C::Search { uid, esearch, key } => self.search(uid, esearch, &key),
            C::Fetch { uid, set, atts, changed_since, vanished } => {
                if !uid && set.exceeds(self.sel().messages().len() as u32) {
                    return Ok(Err("BAD message sequence number beyond the last message".into()));
                }
                if vanished && !self.qresync {
                    return Ok(Err("BAD VANISHED needs ENABLE QRESYNC first".into()));
                }
                if changed_since.is_some() || atts.contains(&FetchAtt::ModSeq) {
                    self.condstore = true;
                }
                let mut uids = self.sel().resolve(&set, uid);
                if let Some(since) = changed_since {
                    if vanished {
                        let gone = self.sel().vanished_since(since, Some(&set));
                        if !gone.is_empty() {
                            self.net.write(format!("* VANISHED (EARLIER) {}\r\n", range_text(&gone)).as_bytes());
                        }
                    }
                    let mb = self.sel();
                    uids.retain(|&u| mb.get(u).is_some_and(|m| m.modseq > since));
                }
                self.fetch(&uids, &atts)?;
                Ok(format!("OK {}FETCH completed", if uid { "UID " } else { "" }))
            }
            C::Store { uid, set, op, silent, flags, unchanged_since } => {
                if !uid && set.exceeds(self.sel().messages().len() as u32) {
                    return Ok(Err("BAD message sequence number beyond the last message".into()));
                }
                if self.sel().read_only {
                    return Ok(Err("NO the mailbox is read-only (EXAMINE)".into()));
                }
                let uids = self.sel().resolve(&set, uid);
                if unchanged_since.is_some() {
                    self.condstore = true;
                }
                let mb = &mut self.selected.as_mut().expect("checked above").mb;
                let modified = match mb.store_flags_if(&uids, op, &flags, unchanged_since) {
                    Ok((_, modified)) => modified,
                    Err(e) => return Ok(Err(no(&e))),
                };
                let done: Vec<u32> = uids.iter().copied().filter(|u| !modified.contains(u)).collect();
                // With CONDSTORE even .SILENT reports the new MODSEQ (RFC 7162 §3.1.3).
                if !silent || self.condstore {
                    self.send_flags(&done, uid, !silent);
                }
                let what = if uid { "UID STORE" } else { "STORE" };
                if modified.is_empty() {
                    Ok(format!("OK {what} completed"))
                } else {
                    // MODIFIED names UIDs for UID STORE, else sequence numbers.
                    let mb = self.sel();
                    let mut ns: Vec<u32> = if uid { modified } else { modified.iter().filter_map(|&u| mb.msn(u)).collect() };
                    ns.sort_unstable();
                    Ok(format!("OK [MODIFIED {}] conditional {what}: these changed since", compact_set(&ns)))
                }
            }
            C::Copy { uid, set, mailbox } | C::Move { uid, set, mailbox } if !uid && set.exceeds(self.sel().messages().len() as u32) => {
                let _ = mailbox;
                Err("BAD message sequence number beyond the last message".into())
            }
            C::Copy { uid, set, mailbox } => {
                let dest = match name_of(&mailbox) {
                    Ok(d) => d,
                    Err(e) => return Ok(Err(e)),
                };
                let uids = self.sel().resolve(&set, uid);
                if uids.is_empty() {
                    return Ok(Ok("OK nothing to copy".into()));
                }
                match self.sel().copy(&self.store, &uids, &dest) {
                    Ok(c) => Ok(format!("OK [COPYUID {}] COPY completed", copyuid(&c))),
                    Err(e) => Err(no(&e)),
                }
            }
            C::Move { uid, set, mailbox } => {
                let dest = match name_of(&mailbox) {
                    Ok(d) => d,
                    Err(e) => return Ok(Err(e)),
                };
                if self.sel().read_only {
                    return Ok(Err("NO the mailbox is read-only (EXAMINE)".into()));
                }
                let uids = self.sel().resolve(&set, uid);
                if uids.is_empty() {
                    return Ok(Ok("OK nothing to move".into()));
                }
                let sel = self.selected.as_mut().expect("checked above");
                match sel.mb.move_to(&self.store, &uids, &dest) {
                    Ok((c, x)) => {
                        self.net.write(format!("* OK [COPYUID {}] moved\r\n", copyuid(&c)).as_bytes());
                        self.net.write(expunge_lines(&x, self.qresync).as_bytes());
                        Ok("OK MOVE completed".into())
                    }
                    Err(e) => Err(no(&e)),
                }
            }
            _ => Err("BAD command not valid in this state".into()),
        })
    }

    fn sel(&self) -> &Mailbox {
        &self.selected.as_ref().expect("callers check a folder is selected").mb
    }

    fn expunge(&mut self, uids: Option<Vec<u32>>) -> Reply {
        let sel = self.selected.as_mut().expect("checked by selected_command");
        if sel.mb.read_only {
            return Err("NO the mailbox is read-only (EXAMINE)".into());
        }
        let x = sel.mb.expunge(uids.as_deref()).map_err(|e| no(&e))?;
        self.net.write(expunge_lines(&x, self.qresync).as_bytes());
        Ok("OK EXPUNGE completed".into())
    }

    /// STORE's answers: FLAGS unless .SILENT, MODSEQ with CONDSTORE.
    fn send_flags(&mut self, uids: &[u32], with_uid: bool, with_flags: bool) {
        let mb = self.sel();
        let mut out = String::new();
        for &u in uids {
            let Some(n) = mb.msn(u) else { continue };
            let m = &mb.messages()[n as usize - 1];
            let mut items = Vec::new();
            // With QRESYNC a client keys its cache by UID: always give it.
            if with_uid || self.qresync {
                items.push(format!("UID {u}"));
            }
            if with_flags {
                items.push(format!("FLAGS {}", flag_list(&mb.flags_of(m))));
            }
            if self.condstore {
                items.push(format!("MODSEQ ({})", m.modseq));
            }
            out.push_str(&format!("* {n} FETCH ({})\r\n", items.join(" ")));
        }
        self.net.write(out.as_bytes());
    }

    fn fetch(&mut self, uids: &[u32], atts: &[FetchAtt]) -> Result<(), NetError> {
        let needs_file = atts.iter().any(FetchAtt::needs_file);
        let sel = self.selected.as_mut().expect("checked by selected_command");
        let sets_seen = !sel.mb.read_only && atts.iter().any(FetchAtt::sets_seen);
        let mut atts = atts.to_vec();
        if sets_seen && !atts.contains(&FetchAtt::Flags) {
            atts.push(FetchAtt::Flags);
        }
        // The \Seen set here is a change: its new MODSEQ goes with it.
        if sets_seen && self.condstore && !atts.contains(&FetchAtt::ModSeq) {
            atts.push(FetchAtt::ModSeq);
        }
        if sets_seen {
            let unseen: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|&u| sel.mb.msn(u).is_some_and(|n| sel.mb.messages()[n as usize - 1].flags & mailbox::SEEN == 0))
                .collect();
            if !unseen.is_empty() {
                if let Err(e) = sel.mb.store_flags(&unseen, StoreOp::Add, &[Flag::Seen]) {
                    (self.log)(&format!("cannot set \\Seen in {}: {e}", sel.mb.name));
                }
            }
        }
        let mut out = Vec::new();
        let mut headers =
            (needs_file && uids.len() >= cache::MIN_MESSAGES && atts.iter().all(fetch::header_only)).then(|| Headers::open(&sel.mb.dir));
        for &u in uids {
            let mb = &self.selected.as_ref().expect("selected").mb;
            let Some(n) = mb.msn(u) else { continue };
            let m = &mb.messages()[n as usize - 1];
            let map = if needs_file {
                match headers.as_mut().map_or_else(|| cache::read(mb, m), |h| h.get(mb, m)) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        (self.log)(&format!("FETCH of UID {u} in {}: {e}", mb.name));
                        continue;
                    }
                }
            } else {
                None
            };
            let flags = if atts.contains(&FetchAtt::Flags) { flag_list(&mb.flags_of(m)) } else { String::new() };
            let ctx = FetchCtx { msg: m, flags: &flags, data: map.as_deref() };
            out.extend_from_slice(format!("* {n} FETCH (").as_bytes());
            for (i, a) in atts.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                fetch::write_item(&mut out, a, &ctx);
            }
            out.extend_from_slice(b")\r\n");
            if out.len() >= FLUSH_AT {
                self.net.write(&out);
                out.clear();
                self.net.flush()?;
            }
        }
        self.net.write(&out);
        if let Some(h) = headers {
            let mb = &self.selected.as_ref().expect("selected").mb;
            if let Err(e) = h.finish(mb) {
                (self.log)(&format!("cannot update the header cache of {}: {e}", mb.name));
            }
        }
        Ok(())
    }

    fn search(&mut self, uid: bool, esearch: Option<Vec<SearchReturn>>, key: &super::types::SearchKey) -> Reply {
        let with_modseq = key.has_modseq();
        self.condstore |= with_modseq;
        let mb = &self.selected.as_ref().expect("checked by selected_command").mb;
        let mut top_modseq = 0;
        let log = &mut *self.log;
        let msgs = mb.messages();
        let keywords = mb.keyword_names();
        let max_uid = msgs.last().map(|m| m.uid).unwrap_or(0);
        let needs = key.needs_header();
        let mut headers = (needs && !key.needs_body() && msgs.len() >= cache::MIN_MESSAGES).then(|| Headers::open(&mb.dir));
        let mut hits = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let map = if needs {
                match headers.as_mut().map_or_else(|| cache::read(mb, m), |h| h.get(mb, m)) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        log(&format!("SEARCH skips UID {} in {}: {e}", m.uid, mb.name));
                        continue;
                    }
                }
            } else {
                None
            };
            let ctx =
                SearchCtx { msg: m, msn: i as u32 + 1, max_msn: msgs.len() as u32, max_uid, keywords: &keywords, data: map.as_deref() };
            if search::matches(key, &ctx) {
                hits.push(if uid { m.uid } else { i as u32 + 1 });
                top_modseq = top_modseq.max(m.modseq);
            }
        }
        if let Some(Err(e)) = headers.map(|h| h.finish(mb)) {
            log(&format!("cannot update the header cache of {}: {e}", mb.name));
        }
        let line = match esearch.or_else(|| self.rev2.then(|| vec![SearchReturn::All])) {
            None => {
                let mut l = String::from("* SEARCH");
                for h in &hits {
                    l.push_str(&format!(" {h}"));
                }
                // RFC 7162 §3.1.5: the highest modseq of what was found.
                if with_modseq && !hits.is_empty() {
                    l.push_str(&format!(" (MODSEQ {top_modseq})"));
                }
                l + "\r\n"
            }
            Some(ret) => {
                // RFC 4731 §3.1: the correlator names the command's tag.
                let mut l = format!("* ESEARCH (TAG {})", quoted(&self.tag));
                if uid {
                    l.push_str(" UID");
                }
                for r in ret {
                    match r {
                        SearchReturn::Min if !hits.is_empty() => l.push_str(&format!(" MIN {}", hits[0])),
                        SearchReturn::Max if !hits.is_empty() => l.push_str(&format!(" MAX {}", hits[hits.len() - 1])),
                        SearchReturn::All if !hits.is_empty() => l.push_str(&format!(" ALL {}", compact_set(&hits))),
                        SearchReturn::Count => l.push_str(&format!(" COUNT {}", hits.len())),
                        _ => {}
                    }
                }
                if with_modseq && !hits.is_empty() {
                    l.push_str(&format!(" MODSEQ {top_modseq}"));
                }
                l + "\r\n"
            }
        };
        self.net.write(line.as_bytes());
        Ok(format!("OK {}SEARCH completed", if uid { "UID " } else { "" }))
    }
}

/// `* n EXPUNGE` lines, or one `* VANISHED uids` once QRESYNC is on.
fn expunge_lines(x: &mailbox::Expunged, qresync: bool) -> String {
    if qresync {
        if x.uids.is_empty() {
            return String::new();
        }
        return format!("* VANISHED {}\r\n", compact_set(&x.uids));
    }
    x.msns.iter().map(|n| format!("* {n} EXPUNGE\r\n")).collect()
}

/// `1:3,7` from ranges.
fn range_text(r: &[(u32, u32)]) -> String {
    let v: Vec<String> = r.iter().map(|&(a, z)| if a == z { a.to_string() } else { format!("{a}:{z}") }).collect();
    v.join(",")
}

fn is_special_use(a: &str) -> bool {
    ["\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"].iter().any(|s| s.eq_ignore_ascii_case(a))
}

fn copyuid(c: &mailbox::CopyUids) -> String {
    let src: Vec<u32> = c.pairs.iter().map(|p| p.0).collect();
    let dst: Vec<u32> = c.pairs.iter().map(|p| p.1).collect();
    // Ranges keep the pairing only when both sides ascend together, which
    // copies given new UIDs in source order do.
    format!("{} {} {}", c.uidvalidity, compact_set(&src), compact_set(&dst))
}

fn status_line(name: &str, st: &mailbox::Status, items: &[StatusItem]) -> String {
    let v: Vec<String> = items
        .iter()
        .map(|i| {
            let n = match i {
                StatusItem::Messages => st.messages as u64,
                StatusItem::Recent => st.recent as u64,
                StatusItem::UidNext => st.uidnext as u64,
                StatusItem::UidValidity => st.uidvalidity as u64,
                StatusItem::Unseen => st.unseen as u64,
                StatusItem::Size => st.size,
                StatusItem::HighestModSeq => st.highest_modseq,
            };
            format!("{} {n}", i.name())
        })
        .collect();
    format!("* STATUS {} ({})\r\n", quoted(name), v.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_wildcards() {
        assert!(wildcard(b"*", b"a.b"));
        assert!(wildcard(b"%", b"Sent"));
        assert!(!wildcard(b"%", b"a.b"));
        assert!(wildcard(b"a.%", b"a.b"));
        assert!(wildcard(b"S*t", b"Sent"));
        assert!(!wildcard(b"S%x", b"Sent"));
        assert!(wildcard(b"a*b*c", b"axxbyyc"));
        assert!(!wildcard(b"a*b*c", b"axxbyy"));
        assert!(wildcard(b"%.%", b"a.b"));
        assert!(!wildcard(b"%.%", b"a.b.c"));
        assert!(wildcard(b"*.%", b"a.b.c"));
        assert!(wildcard(b"", b""));
        assert!(!wildcard(b"", b"a"));
        assert!(wildcard(b"**%%", b""));
        // Issue 12: backtracking took exponential time on patterns like this.
        let hostile = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b".repeat(4);
        assert!(!wildcard(&hostile, &[b'a'; 2000]));
        assert!(matches_pattern(b"", b"inbox", "INBOX"));
        assert!(matches_pattern(b"a.", b"%", "a.b"));
    }
}
