//! The qmail helper programs: forward, preline, condredirect, bouncesaying,
//! except. Each reads the message on fd 0 and the environment postern-local sets.
use crate::deliver::local::LocalError;
use crate::error::{Classify, Kind};
use crate::os::home::Home;
use crate::status::Status;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

#[derive(Debug)]
pub enum HelperError {
    Usage(&'static str),
    /// A variable postern-local sets is missing: not run from a dot file.
    Env(&'static str),
    Run(String, io::Error),
    Crashed(String, Option<i32>),
    Message(io::Error),
    Local(LocalError),
}

impl fmt::Display for HelperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelperError::Usage(u) => f.write_str(u),
            HelperError::Env(v) => write!(f, "${v} is not set; run this from a dot-qmail line (postern-local sets it)"),
            HelperError::Run(p, e) => write!(f, "cannot run {p}: {e}; check the program name and PATH"),
            HelperError::Crashed(p, Some(s)) => write!(f, "{p} was killed by signal {s}"),
            HelperError::Crashed(p, None) => write!(f, "{p} ended abnormally"),
            HelperError::Message(e) => write!(f, "cannot read the message on fd 0: {e}"),
            HelperError::Local(e) => e.fmt(f),
        }
    }
}

impl HelperError {
    /// None for a usage error, which is not about a delivery.
    pub fn status(&self) -> Option<Status> {
        match self {
            HelperError::Usage(_) => None,
            HelperError::Env(_) => Some(Status::new(5, 3, 5)),
            HelperError::Local(e) => Some(e.status()),
            _ => Some(Status::MAIL_SYSTEM),
        }
    }
}

/// The message on fd 0, seekable (a pipe is copied to memory).
pub fn message() -> Result<File, HelperError> {
    crate::os::sys::take_fd(0).and_then(|fd| crate::message::file::seekable(File::from(fd))).map_err(HelperError::Message)
}

/// A helper program's end on an error: one line on stderr, which postern-local
/// passes on as the delivery's report (the status first), and qmail's exit
/// code for the error's kind.
pub fn fail(program: &str, e: &HelperError) -> ! {
    match e.status() {
        Some(s) => eprintln!("{s} {program}: {e}"),
        None => eprintln!("{program}: {e}"),
    }
    std::process::exit(e.kind().exit_code());
}

/// A helper program's end when it decided: what it says, and its exit code.
pub fn finish(v: Verdict) -> ! {
    if !v.say.is_empty() {
        // The exit code is the verdict; a report nobody reads changes nothing
        // (println! would panic on a closed pipe).
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{}", v.say);
    }
    std::process::exit(v.code)
}

impl Classify for HelperError {
    fn kind(&self) -> Kind {
        match self {
            HelperError::Usage(_) | HelperError::Env(_) => Kind::Permanent,
            HelperError::Local(e) => e.kind(),
            _ => Kind::Temporary,
        }
    }
}

/// What a helper decided: its exit code and what to print (maybe nothing).
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub code: i32,
    pub say: String,
}

impl Verdict {
    fn quiet(code: i32) -> Verdict {
        Verdict { code, say: String::new() }
    }
}

fn env(name: &'static str) -> Result<String, HelperError> {
    std::env::var(name).map_err(|_| HelperError::Env(name))
}

fn name(argv: &[OsString]) -> String {
    argv.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Run argv[0] with the rest as arguments (PATH search, no shell), fd 0
/// shared with us. Returns its exit code; a death by signal is an error.
pub fn run(argv: &[OsString], stdin: Stdio) -> Result<i32, HelperError> {
    let Some(prog) = argv.first() else { return Err(HelperError::Usage("no program given")) };
    let status = Command::new(prog).args(&argv[1..]).stdin(stdin).status().map_err(|e| HelperError::Run(name(argv), e))?;
    status.code().ok_or_else(|| HelperError::Crashed(name(argv), status.signal()))
}

/// postern-forward ADDR...: queue the message with $DTLINE to ADDRs, sender
/// $NEWSENDER.
pub fn forward(home: &Home, message: &mut File, targets: &[String]) -> Result<Verdict, HelperError> {
    if targets.is_empty() {
        return Err(HelperError::Usage("usage: postern-forward ADDRESS..."));
    }
    let sender = env("NEWSENDER")?;
    let dtline = env("DTLINE")?;
    crate::deliver::local::forward(home, message, &dtline, &sender, targets).map_err(HelperError::Local)?;
    Ok(Verdict::quiet(0))
}

/// postern-preline: which of qmail's three lines to put in front.
pub struct PrelineFlags {
    pub ufline: bool,
    pub rpline: bool,
    pub dtline: bool,
}

/// Split preline's leading flags (-f -r -d, combinable) from the command.
pub fn preline_args(args: &[OsString]) -> Result<(PrelineFlags, Vec<OsString>), HelperError> {
    let mut flags = PrelineFlags { ufline: true, rpline: true, dtline: true };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a.len() < 2 {
            break;
        }
        for c in a[1..].chars() {
            match c {
                'f' => flags.ufline = false,
                'r' => flags.rpline = false,
                'd' => flags.dtline = false,
                _ => return Err(HelperError::Usage("usage: postern-preline [-frd] PROGRAM [ARG...]")),
            }
        }
        i += 1;
    }
    if i >= args.len() {
        return Err(HelperError::Usage("usage: postern-preline [-frd] PROGRAM [ARG...]"));
    }
    Ok((flags, args[i..].to_vec()))
}

/// postern-preline: feed $UFLINE $RPLINE $DTLINE and the message to a program
/// through a pipe; exit with its code.
pub fn preline(flags: &PrelineFlags, argv: &[OsString], message: &mut File) -> Result<Verdict, HelperError> {
    let mut prefix = String::new();
    for (on, var) in [(flags.ufline, "UFLINE"), (flags.rpline, "RPLINE"), (flags.dtline, "DTLINE")] {
        if on {
            prefix.push_str(&env(var)?);
        }
    }
    let mut child = Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::piped()).spawn().map_err(|e| HelperError::Run(name(argv), e))?;
    let mut w = child.stdin.take().expect("piped stdin");
    // A program that stops reading early closes the pipe; its exit code says
    // what happened, not our EPIPE.
    let copied = io::Write::write_all(&mut w, prefix.as_bytes()).and_then(|()| io::copy(message, &mut w).map(|_| ()));
    drop(w);
    let status = child.wait().map_err(|e| HelperError::Run(name(argv), e))?;
    if let Err(e) = copied {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(HelperError::Message(e));
        }
    }
    let code = status.code().ok_or_else(|| HelperError::Crashed(name(argv), status.signal()))?;
    Ok(Verdict::quiet(code))
}

/// postern-condredirect NEWADDR PROGRAM...: if the program exits 0, forward
/// the message to NEWADDR (sender $SENDER) and exit 99; 111 stays 111; any
/// other exit means "not for us": 0.
pub fn condredirect(home: &Home, newaddr: &str, argv: &[OsString], message: &mut File) -> Result<Verdict, HelperError> {
    let sender = env("SENDER")?;
    let dtline = env("DTLINE")?;
    message.seek(SeekFrom::Start(0)).map_err(HelperError::Message)?;
    let stdin = message.try_clone().map_err(HelperError::Message)?;
    match run(argv, Stdio::from(stdin))? {
        0 => {
            crate::deliver::local::forward(home, message, &dtline, &sender, &[newaddr.to_string()]).map_err(HelperError::Local)?;
            Ok(Verdict { code: 99, say: format!("redirected to {newaddr}") })
        }
        111 => Ok(Verdict { code: 111, say: format!("{} {} failed temporarily", Status::MAIL_SYSTEM, name(argv)) }),
        _ => Ok(Verdict::quiet(0)),
    }
}

/// postern-bouncesaying TEXT [PROGRAM...]: bounce with TEXT, always or when the
/// program exits 0.
pub fn bouncesaying(text: &str, argv: &[OsString]) -> Result<Verdict, HelperError> {
    if argv.is_empty() {
        return Ok(Verdict { code: 100, say: text.to_string() });
    }
    match run(argv, Stdio::inherit())? {
        0 => Ok(Verdict { code: 100, say: text.to_string() }),
        111 => Ok(Verdict { code: 111, say: format!("{} {} failed temporarily", Status::MAIL_SYSTEM, name(argv)) }),
        _ => Ok(Verdict::quiet(0)),
    }
}

/// postern-except PROGRAM...: turn the program's success into a bounce and
/// its bounce into success.
pub fn except(argv: &[OsString]) -> Result<Verdict, HelperError> {
    Ok(Verdict::quiet(match run(argv, Stdio::inherit())? {
        0 => 100,
        100 => 0,
        c => c,
    }))
}
