//! Resident local delivery workers (postern-lspawn), on `workers`' pool: per
//! recipient uid and gid, forked children that have become that user and take
//! further deliveries for those ids only. All virtual mailboxes share one
//! uid, so under steady traffic most deliveries cost no fork. A worker copies
//! the message out of the queue file and closes it before anything the
//! recipient controls runs, and it stays non-dumpable for its whole life (it
//! changed uid), as a forked delivery was.

use crate::deliver::local::Params;
use crate::error::EXIT_TEMP;
use crate::os::home::Home;
use crate::status::Status;

/// One delivery for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub params: Params,
    /// The message is the queue file's first `size` bytes.
    pub size: u64,
    /// The queue id, for error texts.
    pub id: String,
}

/// Each field as a 4-byte big-endian length and its bytes.
pub fn encode_job(j: &Job) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let p = &j.params;
    let size = j.size.to_string();
    let alias: &[u8] = if p.alias { b"1" } else { b"0" };
    let fields: [&[u8]; 11] = [
        p.user.as_bytes(),
        p.homedir.as_os_str().as_bytes(),
        p.local.as_bytes(),
        p.dash.as_bytes(),
        p.ext.as_bytes(),
        p.domain.as_bytes(),
        p.sender.as_bytes(),
        p.default_delivery.as_bytes(),
        size.as_bytes(),
        j.id.as_bytes(),
        alias,
    ];
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// The inverse of `encode_job`; None for anything else (a whole message is
/// always at hand: the socket keeps message boundaries).
pub fn parse_job(mut b: &[u8]) -> Option<Job> {
    use std::os::unix::ffi::OsStrExt;
    let mut fields: Vec<&[u8]> = Vec::with_capacity(11);
    while !b.is_empty() {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        fields.push(b.get(4..4 + len)?);
        b = &b[4 + len..];
    }
    let [user, home, local, dash, ext, domain, sender, dd, size, id, alias] = fields.as_slice() else {
        return None;
    };
    let s = |f: &[u8]| String::from_utf8(f.to_vec()).ok();
    Some(Job {
        params: Params {
            user: s(user)?,
            homedir: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(home)),
            local: s(local)?,
            dash: s(dash)?,
            ext: s(ext)?,
            domain: s(domain)?,
            sender: s(sender)?,
            default_delivery: s(dd)?,
            alias: match *alias {
                b"1" => true,
                b"0" => false,
                _ => return None,
            },
        },
        size: s(size)?.parse().ok()?,
        id: s(id)?,
    })
}

/// A new worker's main, in the child: become the user (`become_user`), then
/// serve. A worker that could not become the user says why as the answer to
/// its first job and leaves.
pub fn main(home: &Home, become_user: impl FnOnce() -> Result<(), String>) -> i32 {
    crate::os::sys::set_process_name(c"postern-local");
    let unusable = become_user().err();
    crate::send::workers::serve(&[1, 2], |bytes, queue_file| {
        let Some(job) = parse_job(bytes) else {
            return Err(EXIT_TEMP);
        };
        if let Some(e) = &unusable {
            crate::deliver::local::say(&format!("{} {e}", Status::MAIL_SYSTEM));
            return Err(EXIT_TEMP);
        }
        // As a forked delivery: the message copied out and the queue file
        // closed before the recipient's instructions are read.
        Ok(match crate::message::file::copy_prefix(&queue_file, job.size) {
            Ok(message) => {
                drop(queue_file);
                crate::deliver::local::run(home, &job.params, message)
            }
            Err(e) => {
                crate::deliver::local::say(&format!("{} cannot copy message {}: {e}", Status::MAIL_SYSTEM, job.id));
                EXIT_TEMP
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            params: Params {
                user: "u".into(),
                homedir: "/var/postern/mail/x.test/u".into(),
                local: "u".into(),
                dash: "".into(),
                ext: "".into(),
                domain: "x.test".into(),
                sender: "a@b.test".into(),
                default_delivery: "./Maildir/\n|echo hi".into(),
                alias: true,
            },
            size: 2048,
            id: "1796079288.874324.30475".into(),
        }
    }

    #[test]
    fn jobs_round_trip_and_damage_is_refused() {
        let j = job();
        let b = encode_job(&j);
        assert_eq!(parse_job(&b), Some(j));
        for cut in 0..b.len() {
            assert_eq!(parse_job(&b[..cut]), None, "cut at {cut}");
        }
        let mut extra = b.clone();
        extra.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(parse_job(&extra), None);
    }
}
