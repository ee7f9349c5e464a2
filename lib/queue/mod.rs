//! The queue: its directories, its file format and its protocol.
//!
//! # Layout (under `$POSTERN_HOME/queue`)
//! ```text
//! tmp/ID        being written by postern-queue; removed by postern-send when stale
//! new/ID        complete and durable; postern-send has not taken it yet
//! mess/ID       taken by postern-send; being delivered
//! free/N        a finished message's file, emptied, kept for postern-queue to
//!               overwrite (N is a slot number below FREE_SLOTS); never delivered
//! bad/ID        a file whose contents do not parse, moved aside by postern-send
//!               for a person to look at (one that cannot be read for now is
//!               read again later instead)
//! hold/ID       held by the administrator (`postern-admin queue hold`): never
//!               delivered, never expires; its mtime is when it was held
//! info/ID       postern-send's record of attempts and last results (`info`);
//!               informational, not synced
//! lock/trigger  a FIFO; any byte written to it wakes postern-send; it also
//!               carries the administrator's requests (`control`)
//! ```
//! Owners: queue/ and its directories belong to postern-q, group postern, mode
//! 0750/0770; files are 0660 so postern-send (group postern) can mark and remove them.
//!
//! # One file per message
//! `[message][envelope][trailer]`; format.rs has the format and reads and marks
//! it, store.rs makes the moves between the directories, submit.rs is the client.
//!
//! # The crash-safety protocol
//! 1. postern-queue writes `tmp/ID`, fdatasyncs it, renames it to `new/ID` and fsyncs
//!    `new/`. Only then does it exit 0. A crash before that leaves at most a file in
//!    tmp/, which is never delivered and is removed after a day. `tmp/ID` is a new
//!    file, or one taken from free/ by renaming it to `tmp/ID` (only one taker can
//!    win), then written from its start and cut to its new length before the
//!    fdatasync: same steps, same guarantees, and no inode to allocate (on the test
//!    machines a new inode cost as much CPU as the rest of the queue write).
//! 2. postern-send renames `new/ID` to `mess/ID` without a sync: if the rename is
//!    lost in a crash the message is simply taken again from new/. All state that
//!    matters lives inside the file, so the directory it sits in does not.
//! 3. After a recipient's delivery is durable (the delivery program fsynced it), or
//!    its bounce has been queued (step 1 for the bounce), send overwrites its 'T'
//!    with 'D' and fdatasyncs. A crash before that repeats the delivery: a duplicate,
//!    never a loss.
//! 4. When no 'T' is left, send cuts the file to zero bytes (no delivered text
//!    stays behind), then renames it to an empty slot `free/N`, or unlinks it when
//!    free/ is full (or missing: free/ is optional). Emptied before the rename,
//!    never after: in free/ a postern-queue may already be writing into it. A lost
//!    rename or unlink leaves the file in mess/, where the next scan finds no 'T'
//!    and removes it, finds it empty (the truncation reached the disk, the rename
//!    did not) and removes it too, or finds 'T's not yet marked and delivers them
//!    again: a duplicate, never a loss.
//!
//! A file system without a journal may, after a crash, show one file under two
//! names (free/N and new/ID, or free/N and mess/ID; fsck then counts two links).
//! So postern-queue reuses a file only when it has exactly one link, is a regular
//! file and is its own, and opens it with O_NOFOLLOW.

pub mod admin;
pub mod control;
pub mod daemon;
pub mod dsnparams;
pub mod format;
pub mod info;
pub mod listing;
pub mod store;
pub mod submit;

pub use format::{Envelope, Id, QueueError, QueueFile, Recipient};
pub use store::Queue;
pub use submit::{submit, submit_with, Submission, SubmitError};
