#!/usr/bin/python3
"""Soak under load (issue 13): many concurrent POP3 clients against many
mbox and Maildir users while procmail delivers to every user all along,
checked against a ledger of every delivery.

    tests/soak.py [--seconds S] [--clients N] [--users N] [--seed S] [--keep] [-v]

Defaults (make check-slow): 300 s, 200 concurrent clients, 240 users (half
mbox, half Maildir).  A quick try: --seconds 30 --clients 50 --users 60.
Run as root (each test user has its own uid/gid, picked from a range no
account or group uses).

The world, all in one temporary directory (removed at the end; --keep, or a
failure, keeps it):

  * pop3d (a private copy of ./pop3d or $POP3D) under
    `systemd-socket-activate --accept --inetd` on 127.0.0.1, run as root
    with `-D 0 -e`, a user file of sha512crypt ($6$) hashes and a state
    directory of its own; each user's maildrop is in a directory of the
    user's own (`u<uid>/mbox`, or the Maildir `u<uid>/Maildir/`), and the
    mail directory is bind-mounted noatime, as tests/crash.py does (procmail
    otherwise sleeps a second holding its locks after each delivery to an
    mbox that was read since it last changed);
  * deliveries: procmail (Debian's: a dotlock and an fcntl lock for an mbox;
    tmp/ then new/ for a Maildir) run as the user with `setpriv`, a few at a
    time, round-robin over every user, from before the first session until
    the load stops.  Each message has a unique Message-ID and a random token
    in its body, and goes into the ledger (ledger.jsonl: user, id, SHA-256
    and size) before procmail is started;
  * clients: one asyncio task per client, in this process, which runs at
    nice -5 (--nice; pop3d and procmail at 0) so that on a busy machine
    its time stamps measure the server rather than its own wait for a CPU;
    its CPU time and event-loop lag are reported.  A client takes a user no other
    client holds (so every [IN-USE] is one the test caused or allowed),
    runs one session with a habit picked at random, pauses, and goes on:
      - one-by-one: RETR then DELE, message after message, QUIT;
      - all-then-dele: RETR every message (pipelined in some sessions), then
        DELE every one (likewise), QUIT;
      - browse: LIST, UIDL, TOP n k of a few messages, LIST n, UIDL n, NOOP,
        QUIT without deleting;
      - rset: RETR and DELE some, RSET (STAT must be back), DELE some again,
        QUIT;
    and in some sessions: the client is killed mid-RETR (the RETR reply
    partly read, then the socket closed with SO_LINGER 0: an RST), killed
    mid-QUIT (QUIT sent after DELEs, the socket reset before the reply is
    read), or drops the connection after DELEs without QUIT; a second
    session for the same maildrop while the first is logged in (it must get
    `-ERR [IN-USE]` at once and the connection closed); a wrong password
    first; a new session on the same maildrop right after `+OK` to QUIT
    (the lock is released before that +OK, so it must never be refused).
  * Every RETR is checked against the ledger (the octets a client must
    receive, tests/mboxlib.py: CRLF line ends, dot-stuffing undone), against
    its `+OK n octets` and LIST n; TOP against mboxlib.top_expected; a
    UIDL must name the same message in every session, and no session may
    see a message an earlier session deleted with +OK to QUIT.

At the end (deliveries stopped, every client done, every pop3d gone by
itself): each maildrop is read independently (tests/mboxcheck.py chunks
under an fcntl read lock; the Maildir's files), and every ledger message
must be in its maildrop exactly once, byte for byte as delivered, unless a
session that DELEd it got +OK to QUIT, in which case it must be gone.  A
session reset right after sending QUIT may or may not have had its update
done by the server (it read QUIT before or after the reset): its deleted
messages must then be all gone or all there.  Then: one more login to every
maildrop succeeds and shows what the files hold (STAT, LIST sizes and UIDLs
computed from the files with mboxlib/maildirlib); no pop3d process is left;
no session lock is held (flock), no journal is non-empty, no rescue file,
no dotlock or stray file next to an mbox, nothing in a Maildir's tmp/.

Prints what the load was (sessions/s, p50/p99 time from sending PASS to its
+OK, habits, kills, collisions, deliveries, octets, CPU of the server, of
the load generator and of procmail, event-loop lag) and the usual
"ok NAME" / "FAIL NAME" lines, then "N passed, N failed"; exit 1 on failure.
"""

import sys
sys.dont_write_bytecode = True

import argparse
import asyncio
import fcntl
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import maildirlib as md                   # noqa: E402
import mboxcheck as mc                    # noqa: E402
import mboxlib as mb                      # noqa: E402
import pop3lib                            # noqa: E402

PROCMAIL = "/usr/bin/procmail"
PW = "soak-Pw-1"
FROM_LINE = b"From soak@example.org Thu Nov 27 12:00:00 2025\n"
READ_TIMEOUT = 60.0          # any single reply
# [IN-USE] must come at once, never after a wait for the lock: it comes while
# the first session still holds the maildrop (a server that waited would not
# answer before that session ends, READ_TIMEOUT later), and within this bound,
# which stays above what a login takes on a saturated machine (see the p99)
IN_USE_MAX = 10.0
KILL_GRACE = 30.0            # a reset client's server may hold the lock this long
CLK = os.sysconf("SC_CLK_TCK")
VERBOSE = False


NICE = []       # prefix that puts a child back to nice 0 (no preexec_fn: it would
                # make subprocess fork this big process instead of vfork)


def log(*a):
    if VERBOSE:
        print("#", *a, flush=True)


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


# ---------------------------------------------------------------- messages

WORDS = ("mail server queue header body octets delivery message session lock "
         "journal update maildrop client report meeting budget draft review the of and "
         "to in is that for it as with be by on not this are or from at which").split()


_POOL = []


def line_pool():
    """4,096 lines of words (a message's body is drawn from them)."""
    if not _POOL:
        r = random.Random(13)
        _POOL.extend(b" ".join(r.choice(WORDS).encode() for _ in range(r.randint(3, 14)))
                     for _ in range(4096))
    return _POOL


def make_message(rng, user, seq, size):
    """A message procmail delivers unchanged: no line starts with "From ",
    no NUL; dot lines, ">From " lines and now and then CRLF line ends."""
    token = "%016x" % rng.getrandbits(64)
    msgid = "<soak.%s.%d.%s@soak.test>" % (user, seq, token[:8])
    crlf = rng.random() < 0.05
    nl = b"\r\n" if crlf else b"\n"
    hdr = [b"Received: from relay.example.org by mx.example.org; Thu, 27 Nov 2025 "
           b"12:00:00 +0000",
           b"Message-ID: " + msgid.encode(),
           b"From: sender@example.org",
           b"To: " + user.encode() + b"@soak.test",
           b"Subject: soak " + str(seq).encode(),
           b"X-Soak-Token: " + token.encode()]
    pool = line_pool()
    count = max(1, size // 62)
    body = rng.choices(pool, k=count)
    for k in rng.sample(range(count), count // 11):
        r = rng.random()
        if r < 0.2:
            body[k] = b"."
        elif r < 0.5:
            body[k] = b"." * rng.randint(1, 3) + b" dot line %d" % k
        elif r < 0.75:
            body[k] = b">From quoted %d" % k
        else:
            body[k] = b""
    body = [b"token " + token.encode()] + body + [b"end " + token.encode()]
    raw = nl.join(hdr) + nl + nl + nl.join(body) + nl
    return msgid, raw


def size_mix(rng):
    r = rng.random()
    if r < 0.60:
        return rng.randint(400, 5000)
    if r < 0.90:
        return rng.randint(5000, 30000)
    if r < 0.98:
        return rng.randint(30000, 150000)
    return rng.randint(300000, 1000000)


def top_expected(raw, k):
    """mboxlib.top_expected on only the lines it needs (messages go up to 1 MB)."""
    end = raw.find(b"\n\n")
    end2 = raw.find(b"\n\r\n")
    if end < 0 or (0 <= end2 < end):
        end = end2
    if end < 0:
        return mb.top_expected(raw, k)
    pos = end + 1
    for _ in range(k + 1):                  # the blank line and k body lines
        j = raw.find(b"\n", pos)
        if j < 0:
            return mb.top_expected(raw, k)
        pos = j + 1
    return mb.top_expected(raw[:pos], k)


_MSGID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.I | re.M)


def msgid_of(data):
    head = data[:8192].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    m = _MSGID.search(head)
    return m.group(1).decode("latin-1") if m else None


# ---------------------------------------------------------------- ledger

class Entry:
    __slots__ = ("msgid", "user", "raw", "sha", "wire_sha", "wire_len", "rc", "t_deliv",
                 "confirmed", "confirmed_at", "uncertain", "retrieved", "uidl")

    def __init__(self, msgid, user, raw):
        self.msgid = msgid
        self.user = user
        self.raw = raw
        self.sha = hashlib.sha256(raw).hexdigest()
        wire = mb.delivered(raw)            # what RETR must deliver (tests/mboxlib.py)
        self.wire_sha = hashlib.sha256(wire).digest()
        self.wire_len = len(wire)
        self.rc = None              # procmail's exit status (None: running)
        self.t_deliv = None
        self.confirmed = None       # id of the session that DELEd it and got +OK to QUIT
        self.confirmed_at = None
        self.uncertain = []         # ids of sessions that DELEd it and were reset after QUIT
        self.retrieved = 0
        self.uidl = None


class Ledger:
    def __init__(self, path):
        self.f = open(path, "w")
        self.e = {}

    def add(self, entry):
        self.e[entry.msgid] = entry
        self.f.write(json.dumps({"ev": "deliver", "user": entry.user, "id": entry.msgid,
                                 "sha256": entry.sha, "size": len(entry.raw),
                                 "t": time.time()}) + "\n")
        self.f.flush()

    def note(self, **kw):
        self.f.write(json.dumps(kw) + "\n")
        self.f.flush()

    def close(self):
        self.f.close()


# ---------------------------------------------------------------- users

class User:
    def __init__(self, world, uid, kind):
        self.uid = uid
        self.name = "soak%d" % uid
        self.kind = kind
        self.dir = os.path.join(world.mail, "u%d" % uid)
        if kind == "mbox":
            self.path = os.path.join(self.dir, "mbox")
            self.maildrop = self.path
        else:
            self.path = os.path.join(self.dir, "Maildir")
            self.maildrop = self.path + "/"
        self.rc = os.path.join(world.dir, "procmailrc.%d" % uid)
        self.seq = 0
        self.cooldown = 0.0          # until then an [IN-USE] may be a reset client's server
        self.uidl_of = {}            # UIDL -> Message-ID, across sessions
        self.sessions = 0
        self.deliv_during = 0        # deliveries while the clients ran

    def create(self):
        os.mkdir(self.dir, 0o700)
        os.chown(self.dir, self.uid, self.uid)
        if self.kind == "mbox":
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.fchown(fd, self.uid, self.uid)
            os.close(fd)
        else:
            md.Maildir(self.path, self.uid, self.uid).create()
        with open(self.rc, "w") as f:
            # procmail dotlocks DEFAULT.lock and fcntl-locks an mbox; a
            # DEFAULT ending in / is a Maildir (tmp/, then new/)
            f.write("DEFAULT=%s\nLOCKSLEEP=1\nLOCKTIMEOUT=1024\nSUSPEND=1\nSHELL=/bin/sh\n"
                    % self.maildrop)
        os.chmod(self.rc, 0o644)


def free_id_range(n, start=46000):
    """n consecutive ids no account and no group uses."""
    import grp
    import pwd
    used = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    base = start
    while any(base + k in used for k in range(n)):
        base += n
    return base


# ---------------------------------------------------------------- the server

children = pop3lib.children
descendants = pop3lib.descendants


tree_cpu = pop3lib.tree_cpu


def system_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def cpu_snapshot():
    """{pid: (command, CPU ticks incl. reaped children)} of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        name = st[st.find("(") + 1:st.rfind(")")]
        parts = st.rsplit(")", 1)[1].split()
        out[int(d)] = (name, sum(int(parts[i]) for i in (11, 12, 13, 14)))
    return out


def others_cpu(before, after, ours):
    """CPU seconds of the processes that lived through the run and are not
    this test's, by command (their reaped children included)."""
    by = {}
    for pid, (name, t1) in after.items():
        if pid in ours or pid not in before or before[pid][0] != name:
            continue
        d = (t1 - before[pid][1]) / CLK
        if d > 0:
            by[name] = by.get(name, 0.0) + d
    return by


def accept_queue(port):
    """Connections waiting in the listening socket's accept queue (the
    rx_queue of the LISTEN line in /proc/net/tcp)."""
    want = "0100007F:%04X" % port
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":
                    return int(parts[4].split(":")[1], 16)
    except OSError:
        pass
    return 0


def procs_running(exe):
    """Processes whose executable is exe (our private copy of pop3d)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink("/proc/%s/exe" % d) == exe:
                    out.append(int(d))
            except OSError:
                pass
    return out


class Server:
    def __init__(self, world):
        self.w = world
        self.port = None
        self.proc = None
        self.logpath = os.path.join(world.dir, "pop3d.log")

    def start(self):
        w = self.w
        argv = [w.pop3d, "-e", "-D", "0", "-f", w.userfile, "-l", w.statedir]
        self.log = open(self.logpath, "ab")
        for _ in range(5):
            self.port = pop3lib.free_port()
            full = ["systemd-socket-activate", "--accept", "--inetd",
                    "-l", "127.0.0.1:%d" % self.port] + argv
            self.proc = subprocess.Popen(NICE + full, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=self.log,
                                         start_new_session=True, close_fds=True,
                                         env={"PATH": "/usr/bin:/bin", "LANG": "C"})
            if pop3lib.wait_for(lambda: pop3lib.port_listening(self.port)
                                or self.proc.poll() is not None, timeout=10) \
                    and self.proc.poll() is None:
                self.argv = full
                return
            self.stop()
        raise RuntimeError("systemd-socket-activate did not listen")

    def sessions(self):
        return descendants(self.proc.pid) if self.proc else []

    def cpu(self):
        return tree_cpu(self.proc.pid)

    def stop(self):
        if self.proc is None:
            return
        pop3lib.stop_group(self.proc)
        self.proc = None
        self.log.close()


# ---------------------------------------------------------------- a client connection

class Fail(Exception):
    """A protocol or content failure found by a session."""


class Conn:
    def __init__(self, reader, writer):
        self.r = reader
        self.w = writer
        self.buf = bytearray()
        self.eof = False

    @classmethod
    async def open(cls, port):
        r, w = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, limit=1 << 20), READ_TIMEOUT)
        return cls(r, w)

    async def _more(self):
        data = await asyncio.wait_for(self.r.read(262144), READ_TIMEOUT)
        if not data:
            self.eof = True
            raise EOFError("connection closed by pop3d")
        self.buf += data

    async def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.w.write(data)
        await asyncio.wait_for(self.w.drain(), READ_TIMEOUT)

    async def status(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                break
            await self._more()
        if not line.endswith(b"\r\n"):
            raise Fail("status line not CRLF-terminated: %r" % line[:100])
        s = line[:-2].decode("latin-1")
        if not (s.startswith("+OK") or s.startswith("-ERR")):
            raise Fail("status line neither +OK nor -ERR: %r" % s[:100])
        return s

    async def cmd(self, line):
        await self.send(line + "\r\n")
        return await self.status()

    async def multi(self):
        """The body of a multi-line reply, dot-stuffing undone, CRLF kept."""
        scanned = 0
        while True:
            if len(self.buf) >= 3 and self.buf[:3] == b".\r\n":
                del self.buf[:3]
                return b""
            i = self.buf.find(b"\r\n.\r\n", max(0, scanned - 4))
            if i >= 0 and len(self.buf) >= 3:
                body = bytes(self.buf[:i + 2])
                del self.buf[:i + 5]
                break
            scanned = len(self.buf)
            await self._more()
        lines = body.split(b"\r\n")
        if lines[-1] != b"" or any(b"\n" in l for l in lines):
            raise Fail("multi-line reply with a line not ending in CRLF")
        return b"".join((l[1:] if l.startswith(b".") else l) + b"\r\n" for l in lines[:-1])

    async def read_some(self, n):
        """Read about n octets of whatever comes (a reply being cut off)."""
        got = len(self.buf)
        self.buf.clear()
        while got < n:
            data = await asyncio.wait_for(self.r.read(min(262144, n - got)), READ_TIMEOUT)
            if not data:
                break
            got += len(data)
        return got

    async def expect_eof(self, what):
        try:
            data = await asyncio.wait_for(self.r.read(4096), READ_TIMEOUT)
        except (ConnectionError, OSError):
            return
        if data or self.buf:
            raise Fail("%s: data after the last reply: %r" % (what, (bytes(self.buf) + data)[:100]))

    def reset(self):
        """Close abruptly: SO_LINGER 0, so the kernel sends an RST."""
        sock = self.w.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.w.transport.abort()

    async def close(self):
        try:
            self.w.close()
            await asyncio.wait_for(self.w.wait_closed(), 5)
        except (OSError, asyncio.TimeoutError, ConnectionError):
            pass


# ---------------------------------------------------------------- the soak

class World:
    def __init__(self, opts):
        self.opts = opts
        self.dir = tempfile.mkdtemp(prefix="pop3d-soak-", dir="/tmp")
        os.chmod(self.dir, 0o711)
        self.mail = os.path.join(self.dir, "mail")
        os.mkdir(self.mail, 0o711)
        os.chmod(self.mail, 0o711)
        self.statedir = os.path.join(self.dir, "state")
        os.mkdir(self.statedir, 0o700)
        self.userfile = os.path.join(self.dir, "passwd")
        bindir = os.path.join(self.dir, "bin")
        os.mkdir(bindir, 0o755)
        self.pop3d = os.path.join(bindir, "pop3d")
        shutil.copy2(pop3lib.POP3D, self.pop3d)     # a rebuild must not pull it away
        self.mounted = False
        self.users = []

    def setup_users(self, n):
        base = free_id_range(n)
        h = pop3lib.crypt_hash(PW, "$6$")
        lines = []
        for k in range(n):
            u = User(self, base + k, "mbox" if k % 2 == 0 else "maildir")
            u.create()
            self.users.append(u)
            lines.append("%s:%s:%d:%d:soak:%s\n" % (u.name, h, u.uid, u.uid, u.maildrop))
        with open(self.userfile, "w") as f:
            f.write("# pop3d soak test users\n")
            f.writelines(lines)
        os.chmod(self.userfile, 0o600)
        # noatime: procmail sleeps a second, holding its locks, after
        # delivering to an mbox read since it last changed (see crash.py)
        if subprocess.run(["mount", "--bind", self.mail, self.mail]).returncode == 0:
            self.mounted = True
            subprocess.run(["mount", "-o", "remount,bind,noatime", self.mail, self.mail])
        return base

    def cleanup(self, keep):
        if self.mounted:
            if subprocess.run(["umount", self.mail]).returncode != 0:
                subprocess.run(["umount", "-l", self.mail])     # busy: detach it anyway
            self.mounted = False
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class Soak:
    def __init__(self, world, opts, seed):
        self.w = world
        self.opts = opts
        self.rng = random.Random(seed)
        self.seed = seed
        self.ledger = Ledger(os.path.join(world.dir, "ledger.jsonl"))
        self.sesslog = open(os.path.join(world.dir, "sessions.jsonl"), "w")
        self.server = Server(world)
        self.failures = []
        self.inuse_fail = []
        self.free = []
        self.stopping = False
        self.stop_deliveries = False
        self.sid = 0
        self.open_conns = 0
        self.conc_samples = []
        self.lag = []
        self.pass_lat = []
        self.greet_lat = []
        self.stat_lat = []
        self.inuse_lat = []
        self.session_durations = []
        self.c = {k: 0 for k in (
            "connections", "logins", "sessions done", "quit +OK", "habit one-by-one",
            "habit all-then-dele", "habit browse", "habit rset", "pipelined",
            "killed mid-RETR", "killed mid-QUIT", "dropped after DELE",
            "collisions ([IN-USE] at once)", "wrong password first",
            "reconnect at once after QUIT", "[IN-USE] after a reset (allowed, retried)",
            "RETR", "RETR octets", "TOP", "DELE", "DELE confirmed by +OK QUIT",
            "RSET", "UIDL", "LIST", "retrieved again (deleting session not confirmed)",
            "deliveries", "delivered octets", "procmail failures", "procmail stderr lines")}
        self.procmail_stderr = {}
        self.deliv_next = 0
        self.deliv_order = list(world.users)
        self.t0 = None

    def fail(self, what):
        self.failures.append(what)
        print("# FAILURE: %s" % what, flush=True)

    # ---- deliveries
    def deliv_argv(self, u):
        return NICE + ["setpriv", "--reuid=%d" % u.uid, "--regid=%d" % u.uid, "--clear-groups",
                PROCMAIL, "-m", u.rc]

    async def deliver(self, u, rng):
        u.seq += 1
        msgid, raw = make_message(rng, u.name, u.seq, size_mix(rng))
        e = Entry(msgid, u.name, raw)
        self.ledger.add(e)
        env = {"PATH": "/usr/bin:/bin", "HOME": u.dir, "LOGNAME": u.name, "USER": u.name,
               "SHELL": "/bin/sh"}
        try:
            p = await asyncio.create_subprocess_exec(
                *self.deliv_argv(u), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                env=env, cwd=u.dir)
            _, err = await asyncio.wait_for(p.communicate(FROM_LINE + raw), 120)
            rc = p.returncode
        except asyncio.TimeoutError:
            p.kill()
            await p.wait()
            rc, err = "timeout", b""
        e.rc = rc
        e.t_deliv = time.monotonic()
        self.ledger.note(ev="delivered", id=msgid, rc=rc)
        for line in err.decode("latin-1").splitlines():
            self.c["procmail stderr lines"] += 1
            self.procmail_stderr[line] = self.procmail_stderr.get(line, 0) + 1
        if rc != 0:
            self.c["procmail failures"] += 1
            self.fail("procmail for %s exited %r: %r" % (u.name, rc, err[-300:]))
        else:
            self.c["deliveries"] += 1
            self.c["delivered octets"] += len(raw)
            if self.t0 is not None and not self.stopping:
                u.deliv_during += 1

    async def deliverer(self, k, interval):
        rng = random.Random("%d-deliv-%d" % (self.seed, k))
        while not self.stop_deliveries:
            t0 = time.monotonic()
            i = self.deliv_next
            self.deliv_next += 1
            order = self.deliv_order
            if i % len(order) == 0 and i:
                self.rng.shuffle(order)     # each round gives every user one delivery
            await self.deliver(order[i % len(order)], rng)
            dt = time.monotonic() - t0
            await asyncio.sleep(max(0.0, interval - dt) * rng.uniform(0.5, 1.5))

    async def seed_maildrops(self, per_user):
        rng = random.Random("%d-seed" % self.seed)
        todo = [u for u in self.w.users for _ in range(per_user)]
        sem = asyncio.Semaphore(8)

        async def one(u):
            async with sem:
                await self.deliver(u, rng)
        await asyncio.gather(*(one(u) for u in todo))

    # ---- the user pool
    def acquire(self, rng):
        if not self.free:
            return None
        i = rng.randrange(len(self.free))
        self.free[i], self.free[-1] = self.free[-1], self.free[i]
        return self.free.pop()

    def release(self, u):
        self.free.append(u)

    # ---- checks on what a session receives
    def check_retr(self, u, sess, k, st, data, sizes):
        m = re.match(r"\+OK (\d+) octets$", st)
        if not m:
            raise Fail("RETR %d: %r" % (k, st))
        msgid = msgid_of(data)
        e = self.ledger.e.get(msgid)
        if e is None:
            raise Fail("RETR %d of %s: a message not in the ledger (Message-ID %r): %r"
                       % (k, u.name, msgid, data[:200]))
        if e.user != u.name:
            raise Fail("RETR %d of %s: %s is %s's message" % (k, u.name, msgid, e.user))
        if len(data) != e.wire_len or hashlib.sha256(data).digest() != e.wire_sha:
            want = mb.delivered(e.raw)
            j = next((j for j in range(min(len(data), len(want))) if data[j] != want[j]),
                     min(len(data), len(want)))
            raise Fail("RETR %d of %s: %s altered: %d octets, ledger %d, first difference "
                       "at %d: got %r want %r" % (k, u.name, msgid, len(data), len(want), j,
                                                  data[j:j + 40], want[j:j + 40]))
        if int(m.group(1)) != len(data) or sizes[k - 1] != len(data):
            raise Fail("RETR %d of %s: %s: +OK %s octets, LIST %d, received %d"
                       % (k, u.name, msgid, m.group(1), sizes[k - 1], len(data)))
        self.seen(u, sess, k, e)
        e.retrieved += 1
        if e.retrieved > 1:
            self.c["retrieved again (deleting session not confirmed)"] += 1
        self.c["RETR"] += 1
        self.c["RETR octets"] += len(data)
        sess["retr"].append([msgid, len(data)])
        return e

    def seen(self, u, sess, k, e):
        """Message number k of this session is ledger entry e."""
        if e.confirmed is not None and sess["t_pass"] > e.confirmed_at:
            raise Fail("%s: %s was deleted by session %d (+OK to QUIT) and is offered "
                       "again by session %d" % (u.name, e.msgid, e.confirmed, sess["id"]))
        uidl = sess["uidls"][k - 1]
        if e.uidl is None:
            e.uidl = uidl
        elif e.uidl != uidl:
            raise Fail("%s: UIDL of %s changed from %s to %s" % (u.name, e.msgid, e.uidl, uidl))
        prev = u.uidl_of.setdefault(uidl, e.msgid)
        if prev != e.msgid:
            raise Fail("%s: UIDL %s named %s, now %s" % (u.name, uidl, prev, e.msgid))
        other = sess["ids"].get(e.msgid)
        if other is not None and other != k:
            raise Fail("%s: %s is message %d and message %d in one session"
                       % (u.name, e.msgid, other, k))
        sess["ids"][e.msgid] = k

    async def identify(self, c, u, sess, k, sizes):
        """TOP k 0 (or k lines): which ledger message is number k."""
        lines = sess["rng"].choice([0, 0, 1, 3, 10])
        st = await c.cmd("TOP %d %d" % (k, lines))
        if not st.startswith("+OK"):
            raise Fail("TOP %d %d: %r" % (k, lines, st))
        data = await c.multi()
        self.c["TOP"] += 1
        msgid = msgid_of(data)
        e = self.ledger.e.get(msgid)
        if e is None or e.user != u.name:
            raise Fail("TOP %d of %s: unknown message %r" % (k, u.name, msgid))
        if data != top_expected(e.raw, lines):
            raise Fail("TOP %d %d of %s: %s: not the header and %d lines"
                       % (k, lines, u.name, msgid, lines))
        if sizes[k - 1] != e.wire_len:
            raise Fail("LIST %d of %s: %d, %s has %d" % (k, u.name, sizes[k - 1], msgid,
                                                         e.wire_len))
        self.seen(u, sess, k, e)
        return e

    # ---- one session
    async def think(self, rng):
        t = self.opts.think
        if t > 0:
            await asyncio.sleep(rng.uniform(0, t))

    async def collide(self, u, rng):
        """A second session for a maildrop the first holds: [IN-USE] at once."""
        c = await Conn.open(self.server.port)
        self.open_conns += 1
        try:
            st = await c.status()
            if not st.startswith("+OK"):
                raise Fail("greeting of the colliding session: %r" % st)
            await c.cmd("USER " + u.name)
            t0 = time.monotonic()
            st = await c.cmd("PASS " + PW)
            dt = time.monotonic() - t0
            self.inuse_lat.append(dt)
            if not st.startswith("-ERR [IN-USE]"):
                self.inuse_fail.append("%s: a second session got %r" % (u.name, st))
                raise Fail("a second session for %s got %r while the first is logged in"
                           % (u.name, st))
            if dt > IN_USE_MAX:
                self.inuse_fail.append("%s: [IN-USE] after %.1f s" % (u.name, dt))
                raise Fail("[IN-USE] for %s came after %.2f s: a wait" % (u.name, dt))
            try:
                await c.expect_eof("after [IN-USE]")
            except EOFError:
                pass
            self.c["collisions ([IN-USE] at once)"] += 1
        finally:
            self.open_conns -= 1
            await c.close()

    async def session(self, u, rng, reconnect):
        """One session on user u; returns its outcome."""
        self.sid += 1
        sess = {"id": self.sid, "user": u.name, "kind": u.kind, "rng": rng, "retr": [],
                "dele": [], "ids": {}, "t0": time.monotonic(), "t_pass": None,
                "reconnect": reconnect}
        r = rng.random()
        habit = ("one-by-one" if r < 0.35 else "all-then-dele" if r < 0.70 else
                 "browse" if r < 0.85 else "rset")
        sess["habit"] = habit
        kill = None
        r = rng.random()
        if habit != "browse":
            if r < self.opts.kill_rate:
                kill = "retr"
            elif r < 2 * self.opts.kill_rate:
                kill = "quit"
            elif r < 2.5 * self.opts.kill_rate:
                kill = "drop"
        sess["kill"] = kill
        collide = rng.random() < self.opts.collide_rate
        wrong = rng.random() < 0.02
        t_conn = time.monotonic()
        c = await Conn.open(self.server.port)
        self.c["connections"] += 1
        self.open_conns += 1
        outcome = None
        quit_sent = False
        deleted = {}                      # k -> Entry, pending
        try:
            st = await c.status()
            self.greet_lat.append(time.monotonic() - t_conn)
            if not st.startswith("+OK"):
                raise Fail("greeting: %r" % st)
            if wrong:
                self.c["wrong password first"] += 1
                await c.cmd("USER " + u.name)
                st = await c.cmd("PASS wrong-" + PW)
                if not st.startswith("-ERR [AUTH]"):
                    raise Fail("wrong password for %s: %r" % (u.name, st))
            st = await c.cmd("USER " + u.name)
            if not st.startswith("+OK"):
                raise Fail("USER %s: %r" % (u.name, st))
            sess["t_pass"] = t0 = time.monotonic()
            st = await c.cmd("PASS " + PW)
            dt = time.monotonic() - t0
            if st.startswith("-ERR [IN-USE]"):
                if time.monotonic() < u.cooldown:
                    self.c["[IN-USE] after a reset (allowed, retried)"] += 1
                    outcome = "in-use-after-reset"
                    return outcome
                self.inuse_fail.append("%s: unexpected %r (session %d%s)" % (
                    u.name, st, sess["id"], ", right after +OK to QUIT" if reconnect else ""))
                raise Fail("PASS for %s: %r although no session holds it%s"
                           % (u.name, st, " (reconnect right after +OK to QUIT)"
                              if reconnect else ""))
            if not st.startswith("+OK"):
                raise Fail("PASS for %s: %r" % (u.name, st))
            self.pass_lat.append(dt)
            self.c["logins"] += 1
            if reconnect:
                self.c["reconnect at once after QUIT"] += 1
            u.sessions += 1
            t_stat = time.monotonic()
            st = await c.cmd("STAT")
            self.stat_lat.append(time.monotonic() - t_stat)
            m = re.match(r"\+OK (\d+) (\d+)$", st)
            if not m:
                raise Fail("STAT: %r" % st)
            n, octets = int(m.group(1)), int(m.group(2))
            st = await c.cmd("LIST")
            if not st.startswith("+OK"):
                raise Fail("LIST: %r" % st)
            lst = (await c.multi()).split(b"\r\n")[:-1]
            self.c["LIST"] += 1
            sizes = [int(l.split()[1]) for l in lst]
            if [int(l.split()[0]) for l in lst] != list(range(1, n + 1)) or sum(sizes) != octets:
                raise Fail("LIST does not match STAT %d %d: %r" % (n, octets, lst[:5]))
            st = await c.cmd("UIDL")
            if not st.startswith("+OK"):
                raise Fail("UIDL: %r" % st)
            ul = (await c.multi()).split(b"\r\n")[:-1]
            self.c["UIDL"] += 1
            sess["uidls"] = [l.split()[1].decode() for l in ul]
            if len(ul) != n or len(set(sess["uidls"])) != n:
                raise Fail("UIDL: %d lines, %d distinct, STAT %d" % (len(ul),
                                                                    len(set(sess["uidls"])), n))
            if collide:
                await self.collide(u, rng)
            await self.think(rng)
            cap = self.opts.max_retr
            nums = list(range(1, min(n, cap) + 1))
            self.c["habit " + habit] += 1
            kill_at = rng.choice(nums) if (kill == "retr" and nums) else None
            if kill == "retr" and kill_at is None:
                kill = sess["kill"] = None

            async def retr(k):
                if k == kill_at:
                    await c.send("RETR %d\r\n" % k)
                    st = await c.status()
                    if st.startswith("+OK"):
                        await c.read_some(rng.randint(0, max(0, sizes[k - 1] - 1)))
                    c.reset()
                    self.c["killed mid-RETR"] += 1
                    return None
                st = await c.cmd("RETR %d" % k)
                data = await c.multi()
                return self.check_retr(u, sess, k, st, data, sizes)

            async def dele(k, e):
                st = await c.cmd("DELE %d" % k)
                if not st.startswith("+OK"):
                    raise Fail("DELE %d: %r" % (k, st))
                deleted[k] = e
                self.c["DELE"] += 1

            if habit == "one-by-one":
                for k in nums:
                    e = await retr(k)
                    if e is None:
                        outcome = "killed-retr"
                        return outcome
                    await self.think(rng)
                    await dele(k, e)
                    await self.think(rng)
            elif habit == "all-then-dele":
                if rng.random() < 0.3 and kill_at is None:
                    self.c["pipelined"] += 1
                    await c.send("".join("RETR %d\r\n" % k for k in nums))
                    got = {}
                    for k in nums:
                        st = await c.status()
                        got[k] = self.check_retr(u, sess, k, st, await c.multi(), sizes)
                    await c.send("".join("DELE %d\r\n" % k for k in nums))
                    for k in nums:
                        st = await c.status()
                        if not st.startswith("+OK"):
                            raise Fail("DELE %d (pipelined): %r" % (k, st))
                        deleted[k] = got[k]
                        self.c["DELE"] += 1
                else:
                    got = {}
                    for k in nums:
                        e = await retr(k)
                        if e is None:
                            outcome = "killed-retr"
                            return outcome
                        got[k] = e
                        await self.think(rng)
                    for k in nums:
                        await dele(k, got[k])
            elif habit == "browse":
                for k in rng.sample(range(1, n + 1), min(n, rng.randint(1, 5))):
                    await self.identify(c, u, sess, k, sizes)
                    st = await c.cmd("LIST %d" % k)
                    if st != "+OK %d %d" % (k, sizes[k - 1]):
                        raise Fail("LIST %d: %r, LIST said %d" % (k, st, sizes[k - 1]))
                    st = await c.cmd("UIDL %d" % k)
                    if st != "+OK %d %s" % (k, sess["uidls"][k - 1]):
                        raise Fail("UIDL %d: %r, UIDL said %s" % (k, st, sess["uidls"][k - 1]))
                    await self.think(rng)
                st = await c.cmd("NOOP")
                if not st.startswith("+OK"):
                    raise Fail("NOOP: %r" % st)
            else:                                   # rset
                for k in nums[:rng.randint(1, 6)] if nums else []:
                    e = await retr(k)
                    if e is None:
                        outcome = "killed-retr"
                        return outcome
                    await dele(k, e)
                st = await c.cmd("RSET")
                self.c["RSET"] += 1
                if not st.startswith("+OK"):
                    raise Fail("RSET: %r" % st)
                deleted.clear()
                st = await c.cmd("STAT")
                if st != "+OK %d %d" % (n, octets):
                    raise Fail("STAT after RSET: %r, at login %d %d" % (st, n, octets))
                if n:
                    for k in rng.sample(range(1, n + 1), min(n, rng.randint(0, 3))):
                        e = await self.identify(c, u, sess, k, sizes)
                        await dele(k, e)
            sess["dele"] = [e.msgid for e in deleted.values()]
            if kill == "quit" and deleted:
                quit_sent = True
                await c.send("QUIT\r\n")
                r = rng.random()
                if r < 0.5:
                    await asyncio.sleep(rng.uniform(0, 0.005))
                c.reset()
                self.c["killed mid-QUIT"] += 1
                for e in deleted.values():
                    e.uncertain.append(sess["id"])
                outcome = "killed-quit"
                return outcome
            if kill == "drop" and deleted:
                self.c["dropped after DELE"] += 1
                outcome = "dropped"
                return outcome
            quit_sent = True
            st = await c.cmd("QUIT")
            t_ok = time.monotonic()
            if not st.startswith("+OK"):
                raise Fail("QUIT of %s: %r" % (u.name, st))
            for e in deleted.values():
                if e.confirmed is not None:
                    raise Fail("%s: %s deleted by sessions %d and %d, both with +OK to QUIT"
                               % (u.name, e.msgid, e.confirmed, sess["id"]))
                e.confirmed = sess["id"]
                e.confirmed_at = t_ok
                self.c["DELE confirmed by +OK QUIT"] += 1
            self.c["quit +OK"] += 1
            await c.expect_eof("QUIT")
            outcome = "quit-ok"
            return outcome
        except Fail as x:
            self.fail("session %d (%s, %s, %s): %s" % (sess["id"], u.name, habit, kill, x))
            outcome = "failed"
            return outcome
        except (EOFError, ConnectionError, OSError, asyncio.TimeoutError) as x:
            self.fail("session %d (%s, %s, %s): %s: %s" % (sess["id"], u.name, habit, kill,
                                                          type(x).__name__, x))
            outcome = "failed"
            return outcome
        finally:
            if outcome == "failed" and quit_sent:
                # the server may or may not have done this update
                for e in deleted.values():
                    if e.confirmed != sess["id"]:
                        e.uncertain.append(sess["id"])
            self.open_conns -= 1
            if outcome in ("killed-retr", "killed-quit"):
                u.cooldown = time.monotonic() + KILL_GRACE
            else:
                await c.close()
                if outcome == "dropped":
                    u.cooldown = time.monotonic() + KILL_GRACE
            self.c["sessions done"] += 1
            sess["outcome"] = outcome
            sess["t1"] = time.monotonic()
            if outcome not in ("in-use-after-reset", "failed"):
                self.session_durations.append(sess["t1"] - sess["t0"])
            self.sesslog.write(json.dumps({k: v for k, v in sess.items()
                                           if k not in ("rng", "ids", "uidls")}) + "\n")

    async def client(self, i):
        rng = random.Random("%d-client-%d" % (self.seed, i))
        await asyncio.sleep(rng.uniform(0, self.opts.ramp))
        u = None
        reconnect = False
        while not self.stopping:
            if u is None:
                u = self.acquire(rng)
                reconnect = False
                if u is None:
                    await asyncio.sleep(0.05)
                    continue
            try:
                outcome = await self.session(u, rng, reconnect)
            except Exception:                    # a bug in the test: say so, go on
                self.fail("client %d: %s" % (i, traceback.format_exc(limit=3)))
                outcome = "failed"
            if outcome == "quit-ok" and rng.random() < 0.1 and not self.stopping:
                reconnect = True                 # the same maildrop again, at once
                continue
            self.release(u)
            u = None
            await asyncio.sleep(rng.uniform(0, self.opts.pause))
        if u is not None:
            self.release(u)

    async def sampler(self):
        while not self.stopping:
            t0 = time.monotonic()
            await asyncio.sleep(0.1)
            self.lag.append(time.monotonic() - t0 - 0.1)
            if len(self.lag) % 10 == 0:
                self.conc_samples.append((self.open_conns, len(self.server.sessions()),
                                          accept_queue(self.server.port)))

    # ---- the run
    async def run(self):
        opts = self.opts
        w = self.w
        self.free = list(w.users)
        self.server.start()
        print("# server: %s" % " ".join(self.server.argv), flush=True)
        t = time.monotonic()
        await self.seed_maildrops(opts.seed_msgs)
        print("# seeded %d maildrops with %d messages each by procmail in %.1f s"
              % (len(w.users), opts.seed_msgs, time.monotonic() - t), flush=True)
        interval = opts.deliverers / opts.delivery_rate
        deliv = [asyncio.ensure_future(self.deliverer(k, interval))
                 for k in range(opts.deliverers)]
        await asyncio.sleep(0.5)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        rc0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0 = self.server.cpu()
        sys0 = system_busy()
        snap0 = cpu_snapshot()
        d0 = self.c["deliveries"]
        self.t0 = time.monotonic()
        samp = asyncio.ensure_future(self.sampler())
        clients = [asyncio.ensure_future(self.client(i)) for i in range(opts.clients)]
        next_report = self.t0 + 30
        while time.monotonic() - self.t0 < opts.seconds:
            await asyncio.sleep(1)
            if time.monotonic() >= next_report:
                next_report += 30
                print("# t=%3.0fs: %d logins, %d sessions done, %d open connections, %d pop3d "
                      "processes, %d deliveries, %d failures" % (
                          time.monotonic() - self.t0, self.c["logins"],
                          self.c["sessions done"], self.open_conns,
                          len(self.server.sessions()), self.c["deliveries"],
                          len(self.failures)), flush=True)
        self.stopping = True
        self.t_load = time.monotonic() - self.t0
        done, pending = await asyncio.wait(clients, timeout=180)
        if pending:
            self.fail("%d clients still busy 180 s after the end of the load" % len(pending))
            for p in pending:
                p.cancel()
        self.t1 = time.monotonic()
        self.stop_deliveries = True
        await asyncio.wait(deliv, timeout=180)
        await samp
        self.cpu_server = self.server.cpu() - cpu0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        rc1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        sys1 = system_busy()
        ours = {os.getpid(), self.server.proc.pid} | set(descendants(os.getpid()))
        self.others = others_cpu(snap0, cpu_snapshot(), ours)
        self.cpu_total = (sys1[0] - sys0[0]) / CLK
        self.cpu_client = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        self.cpu_procmail = (rc1.ru_utime + rc1.ru_stime) - (rc0.ru_utime + rc0.ru_stime)
        self.busy = (sys1[0] - sys0[0]) / max(1, sys1[1] - sys0[1])
        self.deliv_during = self.c["deliveries"] - d0
        self.wall = self.t1 - self.t0
        self.sesslog.close()

    # ---- the end
    def read_maildrops(self):
        """{user: [(msgid, stored bytes, name or None)]} read independently."""
        out = {}
        for u in self.w.users:
            items = []
            if u.kind == "mbox":
                data = mc.read_locked(u.path)
                chunks = mc.chunks(data)
                if b"".join(c.data for c in chunks) != data:
                    raise AssertionError("mbox reader lost octets (test bug)")
                for c in chunks:
                    items.append((c.msgid, c.data, None))
            else:
                st = md.Maildir(u.path).state()
                for uniq, where in st.items():
                    for sub, name, data in where:
                        items.append((msgid_of(data), data, sub + "/" + name))
            out[u.name] = items
        return out

    def check_ledger(self, drops):
        """Every message in its maildrop exactly once, unless deleted with +OK."""
        problems = []
        counts = {"present": 0, "deleted (+OK QUIT)": 0, "deleted by a reset QUIT": 0,
                  "kept by a reset QUIT": 0, "procmail failed, absent": 0}
        where = {}
        for user, items in drops.items():
            for msgid, data, name in items:
                e = self.ledger.e.get(msgid)
                if e is None:
                    problems.append("%s: %s holds octets of no ledger message: %r"
                                    % (user, name or "mbox", data[:120]))
                    continue
                if e.user != user:
                    problems.append("%s: %s is %s's message" % (user, msgid, e.user))
                want = FROM_LINE + e.raw + b"\n" if name is None else e.raw
                if data != want:
                    problems.append("%s: %s altered in the maildrop (%d octets, delivered %d)"
                                    % (user, msgid, len(data), len(want)))
                where.setdefault(msgid, []).append(name or "mbox")
        groups = {}
        for msgid, e in self.ledger.e.items():
            n = len(where.get(msgid, []))
            if n > 1:
                problems.append("%s: %s duplicated: %d copies %r" % (e.user, msgid, n,
                                                                     where[msgid]))
            if e.rc != 0:
                if n == 0:
                    counts["procmail failed, absent"] += 1
                continue
            if e.confirmed is not None:
                if n:
                    problems.append("%s: %s deleted by session %d (+OK to QUIT) but still "
                                    "in the maildrop" % (e.user, msgid, e.confirmed))
                else:
                    counts["deleted (+OK QUIT)"] += 1
                continue
            if e.uncertain:
                s = e.uncertain[-1]        # the last reset session that DELEd it
                groups.setdefault(s, []).append((msgid, n))
                continue
            if n == 0:
                problems.append("%s: %s LOST: not in the maildrop, never deleted with +OK "
                                "to QUIT (retrieved %d times)" % (e.user, msgid, e.retrieved))
            else:
                counts["present"] += 1
        for s, items in groups.items():
            there = [m for m, n in items if n]
            if there and len(there) != len(items):
                problems.append("session %d (reset after QUIT): %d of its %d deleted messages "
                                "are gone, %d still there: an update done in part"
                                % (s, len(items) - len(there), len(items), len(there)))
            if there:
                counts["kept by a reset QUIT"] += len(there)
                counts["present"] += len(there)
            else:
                counts["deleted by a reset QUIT"] += len(items)
        return problems, counts, groups

    async def final_logins(self, drops):
        """One more login to every maildrop: +OK, and what the files hold."""
        problems = []
        for u in self.w.users:
            items = drops[u.name]
            if u.kind == "mbox":
                raws = [mb.split_mbox(d)[0].raw for _, d, _ in items]
                froms = [FROM_LINE] * len(raws)
                sizes = [len(mb.delivered(r)) for r in raws]
                uidls = mb.expected_uidls(raws, froms) if raws else []
            else:
                order = sorted(items, key=lambda it: md.order_key(it[2].split("/", 1)[1]))
                sizes = [md.pop3_size(n.split("/", 1)[1], d) for _, d, n in order]
                uidls = [md.uidl(n.split("/", 1)[1]) for _, d, n in order]
            try:
                c = await Conn.open(self.server.port)
                try:
                    await c.status()
                    await c.cmd("USER " + u.name)
                    st = await c.cmd("PASS " + PW)
                    if not st.startswith("+OK"):
                        problems.append("%s: final login: %r" % (u.name, st))
                        continue
                    st = await c.cmd("LIST")
                    got = [int(l.split()[1]) for l in (await c.multi()).split(b"\r\n")[:-1]]
                    st = await c.cmd("UIDL")
                    gu = [l.split()[1].decode() for l in (await c.multi()).split(b"\r\n")[:-1]]
                    if got != sizes:
                        problems.append("%s: final LIST %r, the files say %r"
                                        % (u.name, got[:8], sizes[:8]))
                    if gu != uidls:
                        problems.append("%s: final UIDL %r, the files say %r"
                                        % (u.name, gu[:4], uidls[:4]))
                    st = await c.cmd("QUIT")
                    if not st.startswith("+OK"):
                        problems.append("%s: final QUIT: %r" % (u.name, st))
                finally:
                    await c.close()
            except (EOFError, ConnectionError, OSError, asyncio.TimeoutError, Fail) as x:
                problems.append("%s: final session: %s %s" % (u.name, type(x).__name__, x))
        return problems

    def leftovers(self):
        problems = []
        for u in self.w.users:
            if u.kind == "mbox":
                names = sorted(os.listdir(u.dir))
                if names != ["mbox"]:
                    problems.append("%s: next to the mbox: %r (a dotlock or a stray file)"
                                    % (u.name, [n for n in names if n != "mbox"]))
            else:
                tmp = os.listdir(os.path.join(u.path, "tmp"))
                if tmp:
                    problems.append("%s: Maildir tmp/ holds %r" % (u.name, tmp[:5]))
                lk = os.path.join(u.path, "pop3d.lock")
                if os.path.exists(lk):
                    problems += self.try_flock(lk, u.name)
        for name in sorted(os.listdir(self.w.statedir)):
            p = os.path.join(self.w.statedir, name)
            if name.endswith(".lock"):
                problems += self.try_flock(p, name)
                if os.path.getsize(p):
                    problems.append("journal %s not empty (%d octets)"
                                    % (name, os.path.getsize(p)))
            elif name.endswith(".rescue"):
                problems.append("rescue file %s" % name)
        return problems

    @staticmethod
    def try_flock(path, what):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return []
        except OSError:
            return ["%s: session lock %s still held" % (what, path)]
        finally:
            os.close(fd)


# ---------------------------------------------------------------- main

def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=300, help="load duration (300)")
    ap.add_argument("--clients", type=int, default=200, help="concurrent clients (200)")
    ap.add_argument("--users", type=int, default=240,
                    help="users, half mbox and half Maildir (240)")
    ap.add_argument("--delivery-rate", type=float, default=15.0,
                    help="procmail deliveries per second, all users together (15)")
    ap.add_argument("--deliverers", type=int, default=4, help="procmails at a time (4)")
    ap.add_argument("--seed-msgs", type=int, default=4, help="messages per maildrop at start")
    ap.add_argument("--think", type=float, default=0.1,
                    help="a client's pause between commands, at most (0.1 s)")
    ap.add_argument("--pause", type=float, default=0.2,
                    help="a client's pause between sessions, at most (0.2 s)")
    ap.add_argument("--ramp", type=float, default=5.0, help="clients start within (5 s)")
    ap.add_argument("--kill-rate", type=float, default=0.06,
                    help="share of sessions killed mid-RETR, and as many mid-QUIT (0.06)")
    ap.add_argument("--collide-rate", type=float, default=0.05,
                    help="share of sessions that open a second one on their maildrop")
    ap.add_argument("--max-retr", type=int, default=30, help="messages a session RETRs at most")
    ap.add_argument("--nice", type=int, default=-5,
                    help="the load generator's nice value (-5; pop3d and procmail run at 0), "
                    "so that its time stamps measure the server, not its own waits for a CPU")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-v", action="store_true")
    opts = ap.parse_args()
    VERBOSE = opts.v
    seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(4), "big")
    print("# pop3d soak test (issue 13): %d clients, %.0f s, %d users, seed %d (rerun: --seed %d)"
          % (opts.clients, opts.seconds, opts.users, seed, seed), flush=True)
    if os.geteuid() != 0:
        print("skip soak: needs root (a uid per user, procmail as each user)")
        print("0 passed, 0 failed, 1 skipped")
        return 0
    if not os.path.exists(PROCMAIL):
        print("skip soak: %s not installed (scripts/deps.sh installs it)" % PROCMAIL)
        print("0 passed, 0 failed, 1 skipped")
        return 0
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if opts.nice:
        os.setpriority(os.PRIO_PROCESS, 0, opts.nice)
        NICE[:] = ["nice", "-n", str(-opts.nice)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * opts.clients + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)

    w = World(opts)
    print("# temporary directory %s; server %s (a private copy)" % (w.dir, pop3lib.POP3D),
          flush=True)
    keep = opts.keep
    soak = None
    try:
        base = w.setup_users(opts.users)
        print("# users soak%d..soak%d, uid=gid %d..%d (no account or group has them): "
              "%d mbox, %d Maildir" % (base, base + opts.users - 1, base, base + opts.users - 1,
                                       sum(u.kind == "mbox" for u in w.users),
                                       sum(u.kind == "maildir" for u in w.users)), flush=True)
        soak = Soak(w, opts, seed)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(soak.run())
        ok = report_and_check(soak, loop)
        loop.close()
        if not ok:
            keep = True
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("# interrupted")
        return 1
    finally:
        if soak is not None:
            soak.server.stop()
            soak.ledger.close()
        if keep:
            print("# evidence kept in %s (ledger.jsonl, sessions.jsonl, pop3d.log)" % w.dir)
        w.cleanup(keep)


def report_and_check(soak, loop):
    opts = soak.opts
    c = soak.c
    results = []

    def result(name, problems):
        results.append((name, problems))

    # every pop3d must go away by itself once its client is gone
    gone = pop3lib.wait_for(lambda: not soak.server.sessions(), timeout=60, step=0.2)
    left_sessions = soak.server.sessions()
    drops = soak.read_maildrops()
    ledger_problems, counts, groups = soak.check_ledger(drops)
    final_problems = loop.run_until_complete(soak.final_logins(drops))
    pop3lib.wait_for(lambda: not soak.server.sessions(), timeout=30, step=0.2)
    soak.server.stop()
    left = soak.leftovers()
    procs = procs_running(soak.w.pop3d)
    if not gone:
        left.insert(0, "pop3d processes still running 60 s after the last client: %r"
                    % left_sessions[:10])
    if procs:
        left.append("pop3d processes left after the super-server stopped: %r" % procs[:10])

    wall = soak.wall
    logins = c["logins"]
    conc = soak.conc_samples
    print("#")
    print("# load: %.0f s with %d clients on %d users (%d mbox, %d Maildir); all clients done "
          "%.1f s later" % (soak.t_load, opts.clients, len(soak.w.users),
                            sum(u.kind == "mbox" for u in soak.w.users),
                            sum(u.kind == "maildir" for u in soak.w.users),
                            wall - soak.t_load))
    if conc:
        print("# concurrent connections (client side, sampled each second): mean %.0f, max %d; "
              "pop3d processes: mean %.0f, max %d; not yet accepted by the super-server: "
              "mean %.0f, max %d" % (
                  statistics.mean(x[0] for x in conc), max(x[0] for x in conc),
                  statistics.mean(x[1] for x in conc), max(x[1] for x in conc),
                  statistics.mean(x[2] for x in conc), max(x[2] for x in conc)))
    print("# sessions/s: %.1f logins/s (%d logins), %.1f connections/s (%d connections)"
          % (logins / wall, logins, c["connections"] / wall, c["connections"]))
    print("# time from sending PASS to its +OK: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max "
          "%.1f ms (%d logins)" % (1000 * pct(soak.pass_lat, 50), 1000 * pct(soak.pass_lat, 90),
                                   1000 * pct(soak.pass_lat, 99), 1000 * max(soak.pass_lat or [0]),
                                   len(soak.pass_lat)))
    print("# time from connect to the greeting: p50 %.1f ms, p99 %.1f ms; from STAT (the first "
          "command after login) to its reply: p50 %.1f ms, p99 %.1f ms" % (
              1000 * pct(soak.greet_lat, 50), 1000 * pct(soak.greet_lat, 99),
              1000 * pct(soak.stat_lat, 50), 1000 * pct(soak.stat_lat, 99)))
    if soak.inuse_lat:
        print("# [IN-USE] to a colliding session: p50 %.1f ms, max %.1f ms (%d)" % (
            1000 * pct(soak.inuse_lat, 50), 1000 * max(soak.inuse_lat), len(soak.inuse_lat)))
    if soak.session_durations:
        print("# session duration (connect to close): p50 %.2f s, p99 %.2f s" % (
            pct(soak.session_durations, 50), pct(soak.session_durations, 99)))
    print("# CPU over the run (%.0f s wall, 2 cores = %.0f CPU s): pop3d (every session, via "
          "the super-server) %.1f s, load generator (this process) %.1f s, procmail+setpriv "
          "%.1f s; machine busy %.0f%%" % (wall, 2 * wall, soak.cpu_server, soak.cpu_client,
                                          soak.cpu_procmail, 100 * soak.busy))
    ours = soak.cpu_server + soak.cpu_client + soak.cpu_procmail
    top = sorted(soak.others.items(), key=lambda kv: -kv[1])[:4]
    print("# CPU used on the machine during the run: %.0f s, of which this test %.0f s; the rest "
          "(other users' processes, kernel threads): %.0f s%s" % (
              soak.cpu_total, ours, soak.cpu_total - ours,
              " (long-lived others: %s)" % ", ".join("%s %.0f s" % kv for kv in top)
              if top else ""))
    if soak.lag:
        print("# event-loop lag of the load generator: p50 %.1f ms, p99 %.1f ms, max %.1f ms"
              % (1000 * pct(soak.lag, 50), 1000 * pct(soak.lag, 99), 1000 * max(soak.lag)))
    print("# deliveries: %d during the load (%.1f/s), %d in all, %.1f MB; procmail failures %d; "
          "per user while the clients ran: min %d, max %d; sessions per user: min %d, max %d"
          % (soak.deliv_during, soak.deliv_during / wall, c["deliveries"],
             c["delivered octets"] / 1e6, c["procmail failures"],
             min(u.deliv_during for u in soak.w.users), max(u.deliv_during for u in soak.w.users),
             min(u.sessions for u in soak.w.users), max(u.sessions for u in soak.w.users)))
    if soak.procmail_stderr:
        print("# procmail said: %s" % "; ".join("%r x%d" % kv for kv in
                                               sorted(soak.procmail_stderr.items())[:5]))
    for k in ("habit one-by-one", "habit all-then-dele", "habit browse", "habit rset",
              "pipelined", "killed mid-RETR", "killed mid-QUIT", "dropped after DELE",
              "collisions ([IN-USE] at once)", "wrong password first",
              "reconnect at once after QUIT", "[IN-USE] after a reset (allowed, retried)",
              "quit +OK", "RETR", "TOP", "DELE", "DELE confirmed by +OK QUIT", "RSET",
              "retrieved again (deleting session not confirmed)"):
        print("#   %-50s %d" % (k, c[k]))
    print("#   %-50s %.1f MB" % ("RETR octets received", c["RETR octets"] / 1e6))
    print("# ledger: %d messages delivered; at the end %s" % (
        len(soak.ledger.e), ", ".join("%s %d" % kv for kv in counts.items())))
    print("# reset-after-QUIT sessions with deletions: %d (update done: %d, not done: %d)" % (
        len(groups), sum(1 for g in groups.values() if not any(n for _, n in g)),
        sum(1 for g in groups.values() if any(n for _, n in g))))
    with open(soak.server.logpath, "rb") as f:
        logtext = f.read().decode("latin-1")
    ev = {}
    for line in logtext.splitlines():
        m = re.match(r"pop3d\[\d+\]: ([^=:]*?)(?: \S+=|:|$)", line)
        if m:
            ev[m.group(1)] = ev.get(m.group(1), 0) + 1
    print("# pop3d log lines: %s" % ", ".join("%s %d" % kv for kv in sorted(ev.items())))
    errors = [l for l in logtext.splitlines() if re.search(r"pop3d(?:\[\d+\])?: (error|recovery|warning)", l)]

    # ---- results
    load = []
    if c["logins"] == 0:
        load.append("no session logged in")
    for k in ("habit one-by-one", "habit all-then-dele", "habit browse", "habit rset",
              "killed mid-RETR", "killed mid-QUIT", "collisions ([IN-USE] at once)"):
        if c[k] == 0:
            load.append("nothing of: %s" % k)
    if soak.deliv_during == 0:
        load.append("no delivery during the load")
    starved = [u.name for u in soak.w.users if u.deliv_during == 0]
    if starved:
        load.append("%d users got no delivery while the clients ran: %s"
                    % (len(starved), " ".join(starved[:10])))
    idle_users = [u.name for u in soak.w.users if u.sessions == 0]
    if idle_users:
        load.append("%d users had no session: %s" % (len(idle_users), " ".join(idle_users[:10])))
    result("soak.load", load)
    result("soak.sessions", [f for f in soak.failures if not f.startswith("procmail")])
    result("soak.in-use", soak.inuse_fail)
    result("soak.deliveries", [f for f in soak.failures if f.startswith("procmail")])
    result("soak.ledger", ledger_problems)
    result("soak.final-logins", final_problems)
    result("soak.leftovers", left)
    result("soak.server-log", ["log: " + l for l in errors])
    full = (opts.clients >= 200 and opts.seconds >= 300 and len(soak.w.users) >= 100)
    print("# the issue's numbers (>= 200 clients, >= 300 s, >= 100 users, mbox and Maildir): %s"
          % ("met" if full else "not met (short run)"))
    passed = failed = 0
    for name, problems in results:
        if problems:
            failed += 1
            print("FAIL %s" % name)
            for p in problems[:20]:
                print("    " + p)
            if len(problems) > 20:
                print("    ... %d more" % (len(problems) - 20))
        else:
            passed += 1
            print("ok %s" % name)
    print("%d passed, %d failed" % (passed, failed))
    return failed == 0


if __name__ == "__main__":
    sys.exit(main())
