#!/usr/bin/python3
"""bench/bench.py - pop3d against its peers on loopback (issue 7).

Python 3 standard library only. Run as root, from `make bench` (which
installs the bench packages and builds ./pop3d and bench/empty first):

    python3 bench/bench.py [--quick] [--runs N] [--keep] [--servers pop3d,dovecot,popa3d]

Generates deterministic data into a temporary directory, runs each server
(one at a time) on 127.0.0.1, drives it with mpop, Python poplib and a
minimal pipelined reader, and prints one table. Nothing here fails on a
timing: it prints figures. See bench/README.md.
"""

import argparse
import base64
import datetime
import os
import platform
import poplib
import pwd
import random
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
import pop3lib  # noqa: E402  (crypt_hash, proc_tree, proc_status, free_port, port_listening, wait_for)

POP3D = os.path.abspath(os.environ.get("POP3D") or os.path.join(REPO, "pop3d"))
EMPTY = os.path.join(HERE, "empty")
POPREAD = os.path.join(HERE, "popread")
POPA3D_DIR = os.environ.get("POPA3D_DIR", "/var/cache/pop3d-bench/popa3d")
BENCH_USER = "pop3dbench"
PASSWORD = "bench-Pw-1"
SEED = 7
MB = 1e6

COMMANDS = []       # what was run, for the report


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def note_cmd(argv, comment=""):
    s = shlex.join(argv) + comment
    if s not in COMMANDS:
        COMMANDS.append(s)


# ------------------------------------------------------------------ data

WORDS = ("the of and to in is that for it as was with be by on not he this are or his "
         "from at which but have an they you were her she there been one all we their "
         "has would when if so no will more about can its out up them some could into "
         "than then other time only new these two may first any like now my such make "
         "over our even most me state after also made many did must before back see "
         "through way where get much go well your know should down work year because "
         "come people just say each those take day good how long little use man here "
         "mailbox server message octets delivery transfer protocol queue header body "
         "attachment meeting invoice report quarterly budget schedule review draft").split()


class Corpus:
    """Deterministic message bodies and headers, built from pools so that
    generating a gigabyte takes seconds."""

    def __init__(self, seed=SEED):
        self.rng = random.Random(seed)
        rng = self.rng
        lines = []
        for _ in range(4000):
            n = rng.randint(3, 14)
            s = " ".join(rng.choice(WORDS) for _ in range(n))
            r = rng.random()
            if r < 0.02:
                s = "." + s                     # needs dot-stuffing
            elif r < 0.03:
                s = ">From " + s                # an escaped From_ in a body
            elif r < 0.04:
                s = "-- "
            lines.append(s.encode() + b"\n")
        self.text = lines
        raw = bytes(rng.getrandbits(8) for _ in range(300000))
        b64 = base64.encodebytes(raw)            # 76-column lines, LF
        self.b64 = b64
        self.b64lines = b64.count(b"\n")

    def text_block(self, rng, octets):
        out = []
        n = 0
        while n < octets:
            if rng.random() < 0.12:
                out.append(b"\n")               # paragraph break
                n += 1
            s = self.text[rng.randrange(len(self.text))]
            out.append(s)
            n += len(s)
        return b"".join(out)

    def b64_block(self, rng, octets):
        out = []
        n = 0
        while n < octets:
            start = rng.randrange(self.b64lines - 200) * 77
            take = min(octets - n, 77 * 200)
            take -= take % 77
            if take == 0:
                break
            out.append(self.b64[start:start + take])
            n += take
        return b"".join(out)

    def body(self, rng, size):
        """A body of about size octets: text, or text plus a base64 part."""
        if size < 20000 or rng.random() < 0.3:
            return b"Content-Type: text/plain; charset=us-ascii\n\n" + self.text_block(rng, size)
        textpart = self.text_block(rng, min(4000, size // 10))
        att = self.b64_block(rng, size - len(textpart))
        return (b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"=_b\"\n\n"
                b"--=_b\nContent-Type: text/plain; charset=us-ascii\n\n" + textpart +
                b"\n--=_b\nContent-Type: application/pdf; name=\"report.pdf\"\n"
                b"Content-Transfer-Encoding: base64\n\n" + att + b"\n--=_b--\n")

    @staticmethod
    def headers(i, copy=0):
        t = 1700000000 + i * 37 + copy * 100000
        date = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
        d = date.strftime("%a, %d %b %Y %H:%M:%S +0000").encode()
        return (b"Return-Path: <sender%d@example.org>\n"
                b"Received: from mx.example.org (mx.example.org [192.0.2.1])\n"
                b"\tby mail.example.net (Postfix) with ESMTPS id B%05d%04d\n"
                b"\tfor <bench@example.net>; %s\n"
                b"Received: from client.example.org by mx.example.org; %s\n"
                b"Date: %s\nFrom: Sender %d <sender%d@example.org>\n"
                b"To: Bench <bench@example.net>\nSubject: benchmark message %d copy %d\n"
                b"Message-ID: <%d.%d.bench@example.org>\n"
                % (i % 97, copy, i, d, d, d, i % 97, i % 97, i, copy, i, copy))


def size_mix(rng, count, total):
    """Sizes with a realistic mix: mostly small text, some HTML-sized,
    attachments, a few big ones; scaled to add up to about total."""
    sizes = []
    for _ in range(count):
        r = rng.random()
        if r < 0.60:
            s = rng.uniform(1500, 12000)
        elif r < 0.85:
            s = rng.uniform(12000, 100000)
        elif r < 0.97:
            s = rng.uniform(100000, 1000000)
        else:
            s = rng.uniform(1000000, 5000000)
        sizes.append(s)
    k = total / sum(sizes)
    return [max(600, int(s * k)) for s in sizes]


FROM_LINE = b"From bench@example.org Thu Nov 27 12:00:00 2025\n"


def write_messages_mbox(path, msgs):
    with open(path, "wb") as f:
        for m in msgs:
            f.write(FROM_LINE)
            f.write(m)
            f.write(b"\n")


def write_maildir(path, msgs_iter):
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    n = 0
    for i, m in msgs_iter:
        name = "%d.M%dP%d.bench:2,S" % (1700000000 + i, i, SEED)
        with open(os.path.join(path, "cur", name), "wb") as f:
            f.write(m)
        n += 1
    return n


class Data:
    """All data sets, in a temporary directory owned by the bench user."""

    def __init__(self, root, quick=False):
        self.root = root
        self.quick = quick
        self.sets = {}

    def build(self):
        t0 = time.monotonic()
        c = Corpus()
        rng = random.Random(SEED + 1)
        n1k = 1000
        total = 100 * 1000 * 1000 if not self.quick else 10 * 1000 * 1000
        sizes = size_mix(rng, n1k, total)
        bodies = [c.body(rng, s) for s in sizes]
        msgs = [Corpus.headers(i) + b for i, b in enumerate(bodies)]
        d = self.root
        p = os.path.join(d, "mbox-1k")
        write_messages_mbox(p, msgs)
        self.sets["mbox-1k"] = ("mbox", p, len(msgs))
        p = os.path.join(d, "maildir-1k")
        write_maildir(p, enumerate(msgs))
        self.sets["maildir-1k"] = ("maildir", p, len(msgs))
        # 1 GB: ten copies of the thousand, each with its own headers (own UIDLs).
        copies = 10 if not self.quick else 2
        p = os.path.join(d, "mbox-1g")
        with open(p, "wb") as f:
            for k in range(copies):
                for i, b in enumerate(bodies):
                    f.write(FROM_LINE + Corpus.headers(i, k + 1) + b + b"\n")
        self.sets["mbox-1g"] = ("mbox", p, copies * len(msgs))
        # 100k small messages, as a Maildir.
        n100k = 100000 if not self.quick else 10000
        rng = random.Random(SEED + 2)
        small = [c.text_block(rng, int(rng.uniform(800, 6000))) for _ in range(997)]
        p = os.path.join(d, "maildir-100k")
        write_maildir(p, ((i, Corpus.headers(i, 50) + b"\n" + small[i % 997])
                          for i in range(n100k)))
        self.sets["maildir-100k"] = ("maildir", p, n100k)
        # The same files under Dovecot's names (,S= and ,W=): hard links, no more data.
        p2 = os.path.join(d, "maildir-100k-w")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(p2, sub), exist_ok=True)
        for name in os.listdir(os.path.join(p, "cur")):
            src = os.path.join(p, "cur", name)
            with open(src, "rb") as f:
                data = f.read()
            w = len(data) + data.count(b"\n") - data.count(b"\r\n")
            os.link(src, os.path.join(p2, "cur", "%s,S=%d,W=%d:2,S"
                                      % (name.split(":")[0], len(data), w)))
        self.sets["maildir-100k-w"] = ("maildir", p2, n100k)
        # A small mbox for the sessions/sec test.
        p = os.path.join(d, "mbox-small")
        write_messages_mbox(p, msgs[:10])
        self.sets["mbox-small"] = ("mbox", p, 10)
        self.gen_seconds = time.monotonic() - t0

    def describe(self, name):
        kind, path, count = self.sets[name]
        if kind == "mbox":
            size = os.path.getsize(path)
        else:
            size = 0
            for sub in ("cur", "new"):
                with os.scandir(os.path.join(path, sub)) as it:
                    for e in it:
                        size += e.stat().st_size
        return kind, path, count, size

    def fingerprint(self, name):
        kind, path, _ = self.sets[name]
        if kind == "mbox":
            st = os.stat(path)
            return (st.st_size, st.st_mtime_ns)
        return tuple(sorted(os.listdir(os.path.join(path, "cur"))) +
                     sorted(os.listdir(os.path.join(path, "new"))))


# ------------------------------------------------------------------ processes

tree_cpu = pop3lib.tree_cpu


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def vmhwm_kb(pid):
    v = pop3lib.proc_status(pid).get("VmHWM")
    return int(v[0]) if v else 0


children = pop3lib.children
descendants = pop3lib.descendants


def resident_kb(pids):
    """The resident memory of the processes pids together, in kB: their
    present pages (from /proc/PID/pagemap, which gives page frame numbers
    to root) counted once each, so a library page they all map counts once,
    as it takes memory once. The RSS of the group, where summing each
    process's RSS would count every shared page again per process."""
    frames = set()
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in pids:
        try:
            with open("/proc/%d/maps" % pid) as f:
                ranges = [l.split()[0].split("-") for l in f if "[vsyscall]" not in l]
            fd = os.open("/proc/%d/pagemap" % pid, os.O_RDONLY)
        except OSError:
            continue
        try:
            for lo, hi in ranges:
                lo, hi = int(lo, 16) // page, int(hi, 16) // page
                data = os.pread(fd, (hi - lo) * 8, lo * 8)
                for (e,) in struct.iter_unpack("<Q", data):
                    if e >> 63:                         # present
                        frames.add(e & ((1 << 55) - 1))
        except OSError:
            pass
        finally:
            os.close(fd)
    return len(frames) * page // 1024


class RssSampler(threading.Thread):
    """Every ~0.5 ms: the VmHWM of each process procs() names, summed. The
    peak of that sum bounds the memory of all of a session's processes
    together at any instant (VmHWM is each process's own peak so far); the
    short-lived ones (pop3d's signer and hashing child, a few ms) are caught
    by the sampling rate. seen: the processes and their last VmHWM."""

    def __init__(self, procs):
        super().__init__(daemon=True)
        self.procs = procs
        self.peak = 0
        self.seen = {}
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            total = 0
            for pid in self.procs():
                h = vmhwm_kb(pid)
                if h:
                    self.seen[pid] = (comm(pid), h)
                total += h
            self.peak = max(self.peak, total)
            time.sleep(0.0005)

    def stop(self):
        self.halt.set()
        self.join()


class Activated:
    """systemd-socket-activate --accept --inetd on 127.0.0.1."""

    def __init__(self, argv, tmp, name):
        self.port = pop3lib.free_port()
        full = ["systemd-socket-activate", "--accept", "--inetd",
                "-l", "127.0.0.1:%d" % self.port] + argv
        note_cmd(full[:3] + ["-l", "127.0.0.1:PORT"] + argv)
        self.log = open(os.path.join(tmp, "%s.log" % name), "ab")
        self.proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True, close_fds=True)
        if not pop3lib.wait_for(lambda: pop3lib.port_listening(self.port), timeout=10):
            self.stop()
            raise RuntimeError("systemd-socket-activate did not listen")

    def root(self):
        return self.proc.pid

    def sessions(self):
        return [p for p in pop3lib.proc_tree(self.proc.pid) if p != self.proc.pid]

    def idle(self):
        return pop3lib.wait_for(lambda: not self.sessions(), timeout=10)

    def stop(self):
        pop3lib.stop_group(self.proc)
        self.log.close()


# ------------------------------------------------------------------ servers

class Pop3d:
    name = "pop3d"
    maildir = True

    def __init__(self, tmp, data, uid, gid):
        self.tmp = tmp
        self.users = os.path.join(tmp, "pop3d.users")
        h = pop3lib.crypt_hash(PASSWORD, "$6$")
        with open(self.users, "w") as f:
            for ds, (kind, path, _) in data.sets.items():
                f.write("%s:%s:%d:%d:bench:%s\n" % (ds, h, uid, gid,
                                                     path + "/" if kind == "maildir" else path))
            self.update = os.path.join(data.root, "update.mbox")   # a copy, for the QUIT rows
            f.write("update:%s:%d:%d:bench:%s\n" % (h, uid, gid, self.update))
        os.chmod(self.users, 0o600)
        self.locks = os.path.join(tmp, "pop3d-locks")
        os.makedirs(self.locks, mode=0o700, exist_ok=True)
        self.act = None

    def available(self):
        return os.access(POP3D, os.X_OK)

    def start(self):
        self.act = Activated([POP3D, "-f", self.users, "-l", self.locks], self.tmp, "pop3d")
        self.port = self.act.port

    def use(self, ds):
        return ds                   # user name for the data set

    def sessions(self):
        return self.act.sessions()

    def root(self):
        return self.act.root()

    def idle(self):
        return self.act.idle()

    def stop(self):
        if self.act:
            self.act.stop()
            self.act = None


class Popa3d(Pop3d):
    """Debian's popa3d (PAM, /var/mail/USER, privsep user popa3d). The Debian
    package conflicts with dovecot-pop3d, so deps.sh --bench unpacks it into
    POPA3D_DIR instead of installing it; it uses the system accounts, so we add
    a dedicated user and remove it (and what we created) afterwards."""
    name = "popa3d"
    maildir = False

    def __init__(self, tmp, data, uid, gid):
        self.tmp = tmp
        self.data = data
        self.bin = os.path.join(POPA3D_DIR, "usr/sbin/popa3d")
        self.spool = "/var/mail/" + BENCH_USER
        self.act = None
        self.created = []

    def available(self):
        return os.access(self.bin, os.X_OK)

    def setup(self):
        try:
            pwd.getpwnam("popa3d")
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir",
                            "/var/lib/popa3d", "--shell", "/usr/sbin/nologin", "popa3d"],
                           check=True)
            self.created.append(("user", "popa3d"))
        if not os.path.isdir("/var/lib/popa3d"):
            os.makedirs("/var/lib/popa3d", mode=0o755)
            self.created.append(("dir", "/var/lib/popa3d"))
        # the bench user's system password: the same sha512crypt scheme
        subprocess.run(["usermod", "-p", pop3lib.crypt_hash(PASSWORD, "$6$"), BENCH_USER],
                       check=True)

    def cleanup(self):
        if os.path.lexists(self.spool):
            os.unlink(self.spool)
        for kind, what in reversed(self.created):
            if kind == "user":
                subprocess.run(["userdel", what], check=False)
            elif kind == "dir":
                shutil.rmtree(what, ignore_errors=True)
        self.created = []

    def start(self):
        self.setup()
        self.act = Activated([self.bin], self.tmp, "popa3d")
        self.port = self.act.port

    def use(self, ds):
        kind, path, _ = self.data.sets[ds]
        if kind != "mbox":
            return None
        if os.path.lexists(self.spool):
            os.unlink(self.spool)
        os.link(path, self.spool)       # same inode: same bytes, no copy
        return BENCH_USER

    def stop(self):
        Pop3d.stop(self)
        self.cleanup()


class Dovecot:
    """Dovecot's own daemon with a private configuration."""
    name = "dovecot"
    maildir = True
    tls = False
    cert = key = None

    def __init__(self, tmp, data, uid, gid):
        self.tmp = os.path.join(tmp, "dovecot")
        self.data = data
        # Dovecot runs as nobody, with read access only: it cannot write its
        # X-UID/X-IMAPbase/Status headers into the shared mboxes.
        nobody = pwd.getpwnam("nobody")
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
        self.proc = None

    def available(self):
        return shutil.which("dovecot") is not None and \
            os.path.exists("/usr/lib/dovecot/pop3")

    def start(self):
        t = self.tmp
        os.makedirs(t, exist_ok=True)
        os.chmod(t, 0o755)
        h = pop3lib.crypt_hash(PASSWORD, "$6$")
        home = os.path.join(t, "home")
        lines = []
        for ds, (kind, path, _) in self.data.sets.items():
            uhome = os.path.join(home, ds)
            os.makedirs(os.path.join(uhome, "index"), exist_ok=True)
            for dp, dn, fn in os.walk(uhome):
                os.chown(dp, self.uid, self.gid)
            if kind == "mbox":
                loc = "mbox:%s/mail:INBOX=%s:INDEX=%s/index" % (uhome, path, uhome)
                os.makedirs(os.path.join(uhome, "mail"), exist_ok=True)
                os.chown(os.path.join(uhome, "mail"), self.uid, self.gid)
            else:
                loc = "maildir:%s:INDEX=%s/index:CONTROL=%s/index" % (path, uhome, uhome)
            lines.append("%s:{SHA512-CRYPT}%s:%d:%d::%s::userdb_mail=%s\n"
                         % (ds, h, self.uid, self.gid, uhome, loc))
        pw = os.path.join(t, "passwd")
        with open(pw, "w") as f:
            f.writelines(lines)
        os.chmod(pw, 0o644)
        self.port = pop3lib.free_port()
        conf = os.path.join(t, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("""# private configuration for the pop3d benchmark
base_dir = {t}/run
state_dir = {t}/state
log_path = {t}/dovecot.log
protocols = pop3
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
first_valid_gid = 1
mail_fsync = never
pop3_no_flag_updates = yes
pop3_uidl_format = %08Xu%08Xv
mbox_lazy_writes = yes
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {pw}
}}
userdb {{
  driver = passwd-file
  args = {pw}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {plain_port}
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
""".format(t=t, pw=pw, plain_port=0 if self.tls else self.port,
           tls_port=self.port if self.tls else 0,
           ssl="ssl = required\nssl_cert = <%s\nssl_key = <%s" % (self.cert, self.key)
           if self.tls else "ssl = no"))
        note_cmd(["dovecot", "-F", "-c", "DIR/dovecot.conf"])
        self.log = open(os.path.join(t, "stderr.log"), "ab")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        if not pop3lib.wait_for(lambda: pop3lib.port_listening(self.port), timeout=15):
            self.stop()
            raise RuntimeError("dovecot did not listen; see %s/dovecot.log" % t)

    def use(self, ds):
        return ds

    def root(self):
        return self.proc.pid

    def sessions(self):
        return [p for p in pop3lib.proc_tree(self.proc.pid) if comm(p) == "pop3"]

    def all_procs(self):
        """A session's processes: pop3 and pop3-login (which does the TLS
        and relays for the session)."""
        return [p for p in children(self.proc.pid) if comm(p) in ("pop3", "pop3-login")]

    def idle(self):
        return pop3lib.wait_for(lambda: not self.sessions(), timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None


def make_cert(tmp):
    """One ECDSA P-256 certificate for localhost, for both TLS servers."""
    cert, key = os.path.join(tmp, "tls-cert.pem"), os.path.join(tmp, "tls-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chmod(key, 0o600)
    note_cmd(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-nodes", "...", "(one certificate for both servers)"])
    return cert, key


class Pop3dTls(Pop3d):
    """pop3d with -s: POP3S, the handshake first."""
    name = "pop3d-tls"
    tls = True

    def __init__(self, tmp, data, uid, gid, cert, key):
        super().__init__(tmp, data, uid, gid)
        self.cert, self.key = cert, key

    def start(self):
        self.act = Activated([POP3D, "-s", "-c", self.cert, "-k", self.key, "-f", self.users,
                              "-l", self.locks], self.tmp, "pop3d-tls")
        self.port = self.act.port

    def all_procs(self):
        """Every process of the connections: monitor or session, pre-login or
        relay, signer, hashing child."""
        return descendants(self.act.root())


class DovecotTls(Dovecot):
    """Dovecot with ssl = required and only its pop3s listener, on the same
    certificate."""
    name = "dovecot-tls"
    tls = True

    def __init__(self, tmp, data, uid, gid, cert, key):
        super().__init__(tmp, data, uid, gid)
        self.tmp = os.path.join(tmp, "dovecot-tls")
        self.cert, self.key = cert, key


class Cat:
    name = "cat"

    def __init__(self, tmp, path):
        self.act = Activated(["/bin/cat", path], tmp, "cat")
        self.port = self.act.port


class Replay:
    """Sends a recorded server transcript, then reads the client out."""
    name = "replay"

    def __init__(self, tmp, path):
        self.act = Activated(["sh", "-c", 'cat "$0"; exec cat >/dev/null', path], tmp, "replay")
        self.port = self.act.port


# ------------------------------------------------------------------ clients

TLS_CTX = None


def tls_ctx():
    """The client side of every TLS test: Python's ssl (OpenSSL), no
    certificate check (the bench's own self-signed certificate)."""
    global TLS_CTX
    if TLS_CTX is None:
        import ssl
        TLS_CTX = ssl.create_default_context()
        TLS_CTX.check_hostname = False
        TLS_CTX.verify_mode = ssl.CERT_NONE
    return TLS_CTX


class Conn:
    def __init__(self, port, tls=False):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=600)
        if tls:
            self.s = tls_ctx().wrap_socket(self.s, server_hostname="localhost")
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise RuntimeError("connection closed")
            self.buf += d
        ln, _, self.buf = self.buf.partition(b"\n")
        return ln

    def cmd(self, c):
        self.s.sendall(c.encode() + b"\r\n")
        r = self.line()
        if not r.startswith(b"+OK"):
            raise RuntimeError("%s: %r" % (c.split()[0], r))
        return r

    def login(self, user):
        g = self.line()
        if not g.startswith(b"+OK"):
            raise RuntimeError("greeting %r" % g)
        self.cmd("USER " + user)
        self.cmd("PASS " + PASSWORD)

    def close(self):
        self.s.close()


def pipelined_download(port, user, on_done=None, tls=False):
    """Minimal pipelined reader: all RETRs sent at once (from a thread; over
    TLS before reading, as an SSL object must not be written and read at once
    and 1,000 RETRs fit in the socket's buffer), the replies counted until the
    last terminator. (seconds, octets)."""
    t0 = time.monotonic()
    c = Conn(port, tls)
    c.login(user)
    count = int(c.cmd("STAT").split()[1])
    cmds = b"".join(b"RETR %d\r\n" % i for i in range(1, count + 1))
    if tls:
        c.s.sendall(cmds)
        w = threading.Thread(target=lambda: None)
    else:
        w = threading.Thread(target=c.s.sendall, args=(cmds,))
    w.start()
    term = b"\r\n.\r\n"
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    seen = c.buf.count(term)
    octets = len(c.buf)
    carry = c.buf[-4:]
    while seen < count:
        n = c.s.recv_into(buf)
        if n == 0:
            raise RuntimeError("closed after %d of %d messages" % (seen, count))
        octets += n
        if n >= 4:
            seen += (carry + bytes(mv[:4])).count(term) + buf.count(term, 0, n)
            carry = bytes(mv[n - 4:n])
        else:
            chunk = carry + bytes(mv[:n])
            seen += chunk.count(term) - carry.count(term)
            carry = chunk[-4:]
    secs = time.monotonic() - t0
    w.join()
    if on_done:
        on_done()
    c.cmd("QUIT")
    c.close()
    return secs, octets


def popread_download(port, user, tls=False):
    """bench/popread: the same pipelined download from a lean C client
    (OpenSSL with read-ahead for TLS), so that the client's own cost weighs
    little; it also sends QUIT in the pipeline and reads to the end."""
    r = subprocess.run([POPREAD] + (["-s"] if tls else []) + [str(port), user, PASSWORD],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError("popread: %s" % r.stderr.strip())
    secs, octets = r.stdout.split()
    return float(secs), int(octets)


def cat_download(port):
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    buf = bytearray(1 << 20)
    octets = 0
    while True:
        n = s.recv_into(buf)
        if n == 0:
            break
        octets += n
    s.close()
    return time.monotonic() - t0, octets


def poplib_download(port, user):
    t0 = time.monotonic()
    p = poplib.POP3("127.0.0.1", port, timeout=600)
    p.user(user)
    p.pass_(PASSWORD)
    count = p.stat()[0]
    octets = 0
    for i in range(1, count + 1):
        octets += p.retr(i)[2]
    secs = time.monotonic() - t0
    p.quit()
    return secs, octets


def mpop_download(port, user, tmp):
    conf = os.path.join(tmp, "mpoprc")
    uidls = os.path.join(tmp, "mpop-uidls")
    with open(conf, "w") as f:
        f.write("defaults\ntls off\nauth user\npipelining auto\nkeep on\nonly_new off\n"
                "received_header off\nuidls_file %s\ndelivery mbox /dev/null\n"
                "account bench\nhost 127.0.0.1\nport %d\nuser %s\npassword %s\n"
                % (uidls, port, user, PASSWORD))
    os.chmod(conf, 0o600)
    if os.path.exists(uidls):
        os.unlink(uidls)
    argv = ["mpop", "-C", conf, "-q", "bench"]
    note_cmd(["mpop", "-C", "MPOPRC", "-q", "bench"],
             "   # tls off, auth user, keep on, only_new off, delivery mbox /dev/null")
    t0 = time.monotonic()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
    secs = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError("mpop exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace").strip()))
    return secs, None


def stat_session(port, user, srv):
    """(seconds to +OK of STAT from connect, peak RSS kB of the session)."""
    t0 = time.monotonic()
    c = Conn(port, getattr(srv, "tls", False))
    c.login(user)
    c.cmd("STAT")
    secs = time.monotonic() - t0
    rss = max([vmhwm_kb(p) for p in srv.sessions()] or [0])
    c.cmd("QUIT")
    c.close()
    return secs, rss


def tls_memory_session(srv, user):
    """One POP3S session in stages, the memory of all of the session's
    processes together (resident_kb) taken at each: connected (before the
    ClientHello: pop3d's monitor, pre-login process and signer), after the
    handshake and greeting, after login, after RETR of every message of the
    data set. [(stage, kB, processes)]."""
    out = []

    def take(stage):
        time.sleep(0.3)
        pids = srv.all_procs()
        out.append((stage, resident_kb(pids), len(pids)))
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=600)
    take("connected")
    c = Conn.__new__(Conn)
    c.s, c.buf = tls_ctx().wrap_socket(raw, server_hostname="localhost"), b""
    g = c.line()
    if not g.startswith(b"+OK"):
        raise RuntimeError("greeting %r" % g)
    take("handshake")
    c.cmd("USER " + user)
    c.cmd("PASS " + PASSWORD)
    take("login")
    count = int(c.cmd("STAT").split()[1])
    for i in range(1, count + 1):
        c.cmd("RETR %d" % i)
        while not (c.buf.endswith(b"\r\n.\r\n") or b"\r\n.\r\n" in c.buf):
            d = c.s.recv(1 << 20)
            if not d:
                raise RuntimeError("closed in RETR %d" % i)
            c.buf += d
        c.buf = c.buf.split(b"\r\n.\r\n", 1)[1]
    take("retr all")
    c.cmd("QUIT")
    c.close()
    return out


def sessions_per_sec(port, user, seconds, tls=False):
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        c = Conn(port, tls)
        c.login(user)
        c.cmd("STAT")
        c.cmd("QUIT")
        c.close()
        n += 1
    return n / (time.monotonic() - t0)


# ------------------------------------------------------------------ the run

def median(v):
    return statistics.median(v) if v else None


class Runner:
    def __init__(self, args, tmp, data, uid, gid):
        self.args = args
        self.tmp = tmp
        self.data = data
        self.uid, self.gid = uid, gid
        self.res = {}          # (server, metric) -> value
        self.load_start = loadavg()
        self.notes = []

    def put(self, server, metric, value):
        self.res[(server, metric)] = value

    def runs(self, fn, n, srv, budget):
        """Median seconds of n runs (fewer when one run exceeds budget/n),
        and CPU seconds of the server per octet."""
        times, octets, cpu = [], 0, 0.0
        t_start = time.monotonic()
        for i in range(n):
            c0 = tree_cpu(srv_root(srv))
            secs, octs = fn()
            srv_idle(srv)
            cpu += tree_cpu(srv_root(srv)) - c0
            times.append(secs)
            octets += octs or 0
            if i + 1 >= 1 and time.monotonic() - t_start > budget and i + 1 < n:
                self.notes.append("%s: %s stopped after %d of %d runs (over %ds budget)"
                                  % (srv.name, getattr(fn, "label", "?"), i + 1, n, budget))
                break
        return median(times), len(times), octets, cpu

    def download_tests(self, srv, ds, octets_ref):
        user = srv.use(ds)
        if user is None:
            return
        n = self.args.runs
        budget = self.args.budget
        port = srv.port
        key = srv.name
        # pipelined reader: also peak RSS of the session before QUIT, and CPU
        peak = [0]

        def before_quit():
            peak[0] = max([peak[0]] + [vmhwm_kb(p) for p in srv.sessions()])

        def pipe():
            return pipelined_download(port, user, before_quit)
        pipe.label = "pipelined"
        med, k, octs, cpu = self.runs(pipe, n, srv, budget)
        wire = octs // k
        self.put(key, "wire_%s" % ds, wire)
        self.put(key, "pipe_s_%s" % ds, (med, k))
        self.put(key, "cpu_per_gb_%s" % ds, cpu / (octs / 1e9) if octs else None)
        self.put(key, "rss_%s" % ds, peak[0])
        log("  %s %s pipelined: %.3f s (%d runs), %.1f MB/s, cpu %.2f s/GB, rss %d kB"
            % (key, ds, med, k, wire / MB / med, cpu / (octs / 1e9), peak[0]))
        if ds != "mbox-1k" and ds != "maildir-1k":
            return
        if shutil.which("mpop"):
            def mp():
                return mpop_download(port, user, self.tmp)
            mp.label = "mpop"
            try:
                med, k, _, _ = self.runs(mp, n, srv, budget)
                self.put(key, "mpop_s_%s" % ds, (med, k))
                log("  %s %s mpop: %.3f s (%d runs)" % (key, ds, med, k))
            except RuntimeError as e:
                self.notes.append("%s %s mpop: %s" % (key, ds, e))
        else:
            self.notes.append("mpop not installed: no mpop column")

        def pl():
            return poplib_download(port, user)
        pl.label = "poplib"
        med, k, _, _ = self.runs(pl, n, srv, budget)
        self.put(key, "poplib_s_%s" % ds, (med, k))
        log("  %s %s poplib: %.3f s (%d runs)" % (key, ds, med, k))

    def stat_tests(self, srv, ds, runs=3):
        user = srv.use(ds)
        if user is None:
            return
        try:
            res = []
            for _ in range(runs):
                res.append(stat_session(srv.port, user, srv))
                srv_idle(srv)
        except (RuntimeError, OSError) as e:
            self.notes.append("%s %s STAT: %s" % (srv.name, ds, e))
            self.put(srv.name, "stat_%s" % ds, "refused")
            return
        first = res[0][0]
        again = median([r[0] for r in res[1:]])
        rss = max(r[1] for r in res)
        self.put(srv.name, "stat_%s" % ds, (first, again, rss))
        log("  %s %s STAT: first %.3f s, again %.3f s, rss %d kB" % (srv.name, ds, first, again, rss))

    def run_server(self, srv):
        log("%s: starting" % srv.name)
        before = {ds: self.data.fingerprint(ds) for ds in self.data.sets}
        srv.start()
        try:
            for ds in ("mbox-1k", "maildir-1k"):
                if ds == "maildir-1k" and not srv.maildir:
                    continue
                self.stat_tests(srv, ds, runs=2)   # warms the server's index, if any
                self.download_tests(srv, ds, None)
                if ds == "mbox-1k" and type(srv) is Pop3d:
                    self.popread_rows(srv, False)
            for ds in ("maildir-100k", "maildir-100k-w", "mbox-1g"):
                if ds.startswith("maildir") and not srv.maildir:
                    continue
                self.stat_tests(srv, ds)
            if isinstance(srv, Pop3d) and type(srv) is Pop3d and not self.args.quick:
                self.update_tests(srv)
            if not self.args.quick:
                # one pipelined RETR-all of the 1 GB mbox: memory must not follow the bytes
                if self.res.get((srv.name, "stat_mbox-1g")) not in (None, "refused"):
                    user = srv.use("mbox-1g")
                    peak = [0]

                    def bq():
                        peak[0] = max([peak[0]] + [vmhwm_kb(p) for p in srv.sessions()])
                    c0 = tree_cpu(srv_root(srv))
                    secs, octs = pipelined_download(srv.port, user, bq)
                    srv_idle(srv)
                    cpu = tree_cpu(srv_root(srv)) - c0
                    self.put(srv.name, "big_retr", (secs, octs, peak[0], cpu))
                    self.put(srv.name, "cpu_per_gb_mbox-1g", cpu / (octs / 1e9))
                    log("  %s mbox-1g pipelined RETR all: %.2f s, %.1f MB/s, rss %d kB"
                        % (srv.name, secs, octs / MB / secs, peak[0]))
            user = srv.use("mbox-small")
            if user:
                srv_idle(srv)
                c0 = tree_cpu(srv_root(srv))
                sps = sessions_per_sec(srv.port, user, self.args.session_seconds)
                self.put(srv.name, "sessions", sps)
                log("  %s sessions/s: %.1f" % (srv.name, sps))
        finally:
            srv.stop()
        after = {ds: self.data.fingerprint(ds) for ds in self.data.sets}
        for ds in before:
            if before[ds] != after[ds]:
                self.notes.append("%s changed data set %s (later servers saw the change)"
                                  % (srv.name, ds))

    def update_tests(self, srv):
        """pop3d only (the peers' mail processes may not write the data): QUIT
        on a copy of mbox-1g after DELE of its last message (the update reads
        and hashes all that was loaded, under the write lock, then
        truncates) and after DELE 1 (journal and rewrite of the whole file,
        each fsynced). The copy is made and fsynced before each session."""
        src = self.data.sets["mbox-1g"][1]
        st = os.stat(src)
        for label, which, runs in (("last", None, 3), ("first", 1, 1)):
            times = []
            for _ in range(runs):
                shutil.copyfile(src, srv.update)
                os.chown(srv.update, st.st_uid, st.st_gid)
                fd = os.open(srv.update, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
                c = Conn(srv.port)
                c.login("update")
                n = int(c.cmd("STAT").split()[1])
                c.cmd("DELE %d" % (which or n))
                t0 = time.monotonic()
                c.cmd("QUIT")
                times.append(time.monotonic() - t0)
                c.close()
                srv_idle(srv)
            self.put(srv.name, "quit_%s" % label, median(times))
            log("  %s QUIT after DELE of the %s message of mbox-1g: %.3f s (%d runs)"
                % (srv.name, label, median(times), len(times)))
        os.unlink(srv.update)

    def popread_rows(self, srv, tls):
        """The pipelined download of mbox-1k by bench/popread, --runs times."""
        if not os.access(POPREAD, os.X_OK):
            self.notes.append("bench/popread not built: no C reader rows")
            return
        user = srv.use("mbox-1k")

        def pr():
            return popread_download(srv.port, user, tls)
        pr.label = "popread"
        med, k, octs, cpu = self.runs(pr, self.args.runs, srv, self.args.budget)
        self.put(srv.name, "popread_s_mbox-1k", (med, k))
        self.put(srv.name, "popread_cpu_per_gb", cpu / (octs / 1e9))
        log("  %s mbox-1k popread: %.3f s (%d runs), %.1f MB/s, cpu %.2f s/GB"
            % (srv.name, med, k, octs / k / MB / med, cpu / (octs / 1e9)))

    def run_plain_pipe(self, srv):
        """pop3d's plaintext pipelined download and logins/s alone (--tls-only):
        what the POP3S rows are compared with."""
        srv.start()
        try:
            user = srv.use("mbox-1k")
            self.stat_tests(srv, "mbox-1k", runs=2)

            def pipe():
                return pipelined_download(srv.port, user)
            pipe.label = "pipelined"
            med, k, octs, cpu = self.runs(pipe, self.args.runs, srv, self.args.budget)
            self.put(srv.name, "wire_mbox-1k", octs // k)
            self.put(srv.name, "pipe_s_mbox-1k", (med, k))
            self.put(srv.name, "cpu_per_gb_mbox-1k", cpu / (octs / 1e9))
            srv_idle(srv)
            self.popread_rows(srv, False)
            self.put(srv.name, "sessions", sessions_per_sec(srv.port, srv.use("mbox-small"),
                                                            self.args.session_seconds))
        finally:
            srv.stop()

    def run_tls(self, srv):
        """POP3S: the pipelined download of mbox-1k (--runs times, CPU of the
        server), the peak RSS of all of one such session's processes
        together (RssSampler, during one more download), and logins per
        second with the handshake (connect, TLS, USER, PASS, STAT, QUIT)."""
        log("%s: starting" % srv.name)
        srv.start()
        try:
            user = srv.use("mbox-1k")
            self.stat_tests(srv, "mbox-1k", runs=2)    # warms Dovecot's index

            def pipe():
                return pipelined_download(srv.port, user, tls=True)
            pipe.label = "pipelined TLS"
            med, k, octs, cpu = self.runs(pipe, self.args.runs, srv, self.args.budget)
            self.put(srv.name, "wire_mbox-1k", octs // k)
            self.put(srv.name, "pipe_s_mbox-1k", (med, k))
            self.put(srv.name, "cpu_per_gb_mbox-1k", cpu / (octs / 1e9))
            self.popread_rows(srv, True)
            c = Conn(srv.port, tls=True)
            self.put(srv.name, "cipher", "%s %s" % (c.s.version(), c.s.cipher()[0]))
            c.close()
            srv_idle(srv)
            sampler = RssSampler(srv.all_procs)
            sampler.start()
            try:
                stages = tls_memory_session(srv, user)
                srv_idle(srv)
            finally:
                sampler.stop()
            self.put(srv.name, "rss_sum", (sampler.peak, sorted(
                set(c for c, _ in sampler.seen.values()))))
            self.put(srv.name, "rss_together", stages)
            user = srv.use("mbox-small")
            srv_idle(srv)
            sps = sessions_per_sec(srv.port, user, self.args.session_seconds, tls=True)
            self.put(srv.name, "sessions", sps)
            log("  %s mbox-1k pipelined: %.3f s, %.1f MB/s, cpu %.2f s/GB; all processes' "
                "peak RSS %d kB (%s); TLS logins/s %.1f"
                % (srv.name, med, octs / k / MB / med, cpu / (octs / 1e9), sampler.peak,
                   " ".join(self.res[(srv.name, "rss_sum")][1]), sps))
        finally:
            srv.stop()

    def run_cat(self):
        """cat of the 100 MB mbox (--runs times) and of the 1 GB one (3
        times): their CPU per GB is the figure a server's is compared with;
        /proc counts 10 ms ticks, which the 1 GB transfers make about 1% of
        the figure and the 100 MB ones about 20%."""
        for ds, runs in (("mbox-1k", self.args.runs), ("mbox-1g", 3)):
            if ds == "mbox-1g" and self.args.quick:
                continue
            cat = Cat(self.tmp, self.data.sets[ds][1])
            try:
                times, cpu, octs = [], 0.0, 0
                for _ in range(runs):
                    c0 = tree_cpu(cat.act.root())
                    secs, o = cat_download(cat.port)
                    cat.act.idle()
                    cpu += tree_cpu(cat.act.root()) - c0
                    times.append(secs)
                    octs += o
                self.put("cat", "pipe_s_%s" % ds, (median(times), len(times)))
                self.put("cat", "wire_%s" % ds, octs // len(times))
                self.put("cat", "cpu_per_gb_%s" % ds, cpu / (octs / 1e9))
                log("  cat %s: %.3f s, %.1f MB/s, cpu %.2f s/GB" % (ds, median(times),
                    octs / len(times) / MB / median(times), cpu / (octs / 1e9)))
            finally:
                cat.act.stop()

    def run_mpop_ceiling(self, pop3d):
        """mpop against a replay of pop3d's own replies (recorded once with
        tee, then sent by cat as fast as the socket takes them): what mpop
        itself can take in, the ceiling of the mpop rows."""
        if not shutil.which("mpop"):
            return
        for ds in ("mbox-1k", "maildir-1k"):
            rec = os.path.join(self.tmp, "replay-%s" % ds)
            record = '"$0" "$@" | tee %s' % shlex.quote(rec)
            act = Activated(["sh", "-c", record, POP3D, "-f", pop3d.users, "-l", pop3d.locks],
                            self.tmp, "record")
            try:
                mpop_download(act.port, ds, self.tmp)
                act.idle()
            except RuntimeError as e:
                self.notes.append("mpop ceiling %s: recording failed: %s" % (ds, e))
                continue
            finally:
                act.stop()
            rep = Replay(self.tmp, rec)
            try:
                def mp():
                    return mpop_download(rep.port, ds, self.tmp)
                mp.label = "mpop (replay)"
                med, k, _, _ = self.runs(mp, self.args.runs, rep, self.args.budget)
                self.put("cat", "mpop_s_%s" % ds, (med, k))
                log("  mpop ceiling %s (replay of pop3d's replies): %.3f s (%d runs)"
                    % (ds, med, k))
            except RuntimeError as e:
                self.notes.append("mpop ceiling %s: %s" % (ds, e))
            finally:
                rep.act.stop()

    def run_read(self):
        """Reading the mbox once (64 KiB reads, page cache warm): what opening
        it should come close to."""
        buf = bytearray(65536)
        for ds in ("mbox-1k", "mbox-1g"):
            path = self.data.sets[ds][1]
            times = []
            for _ in range(3):
                t0 = time.monotonic()
                with open(path, "rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
                times.append(time.monotonic() - t0)
            self.put("cat", "read_%s" % ds, median(times))
            log("  read %s once: %.3f s" % (ds, median(times)))

    def run_empty(self):
        if not os.access(EMPTY, os.X_OK):
            self.notes.append("bench/empty not built: no RSS baseline")
            return
        # The largest VmHWM of as many sessions as a server's figure takes:
        # where libc lands (ASLR) moves an empty main's by some 200 kB.
        act = Activated([EMPTY], self.tmp, "empty")
        try:
            seen = []
            for _ in range(self.args.runs):
                s = socket.create_connection(("127.0.0.1", act.port))
                pop3lib.wait_for(lambda: act.sessions(), timeout=5)
                time.sleep(0.1)
                seen.append(max([vmhwm_kb(p) for p in act.sessions()] or [0]))
                s.close()
                act.idle()
            self.put("empty", "rss", max(seen))
            log("  empty main: VmHWM %d kB (largest of %s)" % (max(seen), sorted(seen)))
        finally:
            act.stop()


def srv_root(srv):
    return srv.root() if hasattr(srv, "root") else srv.act.root()


def srv_idle(srv):
    return srv.idle() if hasattr(srv, "idle") else srv.act.idle()


# ------------------------------------------------------------------ report

def fmt_s(v):
    if v is None:
        return "-"
    med, k = v
    return "%.3f s" % med


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.1f GB RAM" % (int(f.readline().split()[1]) / 1e6)
    except OSError:
        pass
    return "nproc %d, %s, %s, kernel %s" % (os.cpu_count(), model, mem, platform.release())


def versions():
    out = []
    for argv in (["dovecot", "--version"], ["mpop", "--version"]):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            out.append("%s %s" % (argv[0], r.stdout.splitlines()[0].split()[-1]
                                  if argv[0] == "mpop" else r.stdout.split()[0]))
        except (OSError, IndexError, subprocess.TimeoutExpired):
            pass
    try:
        r = subprocess.run(["dpkg-deb", "-f", os.path.join(POPA3D_DIR, "..", "popa3d.deb"),
                            "Version"], capture_output=True, text=True, timeout=10)
        if r.returncode == 0:
            out.append("popa3d " + r.stdout.strip())
    except OSError:
        pass
    return ", ".join(out)


def report(r, servers, data, started):
    R = r.res
    lines = []
    p = lines.append
    p("pop3d benchmark (bench/bench.py), %s" % started.strftime("%Y-%m-%d %H:%M UTC"))
    p("machine: %s" % machine())
    p("load average (1 min) at start %s, at end %s (2 cores: anything else running shows up)"
      % (r.load_start, loadavg()))
    p("peers: %s" % versions())
    for ds in ("mbox-1k", "maildir-1k", "maildir-100k", "maildir-100k-w", "mbox-1g"):
        kind, path, count, size = data.describe(ds)
        p("data %-13s %-7s %7d messages %10.1f MB" % (ds, kind, count, size / MB))
    p("data generated in %.1f s; runs per figure: %d (median)" % (data.gen_seconds, r.args.runs))
    p("")
    names = [s.name for s in servers]
    cols = names + ["cat"]
    w = 18

    def row(label, vals):
        p(("%-44s" % label) + "".join(("%" + str(w) + "s") % v for v in vals))

    row("", cols)
    row("-" * 44, ["-" * (w - 2)] * len(cols))

    def rate(name, key, ds):
        v = R.get((name, key))
        wire = R.get((name, "wire_%s" % ds)) or R.get(("pop3d", "wire_%s" % ds))
        if name == "cat" and key.startswith("mpop"):
            wire = R.get(("pop3d", "wire_%s" % ds))     # the replay sends pop3d's replies
        if v is None or not wire:
            return "-"
        return "%.3fs %5.0fMB/s" % (v[0], wire / MB / v[0])

    for ds in ("mbox-1k", "maildir-1k"):
        row("download %s, pipelined reader" % ds, [rate(n, "pipe_s_%s" % ds, ds) if
                                                   (n != "cat" or ds == "mbox-1k") else "-"
                                                   for n in cols])
        row("download %s, mpop" % ds, [rate(n, "mpop_s_%s" % ds, ds) for n in cols])
        row("download %s, poplib" % ds, [rate(n, "poplib_s_%s" % ds, ds) for n in names] + ["-"])
    for ds in ("mbox-1k", "maildir-1k", "mbox-1g"):
        vals = []
        for n in cols:
            v = R.get((n, "cpu_per_gb_%s" % ds))
            vals.append("%.2f s" % v if v is not None else "-")
        row("server CPU (user+sys) per GB, %s" % ds, vals)
    vals = []
    for n in names:
        v = R.get((n, "sessions"))
        vals.append("%.1f" % v if v else "-")
    row("sessions/s (connect USER PASS STAT QUIT)", vals + ["-"])
    vals = []
    for n in names:
        v = R.get((n, "rss_mbox-1k"))
        vals.append("%d kB" % v if v else "-")
    row("peak RSS, RETR all of mbox-1k", vals + ["-"])
    vals = []
    for n in names:
        v = R.get((n, "rss_maildir-1k"))
        vals.append("%d kB" % v if v else "-")
    row("peak RSS, RETR all of maildir-1k", vals + ["-"])
    for ds in ("mbox-1k", "maildir-100k", "maildir-100k-w", "mbox-1g"):
        a, b = [], []
        for n in names:
            v = R.get((n, "stat_%s" % ds))
            if v is None:
                a.append("-")
                b.append("-")
            elif v == "refused":
                a.append("refused")
                b.append("-")
            else:
                a.append("%.2f/%.2f s" % (v[0], v[1]))
                b.append("%d kB" % v[2])
        rd = R.get(("cat", "read_%s" % ds))
        row("+OK to STAT %s (first/again)" % ds,
            a + ["read %.2f s" % rd if rd is not None else "-"])
        row("peak RSS at STAT, %s" % ds, b + ["-"])
    vals = []
    for n in names:
        v = R.get((n, "big_retr"))
        vals.append("%.1fs %dkB" % (v[0], v[2]) if v else "-")
    row("RETR all of mbox-1g: time, peak RSS", vals + ["-"])
    rd = R.get(("cat", "read_mbox-1g"))
    for label in ("last", "first"):
        v = R.get(("pop3d", "quit_%s" % label))
        row("QUIT after DELE of the %s message, mbox-1g" % label,
            ["%.2f s" % v if v is not None and n == "pop3d" else "-" for n in names] +
            ["read %.2f s" % rd if rd is not None and label == "last" else "-"])
    e = R.get(("empty", "rss"))
    p("(cat column of the mpop rows: mpop against a replay of pop3d's recorded replies, "
      "the client's own ceiling)")
    p("(cat column of the STAT rows: reading the mbox once, 64 KiB reads, page cache warm)")
    p("(CPU per GB, mbox-1g: the one pipelined RETR of all of it, login and opening included;"
      " cat: 3 runs)")
    p("(QUIT rows: pop3d only, on an fsynced copy of mbox-1g: time from QUIT to its +OK; the"
      " last message: the update's check of every octet loaded, then a truncation; the first:"
      " journal and rewrite of the whole file, fsynced)")
    p("")
    p("RSS baseline: empty main linked like pop3d (bench/empty): VmHWM %s kB "
      "(largest of %d sessions, like the servers' figures)" % (e or "-", r.args.runs))
    # ratios
    p("")
    p("ratios, pop3d / peer (same run; > 1 means pop3d is faster or leaner as stated):")

    def ratio_line(label, key, ds):
        out = []
        for n in names[1:] + ["cat"]:
            a = R.get(("pop3d", key))
            b = R.get((n, key))
            if not a or not b or isinstance(a, str) or isinstance(b, str):
                continue
            av = a[0] if isinstance(a, tuple) else a
            bv = b[0] if isinstance(b, tuple) else b
            who = "mpop's ceiling" if n == "cat" and key.startswith("mpop") else n
            out.append("%s %.2fx" % (who, bv / av))        # speed = 1/time
        if out:
            p("  %-42s %s" % (label, ", ".join(out)))

    ratio_line("pipelined download speed, mbox-1k", "pipe_s_mbox-1k", "mbox-1k")
    ratio_line("mpop download speed, mbox-1k", "mpop_s_mbox-1k", "mbox-1k")
    ratio_line("poplib download speed, mbox-1k", "poplib_s_mbox-1k", "mbox-1k")
    ratio_line("pipelined download speed, maildir-1k", "pipe_s_maildir-1k", "maildir-1k")
    ratio_line("mpop download speed, maildir-1k", "mpop_s_maildir-1k", "maildir-1k")
    # CPU: pop3d / peer (lower is better)
    for ds in ("mbox-1k", "mbox-1g"):
        out = []
        for n in names[1:] + ["cat"]:
            a = R.get(("pop3d", "cpu_per_gb_%s" % ds))
            b = R.get((n, "cpu_per_gb_%s" % ds))
            if a and b:
                out.append("%s %.2fx" % (n, a / b))
        if out:
            p("  %-42s %s" % ("CPU/GB %s, pop3d/peer (lower: better)" % ds, ", ".join(out)))
    rd = R.get(("cat", "read_mbox-1g"))
    out = []
    for n in names:
        v = R.get((n, "stat_mbox-1g"))
        if rd and isinstance(v, tuple):
            out.append("%s %.2fx" % (n, v[0] / rd))
    if out:
        p("  %-42s %s" % ("+OK to STAT mbox-1g / reading it once", ", ".join(out)))
    out = []
    for n in names[1:]:
        a, b = R.get(("pop3d", "sessions")), R.get((n, "sessions"))
        if a and b:
            out.append("%s %.2fx" % (n, a / b))
    if out:
        p("  %-42s %s" % ("sessions/s, pop3d/peer", ", ".join(out)))
    out = []
    for n in names[1:]:
        a, b = R.get(("pop3d", "rss_mbox-1k")), R.get((n, "rss_mbox-1k"))
        if a and b:
            out.append("%s %.2fx" % (n, a / b))
    if e and R.get(("pop3d", "rss_mbox-1k")):
        out.append("empty main +%d kB" % (R[("pop3d", "rss_mbox-1k")] - e))
    if out:
        p("  %-42s %s" % ("peak RSS mbox-1k, pop3d/peer", ", ".join(out)))
    tls_names = [n for n in ("pop3d-tls", "dovecot-tls") if (n, "pipe_s_mbox-1k") in R]
    if tls_names:
        p("")
        p("TLS (POP3S, one ECDSA P-256 certificate for both; clients: Python ssl, bench/popread with OpenSSL):")
        p(("%-44s" % "") + "".join(("%" + str(w) + "s") % n for n in ["pop3d"] + tls_names))
        row("-" * 44, ["-" * (w - 2)] * (1 + len(tls_names)))
        row("download mbox-1k, pipelined reader", [rate("pop3d", "pipe_s_mbox-1k", "mbox-1k")] +
            [rate(n, "pipe_s_mbox-1k", "mbox-1k") for n in tls_names])
        row("download mbox-1k, bench/popread (C)", [rate(n, "popread_s_mbox-1k", "mbox-1k")
                                                   for n in ["pop3d"] + tls_names])
        row("server CPU (user+sys) per GB, mbox-1k",
            ["%.2f s" % R[(n, "cpu_per_gb_mbox-1k")] if R.get((n, "cpu_per_gb_mbox-1k"))
             else "-" for n in ["pop3d"] + tls_names])
        row("logins/s (connect [TLS] USER PASS STAT QUIT)",
            ["%.1f" % R[(n, "sessions")] if R.get((n, "sessions")) else "-"
             for n in ["pop3d"] + tls_names])
        row("peak RSS of a session's processes together",
            ["-"] + ["%d kB" % max(k for _, k, _ in R[(n, "rss_together")])
                     if R.get((n, "rss_together")) else "-" for n in tls_names])
        row("peak of the sum of each process's VmHWM",
            ["-"] + ["%d kB" % R[(n, "rss_sum")][0] if R.get((n, "rss_sum")) else "-"
                     for n in tls_names])
        for n in tls_names:
            if R.get((n, "rss_together")):
                p("  (%s together, by stage: %s)" % (n, ", ".join(
                    "%s %d kB/%d proc" % st for st in R[(n, "rss_together")])))
        for n in tls_names:
            if R.get((n, "rss_sum")):
                p("  (%s: processes sampled: %s; negotiated %s)"
                  % (n, ", ".join(R[(n, "rss_sum")][1]), R.get((n, "cipher"), "?")))
        for key, client in (("pipe_s_mbox-1k", "pipelined reader"),
                            ("popread_s_mbox-1k", "bench/popread")):
            a, pl = R.get(("pop3d-tls", key)), R.get(("pop3d", key))
            d = R.get(("dovecot-tls", key))
            if a and pl:
                p("  %-42s %.0f%%" % ("pop3d TLS / plaintext download, " + client,
                                     100 * pl[0] / a[0]))
            if a and d:
                p("  %-42s %.2fx" % ("pop3d TLS / Dovecot TLS download, " + client, d[0] / a[0]))
        a, d = R.get(("pop3d-tls", "sessions")), R.get(("dovecot-tls", "sessions"))
        if a and d:
            p("  %-42s %.2fx" % ("TLS logins/s, pop3d / Dovecot", a / d))
        a, d = R.get(("pop3d-tls", "rss_together")), R.get(("dovecot-tls", "rss_together"))
        if a and d:
            p("  %-42s %.2fx" % ("peak RSS together, pop3d / Dovecot",
                                 max(k for _, k, _ in a) / max(k for _, k, _ in d)))
        a, d = R.get(("pop3d-tls", "rss_sum")), R.get(("dovecot-tls", "rss_sum"))
        if a and d:
            p("  %-42s %.2fx" % ("peak sum of VmHWM, pop3d / Dovecot", a[0] / d[0]))
    if r.notes:
        p("")
        p("notes:")
        for n in r.notes:
            p("  - " + n)
    p("")
    p("commands (PORT: a free loopback port; each server alone, one client at a time):")
    for c in COMMANDS:
        p("  " + c)
    p("  clients: mpop (PIPELINING auto), python3 poplib (one command at a time), "
      "bench.py pipelined reader (all RETRs at once, counts octets)")
    p("  CPU: utime+stime(+reaped children) of the server's process tree from /proc, "
      "before and after each run; RSS: VmHWM of the session process(es) before QUIT")
    return "\n".join(lines)


# ------------------------------------------------------------------ main

def ensure_user():
    try:
        pw = pwd.getpwnam(BENCH_USER)
        return pw.pw_uid, pw.pw_gid, False
    except KeyError:
        pass
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                    "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", BENCH_USER],
                   check=True)
    pw = pwd.getpwnam(BENCH_USER)
    return pw.pw_uid, pw.pw_gid, True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small data, for trying the bench")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--budget", type=int, default=240,
                    help="seconds per client per data set before fewer runs are taken")
    ap.add_argument("--session-seconds", type=float, default=4.0)
    ap.add_argument("--servers", default="pop3d,dovecot,popa3d")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    ap.add_argument("--no-tls", action="store_true", help="skip the POP3S rows")
    ap.add_argument("--tls-only", action="store_true",
                    help="only the POP3S rows (and pop3d's plaintext download for the ratio)")
    ap.add_argument("--tmp", default=None, help="parent of the data directory")
    ap.add_argument("--out", default=None, help="also write the table to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (servers switch to a benchmark user; popa3d needs a system account)")
    started = datetime.datetime.now(datetime.timezone.utc)
    uid, gid, created_user = ensure_user()
    tmp = tempfile.mkdtemp(prefix="pop3d-bench.", dir=args.tmp)
    os.chmod(tmp, 0o755)
    try:
        data_dir = os.path.join(tmp, "data")
        os.makedirs(data_dir)
        log("generating data in %s" % data_dir)
        data = Data(data_dir, args.quick)
        data.build()
        for dp, dn, fn in os.walk(data_dir):
            os.chown(dp, uid, gid)
            os.chmod(dp, 0o755)
            for f in fn:
                os.chown(os.path.join(dp, f), uid, gid)
                os.chmod(os.path.join(dp, f), 0o644)
        log("data ready in %.1f s" % data.gen_seconds)
        classes = {"pop3d": Pop3d, "dovecot": Dovecot, "popa3d": Popa3d}
        servers = []
        runner = Runner(args, tmp, data, uid, gid)
        for name in args.servers.split(","):
            srv = classes[name](tmp, data, uid, gid)
            if not srv.available():
                runner.notes.append("%s not installed: skipped" % name)
                continue
            servers.append(srv)
        if args.tls_only:
            servers = [s for s in servers if s.name == "pop3d"]
        else:
            runner.run_empty()
            runner.run_read()
            runner.run_cat()
        for srv in servers:
            try:
                if args.tls_only:
                    runner.run_plain_pipe(srv)
                    continue
                runner.run_server(srv)
                if srv.name == "pop3d":
                    runner.run_mpop_ceiling(srv)
            except Exception as e:  # a peer that fails must not hide the others
                runner.notes.append("%s failed: %s: %s" % (srv.name, type(e).__name__, e))
                log("%s failed: %s" % (srv.name, e))
        if not args.no_tls:
            cert, key = make_cert(tmp)
            for name, cls in (("pop3d", Pop3dTls), ("dovecot", DovecotTls)):
                if name not in args.servers.split(","):
                    continue
                srv = cls(tmp, data, uid, gid, cert, key)
                if not srv.available():
                    continue
                try:
                    runner.run_tls(srv)
                except Exception as e:
                    runner.notes.append("%s failed: %s: %s" % (srv.name, type(e).__name__, e))
                    log("%s failed: %s" % (srv.name, e))
        text = report(runner, servers, data, started)
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text + "\n")
    finally:
        if args.keep:
            log("data kept in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        if created_user:
            subprocess.run(["userdel", BENCH_USER], check=False)
            try:
                subprocess.run(["groupdel", BENCH_USER], check=False, capture_output=True)
            except OSError:
                pass


if __name__ == "__main__":
    main()
