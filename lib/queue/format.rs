//! One queue file: its name (`Id`), its format, and reading and marking it.
//!
//! ```text
//! [message bytes][envelope][trailer]
//! envelope = "F" sender NUL, ["R" ret NUL], ["E" envid NUL],
//!            then per recipient: STATE recipient NUL ["N" notify NUL] ["O" orcpt NUL],
//!            then NUL
//!            STATE is 'T' (to do) or 'D' (done: delivered, or bounced and the
//!            bounce queued); R, E, N and O are the DSN parameters (RFC 3461,
//!            `dsnparams`): RET (FULL or HDRS), ENVID, NOTIFY (NEVER or a list of
//!            SUCCESS, FAILURE, DELAY) and ORCPT, each only when it was given, so a
//!            message without them has qmail's envelope and files written before
//!            they existed read the same.
//! trailer  = "PQ1:" 16 hex digits (offset of the envelope) ":" 10 decimal digits
//!            (birth, Unix seconds) "\n"                         = 32 bytes
//! ```
//! The message comes first so postern-queue can stream it from fd 0 before it
//! reads the envelope on fd 1 (qmail-queue's order) without holding it in memory.
//! The envelope on fd 1 is qmail-queue's: `F`sender NUL (`T`recipient NUL)* NUL,
//! with the same optional R, E (after F) and N, O (after their T) fields.

use super::dsnparams::{self, MessageDsn, Notify, RcptDsn, Ret};
use crate::address::{Address, AddressError};
use crate::error::{Classify, Kind};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const TRAILER_LEN: usize = 32;
const MAGIC: &[u8; 4] = b"PQ1:";
/// Largest envelope postern-queue accepts (10,000 recipients of 900 bytes fit).
pub const MAX_ENVELOPE: usize = 16 << 20;

#[derive(Debug)]
pub enum QueueError {
    /// An envelope address is too long or contains control characters.
    Address(AddressError),
    /// The envelope does not follow the protocol.
    Envelope(String),
    /// Reading the message or envelope failed or ended early.
    Read(String),
    /// Writing to the queue failed (including disk full).
    Write(PathBuf, io::Error),
    /// The queue directory is missing or unusable.
    Dir(PathBuf, io::Error),
    /// A queue file cannot be opened or read (out of descriptors, an I/O error,
    /// gone): it may work later.
    Io(PathBuf, io::Error),
    /// A queue file is damaged: its contents do not parse.
    Corrupt(PathBuf, String),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Address(e) => write!(f, "bad envelope address: {e}"),
            QueueError::Envelope(e) => write!(f, "envelope format error: {e}"),
            QueueError::Read(e) => write!(f, "cannot read the message or envelope: {e}"),
            QueueError::Write(p, e) => write!(f, "cannot write {}: {e}", p.display()),
            QueueError::Dir(p, e) => write!(f, "queue directory {} unusable: {e}; check it exists and belongs to postern-q", p.display()),
            QueueError::Io(p, e) => write!(f, "cannot read queue file {}: {e}", p.display()),
            QueueError::Corrupt(p, e) => write!(f, "queue file {} is damaged: {e}", p.display()),
        }
    }
}

impl Classify for QueueError {
    fn kind(&self) -> Kind {
        match self {
            // Retrying cannot mend a bad address or a damaged file.
            QueueError::Address(_) | QueueError::Corrupt(..) => Kind::Permanent,
            _ => Kind::Temporary,
        }
    }
}

impl QueueError {
    /// qmail-queue's exit code for this error.
    pub fn exit_code(&self) -> i32 {
        use super::submit::exit;
        match self {
            QueueError::Address(_) => exit::ADDRESS,
            QueueError::Envelope(_) => exit::ENVELOPE,
            QueueError::Read(_) => exit::READ,
            QueueError::Write(..) => exit::WRITE,
            QueueError::Dir(..) => exit::QUEUE_DIR,
            QueueError::Io(..) => exit::READ,
            QueueError::Corrupt(..) => exit::BUG,
        }
    }
}

/// A parsed envelope as postern-queue receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub sender: Address,
    pub recipients: Vec<Address>,
    /// RET and ENVID.
    pub dsn: MessageDsn,
    /// NOTIFY and ORCPT of recipient i; missing entries are defaults.
    pub rcpt_dsn: Vec<RcptDsn>,
}

/// One DSN field (R, E, N, O), checked: Err names what is wrong.
fn dsn_field(tag: u8, value: &[u8], msg: &mut MessageDsn, rcpt: Option<&mut RcptDsn>) -> Result<(), String> {
    let v = std::str::from_utf8(value).map_err(|_| format!("{} field is not ASCII", tag as char))?;
    match (tag, rcpt) {
        (b'R', None) if msg.ret.is_none() => msg.ret = Some(Ret::parse(v).ok_or("RET must be FULL or HDRS")?),
        (b'E', None) if msg.envid.is_none() && dsnparams::valid_xtext(v, dsnparams::MAX_ENVID) => msg.envid = Some(v.to_string()),
        (b'N', Some(r)) if r.notify.is_none() => r.notify = Some(Notify::parse(v).ok_or("bad NOTIFY")?),
        (b'O', Some(r)) if r.orcpt.is_none() && dsnparams::valid_orcpt(v) => r.orcpt = Some(v.to_string()),
        _ => return Err(format!("unexpected or bad {:?} field", tag as char)),
    }
    Ok(())
}

fn encode_dsn(v: &mut Vec<u8>, fields: &[(u8, Option<String>)]) {
    for (tag, value) in fields {
        if let Some(value) = value {
            v.push(*tag);
            v.extend_from_slice(value.as_bytes());
            v.push(0);
        }
    }
}

impl Envelope {
    /// Parse qmail-queue's envelope: `F`sender NUL (`T`recipient NUL)* NUL.
    /// Missing bytes at the end are a read error (the writer went away); anything
    /// else out of shape is a format error.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, QueueError> {
        let mut fields = Vec::new();
        let mut rest = bytes;
        loop {
            match rest.iter().position(|&b| b == 0) {
                None => return Err(QueueError::Read("the envelope ends before its final NUL".into())),
                Some(0) => {
                    rest = &rest[1..];
                    break;
                }
                Some(i) => {
                    fields.push(&rest[..i]);
                    rest = &rest[i + 1..];
                }
            }
        }
        if !rest.is_empty() {
            return Err(QueueError::Envelope("bytes after the final NUL".into()));
        }
        let mut it = fields.into_iter();
        let sender = match it.next() {
            Some(f) if f.first() == Some(&b'F') => Address::parse(&f[1..]).map_err(QueueError::Address)?,
            _ => return Err(QueueError::Envelope("the envelope must start with F and the sender".into())),
        };
        let mut recipients = Vec::new();
        let mut dsn = MessageDsn::default();
        let mut rcpt_dsn: Vec<RcptDsn> = Vec::new();
        for f in it {
            match f.first() {
                Some(b'T') if f.len() >= 2 => {
                    recipients.push(Address::parse(&f[1..]).map_err(QueueError::Address)?);
                    rcpt_dsn.push(RcptDsn::default());
                }
                Some(b'R' | b'E') if !recipients.is_empty() => {
                    return Err(QueueError::Envelope("RET and ENVID must come before the recipients".into()))
                }
                Some(&tag @ (b'R' | b'E' | b'N' | b'O')) => {
                    dsn_field(tag, &f[1..], &mut dsn, rcpt_dsn.last_mut().filter(|_| matches!(tag, b'N' | b'O')))
                        .map_err(QueueError::Envelope)?;
                }
                _ => return Err(QueueError::Envelope("each recipient must be T and an address".into())),
            }
        }
        if recipients.is_empty() {
            return Err(QueueError::Envelope("no recipients".into()));
        }
        if rcpt_dsn.iter().all(|r| *r == RcptDsn::default()) {
            rcpt_dsn.clear();
        }
        Ok(Envelope { sender, recipients, dsn, rcpt_dsn })
    }

    /// An envelope without DSN parameters.
    pub fn new(sender: Address, recipients: Vec<Address>) -> Envelope {
        Envelope { sender, recipients, dsn: MessageDsn::default(), rcpt_dsn: Vec::new() }
    }

    /// The bytes a client writes on postern-queue's fd 1.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.push(b'F');
        v.extend_from_slice(self.sender.as_str().as_bytes());
        v.push(0);
        encode_dsn(&mut v, &[(b'R', self.dsn.ret.map(|r| r.as_str().to_string())), (b'E', self.dsn.envid.clone())]);
        for (i, r) in self.recipients.iter().enumerate() {
            v.push(b'T');
            v.extend_from_slice(r.as_str().as_bytes());
            v.push(0);
            if let Some(d) = self.rcpt_dsn.get(i) {
                encode_dsn(&mut v, &[(b'N', d.notify.map(|n| n.encode())), (b'O', d.orcpt.clone())]);
            }
        }
        v.push(0);
        v
    }
}

/// A queue id: what a queue file is named. Only [0-9A-Za-z.-], not starting
/// with '.', at most 64 bytes: an id read from a directory or a pipe can be
/// joined to a path safely, and one that exists has been checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    pub fn parse(s: &str) -> Option<Id> {
        let ok =
            !s.is_empty() && s.len() <= 64 && !s.starts_with('.') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        ok.then(|| Id(s.to_string()))
    }

    /// A new id: the time to the microsecond and the writer's pid, unique on
    /// this host (one process writes one message at a time).
    pub fn generate() -> Id {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Id(format!("{}.{:06}.{}", t.as_secs(), t.subsec_micros(), std::process::id()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<Path> for Id {
    fn as_ref(&self) -> &Path {
        Path::new(&self.0)
    }
}

pub(super) fn trailer(envelope_offset: u64, birth: u64) -> [u8; TRAILER_LEN] {
    let s = format!("PQ1:{envelope_offset:016x}:{birth:010}\n");
    let mut t = [0u8; TRAILER_LEN];
    t.copy_from_slice(s.as_bytes());
    t
}

/// One recipient of a queued message.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub address: Address,
    pub done: bool,
    /// NOTIFY and ORCPT.
    pub dsn: RcptDsn,
    /// Offset of its state byte in the file.
    state_at: u64,
}

/// A message in the queue, opened by postern-send or an admin tool.
#[derive(Debug)]
pub struct QueueFile {
    pub path: PathBuf,
    pub file: File,
    pub sender: Address,
    pub recipients: Vec<Recipient>,
    /// RET and ENVID.
    pub dsn: MessageDsn,
    pub birth: u64,
    /// Length of the message: it occupies bytes 0..message_len.
    pub message_len: u64,
}

impl QueueFile {
    pub fn open(path: &Path, writable: bool) -> Result<QueueFile, QueueError> {
        let file = OpenOptions::new().read(true).write(writable).open(path).map_err(|e| QueueError::Io(path.to_path_buf(), e))?;
        QueueFile::from_file(file, path)
    }

    /// Parse an open queue file (`path` is for messages only).
    pub fn from_file(file: File, path: &Path) -> Result<QueueFile, QueueError> {
        let corrupt = |e: String| QueueError::Corrupt(path.to_path_buf(), e);
        // Reading can fail for a while (EIO); only contents that do not parse
        // are damage.
        let io = |e: io::Error| QueueError::Io(path.to_path_buf(), e);
        let size = file.metadata().map_err(io)?.len();
        if size < TRAILER_LEN as u64 {
            return Err(corrupt("shorter than its trailer".into()));
        }
        let mut t = [0u8; TRAILER_LEN];
        file.read_exact_at(&mut t, size - TRAILER_LEN as u64).map_err(io)?;
        let (off, birth) = parse_trailer(&t, size).map_err(corrupt)?;
        let env_len = size - TRAILER_LEN as u64;
        let mut env = vec![0u8; (env_len - off) as usize];
        file.read_exact_at(&mut env, off).map_err(io)?;
        let (sender, dsn, recipients) = parse_stored_envelope(&env, off).map_err(corrupt)?;
        Ok(QueueFile { path: path.to_path_buf(), file, sender, recipients, dsn, birth, message_len: off })
    }

    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        self.recipients.iter().enumerate().filter(|(_, r)| !r.done)
    }

    /// Durably mark recipients done (step 3 of the protocol).
    pub fn mark_done(&mut self, which: &[usize]) -> Result<(), QueueError> {
        let werr = |e: io::Error| QueueError::Write(self.path.clone(), e);
        for &i in which {
            let r = &self.recipients[i];
            self.file.write_all_at(b"D", r.state_at).map_err(werr)?;
        }
        self.file.sync_data().map_err(werr)?;
        for &i in which {
            self.recipients[i].done = true;
        }
        Ok(())
    }

    /// Set the birth time in the trailer, durably (`queue release`: the time
    /// a message was held does not count against queuelifetime).
    pub fn set_birth(&mut self, birth: u64) -> Result<(), QueueError> {
        let werr = |e: io::Error| QueueError::Write(self.path.clone(), e);
        let size = self.file.metadata().map_err(werr)?.len();
        self.file.write_all_at(&trailer(self.message_len, birth), size - TRAILER_LEN as u64).map_err(werr)?;
        self.file.sync_data().map_err(werr)?;
        self.birth = birth;
        Ok(())
    }

    /// The message bytes (without envelope and trailer).
    pub fn read_message(&self) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; self.message_len as usize];
        self.file.read_exact_at(&mut v, 0)?;
        Ok(v)
    }
}

/// The trailer of a queue file of `size` bytes: (envelope offset, birth time).
/// The envelope lies between the offset and the trailer, at most MAX_ENVELOPE.
pub fn parse_trailer(t: &[u8; TRAILER_LEN], size: u64) -> Result<(u64, u64), String> {
    if &t[..4] != MAGIC || t[20] != b':' || t[31] != b'\n' {
        return Err("no valid trailer".into());
    }
    let off = std::str::from_utf8(&t[4..20]).ok().and_then(|s| u64::from_str_radix(s, 16).ok()).ok_or("bad envelope offset")?;
    let birth = std::str::from_utf8(&t[21..31]).ok().and_then(|s| s.parse::<u64>().ok()).ok_or("bad birth time")?;
    let env_len = size.checked_sub(TRAILER_LEN as u64).ok_or("shorter than its trailer")?;
    if off > env_len || env_len - off > MAX_ENVELOPE as u64 {
        return Err("envelope offset out of range".into());
    }
    Ok((off, birth))
}

/// What `QueueFile::from_file` reads, from a whole queue file's bytes: the sender,
/// the recipients, the birth time and the message length. No I/O (for fuzzing).
pub fn parse_stored(file: &[u8]) -> Result<(Address, Vec<Recipient>, u64, u64), String> {
    let size = file.len() as u64;
    let t: &[u8; TRAILER_LEN] =
        file.get(file.len().saturating_sub(TRAILER_LEN)..).and_then(|t| t.try_into().ok()).ok_or("shorter than its trailer")?;
    let (off, birth) = parse_trailer(t, size)?;
    let (sender, _, recipients) = parse_stored_envelope(&file[off as usize..file.len() - TRAILER_LEN], off)?;
    Ok((sender, recipients, birth, off))
}

fn parse_stored_envelope(env: &[u8], base: u64) -> Result<(Address, MessageDsn, Vec<Recipient>), String> {
    let mut pos = 0usize;
    let mut sender = None;
    let mut dsn = MessageDsn::default();
    let mut recipients: Vec<Recipient> = Vec::new();
    loop {
        let rest = &env[pos..];
        let end = rest.iter().position(|&b| b == 0).ok_or("envelope without final NUL")?;
        if end == 0 {
            break;
        }
        let field = &rest[..end];
        match (field[0], sender.is_some()) {
            (b'F', false) => sender = Some(Address::parse(&field[1..]).map_err(|e| e.to_string())?),
            (b'T' | b'D', true) => recipients.push(Recipient {
                address: Address::parse(&field[1..]).map_err(|e| e.to_string())?,
                done: field[0] == b'D',
                dsn: RcptDsn::default(),
                state_at: base + pos as u64,
            }),
            (b'R' | b'E', true) if recipients.is_empty() => dsn_field(field[0], &field[1..], &mut dsn, None)?,
            (b'N' | b'O', true) if !recipients.is_empty() => {
                dsn_field(field[0], &field[1..], &mut dsn, recipients.last_mut().map(|r| &mut r.dsn))?
            }
            _ => return Err(format!("unexpected field {:?}", field[0] as char)),
        }
        pos += end + 1;
    }
    Ok((sender.ok_or("no sender")?, dsn, recipients))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_errors() {
        let e = Envelope::parse(b"Fa@b\0Tc@d\0Te@f\0\0").unwrap();
        assert_eq!(e.sender.as_str(), "a@b");
        assert_eq!(e.recipients.len(), 2);
        assert_eq!(e.encode(), b"Fa@b\0Tc@d\0Te@f\0\0");
        assert!(matches!(Envelope::parse(b"Fa@b\0Tc@d\0"), Err(QueueError::Read(_))));
        assert!(matches!(Envelope::parse(b""), Err(QueueError::Read(_))));
        assert!(matches!(Envelope::parse(b"Xa@b\0Tc\0\0"), Err(QueueError::Envelope(_))));
        assert!(matches!(Envelope::parse(b"Fa@b\0\0"), Err(QueueError::Envelope(_))));
        assert!(matches!(Envelope::parse(b"Fa@b\0Tc\x01d\0\0"), Err(QueueError::Address(_))));
        assert_eq!(Envelope::parse(b"Fa@b\0Tc\x01d\0\0").unwrap_err().exit_code(), super::super::submit::exit::ADDRESS);
        assert!(Envelope::parse(b"F\0Tx@y\0\0").unwrap().sender.is_null());
    }

    #[test]
    fn dsn_parameters_round_trip_and_are_checked() {
        let bytes = b"Fa@b\0RHDRS\0Eid+2B1\0Tc@d\0NSUCCESS,FAILURE\0Orfc822;c@d\0Te@f\0\0";
        let e = Envelope::parse(bytes).unwrap();
        assert_eq!(e.dsn, MessageDsn { ret: Some(Ret::Hdrs), envid: Some("id+2B1".into()) });
        assert_eq!(e.rcpt_dsn[0].notify, Some(Notify { success: true, failure: true, delay: false }));
        assert_eq!(e.rcpt_dsn[0].orcpt.as_deref(), Some("rfc822;c@d"));
        assert_eq!(e.rcpt_dsn[1], RcptDsn::default());
        assert_eq!(e.encode(), bytes);
        // Without parameters: qmail's envelope, byte for byte.
        assert_eq!(Envelope::new(e.sender.clone(), e.recipients.clone()).encode(), b"Fa@b\0Tc@d\0Te@f\0\0");
        for bad in [
            &b"Fa@b\0NNEVER\0Tc@d\0\0"[..],
            b"Fa@b\0Tc@d\0NSOMETIMES\0\0",
            b"Fa@b\0Tc@d\0Orfc822;a+0D+0Ab\0\0",
            b"Fa@b\0RALL\0Tc@d\0\0",
            b"Fa@b\0Ea=b\0Tc@d\0\0",
            b"Fa@b\0Tc@d\0NNEVER\0NNEVER\0\0",
        ] {
            assert!(matches!(Envelope::parse(bad), Err(QueueError::Envelope(_))), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn stored_dsn_parameters_and_old_files() {
        let p = crate::testing::scratch_dir("format-dsn").join("queued");
        let env = Envelope::parse(b"Fs\0RFULL\0Tr@x\0NNEVER\0Tq@x\0Orfc822;Q@x\0\0").unwrap().encode();
        std::fs::write(&p, [&b"message"[..], &env, &trailer(7, 0)].concat()).unwrap();
        let mut f = QueueFile::open(&p, true).unwrap();
        assert_eq!(f.dsn.ret, Some(Ret::Full));
        assert_eq!(f.recipients[0].dsn.notify, Some(Notify::default()));
        assert_eq!(f.recipients[1].dsn.orcpt.as_deref(), Some("rfc822;Q@x"));
        f.mark_done(&[1]).unwrap();
        let f = QueueFile::open(&p, false).unwrap();
        assert!(!f.recipients[0].done && f.recipients[1].done && f.recipients[1].address.as_str() == "q@x");
        // A file from before the DSN fields: read as it always was.
        std::fs::write(&p, [&b"message"[..], b"Fs\0Tr@x\0Dq@x\0\0", &trailer(7, 0)].concat()).unwrap();
        let f = QueueFile::open(&p, false).unwrap();
        assert_eq!((f.dsn.clone(), f.recipients[0].dsn.clone(), f.recipients[1].done), (MessageDsn::default(), RcptDsn::default(), true));
    }

    #[test]
    fn ids() {
        assert!(Id::parse(Id::generate().as_str()).is_some());
        for bad in ["", "../x", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert_eq!(Id::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn damaged_files_are_permanent_errors() {
        let p = crate::testing::scratch_dir("format").join("queued");
        std::fs::write(&p, b"too short").unwrap();
        let e = QueueFile::open(&p, false).unwrap_err();
        assert!(matches!(e, QueueError::Corrupt(..)) && e.kind() == Kind::Permanent, "{e}");
        std::fs::write(&p, [&b"message"[..], b"Fs\0Tr\0\0", &trailer(7, 0)].concat()).unwrap();
        assert_eq!(QueueFile::open(&p, false).unwrap().recipients.len(), 1);
        std::fs::remove_file(&p).unwrap();
        assert_eq!(QueueFile::open(&p, false).unwrap_err().kind(), Kind::Temporary, "a missing file is not damage");
    }
}
