//! The helper DSL: temporary homes with the real programs, and ways to run them.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Every program of the suite (they are linked into each test home's bin/).
pub const PROGRAMS: &[&str] = &[
    "postern-queue",
    "postern-start",
    "postern-send",
    "postern-lspawn",
    "postern-local",
    "postern-forward",
    "postern-preline",
    "postern-condredirect",
    "postern-bouncesaying",
    "postern-except",
    "postern-vacation",
    "postern-inject",
    "postern-sendmail",
    "postern-admin",
    "postern-listen",
    "postern-smtpd",
    "postern-popup",
    "postern-auth",
    "postern-pop3d",
    "postern-rspawn",
    "postern-remote",
];

/// Directory holding the built programs (target/<profile>/).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/it-HASH -> target/<profile>
    exe.parent().and_then(|p| p.parent()).expect("target dir").to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// The repository root (for scripts/).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Create the service users once per test run (root only).
pub fn service_users() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let out = Command::new(repo().join("scripts/service-users")).output().unwrap();
        assert!(out.status.success(), "service-users: {}", text(&out));
    });
}

/// As root, give a home's queue to postern-q as in a system install: postern-queue
/// run by root becomes postern-q, which must be able to write it.
pub fn own_queue(root: &Path) {
    if !is_root() {
        return;
    }
    service_users();
    let q = root.join("queue");
    let st = Command::new("chown").args(["-R", "postern-q:postern"]).arg(&q).status().unwrap();
    assert!(st.success());
    for d in ["tmp", "new", "mess"] {
        fs::set_permissions(q.join(d), std::os::unix::fs::PermissionsExt::from_mode(0o2770)).unwrap();
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop unless
/// POSTERN_KEEP is set (for looking at a failed test's files).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("postern-it-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("POSTERN_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A postern home with control/, queue/, users/ and bin/ (links to the built
/// programs), and `me` set to test.example. Nothing runs until a test starts it.
pub struct Home {
    pub dir: TempDir,
}

impl Home {
    pub fn new(tag: &str) -> Home {
        let dir = TempDir::new(tag);
        let root = dir.path();
        for d in ["control", "users", "bin", "log"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        postern::queue::Queue::new(&postern::os::home::Home::at(root)).create_dirs().unwrap();
        for p in PROGRAMS {
            std::os::unix::fs::symlink(bin(p), root.join("bin").join(p)).unwrap();
        }
        fs::write(root.join("control/me"), "test.example\n").unwrap();
        own_queue(root);
        Home { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path().join(p)
    }

    /// Write a control file.
    pub fn control(&self, name: &str, content: &str) -> &Home {
        fs::write(self.path().join("control").join(name), content).unwrap();
        self
    }

    /// A command for one of the programs, with POSTERN_HOME set.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(self.path().join("bin").join(program));
        c.env("POSTERN_HOME", self.path());
        c
    }

    /// Run a program with `stdin` as its input and wait for it.
    pub fn run(&self, program: &str, args: &[&str], stdin: &[u8]) -> Output {
        run_with_input(self.cmd(program).args(args), stdin)
    }

    /// Files in queue/new and queue/mess.
    pub fn queued(&self) -> usize {
        ["queue/new", "queue/mess"].iter().map(|d| fs::read_dir(self.join(d)).map(|r| r.count()).unwrap_or(0)).sum()
    }
}

/// Run a command with `stdin` fed from a thread (so large inputs cannot deadlock).
pub fn run_with_input(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut w = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let t = std::thread::spawn(move || {
        let _ = w.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    t.join().unwrap();
    out
}

/// Output as text, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("status {:?}\nstdout: {}\nstderr: {}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Wait until `f` returns Some, or panic after `secs` with `what`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {secs}s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The files in a Maildir's new/ (sorted by name), as bytes.
pub fn maildir_new(maildir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<_> = match fs::read_dir(maildir.join("new")) {
        Ok(r) => r.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => return Vec::new(),
    };
    names.sort();
    names.iter().map(|p| fs::read(p).unwrap()).collect()
}

/// Make an empty Maildir.
pub fn make_maildir(dir: &Path) {
    for d in ["tmp", "new", "cur"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
}

/// The body of a message: everything after the first empty line.
pub fn body(msg: &[u8]) -> &[u8] {
    let s = msg;
    for i in 0..s.len() {
        if s[i..].starts_with(b"\n\n") {
            return &s[i + 2..];
        }
        if s[i..].starts_with(b"\r\n\r\n") {
            return &s[i + 4..];
        }
    }
    &[]
}

/// The value of the first header named `name` (case-insensitive), unfolded.
pub fn header(msg: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        if l.is_empty() {
            return None;
        }
        if let Some((n, v)) = l.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                let mut v = v.trim().to_string();
                while let Some(next) = lines.peek() {
                    if next.starts_with(' ') || next.starts_with('\t') {
                        v.push(' ');
                        v.push_str(next.trim());
                        lines.next();
                    } else {
                        break;
                    }
                }
                return Some(v);
            }
        }
    }
    None
}

/// A complete instance made by scripts/instance in a temporary directory; stopped
/// when dropped.
pub struct Instance {
    pub dir: TempDir,
    pub domain: String,
}

/// A port nobody listens on right now (the kernel's pick).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Instance {
    /// `scripts/instance create` (not started).
    pub fn create(tag: &str) -> Instance {
        if is_root() {
            service_users();
        }
        let dir = TempDir::new(tag);
        let domain = format!("{tag}.test");
        // Tests run in parallel: every instance gets its own ports.
        let (smtp_port, pop3_port) = (free_port(), free_port());
        let out = Command::new(repo().join("scripts/instance"))
            .args(["create", dir.path().to_str().unwrap(), "--domain", &domain])
            .args(["--smtp-port", &smtp_port.to_string(), "--pop3-port", &pop3_port.to_string()])
            .env("POSTERN_BUILD", bin_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "instance create: {}", text(&out));
        let i = Instance { dir, domain };
        // Remote deliveries never leave the machine: no resolver but a dead one,
        // unless a test sets its own.
        fs::write(i.path().join("control/dnsresolvers"), "127.0.0.1:1\n").unwrap();
        // Wrong passwords cost no wait, except in the tests of that wait.
        fs::write(i.path().join("control/authfaildelay"), "0\n").unwrap();
        i
    }

    /// Created and started.
    pub fn started(tag: &str) -> Instance {
        let i = Instance::create(tag);
        i.start();
        i
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A value from DIR/instance.conf (smtp_port, pop3_port, domain).
    pub fn conf(&self, key: &str) -> Option<String> {
        let text = fs::read_to_string(self.path().join("instance.conf")).ok()?;
        text.lines().find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
    }

    pub fn smtp_port(&self) -> u16 {
        self.conf("smtp_port").and_then(|p| p.parse().ok()).expect("smtp_port in instance.conf")
    }

    pub fn pop3_port(&self) -> u16 {
        self.conf("pop3_port").and_then(|p| p.parse().ok()).expect("pop3_port in instance.conf")
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new(repo().join("scripts/instance")).args(args).output().unwrap()
    }

    pub fn start(&self) {
        let out = self.script(&["start", self.path().to_str().unwrap()]);
        assert!(out.status.success(), "instance start: {}\nlog:\n{}", text(&out), self.log());
    }

    pub fn stop(&self) {
        let out = self.script(&["stop", self.path().to_str().unwrap()]);
        assert!(out.status.success(), "instance stop: {}", text(&out));
    }

    /// Add a virtual user; returns its Maildir.
    pub fn adduser(&self, local: &str, password: &str) -> PathBuf {
        let out = self.script(&["adduser", self.path().to_str().unwrap(), local, password]);
        assert!(out.status.success(), "adduser: {}", text(&out));
        self.maildir(local)
    }

    pub fn maildir(&self, local: &str) -> PathBuf {
        self.path().join("mail").join(&self.domain).join(local).join("Maildir")
    }

    pub fn address(&self, local: &str) -> String {
        format!("{local}@{}", self.domain)
    }

    /// A command for one of the instance's programs, with POSTERN_HOME set.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(self.path().join("bin").join(program));
        c.env("POSTERN_HOME", self.path());
        c
    }

    pub fn run(&self, program: &str, args: &[&str], stdin: &[u8]) -> Output {
        run_with_input(self.cmd(program).args(args), stdin)
    }

    /// Send with `postern-sendmail -oi -f sender rcpts...`; asserts success.
    pub fn send(&self, from: &str, to: &[&str], message: &[u8]) {
        let mut args = vec!["-oi", "-f", from];
        args.extend_from_slice(to);
        let out = self.run("postern-sendmail", &args, message);
        assert!(out.status.success(), "sendmail: {}", text(&out));
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.path().join("log/send.log")).unwrap_or_default()
    }

    /// Messages in the queue (new/ and mess/).
    pub fn queued(&self) -> usize {
        ["queue/new", "queue/mess"].iter().map(|d| fs::read_dir(self.path().join(d)).map(|r| r.count()).unwrap_or(0)).sum()
    }

    /// Force a retry of everything (postern-admin queue flush).
    pub fn flush(&self) {
        let out = self.run("postern-admin", &["queue", "flush"], b"");
        assert!(out.status.success(), "flush: {}", text(&out));
    }

    /// Wait until `maildir` has `n` messages in new/ and return them.
    pub fn wait_mail(&self, maildir: &Path, n: usize) -> Vec<Vec<u8>> {
        let what = format!("{n} message(s) in {}\nlog:\n{}", maildir.display(), self.log());
        wait_for(20, &what, || {
            let m = maildir_new(maildir);
            (m.len() >= n).then_some(m)
        });
        maildir_new(maildir)
    }

    /// Wait until the queue is empty.
    pub fn wait_empty(&self) {
        wait_for(20, "an empty queue", || (self.queued() == 0).then_some(()));
    }

    /// Processes of this instance running `program`: started from its bin/, or
    /// forked by one of its programs and named `program` (postern-lspawn's
    /// delivery children call themselves postern-local, and are not lspawn).
    pub fn pids(&self, program: &str) -> Vec<i32> {
        let bin = self.path().join("bin");
        let exe = bin.join(program);
        let mut v = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(running) = fs::read_link(e.path().join("exe")) else { continue };
            // The kernel keeps 15 bytes of a name.
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            let comm = comm.trim_end();
            if (running == exe && comm == &program[..program.len().min(15)]) || (running.parent() == Some(bin.as_path()) && comm == program)
            {
                v.push(pid);
            }
        }
        v
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.script(&["stop", self.path().to_str().unwrap()]);
    }
}

/// The uid a process runs as (from /proc/PID/status, the effective uid).
pub fn proc_uid(pid: i32) -> Option<u32> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A uid by user name.
pub fn uid_of(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
}

/// A small message with a Subject and a body line.
/// It has Date and Message-ID, so injection leaves its header as it is.
pub fn message(subject: &str, body: &str) -> Vec<u8> {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!(
        "From: tester@sender.test\nTo: someone\nSubject: {subject}\nDate: Sat, 21 Nov 2026 12:00:00 +0000\nMessage-ID: <{n}.{}@sender.test>\n\n{body}\n",
        std::process::id()
    )
    .into_bytes()
}
