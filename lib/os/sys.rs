//! The OS boundary: the only module with `unsafe`, each block with its reason.
//!
//! Descriptors are owned (`OwnedFd`, `File`) everywhere else. The few that a
//! protocol hands a program at start (fd 0 and 1 of postern-queue, fd 3 of
//! checkpassword, ...) are claimed once with `take_fd`, which refuses a second
//! claim. Forking without exec (`fork_run`) checks that the caller has one
//! thread, never returns into the caller in the child, and closes in the child
//! only what the caller names; a daemon's inherited descriptors go by `exec`
//! (`drop_inherited_fds`), so nothing closes a descriptor that code owns.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// True when the process runs with privileges its invoker does not have
/// (setuid/setgid), as the kernel sees it.
pub fn is_setuid() -> bool {
    // SAFETY: getauxval only reads the process's auxiliary vector.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

pub fn real_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Set the file mode creation mask, returning the old one.
pub fn umask(mask: u32) -> u32 {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask as libc::mode_t)).bits() as u32
}

/// Set or clear O_NONBLOCK.
pub fn set_nonblocking(fd: &impl AsFd, on: bool) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let raw = fd.as_fd().as_raw_fd();
    let mut flags = OFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFL).map_err(io::Error::from)?);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(raw, FcntlArg::F_SETFL(flags)).map(|_| ()).map_err(io::Error::from)
}

/// Descriptors below 64 claimed by `take_fd` (bit n: fd n).
static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Claim a descriptor a protocol hands us at start (fd 0 and 1 of
/// postern-queue, fd 3 of checkpassword, fds 3-5 of postern-send): its one
/// owner in this process. Fails when it is not open or was claimed already.
pub fn take_fd(fd: RawFd) -> io::Result<OwnedFd> {
    use std::sync::atomic::Ordering::SeqCst;
    if !(0..64).contains(&fd) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("fd {fd} is not a protocol descriptor")));
    }
    if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("fd {fd} is not open")));
    }
    if TAKEN.fetch_or(1 << fd, SeqCst) & (1 << fd) != 0 {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("fd {fd} is already in use here")));
    }
    // SAFETY: the descriptor is open (checked above), was opened for us by our
    // parent, and TAKEN makes this the only owner created for it here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `fd` is open (for descriptors a program may or may not get, such
/// as postern-send's fd 5).
pub fn fd_is_open(fd: RawFd) -> bool {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok()
}

/// The login name of the real uid, from the password database.
pub fn login_name() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name)
}

/// This host's name, for `me` when the control file is missing.
pub fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".to_string())
}

/// Spawn `cmd` with extra descriptors placed at fixed numbers in the child (the
/// way qmail-start hands pipes to qmail-send). The descriptors are closed in the
/// parent once the child has them.
pub fn spawn_with_fds(cmd: &mut std::process::Command, fds: &[(OwnedFd, RawFd)]) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    // Move each source out of the way of every target number first, so placing
    // one cannot clobber another: copies land at 100 and above.
    let moved: Vec<(OwnedFd, RawFd)> = fds.iter().map(|(fd, target)| Ok((high_copy(fd, 100)?, *target))).collect::<io::Result<_>>()?;
    let pairs: Vec<(RawFd, RawFd)> = moved.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
    // SAFETY: the closure runs in the child between fork and exec; it only calls
    // dup2 and fcntl, which are async-signal-safe, and allocates nothing (`pairs`
    // was built before the fork). The copies it reads stay open in the parent
    // until spawn returns.
    unsafe {
        cmd.pre_exec(move || place(&pairs));
    }
    let r = cmd.spawn();
    drop(moved);
    r
}

/// A close-on-exec copy of `fd` numbered `at` or above.
fn high_copy(fd: &impl AsFd, at: RawFd) -> io::Result<OwnedFd> {
    let n = nix::fcntl::fcntl(fd.as_fd().as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(at)).map_err(io::Error::from)?;
    // SAFETY: F_DUPFD_CLOEXEC just made this descriptor for us; nothing else
    // refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// dup2 each (from, to) pair and clear close-on-exec on `to`. Async-signal-safe.
fn place(pairs: &[(RawFd, RawFd)]) -> io::Result<()> {
    for &(from, to) in pairs {
        // SAFETY: dup2 and fcntl on descriptor numbers touch no memory; `to` is
        // replaced on purpose (it is what the child is to find there).
        unsafe {
            if libc::dup2(from, to) < 0 || libc::fcntl(to, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// A pipe whose ends are closed on exec: a child gets only the ends placed on its
/// stdio, so no child holds a writer open by accident (which would keep the
/// reader from ever seeing EOF).
pub fn pipe() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

// Password checks for postern-auth: shadow and crypt(3).

#[link(name = "crypt")]
extern "C" {
    // libxcrypt's reentrant crypt: `data` is a zeroed `struct crypt_data`.
    fn crypt_r(phrase: *const libc::c_char, setting: *const libc::c_char, data: *mut libc::c_void) -> *mut libc::c_char;
}

/// sizeof(struct crypt_data) in libxcrypt (and glibc's larger old one fits in it).
const CRYPT_DATA_SIZE: usize = 32768;

/// crypt(3) of `password` with the method and salt of `setting` (an existing
/// hash: `$y$...`, `$6$...`, ...). None when libcrypt refuses the setting.
pub fn crypt(password: &[u8], setting: &str) -> Option<String> {
    let phrase = std::ffi::CString::new(password).ok()?;
    let setting = std::ffi::CString::new(setting).ok()?;
    let mut data = vec![0u8; CRYPT_DATA_SIZE];
    // SAFETY: both strings are NUL-terminated and live across the call; `data` is
    // a zeroed buffer of at least sizeof(struct crypt_data), as crypt_r requires.
    // The result points into `data` (or is NULL), and is copied before `data` drops.
    let out = unsafe { crypt_r(phrase.as_ptr(), setting.as_ptr(), data.as_mut_ptr().cast()) };
    if out.is_null() {
        return None;
    }
    // SAFETY: a non-NULL result is a NUL-terminated string inside `data`.
    let s = unsafe { std::ffi::CStr::from_ptr(out) }.to_string_lossy().into_owned();
    // libxcrypt signals failure with a string starting with '*' (never a valid hash).
    (!s.starts_with('*')).then_some(s)
}

/// The shadow password hash of a Unix user (getspnam_r). Ok(None): no such entry;
/// Err: shadow cannot be read (not root, or a broken NSS source).
pub fn shadow_hash(name: &str) -> std::io::Result<Option<String>> {
    let cname = std::ffi::CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut buflen = 4096usize;
    loop {
        let mut buf = vec![0 as libc::c_char; buflen];
        // SAFETY: an all-zero spwd is valid (integers and null pointers).
        let mut sp: libc::spwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::spwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to live, correctly sized storage; the
        // strings getspnam_r stores in `sp` point into `buf`, read before it drops.
        let rc = unsafe { libc::getspnam_r(cname.as_ptr(), &mut sp, buf.as_mut_ptr(), buflen, &mut result) };
        if rc == libc::ERANGE && buflen < 1 << 20 {
            buflen *= 4;
            continue;
        }
        if rc == libc::ENOENT || (rc == 0 && result.is_null()) {
            return Ok(None);
        }
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        if sp.sp_pwdp.is_null() {
            return Ok(Some(String::new()));
        }
        // SAFETY: sp_pwdp is a NUL-terminated string inside `buf`, still alive.
        return Ok(Some(unsafe { std::ffi::CStr::from_ptr(sp.sp_pwdp) }.to_string_lossy().into_owned()));
    }
}

/// Map read-only a file that is never changed in place: a Maildir message
/// (postern-pop3d sends messages without reading them whole into memory) or a cdb
/// (rebuilt into a new file and renamed over the old). An empty file gives an
/// empty map.
pub fn map_file(f: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the mapping is read-only and private to this process. Maildir
    // messages are written once in tmp/ and never changed after delivery, and a
    // cdb is replaced by rename, which leaves the mapped inode as it was; the one
    // risk, another program truncating a file while it is mapped, would end this
    // process with SIGBUS, never corrupt data.
    unsafe { memmap2::Mmap::map(f) }
}

/// Give the heap's free pages back to the kernel: a session that built big
/// temporary tables (an IMAP SELECT of a large folder) and then waits for a
/// long time (IDLE) keeps resident only what it still uses.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim works on glibc's own heap under its own lock and
    // releases only free pages; no memory in use is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A file shared between processes as an array of 64-bit counters, each
/// changed and read only by atomic operations (lib/stats: many postern-smtpd
/// sessions add to one file at once while postern-admin reads it).
pub struct SharedWords {
    map: SharedMap,
}

enum SharedMap {
    Write(memmap2::MmapMut),
    Read(memmap2::Mmap),
}

impl SharedWords {
    /// Map the first `words` * 8 bytes of `f`, which must be at least that long
    /// (the caller extends it first); `f` must be open for writing if
    /// `writable`, and a read-only map is only ever loaded from.
    pub fn map(f: &std::fs::File, words: usize, writable: bool) -> std::io::Result<SharedWords> {
        if f.metadata()?.len() < (words * 8) as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the file is shorter than its counters"));
        }
        let opts = {
            let mut o = memmap2::MmapOptions::new();
            o.len(words * 8);
            o
        };
        // SAFETY: a shared mapping of a file that is only ever grown (set_len
        // to at least this size; our programs never truncate it, and another
        // program truncating it would end us with SIGBUS, not corrupt memory).
        // Every access goes through `word`, as an atomic, so writers in other
        // processes never race with a plain read or write.
        let map = unsafe {
            if writable {
                SharedMap::Write(opts.map_mut(f)?)
            } else {
                SharedMap::Read(opts.map(f)?)
            }
        };
        Ok(SharedWords { map })
    }

    pub fn len(&self) -> usize {
        self.bytes().len() / 8
    }

    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    fn bytes(&self) -> &[u8] {
        match &self.map {
            SharedMap::Write(m) => m,
            SharedMap::Read(m) => m,
        }
    }

    /// Word `i` to load from (panics past the end).
    pub fn load(&self, i: usize) -> u64 {
        self.word(i).load(std::sync::atomic::Ordering::Acquire)
    }

    /// Word `i` to change: only on a writable map (panics otherwise).
    pub fn word_mut(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(matches!(self.map, SharedMap::Write(_)), "counter {i} changed through a read-only map");
        self.word(i)
    }

    fn word(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(i < self.len(), "counter {i} past the end ({})", self.len());
        // SAFETY: the mapping is page-aligned, so every 8-byte offset is
        // aligned for AtomicU64, which has u64's size; `i` is in bounds; the
        // reference lives no longer than the mapping (borrowed from self). A
        // read-only map is only loaded from (`load`), a plain read on x86-64
        // and arm64; `word_mut` refuses it.
        unsafe { &*(self.bytes().as_ptr().add(i * 8) as *const std::sync::atomic::AtomicU64) }
    }
}

/// Read from a Unix stream socket, collecting descriptors sent with SCM_RIGHTS
/// (in order) into `files`. Ok(0) is end of input.
pub fn recv_with_fds(
    sock: &impl std::os::fd::AsFd,
    buf: &mut [u8],
    files: &mut std::collections::VecDeque<std::os::fd::OwnedFd>,
) -> std::io::Result<usize> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let msg =
        recvmsg::<()>(sock.as_fd().as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).map_err(std::io::Error::from)?;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed this descriptor in our table
                // for us (SCM_RIGHTS); nothing else refers to it.
                files.push_back(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(msg.bytes)
}

/// Write all of `data` to a Unix stream socket with `fds` attached to its first
/// byte (SCM_RIGHTS). Waits for room when the socket is non-blocking.
pub fn send_with_fds(sock: &impl std::os::fd::AsFd, data: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) -> std::io::Result<()> {
    use nix::errno::Errno;
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let wait_room = || -> std::io::Result<()> {
        let mut fds = [nix::poll::PollFd::new(sock.as_fd(), nix::poll::PollFlags::POLLOUT)];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    };
    let fds: Vec<std::os::fd::RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let n = loop {
        match sendmsg::<()>(sock.as_fd().as_raw_fd(), &[std::io::IoSlice::new(data)], &cmsg, MsgFlags::empty(), None) {
            Ok(n) => break n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => wait_room()?,
            Err(e) => return Err(e.into()),
        }
    };
    // The descriptor went with the first byte; the rest is plain data.
    let mut rest = &data[n..];
    while !rest.is_empty() {
        match nix::unistd::write(sock.as_fd(), rest) {
            Ok(m) => rest = &rest[m..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => wait_room()?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A connected pair of Unix stream sockets, closed on exec.
pub fn socketpair() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).map_err(std::io::Error::from)
}

/// Make `cmd`'s child start with no signal blocked. postern-listen blocks SIGCHLD
/// and SIGTERM to read them from a signalfd, and a blocked mask survives exec
/// (std does not reset it), so without this every connection's program would
/// ignore SIGTERM.
pub fn unblock_signals_on_exec(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec; it only calls
    // pthread_sigmask on an empty set, which is async-signal-safe and allocates
    // nothing.
    unsafe {
        cmd.pre_exec(|| nix::sys::signal::SigSet::empty().thread_set_mask().map_err(std::io::Error::from));
    }
}

/// Let go of every descriptor above 2 that this process inherited (a daemon
/// started from a shell script gets whatever the script had open, and would
/// hold it, and pass it to its children, for its whole life). They are marked
/// close-on-exec and the program execs itself again, with the same arguments and
/// environment; the new image starts with fds 0, 1 and 2 only. Nothing is
/// closed under an owner, and the pid stays the same. Call it first in main;
/// it returns only when there was nothing to let go of (or the exec failed).
pub fn drop_inherited_fds() -> io::Result<()> {
    let inherited = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()))
        .filter(|&fd| fd > 2)
        .count();
    // One of them is the directory being read.
    if inherited <= 1 {
        return Ok(());
    }
    // SAFETY: CLOSE_RANGE_CLOEXEC only sets a flag; no descriptor is closed.
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut args = std::env::args_os();
    Err(std::process::Command::new(exe).arg0(args.next().unwrap_or_default()).args(args).exec())
}

/// What a child made by `fork_run` finds at fds 0, 1 and 2, and which of the
/// parent's descriptors it closes.
#[derive(Default)]
pub struct ChildFds {
    place: Vec<(OwnedFd, Vec<RawFd>)>,
    close: Vec<RawFd>,
}

impl ChildFds {
    pub fn new() -> ChildFds {
        ChildFds::default()
    }

    /// Put `fd` at each of `at` (all of them 0, 1 or 2) in the child.
    pub fn put(mut self, fd: impl Into<OwnedFd>, at: &[RawFd]) -> ChildFds {
        assert!(at.iter().all(|n| (0..=2).contains(n)), "only fds 0, 1 and 2 are placed");
        self.place.push((fd.into(), at.to_vec()));
        self
    }

    /// Close `fd` in the child (a listening socket a session must not hold).
    /// The child code cannot reach it: `fork_run` takes only a 'static closure,
    /// which cannot borrow the parent's objects.
    pub fn close(mut self, fd: &impl AsFd) -> ChildFds {
        self.close.push(fd.as_fd().as_raw_fd());
        self
    }

    /// In the child: place, close, and mark every other descriptor above 2
    /// close-on-exec (so no program the child runs inherits the parent's).
    fn apply(self) -> io::Result<()> {
        let copies: Vec<(OwnedFd, Vec<RawFd>)> =
            self.place.iter().map(|(fd, at)| Ok((high_copy(fd, 3)?, at.clone()))).collect::<io::Result<_>>()?;
        let pairs: Vec<(RawFd, RawFd)> = copies.iter().flat_map(|(fd, at)| at.iter().map(|&t| (fd.as_raw_fd(), t))).collect();
        place(&pairs)?;
        drop(copies);
        for (fd, _) in self.place {
            // A source that was itself numbered 0, 1 or 2 is replaced already:
            // closing its number would close what was placed there.
            if pairs.iter().any(|&(_, to)| to == fd.as_raw_fd()) {
                let _ = fd.into_raw_fd();
            }
        }
        // The placed numbers hold new descriptors now, which nothing in the
        // child owns yet: the child may claim them.
        for (_, to) in &pairs {
            TAKEN.fetch_and(!(1u64 << to), std::sync::atomic::Ordering::SeqCst);
        }
        for fd in self.close {
            // SAFETY: closes, in the child only, a descriptor the caller named;
            // its owner lives in the parent's frames, which the child never
            // returns to, and the child's closure is 'static, so it holds no
            // borrow of that owner.
            unsafe { libc::close(fd) };
        }
        // SAFETY: CLOSE_RANGE_CLOEXEC only sets a flag; no descriptor is closed.
        if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        nix::sys::signal::SigSet::empty().thread_set_mask().map_err(io::Error::from)
    }
}

/// The number of threads of this process (from /proc/self/stat).
fn thread_count() -> io::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace()
        .nth(17)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other("cannot read the thread count in /proc/self/stat"))
}

/// Fork, set the child's descriptors up as `fds` says (what an exec would have
/// given it), and run `child` there; the child then ends with `_exit` and the
/// value `child` returned (111 if it panicked), never coming back into the
/// caller. Returns the child's pid in the parent.
///
/// Refuses to fork a process with more than one thread: its child could find
/// a lock held by a thread it does not have.
pub fn fork_run<F: FnOnce() -> i32 + 'static>(fds: ChildFds, child: F) -> io::Result<nix::unistd::Pid> {
    if thread_count()? != 1 {
        return Err(io::Error::other("fork_run needs a single-threaded process"));
    }
    // SAFETY: the process has one thread (checked above), so the child's copy of
    // the heap, of the std locks and of every descriptor is consistent; the
    // child leaves through _exit below, whatever `child` does, and never runs
    // the parent's frames or exit handlers.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { child } => Ok(child),
        nix::unistd::ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match fds.apply() {
                Ok(()) => child(),
                Err(_) => crate::error::EXIT_TEMP,
            }))
            .unwrap_or(crate::error::EXIT_TEMP);
            // SAFETY: _exit ends the process at once, running nothing of the
            // parent's (atexit handlers, buffered output).
            unsafe { libc::_exit(code) }
        }
    }
}

/// Set this process's name as ps and /proc/PID/comm show it (15 bytes at most).
pub fn set_process_name(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of which the kernel copies
    // at most 16 bytes; `name` is one.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong);
    }
}

/// Let the kernel reap this process's children (SIGCHLD ignored), for a server
/// whose children report to their clients rather than to it.
pub fn reap_children_automatically() -> std::io::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installs no handler, only SIG_IGN, so no code runs in signal context.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) }.map(|_| ()).map_err(std::io::Error::from)
}

/// The uid of the process at the other end of a Unix socket.
pub fn peer_uid(sock: &impl std::os::fd::AsFd) -> std::io::Result<u32> {
    nix::sys::socket::getsockopt(sock, nix::sys::socket::sockopt::PeerCredentials).map(|c| c.uid()).map_err(std::io::Error::from)
}

/// Be sent SIGTERM when the parent process ends (a daemon that postern-start
/// runs must not outlive it, even when it is killed with SIGKILL).
pub fn exit_with_parent() {
    let parent = nix::unistd::getppid();
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong);
    }
    // The parent may have gone before the call above.
    if nix::unistd::getppid() != parent {
        std::process::exit(0);
    }
}

/// A counter in memory shared with the children forked after it is made.
#[derive(Clone, Copy)]
pub struct SharedCounter(&'static std::sync::atomic::AtomicU32);

impl SharedCounter {
    pub fn new() -> std::io::Result<SharedCounter> {
        // SAFETY: a fresh anonymous shared mapping of one page, never unmapped
        // (it lives as long as the process): the reference stays valid. Zeroed
        // memory is a valid AtomicU32, and the page is aligned for it.
        unsafe {
            let p =
                libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0);
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            Ok(SharedCounter(&*(p as *const std::sync::atomic::AtomicU32)))
        }
    }

    /// Count one more if that stays at or below `limit`; false if not.
    pub fn take(&self, limit: u32) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.0.fetch_update(SeqCst, SeqCst, |n| (n < limit).then_some(n + 1)).is_ok()
    }

    pub fn release(&self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The path `unlink_and_exit` removes, as a C string that lives for ever.
static UNLINK_ON_TERM: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

extern "C" fn unlink_and_exit(_: libc::c_int) {
    if let Some(p) = UNLINK_ON_TERM.get() {
        // SAFETY: unlink and _exit are async-signal-safe; the string is never freed.
        unsafe { libc::unlink(p.as_ptr()) };
    }
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

/// On SIGTERM or SIGINT, remove `path` (a socket) and exit at once, so no
/// client reaches children that still hold the socket once we are told to stop.
pub fn unlink_on_term(path: &std::path::Path) -> std::io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let _ = UNLINK_ON_TERM.set(c);
    let act = SigAction::new(SigHandler::Handler(unlink_and_exit), SaFlags::empty(), SigSet::empty());
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler calls only async-signal-safe functions (above).
        unsafe { sigaction(s, &act) }.map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// SIGTERM and SIGINT back to their default action (in a child of a process
/// that handles them).
pub fn default_term_signals() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: SIG_DFL installs no code to run in signal context.
        let _ = unsafe { signal(s, SigHandler::SigDfl) };
    }
}

/// flock(2) on any descriptor (a directory too): `op` is LOCK_SH, LOCK_EX or
/// LOCK_UN. Blocks; a signal's EINTR is retried.
pub fn flock(fd: &impl AsFd, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock takes a descriptor number the borrow keeps open and an
        // operation; it touches no memory of ours.
        if unsafe { libc::flock(fd.as_fd().as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Put `fd` on each of `at` (fds 1 and 2 of a resident delivery worker,
/// for one delivery's answer pipe and then /dev/null again), not closed on
/// exec, so the delivery's programs write there too.
pub fn put_stdio(fd: &impl AsFd, at: &[RawFd]) -> io::Result<()> {
    assert!(at.iter().all(|n| (1..=2).contains(n)), "only fds 1 and 2 are replaced");
    let from = fd.as_fd().as_raw_fd();
    place(&at.iter().map(|&to| (from, to)).collect::<Vec<_>>())
}

/// A connected pair of Unix sequenced-packet sockets (each send arrives as one
/// message), closed on exec.
pub fn seqpacket_pair() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(std::io::Error::from)
}
