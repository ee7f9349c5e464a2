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
        postern::queue::Queue::new(&postern::home::Home::at(root)).create_dirs().unwrap();
        for p in PROGRAMS {
            std::os::unix::fs::symlink(bin(p), root.join("bin").join(p)).unwrap();
        }
        fs::write(root.join("control/me"), "test.example\n").unwrap();
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
