#!/usr/bin/python3
"""Proof by killing (issue 4, points 5 and 6).

    tests/crash.py [--long] [--kills N] [--seed S] [-k mbox|nofinal|maildir] [-v]

mbox: a mbox of several MB (200 messages, sizes from 1 KB to 1 MB, tricky
content: ">From " lines, lines starting with ".", CRLF messages with CR-only
separator lines, NUL octets, a 70 KB line, "From " inside paragraphs) while
procmail (Debian's, which dotlocks <mbox>.lock and fcntl-locks) delivers
into it in a loop as the maildrop owner, each message with a unique
Message-ID.  Round after round a session logs in, DELEs a random subset
(checking each by TOP's Message-ID) and QUITs, and the server is SIGKILLed
at a random instant of the UPDATE:

  * "op" kills: tests/faultinject.so traces every pwrite/fsync/ftruncate/
    unlink to a pipe and sleeps a little before each; a watcher follows the
    update's steps (journal, rewrite, commit, truncate, clear) and SIGKILLs
    pop3d at a random call of a randomly chosen step - pop3d is then inside
    the shim's sleep, before that call;
  * "time" kills: SIGKILL at a uniformly random time between QUIT and the
    update's expected end (these also land inside write calls).

Where each kill landed is then read from the evidence on disk, not from the
intention: the journal (empty / torn / complete / with commit record, read
with an independent parser), the mbox against the pre-update snapshot and
the NUL sentinel at the new size.  A kill is occasionally repeated during the
recovery itself.  The dotlock the killed server leaves is aged by two hours
(what the passing of time would do: pop3d breaks it after 5 minutes,
procmail after LOCKTIMEOUT); then a new session logs in (recovery runs
before its +OK) and QUITs, and the invariant is checked on a snapshot taken
under a whole-file fcntl read lock with tests/mboxcheck.py:

  the mbox is exactly the messages it held before the killed update, in
  order, less some or all of those the client deleted (none other), plus
  every message procmail delivered meanwhile or after (all those whose
  procmail had exited 0 before the snapshot, possibly one more in flight),
  in delivery order, each chunk (From_ line, message, separator) byte for
  byte; the journal is empty.

nofinal: the same without a delivery agent on a mbox whose last message has
no final newline (procmail would glue its delivery to such a line).

maildir: kills during a Maildir UPDATE (unlinks of DELEd messages and
new/ -> cur/ renames of RETRed ones, procmail delivering into new/): every
message is afterwards in exactly one place, byte-for-byte intact, none lost
but deleted ones.

Short mode (default, make check): ~50 mbox kills, ~10 nofinal, ~50 Maildir.
--long (make check-slow): >= 1000 mbox kills, 100 nofinal, 200 Maildir, and
every phase must have been hit.  Prints per-phase tables and
"N passed, N failed[, N skipped]" (one test per scenario).
"""

import sys
sys.dont_write_bytecode = True

import argparse
import fcntl
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mboxcheck as mc                    # noqa: E402
import pop3lib                            # noqa: E402
from pop3lib import IS_ROOT, Env, PipeTransport, Session   # noqa: E402

PW = "secret"
PROCMAIL = "/usr/bin/procmail"
VERBOSE = False

PHASES = ["before", "journal-partial", "journal-complete", "rewriting", "committed",
          "truncated", "after"]
IN_UPDATE = PHASES[1:6]
PHASE_TEXT = {
    "before": "journal empty, mbox untouched (update not started)",
    "journal-partial": "journal torn (being written): step 1",
    "journal-complete": "journal complete, mbox not yet touched",
    "rewriting": "journal complete, mbox partly rewritten: step 2",
    "committed": "commit record, mbox not truncated (NUL at new size): step 3",
    "truncated": "commit record, mbox truncated, journal not emptied: step 4",
    "after": "journal empty, update complete (before +OK)",
    "fastpath-before": "truncate-only update, not done",
    "fastpath-after": "truncate-only update, done",
    "not-killed": "QUIT answered before the kill",
}


def log(*a):
    if VERBOSE:
        print("#", *a)
        sys.stdout.flush()


class Failure(AssertionError):
    pass


# ---------------------------------------------------------------- messages

FROM_DATE = b"Thu Nov 27 12:00:00 2025"


def body_lines(rng, size, tag, crlf=False, procmail_safe=False):
    """Random text of about size octets with tricky lines."""
    nl = b"\r\n" if crlf else b"\n"
    out = []
    n = 0
    k = 0
    while n < size:
        k += 1
        r = rng.random()
        if r < 0.03:
            line = b"." * rng.randint(1, 3) + b" dot line %d" % k
        elif r < 0.05:
            line = b">From quoted line %d" % k
        elif r < 0.06 and not procmail_safe:
            line = b"NUL\x00in line\x00%d" % k
        elif r < 0.07:
            line = b""
        elif r < 0.08 and out and out[-1] != b"":
            line = b"From inside a paragraph, not a separator %d" % k
        else:
            line = b"%s line %d %s" % (tag, k, b"x" * rng.randint(10, 90))
        out.append(line)
        n += len(line) + len(nl)
    if not procmail_safe:
        # "From " at the start of a line after a blank line would start a new
        # message: never generate that
        for i in range(1, len(out)):
            if out[i].startswith(b"From ") and out[i - 1] == b"":
                out[i] = b">" + out[i]
    else:
        for i in range(len(out)):
            if out[i].startswith(b"From "):
                out[i] = b">" + out[i]      # procmail would quote it itself
    return nl.join(out) + nl


def make_message(rng, msgid, size, crlf=False, procmail_safe=False):
    nl = b"\r\n" if crlf else b"\n"
    hdr = [b"Received: from relay.example.org by mx.example.org; Thu, 27 Nov 2025 "
           b"12:00:00 +0000",
           b"Message-ID: " + msgid.encode(),
           b"Subject: crash test " + msgid.encode(),
           b"From: sender@example.org"]
    return nl.join(hdr) + nl + nl + body_lines(rng, size, msgid.encode(), crlf,
                                                 procmail_safe)


def size_mix(rng, scale=1.0):
    r = rng.random()
    if r < 0.60:
        s = rng.randint(800, 8000)
    elif r < 0.90:
        s = rng.randint(8000, 40000)
    elif r < 0.985:
        s = rng.randint(40000, 200000)
    else:
        s = rng.randint(400000, 1000000)
    return int(s * scale)


def initial_mbox(rng, n, prefix, scale=1.0, final_newline=True):
    """(chunks {msgid: bytes}, order [msgid]) of a new mbox."""
    chunks = {}
    order = []
    for i in range(n):
        msgid = "<%s%d@crash.test>" % (prefix, i)
        crlf = i % 17 == 5
        raw = make_message(rng, msgid, size_mix(rng, scale), crlf=crlf)
        if i == 7:                                   # a 70 KB line
            raw = raw + b"L" * 70000 + b"\n"
        sep = b"\r\n" if crlf else b"\n"             # CRLF ones: CR-only blank line
        from_line = b"From sender@example.org " + FROM_DATE + b"\n"
        last = i == n - 1
        if last and not final_newline:
            raw = raw.rstrip(b"\r\n") + b"\nlast line without a newline"
            sep = b""
        chunks[msgid] = from_line + raw + sep
        order.append(msgid)
    return chunks, order


# ---------------------------------------------------------------- deliveries

class Deliverer:
    """procmail delivering into the maildrop in a loop, one at a time."""

    def __init__(self, world, rng, target, maildir=False):
        self.w = world
        self.rng = random.Random(rng.random())
        self.maildir = maildir
        self.rc = os.path.join(world.e.dir, "procmailrc")
        with open(self.rc, "w") as f:
            # DEFAULT: procmail dotlocks DEFAULT.lock and fcntl-locks the mbox
            f.write("DEFAULT=%s\nLOCKSLEEP=1\nLOCKTIMEOUT=1024\nSUSPEND=1\nSHELL=/bin/sh\n" % target)
        os.chmod(self.rc, 0o644)
        self.home = os.path.join(world.e.dir, "home")
        os.makedirs(self.home, exist_ok=True)
        if IS_ROOT:
            os.chown(self.home, world.e.uid, world.e.gid)
        self.errlog = open(os.path.join(world.e.dir, "procmail.err"), "ab")
        self.items = []             # [msgid, data, state] in delivery order
        self.done = 0               # deliveries finished with exit 0 (a prefix)
        self.failed = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.paused = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def argv(self):
        a = [PROCMAIL, "-m", self.rc]
        if IS_ROOT:
            a = ["setpriv", "--reuid=%d" % self.w.e.uid, "--regid=%d" % self.w.e.gid,
                 "--clear-groups"] + a
        return a

    def _run(self):
        k = 0
        while not self.stop.is_set():
            if self.paused.is_set():
                time.sleep(0.01)
                continue
            msgid = "<d%d.%d@procmail.test>" % (k, os.getpid())
            k += 1
            data = (b"From procmail@example.org " + FROM_DATE + b"\n"
                    + make_message(self.rng, msgid, self.rng.choice(
                        [600, 2000, 5000, 10000, 40000]), procmail_safe=True))
            item = [msgid, data, "running"]
            with self.lock:
                self.items.append(item)
            env = {"PATH": "/usr/bin:/bin", "HOME": self.home, "LOGNAME": "alice",
                   "USER": "alice", "SHELL": "/bin/sh"}
            try:
                p = subprocess.run(self.argv(), input=data, stdout=subprocess.DEVNULL,
                                   stderr=self.errlog, env=env, timeout=60, cwd=self.home)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            with self.lock:
                if rc == 0:
                    item[2] = "done"
                    self.done = sum(1 for it in self.items if it[2] == "done")
                else:
                    item[2] = "failed"
                    self.failed.append((msgid, rc))
            self.stop.wait(self.rng.uniform(0.05, 0.4))

    def finish(self):
        self.stop.set()
        self.thread.join(90)
        self.errlog.close()

    def snapshot_counts(self):
        with self.lock:
            return self.done, len(self.items)


# ---------------------------------------------------------------- the world

class World:
    def __init__(self, maildir=False):
        self.e = Env()
        if maildir:
            self.path = os.path.join(self.e.maildir, "alice.md") + "/"
            self.e.add_user("alice", "{PLAIN}" + PW, mbox=self.path)
        else:
            self.path = self.e.add_user("alice", "{PLAIN}" + PW)
        self.e.write_userfile()
        self.mounted = False
        if IS_ROOT and not maildir:
            # procmail sleeps a second holding its locks whenever the mbox's
            # atime is not older than its mtime (so that "new mail" shows);
            # every read by pop3d or by this test would cause that.  A noatime
            # bind mount of the mail directory (same file system) avoids it.
            d = self.e.maildir
            if subprocess.run(["mount", "--bind", d, d]).returncode == 0:
                self.mounted = True
                subprocess.run(["mount", "-o", "remount,bind,noatime", d, d])

    def spawn(self, env=None, pass_fds=()):
        p = subprocess.Popen(self.e.args(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, bufsize=0, close_fds=True,
                             pass_fds=pass_fds, env=env or self.e.child_env())
        self.e.procs.append(p)
        return Session(PipeTransport(p), proc=p)

    def traced(self, delay_us, decide):
        """pop3d under the shim, its trace going to a TraceWatcher."""
        r, wfd = os.pipe()
        env = mc.shim_env(self.e.child_env(), delay_us=delay_us, trace="fd:%d" % wfd)
        watcher = mc.TraceWatcher(r, decide)
        try:
            s = self.spawn(env, pass_fds=(wfd,))
        finally:
            os.close(wfd)
        watcher.start(s.proc.pid)
        return s, watcher

    def login_retry(self, tries=6):
        """A clean session's login; a delivery agent may hold the locks."""
        last = None
        for i in range(tries):
            s = self.spawn()
            try:
                st = s.cmd("USER alice")
                st = s.cmd("PASS " + PW)
            except (EOFError, AssertionError) as e:
                st = "EOF %s" % e
            if st.startswith("+OK"):
                return s, st
            last = st
            s.close()
            s.proc.wait(10)
            time.sleep(0.5 * (i + 1))
        raise Failure("login failed %d times, last: %r" % (tries, last))

    def journal_path(self):
        names = [n for n in os.listdir(self.e.lockdir) if n.endswith(".lock")]
        return os.path.join(self.e.lockdir, names[0]) if len(names) == 1 else None

    def cleanup(self):
        if self.mounted:
            subprocess.run(["umount", self.e.maildir])
        self.e.cleanup()


def finish_session(s, timeout=30):
    """Read the QUIT reply if any; returns the reply or None (killed)."""
    try:
        st = s.reply(timeout)
    except (EOFError, AssertionError):
        st = None
    try:
        s.expect_eof(10)
    except (EOFError, AssertionError):
        pass
    try:
        s.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        s.proc.wait(5)
        raise Failure("pop3d did not end")
    s.close()
    return st


# ---------------------------------------------------------------- update steps

ORDER = ["journal", "rewrite", "commit", "truncate", "clear", "after"]


class StepTracker:
    """Follows the update's steps from the shim's trace (mbox.c's order)."""

    def __init__(self, mbox_ino, journal_ino):
        self.m, self.j = mbox_ino, journal_ino
        self.step = None
        self.idx = 0

    def feed(self, op):
        new = self.step
        if op.ino == self.j:
            if op.op == "ftruncate" and op.len == 0:
                new = "journal" if self.step is None else "clear"
            elif op.op == "pwrite" and self.step == "rewrite":
                new = "commit"
        elif op.ino == self.m:
            if op.op == "ftruncate":
                new = "truncate"
            elif self.step == "journal":
                new = "rewrite"
        elif op.op == "unlinkat" and self.step is not None:
            new = "after"
        if new != self.step:
            self.step, self.idx = new, 0
        if self.step is not None:
            self.idx += 1
        return self.step, self.idx


# ---------------------------------------------------------------- the mbox scenario

class MboxScenario:
    def __init__(self, name, rng, kills, deliver=True, nmsgs=200, scale=1.0,
                 final_newline=True, delay_us=(300, 1500)):
        self.name = name
        self.rng = rng
        self.kills_wanted = kills
        self.deliver = deliver
        self.delay_us = delay_us
        self.w = World()
        self.chunks, self.E = initial_mbox(rng, nmsgs, name[0], scale, final_newline)
        self.nmsgs, self.scale, self.final_newline = nmsgs, scale, final_newline
        self.low = nmsgs * 3 // 4
        self.serial = 0
        self.refills = 0
        data = b"".join(self.chunks[m] for m in self.E)
        self.w.e.write_mbox(self.w.path, data)
        self.ino = os.stat(self.w.path).st_ino
        self.dl = Deliverer(self.w, rng, self.w.path) if deliver else None
        self.next_deliv = 0          # deliveries before this index are in E (or deleted)
        self.phases = {}
        self.modes = {}
        self.outcomes = {"rolled back": 0, "completed": 0, "partial": 0}
        self.recovery_kills = 0
        self.appended = 0
        self.rounds = 0
        self.kills = 0
        self.jino = None
        self.avg_op = 0.002

    def note(self, table, key):
        table[key] = table.get(key, 0) + 1

    # ---- the invariant
    def expected_chunk(self, msgid):
        if msgid in self.chunks:
            return self.chunks[msgid]
        return None

    def check(self, D, what):
        """Snapshot under the fcntl lock and check the invariant; returns the
        set of messages of D that are gone."""
        if self.dl and self.dl.failed:
            raise Failure("procmail failed: %r" % self.dl.failed[:3])
        done_before, started_before = (self.dl.snapshot_counts() if self.dl else (0, 0))
        fd = os.open(self.w.path, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)      # no delivery half-way, none meanwhile
            data = mc.read_fd(fd)
            done_after, started = (self.dl.snapshot_counts() if self.dl else (0, 0))
            removed = self.check_data(data, D, what, done_before, started)
            self.refill(fd, len(data))
        finally:
            os.close(fd)                        # drops the lock
        return removed

    def refill(self, fd, size):
        """Keep the mbox at several MB: deletions outpace procmail.  Called
        with the mbox locked against procmail; appends as a delivery agent,
        and the new messages join the model in that place."""
        if len(self.E) >= self.low or not self.final_newline:
            return
        add = []
        for _ in range(self.nmsgs // 3):
            msgid = "<r%d@crash.test>" % self.serial
            self.serial += 1
            raw = make_message(self.rng, msgid, size_mix(self.rng, self.scale))
            self.chunks[msgid] = b"From sender@example.org " + FROM_DATE + b"\n" + raw + b"\n"
            add.append(msgid)
        data = b"".join(self.chunks[m] for m in add)
        os.pwrite(fd, data, size)
        self.E.extend(add)
        self.refills += 1

    def check_data(self, data, D, what, done_before, started):
        ch = mc.chunks(data)
        if b"".join(c.data for c in ch) != data:
            raise Failure("%s: reader lost octets (bug in the test)" % what)
        items = self.dl.items[:started] if self.dl else []
        X = list(self.E) + [it[0] for it in items[self.next_deliv:]]
        deliv_pos = {it[0]: k for k, it in enumerate(items)}
        removed = set()
        i = 0
        G = []
        for c in ch:
            if c.msgid is None:
                raise Failure("%s: octets that are no message at offset %d: %r"
                              % (what, c.offset, c.data[:120]))
            while i < len(X) and X[i] != c.msgid:
                if X[i] in D:
                    removed.add(X[i])
                    i += 1
                    continue
                raise Failure("%s: message %s lost or out of order (found %s at offset %d "
                              "instead)" % (what, X[i], c.msgid, c.offset))
            if i == len(X):
                raise Failure("%s: unexpected message %s at offset %d (duplicate or "
                              "unknown): %r" % (what, c.msgid, c.offset, c.data[:100]))
            want = self.expected_chunk(c.msgid)
            if want is None:                         # a delivery seen the first time
                want = items[deliv_pos[c.msgid]][1] + b"\n"
                self.chunks[c.msgid] = want
            if c.data != want:
                k = next((j for j in range(min(len(c.data), len(want)))
                          if c.data[j] != want[j]), min(len(c.data), len(want)))
                raise Failure("%s: message %s at offset %d garbled: octet %d of %d/%d: "
                              "got %r want %r" % (what, c.msgid, c.offset, k, len(c.data),
                                                  len(want), c.data[k:k + 60], want[k:k + 60]))
            G.append(c.msgid)
            i += 1
        for x in X[i:]:
            if x in D:
                removed.add(x)
            elif x in deliv_pos and deliv_pos[x] >= done_before:
                pass                                  # not delivered yet
            else:
                raise Failure("%s: message %s lost (not in the mbox)" % (what, x))
        # deliveries: the completed ones are all there (or deleted)
        seen = [deliv_pos[g] for g in G if g in deliv_pos]
        gone_deliv = [deliv_pos[x] for x in removed if x in deliv_pos]
        upto = max(seen + gone_deliv + [self.next_deliv - 1]) + 1
        if upto < done_before:
            raise Failure("%s: delivery %s (procmail exit 0) missing"
                          % (what, items[upto][0]))
        self.E = G
        self.next_deliv = max(self.next_deliv, upto)
        for x in removed:
            self.chunks.pop(x, None)
        return removed

    # ---- evidence
    def classify(self, pre, D_chunks_removed, jdata, mdata):
        """Where did the kill land?  From the journal and the mbox only."""
        j = mc.Journal(jdata)
        if j.size == 0:
            if mdata[:len(pre)] == pre:
                return "before"
            if mdata[:len(D_chunks_removed)] == D_chunks_removed:
                return "after"
            return "unknown"
        if not j.valid:
            return "journal-partial"
        if not j.committed:
            if mdata[j.start:j.orig_size] == j.saved:
                return "journal-complete"
            return "rewriting"
        if len(mdata) > j.new_size and mdata[j.new_size] == 0:
            return "committed"
        return "truncated"

    # ---- one round
    def choose_deletions(self, n):
        rng = self.rng
        if n == 0:
            return [], "none"
        if n > 260:
            return sorted(rng.sample(range(1, n + 1), min(n, rng.randint(30, 60)))), "many"
        r = rng.random()
        if r < 0.15:
            k = rng.randint(1, min(3, n))
            return list(range(n - k + 1, n + 1)), "suffix"
        if r < 0.35:
            return sorted({1} | set(rng.sample(range(1, n + 1), min(n, rng.randint(0, 5))))), \
                "first"
        if r < 0.55:
            lo = max(1, int(n * 0.8))
            return sorted(rng.sample(range(lo, n + 1), min(n - lo + 1, rng.randint(1, 4)))), \
                "tail"
        return sorted(rng.sample(range(1, n + 1), min(n, rng.randint(1, 12)))), "random"

    def round(self, kill=True):
        rng = self.rng
        w = self.w
        self.rounds += 1
        delay = rng.randint(*self.delay_us)
        mode = rng.choice(["op", "op", "time"]) if kill else "none"
        target = None
        if mode == "op":
            target = rng.choice(["before", "journal", "journal", "journal-fsync", "rewrite",
                                 "rewrite", "commit", "truncate", "clear", "after"])
        st_kill = {"armed": False, "target": target, "r": None, "tracker": None}

        def decide(op, ops):
            if not st_kill["armed"] or mode != "op" or st_kill["tracker"] is None:
                return False
            step, idx = st_kill["tracker"].feed(op)
            if step is None:
                return False
            t = st_kill["target"]
            if t == "before":
                return True                  # the first call of the update
            if t == "journal-fsync":         # the journal written, not yet synced
                return (step == "journal" and op.op == "fsync") or step != "journal"
            if ORDER.index(step) > ORDER.index(t):
                return True                  # overshot (a short step): kill now
            return step == t and idx >= st_kill["r"]

        tm = [time.monotonic()]
        s, watcher = w.traced(delay, decide)
        st = s.login("alice", PW)
        tm.append(time.monotonic())
        m = re.match(r"\+OK maildrop has (\d+) ", st)
        if not m:
            raise Failure("login: %r" % st)
        n = int(m.group(1))
        if self.jino is None:
            self.jino = os.stat(w.journal_path()).st_ino
        nums, kind = self.choose_deletions(n)
        D = set()
        X = list(self.E) + ([it[0] for it in self.dl.items[self.next_deliv:]]
                            if self.dl else [])
        for k in nums:
            st, head = s.cmd_multi("TOP %d 0" % k)
            if not st.startswith("+OK"):
                raise Failure("TOP %d: %r" % (k, st))
            mm = re.search(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", head, re.I | re.M)
            if not mm:
                raise Failure("TOP %d: no Message-ID in %r" % (k, head[:200]))
            msgid = mm.group(1).decode()
            if k <= len(X) and X[k - 1] != msgid:
                raise Failure("message %d is %s, the model says %s" % (k, msgid, X[k - 1]))
            D.add(msgid)
            st = s.cmd("DELE %d" % k)
            if not st.startswith("+OK"):
                raise Failure("DELE %d: %r" % (k, st))
        if self.dl and rng.random() < 0.3:
            # let procmail deliver during the session: the update must then
            # move mail it never loaded (the session holds no lock while idle)
            d0 = self.dl.done
            end = time.monotonic() + 3
            while self.dl.done == d0 and time.monotonic() < end:
                time.sleep(0.01)
        tm.append(time.monotonic())
        pre = mc.read_locked(w.path)
        pre_chunks = mc.chunks(pre)
        if len(pre_chunks) > n:
            self.appended += 1           # procmail delivered during the session
        tm.append(time.monotonic())
        after_image = b"".join(c.data for c in pre_chunks if c.msgid not in D)
        start = next((c.offset for c in pre_chunks if c.msgid in D), len(pre))
        jbytes = len(pre) - start
        est_j = 3 + -(-jbytes // 65536)
        est_r = 2 + -(-jbytes // 65536) + len(nums)
        st_kill["r"] = {"journal": rng.randint(1, est_j), "rewrite": rng.randint(1, est_r),
                        "commit": rng.randint(1, 2), "truncate": rng.randint(1, 2),
                        "clear": rng.randint(1, 2), "after": 1, "before": 1}.get(target)
        st_kill["tracker"] = StepTracker(self.ino, self.jino)
        st_kill["armed"] = True
        timer = None
        t0 = time.monotonic()
        s.send("QUIT\r\n")
        if mode == "time":
            T = (est_j + est_r + 7) * (delay / 1e6 + self.avg_op)
            at = rng.uniform(0, 1.1 * T)
            timer = threading.Timer(at, _kill, (s.proc,))
            timer.start()
        reply = finish_session(s)
        if timer:
            timer.cancel()
            timer.join()
        watcher.join()
        tm.append(time.monotonic())
        killed = s.proc.returncode == -signal.SIGKILL
        ops = [o for o in watcher.ops if o.t >= t0]
        if not killed and reply and reply.startswith("+OK") and len(ops) > 2:
            dur = ops[-1].t - t0
            self.avg_op = 0.8 * self.avg_op + 0.2 * max(0.0, dur / len(ops) - delay / 1e6)
        # evidence, before anything else touches the files
        jp = w.journal_path()
        with open(jp, "rb") as f:
            jdata = f.read()
        with open(w.path, "rb") as f:
            mdata = f.read()
        # the truncate-only fast path: no journal call at all, a truncation
        fast = (not any(o.ino == self.jino for o in ops)
                and any(o.op == "ftruncate" and o.ino == self.ino for o in ops))
        if killed:
            phase = self.classify(pre, after_image, jdata, mdata)
            if fast:
                phase = "fastpath-" + phase
            self.kills += 1
        else:
            if not (reply and reply.startswith("+OK")):
                raise Failure("QUIT without a kill answered %r" % reply)
            phase = "not-killed"
        self.note(self.phases, phase)
        self.note(self.modes, "%s/%s" % (mode, target or "-"))
        log("round %d %s %s dele=%d(%s) delay=%d -> %s (last op %s)" % (
            self.rounds, mode, target, len(D), kind, delay, phase,
            watcher.killed_at or (ops[-1] if ops else None)))
        if killed:
            mc.age_dotlock(w.path, s.proc.pid)
            j = mc.Journal(jdata)
            if j.size and rng.random() < 0.2:
                self.kill_recovery(j)
        tm.append(time.monotonic())
        s2, st = w.login_retry()
        if finish_session_quit(s2) is None:
            raise Failure("recovery session's QUIT failed")
        tm.append(time.monotonic())
        if os.path.getsize(jp) != 0:
            raise Failure("journal not empty after the recovery session")
        removed = self.check(D, "round %d (%s)" % (self.rounds, phase))
        if removed == D:
            outcome = "completed"
        elif not removed:
            outcome = "rolled back"
        else:
            outcome = "partial"
        tm.append(time.monotonic())
        log("  times: login %.3f, dele %.3f, pre %.3f, quit %.3f, evidence %.3f, recovery %.3f, "
            "check %.3f" % tuple(tm[i + 1] - tm[i] for i in range(len(tm) - 1)))
        if killed:
            self.outcomes[outcome] += 1
        # evidence and outcome must agree where the design is definite
        definite = {"before": "rolled back", "journal-partial": "rolled back",
                    "journal-complete": "rolled back", "rewriting": "rolled back",
                    "committed": "rolled back", "truncated": "completed",
                    "after": "completed", "not-killed": "completed",
                    "fastpath-after": "completed", "fastpath-before": "rolled back"}
        if D and phase in definite and outcome != definite[phase]:
            raise Failure("round %d: killed at %s but the recovery %s the update"
                          % (self.rounds, phase, outcome))

    def renew(self):
        """nofinal: a new mbox (new Message-IDs, the last message again without
        a final newline), written in place between sessions: no delivery agent
        runs in this scenario, and the journal is empty."""
        self.serial += 1
        self.chunks, self.E = initial_mbox(self.rng, self.nmsgs, "n%d-" % self.serial,
                                           self.scale, False)
        fd = os.open(self.w.path, os.O_WRONLY)
        try:
            data = b"".join(self.chunks[m] for m in self.E)
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        self.refills += 1

    def kill_recovery(self, j):
        """SIGKILL the recovering login at a random call of its recovery."""
        w = self.w
        r = self.rng.randint(1, 3 + len(j.saved) // 65536)
        count = {"n": 0}

        def decide(op, ops):
            if op.ino in (self.ino, self.jino):
                count["n"] += 1
                return count["n"] >= r
            return False
        s, watcher = w.traced(self.rng.randint(200, 2000), decide)
        try:
            s.cmd("USER alice")
            s.send("PASS %s\r\nQUIT\r\n" % PW)
        except (EOFError, AssertionError):
            pass
        finish_session(s)
        watcher.join()
        if s.proc.returncode == -signal.SIGKILL:
            self.recovery_kills += 1
            mc.age_dotlock(w.path, s.proc.pid)

    def run(self, budget_s):
        if self.dl:
            self.dl.start()
            time.sleep(0.3)
        t0 = time.monotonic()
        try:
            k = 0
            while self.kills < self.kills_wanted:
                k += 1
                self.round(kill=(k % 10 != 0))
                if not self.final_newline and len(self.E) < self.nmsgs // 3:
                    self.renew()
                if time.monotonic() - t0 > budget_s:
                    break
        finally:
            if self.dl:
                self.dl.finish()
        # after the deliverer stopped: one final clean check
        s, st = self.w.login_retry()
        finish_session_quit(s)
        self.check(set(), "final")
        return time.monotonic() - t0

    def report(self, dt):
        print("# %s: %d rounds, %d kills in %.1f s (+%d kills during recovery); "
              "outcomes of killed updates: %s; mbox refilled %d times" % (
                  self.name, self.rounds, self.kills, dt, self.recovery_kills,
                  ", ".join("%s %d" % kv for kv in self.outcomes.items()), self.refills))
        if self.dl:
            print("# %s: procmail delivered %d messages (%d failed: %r), in %d rounds some "
                  "during the session (copied by the update); mbox now %d messages, %d octets"
                  % (self.name, self.dl.done, len(self.dl.failed), self.dl.failed[:3],
                     self.appended, len(self.E), os.path.getsize(self.w.path)))
        print("# %-18s %6s  %s" % ("phase (evidence)", "kills", "meaning"))
        for p in PHASES + ["fastpath-before", "fastpath-after", "unknown", "not-killed"]:
            if p in self.phases or p in PHASES:
                print("# %-18s %6d  %s" % (p, self.phases.get(p, 0), PHASE_TEXT.get(p, "")))
        print("# kill modes: %s" % ", ".join("%s %d" % kv for kv in sorted(self.modes.items())))


def finish_session_quit(s):
    s.send("QUIT\r\n")
    st = finish_session(s)
    if st is None or not st.startswith("+OK"):
        raise Failure("QUIT answered %r" % st)
    return st


# ---------------------------------------------------------------- Maildir

class MaildirScenario:
    def __init__(self, rng, kills, deliver=True):
        self.rng = rng
        self.kills_wanted = kills
        self.w = World(maildir=True)
        self.root = self.w.path.rstrip("/")
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(self.root, sub))
        if IS_ROOT:
            for sub in ("", "new", "cur", "tmp"):
                os.chown(os.path.join(self.root, sub), self.w.e.uid, self.w.e.gid)
        self.content = {}           # Message-ID -> bytes
        self.present = set()
        self.gone = set()
        self.serial = 0
        self.refill(300)
        self.dl = Deliverer(self.w, rng, self.w.path) if deliver else None
        self.kills = 0
        self.rounds = 0
        self.stats = {"deleted by killed updates": 0, "deleted kept by killed updates": 0,
                      "calls done before the kill": 0, "calls the killed updates had to do": 0,
                      "not-killed": 0}

    def refill(self, n):
        """n more messages, a third in cur/ (some flagged), written through tmp/
        as a delivery agent does."""
        t = 1764244800
        for _ in range(n):
            i = self.serial
            self.serial += 1
            msgid = "<m%d@maildir.test>" % i
            data = make_message(self.rng, msgid, self.rng.choice([500, 2000, 8000]))
            uniq = "%d.M%dP%d.host" % (t + i, i, 1000 + i)
            sub = "new" if i % 3 else "cur"
            name = uniq + (":2,F" if sub == "cur" and i % 2 else (":2," if sub == "cur" else ""))
            tmp = os.path.join(self.root, "tmp", uniq)
            with open(tmp, "wb") as f:
                f.write(data)
            if IS_ROOT:
                os.chown(tmp, self.w.e.uid, self.w.e.gid)
            os.rename(tmp, os.path.join(self.root, sub, name))
            self.content[msgid] = data
            self.present.add(msgid)

    def state(self):
        """{unique: [(sub, name, msgid, data)]}; a file is read whole."""
        out = {}
        for sub in ("new", "cur"):
            d = os.path.join(self.root, sub)
            for name in os.listdir(d):
                try:
                    with open(os.path.join(d, name), "rb") as f:
                        data = f.read()
                except FileNotFoundError:
                    continue
                m = re.search(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", data, re.I | re.M)
                msgid = m.group(1).decode() if m else None
                out.setdefault(name.split(":")[0], []).append((sub, name, msgid, data))
        return out

    def check(self, D, what):
        """Every message in exactly one place, intact; none lost but D."""
        if self.dl:
            with self.dl.lock:
                done = {it[0]: it[1] for it in self.dl.items if it[2] == "done"}
        else:
            done = {}
        st = self.state()
        seen_ids = set()
        for u, where in st.items():
            if len(where) != 1:
                raise Failure("%s: message %s in %d places: %r" % (
                    what, u, len(where), [(x[0], x[1]) for x in where]))
            sub, name, msgid, data = where[0]
            if msgid is None:
                raise Failure("%s: %s/%s holds no message" % (what, sub, name))
            if msgid in seen_ids:
                raise Failure("%s: %s twice, under two unique names" % (what, msgid))
            seen_ids.add(msgid)
            want = self.content.get(msgid)
            if want is None and msgid in done:
                want = self.content[msgid] = done[msgid][done[msgid].index(b"\n") + 1:]
            if want is None:
                # a delivery whose procmail has not exited yet: just the content
                continue
            if data != want:
                raise Failure("%s: %s (%s/%s) changed" % (what, msgid, sub, name))
        known = self.present | (set(done) - self.gone)
        lost = known - seen_ids - D
        if lost:
            raise Failure("%s: messages lost: %r" % (what, sorted(lost)[:5]))
        removed = (known & D) - seen_ids
        self.gone |= removed
        self.present = seen_ids
        return removed, st

    def round(self, kill=True):
        rng = self.rng
        w = self.w
        self.rounds += 1
        delay = rng.randint(500, 3000)
        s, watcher = w.traced(delay, None)
        st = s.login("alice", PW)
        n = int(re.match(r"\+OK maildrop has (\d+) ", st).group(1))
        ids = {}
        st, lines = s.cmd_lines("UIDL")
        for k in rng.sample(range(1, n + 1), min(n, rng.randint(5, 25))):
            st, data = s.cmd_multi("RETR %d" % k)
            m = re.search(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", data, re.I | re.M)
            ids[k] = m.group(1).decode()
        nums = rng.sample(range(1, n + 1), min(n, rng.randint(3, 15) if n > 120 else
                                               rng.randint(1, 3)))
        D = set()
        for k in nums:
            if k not in ids:
                st, data = s.cmd_multi("TOP %d 0" % k)
                m = re.search(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", data, re.I | re.M)
                ids[k] = m.group(1).decode()
            D.add(ids[k])
            if not s.cmd("DELE %d" % k).startswith("+OK"):
                raise Failure("DELE %d failed" % k)
        # the calls the update must make: an unlink per DELE, a rename per
        # RETRed message not yet seen (in new/, or in cur/ without S)
        where = {w[0][2]: w[0] for w in self.state().values()}
        renames = sum(1 for k, m in ids.items() if m not in D and m in where and
                      (where[m][0] == "new" or "S" not in where[m][1].partition(":2,")[2]))
        nops = len(D) + renames
        kill = kill and nops > 0
        t0 = time.monotonic()
        s.send("QUIT\r\n")
        timer = None
        at = 0
        if kill:
            at = rng.uniform(0, 1.1 * (nops + 2) * (delay / 1e6 + 0.0002))
            timer = threading.Timer(at, _kill, (s.proc,))
            timer.start()
        reply = finish_session(s)
        if timer:
            timer.cancel()
            timer.join()
        watcher.join()
        killed = s.proc.returncode == -signal.SIGKILL
        ops = [o for o in watcher.ops if o.t >= t0 and o.op in ("unlinkat", "renameat")]
        log("maildir round %d: %d RETR, %d DELE, delay %d us, kill at %s: %s after %d "
            "unlink/rename calls (%.1f ms after QUIT)" % (
                self.rounds, len(ids), len(nums), delay, "%.1f ms" % (at * 1000) if kill
                else "-", "killed" if killed else "not killed", len(ops),
                ((ops[-1].t - t0) * 1000) if ops else 0))
        removed, st = self.check(D, "round %d (after the %s, before the next login)"
                                 % (self.rounds, "kill" if killed else "QUIT"))
        if killed:
            self.kills += 1
            self.stats["calls done before the kill"] += len(ops)
            self.stats["calls the killed updates had to do"] += nops
            self.stats["deleted by killed updates"] += len(removed)
            self.stats["deleted kept by killed updates"] += len(D & self.present)
        else:
            self.stats["not-killed"] += 1
            if not (reply or "").startswith("+OK"):
                raise Failure("QUIT answered %r" % reply)
            left = D & {w[0][2] for w in st.values()}
            if left:
                raise Failure("QUIT +OK but not removed: %r" % sorted(left)[:5])
        # nothing hidden: the next session lists every message file there is
        before = set(self.state())
        s2, st = w.login_retry()
        st, lines = s2.cmd_lines("UIDL")
        listed = {l.split()[1] for l in lines or []}
        if not before <= listed:
            raise Failure("round %d: messages not offered by the next session: %r"
                          % (self.rounds, sorted(before - listed)[:5]))
        finish_session_quit(s2)
        self.check(D, "round %d after the next session" % self.rounds)

    def run(self, budget_s):
        if self.dl:
            self.dl.start()
        t0 = time.monotonic()
        try:
            k = 0
            while self.kills < self.kills_wanted and time.monotonic() - t0 < budget_s:
                k += 1
                self.round(kill=(k % 8 != 0))
                if len(self.present) < 150:
                    self.refill(100)
        finally:
            if self.dl:
                self.dl.finish()
        self.check(set(), "final")
        return time.monotonic() - t0

    def report(self, dt):
        print("# maildir: %d rounds, %d kills in %.1f s; %s; procmail delivered %d" % (
            self.rounds, self.kills, dt, ", ".join("%s %d" % kv for kv in self.stats.items()),
            self.dl.done if self.dl else 0))


def _kill(proc):
    try:
        proc.send_signal(signal.SIGKILL)      # only while not reaped
    except OSError:
        pass


# ---------------------------------------------------------------- main

def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--long", action="store_true", help="at least 1000 mbox kills")
    ap.add_argument("--kills", type=int, help="mbox kills (default 50, --long 1000)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("-k", action="append", default=[], help="mbox, nofinal, maildir")
    ap.add_argument("-v", action="store_true")
    opts = ap.parse_args()
    VERBOSE = opts.v
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(4), "big")
    kills = opts.kills or (1000 if opts.long else 50)
    print("# pop3d crash tests (%s, uid %d), %s mode, seed %d (rerun: --seed %d)" % (
        "root" if IS_ROOT else "unprivileged", os.getuid(), "long" if opts.long else "short",
        seed, seed))
    mc.ensure_shim()
    # a private copy of the server: a rebuild of ./pop3d during a long run
    # must not pull the binary from under the test
    bindir = tempfile.mkdtemp(prefix="pop3d-crash-bin-", dir="/tmp")
    os.chmod(bindir, 0o755)
    pop3lib.POP3D = os.path.join(bindir, "pop3d")
    try:
        shutil.copy2(POP3D_ORIG, pop3lib.POP3D)
        print("# server: %s (run from a private copy)" % POP3D_ORIG)
        return run_all(opts, kills, seed)
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


POP3D_ORIG = pop3lib.POP3D


def run_all(opts, kills, seed):
    passed = failed = skipped = 0

    def want(name):
        return not opts.k or name in opts.k

    scenarios = []
    if want("mbox"):
        scenarios.append(("mbox", lambda rng: MboxScenario("mbox", rng, kills, scale=0.6,
                                                                   delay_us=(150, 800)), 3600))
    if want("nofinal"):
        scenarios.append(("nofinal", lambda rng: MboxScenario(
            "nofinal", rng, 100 if opts.long else 10, deliver=False, nmsgs=40, scale=0.5,
            final_newline=False), 900))
    if want("maildir"):
        scenarios.append(("maildir", lambda rng: MaildirScenario(
            rng, 200 if opts.long else 50), 900))
    for name, make, budget in scenarios:
        rng = random.Random("%d-%s" % (seed, name))
        if not os.path.exists(PROCMAIL) and name != "nofinal":
            print("skip crash.%s: %s not installed (scripts/deps.sh installs it)"
                  % (name, PROCMAIL))
            skipped += 1
            continue
        sc = None
        try:
            sc = make(rng)
            dt = sc.run(budget)
            sc.report(dt)
            if name in ("mbox", "nofinal"):
                hit = [p for p in IN_UPDATE if sc.phases.get(p)]
                if sc.kills < sc.kills_wanted:
                    raise Failure("only %d of %d kills in the time budget"
                                  % (sc.kills, sc.kills_wanted))
                if opts.long:
                    missing = [p for p in PHASES if not sc.phases.get(p)]
                    if missing:
                        raise Failure("phases never hit: %s" % ", ".join(missing))
                elif len(hit) < 2 and name == "mbox":
                    raise Failure("kills landed in fewer than 2 in-update phases: %r"
                                  % sc.phases)
                if name == "mbox" and sc.dl and sc.dl.done == 0:
                    raise Failure("procmail delivered nothing")
            elif sc.kills < sc.kills_wanted:
                raise Failure("only %d of %d Maildir kills" % (sc.kills, sc.kills_wanted))
        except Exception:
            failed += 1
            print("FAIL crash.%s" % name)
            for line in traceback.format_exc().rstrip().splitlines():
                print("    " + line)
            if sc is not None:
                keep = "/tmp/pop3d-crash-failure-%s-%d" % (name, os.getpid())
                shutil.copytree(sc.w.e.dir, keep, symlinks=True, ignore_dangling_symlinks=True)
                print("    evidence kept in %s (seed %d)" % (keep, seed))
                try:
                    sc.report(0)
                except Exception:
                    pass
        else:
            passed += 1
            print("ok crash.%s" % name)
        finally:
            if sc is not None:
                if getattr(sc, "dl", None):
                    sc.dl.stop.set()
                sc.w.cleanup()
        sys.stdout.flush()
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
