//! The OS boundary: the few calls that need `unsafe`, each with its reason.

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

/// Make this process the leader of a new process group, so a timeout can kill a
/// program delivery together with everything it started.
pub fn new_process_group() {
    let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
}

/// Set `FD_CLOEXEC` on or off.
pub fn set_cloexec(fd: std::os::fd::RawFd, on: bool) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = if on { FdFlag::FD_CLOEXEC } else { FdFlag::empty() };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map(|_| ()).map_err(std::io::Error::from)
}

/// Set or clear O_NONBLOCK.
pub fn set_nonblocking(fd: std::os::fd::RawFd, on: bool) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let cur = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let mut flags = OFlag::from_bits_truncate(cur);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(fd, FcntlArg::F_SETFL(flags)).map(|_| ()).map_err(std::io::Error::from)
}

/// Duplicate `from` onto `to` (dup2) and clear close-on-exec on the result.
pub fn dup_onto(from: std::os::fd::RawFd, to: std::os::fd::RawFd) -> std::io::Result<()> {
    if from != to {
        // SAFETY: dup2 on descriptor numbers; it does not touch memory. The caller
        // owns `to` and means to replace it.
        let r = unsafe { libc::dup2(from, to) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    set_cloexec(to, false)
}

/// Close a raw descriptor the caller owns and no Rust object wraps.
pub fn close_raw(fd: std::os::fd::RawFd) {
    // SAFETY: closing a number: at worst EBADF. Callers only pass descriptors they
    // own and have not handed to an owning wrapper.
    unsafe {
        libc::close(fd);
    }
}

/// The login name of the real uid, from the password database.
pub fn login_name() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name)
}

/// This host's name, for `me` when the control file is missing.
pub fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".to_string())
}

/// Take ownership of one of the descriptors a protocol hands us at start (fd 0 and
/// 1 of postern-queue, fd 3 of checkpassword). Call once per descriptor.
pub fn protocol_fd(fd: std::os::fd::RawFd) -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: the descriptor was opened by our parent for us; this is the only
    // owner created for it in this process.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

/// Spawn `cmd` with extra descriptors placed at fixed numbers in the child (the
/// way qmail-start hands pipes to qmail-send). The descriptors are closed in the
/// parent once the child has them.
pub fn spawn_with_fds(
    cmd: &mut std::process::Command,
    fds: &[(std::os::fd::OwnedFd, std::os::fd::RawFd)],
) -> std::io::Result<std::process::Child> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // Move each source out of the way of every target number first, so placing one
    // cannot clobber another: duplicates land at 100 and above.
    let mut moved = Vec::new();
    for (fd, target) in fds {
        let high = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100)).map_err(std::io::Error::from)?;
        moved.push((high, *target));
    }
    let pairs = moved.clone();
    // SAFETY: the closure runs in the child between fork and exec; it only calls
    // dup2 and fcntl, which are async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &pairs {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::fcntl(to, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let r = cmd.spawn();
    for (high, _) in moved {
        close_raw(high);
    }
    r
}

/// A pipe whose ends are closed on exec: a child gets only the ends placed on its
/// stdio, so no child holds a writer open by accident (which would keep the
/// reader from ever seeing EOF).
pub fn pipe() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Lend a descriptor number to an API that wants a `BorrowedFd`, for descriptors
/// the process holds for its whole life (fd 0 and 1 of a network session).
pub fn borrow_fd(fd: std::os::fd::RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: callers pass only descriptors that stay open until the process
    // exits, so the 'static borrow never outlives the descriptor.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

// --- Password checks for postern-auth (POP3, issue 4): shadow and crypt(3). ---

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

/// Read from a Unix stream socket, collecting descriptors sent with SCM_RIGHTS
/// (in order) into `files`. Ok(0) is end of input.
pub fn recv_with_fds(
    sock: &impl std::os::fd::AsFd,
    buf: &mut [u8],
    files: &mut std::collections::VecDeque<std::os::fd::OwnedFd>,
) -> std::io::Result<usize> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};
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

// --- SMTP receive (issue 3) ---

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

/// Close every descriptor above 2 that we inherited (a daemon started from a shell
/// script gets whatever the script had open, and would pass it on to each child).
pub fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; it is called first thing in
    // main, before this process opens or wraps any descriptor of its own.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
}

/// Fork, and run `child` in the child, which then ends with `_exit` and the
/// value `child` returned: it never comes back into the caller's loop and never
/// runs the parent's exit handlers. Returns the child's pid in the parent.
///
/// Only for single-threaded callers (postern-lspawn): after a fork the child of
/// a threaded process could find a lock held by a thread that it does not have.
pub fn fork_run(child: impl FnOnce() -> i32) -> std::io::Result<nix::unistd::Pid> {
    // SAFETY: the caller is single-threaded (see above), so the child's copy of
    // the heap, of the std locks and of every descriptor is consistent, and the
    // child leaves through _exit below without returning.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        nix::unistd::ForkResult::Parent { child } => Ok(child),
        nix::unistd::ForkResult::Child => {
            let code = child();
            // SAFETY: _exit ends the process at once, running nothing of the
            // parent's (atexit handlers, buffered output).
            unsafe { libc::_exit(code) }
        }
    }
}

/// In a child forked to run code instead of a program: what an exec would have
/// given it. Each (source, number) pair puts the source at that number; then
/// every descriptor above 2 is closed and no signal is blocked. The callers'
/// own handles on the sources must not be dropped afterwards (their numbers
/// are closed here), so the sources are taken and let go of.
pub fn exec_like(sources: Vec<std::os::fd::OwnedFd>, placed: &[(usize, std::os::fd::RawFd)]) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, IntoRawFd};
    for &(i, to) in placed {
        dup_onto(sources[i].as_raw_fd(), to)?;
    }
    for fd in sources {
        // Closed by close_inherited_fds below (they are all above 2).
        let _ = fd.into_raw_fd();
    }
    close_inherited_fds();
    nix::sys::signal::SigSet::empty().thread_set_mask().map_err(std::io::Error::from)
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
