//! Resident remote delivery workers (postern-rspawn), on `workers`' pool: per
//! destination domain, forked children of rspawn (so postern-r, like it) that
//! make further deliveries to that domain in-process, with postern-remote's
//! code (`smtp::client`), and keep each connection open for the next message
//! to the same host (`client::Cache`). A program start per message, and a
//! TCP connection, greeting, EHLO and STARTTLS per message, are what this
//! saves.
//!
//! `control/remoteprogram` names a qmail-remote-compatible program to run
//! per delivery instead (the old way, for a replacement of postern-remote).
//! A worker writes the same reports postern-remote would on the answer pipe,
//! and answers 0: rspawn reads them with `rspawn::remote_outcomes`.

use crate::error::EXIT_TEMP;
use crate::os::home::Home;
use crate::smtp::client::{self, Cache, Reports};
use std::io::Write;

/// One delivery for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub delivery: client::Job,
    /// The message is the queue file's first `size` bytes.
    pub size: u64,
    /// The queue id, for error texts.
    pub id: String,
}

/// Fields as 4-byte big-endian lengths and bytes: domain, sender, size, id,
/// the number of recipients, then each recipient.
pub fn encode_job(j: &Job) -> Vec<u8> {
    let (size, count) = (j.size.to_string(), j.delivery.recipients.len().to_string());
    let d = &j.delivery;
    let mut out = Vec::new();
    let head: [&[u8]; 5] = [d.domain.as_bytes(), d.sender.as_bytes(), size.as_bytes(), j.id.as_bytes(), count.as_bytes()];
    for f in head.into_iter().chain(d.recipients.iter().map(|r| r.as_bytes())) {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// The inverse of `encode_job`; None for anything else.
pub fn parse_job(mut b: &[u8]) -> Option<Job> {
    let mut fields: Vec<String> = Vec::new();
    while !b.is_empty() {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        fields.push(String::from_utf8(b.get(4..4 + len)?.to_vec()).ok()?);
        b = &b[4 + len..];
    }
    if fields.len() < 6 {
        return None;
    }
    let recipients = fields.split_off(5);
    let [domain, sender, size, id, count] = <[String; 5]>::try_from(fields).ok()?;
    if count.parse::<usize>().ok()? != recipients.len() {
        return None;
    }
    Some(Job { delivery: client::Job { domain, sender, recipients }, size: size.parse().ok()?, id })
}

/// A new worker's main, in the child: serve jobs, keeping connections
/// between them; they are closed (QUIT) when the worker leaves.
pub fn main(home: &Home) -> i32 {
    crate::os::sys::set_process_name(c"postern-remote");
    let mut cache = Cache::new(true);
    crate::send::workers::serve(&[1], |bytes, queue_file| {
        let Some(job) = parse_job(bytes) else {
            return Err(EXIT_TEMP);
        };
        let reports = match crate::message::file::copy_prefix(&queue_file, job.size) {
            Ok(message) => {
                drop(queue_file);
                client::deliver_with(home, &job.delivery, &message, &mut cache)
            }
            Err(e) => Reports::failed(&client::RemoteError::Message(e)),
        };
        // fd 1 is this job's answer pipe; rspawn reads the reports from it.
        let mut out = std::io::stdout().lock();
        if out.write_all(&reports.encode()).and_then(|_| out.flush()).is_err() {
            return Err(EXIT_TEMP);
        }
        Ok(crate::error::EXIT_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_damage_is_refused() {
        let j = Job {
            delivery: client::Job {
                domain: "example.org".into(),
                sender: "".into(),
                recipients: vec!["a@example.org".into(), "b@example.org".into()],
            },
            size: 2048,
            id: "1796079288.874324.30475".into(),
        };
        let b = encode_job(&j);
        assert_eq!(parse_job(&b), Some(j));
        for cut in 0..b.len() {
            assert_eq!(parse_job(&b[..cut]), None, "cut at {cut}");
        }
    }
}
