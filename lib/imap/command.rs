//! IMAP commands from the token tree of lib/imap/parse.rs: each command's
//! arguments checked and turned into the values of lib/imap/types.rs once, here.

use super::parse::{Reject, Token};
use super::types::{parse_modseq, Date, FetchAtt, Flag, SearchKey, Section, SectionText, SeqSet, StoreOp};

/// A command's arguments as the server acts on them. Mailbox names are bytes as
/// sent (modified UTF-7); lib/imap/folders checks them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    StartTls,
    Login {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    /// ID's parameter list, NIL or pairs.
    Id,
    Enable(Vec<String>),
    Namespace,
    Select {
        mailbox: Vec<u8>,
        read_only: bool,
        /// `(CONDSTORE)`.
        condstore: bool,
        /// `(QRESYNC (...))`.
        qresync: Option<Qresync>,
    },
    Create(Vec<u8>),
    Delete(Vec<u8>),
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Subscribe(Vec<u8>),
    Unsubscribe(Vec<u8>),
    List(List),
    Lsub {
        reference: Vec<u8>,
        pattern: Vec<u8>,
    },
    Status {
        mailbox: Vec<u8>,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: Vec<u8>,
        flags: Vec<Flag>,
        date: Option<i64>,
        message: Vec<u8>,
    },
    Check,
    Close,
    Unselect,
    Expunge,
    /// UID EXPUNGE (UIDPLUS).
    UidExpunge(SeqSet),
    Search {
        uid: bool,
        esearch: Option<Vec<SearchReturn>>,
        key: SearchKey,
    },
    Fetch {
        uid: bool,
        set: SeqSet,
        atts: Vec<FetchAtt>,
        /// `(CHANGEDSINCE n)`: only messages whose modseq is above n.
        changed_since: Option<u64>,
        /// `(CHANGEDSINCE n VANISHED)` (UID FETCH, QRESYNC).
        vanished: bool,
    },
    Store {
        uid: bool,
        set: SeqSet,
        op: StoreOp,
        silent: bool,
        flags: Vec<Flag>,
        /// `(UNCHANGEDSINCE n)`.
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SeqSet,
        mailbox: Vec<u8>,
    },
    Move {
        uid: bool,
        set: SeqSet,
        mailbox: Vec<u8>,
    },
    Idle,
}

/// SELECT's QRESYNC parameter (RFC 7162 §3.2.5): what the client cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qresync {
    pub uidvalidity: u32,
    pub modseq: u64,
    /// The UIDs it knows (VANISHED is limited to these).
    pub known_uids: Option<SeqSet>,
    /// (sequence numbers, their UIDs): accepted, not needed (see
    /// `Mailbox::vanished_since`).
    pub seq_match: Option<(SeqSet, SeqSet)>,
}

/// LIST with RFC 5258 (LIST-EXTENDED) selection and return options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct List {
    pub reference: Vec<u8>,
    pub patterns: Vec<Vec<u8>>,
    /// SUBSCRIBED selection.
    pub subscribed: bool,
    /// SPECIAL-USE selection: only folders with a special use.
    pub special_use: bool,
    /// RECURSIVEMATCH: parents of subscribed names get CHILDINFO.
    pub recursive: bool,
    /// RETURN (STATUS (...)) (LIST-STATUS).
    pub status: Vec<StatusItem>,
    /// RETURN (SUBSCRIBED), RETURN (SPECIAL-USE), RETURN (CHILDREN).
    pub return_subscribed: bool,
    pub return_special_use: bool,
    pub return_children: bool,
    /// Extended syntax was used: answers name the mailbox's attributes fully.
    pub extended: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Size,
    HighestModSeq,
}

impl StatusItem {
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Size => "SIZE",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
        }
    }
}

/// ESEARCH RETURN options (RFC 4731).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
}

/// The tokens of one command (after the tag), checked.
pub fn parse(tag: &str, tokens: &[Token]) -> Result<Command, Reject> {
    let bad = |text: String| Reject::bad(Some(tag.to_string()), text);
    let verb = tokens[0]
        .atom()
        .map(|v| String::from_utf8_lossy(v).to_ascii_uppercase())
        .ok_or_else(|| bad("the command must be an atom".into()))?;
    let args = Args { t: &tokens[1..], i: 0, verb: &verb };
    command(&verb, args).map_err(bad)
}

/// The arguments of one command, taken in order.
struct Args<'a> {
    t: &'a [Token],
    i: usize,
    verb: &'a str,
}

impl<'a> Args<'a> {
    fn next(&mut self, what: &str) -> Result<&'a Token, String> {
        let t = self.t.get(self.i).ok_or_else(|| format!("{} needs {what}", self.verb))?;
        self.i += 1;
        Ok(t)
    }

    fn peek(&self) -> Option<&'a Token> {
        self.t.get(self.i)
    }

    fn astring(&mut self, what: &str) -> Result<Vec<u8>, String> {
        self.next(what)?.astring().map(<[u8]>::to_vec).ok_or_else(|| format!("{} needs {what}, not a list", self.verb))
    }

    fn atom(&mut self, what: &str) -> Result<&'a [u8], String> {
        self.next(what)?.atom().ok_or_else(|| format!("{} needs {what} (an atom)", self.verb))
    }

    fn list(&mut self, what: &str) -> Result<&'a [Token], String> {
        match self.next(what)? {
            Token::List(l) => Ok(l),
            _ => Err(format!("{} needs {what} in parentheses", self.verb)),
        }
    }

    fn set(&mut self) -> Result<SeqSet, String> {
        let a = self.atom("a sequence set")?;
        SeqSet::parse(a).map_err(|e| e.to_string())
    }

    fn end(&self) -> Result<(), String> {
        if self.i < self.t.len() {
            return Err(format!("too many arguments for {}", self.verb));
        }
        Ok(())
    }

    fn done<T>(&self, v: T) -> Result<T, String> {
        self.end()?;
        Ok(v)
    }
}

fn command(verb: &str, mut a: Args) -> Result<Command, String> {
    use Command as C;
    match verb {
        "CAPABILITY" => a.done(C::Capability),
        "NOOP" => a.done(C::Noop),
        "LOGOUT" => a.done(C::Logout),
        "STARTTLS" => a.done(C::StartTls),
        "CHECK" => a.done(C::Check),
        "CLOSE" => a.done(C::Close),
        "UNSELECT" => a.done(C::Unselect),
        "EXPUNGE" => a.done(C::Expunge),
        "NAMESPACE" => a.done(C::Namespace),
        "IDLE" => a.done(C::Idle),
        "LOGIN" => {
            let user = a.astring("a user name")?;
            let password = a.astring("a password")?;
            a.done(C::Login { user, password })
        }
        "AUTHENTICATE" => {
            let mechanism = String::from_utf8_lossy(a.atom("a mechanism")?).to_ascii_uppercase();
            let initial = match a.peek() {
                Some(_) => Some(a.astring("an initial response")?),
                None => None,
            };
            a.done(C::Authenticate { mechanism, initial })
        }
        "ID" => {
            match a.next("NIL or a parameter list")? {
                Token::List(l) if l.len() <= 60 && l.len() % 2 == 0 && l.iter().all(|t| t.nstring().is_some()) => {}
                t if t.nstring() == Some(None) => {}
                _ => return Err("ID needs NIL or a list of field and value strings".into()),
            }
            a.done(C::Id)
        }
        "ENABLE" => {
            let mut caps = Vec::new();
            while a.peek().is_some() {
                caps.push(String::from_utf8_lossy(a.atom("a capability")?).to_ascii_uppercase());
            }
            if caps.is_empty() {
                return Err("ENABLE needs at least one capability".into());
            }
            Ok(C::Enable(caps))
        }
        "SELECT" | "EXAMINE" => {
            let mailbox = a.astring("a mailbox name")?;
            let (mut condstore, mut qresync) = (false, None);
            if a.peek().is_some() {
                (condstore, qresync) = select_params(a.list("select parameters")?)?;
            }
            a.done(C::Select { mailbox, read_only: verb == "EXAMINE", condstore, qresync })
        }
        "CREATE" => {
            let m = a.astring("a mailbox name")?;
            // RFC 6154's USE (...) would follow; not offered.
            a.done(C::Create(m))
        }
        "DELETE" => {
            let m = a.astring("a mailbox name")?;
            a.done(C::Delete(m))
        }
        "SUBSCRIBE" => {
            let m = a.astring("a mailbox name")?;
            a.done(C::Subscribe(m))
        }
        "UNSUBSCRIBE" => {
            let m = a.astring("a mailbox name")?;
            a.done(C::Unsubscribe(m))
        }
        "RENAME" => {
            let from = a.astring("the old mailbox name")?;
            let to = a.astring("the new mailbox name")?;
            a.done(C::Rename { from, to })
        }
        "LIST" => list(a),
        "LSUB" => {
            let reference = a.astring("a reference name")?;
            let pattern = a.astring("a mailbox pattern")?;
            a.done(C::Lsub { reference, pattern })
        }
        "STATUS" => {
            let mailbox = a.astring("a mailbox name")?;
            let items = status_items(a.list("status items")?)?;
            a.done(C::Status { mailbox, items })
        }
        "APPEND" => append(a),
        "SEARCH" => search(a, false),
        "FETCH" => fetch(a, false),
        "STORE" => store(a, false),
        "COPY" => {
            let set = a.set()?;
            let mailbox = a.astring("a mailbox name")?;
            a.done(C::Copy { uid: false, set, mailbox })
        }
        "MOVE" => {
            let set = a.set()?;
            let mailbox = a.astring("a mailbox name")?;
            a.done(C::Move { uid: false, set, mailbox })
        }
        "UID" => {
            let sub = String::from_utf8_lossy(a.atom("a command (FETCH, SEARCH, STORE, COPY, MOVE, EXPUNGE)")?).to_ascii_uppercase();
            match sub.as_str() {
                "SEARCH" => search(a, true),
                "FETCH" => fetch(a, true),
                "STORE" => store(a, true),
                "COPY" | "MOVE" => {
                    let set = a.set()?;
                    let mailbox = a.astring("a mailbox name")?;
                    a.done(if sub == "COPY" { C::Copy { uid: true, set, mailbox } } else { C::Move { uid: true, set, mailbox } })
                }
                "EXPUNGE" => {
                    let set = a.set()?;
                    a.done(C::UidExpunge(set))
                }
                _ => Err(format!("unknown UID command {}", shorten(&sub))),
            }
        }
        _ => Err(format!("unknown command {}", shorten(verb))),
    }
}

/// `(CONDSTORE)` and `(QRESYNC (uidvalidity modseq [known-uids [(msns uids)]]))`.
fn select_params(t: &[Token]) -> Result<(bool, Option<Qresync>), String> {
    let (mut condstore, mut qresync) = (false, None);
    let mut i = 0;
    while i < t.len() {
        match t[i].atom().map(|w| w.to_ascii_uppercase()).as_deref() {
            Some(b"CONDSTORE") => condstore = true,
            Some(b"QRESYNC") => {
                i += 1;
                let Some(Token::List(q)) = t.get(i) else { return Err("QRESYNC needs (uidvalidity modseq [known-uids])".into()) };
                qresync = Some(qresync_param(q)?);
            }
            _ => return Err("unknown select parameter; known: CONDSTORE, QRESYNC (...)".into()),
        }
        i += 1;
    }
    Ok((condstore, qresync))
}

fn qresync_param(q: &[Token]) -> Result<Qresync, String> {
    let bad = || "QRESYNC needs (uidvalidity modseq [known-uids [(sequence-numbers uids)]])".to_string();
    let num = |i: usize| q.get(i).and_then(Token::atom).ok_or_else(bad);
    let uidvalidity: u32 = std::str::from_utf8(num(0)?).ok().and_then(|n| n.parse().ok()).filter(|&n| n > 0).ok_or_else(bad)?;
    let modseq = parse_modseq(num(1)?).filter(|&m| m > 0).ok_or_else(bad)?;
    let set = |t: &Token| t.atom().and_then(|a| SeqSet::parse(a).ok()).ok_or_else(bad);
    let (mut known_uids, mut seq_match) = (None, None);
    let mut i = 2;
    if let Some(t @ Token::Atom(_)) = q.get(i) {
        known_uids = Some(set(t)?);
        i += 1;
    }
    if let Some(Token::List(m)) = q.get(i) {
        match m.as_slice() {
            [a, b] => seq_match = Some((set(a)?, set(b)?)),
            _ => return Err(bad()),
        }
        i += 1;
    }
    if i != q.len() {
        return Err(bad());
    }
    Ok(Qresync { uidvalidity, modseq, known_uids, seq_match })
}

/// At most 20 characters of something the client sent, for an answer.
fn shorten(s: &str) -> String {
    s.chars().take(20).collect()
}

fn list(mut a: Args) -> Result<Command, String> {
    let mut l = List::default();
    if let Some(Token::List(opts)) = a.peek() {
        a.i += 1;
        l.extended = true;
        for o in opts {
            match o.atom().map(|o| o.to_ascii_uppercase()).as_deref() {
                Some(b"SUBSCRIBED") => l.subscribed = true,
                Some(b"SPECIAL-USE") => l.special_use = true,
                Some(b"RECURSIVEMATCH") => l.recursive = true,
                Some(b"REMOTE") => {}
                _ => return Err("unknown LIST selection option; known: SUBSCRIBED, SPECIAL-USE, RECURSIVEMATCH, REMOTE".into()),
            }
        }
        if l.recursive && !l.subscribed {
            return Err("RECURSIVEMATCH needs another selection option (SUBSCRIBED)".into());
        }
    }
    l.reference = a.astring("a reference name")?;
    match a.next("a mailbox pattern")? {
        Token::List(ps) => {
            l.extended = true;
            for p in ps {
                l.patterns.push(p.astring().ok_or("a mailbox pattern is a string")?.to_vec());
            }
        }
        t => l.patterns.push(t.astring().ok_or("a mailbox pattern is a string")?.to_vec()),
    }
    if a.peek().is_some() {
        if !a.atom("RETURN")?.eq_ignore_ascii_case(b"RETURN") {
            return Err("LIST takes RETURN (...) after the patterns".into());
        }
        l.extended = true;
        let opts = a.list("return options")?;
        let mut i = 0;
        while i < opts.len() {
            match opts[i].atom().map(|o| o.to_ascii_uppercase()).as_deref() {
                Some(b"SUBSCRIBED") => l.return_subscribed = true,
                Some(b"CHILDREN") => l.return_children = true,
                Some(b"SPECIAL-USE") => l.return_special_use = true,
                Some(b"STATUS") => {
                    i += 1;
                    let Some(Token::List(items)) = opts.get(i) else { return Err("RETURN STATUS needs a list of status items".into()) };
                    l.status = status_items(items)?;
                }
                _ => return Err("unknown LIST return option; known: SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS (...)".into()),
            }
            i += 1;
        }
    }
    a.done(Command::List(l))
}

fn status_items(t: &[Token]) -> Result<Vec<StatusItem>, String> {
    let mut out = Vec::new();
    for i in t {
        let item = match i.atom().map(|a| a.to_ascii_uppercase()).as_deref() {
            Some(b"MESSAGES") => StatusItem::Messages,
            Some(b"RECENT") => StatusItem::Recent,
            Some(b"UIDNEXT") => StatusItem::UidNext,
            Some(b"UIDVALIDITY") => StatusItem::UidValidity,
            Some(b"UNSEEN") => StatusItem::Unseen,
            Some(b"SIZE") => StatusItem::Size,
            Some(b"HIGHESTMODSEQ") => StatusItem::HighestModSeq,
            _ => return Err("unknown status item; known: MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE HIGHESTMODSEQ".into()),
        };
        out.push(item);
    }
    if out.is_empty() {
        return Err("STATUS needs at least one item".into());
    }
    Ok(out)
}

fn flags(t: &[Token]) -> Result<Vec<Flag>, String> {
    t.iter()
        .map(|f| f.atom().ok_or_else(|| "a flag is an atom".to_string()).and_then(|f| Flag::parse(f).map_err(|e| e.to_string())))
        .collect()
}

fn append(mut a: Args) -> Result<Command, String> {
    let mailbox = a.astring("a mailbox name")?;
    let mut fl = Vec::new();
    if let Some(Token::List(l)) = a.peek() {
        a.i += 1;
        fl = flags(l)?;
    }
    let mut date = None;
    if let Some(Token::Str(d)) = a.peek() {
        if a.i + 1 < a.t.len() {
            a.i += 1;
            date = Some(date_time(d).ok_or("bad APPEND date: expected \"dd-Mon-yyyy hh:mm:ss +zzzz\"")?);
        }
    }
    let message = match a.next("a message literal")? {
        Token::Str(m) => m.clone(),
        _ => return Err("APPEND needs the message as a literal".into()),
    };
    a.done(Command::Append { mailbox, flags: fl, date, message })
}

/// RFC 3501 date-time `"dd-Mon-yyyy hh:mm:ss +zzzz"` (day may be space-padded) as Unix time.
pub fn date_time(s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?.trim_start();
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let d = Date::parse(date.as_bytes()).ok()?;
    let hms: Vec<i64> = time.split(':').map(|p| if p.len() == 2 { p.parse().ok() } else { None }).collect::<Option<_>>()?;
    if hms.len() != 3 || hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
        return None;
    }
    let (sign, z) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    if z.len() != 4 || !z.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let off = sign * (z[..2].parse::<i64>().ok()? * 3600 + z[2..].parse::<i64>().ok()? * 60);
    Some(d.days() * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2] - off)
}

fn search(mut a: Args, uid: bool) -> Result<Command, String> {
    let mut esearch = None;
    if a.peek().and_then(Token::atom).is_some_and(|r| r.eq_ignore_ascii_case(b"RETURN")) {
        a.i += 1;
        let mut rs = Vec::new();
        for r in a.list("return options")? {
            rs.push(match r.atom().map(|r| r.to_ascii_uppercase()).as_deref() {
                Some(b"MIN") => SearchReturn::Min,
                Some(b"MAX") => SearchReturn::Max,
                Some(b"ALL") => SearchReturn::All,
                Some(b"COUNT") => SearchReturn::Count,
                _ => return Err("unknown SEARCH return option; known: MIN MAX ALL COUNT".into()),
            });
        }
        if rs.is_empty() {
            rs.push(SearchReturn::All);
        }
        esearch = Some(rs);
    }
    if a.peek().and_then(Token::atom).is_some_and(|r| r.eq_ignore_ascii_case(b"CHARSET")) {
        a.i += 1;
        let cs = a.astring("a charset")?;
        if !cs.eq_ignore_ascii_case(b"UTF-8") && !cs.eq_ignore_ascii_case(b"US-ASCII") {
            return Err("[BADCHARSET (UTF-8 US-ASCII)] only UTF-8 and US-ASCII searches".into());
        }
    }
    let mut keys = Vec::new();
    while a.peek().is_some() {
        keys.push(search_key(&mut a, 0)?);
    }
    if keys.is_empty() {
        return Err("SEARCH needs at least one key".into());
    }
    let key = if keys.len() == 1 { keys.pop().unwrap_or(SearchKey::All) } else { SearchKey::And(keys) };
    Ok(Command::Search { uid, esearch, key })
}

fn search_key(a: &mut Args, depth: usize) -> Result<SearchKey, String> {
    use SearchKey as K;
    if depth > 16 {
        return Err("search keys nested too deep".into());
    }
    let t = a.next("a search key")?;
    let word = match t {
        Token::List(l) => {
            let mut sub = Args { t: l, i: 0, verb: a.verb };
            let mut keys = Vec::new();
            while sub.peek().is_some() {
                keys.push(search_key(&mut sub, depth + 1)?);
            }
            if keys.is_empty() {
                return Err("an empty search key list".into());
            }
            return Ok(K::And(keys));
        }
        Token::Str(_) => return Err("a search key is an atom, not a string".into()),
        Token::Atom(w) => w,
    };
    let up = word.to_ascii_uppercase();
    let date = |a: &mut Args| -> Result<Date, String> { Date::parse(&a.astring("a date")?).map_err(|e| e.to_string()) };
    let num = |a: &mut Args| -> Result<u64, String> {
        std::str::from_utf8(a.atom("a number")?).ok().and_then(|n| n.parse().ok()).ok_or_else(|| "expected a number".to_string())
    };
    let keyword = |a: &mut Args| -> Result<String, String> {
        match Flag::parse(a.atom("a keyword")?).map_err(|e| e.to_string())? {
            Flag::Keyword(k) => Ok(k),
            _ => Err("KEYWORD takes a keyword, not a system flag".into()),
        }
    };
    Ok(match up.as_slice() {
        b"ALL" => K::All,
        b"ANSWERED" => K::Answered,
        b"UNANSWERED" => K::Unanswered,
        b"DELETED" => K::Deleted,
        b"UNDELETED" => K::Undeleted,
        b"DRAFT" => K::Draft,
        b"UNDRAFT" => K::Undraft,
        b"FLAGGED" => K::Flagged,
        b"UNFLAGGED" => K::Unflagged,
        b"SEEN" => K::Seen,
        b"UNSEEN" => K::Unseen,
        b"NEW" => K::New,
        b"OLD" => K::Old,
        b"RECENT" => K::Recent,
        b"KEYWORD" => K::Keyword(keyword(a)?),
        b"UNKEYWORD" => K::Unkeyword(keyword(a)?),
        b"FROM" => K::From(a.astring("a string")?),
        b"TO" => K::To(a.astring("a string")?),
        b"CC" => K::Cc(a.astring("a string")?),
        b"BCC" => K::Bcc(a.astring("a string")?),
        b"SUBJECT" => K::Subject(a.astring("a string")?),
        b"BODY" => K::Body(a.astring("a string")?),
        b"TEXT" => K::Text(a.astring("a string")?),
        b"HEADER" => {
            let f = a.astring("a field name")?;
            K::Header(f, a.astring("a string")?)
        }
        b"SINCE" => K::Since(date(a)?),
        b"BEFORE" => K::Before(date(a)?),
        b"ON" => K::On(date(a)?),
        b"SENTSINCE" => K::SentSince(date(a)?),
        b"SENTBEFORE" => K::SentBefore(date(a)?),
        b"SENTON" => K::SentOn(date(a)?),
        b"LARGER" => K::Larger(num(a)?),
        b"SMALLER" => K::Smaller(num(a)?),
        b"UID" => K::Uid(a.set()?),
        b"MODSEQ" => {
            // An optional entry name and type (`"/flags/\\seen" all`) narrow
            // nothing here: one modseq per message.
            if let Some(Token::Str(_)) = a.peek() {
                a.i += 1;
                let ty = a.atom("an entry type (all, shared, priv)")?.to_ascii_lowercase();
                if !matches!(ty.as_slice(), b"all" | b"shared" | b"priv") {
                    return Err("MODSEQ entry type must be all, shared or priv".into());
                }
            }
            K::ModSeq(parse_modseq(a.atom("a modseq")?).ok_or("MODSEQ needs a number (at most 2^63-1)")?)
        }
        b"NOT" => K::Not(Box::new(search_key(a, depth + 1)?)),
        b"OR" => {
            let x = search_key(a, depth + 1)?;
            K::Or(Box::new(x), Box::new(search_key(a, depth + 1)?))
        }
        _ => match SeqSet::parse(word) {
            Ok(s) => K::Seq(s),
            Err(_) => return Err(format!("unknown search key {}", shorten(&String::from_utf8_lossy(word)))),
        },
    })
}

fn fetch(mut a: Args, uid: bool) -> Result<Command, String> {
    let set = a.set()?;
    let mut atts = Vec::new();
    match a.next("fetch items")? {
        Token::List(l) => {
            for t in l {
                atts.push(fetch_att(t.atom().ok_or("a fetch item is an atom")?)?);
            }
        }
        Token::Atom(w) => match FetchAtt::macro_items(w) {
            Some(m) => atts = m,
            None => atts.push(fetch_att(w)?),
        },
        Token::Str(_) => return Err("fetch items are atoms, not strings".into()),
    }
    let (mut changed_since, mut vanished) = (None, false);
    if a.peek().is_some() {
        let p = a.list("fetch modifiers")?;
        let mut i = 0;
        while i < p.len() {
            match p[i].atom().map(|w| w.to_ascii_uppercase()).as_deref() {
                Some(b"CHANGEDSINCE") => {
                    i += 1;
                    let n = p.get(i).and_then(Token::atom).and_then(parse_modseq);
                    changed_since = Some(n.ok_or("CHANGEDSINCE needs a modseq (a number)")?);
                }
                Some(b"VANISHED") => vanished = true,
                _ => return Err("unknown fetch modifier; known: CHANGEDSINCE n, VANISHED".into()),
            }
            i += 1;
        }
        if vanished && (!uid || changed_since.is_none()) {
            return Err("VANISHED goes with UID FETCH and CHANGEDSINCE".into());
        }
    }
    a.end()?;
    if uid && !atts.contains(&FetchAtt::Uid) {
        atts.insert(0, FetchAtt::Uid);
    }
    // CHANGEDSINCE answers carry each message's MODSEQ (RFC 7162 §3.1.4.1).
    if changed_since.is_some() && !atts.contains(&FetchAtt::ModSeq) {
        atts.push(FetchAtt::ModSeq);
    }
    Ok(Command::Fetch { uid, set, atts, changed_since, vanished })
}

/// One fetch item: `FLAGS`, `BODY.PEEK[1.HEADER]<0.100>`, ...
pub fn fetch_att(w: &[u8]) -> Result<FetchAtt, String> {
    use FetchAtt as F;
    let bad = || format!("unknown fetch item {}", shorten(&String::from_utf8_lossy(w)));
    let up = w.to_ascii_uppercase();
    let (name, sect, partial) = match up.iter().position(|&b| b == b'[') {
        None => (up.as_slice(), None, None),
        Some(open) => {
            let close = up.iter().rposition(|&b| b == b']').ok_or_else(bad)?;
            let partial = match &up[close + 1..] {
                b"" => None,
                p => Some(partial_range(p).ok_or("bad partial range: expected <origin.count>")?),
            };
            // The section as sent, for header field names' case.
            (&up[..open], Some(&w[open + 1..close]), partial)
        }
    };
    Ok(match (name, sect) {
        (b"FLAGS", None) => F::Flags,
        (b"INTERNALDATE", None) => F::InternalDate,
        (b"RFC822.SIZE", None) => F::Rfc822Size,
        (b"ENVELOPE", None) => F::Envelope,
        (b"BODYSTRUCTURE", None) => F::BodyStructure,
        (b"BODY", None) => F::Body,
        (b"UID", None) => F::Uid,
        (b"MODSEQ", None) => F::ModSeq,
        (b"RFC822", None) => F::Rfc822,
        (b"RFC822.HEADER", None) => F::Rfc822Header,
        (b"RFC822.TEXT", None) => F::Rfc822Text,
        (b"BODY", Some(s)) => F::BodySection { peek: false, section: section(s)?, partial },
        (b"BODY.PEEK", Some(s)) => F::BodySection { peek: true, section: section(s)?, partial },
        (b"BINARY", Some(s)) => F::Binary { peek: false, part: part_only(s)?, partial },
        (b"BINARY.PEEK", Some(s)) => F::Binary { peek: true, part: part_only(s)?, partial },
        (b"BINARY.SIZE", Some(s)) if partial.is_none() => F::BinarySize(part_only(s)?),
        _ => return Err(bad()),
    })
}

fn partial_range(p: &[u8]) -> Option<(u64, u32)> {
    let inner = std::str::from_utf8(p.strip_prefix(b"<")?.strip_suffix(b">")?).ok()?;
    let (o, c) = inner.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(o) || !digits(c) {
        return None;
    }
    let count: u32 = c.parse().ok().filter(|&c| c > 0)?;
    Some((o.parse().ok()?, count))
}

fn part_only(s: &[u8]) -> Result<Vec<u32>, String> {
    let sec = section(s)?;
    if sec.text != SectionText::Whole {
        return Err("BINARY takes only a part number".into());
    }
    Ok(sec.part)
}

/// `1.2.HEADER.FIELDS (FROM TO)` and the like.
fn section(s: &[u8]) -> Result<Section, String> {
    let bad = || format!("bad section [{}]", String::from_utf8_lossy(s).chars().take(40).collect::<String>());
    let text = std::str::from_utf8(s).map_err(|_| bad())?;
    let (spec, fields) = match text.split_once(' ') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let mut part = Vec::new();
    let mut rest = "";
    for (i, p) in spec.split('.').enumerate() {
        if rest.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            let n: u32 = p.parse().map_err(|_| bad())?;
            if n == 0 {
                return Err(bad());
            }
            part.push(n);
        } else {
            rest = spec.splitn(i + 1, '.').last().unwrap_or("");
            break;
        }
    }
    if spec.is_empty() {
        rest = "";
    }
    let names = || -> Result<Vec<String>, String> {
        let f = fields.ok_or_else(bad)?.trim();
        let inner = f.strip_prefix('(').and_then(|f| f.strip_suffix(')')).ok_or_else(bad)?;
        let v: Vec<String> = inner.split(' ').filter(|n| !n.is_empty()).map(|n| n.trim_matches('"').to_string()).collect();
        if v.is_empty() || v.iter().any(|n| !n.bytes().all(|b| b > b' ' && b < 0x7f && b != b':')) {
            return Err(bad());
        }
        Ok(v)
    };
    let text = match rest.to_ascii_uppercase().as_str() {
        "" => SectionText::Whole,
        "HEADER" => SectionText::Header,
        "TEXT" => SectionText::Text,
        "MIME" if !part.is_empty() => SectionText::Mime,
        "HEADER.FIELDS" => SectionText::HeaderFields(names()?),
        "HEADER.FIELDS.NOT" => SectionText::HeaderFieldsNot(names()?),
        _ => return Err(bad()),
    };
    if fields.is_some() && !matches!(text, SectionText::HeaderFields(_) | SectionText::HeaderFieldsNot(_)) {
        return Err(bad());
    }
    Ok(Section { part, text })
}

fn store(mut a: Args, uid: bool) -> Result<Command, String> {
    let set = a.set()?;
    let mut unchanged_since = None;
    if let Some(Token::List(m)) = a.peek() {
        a.i += 1;
        match m.as_slice() {
            [Token::Atom(k), Token::Atom(n)] if k.eq_ignore_ascii_case(b"UNCHANGEDSINCE") => {
                unchanged_since = Some(parse_modseq(n).ok_or("UNCHANGEDSINCE needs a modseq (a number)")?);
            }
            _ => return Err("unknown store modifier; known: (UNCHANGEDSINCE n)".into()),
        }
    }
    let item = a.atom("FLAGS, +FLAGS or -FLAGS")?.to_ascii_uppercase();
    let (op, rest) = match item.first() {
        Some(b'+') => (StoreOp::Add, &item[1..]),
        Some(b'-') => (StoreOp::Remove, &item[1..]),
        _ => (StoreOp::Replace, &item[..]),
    };
    let silent = match rest {
        b"FLAGS" => false,
        b"FLAGS.SILENT" => true,
        _ => return Err("STORE takes FLAGS, +FLAGS or -FLAGS (with .SILENT)".into()),
    };
    let mut fl = Vec::new();
    match a.peek() {
        Some(Token::List(l)) => {
            a.i += 1;
            fl = flags(l)?;
        }
        _ => {
            while a.peek().is_some() {
                let f = a.atom("a flag")?;
                fl.push(Flag::parse(f).map_err(|e| e.to_string())?);
            }
        }
    }
    a.done(Command::Store { uid, set, op, silent, flags: fl, unchanged_since })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::parse::{tokenize, Limits};

    fn cmd(line: &str) -> Result<Command, String> {
        let (tag, t) = tokenize(format!("{line}\r\n").as_bytes(), &Limits::SESSION).map_err(|r| r.line())?;
        parse(&tag, &t).map_err(|r| r.line())
    }

    #[test]
    fn fetch_items_and_sections() {
        let Ok(Command::Fetch { uid: true, atts, .. }) =
            cmd("a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)]<0.100> BODY[1.2.MIME] BINARY.PEEK[2] RFC822.SIZE)")
        else {
            panic!()
        };
        assert_eq!(atts[0], FetchAtt::Uid);
        assert_eq!(
            atts[2],
            FetchAtt::BodySection {
                peek: true,
                section: Section { part: vec![], text: SectionText::HeaderFields(vec!["From".into(), "Subject".into()]) },
                partial: Some((0, 100))
            }
        );
        assert_eq!(
            atts[3],
            FetchAtt::BodySection { peek: false, section: Section { part: vec![1, 2], text: SectionText::Mime }, partial: None }
        );
        assert_eq!(atts[4], FetchAtt::Binary { peek: true, part: vec![2], partial: None });
        assert_eq!(
            cmd("a FETCH 1 BODY[]"),
            Ok(Command::Fetch {
                uid: false,
                set: SeqSet::parse(b"1").unwrap(),
                atts: vec![FetchAtt::BodySection { peek: false, section: Section::whole(), partial: None }],
                changed_since: None,
                vanished: false,
            })
        );
        for bad in [
            "a FETCH 1 BODY[MIME]",
            "a FETCH 1 BODY[0]",
            "a FETCH 1 BODY[1]<5>",
            "a FETCH 1 FOO",
            "a FETCH x FLAGS",
            "a FETCH 1 (FLAGS \"x\")",
        ] {
            assert!(cmd(bad).unwrap_err().starts_with("a BAD "), "{bad}");
        }
    }

    #[test]
    fn search_keys() {
        let Ok(Command::Search { uid: false, esearch: Some(r), key }) =
            cmd("a SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR FROM alice (SUBJECT \"x y\" UNSEEN) NOT 2:4 SINCE 1-Feb-2024")
        else {
            panic!()
        };
        assert_eq!(r, vec![SearchReturn::Min, SearchReturn::Count]);
        let SearchKey::And(k) = key else { panic!() };
        assert_eq!(k.len(), 3);
        assert!(matches!(&k[0], SearchKey::Or(..)));
        assert!(cmd("a SEARCH CHARSET KOI8-R ALL").unwrap_err().contains("BADCHARSET"));
        assert!(cmd("a SEARCH FOO").unwrap_err().contains("unknown search key FOO"));
        assert!(cmd("a SEARCH").is_err());
    }

    #[test]
    fn condstore_and_qresync_grammar() {
        let Ok(Command::Select { read_only: true, condstore: false, qresync: Some(q), .. }) =
            cmd("a EXAMINE INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1,3:5 41,43:45)))")
        else {
            panic!()
        };
        assert_eq!((q.uidvalidity, q.modseq), (67890007, 20050715194045000));
        assert_eq!(q.known_uids, Some(SeqSet::parse(b"41,43:211,214:541").unwrap()));
        assert_eq!(q.seq_match, Some((SeqSet::parse(b"1,3:5").unwrap(), SeqSet::parse(b"41,43:45").unwrap())));
        assert!(matches!(cmd("a SELECT INBOX (CONDSTORE)"), Ok(Command::Select { condstore: true, qresync: None, .. })));
        assert!(matches!(cmd("a SELECT INBOX (QRESYNC (1 2))"), Ok(Command::Select { qresync: Some(_), .. })));
        let Ok(Command::Fetch { atts, changed_since: Some(12345), vanished: true, .. }) =
            cmd("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
        else {
            panic!()
        };
        assert_eq!(atts, vec![FetchAtt::Uid, FetchAtt::Flags, FetchAtt::ModSeq], "CHANGEDSINCE implies MODSEQ");
        assert!(matches!(cmd("a FETCH 1 (MODSEQ)"), Ok(Command::Fetch { changed_since: None, .. })));
        let Ok(Command::Store { unchanged_since: Some(0), silent: true, .. }) =
            cmd("a STORE 1:2 (UNCHANGEDSINCE 0) +FLAGS.SILENT (\\Seen)")
        else {
            panic!()
        };
        let Ok(Command::Search { key, .. }) = cmd("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338 UNSEEN") else { panic!() };
        assert_eq!(key, SearchKey::And(vec![SearchKey::ModSeq(620162338), SearchKey::Unseen]));
        assert!(cmd("a STATUS INBOX (HIGHESTMODSEQ)").is_ok());
        for bad in [
            "a SELECT INBOX (QRESYNC (0 5))",
            "a SELECT INBOX (QRESYNC (1 0))",
            "a SELECT INBOX (QRESYNC (1))",
            "a SELECT INBOX (QRESYNC (1 2 1:5 (1:2)))",
            "a SELECT INBOX (FOO)",
            "a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)",
            "a UID FETCH 1 FLAGS (VANISHED)",
            "a FETCH 1 FLAGS (CHANGEDSINCE x)",
            "a FETCH 1 FLAGS (CHANGEDSINCE 99999999999999999999)",
            "a STORE 1 (UNCHANGEDSINCE) FLAGS (\\Seen)",
            "a SEARCH MODSEQ \"/flags/\\\\seen\" both 5",
            "a SEARCH MODSEQ -1",
        ] {
            assert!(cmd(bad).unwrap_err().starts_with("a BAD "), "{bad}");
        }
    }

    #[test]
    fn store_append_list_status() {
        assert_eq!(
            cmd("a UID STORE 1:3 +FLAGS.SILENT (\\Seen $Work)"),
            Ok(Command::Store {
                uid: true,
                set: SeqSet::parse(b"1:3").unwrap(),
                op: StoreOp::Add,
                silent: true,
                flags: vec![Flag::Seen, Flag::Keyword("$Work".into())],
                unchanged_since: None,
            })
        );
        let Ok(Command::Append { flags, date, message, .. }) = cmd("a APPEND Sent (\\Seen) \" 1-Feb-1994 21:52:25 -0800\" {2+}\r\nhi")
        else {
            panic!()
        };
        assert_eq!((flags, date, message), (vec![Flag::Seen], Some(760168345), b"hi".to_vec()));
        let Ok(Command::List(l)) = cmd("a LIST (SUBSCRIBED) \"\" (INBOX \"%\") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))") else {
            panic!()
        };
        assert!(l.subscribed && l.return_children && l.extended);
        assert_eq!(l.patterns, vec![b"INBOX".to_vec(), b"%".to_vec()]);
        assert_eq!(l.status, vec![StatusItem::Messages, StatusItem::Unseen]);
        assert!(cmd("a STATUS INBOX (FOO)").is_err());
        assert!(cmd("a NOOP x").unwrap_err().contains("too many arguments"));
        assert_eq!(cmd("a ID (\"name\" \"mutt\")"), Ok(Command::Id));
        assert_eq!(
            cmd("a AUTHENTICATE plain AGFsAHB3"),
            Ok(Command::Authenticate { mechanism: "PLAIN".into(), initial: Some(b"AGFsAHB3".to_vec()) })
        );
    }
}
