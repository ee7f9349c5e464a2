//! Delivery into a Maildir: write tmp/NAME, fsync it, link it into new/, fsync new/
//! (shared with concurrent deliveries: `os::groupsync`).
//!
//! The name is unique without locks (secs.MusecPpidQcount.host), so deliveries on
//! several hosts into one shared tree never collide. A crash before the fsync of
//! new/ may lose the link but never leaves a partial file in new/.

use super::name::crlf_size;
use crate::error::{Classify, Kind};
use crate::os::fs::{each_chunk, ChunkError};
use crate::status::Status;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The group-commit lock file of a Maildir's new/, in the Maildir itself
/// (mailbox servers list folders, which are directories, and skip files).
pub const SYNC_LOCK: &str = ".postern-newsync";

#[derive(Debug)]
pub enum MaildirError {
    /// The maildir (or its tmp/ or new/) does not exist.
    Missing(PathBuf),
    /// The disk or the owner's quota is full.
    Full(PathBuf, io::Error),
    /// Any other I/O failure on the named path.
    Io(PathBuf, io::Error),
    /// Reading the message failed.
    Message(io::Error),
}

impl fmt::Display for MaildirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaildirError::Missing(p) => write!(
                f,
                "maildir {} does not exist or lacks tmp/ or new/; create it with maildirmake or mkdir -p {0}/tmp {0}/new {0}/cur",
                p.display()
            ),
            MaildirError::Full(p, e) => write!(f, "disk or quota full writing {}: {e}", p.display()),
            MaildirError::Io(p, e) => write!(f, "maildir write {} failed: {e}", p.display()),
            MaildirError::Message(e) => write!(f, "cannot read the message: {e}"),
        }
    }
}

impl MaildirError {
    pub fn status(&self) -> Status {
        match self {
            MaildirError::Missing(_) => Status::MAILBOX_MISSING,
            MaildirError::Full(..) => Status::MAILBOX_FULL,
            MaildirError::Io(..) | MaildirError::Message(_) => Status::MAIL_SYSTEM,
        }
    }
}

impl Classify for MaildirError {
    fn kind(&self) -> Kind {
        Kind::Temporary
    }
}

fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

fn io_err(p: &Path, e: io::Error) -> MaildirError {
    if is_full(&e) {
        MaildirError::Full(p.to_path_buf(), e)
    } else {
        MaildirError::Io(p.to_path_buf(), e)
    }
}

/// Deliver `prefix` followed by the whole of `message` (read from its start) into
/// `maildir`. Returns the path in new/. Only returns Ok once file and link are on
/// stable storage.
///
/// The name in new/ carries the sizes, as Maildir++ and Dovecot write them:
/// `,S=` the file's bytes and `,W=` its size with every bare LF counted as CR LF
/// (what POP3 reports), so a POP3 server lists the mailbox from the names alone.
/// A name cannot go stale as an index can: the file never changes.
pub fn deliver(maildir: &Path, prefix: &[u8], message: &mut File) -> Result<PathBuf, MaildirError> {
    let tmpdir = maildir.join("tmp");
    let newdir = maildir.join("new");
    let name = super::name::unique();
    let tmp = tmpdir.join(&name);
    // No stat of the directories first: a missing one shows up as ENOENT here or
    // at the link, and the common case saves two system calls.
    let missing =
        |e: io::Error| if e.kind() == io::ErrorKind::NotFound { MaildirError::Missing(maildir.to_path_buf()) } else { io_err(&tmp, e) };
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(missing)?;
    let mut dst = newdir.join(&name);
    let r = write_all(&mut f, &tmp, prefix, message).and_then(|(size, wire)| {
        dst = newdir.join(format!("{name},S={size},W={wire}"));
        link_into(&tmp, &dst)
    });
    // tmp/ holds nothing after success (the link is in new/) or after failure.
    let _ = fs::remove_file(&tmp);
    r?;
    // The link is the commit point; new/ must reach the disk before we say
    // done. Deliveries into this Maildir at the same time share one fsync of
    // new/ (`os::groupsync`; its lock file sits beside tmp/ and new/).
    crate::os::groupsync::GroupSync::open(&newdir, &maildir.join(SYNC_LOCK)).and_then(|g| g.sync()).map_err(|e| io_err(&newdir, e))?;
    Ok(dst)
}

/// Write and fsync; returns the bytes written and their size as POP3 sends them.
fn write_all(f: &mut File, tmp: &Path, prefix: &[u8], message: &mut File) -> Result<(u64, u64), MaildirError> {
    message.seek(SeekFrom::Start(0)).map_err(MaildirError::Message)?;
    f.write_all(prefix).map_err(|e| io_err(tmp, e))?;
    let mut prev_cr = false;
    let mut wire = crlf_size(prefix, &mut prev_cr);
    let size = prefix.len() as u64
        + each_chunk(message, |chunk| {
            wire += crlf_size(chunk, &mut prev_cr);
            f.write_all(chunk).map_err(|e| io_err(tmp, e))
        })
        .map_err(|e| match e {
            ChunkError::Read(e) => MaildirError::Message(e),
            ChunkError::Use(e) => e,
        })?;
    f.sync_all().map_err(|e| io_err(tmp, e))?;
    Ok((size, wire))
}

fn link_into(tmp: &Path, dst: &Path) -> Result<(), MaildirError> {
    match fs::hard_link(tmp, dst) {
        Ok(()) => Ok(()),
        // Filesystems without hard links (some network and FUSE ones): rename is
        // atomic too, and the name is unique, so nothing can be overwritten.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EXDEV) | Some(libc::ENOTSUP)) => {
            fs::rename(tmp, dst).map_err(|e| io_err(dst, e))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(MaildirError::Missing(dst.parent().and_then(Path::parent).unwrap_or(dst).to_path_buf()))
        }
        Err(e) => Err(io_err(dst, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_with_prefix_and_names_are_unique() {
        let d = crate::testing::scratch_dir("maildir");
        let mut msg = tempfile(&d, b"Subject: x\n\nbody\n");
        assert!(matches!(deliver(&d.join("Maildir"), b"", &mut msg), Err(MaildirError::Missing(_))));
        for s in ["tmp", "new", "cur"] {
            fs::create_dir_all(d.join("Maildir").join(s)).unwrap();
        }
        let a = deliver(&d.join("Maildir"), b"Delivered-To: a@b\n", &mut msg).unwrap();
        let b = deliver(&d.join("Maildir"), b"", &mut msg).unwrap();
        assert_ne!(a, b);
        assert_eq!(fs::read(&a).unwrap(), b"Delivered-To: a@b\nSubject: x\n\nbody\n");
        assert_eq!(fs::read(&b).unwrap(), b"Subject: x\n\nbody\n");
        // 17 bytes, three bare LFs: 20 as sent.
        assert!(b.to_str().unwrap().ends_with(",S=17,W=20"), "{}", b.display());
        assert_eq!(fs::read_dir(d.join("Maildir/tmp")).unwrap().count(), 0);
        fs::remove_dir_all(&d).unwrap();
    }

    fn tempfile(dir: &Path, content: &[u8]) -> File {
        fs::create_dir_all(dir).unwrap();
        let p = dir.join("msg");
        fs::write(&p, content).unwrap();
        File::open(p).unwrap()
    }
}
