//! A message in a file: made seekable, and its header section read without
//! moving the file offset.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

/// fd 0 as a seekable file: as is if it can seek, else copied into a memfd.
pub fn seekable(mut stdin: File) -> io::Result<File> {
    if stdin.seek(SeekFrom::Start(0)).is_ok() {
        return Ok(stdin);
    }
    let fd = nix::sys::memfd::memfd_create(c"postern-message", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).map_err(io::Error::from)?;
    let mut f = File::from(fd);
    io::copy(&mut stdin, &mut f)?;
    f.seek(SeekFrom::Start(0))?;
    Ok(f)
}

/// A memory file holding the first `len` bytes of `src`, rewound: what a
/// delivery gets on fd 0 (seekable, and without what follows the message in a
/// queue file). Positioned reads only, so `src`'s offset, which any copy of the
/// descriptor shares, is neither used nor moved. Fails if `src` is shorter.
pub fn copy_prefix(src: &File, len: u64) -> io::Result<File> {
    use std::io::Write;
    let fd = nix::sys::memfd::memfd_create(c"postern-message", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).map_err(io::Error::from)?;
    let mut mem = File::from(fd);
    let mut buf = vec![0u8; (64 * 1024).min(len as usize).max(1)];
    let mut off = 0u64;
    while off < len {
        let want = (len - off).min(buf.len() as u64) as usize;
        let n = match src.read_at(&mut buf[..want], off) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the file ends after {off} of {len} bytes"))),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        mem.write_all(&buf[..n])?;
        off += n as u64;
    }
    mem.seek(SeekFrom::Start(0))?;
    Ok(mem)
}

/// The header section of the message (up to and including the blank line, or all
/// of it if there is none), read without moving the file offset.
pub fn read_header(message: &File) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut off = 0u64;
    loop {
        let n = message.read_at(&mut chunk, off)?;
        if n == 0 {
            return Ok(buf);
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        off += n as u64;
        if buf.len() == n && (buf.starts_with(b"\n") || buf.starts_with(b"\r\n")) {
            return Ok(Vec::new());
        }
        if let Some(i) = find_blank(&buf[scan_from..]) {
            buf.truncate(scan_from + i);
            return Ok(buf);
        }
    }
}

/// End of the header section in `b` (just after the blank line).
fn find_blank(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else if b[i..].starts_with(b"\n\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_reading_stops_at_blank_line() {
        let d = crate::testing::scratch_dir("header").join("message");
        std::fs::write(&d, b"A: 1\nB: 2\n\nDelivered-To: u@x\n").unwrap();
        let f = File::open(&d).unwrap();
        assert_eq!(read_header(&f).unwrap(), b"A: 1\nB: 2\n\n");
        std::fs::remove_file(&d).unwrap();
    }

    #[test]
    fn prefix_copies_are_positioned_and_independent() {
        use std::io::Read;
        let dir = crate::testing::scratch_dir("prefix");
        let path = dir.join("queued");
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut content = body.clone();
        content.extend_from_slice(b"Fenvelope\0");
        std::fs::write(&path, &content).unwrap();
        let mut src = File::open(&path).unwrap();
        // Wherever the shared offset stands, and it stays there.
        src.seek(SeekFrom::Start(7)).unwrap();
        for _ in 0..2 {
            let mut got = Vec::new();
            copy_prefix(&src, body.len() as u64).unwrap().read_to_end(&mut got).unwrap();
            assert!(got == body, "exactly the message, twice");
        }
        assert_eq!(src.stream_position().unwrap(), 7);
        let mut empty = Vec::new();
        copy_prefix(&src, 0).unwrap().read_to_end(&mut empty).unwrap();
        assert!(empty.is_empty());
        let short = copy_prefix(&src, content.len() as u64 + 1).unwrap_err();
        assert_eq!(short.kind(), std::io::ErrorKind::UnexpectedEof);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
