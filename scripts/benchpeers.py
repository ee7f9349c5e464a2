"""scripts/benchpeers.py: `scripts/bench --vs-peers`, postern side by side with the
servers a sysadmin would pick instead, on this machine, in one run.

Peers: Postfix (SMTP -> Maildir through a virtual domain, default durability) and
Dovecot POP3 and IMAP (on Maildirs filled exactly like postern's). Both run as private
instances under one temporary directory, on 127.0.0.1 and high ports:
  - Postfix: `postfix -c DIR start` with its own main.cf/master.cf in DIR and its
    own queue_directory and data_directory; nothing in /etc/postfix is read or
    written, port 25 is not used;
  - Dovecot: `dovecot -c FILE` with base_dir under the temporary directory and
    passwd-file users.
Mail in the peers' Maildirs belongs to nobody:nogroup, so no user is created.
Both are stopped at the end, also on errors and Ctrl-C.

Workloads, postern and peer alternating (order swapped on every other run), each
row after one discarded warm-up run per server, then `runs` runs (default 5):
  1. SMTP -> Maildir with Postfix's smtp-source: 5,000 x 2 KiB with 1, 10 and 50
     sessions, 1,000 x 100 KiB with 10; messages/s from the start until all are
     in new/ (counted with inotify); then 10 sessions with postern's arrival
     checks on (authcheck 1, DNS from a loopback unbound), beside the plain row;
  2. latency at light load: one message every 50 ms for 20 s, from DATA end (the
     final dot sent) to the file in new/ (p50, p99);
  3. memory: peak RSS and PSS of all the suite's processes during the 10- and
     50-session runs, and of one idle SMTP session after EHLO;
  4. relay: smtp-source's 10 sessions in, relayed to Postfix's smtp-sink (postern
     through an [IP] smtproute, Postfix through a transport map), at most 10
     deliveries at once for both; messages/s until smtp-sink has them all; then
     postern signing each with an RSA DKIM key;
  5. POP3 with Python's poplib: login+STAT+UIDL of 10,000 messages (first and
     second login), RETR of all 10,000, 10 concurrent clients on 1,000 each;
  6. IMAP (`--only imap` runs just these), plain IMAP on loopback against Dovecot's
     imap (ssl = no; postern's instance has no certificate, so LOGIN in the clear),
     a thin socket client timing each command and checking every answer:
     login+SELECT of 10,000 x 2 KiB (the first after filling, on a fresh copy each
     run, and a later one), FETCH FLAGS, UID FETCH of three header fields, FETCH
     BODY.PEEK[] of the 10,000 and of a mix of 1,000 with base64 attachments,
     SEARCH SUBJECT and SEARCH BODY, 10 clients at once on mailboxes of 1,000 each,
     and RSS/PSS of 1 and 100 sessions in IDLE;
  7. the machine's own limits from the same run: durable creates per second
     (create + write 2 KiB + fsync + close + fsync of the directory, 1 and 8
     writers in one directory), forks per second (fork + exit, and fork + exec).

Each row prints its median with the spread (min-max) of the runs beside it, the
ratio of the medians, the goal (issue 14) and the verdict: met when the median
ratio meets the goal and postern's slowest run still beats the peer's fastest.

Root is required (apt-get installs postfix, dovecot-core, dovecot-pop3d and
dovecot-imapd when missing; the postern instance runs as a system install would).
"""
import ctypes, ctypes.util, os, poplib, select, shutil, signal, socket, statistics, struct
import subprocess, sys, tempfile, threading, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTANCE = os.path.join(REPO, "scripts", "instance")
SOURCE = "/usr/sbin/smtp-source"
DOMAIN = "bench.test"
PW = "bench-pw"


def pw_hash(cache=[]):
    """PW as SHA-512 crypt ($6$, 5,000 rounds), which both servers check: postern
    hashes new passwords with argon2id, which costs tens of milliseconds a login
    by design, and a benchmark of logins must not compare hash functions."""
    if not cache:
        out = subprocess.run(["openssl", "passwd", "-6", "-salt", "postern.bench", PW], capture_output=True, text=True)
        if out.returncode != 0 or not out.stdout.startswith("$6$"):
            die(f"openssl passwd -6 failed: {out.stderr.strip()}")
        cache.append(out.stdout.strip())
    return cache[0]


def log(msg):
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def die(msg):
    raise SystemExit(f"bench --vs-peers: {msg}")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    if r.returncode != 0:
        die(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    return r


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, what, secs=20):
    t = time.monotonic() + secs
    while time.monotonic() < t:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    die(f"{what} does not answer on 127.0.0.1:{port}")


def message(n, size=2048, to=f"u@{DOMAIN}"):
    head = f"From: bench@sender.test\nTo: {to}\nSubject: bench {n}\n\n"
    line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return (head + body)[:size - 1].encode() + b"\n"


# ---------------------------------------------------------------- packages

def ensure_packages():
    need = []
    if not shutil.which("openssl"):
        need.append("openssl")  # pw_hash, and scripts/instance's certificate
    if not os.access("/usr/sbin/postfix", os.X_OK) or not os.access(SOURCE, os.X_OK):
        need.append("postfix")
    if not os.access("/usr/sbin/dovecot", os.X_OK):
        need.append("dovecot-core")
    if not os.access("/usr/lib/dovecot/pop3", os.X_OK):
        need.append("dovecot-pop3d")
    if not os.access("/usr/lib/dovecot/imap", os.X_OK):
        need.append("dovecot-imapd")
    if not need:
        return
    log(f"installing {' '.join(need)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["debconf-set-selections"], input="postfix postfix/main_mailer_type select No configuration\n",
                   text=True, check=False)
    subprocess.run(["apt-get", "update", "-q"], env=env, check=False, capture_output=True)
    # policy-rc.d stops the packages' own services from starting where it is set;
    # either way the benchmark only uses private instances.
    run(["apt-get", "install", "-y", "-q", *need], env=env)


# ---------------------------------------------------------------- inotify

class NewFiles:
    """Counts files arriving in a Maildir new/ (created, linked or renamed in)."""
    IN_CREATE, IN_MOVED_TO, IN_Q_OVERFLOW = 0x100, 0x80, 0x4000

    def __init__(self, path):
        self.path = path
        self.fd = -1
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        try:
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0 and libc.inotify_add_watch(fd, path.encode(), self.IN_CREATE | self.IN_MOVED_TO) >= 0:
                self.fd = fd
            elif fd >= 0:
                os.close(fd)
        except AttributeError:
            pass
        self.count = 0
        self.overflow = False

    def _drain(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        i = 0
        while i + 16 <= len(buf):
            _wd, mask, _cookie, ln = struct.unpack_from("iIII", buf, i)
            if mask & self.IN_Q_OVERFLOW:
                self.overflow = True
            elif mask & (self.IN_CREATE | self.IN_MOVED_TO):
                self.count += 1
            i += 16 + ln

    def wait(self, n, deadline):
        """Block until n files have arrived since creation; returns arrival time."""
        while True:
            if self.fd < 0 or self.overflow:
                if len(os.listdir(self.path)) >= n + self.base:
                    return time.monotonic()
                time.sleep(0.001 if n == 1 else 0.005)
            else:
                if self.count >= n:
                    return time.monotonic()
                self._drain(0.05)
            if time.monotonic() > deadline:
                return None

    def __enter__(self):
        self.base = len(os.listdir(self.path))
        return self

    def __exit__(self, *a):
        if self.fd >= 0:
            os.close(self.fd)


# ---------------------------------------------------------------- memory

def smaps(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        return None
    return rss, pss


def descendants(root):
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            kids.setdefault(int(s[s.rfind(")") + 2:].split()[1]), []).append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    out, i = [root], 0
    while i < len(out):
        out.extend(kids.get(out[i], []))
        i += 1
    return out


TRASH = []


def discard(path):
    """Move path out of the way instead of deleting it; everything goes at the end.
    On ext4 without a journal (the test machines' /tmp) every new inode is chosen
    past the ones freed in the last minutes, so deleting thousands of files just
    before a run makes that run's file creations slower, whichever server it is."""
    d = os.path.join(TRASH[0], str(len(os.listdir(TRASH[0]))))
    os.rename(path, d)


def pids_with_exe_under(prefix, comm=None):
    """Processes running a program under prefix (and named comm, if given:
    postern-listen forks its SMTP sessions, which call themselves postern-smtpd)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/exe").startswith(prefix):
                    if comm is None or open(f"/proc/{d}/comm").read().strip() == comm:
                        out.append(int(d))
            except OSError:
                pass
    return out


class MemSampler(threading.Thread):
    """Peak total RSS and PSS (KiB) and process count of pids() while running."""

    def __init__(self, pids, interval=0.25):
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.stop = threading.Event()
        self.rss = self.pss = self.n = 0

    def run(self):
        while not self.stop.is_set():
            r = p = n = 0
            for pid in self.pids():
                m = smaps(pid)
                if m:
                    r, p, n = r + m[0], p + m[1], n + 1
            self.rss, self.pss, self.n = max(self.rss, r), max(self.pss, p), max(self.n, n)
            self.stop.wait(self.interval)

    def finish(self):
        self.stop.set()
        self.join()
        return self.rss, self.pss, self.n


# ---------------------------------------------------------------- the servers

class Postern:
    """A fresh scripts/instance (as root: privilege separation on) with a virtual user,
    its SMTP listener allowing 100 sessions (the instance's default is 10)."""

    def __init__(self, base, tag, users=("u",), smtp=True, start=True, relay=None, control=None, dkim=False, imap=False):
        """imap: also serve plain IMAP on imap_port; relay: (sink port, concurrency) to
        relay everything from 127.0.0.1 to
        smtp-sink through an [IP] smtproute; control: extra control files;
        dkim: an RSA key for sender.test (the sender smtp-source writes), so a
        relay client's messages are signed."""
        self.dir = os.path.join(base, f"postern-{tag}")
        self.smtp_port, self.pop3_port = free_port(), free_port()
        self.imap_port = free_port() if imap else None
        run([INSTANCE, "create", self.dir, "--domain", DOMAIN, "--smtp-port", str(self.smtp_port),
             "--pop3-port", str(self.pop3_port)] + (["--imap-port", str(self.imap_port)] if imap else []))
        for u in users:
            run([INSTANCE, "adduser", self.dir, u, PW])
        if imap:
            # Plain IMAP as Dovecot's ssl = no: without a certificate imapup
            # offers no STARTTLS and takes LOGIN in the clear (loopback only).
            for f in ("servercert.pem", "serverkey.pem"):
                if os.path.exists(os.path.join(self.dir, "control", f)):
                    os.unlink(os.path.join(self.dir, "control", f))
        self.bin = os.path.join(self.dir, "bin") + "/"
        # The same password hash as the peer's (see pw_hash): the login rows then
        # time the servers, not two hash functions of different cost.
        virtual = os.path.join(self.dir, "users", "virtual")
        with open(virtual) as f:
            lines = [l.split(":") for l in f.read().splitlines() if l]
        with open(virtual, "w") as f:
            f.write("".join(":".join([l[0], pw_hash()] + l[2:]) + "\n" for l in lines))
        run([self.bin + "postern-admin", "rebuild"], env=dict(os.environ, POSTERN_HOME=self.dir))
        files = dict(control or {})
        if relay:
            files["smtproutes"] = f":[127.0.0.1]:{relay[0]}\n"
            files["concurrencyremote"] = f"{relay[1]}\n"
        for name, value in files.items():
            with open(os.path.join(self.dir, "control", name), "w") as f:
                f.write(value)
        if dkim:
            run([self.bin + "postern-admin", "dkim", "keygen", "sender.test", "--type", "rsa", "--selector", "bench"],
                env=dict(os.environ, POSTERN_HOME=self.dir))
        self.listen = None
        if smtp:
            # registered as the instance's smtp service, so `instance start` leaves it be
            # and `instance stop` stops it.
            rules = os.path.join(self.dir, "control", "tcp.smtp")
            with open(rules, "w") as f:
                f.write(':allow,RELAYCLIENT=""\n' if relay else ":allow\n")
            run([self.bin + "postern-listen", "-X", rules, rules + ".cdb"])
            os.chmod(rules + ".cdb", 0o644)
            self.listen = subprocess.Popen(
                [self.bin + "postern-listen", "-u", "postern-d", "-c", "100", "-C", "100", "-x", rules + ".cdb",
                 "127.0.0.1", str(self.smtp_port), self.bin + "postern-smtpd"],
                env=dict(os.environ, POSTERN_HOME=self.dir), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "log", "smtp.log"), "a"),
                start_new_session=True)
            with open(os.path.join(self.dir, "run", "smtp.pid"), "w") as f:
                f.write(str(self.listen.pid))
        if start:
            run([INSTANCE, "start", self.dir])
            if smtp:
                wait_port(self.smtp_port, "postern-listen (smtp)")

    def maildir(self, user="u"):
        return os.path.join(self.dir, "mail", DOMAIN, user, "Maildir")

    def pids(self):
        return pids_with_exe_under(self.bin)

    def smtpd_pids(self):
        return pids_with_exe_under(self.bin, "postern-smtpd")

    def close(self):
        subprocess.run([INSTANCE, "stop", self.dir], capture_output=True)
        if self.listen:
            try:
                os.killpg(self.listen.pid, signal.SIGKILL)
            except OSError:
                pass
            self.listen.wait()
        discard(self.dir)


def nobody():
    import pwd, grp
    return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid


def make_maildir(path, uid, gid):
    for sub in ("", "new", "cur", "tmp"):
        p = os.path.join(path, sub)
        os.makedirs(p, exist_ok=True)
        os.chown(p, uid, gid)
        os.chmod(p, 0o700)


class Postfix:
    """A private Postfix: config, queue and data directories under base/postfix;
    smtpd on 127.0.0.1:port; virtual domain bench.test, u@bench.test -> Maildir."""

    MASTER_CF = """# private benchmark instance (scripts/benchpeers.py): no chroot
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
smtp      unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

    def __init__(self, base, sink_port=None, relay_concurrency=10):
        """sink_port: relay mail for sink.test to smtp-sink on 127.0.0.1 (the
        relay row), at most relay_concurrency deliveries at once."""
        self.top = os.path.join(base, "postfix")
        self.conf = os.path.join(self.top, "etc")
        self.mail = os.path.join(self.top, "mail")
        self.port = free_port()
        uid, gid = nobody()
        os.makedirs(self.conf)
        os.makedirs(os.path.join(self.top, "data"))
        os.makedirs(os.path.join(self.top, "queue"))
        os.chown(os.path.join(self.top, "data"), *postfix_ids())
        make_maildir(os.path.join(self.mail, DOMAIN, "u"), uid, gid)
        os.chmod(self.top, 0o755)
        with open(os.path.join(self.conf, "vmailbox"), "w") as f:
            f.write(f"u@{DOMAIN} {DOMAIN}/u/\n")
        main = f"""# private benchmark instance (scripts/benchpeers.py)
compatibility_level = 3.6
config_directory = {self.conf}
queue_directory = {self.top}/queue
data_directory = {self.top}/data
myhostname = peer.bench.invalid
mydomain = bench.invalid
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
biff = no
append_dot_mydomain = no
default_transport = error:no outbound mail from the benchmark
relay_transport = error:no outbound mail from the benchmark
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.conf}/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 100
maillog_file = {self.top}/postfix.log
maillog_file_prefixes = {self.top}
smtputf8_enable = no
"""
        if sink_port:
            with open(os.path.join(self.conf, "transport"), "w") as f:
                f.write(f"sink.test smtp:[127.0.0.1]:{sink_port}\n")
            main += (f"transport_maps = texthash:{self.conf}/transport\n"
                     f"smtp_destination_concurrency_limit = {relay_concurrency}\n"
                     f"initial_destination_concurrency = {relay_concurrency}\n")
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(main)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(self.MASTER_CF.format(port=self.port))
        self.ctl("start")
        wait_port(self.port, "Postfix smtpd")

    def ctl(self, what):
        r = subprocess.run(["/usr/sbin/postfix", "-c", self.conf, what], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
        if r.returncode != 0 and what != "stop":
            tail = ""
            try:
                with open(os.path.join(self.top, "postfix.log")) as f:
                    tail = "".join(f.readlines()[-15:])
            except OSError:
                pass
            die(f"postfix -c {self.conf} {what} failed:\n{r.stdout}{r.stderr}{tail}")

    def maildir(self):
        return os.path.join(self.mail, DOMAIN, "u")

    def master_pid(self):
        try:
            with open(os.path.join(self.top, "queue", "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pids(self):
        m = self.master_pid()
        return descendants(m) if m else []

    def smtpd_pids(self):
        out = []
        for pid in self.pids()[1:]:
            try:
                if os.readlink(f"/proc/{pid}/exe").endswith("/smtpd"):
                    out.append(pid)
            except OSError:
                pass
        return out

    def empty_new(self):
        new = os.path.join(self.maildir(), "new")
        st = os.stat(new)
        discard(new)
        os.mkdir(new, st.st_mode & 0o7777)
        os.chown(new, st.st_uid, st.st_gid)

    def close(self):
        self.ctl("stop")
        m = self.master_pid()
        t = time.monotonic() + 10
        while m and time.monotonic() < t:
            try:
                os.kill(m, 0)
            except OSError:
                break
            time.sleep(0.05)


def postfix_ids():
    import pwd
    p = pwd.getpwnam("postfix")
    return p.pw_uid, p.pw_gid


class Dovecot:
    """A private Dovecot POP3 on 127.0.0.1:port (and with imap, IMAP on imap_port,
    no TLS); users USER@bench.test with Maildirs under base/NAME/mail/USER, owned
    by nobody."""

    def __init__(self, base, users, imap=False, name="dovecot"):
        self.top = os.path.join(base, name)
        self.port = free_port()
        self.imap_port = free_port() if imap else 0
        uid, gid = nobody()
        run_dir = os.path.join(self.top, "run")
        os.makedirs(run_dir)
        os.chmod(self.top, 0o755)
        self.mail = os.path.join(self.top, "mail")
        with open(os.path.join(self.top, "users"), "w") as f:
            for u in users:
                make_maildir(os.path.join(self.mail, u), uid, gid)
                f.write(f"{u}@{DOMAIN}:{{SHA512-CRYPT}}{pw_hash()}:{uid}:{gid}::{self.mail}/{u}::\n")
        os.chmod(self.mail, 0o755)
        os.chmod(os.path.join(self.top, "users"), 0o644)
        self.conf = os.path.join(self.top, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(f"""# private benchmark instance (scripts/benchpeers.py)
protocols = {"pop3 imap" if imap else "pop3"}
listen = 127.0.0.1
base_dir = {run_dir}
instance_name = postern-bench-{name}
# the IMAP rows hold 100 connections of one user from one address at once
default_process_limit = 300
default_client_limit = 3000
protocol imap {{
  mail_max_userip_connections = 1000
}}
log_path = {self.top}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{self.mail}/%n
first_valid_uid = 100
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%u {self.top}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.top}/users
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0
  }}
}}
""")
        # dovecot's daemons must not inherit a pipe of ours: output to a file
        with open(os.path.join(self.top, "start.log"), "w") as out:
            r = subprocess.run(["/usr/sbin/dovecot", "-c", self.conf], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        if r.returncode != 0:
            with open(os.path.join(self.top, "start.log")) as f:
                die(f"dovecot -c {self.conf} failed:\n{f.read()}")
        wait_port(self.port, "Dovecot pop3-login")
        if imap:
            wait_port(self.imap_port, "Dovecot imap-login")

    def maildir(self, u):
        return os.path.join(self.mail, u)

    def pids(self):
        try:
            with open(os.path.join(self.top, "run", "master.pid")) as f:
                return descendants(int(f.read().split()[0]))
        except (OSError, ValueError, IndexError):
            return []

    def close(self):
        subprocess.run(["/usr/sbin/dovecot", "-c", self.conf, "stop"], capture_output=True, stdin=subprocess.DEVNULL)
        pidf = os.path.join(self.top, "run", "master.pid")
        t = time.monotonic() + 10
        while os.path.exists(pidf) and time.monotonic() < t:
            time.sleep(0.05)


# ---------------------------------------------------------------- workloads

def smtp_source(port, new, n, sessions, size, pids):
    """messages/s from the start of smtp-source until n files are in new/, and the
    peak (RSS, PSS, processes) of pids() meanwhile."""
    sampler = MemSampler(pids)
    with NewFiles(new) as nf:
        sampler.start()
        t0 = time.monotonic()
        src = subprocess.Popen([SOURCE, "-s", str(sessions), "-m", str(n), "-l", str(size), "-f", "bench@sender.test",
                                "-t", f"u@{DOMAIN}", f"127.0.0.1:{port}"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t1 = nf.wait(n, t0 + 600)
        err = src.communicate()[1]
        mem = sampler.finish()
        if src.returncode != 0:
            die(f"smtp-source failed: {err.decode(errors='replace')[:300]}")
        if t1 is None:
            die(f"only {len(os.listdir(new)) - nf.base} of {n} delivered in 600 s")
    return n / (t1 - t0), mem


def smtp_send(port, rcpt, data, after=None):
    """One SMTP transaction; returns the time the message's final dot was sent
    (DATA end) and what after(t) returned, called after the 250, before QUIT."""
    s = socket.create_connection(("127.0.0.1", port), 10)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise OSError("connection closed")
            if line[3:4] != b"-":
                return line

    def cmd(c, want=b"2"):
        s.sendall(c)
        r = reply()
        if not r.startswith(want):
            raise OSError(f"{c!r} -> {r!r}")

    try:
        if not reply().startswith(b"220"):
            raise OSError("no greeting")
        cmd(b"EHLO bench.client\r\n")
        cmd(b"MAIL FROM:<bench@sender.test>\r\n")
        cmd(f"RCPT TO:<{rcpt}>\r\n".encode())
        cmd(b"DATA\r\n", b"354")
        s.sendall(data.replace(b"\n", b"\r\n") + b".\r\n")
        t = time.monotonic()
        r = reply()
        if not r.startswith(b"2"):
            raise OSError(f"end of DATA -> {r!r}")
        r = after(t) if after else None
        try:
            s.sendall(b"QUIT\r\n")
            reply()
        except OSError:
            pass
        return t, r
    finally:
        s.close()


def latency(port, new, secs=20.0, every=0.05):
    """ms from DATA end (the final dot sent) to the file in new/, one message
    every 50 ms; (p50, p99, messages)."""
    out = []
    data = message(0)
    with NewFiles(new) as nf:
        start = time.monotonic()
        k = 0
        while time.monotonic() - start < secs:
            k += 1
            tend, t = smtp_send(port, f"u@{DOMAIN}", data, lambda tend: nf.wait(k, tend + 30))
            if t is None:
                die("a latency message was not delivered in 30 s")
            out.append((t - tend) * 1000)
            nxt = start + k * every
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)
    out.sort()
    return out[len(out) // 2], out[min(len(out) - 1, int(len(out) * 0.99))], len(out)


class Sink:
    """Postfix's smtp-sink on 127.0.0.1 (as nobody), counting the messages it
    accepted (its -c counters, read from its output)."""

    def __init__(self, base):
        self.port = free_port()
        self.out = open(os.path.join(base, "sink.out"), "w+b")
        self.proc = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "nobody", "-c", f"127.0.0.1:{self.port}", "1024"],
                                     stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT)
        wait_port(self.port, "smtp-sink")

    def count(self):
        self.out.seek(max(0, os.fstat(self.out.fileno()).st_size - 200))
        tail = self.out.read().decode(errors="replace")
        k = tail.rfind("mesg=")
        if k < 0:
            return 0
        digits = "".join(c for c in tail[k + 5:k + 20].split()[0] if c.isdigit())
        return int(digits or 0)

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        self.out.close()


def relay(port, sink, n, sessions):
    """messages/s from the start of smtp-source (n x 2 KiB for sink@sink.test)
    until smtp-sink has accepted all n."""
    base = sink.count()
    t0 = time.monotonic()
    src = subprocess.Popen([SOURCE, "-s", str(sessions), "-m", str(n), "-l", "2048", "-f", "bench@sender.test",
                            "-t", "sink@sink.test", f"127.0.0.1:{port}"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while sink.count() - base < n:
        if time.monotonic() - t0 > 600:
            die(f"only {sink.count() - base} of {n} relayed in 600 s")
        time.sleep(0.005)
    t1 = time.monotonic()
    err = src.communicate()[1]
    if src.returncode != 0:
        die(f"smtp-source failed: {err.decode(errors='replace')[:300]}")
    return n / (t1 - t0)


def unbound(d):
    """unbound on 127.0.0.1 serving sender.test's SPF and DMARC records (the
    arrival checks' DNS); (process, port), or None without unbound."""
    if not os.access("/usr/sbin/unbound", os.X_OK):
        return None
    port = free_port()
    conf = os.path.join(d, "unbound.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
  interface: 127.0.0.1@{port}
  port: {port}
  do-daemonize: no
  use-syslog: no
  logfile: ""
  chroot: ""
  username: ""
  pidfile: ""
  directory: "{d}"
  do-ip6: no
  module-config: "iterator"
  local-zone: "." refuse
  local-zone: "test." static
  local-data: 'sender.test. TXT "v=spf1 ip4:127.0.0.1 -all"'
  local-data: '_dmarc.sender.test. TXT "v=DMARC1; p=none"'
remote-control:
  control-enable: no
""")
    p = subprocess.Popen(["/usr/sbin/unbound", "-d", "-c", conf], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(0.5)
    return p, port


def idle_session(port, smtpd_pids):
    """RSS and PSS (KiB) of the smtpd serving one session after EHLO."""
    before = set(smtpd_pids())
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.recv(512)
    s.sendall(b"EHLO bench.client\r\n")
    time.sleep(0.5)
    s.recv(4096)
    now = set(smtpd_pids())
    cand = (now - before) or now
    best = None
    for pid in cand:
        m = smaps(pid)
        if m and (best is None or m[0] > best[0]):
            best = m
    s.close()
    return best


def fill(maildir, n, uid, gid):
    # Named as postern's delivery and Dovecot's LDA name them: ,S= the file's size
    # and ,W= its size with CR LF line ends; both servers read the sizes there.
    for i in range(n):
        m = message(i)
        wire = len(m) + m.count(b"\n") - m.count(b"\r\n")
        p = os.path.join(maildir, "new", f"{1700000000 + i}.M{i:06d}P1Q{i}.bench,S={len(m)},W={wire}")
        with open(p, "wb") as f:
            f.write(m)
        os.chown(p, uid, gid)


def pop_login(port, user):
    p = poplib.POP3("127.0.0.1", port, timeout=120)
    p.user(user)
    p.pass_(PW)
    return p


def pop_stat_uidl(port, user):
    t = time.monotonic()
    p = pop_login(port, user)
    n, _ = p.stat()
    u = p.uidl()[1]
    dt = time.monotonic() - t
    p.quit()
    if n != len(u):
        die(f"POP3 STAT {n} but UIDL {len(u)}")
    return n, dt


def pop_retr_all(port, user):
    p = pop_login(port, user)
    n, _ = p.stat()
    t = time.monotonic()
    for i in range(1, n + 1):
        p.retr(i)
    dt = time.monotonic() - t
    p.quit()
    return n, dt


def pop_concurrent(port, users):
    code = ("import sys, poplib\n"
            "p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=120); p.user(sys.argv[2]); p.pass_(sys.argv[3])\n"
            "n, _ = p.stat()\n"
            "for i in range(1, n + 1): p.retr(i)\n"
            "p.quit(); print(n)\n")
    t = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", code, str(port), u, PW], stdout=subprocess.PIPE, text=True)
             for u in users]
    got = sum(int(p.communicate()[0].strip() or 0) for p in procs)
    return got, time.monotonic() - t


# ---------------------------------------------------------------- IMAP

def imap_message(i, attach=False):
    """Message i of an IMAP mailbox, LF line ends: 2 KiB of text, or (attach)
    multipart with a base64 attachment of 50-500 KiB; the same bytes every run.
    Subject word topic{i%10}, body word kw{i%50}x: the SEARCH rows' hits."""
    head = (f"From: Sender {i % 20} <sender{i % 20}@sender.test>\nTo: <u@{DOMAIN}>\n"
            f"Subject: bench {i} topic{i % 10}\nDate: Tue, 1 Dec 2026 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d} +0000\n"
            f"Message-ID: <{i}.bench@sender.test>\nMIME-Version: 1.0\n")
    line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n"
    text = line * 12 + f"the marker kw{i % 50:02d}x is here\n" + line * 12
    if not attach:
        m = (head + "Content-Type: text/plain; charset=us-ascii\n\n" + text)[:2047] + "\n"
        return m.encode()
    import base64, random
    blob = random.Random(i).randbytes((50 + i * 37 % 451) * 1024)
    b64 = base64.encodebytes(blob).decode()
    return (head + 'Content-Type: multipart/mixed; boundary="b-{0}"\n\n--b-{0}\nContent-Type: text/plain\n\n{1}\n'
            '--b-{0}\nContent-Type: application/octet-stream; name="a{0}.bin"\nContent-Transfer-Encoding: base64\n'
            'Content-Disposition: attachment; filename="a{0}.bin"\n\n{2}--b-{0}--\n').format(i, text, b64).encode()


def imap_fill(maildir, msgs):
    """msgs [(i, bytes)] into new/, named as both servers' deliveries name them."""
    st = os.stat(maildir)
    for i, m in msgs:
        wire = len(m) + m.count(b"\n") - m.count(b"\r\n")
        p = os.path.join(maildir, "new", f"{1700000000 + i}.M{i:06d}P1Q{i}.bench,S={len(m)},W={wire}")
        with open(p, "wb") as f:
            f.write(m)
        os.chown(p, st.st_uid, st.st_gid)


class Imap:
    """A plain IMAP client over loopback, as thin as possible so that the time is
    the server's: cmd() sends one command and returns everything up to and with
    its tagged OK (any other status dies)."""

    def __init__(self, port, user=None):
        self.s = socket.create_connection(("127.0.0.1", port), 300)
        self.buf = bytearray()
        self.n = 0
        while b"\r\n" not in self.buf:
            self._recv()
        if not self.buf.startswith(b"* OK"):
            die(f"IMAP greeting on port {port}: {bytes(self.buf[:200])!r}")
        self.buf.clear()
        if user:
            self.cmd(f'LOGIN "{user}" "{PW}"')

    def _recv(self):
        d = self.s.recv(1 << 20)
        if not d:
            die(f"IMAP server closed the connection; last: {bytes(self.buf[-300:])!r}")
        self.buf += d

    def send(self, text):
        self.n += 1
        tag = f"b{self.n}".encode()
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        return tag

    def wait(self, tag):
        mark = b"\r\n" + tag + b" "
        pos = 0
        while True:
            if self.buf.startswith(tag + b" "):
                k = -2
                break
            k = self.buf.find(mark, pos)
            if k >= 0:
                break
            pos = max(0, len(self.buf) - len(mark))
            self._recv()
        while self.buf.find(b"\r\n", k + 2) < 0:
            self._recv()
        end = self.buf.find(b"\r\n", k + 2) + 2
        out = bytes(self.buf[:end])
        del self.buf[:end]
        status = out[k + 2 + len(tag) + 1:].split(b" ", 1)[0]
        if status != b"OK":
            die(f"IMAP {tag.decode()} answered {out[k + 2:][:300]!r}")
        return out

    def cmd(self, text):
        return self.wait(self.send(text))

    def close(self):
        try:
            self.cmd("LOGOUT")
        except SystemExit:
            pass
        self.s.close()


def literals(resp):
    """The literals in a response: [bytes]."""
    out, i = [], 0
    while True:
        k = resp.find(b"}\r\n", i)
        if k < 0:
            return out
        o = resp.rfind(b"{", i, k)
        n = int(resp[o + 1:k])
        out.append(resp[k + 3:k + 3 + n])
        i = k + 3 + n


def fetch_lines(resp):
    return resp.count(b" FETCH (")


def crlf_bytes(m):
    return m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def imap_rows(base, table, runs, div, live):
    """Postern's imapd against Dovecot's imap on the same Maildir contents."""
    big, small, mixn = 10000 // div, 1000 // div, 1000 // div
    first_users = [f"first{k}" for k in range(runs + 1)]
    conc_users = [f"c{k}" for k in range(10)]
    users = ["big", "mix"] + first_users + conc_users
    pst = Postern(base, "imap", users=users, smtp=False, start=False, imap=True)
    live.append(pst)
    dove = Dovecot(base, users, imap=True, name="dovecot-imap")
    try:
        return _imap_rows(pst, dove, table, runs, big, small, mixn, first_users, conc_users, users)
    finally:
        dove.close()
        pst.close()
        live.remove(pst)


def _imap_rows(pst, dove, table, runs, big, small, mixn, first_users, conc_users, users):
    t = time.monotonic()
    two = [(i, imap_message(i)) for i in range(big)]
    mix = [(i, imap_message(i, i % 10 == 5)) for i in range(mixn)]
    for u in users:
        msgs = two if u == "big" or u.startswith("first") else mix if u == "mix" else two[:small]
        imap_fill(pst.maildir(u), msgs)
        imap_fill(dove.maildir(u), msgs)
    run([INSTANCE, "start", pst.dir])
    wait_port(pst.imap_port, "postern imap")
    log(f"IMAP: postern on 127.0.0.1:{pst.imap_port}, Dovecot on 127.0.0.1:{dove.imap_port}; "
        f"mailboxes filled in {time.monotonic() - t:.1f} s ({sum(len(m) for _, m in mix) >> 20} MiB in mix)")
    ports = {"postern": pst.imap_port, "peer": dove.imap_port}
    want = {"big": two, "mix": mix}

    def login_select(who, user, n):
        t = time.monotonic()
        c = Imap(ports[who], f"{user}@{DOMAIN}")
        r = c.cmd("SELECT INBOX")
        dt = time.monotonic() - t
        if f"* {n} EXISTS".encode() not in r:
            die(f"{who} IMAP SELECT of {user}'s INBOX does not show {n} messages: {r[:300]!r}")
        c.close()
        return dt * 1000, None

    # login+SELECT: the first after filling (a fresh mailbox each run) and later ones
    fresh = {who: iter(first_users) for who in ports}
    res = alternate(runs, 0, {who: (lambda w: lambda _c: login_select(w, next(fresh[w]), big))(who) for who in ports})
    table.add(f"IMAP login+SELECT, {big:,} msgs, first login after filling", [v for v, _ in res["postern"]],
              [v for v, _ in res["peer"]], "ms", "{:,.0f}", False, 1 / 1.2)
    res = alternate(runs, 0, {who: (lambda w: lambda _c: login_select(w, "big", big))(who) for who in ports})
    table.add(f"IMAP login+SELECT, {big:,} msgs, later login", [v for v, _ in res["postern"]],
              [v for v, _ in res["peer"]], "ms", "{:,.0f}", False, 1 / 1.2)

    def timed(who, user, command, check):
        """ms for one command on a logged-in, selected session; check(response)
        dies when the answer is wrong."""
        def f(_count):
            c = Imap(ports[who], f"{user}@{DOMAIN}")
            c.cmd("SELECT INBOX")
            t = time.monotonic()
            r = c.cmd(command)
            dt = time.monotonic() - t
            c.close()
            check(who, r)
            return dt * 1000, None
        return f

    def count_is(n):
        def check(who, r):
            if fetch_lines(r) != n:
                die(f"{who} IMAP FETCH answered {fetch_lines(r)} of {n} messages")
        return check

    def headers_of(msgs):
        def check(who, r):
            got = literals(r)
            if len(got) != len(msgs) or any(b"Subject: bench %d topic" % i not in g or b"Date: " not in g or b"To:" in g
                                            for (i, _), g in zip(msgs, got)):
                die(f"{who} IMAP header FETCH: {len(got)} of {len(msgs)} headers, or wrong fields")
        return check

    def bodies_of(msgs):
        def check(who, r):
            got = literals(r)
            if len(got) != len(msgs):
                die(f"{who} IMAP full FETCH answered {len(got)} of {len(msgs)} messages")
            for (i, m), g in zip(msgs, got):
                if g != crlf_bytes(m):
                    die(f"{who} IMAP full FETCH: message {i} differs ({len(g)} bytes, expected {len(crlf_bytes(m))})")
        return check

    def hits(n):
        def check(who, r):
            line = next((l for l in r.split(b"\r\n") if l.startswith(b"* SEARCH")), None)
            got = len(line.split()) - 2 if line else -1
            if got != n:
                die(f"{who} IMAP SEARCH found {got} messages, expected {n}")
        return check

    rows = [
        (f"IMAP FETCH 1:* (FLAGS), {big:,} msgs", "big", "FETCH 1:* (FLAGS)", count_is(big)),
        (f"IMAP UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]), {big:,} msgs", "big",
         "UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])", headers_of(two)),
        (f"IMAP FETCH 1:* (BODY.PEEK[]), {big:,} x 2 KiB", "big", "FETCH 1:* (BODY.PEEK[])", bodies_of(two)),
        (f"IMAP FETCH 1:* (BODY.PEEK[]), mix of {mixn:,} ({sum(len(m) for _, m in mix) >> 20} MiB, 1 in 10 with a 50-500 KiB attachment)",
         "mix", "FETCH 1:* (BODY.PEEK[])", bodies_of(mix)),
        (f"IMAP SEARCH SUBJECT topic3, {big:,} msgs", "big", "SEARCH SUBJECT topic3", hits(sum(1 for i, _ in two if i % 10 == 3))),
        (f"IMAP SEARCH BODY kw07x, {big:,} msgs", "big", "SEARCH BODY kw07x", hits(sum(1 for i, _ in two if i % 50 == 7))),
        (f"IMAP SEARCH BODY kw07x, mix of {mixn:,}", "mix", "SEARCH BODY kw07x", hits(sum(1 for i, _ in mix if i % 50 == 7))),
    ]
    for name, user, command, check in rows:
        res = alternate(runs, 0, {who: timed(who, user, command, check) for who in ports})
        table.add(name, [v for v, _ in res["postern"]], [v for v, _ in res["peer"]], "ms", "{:,.0f}", False, 1 / 1.2)

    # 10 clients at once, each on its own mailbox: login+SELECT+header fetch+full fetch
    conc_code = ("import sys, time\nsys.path.insert(0, sys.argv[1]); sys.dont_write_bytecode = True\n"
                 "import benchpeers as b\n"
                 "c = b.Imap(int(sys.argv[2]), sys.argv[3]); r = c.cmd('SELECT INBOX')\n"
                 "h = c.cmd('UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])')\n"
                 "f = c.cmd('FETCH 1:* (BODY.PEEK[])'); c.close()\n"
                 "print(b.fetch_lines(h), sum(map(len, b.literals(f))))\n")

    def concurrent(who):
        def f(_count):
            t = time.monotonic()
            procs = [subprocess.Popen([sys.executable, "-c", conc_code, os.path.join(REPO, "scripts"), str(ports[who]),
                                       f"{u}@{DOMAIN}"], stdout=subprocess.PIPE, text=True) for u in conc_users]
            outs = [p.communicate()[0].split() for p in procs]
            dt = time.monotonic() - t
            want_bytes = sum(len(crlf_bytes(m)) for _, m in two[:small])
            for u, o in zip(conc_users, outs):
                if o != [str(small), str(want_bytes)]:
                    die(f"{who} IMAP client {u} got {o} (headers, bytes), expected {small} {want_bytes}")
            return 10 * small / dt, None
        return f

    res = alternate(runs, 0, {who: concurrent(who) for who in ports})
    table.add(f"IMAP 10 clients at once, each login+SELECT+header FETCH+full FETCH of {small:,} x 2 KiB", [v for v, _ in res["postern"]],
              [v for v, _ in res["peer"]], "msg/s", goal=1.2)

    # memory of IDLE connections: the processes that appeared for them
    pids = {"postern": pst.pids, "peer": dove.pids}

    def idle_mem(who, n):
        before = set(pids[who]())
        conns = []
        for k in range(n):
            c = Imap(ports[who], f"big@{DOMAIN}")
            c.cmd("SELECT INBOX")
            c.s.sendall(b"i1 IDLE\r\n")
            while b"+ " not in c.buf:
                c._recv()
            conns.append(c)
        time.sleep(0.5)
        new = [p for p in pids[who]() if p not in before]
        rss = pss = 0
        for p in new:
            m = smaps(p)
            if m:
                rss, pss = rss + m[0], pss + m[1]
        for c in conns:
            c.s.close()
        time.sleep(0.5)
        return rss, pss, len(new)

    for n in (1, 100):
        m = {who: idle_mem(who, n) for who in ports}
        what = "one IDLE connection" if n == 1 else f"{n} IDLE connections"
        for k, name in ((0, "RSS"), (1, "PSS")):
            table.add(f"memory, IMAP {what} on {big:,} msgs ({m['postern'][2]} vs {m['peer'][2]} processes): {name}",
                      kib(m["postern"][k]), kib(m["peer"][k]), "MiB", "{:,.1f}", False, 1 / 1.2)


LIMITS_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
/* limits durable DIR WORKERS SECS: create + write 2 KiB + fsync + close + fsync DIR, in one shared DIR
   limits fork WORKERS SECS: fork + _exit + waitpid;  limits forkexec WORKERS SECS: fork + exec /bin/true + waitpid */
int main(int argc, char **argv) {
  int durable = strcmp(argv[1], "durable") == 0, ex = strcmp(argv[1], "forkexec") == 0;
  const char *dir = durable ? argv[2] : 0;
  int workers = atoi(argv[durable ? 3 : 2]); double secs = atof(argv[durable ? 4 : 3]);
  long *cnt = mmap(0, sizeof(long) * workers, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  char buf[2048]; memset(buf, 'x', sizeof buf);
  double t0 = now();
  for (int w = 0; w < workers; w++) if (fork() == 0) {
    long n = 0; char path[4096]; int dfd = durable ? open(dir, O_RDONLY | O_DIRECTORY) : -1;
    while (now() - t0 < secs) {
      if (durable) {
        snprintf(path, sizeof path, "%s/w%d.%ld", dir, w, n);
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
        if (fd < 0 || write(fd, buf, sizeof buf) != sizeof buf || fsync(fd) || close(fd) || fsync(dfd)) _exit(1);
      } else {
        pid_t p = fork();
        if (p == 0) { if (ex) execl("/bin/true", "true", (char *)0); _exit(ex ? 127 : 0); }
        int st; waitpid(p, &st, 0);
      }
      n++;
    }
    cnt[w] = n; _exit(0);
  }
  long total = 0; int st;
  for (int w = 0; w < workers; w++) { wait(&st); if (!WIFEXITED(st) || WEXITSTATUS(st)) return 1; }
  for (int w = 0; w < workers; w++) total += cnt[w];
  printf("%.0f\n", total / (now() - t0));
  return 0;
}
"""


def limits(tmp):
    """The machine's own limits, measured in the same temporary directory: rows of
    (what, rate). Durable creates as a mail queue makes them (a new file, its data
    and its directory entry on disk), forks as a delivery costs one."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return [("reference: no C compiler, limits not measured", "-")]
    src, exe = os.path.join(tmp, "limits.c"), os.path.join(tmp, "limits")
    with open(src, "w") as f:
        f.write(LIMITS_C)
    run([cc, "-O2", "-o", exe, src])
    out = []
    for w in (1, 8):
        d = os.path.join(tmp, f"durable{w}")
        os.makedirs(d)
        rate = float(run([exe, "durable", d, str(w), "3"]).stdout)
        out.append((f"reference: durable creates (create + write 2 KiB + fsync + close + fsync dir), {w} writer{'s' if w > 1 else ''} (per s)", rate))
        discard(d)
    for mode, what in (("fork", "fork + exit + wait"), ("forkexec", "fork + exec /bin/true + wait")):
        for w in (1, os.cpu_count() or 1):
            out.append((f"reference: {what}, {w} worker{'s' if w > 1 else ''} (per s)", float(run([exe, mode, str(w), "3"]).stdout)))
    return out


# ---------------------------------------------------------------- the table

class Table:
    """Each row: postern's and the peer's median over the runs with the spread
    (min-max) beside it, the ratio of the medians (postern / peer), the goal
    and the verdict. A row meets its goal when the median ratio meets it AND
    postern's slowest run still beats the peer's fastest (for "lower is
    better": postern's highest value is below the peer's lowest)."""

    HEAD = ("workload", "postern: median (min-max)", "peer: median (min-max)", "ratio", "goal", "verdict")

    def __init__(self):
        self.rows = []

    def add(self, workload, mine, peer, unit, fmt="{:,.0f}", higher_better=True, goal=None):
        mine = [v for v in (mine if isinstance(mine, list) else [mine]) if v is not None]
        peer = [v for v in (peer if isinstance(peer, list) else [peer]) if v is not None]
        u = f" {unit}" if unit else ""

        def cell(vs):
            if not vs:
                return "-"
            m = fmt.format(statistics.median(vs)) + u
            return m if len(vs) == 1 else f"{m} ({fmt.format(min(vs))}-{fmt.format(max(vs))})"

        ratio = goal_s = verdict = ""
        if mine and peer and statistics.median(peer):
            r = statistics.median(mine) / statistics.median(peer)
            ratio = f"{r:.2f}x"
            if goal is not None:
                if higher_better:
                    goal_s = f">= {goal:.2f}x"
                    ok = r >= goal and min(mine) > max(peer)
                else:
                    goal_s = f"<= {goal:.2f}x"
                    ok = r <= goal and max(mine) < min(peer)
                verdict = "met" if ok else "NOT met"
        name = workload + ("" if higher_better is None else (" (higher is better)" if higher_better else " (lower is better)"))
        self.rows.append((name, cell(mine), cell(peer), ratio, goal_s, verdict))
        print(f"  {name}: postern {self.rows[-1][1]}, peer {self.rows[-1][2]}, {ratio} {goal_s} {verdict}", file=sys.stderr, flush=True)

    def ref(self, workload, value):
        self.rows.append((workload, value, "", "", "", ""))
        print(f"  {workload}: {value}", file=sys.stderr, flush=True)

    def text(self):
        w = [max(len(r[i]) for r in self.rows + [self.HEAD]) for i in range(6)]
        fmt = lambda r: " | ".join([f"{r[0]:<{w[0]}}"] + [f"{r[i]:>{w[i]}}" for i in range(1, 6)])
        return "\n".join([fmt(self.HEAD), "-" * (sum(w) + 15)] + [fmt(r) for r in self.rows])

    def markdown(self):
        lines = ["| " + " | ".join(self.HEAD) + " |", "|---|---:|---:|---:|---|---|"]
        lines += [f"| {' | '.join(r)} |" for r in self.rows]
        return "\n".join(lines)


def machine():
    """cores, CPU model, memory, file system of the temporary directory, kernel."""
    cpu = mem = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1048576)
    tmp = tempfile.gettempdir()
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", tmp], capture_output=True, text=True).stdout.strip()
    if not fs:
        fs = subprocess.run(["stat", "-f", "-c", "%T", tmp], capture_output=True, text=True).stdout.strip()
    import platform
    return f"{os.cpu_count()} cores ({cpu}), {mem} RAM, {fs} under {tmp}, Linux {platform.release()}"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def kib(v):
    return v / 1024


def alternate(runs, warm, fns):
    """Run each of fns (who -> callable(count) -> (value, extra)) `runs` times,
    alternating and swapping the order on every other run, after one discarded
    warm-up run each (`warm` messages); {who: [(value, extra)]}."""
    for who, f in fns.items():
        v, _ = f(warm)
        log(f"{who}: warm-up {v:,.1f} (discarded)")
    res = {who: [] for who in fns}
    names = list(fns)
    for r in range(runs):
        for who in (names if r % 2 == 0 else names[::-1]):
            res[who].append(fns[who](None))
    return res


def main(quick=False, runs=5, markdown=None, only=None):
    """only: "imap" runs just the IMAP rows."""
    if os.geteuid() != 0:
        die("--vs-peers needs root (it installs Postfix and Dovecot and runs private instances of them)")
    ensure_packages()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    div = 5 if quick else 1
    versions = subprocess.run(["/usr/sbin/postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip() or "?"
    dv = run(["/usr/sbin/dovecot", "--version"]).stdout.split()[0]
    machine_line = machine()
    load0 = loadavg()
    print(f"machine: {machine_line}")
    print(f"date: {date}")
    print(f"peers: Postfix {versions} (virtual -> Maildir; relay to smtp-sink), Dovecot {dv} (POP3, IMAP); "
          f"one discarded warm-up run per server and row, then {runs} alternating run(s), median (min-max); "
          f"{'--quick: counts / 5' if quick else 'full counts'}", flush=True)
    def term(*_):
        raise SystemExit("bench --vs-peers: terminated")
    signal.signal(signal.SIGTERM, term)  # so the finally below stops the servers
    base = tempfile.mkdtemp(prefix="postern-vs-peers-")
    TRASH.append(os.path.join(base, "trash"))
    os.mkdir(TRASH[0])
    os.chmod(base, 0o755)
    table = Table()
    postfix = dovecot = sink = dns = None
    live = []
    relay_conc = 10
    try:
        if only != "imap":
            sink = Sink(base)
            postfix = Postfix(base, sink.port, relay_conc)
            log(f"Postfix private instance on 127.0.0.1:{postfix.port} (config {postfix.conf}); smtp-sink on {sink.port}")

            # 3b. one idle SMTP session (each server fresh, nothing else going on)
            pst = Postern(base, "idle")
            live.append(pst)
            mine = idle_session(pst.smtp_port, pst.smtpd_pids)
            pst.close(); live.remove(pst)
            peer = idle_session(postfix.port, postfix.smtpd_pids)
            idle = (mine, peer)

            def postern_smtp(tag, sessions, size, n, **opts):
                def f(count):
                    pst = Postern(base, f"{tag}-{len(os.listdir(TRASH[0]))}", **opts)
                    live.append(pst)
                    try:
                        return smtp_source(pst.smtp_port, os.path.join(pst.maildir(), "new"), count or n, sessions, size, pst.pids)
                    finally:
                        pst.close(); live.remove(pst)
                return f

            def postfix_smtp(sessions, size, n):
                def f(count):
                    postfix.empty_new()
                    return smtp_source(postfix.port, os.path.join(postfix.maildir(), "new"), count or n, sessions, size, postfix.pids)
                return f

            # 1 + 3a. SMTP -> Maildir
            rows = [(5000 // div, 2048, 1), (5000 // div, 2048, 10), (5000 // div, 2048, 50), (1000 // div, 102400, 10)]
            for (n, size, sessions) in rows:
                res = alternate(runs, max(50, n // 5), {"postern": postern_smtp(f"smtp{sessions}-{size}", sessions, size, n),
                                                        "peer": postfix_smtp(sessions, size, n)})
                for who in res:
                    for rate, m in res[who]:
                        log(f"{who}: {n} x {size // 1024} KiB, {sessions} sessions: {rate:.0f} msg/s, peak RSS {m[0] // 1024} MiB PSS {m[1] // 1024} MiB in {m[2]} processes")
                table.add(f"SMTP -> Maildir, {n:,} x {size // 1024} KiB, {sessions} session{'s' if sessions > 1 else ''}",
                          [r for r, _ in res["postern"]], [r for r, _ in res["peer"]], "msg/s", goal=1.5)
                if size == 2048 and sessions in (10, 50):
                    mem = {who: [m for _, m in res[who]] for who in res}
                    procs = {who: max(m[2] for m in mem[who]) for who in mem}
                    table.add(f"memory, all processes, peak during {sessions} sessions: RSS",
                              [kib(m[0]) for m in mem["postern"]], [kib(m[0]) for m in mem["peer"]], "MiB", "{:,.1f}", False, 0.2)
                    table.add(f"memory, all processes, peak during {sessions} sessions: PSS ({procs['postern']} vs {procs['peer']} processes)",
                              [kib(m[1]) for m in mem["postern"]], [kib(m[1]) for m in mem["peer"]], "MiB", "{:,.1f}", False, 0.2)
            if idle[0] and idle[1]:
                table.add("memory, one idle SMTP session after EHLO: smtpd RSS", kib(idle[0][0]), kib(idle[1][0]), "MiB", "{:,.1f}", False)
                table.add("memory, one idle SMTP session after EHLO: smtpd PSS", kib(idle[0][1]), kib(idle[1][1]), "MiB", "{:,.1f}", False)

            # Like with like: postern's arrival checks (SPF, DKIM, DMARC, ARC against a
            # loopback unbound) beside the plain 10-session row; Postfix checks nothing.
            n = 5000 // div
            dnsdir = os.path.join(base, "dns")
            os.makedirs(dnsdir)
            dns = unbound(dnsdir)
            if dns:
                ctl = {"authcheck": "1\n", "dnsresolvers": f"127.0.0.1:{dns[1]}\n"}
                res = alternate(runs, max(50, n // 5), {"postern": postern_smtp("authcheck", 10, 2048, n, control=ctl),
                                                        "peer": postfix_smtp(10, 2048, n)})
                table.add(f"SMTP -> Maildir, {n:,} x 2 KiB, 10 sessions, postern's arrival checks on (authcheck 1; Postfix checks nothing)",
                          [r for r, _ in res["postern"]], [r for r, _ in res["peer"]], "msg/s")
            else:
                table.ref("SMTP -> Maildir with the arrival checks: not run (no /usr/sbin/unbound)", "-")

            # 2. latency at light load, from DATA end to the file in new/
            secs = 20.0 / div

            def lat_postern(_count):
                pst = Postern(base, f"latency-{len(os.listdir(TRASH[0]))}")
                live.append(pst)
                try:
                    lm = latency(pst.smtp_port, os.path.join(pst.maildir(), "new"), secs)
                finally:
                    pst.close(); live.remove(pst)
                return lm[0], lm

            def lat_postfix(_count):
                postfix.empty_new()
                lp = latency(postfix.port, os.path.join(postfix.maildir(), "new"), secs)
                return lp[0], lp

            res = alternate(runs, 0, {"postern": lat_postern, "peer": lat_postfix})
            for who in res:
                for _, l in res[who]:
                    log(f"latency {who}: p50 {l[0]:.1f} ms, p99 {l[1]:.1f} ms ({l[2]} msgs)")
            for k, q in ((0, "p50"), (1, "p99")):
                table.add(f"latency, 1 msg / 50 ms for {secs:.0f} s, DATA end -> file in new/: {q}",
                          [l[k] for _, l in res["postern"]], [l[k] for _, l in res["peer"]], "ms", "{:,.1f}", False, 1.0)

            # Relay: an [IP] smtproute to smtp-sink against Postfix's transport to it,
            # smtp-source's 10 sessions in, at most 10 deliveries out for both.
            n = 5000 // div

            def relay_postern(tag, **opts):
                def f(count):
                    pst = Postern(base, f"{tag}-{len(os.listdir(TRASH[0]))}", relay=(sink.port, relay_conc), **opts)
                    live.append(pst)
                    try:
                        return relay(pst.smtp_port, sink, count or n, 10), None
                    finally:
                        pst.close(); live.remove(pst)
                return f

            def relay_postfix(count):
                return relay(postfix.port, sink, count or n, 10), None

            res = alternate(runs, max(50, n // 5), {"postern": relay_postern("relay"), "peer": relay_postfix})
            table.add(f"relay to smtp-sink, {n:,} x 2 KiB, 10 sessions in, concurrency {relay_conc} out",
                      [r for r, _ in res["postern"]], [r for r, _ in res["peer"]], "msg/s", goal=1.5)
            res = alternate(runs, max(50, n // 5), {"postern": relay_postern("relay-dkim", dkim=True), "peer": relay_postfix})
            table.add(f"the same, postern signing with DKIM (rsa-sha256, 2048 bits; Postfix does not sign)",
                      [r for r, _ in res["postern"]], [r for r, _ in res["peer"]], "msg/s")
            postfix.close()
            postfix = None

            # 4. POP3
            big, small = 10000 // div, 1000 // div
            users = ["big"] + [f"c{i}" for i in range(10)]
            pst = Postern(base, "pop3", users=users, smtp=False, start=False)
            live.append(pst)
            dovecot = Dovecot(base, users)
            for u in users:
                n = big if u == "big" else small
                md = pst.maildir(u)
                st = os.stat(md)
                fill(md, n, st.st_uid, st.st_gid)
                st = os.stat(dovecot.maildir(u))
                fill(dovecot.maildir(u), n, st.st_uid, st.st_gid)
            run([INSTANCE, "start", pst.dir])
            wait_port(pst.pop3_port, "postern pop3")
            log(f"Dovecot private instance on 127.0.0.1:{dovecot.port}; mailboxes filled")
            ports = {"postern": pst.pop3_port, "peer": dovecot.port}
            r = {}
            for who in ("postern", "peer"):
                r[who, "first"] = pop_stat_uidl(ports[who], f"big@{DOMAIN}")[1]
            for who in ("peer", "postern"):
                r[who, "second"] = pop_stat_uidl(ports[who], f"big@{DOMAIN}")[1]
            for who in ("postern", "peer"):
                n, dt = pop_retr_all(ports[who], f"big@{DOMAIN}")
                if n != big:
                    die(f"{who} POP3 shows {n} of {big} messages")
                r[who, "retr"] = n / dt
            for who in ("peer", "postern"):
                got, dt = pop_concurrent(ports[who], [f"c{i}@{DOMAIN}" for i in range(10)])
                if got != 10 * small:
                    die(f"{who} POP3 clients got {got} of {10 * small} messages")
                r[who, "conc"] = got / dt
            table.add(f"POP3 login+STAT+UIDL, {big:,} msgs, first login", r["postern", "first"] * 1000, r["peer", "first"] * 1000,
                      "ms", "{:,.0f}", False, 1 / 1.2)
            table.add(f"POP3 login+STAT+UIDL, {big:,} msgs, second login", r["postern", "second"] * 1000, r["peer", "second"] * 1000,
                      "ms", "{:,.0f}", False, 1 / 1.2)
            table.add(f"POP3 RETR all {big:,} x 2 KiB, 1 poplib client", r["postern", "retr"], r["peer", "retr"], "msg/s", goal=1.2)
            table.add(f"POP3 RETR all, 10 clients x {small:,} x 2 KiB each", r["postern", "conc"], r["peer", "conc"], "msg/s", goal=1.2)
            dovecot.close()
            dovecot = None
            pst.close(); live.remove(pst)

        # 5. IMAP
        if only in (None, "imap"):
            imap_rows(base, table, runs, div, live)

        # 6. the machine's own limits, in the same directory
        if only != "imap":
            lim = os.path.join(base, "limits")
            os.makedirs(lim)
            for what, rate in limits(lim):
                table.ref(what, rate if isinstance(rate, str) else f"{rate:,.0f}")
    finally:
        for p in list(live):
            p.close()
        if postfix:
            postfix.close()
        if dovecot:
            dovecot.close()
        if sink:
            sink.close()
        if dns:
            dns[0].terminate()
            dns[0].wait()
        shutil.rmtree(base, ignore_errors=True)

    load = f"load average {load0} at the start, {loadavg()} at the end"
    print()
    print(f"machine: {machine_line}; {load}")
    print(f"date: {date}")
    print(table.text())
    if markdown:
        with open(markdown, "w") as f:
            f.write(f"Measured {date} on {machine_line} ({load}); Postfix {versions}, Dovecot {dv}; "
                    f"one discarded warm-up run per server and row, then {runs} alternating run(s): "
                    f"median (min-max){', --quick' if quick else ''}; ratio = postern / peer; a goal is met when the "
                    f"median ratio meets it and postern's slowest run beats the peer's fastest.\n\n")
            f.write(table.markdown() + "\n")
        print(f"\nMarkdown written to {markdown}")
