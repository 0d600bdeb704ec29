#!/usr/bin/python3
"""pop3d under disk-full and I/O errors during UPDATE (issue 4, point 4).

    tests/faults.py [-k PATTERN]...

(a) Real ENOSPC, as root: the mbox and the state dir (-l, where the journal
    lives) on a small tmpfs, filled so that the journal cannot be written,
    only partly, or all but its commit record.
(b) Fault injection with tests/faultinject.so (LD_PRELOAD): a failing journal
    write, mbox write, fsync, commit record, ftruncate, final fsync, a
    failing rollback, a kill during the in-process rollback.
(c) Maildir: unlink failures (injected, and a read-only cur/).

What every mbox case asserts: QUIT answers "-ERR [SYS/TEMP]" (and pop3d's
log names the step: "writing the journal" or "update failed"); right after
it the mbox is byte-for-byte what it was (same inode and mode) and the
journal is empty - pop3d undoes a failed update in-process while it still
holds the locks.  Exceptions, where the issue's weaker promise is asserted
("nothing lost, the mbox as before or complete after recovery"): a failure
after the truncation (the update may stand) and cases where the undo itself
fails or is killed.  In every case mail is then appended as a delivery agent
would, the next login must run the recovery, and the mbox must afterwards be
exactly what it was or exactly the completed update, followed by the
appended mail, byte-for-byte; the journal must then be empty.  Finally a
session without faults deletes the same messages (when they are still
there) and the mbox must be exactly the rest, byte-for-byte.

Prints "ok NAME", "FAIL NAME" (with details), "skip NAME: reason" and a
closing line "N passed, N failed[, N skipped]".
"""

import sys
sys.dont_write_bytecode = True

import argparse
import errno
import glob
import os
import re
import signal
import subprocess
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mboxcheck as mc                    # noqa: E402
import mboxlib as mb                      # noqa: E402
from pop3lib import IS_ROOT, Env, PipeTransport, Session   # noqa: E402

PW = "secret"
TESTS = []


def config_value(name):
    """A #define of the server's config.h: the counts of injected faults
    depend on the update's copy chunk."""
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "config.h")) as f:
        return int(re.search(r"^#define %s (\d+)" % name, f.read(), re.M).group(1))


COPY_SIZE = config_value("MBOX_COPY_SIZE")     # one pwrite of the journal or the rewrite


def test(root=False):
    def deco(fn):
        TESTS.append((fn.__name__, fn, root))
        return fn
    return deco


class Skip(Exception):
    pass


# ---------------------------------------------------------------- set-up

FROM = b"From sender@example.org Thu Nov 27 12:00:00 2025\n"


def corpus(extra_big=0):
    """(chunks, raws): a mbox's messages as chunks (From_ line, message,
    separator), big enough that the journal and the rewrite take many
    COPY_SIZE writes, with tricky content; the last message has no final newline."""
    raws, seps = mb.tricky_corpus(big=False)
    last_raw, last_sep = raws.pop(), seps.pop()
    for i in range(20):
        size = [900, 5000, 20000, 70000, 150000][i % 5]
        body = b"".join(b"line %d of message %d .\n" % (k, i) for k in range(size // 24))
        if i % 4 == 0:
            body += b".dot line\n>From quoted\n..two\n"
        raws.append(mb.message(b"filler %d" % i, body,
                               headers=(b"Message-ID: <filler%d@example.org>" % i,)))
        seps.append(b"\n")
    if extra_big:
        raws.append(mb.message(b"padding", b"p" * extra_big + b"\n"))
        seps.append(b"\n")
    raws.append(last_raw)
    seps.append(last_sep)
    chunks = []
    for i, (r, s) in enumerate(zip(raws, seps)):
        last = i == len(raws) - 1
        chunks.append(FROM + r + (s if not last or r.endswith(b"\n") else b""))
    return chunks, raws


class World:
    """One test's Env with user alice and her mbox (or Maildir)."""

    def __init__(self, mbox=None, lockdir=None, maildir=False):
        self.e = Env()
        if lockdir:
            self.e.lockdir = lockdir
        if maildir:
            mbox = os.path.join(self.e.maildir, "alice.md") + "/"
        self.path = self.e.add_user("alice", "{PLAIN}" + PW, mbox=mbox)
        self.e.write_userfile()

    def write(self, data):
        self.e.write_mbox(self.path, data)
        self.ino = os.stat(self.path).st_ino

    def read(self):
        with open(self.path, "rb") as f:
            return f.read()

    def journal_path(self):
        j = glob.glob(os.path.join(self.e.lockdir, "*.lock"))
        return j[0] if len(j) == 1 else None

    def journal_size(self):
        p = self.journal_path()
        return os.stat(p).st_size if p else 0

    def journal_ino(self):
        return os.stat(self.journal_path()).st_ino

    def session(self, env=None, pass_fds=()):
        p = subprocess.Popen(self.e.args(("-e",)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, bufsize=0, close_fds=True,
                             pass_fds=pass_fds, env=env or self.e.child_env())
        self.e.procs.append(p)
        return Session(PipeTransport(p), proc=p)

    def fault_env(self, **kw):
        return mc.shim_env(self.e.child_env(), **kw)

    def login(self, env=None, pass_fds=()):
        s = self.session(env, pass_fds)
        st = s.login("alice", PW)
        assert st.startswith("+OK"), st
        return s

    def quit(self, s):
        st = s.cmd("QUIT")
        s.expect_eof()
        s.proc.wait(10)
        return st

    def run(self, dele=(), env=None):
        """One session: DELE each of dele, QUIT; the QUIT reply.  What pop3d
        logged (-e) is left in self.log."""
        s = self.login(env)
        for n in dele:
            st = s.cmd("DELE %d" % n)
            assert st.startswith("+OK"), st
        st = self.quit(s)
        self.log = s.proc.stderr.read().decode("latin-1")
        return st

    def cleanup(self):
        self.e.cleanup()


def expect_sys_temp(st):
    assert st.startswith("-ERR [SYS/TEMP]"), "QUIT answered %r, want -ERR [SYS/TEMP]" % st


def first_diff(a, b):
    n = min(len(a), len(b))
    k = next((i for i in range(n) if a[i] != b[i]), n)
    return "first difference at octet %d of %d/%d: got %r want %r" % (
        k, len(a), len(b), a[k:k + 40], b[k:k + 40])


def assert_bytes(got, want, what):
    if got != want:
        raise AssertionError("%s: %s" % (what, first_diff(got, want)))


def after_recovery(w, original, complete, what):
    """A delivery agent appends; the next login recovers; the mbox must be
    original or complete, each followed by the appended mail."""
    late = mb.build_mbox([mb.message(b"late", b"delivered after the failed update\n",
                                     headers=(b"Message-ID: <late@example.org>",))])
    w.e.append_locked(w.path, late)
    st = w.run()
    assert st.startswith("+OK"), "session after the failure: %r" % st
    got = w.read()
    if got != original + late and got != complete + late:
        raise AssertionError("%s: after recovery the mbox is neither the original nor the "
                             "completed update (plus the appended mail): vs original: %s; "
                             "vs complete: %s" % (what, first_diff(got, original + late),
                                                  first_diff(got, complete + late)))
    assert w.journal_size() == 0, "journal not emptied by the recovery"
    return got, late


def expect_log(w, text):
    """pop3d's log line of the failed update names the step that failed."""
    assert text in w.log, "want %r in the log, got %r" % (text, w.log[-500:])


JOURNAL_ERR = "writing the journal:"      # mbox.c: step 1 failed, mbox untouched
UPDATE_ERR = "update failed:"             # a later step failed, rolled back


def mbox_case(fault, dele=(2, 5, 9, 20), undo_ok=True, kill=None, delay_us=0,
              chunks_raws=None, log=None):
    """Run one injected-fault update and check the outcome (see the module
    docstring).  fault is a function (World) -> POP3D_FAULT string."""
    chunks, raws = chunks_raws or corpus()
    w = World()
    try:
        original = b"".join(chunks)
        w.write(original)
        complete = b"".join(c for i, c in enumerate(chunks, 1) if i not in dele)
        assert w.run() .startswith("+OK")           # creates the journal file
        spec = fault(w)
        env = w.fault_env(fault=spec, delay_us=delay_us,
                          trace="fd:%d" % 99 if kill else None)
        if kill:
            r, wr = os.pipe()
            os.dup2(wr, 99)
            os.close(wr)
            watcher = mc.TraceWatcher(r, kill(w))
            try:
                s = w.login(env, pass_fds=(99,))
            finally:
                os.close(99)
            watcher.start(s.proc.pid)
            for n in dele:
                assert s.cmd("DELE %d" % n).startswith("+OK")
            s.send("QUIT\r\n")
            s.proc.wait(30)
            watcher.join()
            if watcher.killed_at is None:
                # no rollback write after the failure (pop3d left the
                # committed update to the recovery): then QUIT must say so
                st = s.reply()
                expect_sys_temp(st)
            else:
                mc.age_dotlock(w.path, s.proc.pid)
            st = None
        else:
            st = w.run(dele, env=env)
            expect_sys_temp(st)
            if log:
                expect_log(w, log)
        st_after = os.stat(w.path)
        assert st_after.st_ino == w.ino, "mbox inode changed"
        assert (st_after.st_mode & 0o7777) == 0o600, "mbox mode changed"
        if undo_ok == "either":
            # after a failure once the mbox was truncated the update may stand
            now = w.read()
            assert now in (original, complete), "mbox right after the failed QUIT is " \
                "neither as before nor complete: " + first_diff(now, original)
        elif undo_ok:
            assert_bytes(w.read(), original, "mbox right after the failed QUIT")
            assert w.journal_size() == 0, "journal not empty after an undone update"
        after, late = after_recovery(w, original, complete, "fault %s" % spec)
        # and without faults the same deletions work, keeping the late mail
        again = dele if after[:-len(late)] == original else ()
        want = b"".join(c.data for i, c in enumerate(mc.chunks(after), 1) if i not in again)
        st = w.run(again)
        assert st.startswith("+OK"), st
        assert_bytes(w.read(), want, "mbox after a clean update")
        assert w.journal_size() == 0
    finally:
        w.cleanup()


# ---------------------------------------------------------------- (b) injected faults

def on_journal(op, n, err="EIO"):
    return lambda w: "%s:%s:%s:ino=%d" % (op, n, err, w.journal_ino())


def on_mbox(op, n, err="EIO"):
    return lambda w: "%s:%s:%s:ino=%d" % (op, n, err, w.ino)


@test()
def journal_first_pwrite_enospc():
    mbox_case(on_journal("pwrite", 1, "ENOSPC"), log=JOURNAL_ERR + " No space")


@test()
def journal_middle_pwrite_enospc():
    mbox_case(on_journal("pwrite", 4, "ENOSPC"), log=JOURNAL_ERR + " No space")


@test()
def journal_header_pwrite_eio():
    # the header is the journal's last pwrite before its fsync: count them
    chunks, raws = corpus()
    data = b"".join(chunks)
    start = data.index(chunks[1])                      # DELE 2 first
    n = -(-(len(data) - start) // COPY_SIZE) + 1
    mbox_case(on_journal("pwrite", n, "EIO"), chunks_raws=(chunks, raws),
              log=JOURNAL_ERR + " Input/output")


@test()
def journal_fsync_eio():
    mbox_case(on_journal("fsync", 1), log=JOURNAL_ERR)


@test()
def journal_ftruncate_eio():
    mbox_case(on_journal("ftruncate", 1), log=JOURNAL_ERR)


@test()
def mbox_rewrite_pwrite_eio():
    mbox_case(on_mbox("pwrite", 3), log=UPDATE_ERR)


@test()
def mbox_rewrite_pwrite_enospc():
    mbox_case(on_mbox("pwrite", 1, "ENOSPC"), log=UPDATE_ERR + " No space")


@test()
def mbox_fsync_after_rewrite_eio():
    mbox_case(on_mbox("fsync", 1), log=UPDATE_ERR)


@test()
def commit_record_pwrite_eio():
    # the commit record is the first journal pwrite after the journal's fsync
    mbox_case(lambda w: commit_rule(w, "pwrite"), log=UPDATE_ERR)


@test()
def commit_fsync_eio():
    mbox_case(lambda w: commit_rule(w, "fsync"), log=UPDATE_ERR)


def commit_rule(w, op):
    """The commit record's pwrite (or fsync) on the journal: the journal's
    data pwrites + header come first; counted from the session's first
    journal write, so compute it from the journal size the update needs."""
    j = w.journal_ino()
    if op == "fsync":
        return "fsync:2:EIO:ino=%d" % j
    data = w.read()
    chunks, _ = corpus()
    start = data.index(chunks[1])
    n = 1 + -(-(len(data) - start) // COPY_SIZE) + 1 + 1   # ranges, data, header, commit
    return "pwrite:%d:EIO:ino=%d" % (n, j)


@test()
def mbox_ftruncate_eio():
    mbox_case(on_mbox("ftruncate", 1), log=UPDATE_ERR)


@test()
def mbox_final_fsync_eio():
    # fsync #1 of the mbox ends the rewrite, #2 follows the truncation: the
    # mbox may then be as before (rolled back) or complete (the issue: "the
    # mbox as before or complete after recovery")
    mbox_case(on_mbox("fsync", 2), undo_ok="either")


@test()
def journal_clear_fails_after_commit():
    # the update is complete and durable; emptying the journal fails: QUIT
    # may say +OK (the next login finishes it: committed, truncated, and mail
    # appended since must survive)
    chunks, raws = corpus()
    dele = (2, 5, 9, 20)
    w = World()
    try:
        original = b"".join(chunks)
        w.write(original)
        complete = b"".join(c for i, c in enumerate(chunks, 1) if i not in dele)
        assert w.run().startswith("+OK")
        env = w.fault_env(fault="ftruncate:2:EIO:ino=%d" % w.journal_ino())
        st = w.run(dele, env=env)
        assert st.startswith("+OK") or st.startswith("-ERR [SYS/TEMP]"), st
        assert w.journal_size() > 0, "the fault did not leave the journal (test broken?)"
        assert_bytes(w.read(), complete, "mbox after the update")
        got, late = after_recovery(w, original, complete, "journal clear failed")
        assert_bytes(got, complete + late, "recovery of a committed, truncated update")
    finally:
        w.cleanup()


@test()
def rollback_fails_too_recovered_at_login():
    # the rewrite's fsync fails, and so does every later mbox fsync: the
    # in-process rollback fails, the journal stays, the next login recovers
    mbox_case(on_mbox("fsync", "1+"), undo_ok=False)


@test()
def final_fsync_fails_then_rollback_write_fails():
    # truncated, fsync EIO, then (if pop3d rolls back) the rollback's second
    # write fails (ENOSPC: the blocks the truncation freed were taken
    # meanwhile); mail is appended; the next login must leave the mbox as
    # before or complete, appended mail kept
    def rule(w):
        data = w.read()
        chunks, _ = corpus()
        start = data.index(chunks[1])
        new = sum(len(c) for i, c in enumerate(chunks, 1) if i not in (2, 5, 9, 20))
        # rewrite pwrites: one per COPY_SIZE of each kept chunk moved, plus the NUL
        moved = [c for i, c in enumerate(chunks, 1) if i > 2 and i not in (5, 9, 20)]
        n = sum(-(-len(c) // COPY_SIZE) for c in moved) + 1
        assert new - start > 2 * COPY_SIZE
        return "fsync:2:EIO:ino=%d,pwrite:%d:ENOSPC:ino=%d" % (w.ino, n + 2, w.ino)
    mbox_case(rule, undo_ok=False)


@test()
def killed_during_rollback_after_truncate():
    # fsync after the truncation fails; if pop3d rolls back in-process it is
    # SIGKILLed after its first rollback write: the next login must recover
    # to the mbox as before or complete, appended mail kept
    def decide_factory(w):
        state = {"failed": False, "n": 0}

        def decide(op, ops):
            if op.fail:
                state["failed"] = True
            elif state["failed"] and op.op == "pwrite" and op.ino == w.ino:
                state["n"] += 1
                return state["n"] == 2
            return False
        return decide
    mbox_case(on_mbox("fsync", 2), undo_ok=False, kill=decide_factory, delay_us=20000)


@test()
def truncate_only_ftruncate_eio():
    # deleting the last messages with nothing appended: one ftruncate
    chunks, raws = corpus()
    n = len(chunks)
    mbox_case(on_mbox("ftruncate", 1), dele=(n - 1, n), chunks_raws=(chunks, raws))


@test()
def truncate_only_fsync_eio():
    # the truncation is done and cannot be undone without a journal: the
    # issue allows "the mbox as before or complete"; assert exactly that
    chunks, raws = corpus()
    n = len(chunks)
    dele = (n - 1, n)
    w = World()
    try:
        original = b"".join(chunks)
        w.write(original)
        complete = b"".join(chunks[:-2])
        env = w.fault_env(fault="fsync:1:EIO:ino=%d" % w.ino)
        st = w.run(dele, env=env)
        expect_sys_temp(st)
        got = w.read()
        assert got in (original, complete), "mbox neither as before nor complete: " + \
            first_diff(got, original)
        after_recovery(w, original, complete, "truncate-only fsync")
    finally:
        w.cleanup()


# ---------------------------------------------------------------- (a) real ENOSPC on tmpfs

class Tmpfs:
    def __init__(self, size_mb):
        self.dir = tempfile.mkdtemp(prefix="pop3d-enospc-", dir="/tmp")
        os.chmod(self.dir, 0o711)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0711" % size_mb,
                        "pop3d-test", self.dir], check=True)
        self.fill = os.path.join(self.dir, "fill")

    def free_pages(self):
        st = os.statvfs(self.dir)
        return st.f_bavail * st.f_frsize // 4096

    def fill_up(self, leave_pages):
        """Fill the tmpfs to the last page, then free leave_pages pages."""
        fd = os.open(self.fill, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            big = b"f" * 65536
            page = b"f" * 4096
            size = os.fstat(fd).st_size
            for blk in (big, page):
                while True:
                    try:
                        n = os.pwrite(fd, blk, size)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
                    size += n
                    if n < len(blk):
                        break
            size -= size % 4096
            os.ftruncate(fd, max(0, size - leave_pages * 4096))
        finally:
            os.close(fd)

    def unfill(self):
        os.unlink(self.fill)

    def cleanup(self):
        subprocess.run(["umount", self.dir], check=False)
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


# the journal's fixed part for DELE 1: the header and its one kept range
JHEAD = mc.HEADER + 16


def enospc_case(leave_pages, chunks=None, log=JOURNAL_ERR + " No space"):
    if not IS_ROOT:
        raise Skip("needs root (mount -t tmpfs)")
    if chunks is None:
        chunks, _ = corpus()
    fs = Tmpfs(8)
    w = None
    try:
        state = os.path.join(fs.dir, "state")
        mail = os.path.join(fs.dir, "mail")
        os.mkdir(state, 0o700)
        os.mkdir(mail, 0o755)
        w = World(mbox=os.path.join(mail, "alice"), lockdir=state)
        os.chown(mail, w.e.uid, w.e.gid)
        original = b"".join(chunks)
        w.write(original)
        assert w.run().startswith("+OK")              # creates the journal file
        journal = w.journal_path()
        assert journal and os.stat(journal).st_size == 0
        need = (JHEAD + len(original) + 4095) // 4096
        fs.fill_up(leave_pages(need))
        free = fs.free_pages()
        print("#   tmpfs: %d pages free (the dotlock takes 1), the journal needs %d"
              % (free, need + (1 if (JHEAD + len(original)) % 4096 == 0 else 0)))
        st = w.run((1,))
        expect_sys_temp(st)
        expect_log(w, log)
        assert_bytes(w.read(), original, "mbox after ENOSPC (free pages %d, journal needs "
                     "%d)" % (free, need))
        assert os.stat(w.path).st_ino == w.ino
        assert os.stat(journal).st_size == 0, "journal not emptied"
        assert not os.path.exists(w.path + ".lock"), "dotlock left behind"
        # the login after it: nothing to recover, all there
        s = w.login()
        assert s.cmd("STAT").startswith("+OK %d " % len(chunks))
        assert w.quit(s).startswith("+OK")
        assert_bytes(w.read(), original, "mbox after the next session")
        fs.unfill()
        st = w.run((1,))
        assert st.startswith("+OK"), "after freeing space: %r" % st
        assert_bytes(w.read(), b"".join(chunks[1:]), "mbox after deleting message 1")
        assert os.stat(journal).st_size == 0
        return free, need
    finally:
        if w:
            w.cleanup()
        fs.cleanup()


@test(root=True)
def enospc_journal_does_not_fit():
    # two pages free: one for the dotlock, one for the journal's first page
    enospc_case(lambda need: 2)


@test(root=True)
def enospc_journal_half_fits():
    enospc_case(lambda need: need // 2 + 1)


@test(root=True)
def enospc_commit_record_does_not_fit():
    # a mbox whose journal (header, one range + every octet: DELE 1) ends
    # exactly on a page boundary, and exactly those pages free (plus the
    # dotlock's): only the commit record finds no room
    chunks, _ = corpus()
    total = sum(len(c) for c in chunks)
    pad = (-(total + JHEAD)) % 4096
    if pad < 200:
        pad += 4096
    chunks.insert(1, FROM + mb.message(b"pad", b"p" * (pad - len(FROM) - 40) + b"\n"))
    chunks[1] += b"\n"
    total = sum(len(c) for c in chunks)
    extra = (-(total + JHEAD)) % 4096
    chunks[1] = chunks[1][:-2] + b"p" * extra + b"\n\n"
    total = sum(len(c) for c in chunks)
    assert (total + JHEAD) % 4096 == 0, total
    enospc_case(lambda need: need + 1, chunks=chunks, log=UPDATE_ERR + " No space")


# ---------------------------------------------------------------- (c) Maildir

def make_maildir(w, n=12):
    """Messages 1..n, odd ones in new/, even ones in cur/ (some flagged)."""
    root = w.path.rstrip("/")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    files = {}
    for i in range(1, n + 1):
        uniq = "%d.M%dP%d.host" % (1764244800 + i, i, 4000 + i)
        sub = "new" if i % 2 else "cur"
        name = uniq if sub == "new" else uniq + (":2,F" if i % 4 == 0 else ":2,")
        data = b"Message-ID: <md%d@example.org>\nSubject: %d\n\nbody %d\n" % (i, i, i)
        with open(os.path.join(root, sub, name), "wb") as f:
            f.write(data)
        files[uniq] = data
    if IS_ROOT:
        for dp, dns, fns in os.walk(root):
            os.chown(dp, w.e.uid, w.e.gid)
            for fn in fns:
                os.chown(os.path.join(dp, fn), w.e.uid, w.e.gid)
    return root, files


def maildir_state(root):
    """{unique: [(sub, name, data)]} for every message file."""
    out = {}
    for sub in ("new", "cur"):
        for name in os.listdir(os.path.join(root, sub)):
            with open(os.path.join(root, sub, name), "rb") as f:
                data = f.read()
            out.setdefault(name.split(":")[0], []).append((sub, name, data))
    return out


def maildir_case(fault=None, chmod_cur=False, dele=(1, 2, 4, 7), retr=(3, 6)):
    """Returns the QUIT reply after checking: every message in exactly one
    place and intact; the non-deleted ones all there."""
    w = World(maildir=True)
    try:
        root, files = make_maildir(w)
        s = w.login(w.fault_env(fault=fault) if fault else None)
        uidl = {}
        st, lines = s.cmd_lines("UIDL")
        for l in lines:
            n, u = l.split()
            uidl[int(n)] = u
        for n in retr:
            assert s.cmd("RETR %d" % n).startswith("+OK")
            s.multiline()
        for n in dele:
            assert s.cmd("DELE %d" % n).startswith("+OK")
        if chmod_cur:
            os.chmod(os.path.join(root, "cur"), 0o555)
        try:
            st = s.cmd("QUIT")
            s.expect_eof()
            s.proc.wait(10)
        finally:
            if chmod_cur:
                os.chmod(os.path.join(root, "cur"), 0o755)
        state = maildir_state(root)
        for u, where in state.items():
            assert len(where) == 1, "message %s in more than one place: %r" % (u, where)
            assert where[0][2] == files[u], "message %s changed" % u
        gone = set(files) - set(state)
        deleted = {uidl[n] for n in dele}
        assert gone <= deleted, "messages lost that were not deleted: %r" % (gone - deleted)
        return st, state, deleted, gone, uidl
    finally:
        w.cleanup()


@test()
def maildir_unlink_eio():
    # the 2nd unlink fails: exactly one deleted message stays, reply says 1
    st, state, deleted, gone, _ = maildir_case("unlinkat:2:EIO")
    expect_sys_temp(st)
    assert "1 deleted message" in st, st
    assert len(deleted - gone) == 1, "want exactly 1 not removed, %r" % (deleted - gone)


@test()
def maildir_unlink_all_fail():
    st, state, deleted, gone, _ = maildir_case("unlinkat:1+:EIO")
    expect_sys_temp(st)
    assert "%d deleted message" % len(deleted) in st, st
    assert not gone, "nothing may be removed: %r" % gone


@test()
def maildir_cur_read_only():
    # cur/ not writable by the maildrop owner: deletions in cur/ fail (and
    # the seen-renames into it); those in new/ succeed; the reply counts
    st, state, deleted, gone, uidl = maildir_case(chmod_cur=True)
    expect_sys_temp(st)
    in_cur = {u for u in deleted if u in state and state[u][0][0] == "cur"}
    assert not (deleted - gone - in_cur), "deleted messages in new/ not removed"
    assert "%d deleted message" % len(in_cur) in st, (st, in_cur)
    assert in_cur, "test broken: no deleted message in cur/"


@test()
def maildir_dir_fsync_eio():
    # unlinks done, fsync of new/ fails: -ERR [SYS/TEMP]; nothing lost but
    # deleted messages (they may be gone: the unlinks did happen)
    st, state, deleted, gone, _ = maildir_case("fsync:1:EIO")
    expect_sys_temp(st)


# ---------------------------------------------------------------- runner

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", action="append", default=[])
    opts = ap.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    mc.ensure_shim()
    print("# pop3d fault tests (%s, uid %d)" % ("root" if IS_ROOT else "unprivileged",
                                               os.getuid()))
    passed = failed = skipped = 0
    names = []
    t0 = time.monotonic()
    for name, fn, root in TESTS:
        if opts.k and not any(k in name for k in opts.k):
            continue
        try:
            fn()
        except Skip as e:
            skipped += 1
            print("skip %s: %s" % (name, e))
        except Exception:
            failed += 1
            names.append(name)
            print("FAIL %s" % name)
            for line in traceback.format_exc().rstrip().splitlines():
                print("    " + line)
        else:
            passed += 1
            print("ok %s" % name)
        sys.stdout.flush()
    if names:
        print("# failed: %s" % " ".join(names))
    print("# %.1f s" % (time.monotonic() - t0))
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
