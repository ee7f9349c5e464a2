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

/// The directory holding `path` ("." for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The temporary name a replacement of `path` is written under: `path.tmp`.
pub fn tmp_name(path: &Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    s.into()
}

/// Replace `path` by a file written by `fill`: create `path.tmp` with `mode`
/// (before any data is in it: a password database is never readable by others,
/// not even while it is written), let `fill` write it, fsync it, rename it over
/// `path`, fsync the directory. On error the old file is untouched and the
/// temporary one removed.
pub fn replace_with(path: &Path, mode: u32, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tmp_name(path);
    let _ = fs::remove_file(&tmp);
    let r = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|f| f.set_permissions(fs::Permissions::from_mode(mode)))
        .and_then(|()| fill(&tmp))
        .and_then(|()| File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r?;
    sync_dir(parent_of(path))
}

/// Replace `path` with `content` atomically (see `replace_with`).
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    replace_with(path, mode, |tmp| OpenOptions::new().write(true).truncate(true).open(tmp)?.write_all(content))
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
        let d = std::env::temp_dir().join(format!("postern-fs-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let p = d.join("f");
        write_atomic(&p, b"one", 0o640).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let e = replace_with(&p, 0o600, |_| Err(io::Error::other("no")));
        assert!(e.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_name(&p).exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
