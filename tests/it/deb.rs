//! scripts/deb: the package installed, upgraded, joined by packages that need
//! an MTA, removed and purged, in a throwaway Debian root. Never on this
//! machine itself: it has Postfix (the tests use smtp-source and smtp-sink),
//! which conflicts with mail-transport-agent and would be removed.
//!
//! The root is made once by debootstrap (minbase, this machine's release and
//! mirror, about a minute) and kept in /var/cache/postern-test/; each run
//! copies it (a few seconds), and packages apt downloads are kept in
//! /var/cache/postern-test/archives/. Every command runs in a mount namespace
//! of its own (unshare) with /proc mounted, chrooted into the copy, so nothing
//! stays mounted after it.

use crate::fixture::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CACHE: &str = "/var/cache/postern-test";

/// This machine's release (bookworm) and Debian mirror, from os-release and
/// apt's sources.
fn release_and_mirror() -> (String, String) {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_else(|| "bookworm".into());
    let mut sources = String::new();
    for f in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] {
        sources.push_str(&std::fs::read_to_string(f).unwrap_or_default());
    }
    let mirror = sources
        .split_whitespace()
        .find(|w| w.starts_with("http") && w.trim_end_matches('/').ends_with("/debian"))
        .unwrap_or("http://deb.debian.org/debian")
        .to_string();
    (codename, mirror)
}

fn run_ok(c: &mut Command, what: &str) -> Output {
    let o = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(o.status.success(), "{what}: {}", text(&o));
    o
}

/// The cached root, made on first use.
fn cached_root() -> PathBuf {
    let (codename, mirror) = release_and_mirror();
    let root = Path::new(CACHE).join(format!("{codename}-minbase"));
    let ready = Path::new(CACHE).join(format!("{codename}-minbase.ready"));
    if ready.exists() && root.is_dir() {
        return root;
    }
    // Half made (interrupted): start again.
    let _ = std::fs::remove_dir_all(&root);
    if Command::new("debootstrap").arg("--version").output().is_err() {
        run_ok(Command::new("apt-get").args(["install", "-y", "-q", "debootstrap"]), "apt-get install debootstrap");
    }
    let new = Path::new(CACHE).join(format!("{codename}-minbase.new.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&new);
    std::fs::create_dir_all(CACHE).unwrap();
    let o = Command::new("debootstrap").args(["--variant=minbase", &codename]).arg(&new).arg(&mirror).output().unwrap();
    assert!(o.status.success(), "debootstrap {codename} from {mirror} (the test needs this Debian mirror): {}", text(&o));
    // Services never start in it (invoke-rc.d asks this).
    std::fs::write(new.join("usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n").unwrap();
    run_ok(Command::new("chmod").arg("755").arg(new.join("usr/sbin/policy-rc.d")), "chmod policy-rc.d");
    std::fs::rename(&new, &root).unwrap_or_else(|e| panic!("rename {} to {}: {e}", new.display(), root.display()));
    std::fs::write(&ready, "").unwrap();
    root
}

/// A copy of the cached root for one test.
struct Root {
    dir: TempDir,
}

impl Root {
    fn new() -> Root {
        let cached = cached_root();
        let dir = TempDir::new("debroot");
        run_ok(Command::new("cp").arg("-a").arg(format!("{}/.", cached.display())).arg(dir.path().join("r")), "copy the root");
        std::fs::create_dir_all(Path::new(CACHE).join("archives/partial")).unwrap();
        Root { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("r")
    }

    /// `sh -c script` in the root, as root; its output, whatever the outcome.
    fn sh(&self, script: &str) -> Output {
        let r = self.path();
        let inner = "mount -t proc proc \"$R/proc\" && mount --bind \"$A\" \"$R/var/cache/apt/archives\" && \
                     exec chroot \"$R\" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C /bin/sh -c \"$S\"";
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", inner])
            .env("R", &r)
            .env("A", Path::new(CACHE).join("archives"))
            .env("S", script)
            .output()
            .unwrap()
    }

    fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(o.status.success(), "in the Debian root: {script}\n{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// apt-get install, with the lists refreshed once if the cached ones
    /// name packages the mirror no longer has.
    fn apt_install(&self, what: &str) -> String {
        let cmd = format!("apt-get install -y -q {what} 2>&1");
        let o = self.sh(&cmd);
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).into_owned();
        }
        self.ok("apt-get update -q");
        self.ok(&cmd)
    }

    fn file(&self, p: &str) -> PathBuf {
        self.path().join(p.trim_start_matches('/'))
    }
}

fn build_deb(version: &str, out: &Path) -> PathBuf {
    let o = run_ok(
        Command::new(repo().join("scripts/deb"))
            .args(["--no-build", "--version", version, "--out"])
            .arg(out)
            .env("POSTERN_BUILD", bin_dir()),
        "scripts/deb",
    );
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// Packages that provide mail-transport-agent.
fn mtas(root: &Root) -> Vec<String> {
    let out = root.ok("dpkg-query -W -f '${Package} ${Status} ${Provides}\\n'");
    out.lines()
        .filter(|l| l.contains("install ok installed") && l.contains("mail-transport-agent"))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs root (chroot, dpkg) and Debian's package mirror (debootstrap, apt-get): scripts/test runs it as root"]
fn deb_installs_upgrades_keeps_config_serves_mlmmj_and_purges_all_but_mail() {
    require_root();
    let out = TempDir::new("debs");
    let (first, second) = std::thread::scope(|s| {
        let a = s.spawn(|| build_deb("0.1.0-1", out.path()));
        let b = s.spawn(|| build_deb("0.1.0-2", out.path()));
        (a.join().unwrap(), b.join().unwrap())
    });
    let info = run_ok(Command::new("dpkg-deb").arg("-f").arg(&first).args(["Provides", "Conflicts", "Replaces"]), "dpkg-deb -f");
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert_eq!(info.matches("mail-transport-agent").count(), 3, "{info}");

    let root = Root::new();
    std::fs::copy(&first, root.file("/tmp/postern-1.deb")).unwrap();
    std::fs::copy(&second, root.file("/tmp/postern-2.deb")).unwrap();
    root.ok("echo pkg.test > /etc/mailname");

    // Install: service users, the home, the programs, sendmail.
    root.apt_install("/tmp/postern-1.deb");
    root.ok("getent passwd postern-q postern-s postern-d postern-r postern-v >/dev/null");
    assert_eq!(root.ok("stat -c '%a %U' /var/postern/bin/postern-queue"), "6711 postern-q\n");
    assert_eq!(root.ok("readlink -f /usr/sbin/sendmail"), "/var/postern/bin/postern-sendmail\n");
    assert_eq!(std::fs::read_to_string(root.file("/var/postern/control/me")).unwrap(), "pkg.test\n", "the domain from /etc/mailname");
    assert!(root.file("/etc/init.d/postern").exists());
    // Mail, and an edited control file.
    root.ok("POSTERN_HOME=/var/postern /var/postern/bin/postern-admin domain add v.test >/dev/null && \
         POSTERN_HOME=/var/postern /var/postern/bin/postern-admin user add amy@v.test --password pw >/dev/null && \
         echo 'Subject: kept' > /var/postern/mail/v.test/amy/Maildir/new/1.kept");
    root.ok("echo edited.test > /var/postern/control/me && echo 7 > /var/postern/control/concurrencyremote && \
         echo '# edited' >> /etc/cron.d/postern");

    // Upgrade to a rebuilt package: the edits stay, the programs are the new ones.
    let upgrade = root.apt_install("/tmp/postern-2.deb");
    assert!(upgrade.contains("0.1.0-2"), "{upgrade}");
    assert_eq!(root.ok("dpkg-query -W -f '${Version}' postern"), "0.1.0-2");
    assert_eq!(std::fs::read_to_string(root.file("/var/postern/control/me")).unwrap(), "edited.test\n");
    assert_eq!(std::fs::read_to_string(root.file("/var/postern/control/concurrencyremote")).unwrap(), "7\n");
    assert!(std::fs::read_to_string(root.file("/etc/cron.d/postern")).unwrap().ends_with("# edited\n"), "the conffile keeps its edit");
    assert_eq!(root.ok("stat -c '%a %U' /var/postern/bin/postern-queue"), "6711 postern-q\n");
    assert_eq!(root.ok("cmp /usr/lib/postern/bin/postern-send /var/postern/bin/postern-send && echo same"), "same\n");

    // Packages that need an MTA take ours and pull in no other.
    let apt = root.apt_install("mlmmj bsd-mailx");
    assert_eq!(mtas(&root), vec!["postern".to_string()], "{apt}");
    let new: Vec<&str> = apt
        .lines()
        .skip_while(|l| !l.starts_with("The following NEW packages will be installed"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .flat_map(|l| l.split_whitespace())
        .collect();
    assert!(new.contains(&"mlmmj") && new.contains(&"bsd-mailx"), "{apt}");
    for other in ["exim4", "exim4-daemon-light", "postfix", "sendmail-bin", "nullmailer", "msmtp-mta", "dma", "opensmtpd"] {
        assert!(!new.contains(&other), "apt-get pulled in {other}:\n{apt}");
    }

    // Mail flows through what the package installed: bsd-mailx's mail(1) hands
    // a message to our sendmail, the scheduler delivers it, and it is counted.
    // postern-start is this script's child, stopped (TERM) and waited for by it.
    let flow = root.ok("export POSTERN_HOME=/var/postern; /var/postern/bin/postern-start >/tmp/start.log 2>&1 & pid=$!; \
         echo 'through the package' | mail -s hello amy@v.test; \
         i=0; while [ $i -lt 200 ] && [ $(ls /var/postern/mail/v.test/amy/Maildir/new | wc -l) -lt 2 ]; do sleep 0.1; i=$((i+1)); done; \
         kill -TERM $pid; wait $pid; \
         grep -l 'Subject: hello' /var/postern/mail/v.test/amy/Maildir/new/* >/dev/null || { cat /tmp/start.log; exit 1; }; \
         /var/postern/bin/postern-admin stats --prometheus");
    assert!(flow.contains("postern_deliveries_total{channel=\"local\",result=\"delivered\"} 1\n"), "{flow}");
    root.ok("dpkg -r bsd-mailx mlmmj >/dev/null && rm -f /tmp/start.log");

    // Remove: programs and service files go; configuration, users and mail stay.
    root.ok("dpkg -r postern >/dev/null");
    assert!(!root.file("/var/postern/bin").exists() && !root.file("/usr/lib/postern").exists());
    assert!(!root.file("/etc/init.d/postern").exists() && !root.file("/usr/sbin/sendmail").exists());
    assert_eq!(std::fs::read_to_string(root.file("/var/postern/control/me")).unwrap(), "edited.test\n");
    assert!(root.file("/var/postern/users/cdb").exists());
    assert!(root.file("/var/postern/mail/v.test/amy/Maildir/new/1.kept").exists());

    // Purge: nothing of postern is left but the mail.
    root.ok("dpkg -P postern >/dev/null 2>&1 && rm /tmp/postern-1.deb /tmp/postern-2.deb");
    assert!(root.file("/var/postern/mail/v.test/amy/Maildir/new/1.kept").exists(), "mail is never purged");
    let left = root.ok(
        "find / -xdev \\( -path /proc -o -path /var/postern/mail \\) -prune -o \\( -name '*postern*' -o -path '/var/postern/*' \\) -print",
    );
    assert_eq!(left, "/var/postern\n", "postern files left after purge:\n{left}");
    let status = root.ok("dpkg-query -W -f '${Status}' postern 2>&1 || true");
    assert!(!status.contains("installed") && !status.contains("config-files"), "dpkg still knows postern: {status}");
}
