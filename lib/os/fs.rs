//! The two durable-write steps every writer in the suite shares.
//!
//! A new name (a rename or a link) is on stable storage only once its directory
//! has been fsynced; a file's data only once the file has. `write_atomic` does
//! both in the order that leaves a reader the old file or the new one, never a
//! half-written one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// fsync a directory: the names created in it (rename, link) become durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replace `path` with `content` atomically: write `path.tmp`, created with
/// `mode` before any data is in it (a password database is never readable by
/// others, not even while it is written), fsync it, rename it over `path`, fsync
/// the directory. On error the old file is untouched and the temporary one gone.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let written = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).and_then(|mut f| {
        // The umask may have narrowed the mode; it must be exactly `mode`.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(content)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    sync_dir(dir)
}

/// How `each_chunk` failed: reading the input, or what was done with a chunk.
#[derive(Debug)]
pub enum ChunkError<E> {
    Read(io::Error),
    Use(E),
}

/// Read `input` to its end in chunks of 64 KiB, handing each to `f` (the way
/// every message is streamed: into the queue, into a Maildir, to the queue
/// program). Returns the bytes read.
pub fn each_chunk<E>(input: &mut dyn io::Read, mut f: impl FnMut(&[u8]) -> Result<(), E>) -> Result<u64, ChunkError<E>> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                f(&buf[..n]).map_err(ChunkError::Use)?;
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ChunkError::Read(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn chunks_cover_the_input_and_errors_say_which_side() {
        let data = vec![7u8; 200 * 1024];
        let mut seen = 0;
        let n = each_chunk(&mut &data[..], |c| -> Result<(), ()> {
            seen += c.len();
            Ok(())
        })
        .unwrap();
        assert_eq!((n, seen), (data.len() as u64, data.len()));
        assert!(matches!(each_chunk(&mut &data[..], |_| Err("full")), Err(ChunkError::Use("full"))));
    }

    #[test]
    fn replaces_whole_files_and_leaves_no_temporary() {
        let d = crate::testing::scratch_dir("fs");
        let p = d.join("f");
        write_atomic(&p, b"one", 0o640).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert!(write_atomic(&d.join("missing-dir/f"), b"x", 0o600).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!d.join("f.tmp").exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
