#!/usr/bin/python3
"""pop3d security tests (issue 5 point 8): each would fail if the protection
it names were removed.

    tests/security.py [-k PATTERN]... [-l]

Drives the real ./pop3d (or $POP3D) over pipes and via systemd-socket-activate:
privilege separation read from /proc, authentication abuse (pipelined
guessing, timing of unknown user versus wrong password, log lines), timeouts
(pre-login, a client that stops reading in the middle of a RETR), TCP
keepalive, bad-command limits, maildrop and state-directory safety, the
MAX_MESSAGES/MAX_MAILDROP_BYTES limits (on a build with small limits), a
deterministic garbage stream checked against a model of the protocol, and a
full session under valgrind memcheck.  Reuses tests/run.py's Base and runner
and tests/pop3lib.py; only what run.py does not already test is here.

Prints "ok NAME", "FAIL NAME" (with details) or "skip NAME: reason" per test
and a closing line "N passed, N failed[, N skipped]"; exit status 0 only when
nothing failed.  Works as root (privilege tests need it) and unprivileged.
"""

import sys
sys.dont_write_bytecode = True            # never litter tests/__pycache__

import glob
import grp
import hashlib
import os
import pwd
import random
import re
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mboxlib as mb                      # noqa: E402
import run as R                           # noqa: E402  (Base, runner; its tests stay in run.py)
from pop3lib import (POP3D, IS_ROOT, REPO, TEST_UID, TEST_GID, Session,  # noqa: E402
                     SocketTransport, ProtocolError, crypt_hash, _crypt_lib, proc_tree,
                     proc_status, wait_for)

PW = R.PW
AUTH_ERR = R.AUTH_ERR
RE_LOGIN = R.RE_LOGIN
GARBAGE_SEED = int(os.environ.get("GARBAGE_SEED", "20251127"))   # fixed: deterministic
LIMIT_MESSAGES = 5
LIMIT_BYTES = 10000
LIMIT_PRELOGIN = 3


def children(pid):
    return [p for p in proc_tree(pid) if p != pid]


def alive(pid):
    st = proc_status(pid)
    return bool(st) and st.get("State", ["Z"])[0] not in ("Z", "X")


def asan_build(path=None):
    """Is the server binary a sanitizer build? (By content: check.sh may copy
    it under another name.)"""
    with open(path or POP3D, "rb") as f:
        return b"__asan_init" in f.read()


def prelogin_user():
    """The pre-login user pop3d picks by default: pop3d, else nobody."""
    for name in ("pop3d", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    return None


def startup_error_line(rc, out, err):
    """The one-line start-up refusal every configuration error gives."""
    assert out.startswith(b"-ERR [SYS/PERM] ") and out.count(b"\r\n") == 1, out[:300]
    assert rc == 1, rc
    return err.decode("latin-1")


# ====================================================================== the limits build

class VariantBuild:
    """A pop3d built in a temp copy of the sources (git ls-files, like
    tests/check.sh) with extra CFLAGS; started early, waited for when used."""

    def __init__(self, cflags):
        self.dir = tempfile.mkdtemp(prefix="pop3d-sec-build-", dir="/tmp")
        self.binary = os.path.join(self.dir, "pop3d")
        self.error = None
        self.proc = None
        self.log = os.path.join(self.dir, "build.log")
        try:
            self._copy()
            with open(self.log, "wb") as f:
                self.proc = subprocess.Popen(
                    ["make", "-C", self.dir, "-j2", "pop3d", "CFLAGS_EXTRA=" + cflags],
                    stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        except (OSError, subprocess.SubprocessError) as ex:
            self.error = "cannot start the build: %s" % ex

    def _copy(self):
        files = None
        try:
            r = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others",
                                "--exclude-standard"], capture_output=True, timeout=30)
            if r.returncode == 0:
                files = [f for f in r.stdout.decode().split("\0") if f]
        except (OSError, subprocess.SubprocessError):
            pass
        if not files:
            files = [f for f in os.listdir(REPO) if f.endswith((".c", ".h")) or f == "Makefile"]
        for f in files:
            src = os.path.join(REPO, f)
            if not os.path.isfile(src) or f.endswith(".o") or f in ("pop3d", "pop3d-asan"):
                continue
            dst = os.path.join(self.dir, f)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)

    def wait(self, timeout=240):
        if self.error is None and self.proc is not None:
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = -1
            if rc != 0 or not os.access(self.binary, os.X_OK):
                with open(self.log, "rb") as f:
                    self.error = "make failed:\n" + f.read()[-3000:].decode("latin-1")
            self.proc = None
        return self.error

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


LIMITS_BUILD = None
VALGRIND_BUILD = None           # -DSANDBOX_NO_SECCOMP: valgrind cannot run under a filter


class Base(R.Base):

    def argv_for(self, binary, extra=()):
        return [binary] + self.e.args(extra)[1:]

    def maildir(self, name="alice", subs=("new", "cur", "tmp")):
        path = os.path.join(self.e.maildir, name + "-Maildir")
        for sub in ("",) + tuple(subs):
            d = os.path.join(path, sub)
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o700)
            if IS_ROOT:
                os.chown(d, self.e.uid, self.e.gid)
        return path + "/"

    def put(self, path, sub, fname, data):
        self.e.write_mbox(os.path.join(path, sub, fname), data)

    def tree(self, path):
        """Every file under path with its content (for "unchanged" checks),
        but pop3d's own lock file."""
        out = {}
        for root, dirs, files in os.walk(path):
            for f in files:
                p = os.path.join(root, f)
                if f != "pop3d.lock" and not os.path.islink(p) and os.path.isfile(p):
                    out[os.path.relpath(p, path)] = self.e.read(p)
        return out


# ====================================================================== 1. privilege separation

@unittest.skipUnless(IS_ROOT, "needs root (privilege separation)")
class PrivSep(Base):

    def prelogin(self, s):
        """The pre-login process of session s: the only child of pop3d."""
        kids = wait_for(lambda: children(s.proc.pid), timeout=3)
        self.assertEqual(len(kids), 1, "pop3d should have exactly one child before login, "
                                       "has %r" % kids)
        return kids[0]

    def assertConfined(self, pid, pw):
        st = proc_status(pid)
        self.assertEqual(st.get("Uid"), [str(pw.pw_uid)] * 4, "pre-login Uid (real, "
                         "effective, saved, fs) should all be %s's" % pw.pw_name)
        self.assertEqual(st.get("Gid"), [str(pw.pw_gid)] * 4, "pre-login Gid")
        self.assertEqual(st.get("Groups"), [], "pre-login process keeps supplementary groups")
        self.assertEqual(st.get("NoNewPrivs"), ["1"], "pre-login process without NO_NEW_PRIVS")
        empty = os.path.join(self.e.lockdir, "empty")
        self.assertEqual(os.readlink("/proc/%d/root" % pid), empty, "not chrooted into "
                         "<statedir>/empty")
        self.assertEqual(os.readlink("/proc/%d/cwd" % pid), empty, "cwd outside the chroot")
        # nothing open that a subverted process could read: no file, no directory
        for fd in os.listdir("/proc/%d/fd" % pid):
            p = "/proc/%d/fd/%s" % (pid, fd)
            try:
                m = os.stat(p).st_mode
            except OSError:
                continue
            self.assertFalse(stat.S_ISREG(m) or stat.S_ISDIR(m),
                             "pre-login fd %s is open on %s" % (fd, os.readlink(p)))

    def assertSessionIds(self, pid, saved_gid=TEST_GID):
        st = proc_status(pid)
        self.assertEqual(st.get("Uid"), [str(TEST_UID)] * 4, "session Uid")
        self.assertEqual(st.get("Gid"), [str(TEST_GID), str(TEST_GID), str(saved_gid),
                                         str(TEST_GID)], "session Gid (real, effective, "
                         "saved, fs): the -g group may only be the saved one")
        self.assertEqual(st.get("Groups", ["?"]), [], "session supplementary groups")
        self.assertEqual(st.get("NoNewPrivs"), ["1"], "session without NO_NEW_PRIVS")

    def run_session(self, extra=(), pw=None, saved_gid=TEST_GID):
        path = self.alice()
        before = self.e.read(path)
        # started with root's group and another one, as some super-servers do
        s = self.e.session(list(extra), extra_groups=[0, 4343])
        child = self.prelogin(s)
        self.assertConfined(child, pw)
        self.assertEqual(proc_status(s.proc.pid).get("Uid"), ["0"] * 4, "monitor not root")
        self.assertOk(s.cmd("USER alice"))
        self.assertConfined(child, pw)          # still the same process, still confined
        self.assertEqual(children(s.proc.pid), [child])
        self.assertRegex(s.cmd("PASS " + PW), RE_LOGIN)
        self.assertEqual(proc_tree(s.proc.pid), [s.proc.pid],
                         "after login the pre-login process must be gone")
        self.assertFalse(alive(child), "pre-login process %d still alive" % child)
        self.assertSessionIds(s.proc.pid, saved_gid)
        self.assertEqual(self.stat(s)[0], 3)
        self.quit_ok(s)
        self.assertEqual(self.e.read(path), before)

    def test_prelogin_confined_default_user(self):
        pw = prelogin_user()
        if pw is None:
            self.skipTest("neither pop3d nor nobody exists")
        self.run_session(pw=pw)

    def test_prelogin_user_option(self):
        default = prelogin_user()
        pw = None
        for name in ("daemon", "bin", "sys", "www-data", "nobody"):
            try:
                p = pwd.getpwnam(name)
            except KeyError:
                continue
            if p.pw_uid != 0 and p.pw_gid != 0 and (default is None or p.pw_uid != default.pw_uid):
                pw = p
                break
        if pw is None:
            self.skipTest("no second non-root system user")
        self.run_session(["-u", pw.pw_name], pw=pw)

    def test_session_keeps_g_group_only_as_saved_gid(self):
        """-g: no supplementary group at all; the group is the saved gid, made
        the effective one only to make and remove dotlocks."""
        try:
            gid = grp.getgrnam("mail").gr_gid
        except KeyError:
            self.skipTest("no group mail")
        self.run_session(["-g", "mail"], pw=prelogin_user(), saved_gid=gid)

    def test_prelogin_user_refused(self):
        self.alice()
        for user in ("nosuchuser-pop3d", "root"):
            with self.subTest(user=user):
                rc, out, err = self.e.run(b"USER alice\r\nPASS secret\r\nQUIT\r\n",
                                          extra=["-u", user, "-e"])
                err = startup_error_line(rc, out, err)
                self.assertIn("pre-login user " + user, err)

    def test_empty_root_unsafe_refused(self):
        self.alice()
        empty = os.path.join(self.e.lockdir, "empty")
        os.mkdir(empty)
        for what, mode, owner in (("writable by others", 0o757, 0), ("group-writable", 0o575, 0),
                                  ("owned by a user", 0o555, TEST_UID)):
            with self.subTest(what=what):
                os.chown(empty, owner, 0)
                os.chmod(empty, mode)
                rc, out, err = self.e.run(b"USER alice\r\nPASS secret\r\nQUIT\r\n", extra=["-e"])
                self.assertIn("empty", startup_error_line(rc, out, err))

    def test_statedir_unsafe_refused_at_start(self):
        # The chroot target <statedir>/empty is checked by path, then used by
        # path: whoever can write the state directory can swap it in between.
        # So an unsafe state directory must stop pop3d before any login,
        # whatever the user's maildrop kind (a Maildir user never reaches the
        # session-lock check).
        path = self.maildir()
        self.e.add_user("alice", "{PLAIN}" + PW, mbox=path)
        self.e.write_userfile()
        for mode in (0o777, 0o770, 0o1777):
            with self.subTest(mode=oct(mode)):
                os.chmod(self.e.lockdir, mode)
                rc, out, err = self.e.run(b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n",
                                          extra=["-e"])
                self.assertNotIn(b"+OK maildrop", out, "logged in with state directory %o"
                                 % mode)
                startup_error_line(rc, out, err)


# ====================================================================== 2. pipelining after PASS

class PipelineAfterPass(Base):
    # run.py's Pipelining tests cover a short pipeline in one write; this one
    # crosses the pre-login read buffer (INBUF_SIZE 4096), so part of what
    # follows PASS travels in the monitor record and the rest is read later.

    def test_pipeline_across_the_prelogin_buffer(self):
        self.alice()
        n = 1500
        s = self.e.session()
        s.send_bg(b"USER alice\r\nPASS secret\r\n" + b"NOOP\r\n" * n + b"STAT\r\nLIST 2\r\nQUIT\r\n")
        self.assertOk(s.reply())
        self.assertRegex(s.reply(), RE_LOGIN)
        for i in range(n):
            self.assertEqual(s.reply(), "+OK", "reply to pipelined NOOP %d" % (i + 1))
        self.assertRegex(s.reply(), R.RE_STAT)
        self.assertRegex(s.reply(), r"^\+OK 2 \d+$")
        self.assertOk(s.reply())
        self.assertEqual(s.expect_eof(), b"")
        self.assertEqual(s.wait(), 0)


# ====================================================================== 3. authentication abuse

class AuthAbuse(Base):

    def test_pipelined_guesses_each_delayed(self):
        # run.py times one failure per connection; a client pipelining its
        # guesses must wait the delay for every one of them, then be cut off.
        self.alice()
        s = self.e.session(delay="1")
        t0 = time.monotonic()
        s.send(b"USER alice\r\nPASS a\r\nUSER alice\r\nPASS b\r\nUSER alice\r\nPASS c\r\n"
               b"USER alice\r\nPASS secret\r\n")
        times = []
        for _ in range(3):
            self.assertOk(s.reply())
            self.assertErr(s.reply(), AUTH_ERR)
            times.append(time.monotonic() - t0)
        self.assertEqual(s.expect_eof(), b"", "fourth guess answered")
        self.assertEqual(s.wait(), 1)
        for i, t in enumerate(times):
            self.assertGreaterEqual(t - (times[i - 1] if i else 0), 0.9,
                                    "failure %d answered %.2f s after the previous one: %r"
                                    % (i + 1, t - (times[i - 1] if i else 0), times))

    def test_password_hashing_outside_the_session(self):
        # yescrypt ($y$, Debian's default) takes some 16 MB to hash one password;
        # it runs in a child process that exits, so the session never holds it:
        # the session's peak is within 4 MB of a session with a cheap hash.
        def peak(prefix):
            self.e.entries = []
            self.alice(secret=crypt_hash(PW, prefix))
            s = self.e.session()
            self.assertOk(s.cmd("USER alice"))
            self.assertRegex(s.cmd("PASS wrong-" + PW), r"^-ERR \[AUTH\]")
            self.assertOk(s.cmd("USER alice"))
            self.assertRegex(s.cmd("PASS " + PW), RE_LOGIN)
            return s, int(proc_status(s.proc.pid)["VmHWM"][0])
        s, cheap = peak("$1$")
        self.quit_ok(s)
        s, hwm = peak("$y$")
        self.assertLess(hwm - cheap, 4096, "session VmHWM %d kB after two yescrypt checks, "
                        "%d kB after md5crypt: the hashing ran in the session process"
                        % (hwm, cheap))
        self.assertEqual(proc_tree(s.proc.pid), [s.proc.pid], "a hashing process is left over")
        self.quit_ok(s)

    def test_password_hashing_process_killed(self):
        # A hashing process that dies is a server failure, not a wrong
        # password: -ERR [SYS/TEMP], and an "error privsep" line in the log.
        # (sha512crypt with 9,999,999 rounds: seconds of hashing to catch it in.)
        self.alice(secret="$6$rounds=9999999$saltsalt$" + "A" * 86)
        s = self.e.session(["-e"])
        self.assertOk(s.cmd("USER alice"))
        before = set(children(s.proc.pid))
        s.send("PASS " + PW + "\r\n")
        hasher = wait_for(lambda: [p for p in children(s.proc.pid) if p not in before],
                          timeout=5)
        self.assertTrue(hasher, "no password hashing process appeared")
        os.kill(hasher[0], signal.SIGKILL)
        self.assertRegex(s.reply(), r"^-ERR \[SYS/TEMP\] ")
        s.proc.wait(timeout=10)
        log = s.proc.stderr.read().decode("latin-1")
        self.assertRegex(log, r"error privsep: the password hashing process was killed "
                              r"by signal %d" % signal.SIGKILL)
        self.assertNotIn("auth failed", log, "a dead hashing process counted as a wrong password")

    def test_timing_unknown_user_like_wrong_password(self):
        h = crypt_hash(PW, "$y$")
        self.e.add_user("alice", h)
        self.e.add_user("bob", "*")                     # disabled
        self.e.add_user("carol", "{PLAIN}" + PW)
        self.e.write_userfile()
        if LIMITS_BUILD:
            LIMITS_BUILD.wait()         # the limits build must not compete for the CPU
        lib = _crypt_lib()
        cats = {"unknown": "nosuchuser", "wrong": "alice", "disabled": "bob", "plain": "carol"}
        rng = random.Random(5)
        # Other load on the machine can skew one round: up to 3 rounds, one must
        # pass. Without the dummy hash every round fails by far more than 10%.
        problems = []
        for rnd in range(3):
            crypt_time = min(self.crypt_seconds(lib, h) for _ in range(5))
            med = self.pass_medians(cats, rng)
            print("#   round %d: crypt %.1f ms; PASS medians: %s" % (rnd + 1, crypt_time * 1e3,
                  ", ".join("%s %.1f ms" % (k, v * 1e3) for k, v in med.items())))
            problems = []
            diff = abs(med["unknown"] - med["wrong"]) / max(med["unknown"], med["wrong"])
            if diff >= 0.10:
                problems.append("unknown user vs wrong password medians differ by %.0f%%"
                                % (diff * 100))
            for cat in ("unknown", "disabled", "plain"):
                if med[cat] < 0.5 * crypt_time:
                    problems.append("%s: %.1f ms, less than half a crypt (%.1f ms): no dummy "
                                    "hash work" % (cat, med[cat] * 1e3, crypt_time * 1e3))
            if not problems:
                break
        self.assertEqual(problems, [])

    @staticmethod
    def crypt_seconds(lib, h):
        t = time.perf_counter()
        lib.crypt(b"wrong", h.encode())
        return time.perf_counter() - t

    def pass_medians(self, cats, rng, n=15):
        """Median seconds from PASS to its -ERR, -D 0, per category; the
        categories interleaved so that drifting load hits them alike."""
        times = {k: [] for k in cats}
        s, fails = None, 0
        for _ in range(n):
            order = list(cats)
            rng.shuffle(order)
            for cat in order:
                if s is None or fails == 3:
                    if s is not None:
                        s.expect_eof()
                    s, fails = self.e.session(), 0
                self.assertOk(s.cmd("USER " + cats[cat]))
                t = time.perf_counter()
                st = s.cmd("PASS wrong")
                times[cat].append(time.perf_counter() - t)
                self.assertErr(st, AUTH_ERR)
                fails += 1
        s.close()
        return {k: statistics.median(v) for k, v in times.items()}

    def test_failure_log_never_names_unknown_users(self):
        self.alice(write=False)
        self.e.add_user("bob", "*")
        self.e.write_userfile()
        typed = "Hunter2-Typed.As+User"         # a password typed into the user field
        rc, out, err = self.e.run(("USER %s\r\nPASS x\r\nUSER alice\r\nPASS wrong\r\n"
                                   "USER bob\r\nPASS x\r\n" % typed).encode(), extra=["-e"])
        err = err.decode("latin-1")
        fails = re.findall(r"auth failed user=(\S+) rhost=local", err)
        self.assertEqual(fails, ["unknown", "alice", "bob"], err)
        self.assertNotIn(typed, err, "an unknown user name reached the log")
        self.assertNotIn("Hunter2", err)
        self.assertRegex(err, r"auth limit rhost=local failures=3")
        self.assertEqual(rc, 1)


# ====================================================================== 4. timeouts, keepalive

class Timeouts(Base):

    def test_prelogin_timeout_bounded(self):
        self.alice()
        s = self.e.session(["-T", "2"])
        t0 = time.monotonic()
        rest = s.expect_eof(timeout=8)
        dt = time.monotonic() - t0
        self.assertTrue(1.8 <= dt <= 4.5, "idle unauthenticated client dropped after %.2f s "
                        "with -T 2" % dt)
        self.assertTrue(rest == b"" or (rest.startswith(b"-ERR") and rest.count(b"\r\n") == 1),
                        rest)
        self.assertEqual(s.wait(), 1)

    def test_prelogin_timeout_not_applied_after_login(self):
        self.alice()
        s = self.login(extra=["-T", "1", "-t", "4"])
        time.sleep(1.6)
        self.assertOk(s.cmd("NOOP"))            # -T no longer applies, -t does
        self.quit_ok(s)

    def test_client_that_stops_reading_is_dropped(self):
        big = b"Subject: huge\nMessage-ID: <huge@example.org>\n\n" + \
            (b"x" * 99 + b"\n") * (20 * 1024 * 1024 // 100)
        raws = [mb.message(b"small", b"body\n"), big]
        path = self.alice(raws)
        before = self.e.read(path)
        a = self.e.activate(["-t", "2"])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", a.port))
        try:
            s = Session(SocketTransport(sock))
            self.assertRegex(s.login("alice", PW), RE_LOGIN)
            pids = children(a.proc.pid)
            self.assertEqual(len(pids), 1, "one session process after login: %r" % pids)
            self.assertOk(s.cmd("DELE 1"))
            s.send("RETR 2\r\n")                 # and never read again
            t0 = time.monotonic()
            gone = wait_for(lambda: not alive(pids[0]), timeout=2 + 6, step=0.05)
            dt = time.monotonic() - t0
            self.assertTrue(gone, "pop3d still running %.1f s after the client stopped "
                                  "reading (-t 2)" % dt)
            self.assertGreater(dt, 1.5, "dropped after %.2f s: before -t 2 ran out?" % dt)
        finally:
            sock.close()
        self.assertEqual(self.e.read(path), before, "mbox changed by a dropped session")

    def test_tcp_keepalive(self):
        if not shutil.which("ss"):
            self.fail("ss (iproute2) not installed: scripts/deps.sh should install it")
        self.alice()
        a = self.e.activate()

        def timers():
            r = subprocess.run(["ss", "-tnoH", "state", "established",
                                "( sport = :%d )" % a.port], capture_output=True, text=True,
                               timeout=10)
            return r.stdout
        s = a.session()
        out = timers()
        self.assertRegex(out, r"timer:\(keepalive,", "no keepalive before login:\n" + out)
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        # (while the reply is unacknowledged ss shows the retransmission timer)
        out = wait_for(lambda: re.search(r"timer:\(keepalive,", timers()), timeout=3)
        self.assertTrue(out, "no keepalive after login:\n" + timers())
        self.assertOk(s.quit())


# ====================================================================== 5. bad commands

class BadCommands(Base):

    def ended(self, s, n_bad_replies):
        for i in range(n_bad_replies):
            self.assertErr(s.reply(), "-ERR", "bad command %d" % (i + 1))
        self.assertEqual(s.reply(), "-ERR too many bad commands")
        self.assertEqual(s.expect_eof(), b"")
        self.assertEqual(s.wait(), 1)

    def test_three_bad_before_login(self):
        self.alice()
        s = self.e.session()
        s.send(b"FOO\r\nSTAT\r\n" + b"x" * 300 + b"\r\nCAPA\r\n")
        self.ended(s, 3)

    def test_bad_count_reset_before_login(self):
        self.alice()
        s = self.e.session()
        for good in ("CAPA", "USER alice"):
            self.assertErr(s.cmd("FOO"))
            self.assertErr(s.cmd("PASS x"))      # PASS without USER: bad
            st = s.cmd(good)
            self.assertOk(st)
            if good == "CAPA":
                s.multiline()
        self.assertRegex(s.cmd("PASS " + PW), RE_LOGIN)
        self.quit_ok(s)

    def test_ten_bad_after_login_reset_by_good(self):
        path = self.alice()
        before = self.e.read(path)
        s = self.login()
        self.assertOk(s.cmd("DELE 1"))
        bad = ["FOO", "RETR 9", "DELE 0", "LIST x", "TOP 1", "USER alice", "RETR 1",
               "NOOP extra", "\x00NOOP"]
        for rnd in range(2):
            for i, line in enumerate(bad):       # 9 bad commands
                self.assertErr(s.cmd(line), "-ERR", "round %d, %r" % (rnd, line))
            self.assertOk(s.cmd("NOOP"))         # resets the count
        s.send("".join(l + "\r\n" for l in bad) + "FOO\r\nNOOP\r\n")   # 10 in a row
        self.ended(s, 10)
        self.assertEqual(self.e.read(path), before, "ending on bad commands deleted mail")


# ====================================================================== 6. file and resource safety

class FileSafety(Base):

    def login_refused(self, prefix="-ERR [SYS/PERM]", log=None, timeout=5):
        t0 = time.monotonic()
        rc, out, err = self.e.run(b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n",
                                  extra=["-e"], timeout=timeout)
        lines = out.split(b"\r\n")
        self.assertGreaterEqual(len(lines), 3, out)
        self.assertTrue(lines[2].startswith(prefix.encode()), "PASS got %r" % lines[2])
        self.assertNotIn(b"+OK 0 0", out)
        self.assertEqual(rc, 1)
        if log:
            self.assertRegex(err.decode("latin-1"), log)
        return time.monotonic() - t0

    def test_mbox_symlink_refused(self):
        target = self.e.mbox_path("target")
        self.e.write_mbox(target, mb.build_mbox(R.simple_raws(2)))
        before = self.e.read(target)
        link = os.path.join(self.e.maildir, "alice.mbox")
        os.symlink(target, link)
        if IS_ROOT:
            os.lchown(link, self.e.uid, self.e.gid)
        self.alice(raws=False, mbox=link)
        self.login_refused(log=r"error user=alice .*alice\.mbox")
        self.assertEqual(self.e.read(target), before)

    def test_mbox_fifo_refused_without_hanging(self):
        fifo = os.path.join(self.e.maildir, "alice.mbox")
        os.mkfifo(fifo, 0o600)
        if IS_ROOT:
            os.chown(fifo, self.e.uid, self.e.gid)
        self.alice(raws=False, mbox=fifo)
        dt = self.login_refused(log="not a regular file", timeout=10)
        self.assertLess(dt, 5.0)

    def test_mbox_device_refused(self):
        self.alice(raws=False, mbox="/dev/null")
        self.login_refused(log="not a regular file")

    def test_maildir_symlinks_not_followed(self):
        secret_dir = os.path.join(self.e.dir, "elsewhere")
        os.mkdir(secret_dir, 0o755)
        secret = os.path.join(secret_dir, "1700000000.M9P9.secret")
        with open(secret, "wb") as f:
            f.write(b"Subject: not yours\n\nsecret body\n")
        os.chmod(secret, 0o644)
        path = self.maildir(subs=("cur", "tmp"))
        os.symlink(secret_dir, os.path.join(path, "new"))          # new/ is a symlink
        os.symlink(secret, os.path.join(path, "cur", "1700000001.M1P1.link:2,"))
        self.put(path, "cur", "1700000002.M2P2.real:2,", b"Subject: mine\n\nok\n")
        self.e.add_user("alice", "{PLAIN}" + PW, mbox=path)
        self.e.write_userfile()
        rc, out, err = self.e.run(b"USER alice\r\nPASS secret\r\nLIST\r\nRETR 1\r\nRETR 2\r\n"
                                  b"QUIT\r\n")
        self.assertNotIn(b"secret body", out, "a symlink in the Maildir was followed")
        self.assertTrue(os.path.exists(secret))

    def test_maildir_without_new_and_cur_is_empty(self):
        path = self.maildir(subs=())
        self.e.add_user("alice", "{PLAIN}" + PW, mbox=path)
        self.e.write_userfile()
        s = self.login()
        self.assertEqual(self.stat(s), (0, 0))
        self.quit_ok(s)
        self.assertFalse(os.path.exists(os.path.join(path, "new")))

    def statedir_refused(self):
        """As root the state directory is checked at start (the pre-login
        process's root lives in it); without root, where there is no chroot,
        at login when the session lock is taken."""
        if not IS_ROOT:
            return self.login_refused(prefix="-ERR [SYS/", log=r"lock directory .*unsafe")
        rc, out, err = self.e.run(b"USER alice\r\nPASS secret\r\nQUIT\r\n",
                                  extra=["-e"], timeout=5)
        self.assertEqual(out, b"-ERR [SYS/PERM] server configuration error\r\n")
        self.assertEqual(rc, 1)
        self.assertRegex(err.decode("latin-1"), r"error config: .*not writable by group or others")

    def test_statedir_writable_by_others_refused(self):
        path = self.alice()
        before = self.e.read(path)
        os.chmod(self.e.lockdir, 0o777)
        self.statedir_refused()
        os.chmod(self.e.lockdir, 0o720)
        self.statedir_refused()
        # (as root <statedir>/empty is made at start: see PrivSep.statedir_unsafe_...)
        self.assertEqual([f for f in os.listdir(self.e.lockdir) if f != "empty"], [],
                         "lock files created in an unsafe state directory")
        self.assertEqual(self.e.read(path), before)

    # ---- MAX_MESSAGES / MAX_MAILDROP_BYTES on a build with small limits
    def limits_binary(self):
        if not os.path.isfile(os.path.join(REPO, "Makefile")):
            self.skipTest("no sources next to the tests (copied tests): cannot build")
        err = LIMITS_BUILD.wait() if LIMITS_BUILD else "not started"
        if err:
            self.fail("limits build (-DMAX_MESSAGES=%d -DMAX_MAILDROP_BYTES=%d): %s"
                      % (LIMIT_MESSAGES, LIMIT_BYTES, err))
        return LIMITS_BUILD.binary

    def limit_case(self, binary, kind, raws):
        """Log in to a maildrop of kind holding raws; (first PASS reply, stderr)."""
        self.e.entries = []
        if kind == "mbox":
            path = self.e.mbox_path("alice")
            self.e.write_mbox(path, mb.build_mbox(raws))
        else:
            path = self.maildir()
            for sub in ("new", "cur"):
                for f in os.listdir(os.path.join(path, sub)):
                    os.unlink(os.path.join(path, sub, f))
            for i, r in enumerate(raws):
                self.put(path, "new", "17000000%02d.M%dP1.example.org" % (i, i), r)
        self.e.add_user("alice", "{PLAIN}" + PW, mbox=path)
        self.e.write_userfile()
        before = self.tree(path) if kind == "maildir" else self.e.read(path)
        rc, out, err = self.e.run(b"USER alice\r\nPASS secret\r\nQUIT\r\n",
                                  argv=self.argv_for(binary, ["-e"]))
        after = self.tree(path) if kind == "maildir" else self.e.read(path)
        self.assertEqual(after, before, "maildrop changed")
        return out.split(b"\r\n")[2].decode("latin-1"), err.decode("latin-1")

    def test_limits(self):
        binary = self.limits_binary()
        small = [mb.message(b"m%d" % i, b"b\n") for i in range(LIMIT_MESSAGES + 1)]
        fat = [mb.message(b"f%d" % i, b"y" * 2100 + b"\n") for i in range(LIMIT_MESSAGES)]
        for kind in ("mbox", "maildir"):
            with self.subTest(kind=kind, case="at the limits"):
                st, err = self.limit_case(binary, kind, small[:LIMIT_MESSAGES])
                self.assertRegex(st, RE_LOGIN)
                st, err = self.limit_case(binary, kind, [mb.message(b"a", b"z" * 9000 + b"\n")])
                self.assertRegex(st, RE_LOGIN)
            with self.subTest(kind=kind, case="too many messages"):
                st, err = self.limit_case(binary, kind, small)
                self.assertTrue(st.startswith("-ERR [SYS/PERM]"), st)
                self.assertRegex(err, r"error user=alice .*MAX_MESSAGES")
            with self.subTest(kind=kind, case="too many octets"):
                self.assertGreater(sum(len(mb.delivered(r)) for r in fat), LIMIT_BYTES)
                st, err = self.limit_case(binary, kind, fat)
                self.assertTrue(st.startswith("-ERR [SYS/PERM]"), st)
                self.assertRegex(err, r"error user=alice .*MAX_MAILDROP_BYTES")

    def test_limits_prelogin_total_time(self):
        """A client that keeps sending CAPA, never idle for -T, is still cut
        off MAX_PRELOGIN_SECONDS after it connected, and the monitor logs it."""
        binary = self.limits_binary()
        self.alice()
        p = subprocess.Popen(self.argv_for(binary, ["-e", "-T", "2"]), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        closed = None
        try:
            while time.monotonic() - t0 < LIMIT_PRELOGIN + 5:
                try:
                    p.stdin.write(b"CAPA\r\n")
                    p.stdin.flush()
                except BrokenPipeError:
                    closed = time.monotonic() - t0
                    break
                if p.poll() is not None:
                    closed = time.monotonic() - t0
                    break
                time.sleep(0.5)
        finally:
            if p.poll() is None:
                p.kill()
            _, err = p.communicate(timeout=10)
        self.assertIsNotNone(closed, "still connected after %d s of CAPA" % (LIMIT_PRELOGIN + 5))
        self.assertGreater(closed, LIMIT_PRELOGIN - 0.5)
        self.assertRegex(err.decode("latin-1"), r"timeout user=- rhost=\S+ limit=%ds" % LIMIT_PRELOGIN)
        self.assertEqual(p.returncode, 1)

    def test_limits_prelogin_monitor_enforces(self):
        """A pre-login process that no longer ends itself (stopped here, as a
        subverted one might ignore its alarm) is killed by the monitor a few
        seconds after MAX_PRELOGIN_SECONDS, and the monitor exits."""
        binary = self.limits_binary()
        self.alice()
        p = subprocess.Popen(self.argv_for(binary, ["-e", "-T", "2"]), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            kids = wait_for(lambda: children(p.pid), timeout=3)
            self.assertEqual(len(kids or []), 1, "no pre-login process")
            os.kill(kids[0], signal.SIGSTOP)
            t0 = time.monotonic()
            rc = p.wait(timeout=LIMIT_PRELOGIN + 15)
            waited = time.monotonic() - t0
        finally:
            if p.poll() is None:
                p.kill()
            _, err = p.communicate(timeout=10)
        self.assertEqual(rc, 1)
        self.assertLess(waited, LIMIT_PRELOGIN + 10)
        self.assertRegex(err.decode("latin-1"), r"pre-login process outstayed its time limit")


# ====================================================================== 7. garbage

class Model:
    """What pop3d must answer, line by line: "+" (one +OK line), "*" (+OK and
    a multi-line body), "-" (one -ERR line); and whether the session ends
    after the line ("bad" when it ends with "-ERR too many bad commands")."""

    TRANS_ONLY = {b"STAT", b"LIST", b"UIDL", b"RETR", b"TOP", b"DELE", b"RSET", b"NOOP"}
    AUTH_ONLY = {b"USER", b"PASS", b"APOP"}

    def __init__(self, nmsgs, stamp):
        self.trans = False
        self.user = None
        self.bad = 0
        self.failures = 0
        self.deleted = set()
        self.n = nmsgs
        self.stamp = stamp
        self.quit = False

    @staticmethod
    def valid_name(n):
        return (1 <= len(n) <= 64 and n[:1] not in (b".", b"-")
                and all(c in b"._-+@" or bytes([c]).isalnum() for c in n))

    def msgno(self, a):
        if not a.isdigit() or int(a) < 1 or int(a) > self.n:
            return None
        return None if int(a) in self.deleted else int(a)

    def step(self, raw):
        """raw: one line as the server sees it, LF included. (kind, end)."""
        before = self.bad
        if len(raw) > 255:
            kind = "-"
            self.bad += 1
        else:
            line = raw[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if b"\0" in line:
                kind = "-"
                self.bad += 1
            else:
                kind = self.command(line)
                if kind == "end":
                    return "+", "end"
                if kind == "authfail":
                    self.failures += 1
                    if self.failures >= 3:
                        return "-", "end"
                    kind = "-"
                if self.bad == before:
                    self.bad = 0
        if self.bad >= (10 if self.trans else 3):
            return kind, "bad"
        return kind, None

    def refuse(self):
        self.bad += 1
        return "-"

    def command(self, line):
        kw, sp, rest = line.partition(b" ")
        kw = kw.upper()
        known = {b"CAPA", b"QUIT"} | self.TRANS_ONLY | self.AUTH_ONLY
        if kw not in known:
            return self.refuse()
        if (kw in self.TRANS_ONLY and not self.trans) or (kw in self.AUTH_ONLY and self.trans):
            return self.refuse()
        if kw == b"PASS":
            if self.user is None:
                return self.refuse()
            ok = self.user == b"alice" and rest == PW.encode()
            self.user = None
            return self.login() if ok else "authfail"
        args = [a for a in rest.split(b" ") if a]
        if len(args) > 2:
            return self.refuse()
        want = {b"CAPA": (0, 0), b"QUIT": (0, 0), b"USER": (1, 1), b"APOP": (2, 2),
                b"STAT": (0, 0), b"LIST": (0, 1), b"UIDL": (0, 1), b"RETR": (1, 1),
                b"TOP": (2, 2), b"DELE": (1, 1), b"RSET": (0, 0), b"NOOP": (0, 0)}[kw]
        if not want[0] <= len(args) <= want[1]:
            return self.refuse()
        if kw == b"CAPA":
            return "*"
        if kw == b"QUIT":
            self.quit = True
            return "end"
        if kw == b"USER":
            if not self.valid_name(args[0]):
                return self.refuse()
            self.user = args[0]
            return "+"
        if kw == b"APOP":
            self.user = None
            d = args[1]
            if not self.valid_name(args[0]) or len(d) != 32 or \
                    any(c not in b"0123456789abcdefABCDEF" for c in d):
                return self.refuse()
            ok = args[0] == b"alice" and d.lower() == hashlib.md5(self.stamp + PW.encode()) \
                .hexdigest().encode()
            return self.login() if ok else "authfail"
        if kw in (b"STAT", b"NOOP"):
            return "+"
        if kw == b"RSET":
            self.deleted.clear()
            return "+"
        if kw in (b"LIST", b"UIDL") and not args:
            return "*"
        if self.msgno(args[0]) is None:
            return self.refuse()
        if kw == b"TOP":
            return "*" if args[1].isdigit() else self.refuse()
        if kw == b"RETR":
            return "*"
        if kw == b"DELE":
            self.deleted.add(int(args[0]))
        return "+"

    def login(self):
        self.trans = True
        self.bad = 0
        return "+"


class Garbage(Base):
    VALID = [b"STAT", b"LIST", b"UIDL", b"NOOP", b"RSET", b"CAPA", b"LIST %d", b"UIDL %d",
             b"RETR %d", b"TOP %d %d", b"DELE %d", b"USER alice", b"PASS secret"]

    def gen_line(self, rng, stamp):
        r = rng.random()
        if r < 0.45:
            t = rng.choice(self.VALID)
            n = t.count(b"%d")
            line = t % tuple(rng.choice([0, 1, 2, 3, 4, 99, 2 ** 64, 10 ** 30])
                             for _ in range(n)) if n else t
        elif r < 0.5:
            line = b"APOP alice " + rng.choice([
                hashlib.md5(stamp + PW.encode()).hexdigest().encode(),
                b"%032x" % rng.getrandbits(128), b"zz" * 16, b"0" * 31])
        elif r < 0.75:                               # a mutated valid command
            t = rng.choice(self.VALID)
            line = bytearray(t % tuple(rng.randint(0, 5) for _ in range(t.count(b"%d"))))
            for _ in range(rng.randint(1, 3)):
                op = rng.randrange(6)
                pos = rng.randint(0, len(line))
                if op == 0 and line:
                    line[min(pos, len(line) - 1)] = rng.randrange(256)
                elif op == 1:
                    line[pos:pos] = bytes([rng.choice(b" \t\r\x00\xff.-+0")])
                elif op == 2:
                    del line[pos:pos + rng.randint(1, 4)]
                elif op == 3:
                    line = bytearray(line.swapcase())
                elif op == 4:
                    line[pos:pos] = b" " * rng.randint(1, 3)
                else:
                    line += b" " + rng.choice([b"1", b"0", b"-1", b"+1", b"01x", b"9" * 25])
            line = bytes(line)
        elif r < 0.9:                                # random bytes
            line = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        elif r < 0.95:                               # over-long
            line = bytes(rng.choice(b"ABCDEFG \r\x00") for _ in range(rng.randint(250, 3000)))
        elif r < 0.985:                              # a good command made over-long
            t = rng.choice(self.VALID)
            line = t % tuple(rng.randint(1, 4) for _ in range(t.count(b"%d")))
            line += b" " * rng.randint(max(0, 250 - len(line)), 400)
        else:
            line = b"QUIT"
        return line + rng.choice([b"\r\n", b"\r\n", b"\n", b"\r\r\n"])

    def run_stream(self, rng, idx, nmsgs):
        s = self.e.session()
        stamp = (s.timestamp() or "").encode()
        lines = []
        if rng.random() < 0.7:
            lines.append(b"USER alice\r\n")
            lines.append(b"PASS secret\r\n")
        for _ in range(rng.randint(20, 90)):
            lines.append(self.gen_line(rng, stamp))
        data = b"".join(lines)
        server_lines = data.split(b"\n")[:-1]           # what pop3d sees as lines
        server_lines = [l + b"\n" for l in server_lines]
        model = Model(nmsgs, stamp)
        pipelined = rng.random() < 0.5
        if pipelined:
            s.send_bg(data)
        answered = 0
        end = None
        for i, raw in enumerate(server_lines):
            if not pipelined:
                s.send(raw)
            kind, end = model.step(raw)
            ctx = "stream %d line %d %r" % (idx, i + 1, raw[:80])
            try:
                st = s.reply(timeout=10)
            except (EOFError, ProtocolError) as ex:
                self.fail("%s: expected a reply (%s), got %s" % (ctx, kind, ex))
            self.assertEqual(st[0], "+" if kind in "+*" else "-", "%s: got %r" % (ctx, st))
            if kind == "*":
                s.multiline(timeout=10)
            answered += 1
            if end:
                break
        if end == "bad":
            self.assertEqual(s.reply(timeout=10), "-ERR too many bad commands", ctx)
        if not end:
            s.t.close_write()
        rest = s.expect_eof(timeout=10)
        self.assertEqual(rest, b"", "stream %d: data after the end of the session" % idx)
        rc = s.wait(timeout=10)
        self.assertGreaterEqual(rc, 0, "stream %d: pop3d killed by signal %d" % (idx, -rc))
        self.assertEqual(rc, 0 if model.quit else 1, "stream %d: exit status" % idx)
        return answered, model.trans

    def test_random_command_streams(self):
        SESSIONS = 120
        raws = R.simple_raws(4)
        path = self.alice(raws)
        rng = random.Random(GARBAGE_SEED)
        total = logged_in = 0
        t0 = time.monotonic()
        for idx in range(SESSIONS):
            self.e.write_mbox(path, mb.build_mbox(raws))
            n, trans = self.run_stream(rng, idx, len(raws))
            total += n
            logged_in += trans
        print("#   %d lines answered in %d sessions (%d logged in), %.1f s"
              % (total, SESSIONS, logged_in, time.monotonic() - t0))
        self.assertGreaterEqual(total, 2000)
        self.assertGreaterEqual(logged_in, SESSIONS // 2)


# ====================================================================== 8. valgrind

class Valgrind(Base):

    def test_full_session_memcheck(self):
        if not shutil.which("valgrind"):
            self.fail("valgrind not installed: scripts/deps.sh should install it")
        with open(POP3D, "rb") as f:    # by content: check.sh may copy it under another name
            asan = b"__asan_init" in f.read()
        if asan:
            self.skipTest("valgrind cannot run an ASan build")
        if VALGRIND_BUILD is None:
            self.skipTest("no sources next to the tests (copied tests): cannot build the "
                          "variant without the seccomp filter valgrind needs")
        err = VALGRIND_BUILD.wait()
        if err:
            self.fail("build with -DSANDBOX_NO_SECCOMP: %s" % err)
        binary = VALGRIND_BUILD.binary
        raws = R.simple_raws(3)
        mbox = self.e.mbox_path("alice")
        self.e.write_mbox(mbox, mb.build_mbox(raws))
        self.e.add_user("alice", "{PLAIN}" + PW, mbox=mbox)
        md = self.maildir("bob")
        for i, r in enumerate(raws):
            self.put(md, "new", "170000000%d.M%dP1.example.org" % (i, i), r)
        self.e.add_user("bob", crypt_hash(PW, "$y$"), mbox=md)
        self.e.write_userfile()
        script = (b"CAPA\r\nUSER nosuchuser\r\nPASS x\r\nUSER %s\r\nPASS secret\r\nSTAT\r\n"
                  b"LIST\r\nUIDL\r\nLIST 2\r\nUIDL 2\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nRSET\r\n"
                  b"DELE 3\r\nRETR 9\r\nNOOP\r\nQUIT\r\n")
        for user in ("alice", "bob"):
            with self.subTest(maildrop="mbox" if user == "alice" else "Maildir"):
                logdir = tempfile.mkdtemp(dir=self.e.dir)
                argv = ["valgrind", "--leak-check=full",
                        "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
                        "--trace-children=yes", "--vgdb=no",
                        "--log-file=%s/vg.%%p" % logdir] + self.argv_for(binary)
                rc, out, err = self.e.run(script % user.encode(), argv=argv, timeout=60)
                logs = {f: open(f, errors="replace").read()
                        for f in glob.glob(logdir + "/vg.*")}
                report = "\n".join(l[-3000:] for l in logs.values())
                self.assertEqual(rc, 0, "exit status %d under valgrind\n%s" % (rc, report))
                self.assertIn(b"+OK pop3d signing off (2 messages left)", out)
                self.assertGreaterEqual(len(logs), 2, "expected the monitor's and the "
                                        "pre-login process's valgrind logs: %r" % list(logs))
                for f, text in logs.items():
                    self.assertRegex(text, r"ERROR SUMMARY: 0 errors",
                                     "%s:\n%s" % (f, text[-3000:]))
                    self.assertNotRegex(text, r"(definitely|indirectly) lost: [1-9]",
                                        "%s:\n%s" % (f, text[-3000:]))


# ====================================================================== runner

def main():
    def setup(tests):
        global LIMITS_BUILD, VALGRIND_BUILD
        if any(R.test_name(t).startswith("FileSafety.limits") for t in tests) and \
                os.path.isfile(os.path.join(REPO, "Makefile")):
            LIMITS_BUILD = VariantBuild("-DMAX_MESSAGES=%d -DMAX_MAILDROP_BYTES=%d "
                                        "-DMAX_PRELOGIN_SECONDS=%d"
                                        % (LIMIT_MESSAGES, LIMIT_BYTES, LIMIT_PRELOGIN))
        if any(R.test_name(t).startswith("Valgrind") for t in tests) and \
                os.path.isfile(os.path.join(REPO, "Makefile")):
            VALGRIND_BUILD = VariantBuild("-DSANDBOX_NO_SECCOMP")

    def cleanup():
        for b in (LIMITS_BUILD, VALGRIND_BUILD):
            if b:
                b.cleanup()
    return R.suite_main(sys.modules[__name__], "pop3d security tests", setup, cleanup)

if __name__ == "__main__":
    sys.exit(main())
