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
}
