//! postern-admin: virtual users and domains, users/cdb, the queue, the settings.
//!
//! Every command works on $POSTERN_HOME. Exit 0 done, 100 the request cannot work
//! (bad address, unknown user, ...), 111 something to fix or retry (files, queue).

use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Command};
use postern::config::control;
use postern::error::{Classify, EXIT_OK, EXIT_PERM};
use postern::os::home::Home;
use postern::os::out;
use postern::outln;
use postern::queue::admin as queue_admin;
use postern::queue::listing;
use postern::users;
use std::fmt::Display;
use std::path::PathBuf;

const PROGRAM: &str = "postern-admin";

fn password_args(cmd: Command, required: bool) -> Command {
    cmd.arg(Arg::new("password").long("password").value_name("PW").help("the password (visible in ps; prefer --password-stdin)"))
        .arg(
            Arg::new("password-stdin")
                .long("password-stdin")
                .action(ArgAction::SetTrue)
                .help("read the password from the first line of standard input"),
        )
        .group(ArgGroup::new("pw").args(["password", "password-stdin"]).required(required))
}

fn address(help: &'static str) -> Arg {
    Arg::new("address").required(true).value_name("ADDRESS").help(help)
}

fn json() -> Arg {
    Arg::new("json").long("json").action(ArgAction::SetTrue).help("JSON, for scripts")
}

fn ids(many: bool) -> Arg {
    let a = Arg::new("id").required(true).value_name("ID").help("a queue id, as `queue list` shows it");
    if many {
        a.num_args(1..)
    } else {
        a
    }
}

/// Each ID of a queue command, done by `act`; every failure is reported, the
/// exit code is the worst.
fn each_id(a: &ArgMatches, act: impl Fn(&queue_admin::Id) -> Result<String, queue_admin::AdminError>) {
    let mut worst = EXIT_OK;
    for s in a.get_many::<String>("id").into_iter().flatten() {
        match queue_admin::parse_id(s).and_then(|id| act(&id)) {
            Ok(done) => outln!("{done}"),
            Err(e) => {
                eprintln!("{PROGRAM}: {e}");
                worst = worst.max(e.kind().exit_code());
            }
        }
    }
    std::process::exit(worst);
}

fn cli() -> Command {
    let number = clap::value_parser!(u32);
    Command::new(PROGRAM)
        .about("Manage a postern installation ($POSTERN_HOME)")
        .subcommand_required(true)
        .subcommand(
            Command::new("user")
                .about("virtual users (users/virtual)")
                .subcommand_required(true)
                .subcommand(
                    password_args(Command::new("add").about("add a virtual user and create its Maildir"), false)
                        .arg(address("local@domain; the domain must have been added with `domain add`"))
                        .arg(
                            Arg::new("uid")
                                .long("uid")
                                .value_name("N")
                                .value_parser(number)
                                .requires("gid")
                                .help("owner of the mailbox (default: postern-v as root, else you)"),
                        )
                        .arg(Arg::new("gid").long("gid").value_name("N").value_parser(number).requires("uid"))
                        .arg(
                            Arg::new("home")
                                .long("home")
                                .value_name("DIR")
                                .value_parser(clap::value_parser!(PathBuf))
                                .help("mailbox home (default: VIRTUALHOME/DOMAIN/LOCAL)"),
                        ),
                )
                .subcommand(Command::new("del").about("remove a virtual user (the mailbox is kept)").arg(address("the user to remove")))
                .subcommand(password_args(Command::new("passwd").about("set a virtual user's password"), true).arg(address("the user")))
                .subcommand(Command::new("list").about("list virtual users")),
        )
        .subcommand(
            Command::new("domain")
                .about("virtual domains (users/vdomains)")
                .subcommand_required(true)
                .subcommand(Command::new("add").arg(Arg::new("domain").required(true)).about("host virtual users for DOMAIN"))
                .subcommand(Command::new("del").arg(Arg::new("domain").required(true)).about("stop hosting DOMAIN (it must have no users)"))
                .subcommand(Command::new("list").about("list virtual domains")),
        )
        .subcommand(Command::new("rebuild").about("compile users/assign, users/virtual and users/vdomains into users/cdb, with the names of the dot-qmail files in each home (run it after changing them)"))
        .subcommand(
            Command::new("queue")
                .about("look at the queue and act on its messages")
                .subcommand_required(true)
                .subcommand(
                    Command::new("list").about("every queued message, its recipients, their last result and next try").arg(json()),
                )
                .subcommand(
                    Command::new("show")
                        .about("one message: envelope, each recipient's state, attempts, last result, next try, and the header")
                        .arg(ids(false))
                        .arg(json())
                        .arg(Arg::new("body").long("body").action(ArgAction::SetTrue).help("the body too")),
                )
                .subcommand(
                    Command::new("delete")
                        .about("remove messages from the queue, silently")
                        .arg(ids(true))
                        .arg(Arg::new("bounce").long("bounce").action(ArgAction::SetTrue).help("tell each sender, as for a failure")),
                )
                .subcommand(Command::new("hold").about("keep messages from delivery (they do not expire while held)").arg(ids(true)))
                .subcommand(Command::new("release").about("deliver held messages again, now").arg(ids(true)))
                .subcommand(Command::new("requeue").about("retry messages now").arg(ids(true)))
                .subcommand(Command::new("count").about("number of queued messages (first line), then details"))
                .subcommand(Command::new("flush").about("ask postern-send to retry every deferred delivery now")),
        )
        .subcommand(
            Command::new("stats")
                .about("counters (messages accepted, refused, delivered, deferred, bounced) and the queue's state")
                .arg(Arg::new("prometheus").long("prometheus").action(ArgAction::SetTrue).help("in Prometheus's text format"))
                .arg(
                    Arg::new("output")
                        .long("output")
                        .value_name("FILE")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("write to FILE (atomically, for node_exporter's textfile collector) instead of stdout"),
                ),
        )
        .subcommand(
            Command::new("log")
                .about("one message's story from the logs: acceptance, each delivery, the end")
                .arg(ids(false))
                .arg(
                    Arg::new("file")
                        .long("file")
                        .value_name("FILE")
                        .action(ArgAction::Append)
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("read this log (default: log/ in the home, /var/log/postern, else the journal)"),
                ),
        )
        .subcommand(Command::new("showctl").about("every setting, its value and where it comes from (ERROR marks what the programs refuse), then each sender domain"))
        .subcommand(Command::new("check").about("check every control file, database, key, certificate, owner and mode; exit 111 if anything needs fixing"))
        .subcommand(
            Command::new("dkim")
                .about("DKIM keys (control/dkim/DOMAIN/SELECTOR.key) and their DNS records")
                .subcommand_required(true)
                .subcommand(
                    Command::new("keygen")
                        .about("make a key for DOMAIN (readable by postern-q only) and print the TXT record to publish")
                        .arg(Arg::new("domain").required(true).value_name("DOMAIN"))
                        .arg(Arg::new("selector").long("selector").value_name("S").help("the selector (default: rsaYYYYMM or edYYYYMM)"))
                        .arg(
                            Arg::new("type")
                                .long("type")
                                .value_name("TYPE")
                                .value_parser(["rsa", "ed25519"])
                                .default_value("rsa")
                                .help("rsa (2048 bits) or ed25519"),
                        ),
                )
                .subcommand(
                    Command::new("show")
                        .about("the TXT records for the keys there are (of DOMAIN, or of every domain)")
                        .arg(Arg::new("domain").value_name("DOMAIN")),
                ),
        )
}

fn fail(e: impl Display + Classify) -> ! {
    eprintln!("{PROGRAM}: {e}");
    std::process::exit(e.kind().exit_code());
}

fn usage_error(why: &str) -> ! {
    eprintln!("{PROGRAM}: {why}");
    std::process::exit(EXIT_PERM);
}

/// --password or the first line of stdin; None if neither was given.
fn password(m: &ArgMatches) -> Option<String> {
    if let Some(p) = m.get_one::<String>("password") {
        return Some(p.clone());
    }
    if !m.get_flag("password-stdin") {
        return None;
    }
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        usage_error(&format!("cannot read the password from standard input: {e}"));
    }
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        usage_error("the password read from standard input is empty");
    }
    Some(pw)
}

fn main() {
    postern::version::exit_if_asked(PROGRAM);
    let m = match cli().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { EXIT_PERM } else { EXIT_OK });
        }
    };
    // users/ holds password hashes: nothing we create there is for everyone.
    postern::os::sys::umask(0o027);
    let home = Home::from_env();
    let (cmd, sub) = m.subcommand().expect("subcommand_required");
    match (cmd, sub.subcommand()) {
        ("user", Some(("add", a))) => {
            let new = users::NewUser {
                address: a.get_one::<String>("address").cloned().unwrap_or_default(),
                password: password(a),
                uid: a.get_one::<u32>("uid").copied(),
                gid: a.get_one::<u32>("gid").copied(),
                home: a.get_one::<PathBuf>("home").cloned(),
            };
            let u = users::add_virtual_user(&home, &new).unwrap_or_else(|e| fail(e));
            outln!("added {} (uid {} gid {}), mailbox {}/Maildir/", u.address, u.uid, u.gid, u.home.display());
            if new.password.is_none() {
                outln!("no password set: it cannot log in until `{PROGRAM} user passwd {}`", u.address);
            }
        }
        ("user", Some(("del", a))) => {
            let u = users::del_virtual_user(&home, a.get_one::<String>("address").unwrap()).unwrap_or_else(|e| fail(e));
            outln!("removed {}; its mailbox {} is kept (remove it yourself if it is no longer wanted)", u.address, u.home.display());
        }
        ("user", Some(("passwd", a))) => {
            let addr = a.get_one::<String>("address").unwrap();
            let pw = password(a).unwrap_or_else(|| usage_error("give --password PW or --password-stdin"));
            users::set_password(&home, addr, &pw).unwrap_or_else(|e| fail(e));
            outln!("password set for {addr}");
        }
        ("user", Some(("list", _))) => {
            for u in users::read_virtual(&home).unwrap_or_else(|e| fail(e)) {
                let locked = if users::password::has_password(&u.hash) { "" } else { " (no password)" };
                outln!("{} uid {} gid {} home {}{locked}", u.address, u.uid, u.gid, u.home.display());
            }
        }
        ("domain", Some(("add", a))) => {
            let d = a.get_one::<String>("domain").unwrap();
            let added = users::add_domain(&home, d).unwrap_or_else(|e| fail(e));
            outln!("{} {d}", if added { "added virtual domain" } else { "already a virtual domain:" });
            outln!("to accept its mail by SMTP, list it in control/rcpthosts");
        }
        ("domain", Some(("del", a))) => {
            let d = a.get_one::<String>("domain").unwrap();
            users::del_domain(&home, d).unwrap_or_else(|e| fail(e));
            outln!("removed virtual domain {d}");
        }
        ("domain", Some(("list", _))) => {
            for d in users::read_vdomains(&home).unwrap_or_else(|e| fail(e)) {
                outln!("{d}");
            }
        }
        ("rebuild", _) => {
            let n = users::rebuild(&home).unwrap_or_else(|e| fail(e));
            outln!("{n} records written to {}", home.users().join("cdb").display());
        }
        ("queue", Some(("list", a))) => {
            let items = listing::queue_listing(&home).unwrap_or_else(|e| fail(e));
            out::print(if a.get_flag("json") { listing::json_listing(&items) } else { listing::format_listing(&items) });
        }
        ("queue", Some(("show", a))) => {
            let id = queue_admin::parse_id(a.get_one::<String>("id").unwrap()).unwrap_or_else(|e| fail(e));
            let shown = queue_admin::show(&home, &id, a.get_flag("body")).unwrap_or_else(|e| fail(e));
            out::print(if a.get_flag("json") { queue_admin::json_show(&shown) } else { queue_admin::format_show(&shown) });
        }
        ("queue", Some(("delete", a))) => {
            let bounce = a.get_flag("bounce");
            each_id(a, |id| queue_admin::delete(&home, id, bounce).map(|o| queue_admin::said("deleted", id, o)))
        }
        ("queue", Some(("hold", a))) => each_id(a, |id| queue_admin::hold(&home, id).map(|o| queue_admin::said("held", id, o))),
        ("queue", Some(("release", a))) => each_id(a, |id| queue_admin::release(&home, id).map(|()| format!("released {id}"))),
        ("queue", Some(("requeue", a))) => {
            each_id(a, |id| queue_admin::requeue(&home, id).map(|()| format!("asked postern-send to retry {id} now")))
        }
        ("log", _) => {
            let id = queue_admin::parse_id(sub.get_one::<String>("id").unwrap()).unwrap_or_else(|e| fail(e));
            let files: Vec<PathBuf> =
                sub.get_many::<PathBuf>("file").map(|f| f.cloned().collect()).unwrap_or_else(|| queue_admin::log_files(&home));
            let lines = queue_admin::log_story(&id, &files).unwrap_or_else(|e| fail(e));
            if lines.is_empty() {
                usage_error(&format!("no log line names {id} (looked in {})", queue_admin::sources(&files)));
            }
            for l in lines {
                outln!("{l}");
            }
        }
        ("queue", Some(("count", _))) => {
            out::print(listing::format_count(&listing::queue_listing(&home).unwrap_or_else(|e| fail(e))));
        }
        ("queue", Some(("flush", _))) => {
            listing::flush(&home).unwrap_or_else(|e| fail(e));
            outln!("postern-send will retry every deferred delivery now");
        }
        ("stats", _) => {
            use postern::stats::report;
            let r = report::gather(&home).unwrap_or_else(|e| fail(e));
            let text = if sub.get_flag("prometheus") { report::format_prometheus(&r) } else { report::format_text(&r) };
            match sub.get_one::<PathBuf>("output") {
                Some(p) => report::write_file(p, &text).unwrap_or_else(|e| fail(e)),
                None => out::print(text),
            }
        }
        ("showctl", _) => {
            outln!("home: {}", home.root().display());
            out::print(control::format(&postern::config::check::effective(&home)));
            out::print(postern::dkim::keygen::sender_domains(&control::Control::new(&home)));
        }
        ("check", _) => {
            let problems = postern::config::check::check(&home);
            for p in &problems {
                outln!("{p}");
            }
            if !problems.is_empty() {
                eprintln!("{PROGRAM}: {} problem(s) in {}", problems.len(), home.root().display());
                std::process::exit(postern::error::EXIT_TEMP);
            }
            outln!("{}: no problems found", home.root().display());
        }
        ("dkim", Some(("keygen", a))) => {
            let domain = a.get_one::<String>("domain").unwrap();
            let key_type = a.get_one::<String>("type").unwrap();
            let selector = a
                .get_one::<String>("selector")
                .cloned()
                .unwrap_or_else(|| postern::dkim::keygen::default_selector(key_type, std::time::SystemTime::now()));
            // The key belongs to the queue's uid, which signs; as an ordinary user
            // (an instance) the key stays ours, which is the instance's queue uid.
            let owner = if postern::os::privs::is_root() {
                Some(postern::os::privs::Service::Queue.ids().unwrap_or_else(|e| fail(e)))
            } else {
                None
            };
            let c = control::Control::new(&home);
            let p = postern::dkim::keygen::keygen(&c, domain, &selector, key_type, owner).unwrap_or_else(|e| fail(e));
            outln!("wrote {} ({key_type}); publish this record in DNS:", p.path.display());
            outln!("{}", p.record);
        }
        ("dkim", Some(("show", a))) => {
            let c = control::Control::new(&home);
            let keys = postern::dkim::keygen::show(&c, a.get_one::<String>("domain").map(String::as_str)).unwrap_or_else(|e| fail(e));
            let mut broken = false;
            for k in keys {
                match k {
                    Ok(p) => outln!("{}", p.record),
                    Err(e) => {
                        broken = true;
                        eprintln!("{PROGRAM}: {e}");
                    }
                }
            }
            if broken {
                std::process::exit(postern::error::EXIT_TEMP);
            }
        }
        _ => unreachable!("clap requires a known subcommand"),
    }
    std::process::exit(EXIT_OK);
}
