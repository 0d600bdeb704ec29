#!/usr/bin/python3
"""pop3d integration tests.

Drives the real ./pop3d (or $POP3D) over pipes and over TCP under
systemd-socket-activate, with Python's poplib and curl as real clients.
Python 3 standard library only.

    tests/run.py [-k PATTERN]... [-v]

The protocol tests run once per maildrop kind, against an mbox and against
a Maildir holding the same messages: their names show the kind, as in
"Transaction[maildir].top" (class decorator each_kind).

Prints "ok NAME", "FAIL NAME" (with details) or "skip NAME: reason" per
test and a closing line "N passed, N failed[, N skipped]".  Exit status 0
only when nothing failed.  Works as root (user-file entries then use uid/gid
4242) and as an unprivileged user (root-only tests are skipped).
"""

import sys
sys.dont_write_bytecode = True            # never litter tests/__pycache__

import argparse
import fnmatch
import hashlib
import os
import poplib
import re
import shutil
import signal
import subprocess
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import maildirlib as md                   # noqa: E402
import mboxlib as mb                      # noqa: E402
from pop3lib import (POP3D, IS_ROOT, TEST_UID, TEST_GID, Env, Session,  # noqa: E402
                     PipeTransport, ProtocolError, apop_digest, crypt_hash, proc_tree,
                     proc_status, wait_for, crypt_skip_reason)

CAPS = ["TOP", "UIDL", "USER", "SASL PLAIN", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING",
        "EXPIRE NEVER", "IMPLEMENTATION pop3d"]
RE_LOGIN = re.compile(r"^\+OK maildrop has (\d+) messages? \((\d+) octets?\)$")
RE_STAT = re.compile(r"^\+OK (\d+) (\d+)$")
RE_RETR = re.compile(r"^\+OK (\d+) octets?(\s.*)?$")
RE_UIDL = re.compile(r"^[\x21-\x7e]{1,70}$")
AUTH_ERR = "-ERR [AUTH]"
PW = "secret"
TEST_TIMEOUT = 60          # seconds per test, a hard upper bound (SIGALRM)


def simple_raws(n, tag=b"m"):
    """n small distinct messages with delivery headers."""
    out = []
    for i in range(1, n + 1):
        out.append(mb.message(
            b"%s message %d" % (tag, i),
            b"body of %s message %d\n.dot line\n\nparagraph %s\n" % (tag, i, b"x" * (i * 7)),
            headers=(b"Received: from host%d.example.org by mx.example.org; "
                     b"Thu, 27 Nov 2025 12:%02d:00 +0000" % (i, i % 60),
                     b"Message-ID: <%s%d@example.org>" % (tag, i))))
    return out


class Base(unittest.TestCase):
    """Each test gets its own Env (temp dir, user file, mboxes, lock dir)."""

    def setUp(self):
        self.e = Env()
        self.addCleanup(self.e.cleanup)

    # ---- set-up helpers
    def crypt(self, password, prefix):
        """A hash this pop3d can verify, or the test skips saying why (a
        build without libxcrypt has no yescrypt; one without crypt, none)."""
        why = crypt_skip_reason(prefix)
        if why:
            self.skipTest(why)
        return crypt_hash(password, prefix)

    def alice(self, raws=None, secret="{PLAIN}" + PW, seps=None, write=True, **kw):
        """User alice with an mbox holding raws (default: 3 simple messages)."""
        if raws is None:
            raws = simple_raws(3)
        path = self.e.add_user("alice", secret, **kw)
        if write:
            self.e.write_userfile()
        if raws is not False:
            self.e.write_mbox(path, mb.build_mbox(raws, seps=seps))
        return path

    def login(self, user="alice", pw=PW, extra=()):
        s = self.e.session(extra)
        st = s.login(user, pw)
        self.assertRegex(st, RE_LOGIN)
        return s

    def quit_ok(self, s):
        st = s.quit()
        self.assertTrue(st.startswith("+OK"), st)
        self.assertEqual(s.wait(), 0, "exit status after QUIT")

    def assertErr(self, st, prefix="-ERR", msg=None):
        self.assertTrue(st.startswith(prefix), "expected %r..., got %r%s"
                        % (prefix, st, " (%s)" % msg if msg else ""))

    def bad(self, s, line, prefix="-ERR", msg=None):
        """A command that must be refused; then a good command (CAPA, valid in
        both states), so that a server limiting consecutive bad commands does
        not end the session while the test walks through error paths."""
        self.assertErr(s.cmd(line), prefix, msg)
        st, lines = s.cmd_lines("CAPA")
        self.assertOk(st)

    def assertOk(self, st):
        self.assertTrue(st.startswith("+OK"), "expected +OK, got %r" % st)

    def assertRaws(self, box, raws):
        """The maildrop (MboxBox, MaildirBox) holds exactly these messages,
        byte for byte, in order."""
        self.assertEqual(box.messages(), list(raws))

    def stat(self, s):
        st = s.cmd("STAT")
        m = RE_STAT.match(st)
        self.assertTrue(m, "STAT reply %r" % st)
        return int(m.group(1)), int(m.group(2))

    def list_sizes(self, s):
        st, lines = s.cmd_lines("LIST")
        self.assertOk(st)
        out = {}
        for l in lines:
            n, size = l.split(" ")
            out[int(n)] = int(size)
        return out

    def uidls(self, s):
        st, lines = s.cmd_lines("UIDL")
        self.assertOk(st)
        out = {}
        for l in lines:
            n, u = l.split(" ")
            out[int(n)] = u
        return out

    def retr(self, s, n):
        st, data = s.cmd_multi("RETR %d" % n)
        m = RE_RETR.match(st)
        self.assertTrue(m, "RETR %d reply %r" % (n, st))
        self.assertEqual(int(m.group(1)), len(data), "RETR %d: +OK size vs data" % n)
        return data

    def check_all(self, box, raws):
        """Log in; STAT, LIST, LIST n, +OK n octets of RETR and the octets
        RETR delivers all agree with the expected content; QUIT; the
        messages are unchanged (a Maildir may only have renamed them)."""
        before = box.contents()
        self.assertEqual(box.messages(), raws, "test's own model")
        s = self.login()
        want = [mb.delivered(r) for r in raws]
        self.assertEqual(self.stat(s), (len(raws), sum(len(w) for w in want)))
        sizes = self.list_sizes(s)
        self.assertEqual(sizes, {i: len(w) for i, w in enumerate(want, 1)}, "LIST sizes")
        for i, w in enumerate(want, 1):
            self.assertEqual(s.cmd("LIST %d" % i), "+OK %d %d" % (i, len(w)))
            got = self.retr(s, i)
            if got != w:
                k = next((j for j in range(min(len(got), len(w))) if got[j] != w[j]),
                         min(len(got), len(w)))
                self.fail("message %d differs at octet %d: got %r, want %r"
                          % (i, k, got[max(0, k - 20):k + 20], w[max(0, k - 20):k + 20]))
        self.quit_ok(s)
        self.assertEqual(box.contents(), before)


# ====================================================================== maildrop kinds

KINDS = ("mbox", "maildir")


class MboxBox:
    """An mbox maildrop of a test; the same interface as MaildirBox."""
    kind = "mbox"

    def __init__(self, e, name):
        self.e = e
        self.path = e.mbox_path(name)

    def write(self, raws, seps=None):
        self.e.write_mbox(self.path, mb.build_mbox(raws, seps=seps))

    def make_empty(self):
        self.e.write_mbox(self.path, b"")

    def exists(self):
        return os.path.lexists(self.path)

    def snapshot(self):
        """All of it, to compare for "nothing changed"."""
        return self.e.read(self.path)

    contents = snapshot         # RETR changes nothing in an mbox

    def messages(self):
        got = mb.split_mbox(self.e.read(self.path))
        for m in got:
            assert m.from_line.startswith(b"From "), m
        return [m.raw for m in got]

    def uidls(self):
        got = mb.split_mbox(self.e.read(self.path))
        return mb.expected_uidls([m.raw for m in got], [m.from_line for m in got])

    def sizes(self):
        return [len(mb.delivered(r)) for r in self.messages()]

    def deliver(self, raws):
        self.e.append_locked(self.path, mb.build_mbox(raws))

    def ident(self):
        st = os.stat(self.path)
        return (st.st_ino, st.st_uid, st.st_gid, st.st_mode)

    def other_spelling(self):
        return self.path.replace("/mail/", "/mail/./")

    def chown(self, uid, gid):
        os.chown(self.path, uid, gid)


class MaildirBox(md.Maildir):
    """A Maildir maildrop of a test: messages named as delivery agents name
    them (maildirlib.layout), owned by the entry's uid/gid."""
    kind = "maildir"

    def __init__(self, e, name):
        self.e = e
        ids = (e.uid, e.gid) if IS_ROOT else (None, None)
        super().__init__(os.path.join(e.maildir, name + ".Maildir") + "/", *ids)

    def write(self, raws, seps=None):
        for sub in ("new", "cur"):
            for n in self.listing(sub):
                os.unlink(self.file(sub, n))
        return super().write(raws)

    def make_empty(self):
        self.create()

    def uidls(self):
        return [md.uidl(n) for _, n, _ in self.ordered()]

    def sizes(self):
        return [md.pop3_size(n, d) for _, n, d in self.ordered()]

    def ident(self):
        st = os.stat(self.root)
        return (st.st_ino, st.st_uid, st.st_gid, st.st_mode)

    def other_spelling(self):
        # no trailing "/": a directory is a Maildir all the same
        return self.root.replace("/mail/", "/mail/./")

    def chown(self, uid, gid):
        for dp, dns, fns in os.walk(self.root):
            os.chown(dp, uid, gid)
            for fn in fns:
                os.chown(os.path.join(dp, fn), uid, gid)


class KindBase(Base):
    """Base of the tests that run once per maildrop kind (KIND)."""
    KIND = None

    def new_box(self, name="alice"):
        return (MboxBox if self.KIND == "mbox" else MaildirBox)(self.e, name)

    def alice(self, raws=None, secret="{PLAIN}" + PW, seps=None, write=True, **kw):
        """User alice with a maildrop of this kind holding raws (default: 3
        simple messages; False: no maildrop at all).  Returns its box."""
        if raws is None:
            raws = simple_raws(3)
        box = self.new_box("alice")
        self.e.add_user("alice", secret, mbox=box.path, **kw)
        if write:
            self.e.write_userfile()
        if raws is not False:
            box.write(raws, seps=seps)
        return box


def each_kind(cls):
    """Class decorator: cls (a mixin, not a TestCase) becomes one TestCase
    per maildrop kind, named "Cls[mbox]" and "Cls[maildir]"."""
    g = sys.modules[cls.__module__].__dict__
    for i, kind in enumerate(KINDS):
        name = "%s[%s]" % (cls.__name__, kind)
        g["%s_%d_%s" % (cls.__name__, i, kind)] = type(
            name, (cls, KindBase), {"KIND": kind, "__module__": cls.__module__,
                                    "__qualname__": name})
    return cls


# ====================================================================== start-up

class Startup(Base):

    def test_help_and_version(self):
        rc, out, err = self.e.run(b"", argv=[POP3D, "-h"])
        self.assertEqual(rc, 0)
        self.assertTrue(out.strip(), "-h prints usage on stdout")
        self.assertIn(b"-f", out)
        rc, out, err = self.e.run(b"", argv=[POP3D, "-V"])
        self.assertEqual(rc, 0)
        self.assertTrue(out.strip(), "-V prints a version")

    def startup_error(self, argv=None, userfile=None):
        rc, out, err = self.e.run(b"CAPA\r\nUSER alice\r\nPASS secret\r\nQUIT\r\n",
                                  argv=argv, userfile=userfile)
        lines = out.split(b"\r\n")
        self.assertTrue(out.startswith(b"-ERR [SYS/PERM] "), "got %r" % out[:200])
        self.assertEqual(out.count(b"\r\n"), 1, "exactly one line, got %r" % out[:300])
        self.assertTrue(out.endswith(b"\r\n"))
        self.assertEqual(rc, 1, "exit status")
        self.assertEqual(err, b"", "nothing on stderr (not a terminal)")
        return lines[0]

    def test_bad_option(self):
        self.alice()
        self.startup_error(argv=[POP3D, "-f", self.e.userfile, "-Z"])
        self.startup_error(argv=[POP3D, "-f", self.e.userfile, "-D", "x"])
        self.startup_error(argv=[POP3D, "-f", self.e.userfile, "-D", "61"])

    def test_missing_userfile(self):
        self.startup_error(userfile=os.path.join(self.e.dir, "no-such-file"))

    def test_unsafe_userfile_modes(self):
        self.alice()
        for mode in (0o622, 0o602, 0o620, 0o666):
            with self.subTest(mode=oct(mode)):
                os.chmod(self.e.userfile, mode)
                self.startup_error()
        os.chmod(self.e.userfile, 0o644)      # readable by others is fine
        s = self.login()
        self.quit_ok(s)

    @unittest.skipUnless(IS_ROOT, "needs root (chown of the user file)")
    def test_userfile_owned_by_other_user(self):
        self.alice()
        os.chown(self.e.userfile, TEST_UID, TEST_GID)
        self.startup_error()

    def test_no_stderr_output(self):
        self.alice()
        s = self.e.session()
        s.cmd("USER bob")
        s.cmd("PASS wrong")
        s.login("alice", PW)
        s.cmd("RETR 1")
        s.multiline()
        s.cmd("RETR 99")
        s.cmd("DELE 1")
        self.quit_ok(s)
        self.assertEqual(s.proc.stderr.read(), b"", "pop3d wrote to fd 2 (not a terminal)")

    def test_log_lines_with_e(self):
        self.alice()
        rc, out, err = self.e.run(b"USER nobody\r\nPASS x\r\nUSER alice\r\nPASS secret\r\n"
                                  b"RETR 1\r\nDELE 1\r\nQUIT\r\n", extra=["-e"])
        self.assertEqual(rc, 0, out)
        err = err.decode("latin-1")
        self.assertRegex(err, r"auth failed user=\S+ rhost=local")
        self.assertRegex(err, r"login user=alice rhost=local msgs=3 octets=\d+")
        self.assertRegex(err, r"logout user=alice rhost=local retr=1 dele=1 kept=2 "
                              r"octets_sent=\d+ duration=\d+\.\d\d")
        self.assertNotIn("secret", err, "password logged")


# ====================================================================== authorization

@each_kind
class Auth:

    def test_greeting_timestamp_with_plain_entry(self):
        self.alice()
        stamps = set()
        for _ in range(5):
            s = self.e.session()
            self.assertRegex(s.greeting, r"^\+OK pop3d ready <[^<>@\s]+@[^<>\s]+>$")
            ts = s.timestamp()
            self.assertIsNotNone(ts, "no APOP timestamp in %r" % s.greeting)
            stamps.add(ts)
            self.quit_ok(s)
        self.assertEqual(len(stamps), 5, "timestamps repeat: %r" % stamps)

    def test_greeting_no_timestamp_without_plain_entry(self):
        self.alice(secret=self.crypt(PW, "$6$"))
        s = self.e.session()
        self.assertOk(s.greeting)
        self.assertNotIn("<", s.greeting)
        st = s.cmd("APOP alice " + "0" * 32)
        self.assertErr(st)
        s.login("alice", PW)
        self.quit_ok(s)

    def test_greeting_no_timestamp_with_A(self):
        self.alice()
        s = self.e.session(["-A"])
        self.assertOk(s.greeting)
        self.assertNotIn("<", s.greeting)
        self.assertErr(s.cmd("APOP alice " + "0" * 32))
        s.login("alice", PW)          # USER/PASS still fine
        self.quit_ok(s)

    def check_capa(self, s):
        st, lines = s.cmd_lines("CAPA")
        self.assertOk(st)
        self.assertEqual(sorted(lines), sorted(CAPS))

    def test_capa_both_states(self):
        self.alice()
        s = self.e.session()
        self.check_capa(s)
        s.login("alice", PW)
        self.check_capa(s)
        self.quit_ok(s)

    def test_user_pass_plain_and_crypt_schemes(self):
        secrets = {
            "plain": "{PLAIN}pw-plain",
            "plainlc": "{plain}pw-plainlc",
        }
        for name, prefix in (("yescrypt", "$y$"), ("sha512", "$6$"), ("bcrypt", "$2b$")):
            why = crypt_skip_reason(prefix)
            if why:                 # (the rest of the test still runs)
                print("skip crypt scheme %s: %s" % (name, why))
            else:
                secrets[name] = crypt_hash("pw-" + name, prefix)
        for name, sec in secrets.items():
            box = self.new_box(name)
            box.write(simple_raws(1))
            self.e.add_user(name, sec, mbox=box.path)
        self.e.write_userfile()
        for name in secrets:
            with self.subTest(user=name):
                s = self.e.session()
                self.assertEqual(s.cmd("USER " + name)[:3], "+OK")
                self.assertTrue(s.cmd("PASS wrong-" + name).startswith(AUTH_ERR))
                s.login(name, "pw-" + name)
                self.assertEqual(self.stat(s)[0], 1)
                self.quit_ok(s)

    def test_password_with_spaces_and_colon_text(self):
        self.alice(secret="{PLAIN}two words here")
        s = self.e.session()
        s.login("alice", "two words here")
        self.quit_ok(s)

    def test_unknown_user_same_reply_as_wrong_password(self):
        self.alice(secret=self.crypt(PW, "$y$"))
        s = self.e.session()
        self.assertOk(s.cmd("USER alice"))
        wrong = s.cmd("PASS nope")
        self.assertOk(s.cmd("USER nosuchuser"))
        unknown = s.cmd("PASS nope")
        self.assertTrue(wrong.startswith(AUTH_ERR), wrong)
        self.assertEqual(wrong, unknown)

    def test_disabled_accounts(self):
        self.alice(write=False)           # a {PLAIN} entry: APOP is offered
        for name, sec in (("star", "*"), ("bang", "!x"), ("empty", ""),
                          ("bangplain", "!{PLAIN}" + PW)):
            self.e.add_user(name, sec)
        self.e.write_userfile()
        for name, tries in (("star", ["*", PW]), ("bang", ["!x", "x"]), ("empty", [PW]),
                            ("bangplain", [PW, "{PLAIN}" + PW])):
            s = self.e.session()
            for pw in tries[:2]:
                self.assertOk(s.cmd("USER " + name))
                st = s.cmd("PASS " + pw)
                self.assertTrue(st.startswith(AUTH_ERR), "%s/%s: %s" % (name, pw, st))
            ts = s.timestamp()
            if ts:
                secret = {"star": "*", "bang": "!x", "empty": "",
                          "bangplain": PW}[name]
                st = s.cmd("APOP %s %s" % (name, apop_digest(ts, secret)))
                self.assertTrue(st.startswith("-ERR"), "APOP %s: %s" % (name, st))

    def test_three_failures_close(self):
        self.alice()
        s = self.e.session()
        for i in range(3):
            self.assertOk(s.cmd("USER alice"))
            st = s.cmd("PASS wrong%d" % i)
            self.assertTrue(st.startswith(AUTH_ERR), st)
        self.assertEqual(s.expect_eof(), b"")
        self.assertEqual(s.wait(), 1)

    def test_three_failures_mixed_apop(self):
        self.alice()
        s = self.e.session()
        self.assertTrue(s.cmd("APOP alice " + "0" * 32).startswith(AUTH_ERR))
        s.cmd("USER nobody")
        self.assertTrue(s.cmd("PASS x").startswith(AUTH_ERR))
        self.assertTrue(s.cmd("APOP alice " + "f" * 32).startswith(AUTH_ERR))
        self.assertEqual(s.expect_eof(), b"")

    def test_two_failures_then_success(self):
        self.alice()
        s = self.e.session()
        for _ in range(2):
            s.cmd("USER alice")
            self.assertErr(s.cmd("PASS wrong"), AUTH_ERR)
        s.login("alice", PW)
        self.assertEqual(self.stat(s)[0], 3)
        self.quit_ok(s)

    def test_pass_without_user_not_counted(self):
        self.alice()
        s = self.e.session()
        for _ in range(4):
            self.bad(s, "PASS " + PW)
        for _ in range(2):
            s.cmd("USER alice")
            self.assertErr(s.cmd("PASS wrong"), AUTH_ERR)
        s.login("alice", PW)
        self.quit_ok(s)

    def test_user_after_failed_pass_needs_user_again(self):
        self.alice()
        s = self.e.session()
        s.cmd("USER alice")
        self.assertErr(s.cmd("PASS wrong"), AUTH_ERR)
        self.assertErr(s.cmd("PASS " + PW))     # USER consumed by the failure
        s.login("alice", PW)
        self.quit_ok(s)

    def test_failure_delay(self):
        self.alice()
        for delay, lo, hi in (("1", 0.9, 5.0), ("0", 0.0, 0.8)):
            for user in ("alice", "nosuchuser"):
                with self.subTest(delay=delay, user=user):
                    s = self.e.session(delay=delay)
                    s.cmd("USER " + user)
                    t0 = time.monotonic()
                    st = s.cmd("PASS wrong")
                    dt = time.monotonic() - t0
                    self.assertErr(st, AUTH_ERR)
                    self.assertGreaterEqual(dt, lo, "-D %s: reply after %.2f s" % (delay, dt))
                    self.assertLess(dt, hi, "-D %s: reply after %.2f s" % (delay, dt))
                    s.close()

    def test_apop_correct_digest(self):
        self.alice()
        s = self.e.session()
        ts = s.timestamp()
        self.assertIsNotNone(ts)
        st = s.cmd("APOP alice " + apop_digest(ts, PW))
        self.assertRegex(st, RE_LOGIN)
        self.assertEqual(self.stat(s)[0], 3)
        self.quit_ok(s)

    def test_apop_wrong_digest_and_stale_timestamp(self):
        self.alice()
        s1 = self.e.session()
        old_ts = s1.timestamp()
        s1.close()
        s = self.e.session()
        ts = s.timestamp()
        self.assertNotEqual(ts, old_ts)
        self.assertErr(s.cmd("APOP alice " + apop_digest(ts, "wrong")), AUTH_ERR)
        self.assertErr(s.cmd("APOP alice " + apop_digest(old_ts, PW)), AUTH_ERR)
        st = s.cmd("APOP alice " + apop_digest(ts, PW))
        self.assertRegex(st, RE_LOGIN)
        self.quit_ok(s)

    def test_apop_unknown_and_crypt_user(self):
        self.alice()
        self.e.add_user("bob", self.crypt(PW, "$y$"))
        self.e.write_userfile()
        s = self.e.session()
        ts = s.timestamp()
        a = s.cmd("APOP nosuchuser " + apop_digest(ts, PW))
        b = s.cmd("APOP bob " + apop_digest(ts, PW))
        self.assertTrue(a.startswith(AUTH_ERR), a)
        self.assertTrue(b.startswith(AUTH_ERR), b)

    def test_apop_syntax(self):
        self.alice()
        s = self.e.session()
        ts = s.timestamp()
        good = apop_digest(ts, PW)
        for line in ("APOP", "APOP alice", "APOP alice " + good + " extra"):
            self.bad(s, line)
        st = s.cmd("APOP alice " + good)
        self.assertRegex(st, RE_LOGIN)
        self.quit_ok(s)

    def test_user_syntax(self):
        self.alice()
        s = self.e.session()
        for bad in ("USER", "USER .alice", "USER -alice", "USER al:ice", "USER al/ice",
                    "USER " + "a" * 65, "USER alice bob"):
            with self.subTest(line=bad):
                self.bad(s, bad)
        for good in ("USER " + "a" * 64, "USER a.b_c-d+e@f.example", "USER 9"):
            with self.subTest(line=good):
                self.assertOk(s.cmd(good))
        s.login("alice", PW)
        self.quit_ok(s)

    def test_uid_gid_fields(self):
        # not root: empty uid/gid fields are fine; root: they are refused
        self.alice(simple_raws(1), uid="", gid="")
        s = self.e.session()
        s.cmd("USER alice")
        st = s.cmd("PASS " + PW)
        if IS_ROOT:
            self.assertErr(st)
        else:
            self.assertRegex(st, RE_LOGIN)
            self.quit_ok(s)

    def test_wrong_state_before_login(self):
        self.alice()
        s = self.e.session()
        for line in ("STAT", "LIST", "LIST 1", "UIDL", "UIDL 1", "RETR 1", "TOP 1 0",
                     "DELE 1", "RSET", "NOOP", "FOO", "", "PASS"):
            with self.subTest(line=line):
                self.bad(s, line)
        s.login("alice", PW)     # none of the above counted as a failure
        self.quit_ok(s)

    def test_wrong_state_after_login(self):
        self.alice()
        s = self.login()
        ts = s.timestamp()
        for line in ("USER alice", "PASS " + PW, "APOP alice " + apop_digest(ts, PW),
                     "FOO", "STLS", "AUTH PLAIN", ""):
            with self.subTest(line=line):
                self.bad(s, line)
        self.assertEqual(self.stat(s)[0], 3)
        self.quit_ok(s)

    def test_quit_in_authorization(self):
        box = self.alice()
        before = box.snapshot()
        s = self.e.session()
        s.cmd("USER alice")
        self.quit_ok(s)
        self.assertEqual(box.snapshot(), before)

    def test_keywords_case_insensitive(self):
        box = self.alice()
        s = self.e.session()
        st, lines = s.cmd_lines("cApA")
        self.assertOk(st)
        self.assertOk(s.cmd("user alice"))
        self.assertRegex(s.cmd("pAsS " + PW), RE_LOGIN)
        self.assertRegex(s.cmd("stat"), RE_STAT)
        st, lines = s.cmd_lines("list")
        self.assertOk(st)
        self.assertEqual(len(lines), 3)
        self.assertRegex(s.cmd("List 2"), r"^\+OK 2 \d+$")
        st, lines = s.cmd_lines("uIdL")
        self.assertEqual(len(lines), 3)
        self.assertRegex(s.cmd("uidl 1"), r"^\+OK 1 \S+$")
        st, data = s.cmd_multi("rEtR 1")
        self.assertOk(st)
        st, data = s.cmd_multi("tOp 1 0")
        self.assertOk(st)
        self.assertOk(s.cmd("dElE 1"))
        self.assertOk(s.cmd("nOoP"))
        self.assertOk(s.cmd("rset"))
        self.assertOk(s.cmd("Dele 2"))
        st = s.cmd("qUiT")
        self.assertOk(st)
        s.expect_eof()
        self.assertEqual(s.wait(), 0)
        raws = simple_raws(3)
        self.assertRaws(box, [raws[0], raws[2]])

    def test_malformed_userfile_lines(self):
        box = self.new_box("shared")
        box.write(simple_raws(1))
        mbox = box.path
        u, g = self.e.ids()
        self.e.add_user("good1", "{PLAIN}pw1", mbox=mbox)
        bad = [
            ("nocolons", "nocolons {PLAIN}pw"),
            ("short", "short:{PLAIN}pw:%s:%s" % (u, g)),
            ("fivefields", "fivefields:{PLAIN}pw:%s:%s:%s" % (u, g, mbox)),
            ("toomany", "toomany:{PLAIN}pw:%s:%s:gecos:%s:extra" % (u, g, mbox)),
            ("relpath", "relpath:{PLAIN}pw:%s:%s:gecos:relative/mbox" % (u, g)),
            ("emptymb", "emptymb:{PLAIN}pw:%s:%s:gecos:" % (u, g)),
            (".dot", ".dot:{PLAIN}pw:%s:%s:gecos:%s" % (u, g, mbox)),
            ("a" * 65, "a" * 65 + ":{PLAIN}pw:%s:%s:gecos:%s" % (u, g, mbox)),
            ("long", "long:{PLAIN}pw:%s:%s:%s:%s" % (u, g, "g" * 6000, mbox)),
        ]
        if IS_ROOT:
            bad += [("baduid", "baduid:{PLAIN}pw:abc:%s::%s" % (g, mbox)),
                    ("neguid", "neguid:{PLAIN}pw:-5:%s::%s" % (g, mbox)),
                    ("hugeuid", "hugeuid:{PLAIN}pw:99999999999999999999:%s::%s" % (g, mbox)),
                    ("noids", "noids:{PLAIN}pw:::gecos:%s" % mbox)]
        for _, line in bad:
            self.e.add_raw(line)
        self.e.add_raw("bad name:{PLAIN}pw:%s:%s::%s" % (u, g, mbox))
        self.e.add_user("good2", "{PLAIN}pw2", mbox=mbox)
        self.e.write_userfile()
        for name, pw in (("good1", "pw1"), ("good2", "pw2")):
            with self.subTest(user=name):
                s = self.e.session()
                s.login(name, pw)
                self.assertEqual(self.stat(s)[0], 1)
                self.quit_ok(s)
        for name, _ in bad:
            with self.subTest(user=name[:20]):
                s = self.e.session()
                st = s.cmd("USER " + name)
                if st.startswith("+OK"):
                    st = s.cmd("PASS pw")
                self.assertErr(st)
                ts = s.timestamp()
                if ts and s.proc.poll() is None and not s.eof:
                    try:
                        st = s.cmd("APOP %s %s" % (name, apop_digest(ts, "pw")))
                        self.assertErr(st)
                    except EOFError:
                        pass
                s.close()


@unittest.skipUnless(IS_ROOT, "needs root (privilege switch)")
@each_kind
class Root:

    def test_session_runs_as_entry_uid(self):
        box = self.alice()
        ident = box.ident()
        self.assertEqual(ident[1:3], (TEST_UID, TEST_GID), "test set-up")
        # started with supplementary groups (as under some super-servers): all must go
        s = self.e.session(extra_groups=[0, 4343])
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        pids = proc_tree(s.proc.pid)
        found = []
        for pid in pids:
            st = proc_status(pid)
            if st.get("Uid") == [str(TEST_UID)] * 4:
                found.append((pid, st))
        self.assertTrue(found, "no process of the session runs as uid %d: %r"
                        % (TEST_UID, {p: proc_status(p).get("Uid") for p in pids}))
        for pid, st in found:
            self.assertEqual(st.get("Gid"), [str(TEST_GID)] * 4, "Gid of pid %d" % pid)
            self.assertIn(st.get("Groups"), ([], [str(TEST_GID)]), "Groups of pid %d" % pid)
        for pid in pids:   # nothing of the logged-in session may stay uid 0
            self.assertNotEqual(proc_status(pid).get("Uid", ["x"])[0], "0",
                                "pid %d still has real uid 0" % pid)
        self.assertOk(s.cmd("DELE 1"))
        self.assertOk(s.cmd("RETR 2"))
        s.multiline()
        self.quit_ok(s)
        self.assertEqual(box.ident(), ident, "owner/mode/inode of the maildrop changed")
        if box.kind == "maildir":     # the renamed (seen) message: still the user's
            for sub, name, _ in box.ordered():
                st = os.stat(box.file(sub, name))
                self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777),
                                 (TEST_UID, TEST_GID, 0o600), name)

    def refused(self, uid, gid):
        box = self.alice(simple_raws(2), uid=uid, gid=gid)
        before = box.snapshot()
        s = self.e.session()
        s.cmd("USER alice")
        st = s.cmd("PASS " + PW)
        self.assertErr(st, "-ERR [SYS/PERM]")
        self.assertEqual(box.snapshot(), before)

    def test_uid0_refused(self):
        self.refused(0, TEST_GID)

    def test_gid0_refused(self):
        self.refused(TEST_UID, 0)

    def test_maildrop_not_accessible_by_entry_uid(self):
        # the maildrop belongs to root (0600 file, 0700 dirs): the switched
        # session must not read it
        box = self.alice()
        box.chown(0, 0)
        before = box.snapshot()
        s = self.e.session()
        s.cmd("USER alice")
        st = s.cmd("PASS " + PW)
        self.assertErr(st)      # not "+OK maildrop has 0 messages": it was opened as root
        s.close()
        self.assertEqual(box.snapshot(), before)


@unittest.skipUnless(IS_ROOT, "needs root (privilege switch)")
class RootMbox(Base):
    """The mbox session lock lives in root's lock directory (a Maildir's
    lives inside the Maildir: Maildir.session_lock_inside_maildir)."""

    def test_lockdir_created_0700(self):
        self.alice()
        lockdir = os.path.join(self.e.dir, "newlocks")
        s = self.e.session(["-l", lockdir])
        s.login("alice", PW)
        st = os.stat(lockdir)
        self.assertEqual((st.st_uid, st.st_mode & 0o7777), (0, 0o700))
        b = self.e.session(["-l", lockdir])
        b.cmd("USER alice")
        self.assertErr(b.cmd("PASS " + PW), "-ERR [IN-USE]")
        self.quit_ok(s)


# ====================================================================== transaction

@each_kind
class Transaction:

    def test_stat_list_uidl_retr(self):
        raws = simple_raws(4)
        box = self.alice(raws)
        want_uidls = box.uidls()
        s = self.e.session()
        st = s.login("alice", PW)
        m = RE_LOGIN.match(st)
        sizes = [len(mb.delivered(r)) for r in raws]
        self.assertEqual(box.sizes(), sizes, "test's own model")
        self.assertEqual((int(m.group(1)), int(m.group(2))), (4, sum(sizes)))
        self.assertEqual(self.stat(s), (4, sum(sizes)))
        st, lines = s.cmd_lines("LIST")
        self.assertRegex(st, r"^\+OK 4 messages? \(%d octets?\)$" % sum(sizes))
        self.assertEqual(lines, ["%d %d" % (i + 1, z) for i, z in enumerate(sizes)])
        for i, z in enumerate(sizes, 1):
            self.assertEqual(s.cmd("LIST %d" % i), "+OK %d %d" % (i, z))
        u = self.uidls(s)
        self.assertEqual(u, dict(enumerate(want_uidls, 1)))
        for i in range(1, 5):
            self.assertEqual(s.cmd("UIDL %d" % i), "+OK %d %s" % (i, u[i]))
            self.assertEqual(self.retr(s, i), mb.delivered(raws[i - 1]))
        self.assertEqual(s.cmd("NOOP")[:3], "+OK")
        self.quit_ok(s)
        self.assertRaws(box, raws)
        self.assertEqual(box.uidls(), want_uidls)

    def test_top(self):
        raws = [mb.message(b"top", b"l1\n.l2\nl3\n", headers=(b"X-A: 1", b"X-B: 2\n\tcont")),
                b"Subject: header only\n", mb.message(b"empty", b"")]
        self.alice(raws)
        s = self.login()
        for k in (0, 1, 2, 3, 4, 1000):
            st, data = s.cmd_multi("TOP 1 %d" % k)
            self.assertOk(st)
            self.assertEqual(data, mb.top_expected(raws[0], k), "TOP 1 %d" % k)
        for k in (0, 5):
            st, data = s.cmd_multi("TOP 2 %d" % k)
            self.assertOk(st)
            self.assertIn(data, (b"Subject: header only\r\n", b"Subject: header only\r\n\r\n"))
            st, data = s.cmd_multi("TOP 3 %d" % k)
            self.assertEqual(data, b"Subject: empty\r\n\r\n")
        self.assertOk(s.cmd("TOP 01 00"))
        s.multiline()
        for bad in ("TOP", "TOP 1", "TOP 1 -1", "TOP 1 +1", "TOP 1 x", "TOP 1 1x",
                    "TOP 1 0 0", "TOP 0 0", "TOP 4 0", "TOP x 1", "TOP -1 1"):
            with self.subTest(line=bad):
                self.bad(s, bad)
        self.quit_ok(s)

    def test_dele_rset(self):
        raws = simple_raws(4)
        box = self.alice(raws)
        sizes = [len(mb.delivered(r)) for r in raws]
        s = self.login()
        self.assertEqual(s.cmd("DELE 2"), "+OK message 2 deleted")
        self.assertEqual(s.cmd("DELE 04"), "+OK message 4 deleted")
        self.assertEqual(self.stat(s), (2, sizes[0] + sizes[2]))
        self.assertEqual(self.list_sizes(s), {1: sizes[0], 3: sizes[2]})
        self.assertEqual(sorted(self.uidls(s)), [1, 3])
        st = s.cmd("RSET")
        self.assertRegex(st, RE_LOGIN)
        self.assertEqual(RE_LOGIN.match(st).groups(), ("4", str(sum(sizes))))
        self.assertEqual(self.stat(s), (4, sum(sizes)))
        self.assertEqual(self.list_sizes(s), dict(enumerate(sizes, 1)))
        self.assertOk(s.cmd("DELE 3"))
        self.quit_ok(s)
        self.assertRaws(box, [raws[0], raws[1], raws[3]])

    def test_deleted_message_in_every_command(self):
        raws = simple_raws(3)
        box = self.alice(raws)
        s = self.login()
        self.assertOk(s.cmd("DELE 2"))
        for line in ("LIST 2", "UIDL 2", "RETR 2", "TOP 2 0", "DELE 2", "LIST 02"):
            with self.subTest(line=line):
                self.bad(s, line)
        self.assertNotIn(2, self.list_sizes(s))
        self.assertNotIn(2, self.uidls(s))
        self.assertEqual(self.stat(s)[0], 2)
        self.assertEqual(self.retr(s, 3), mb.delivered(raws[2]))   # numbers stay
        self.quit_ok(s)
        self.assertRaws(box, [raws[0], raws[2]])

    def test_number_parsing(self):
        raws = simple_raws(3)
        box = self.alice(raws)
        before = box.contents()
        s = self.login()
        bad_args = ["0", "00", "-1", "+1", "1x", "01x", "x1", "1.0", "1 2", "9" * 30, "4",
                    "18446744073709551617", "4294967297", "0x1", "１"]
        for cmd in ("LIST", "UIDL", "RETR", "DELE", "TOP"):
            for arg in bad_args:
                line = "%s %s" % (cmd, arg)
                if cmd == "TOP":
                    line += " 0"
                with self.subTest(line=line):
                    self.bad(s, line.encode("utf-8"))
        for cmd in ("RETR", "DELE", "TOP"):
            self.bad(s, cmd, msg="%s without argument" % cmd)
        self.assertEqual(self.stat(s)[0], 3, "a bad DELE deleted something")
        self.assertRegex(s.cmd("LIST 01"), r"^\+OK 1 \d+$")
        self.assertRegex(s.cmd("LIST 0003"), r"^\+OK 3 \d+$")
        self.assertRegex(s.cmd("UIDL 001"), r"^\+OK 1 \S+$")
        self.assertEqual(self.retr(s, 1), mb.delivered(raws[0]))
        st, data = s.cmd_multi("RETR 02")
        self.assertEqual(data, mb.delivered(raws[1]))
        self.quit_ok(s)
        self.assertEqual(box.contents(), before)

    def test_empty_and_missing_maildrop(self):
        box = self.alice(raws=False)             # no mbox file, no Maildir at all
        s = self.login()
        self.assertEqual(self.stat(s), (0, 0))
        st, lines = s.cmd_lines("LIST")
        self.assertEqual(lines, [])
        st, lines = s.cmd_lines("UIDL")
        self.assertEqual(lines, [])
        for line in ("RETR 1", "LIST 1", "DELE 1", "TOP 1 0", "UIDL 1"):
            self.bad(s, line)
        self.quit_ok(s)
        self.assertFalse(box.exists(), "a missing maildrop was created")
        box.make_empty()
        before = box.snapshot()
        s = self.login()
        self.assertEqual(self.stat(s), (0, 0))
        st, lines = s.cmd_lines("UIDL")
        self.assertEqual(lines, [])
        self.quit_ok(s)
        self.assertEqual(box.snapshot(), before)
        self.assertEqual(box.messages(), [])

    def test_delete_all(self):
        raws = simple_raws(3)
        box = self.alice(raws)
        ident = box.ident()
        s = self.login()
        for i in (1, 2, 3):
            self.assertOk(s.cmd("DELE %d" % i))
        self.assertEqual(self.stat(s), (0, 0))
        self.quit_ok(s)
        self.assertEqual(box.messages(), [])
        if box.kind == "mbox":
            self.assertEqual(self.e.read(box.path).strip(), b"")
        self.assertEqual(box.ident(), ident)
        s = self.login()
        self.assertEqual(self.stat(s), (0, 0))
        self.quit_ok(s)

    def test_quit_removes_exactly_the_deleted(self):
        raws, seps = mb.tricky_corpus(big=False)
        box = self.alice(raws, seps=seps)
        self.assertEqual(box.messages(), raws, "test's own model")
        ident = box.ident()
        dele = {1, 4, 7, 10, len(raws) - 1}
        s = self.login()
        for i in sorted(dele):
            self.assertOk(s.cmd("DELE %d" % i))
        self.quit_ok(s)
        self.assertRaws(box, [r for i, r in enumerate(raws, 1) if i not in dele])
        self.assertEqual(box.ident(), ident)

    def test_delete_before_message_without_final_newline(self):
        raws = simple_raws(2) + [mb.message(b"nonl", b"no newline at end")]
        box = self.alice(raws)
        s = self.login()
        self.assertOk(s.cmd("DELE 2"))
        self.quit_ok(s)
        self.assertRaws(box, [raws[0], raws[2]])
        s = self.login()
        self.assertEqual(self.retr(s, 2), mb.delivered(raws[2]))
        self.assertOk(s.cmd("DELE 2"))
        self.quit_ok(s)
        self.assertRaws(box, [raws[0]])


# ====================================================================== lines

@each_kind
class Lines:

    def test_255_octet_line_accepted_256_rejected(self):
        raws = simple_raws(3)
        self.alice(raws)
        size1 = len(mb.delivered(raws[0]))
        s = self.login()
        line255 = "LIST " + "0" * 247 + "1"            # 253 + CRLF = 255
        self.assertEqual(len(line255) + 2, 255)
        self.assertEqual(s.cmd(line255), "+OK 1 %d" % size1)
        line254lf = "LIST " + "0" * 248 + "1"          # 254 + LF = 255
        s.send(line254lf + "\n")
        self.assertEqual(s.reply(), "+OK 1 %d" % size1)
        # 256 octets with CRLF: exactly one -ERR, then the next command
        line256 = "LIST " + "0" * 248 + "1"
        self.assertEqual(len(line256) + 2, 256)
        s.send(line256 + "\r\nSTAT\r\n")
        self.assertErr(s.reply())
        self.assertRegex(s.reply(), RE_STAT)
        # 255 octets + bare LF = 256: too long as well
        s.send("LIST " + "0" * 249 + "1\nSTAT\r\n")
        self.assertErr(s.reply())
        self.assertRegex(s.reply(), RE_STAT)
        # unknown command of exactly 255 octets: an ordinary -ERR, and one only
        s.send("X" * 253 + "\r\nSTAT\r\n")
        self.assertErr(s.reply())
        self.assertRegex(s.reply(), RE_STAT)
        self.quit_ok(s)

    def test_overlong_tail_never_executed(self):
        raws = simple_raws(3)
        box = self.alice(raws)
        before = box.snapshot()
        size1 = len(mb.delivered(raws[0]))
        s = self.login()
        for pad in (255, 256, 300, 1023, 1024, 4095, 4096, 8192, 65536, 200000):
            with self.subTest(pad=pad):
                # if the tail after the first 255 octets ran, message 1 would
                # be deleted and "LIST 1" would fail; one reply too many would
                # also shift the replies.
                s.send(b"X" * pad + b"DELE 1\r\nLIST 1\r\n")
                self.assertErr(s.reply())
                self.assertEqual(s.reply(), "+OK 1 %d" % size1)
        # a QUIT in the tail must not end the session nor commit DELE 2
        s.send(b"DELE 2\r\n" + b"A" * 255 + b"QUIT\r\nRSET\r\n")
        self.assertEqual(s.reply(), "+OK message 2 deleted")
        self.assertErr(s.reply())
        self.assertRegex(s.reply(), RE_LOGIN)
        self.assertEqual(self.stat(s)[0], 3)
        self.quit_ok(s)
        self.assertEqual(box.snapshot(), before)

    def test_overlong_in_authorization(self):
        self.alice()
        s = self.e.session()
        s.send(b"Q" * 255 + b"QUIT\r\nCAPA\r\n")
        self.assertErr(s.reply())
        self.assertOk(s.reply())                        # CAPA
        self.assertEqual(sorted(s.multiline_lines()), sorted(CAPS))
        s.send(b"USER " + b"a" * 300 + b"\r\n")
        self.assertErr(s.reply())
        s.send(b"USER alice " + b" " * 250 + b"PASS secret\r\n")
        self.assertErr(s.reply())
        s.login("alice", PW)      # the over-long lines counted as no failure
        self.quit_ok(s)

    def test_nul_voids_line(self):
        raws = simple_raws(3)
        box = self.alice(raws)
        before = box.snapshot()
        s = self.e.session()
        self.assertErr(s.cmd(b"USER alice\x00"))
        self.bad(s, b"PASS " + PW.encode(), msg="PASS after a voided USER")
        self.bad(s, b"QUIT\x00")
        self.bad(s, b"\x00QUIT")
        s.login("alice", PW)
        for line in (b"DELE 1\x00", b"DELE\x001", b"\x00DELE 1", b"DELE 1\x00 2",
                     b"QUIT\x00"):
            with self.subTest(line=line):
                self.bad(s, line)
        self.assertEqual(self.stat(s)[0], 3)
        self.assertRegex(s.cmd("LIST 1"), r"^\+OK 1 \d+$")
        self.quit_ok(s)
        self.assertEqual(box.snapshot(), before)

    def test_bare_lf_and_empty_lines(self):
        self.alice()
        s = self.e.session()
        s.send(b"USER alice\nPASS secret\nSTAT\n")
        self.assertOk(s.reply())
        self.assertRegex(s.reply(), RE_LOGIN)
        self.assertRegex(s.reply(), RE_STAT)
        s.send(b"\r\n")
        self.assertErr(s.reply())
        s.send(b"QUIT\n")
        self.assertOk(s.reply())
        s.expect_eof()
        self.assertEqual(s.wait(), 0)


# ====================================================================== pipelining

@each_kind
class Pipelining:

    def test_pipeline_from_user_to_quit(self):
        raws = simple_raws(3)
        box = self.alice(raws)
        s = self.e.session(read_greeting=False)
        s.send("USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\n"
               "DELE 1\r\nLIST 1\r\nRSET\r\nNOOP\r\nCAPA\r\nLIST 3\r\nDELE 3\r\nQUIT\r\n")
        self.assertOk(s.reply())                       # greeting
        self.assertOk(s.reply())                       # USER
        self.assertRegex(s.reply(), RE_LOGIN)          # PASS
        self.assertRegex(s.reply(), RE_STAT)
        self.assertOk(s.reply())
        self.assertEqual(len(s.multiline_lines()), 3)  # LIST
        self.assertOk(s.reply())
        self.assertEqual(len(s.multiline_lines()), 3)  # UIDL
        self.assertRegex(s.reply(), RE_RETR)
        self.assertEqual(s.multiline(), mb.delivered(raws[0]))
        self.assertOk(s.reply())
        self.assertEqual(s.multiline(), mb.top_expected(raws[1], 0))
        self.assertEqual(s.reply(), "+OK message 1 deleted")
        self.assertErr(s.reply())                      # LIST 1 (deleted)
        self.assertRegex(s.reply(), RE_LOGIN)          # RSET
        self.assertOk(s.reply())                       # NOOP
        self.assertOk(s.reply())
        self.assertEqual(sorted(s.multiline_lines()), sorted(CAPS))
        self.assertRegex(s.reply(), r"^\+OK 3 \d+$")
        self.assertEqual(s.reply(), "+OK message 3 deleted")
        self.assertOk(s.reply())                       # QUIT
        self.assertEqual(s.expect_eof(), b"")
        self.assertEqual(s.wait(), 0)
        self.assertRaws(box, raws[:2])

    def test_pipeline_failed_login_then_login(self):
        self.alice()
        s = self.e.session(read_greeting=False)
        s.send("USER alice\r\nPASS wrong\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n")
        self.assertOk(s.reply())
        self.assertOk(s.reply())
        self.assertErr(s.reply(), AUTH_ERR)
        self.assertOk(s.reply())
        self.assertRegex(s.reply(), RE_LOGIN)
        self.assertRegex(s.reply(), RE_STAT)
        self.assertOk(s.reply())
        s.expect_eof()

    def test_pipeline_many_commands(self):
        self.alice()
        s = self.login()
        n = 2000
        s.send_bg(b"NOOP\r\n" * n + b"LIST 2\r\n" + b"STAT\r\n" * n + b"QUIT\r\n")
        for i in range(n):
            self.assertEqual(s.reply(), "+OK", "reply %d" % i)
        self.assertRegex(s.reply(), r"^\+OK 2 \d+$")
        for i in range(n):
            self.assertRegex(s.reply(), RE_STAT)
        self.assertOk(s.reply())
        s.expect_eof()
        self.assertEqual(s.wait(), 0)

    def test_one_write_per_reply(self):
        if not shutil.which("strace"):
            self.skipTest("strace not installed")
        probe = subprocess.run(["strace", "-o", "/dev/null", "true"], capture_output=True,
                               timeout=10)
        if probe.returncode != 0:
            self.skipTest("strace cannot trace here")
        self.alice()
        log = os.path.join(self.e.dir, "strace.log")
        argv = ["strace", "-f", "-qq", "-e", "trace=write,writev,sendto,sendmsg,pwrite64",
                "-e", "signal=none", "-o", log] + self.e.args()
        p = self.e.popen(argv)
        s = Session(PipeTransport(p), proc=p)
        n_replies = 1
        for line in ("CAPA", "USER alice", "PASS secret", "LIST", "UIDL", "RETR 1",
                     "TOP 2 1", "STAT", "NOOP"):
            st = s.cmd(line)
            if line in ("CAPA", "LIST", "UIDL", "RETR 1", "TOP 2 1"):
                s.multiline()
            n_replies += 1
        interactive = n_replies
        # pipelined: all replies of one packet may come in fewer writes
        s.send("LIST\r\nUIDL\r\nSTAT\r\nNOOP\r\nLIST 1\r\n")
        s.reply(), s.multiline(), s.reply(), s.multiline(), s.reply(), s.reply(), s.reply()
        s.cmd("QUIT")
        s.expect_eof()
        p.wait(timeout=10)
        with open(log) as f:
            writes = [l for l in f if re.search(r"\b(write|writev|sendto|sendmsg)\(1,", l)]
        self.assertLessEqual(len(writes), interactive + 1 + 1,
                             "%d writes to fd 1 for %d interactive replies + 1 pipelined "
                             "batch + QUIT:\n%s" % (len(writes), interactive,
                                                    "".join(w[:100] + "\n" for w in writes)))

    def test_pipeline_big_retr_then_commands(self):
        raws = simple_raws(2) + [mb.big_message()]
        self.alice(raws)
        s = self.e.session(read_greeting=False)
        s.send("USER alice\r\nPASS secret\r\nRETR 3\r\nRETR 1\r\nRETR 3\r\nSTAT\r\nQUIT\r\n")
        s.reply()
        s.reply()
        self.assertRegex(s.reply(), RE_LOGIN)
        for i in (3, 1, 3):
            m = RE_RETR.match(s.reply())
            self.assertTrue(m)
            data = s.multiline()
            self.assertEqual(data, mb.delivered(raws[i - 1]))
            self.assertEqual(int(m.group(1)), len(data))
        self.assertRegex(s.reply(), RE_STAT)
        self.assertOk(s.reply())
        s.expect_eof()


# ====================================================================== locks, drops, timeouts

@each_kind
class Locks:

    def test_in_use_then_released_at_quit(self):
        raws = simple_raws(3)
        box = self.alice(raws)
        a = self.login()
        self.assertOk(a.cmd("DELE 1"))
        b = self.e.session()
        b.cmd("USER alice")
        t0 = time.monotonic()
        st = b.cmd("PASS " + PW)
        self.assertLess(time.monotonic() - t0, 3.0, "[IN-USE] must come at once")
        self.assertErr(st, "-ERR [IN-USE]")
        self.assertEqual(b.expect_eof(), b"")
        self.assertEqual(b.wait(), 1)
        # APOP is refused the same way
        c = self.e.session()
        st = c.cmd("APOP alice " + apop_digest(c.timestamp(), PW))
        self.assertErr(st, "-ERR [IN-USE]")
        c.expect_eof()
        self.quit_ok(a)
        d = self.login()             # at once, no waiting
        self.assertEqual(self.stat(d)[0], 2)
        self.quit_ok(d)
        self.assertRaws(box, raws[1:])

    def test_in_use_logged(self):
        self.alice()
        a = self.login()
        rc, out, err = self.e.run(b"USER alice\r\nPASS secret\r\nSTAT\r\n", extra=["-e"])
        self.assertIn(b"-ERR [IN-USE]", out)
        self.assertNotIn(b"+OK 3", out)
        self.assertEqual(rc, 1)
        self.assertRegex(err.decode("latin-1"), r"in-use user=alice rhost=local")
        self.quit_ok(a)

    def test_in_use_same_file_other_path_spelling(self):
        box = self.new_box("shared")
        box.write(simple_raws(2))
        self.e.add_user("u1", "{PLAIN}p1", mbox=box.path)
        self.e.add_user("u2", "{PLAIN}p2", mbox=box.other_spelling())
        self.e.write_userfile()
        a = self.e.session()
        a.login("u1", "p1")
        b = self.e.session()
        b.cmd("USER u2")
        self.assertErr(b.cmd("PASS p2"), "-ERR [IN-USE]")
        self.quit_ok(a)
        c = self.e.session()                 # and the other spelling gets in after QUIT
        c.login("u2", "p2")
        self.assertEqual(self.stat(c)[0], 2)
        self.quit_ok(c)

    def test_in_use_shared_maildrop_two_users(self):
        box = self.new_box("shared")
        box.write(simple_raws(2))
        self.e.add_user("u1", "{PLAIN}p1", mbox=box.path)
        self.e.add_user("u2", "{PLAIN}p2", mbox=box.path)
        self.e.write_userfile()
        a = self.e.session()
        a.login("u1", "p1")
        b = self.e.session()
        b.cmd("USER u2")
        self.assertErr(b.cmd("PASS p2"), "-ERR [IN-USE]")
        self.quit_ok(a)

    def test_kill9_leaves_no_lock(self):
        raws = simple_raws(3)
        box = self.alice(raws)
        before = box.snapshot()
        a = self.login()
        self.assertOk(a.cmd("DELE 1"))
        self.assertOk(a.cmd("DELE 2"))
        kill_session(a.proc)
        b = self.e.session()
        t0 = time.monotonic()
        b.login("alice", PW)
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertEqual(self.stat(b)[0], 3)
        self.quit_ok(b)
        self.assertEqual(box.snapshot(), before)

    def test_dropped_connection_deletes_nothing(self):
        raws = simple_raws(3)
        box = self.alice(raws)
        before = box.snapshot()
        a = self.login()
        self.assertEqual(self.retr(a, 2), mb.delivered(raws[1]))
        self.assertOk(a.cmd("DELE 1"))
        self.assertOk(a.cmd("DELE 3"))
        a.t.close_write()
        a.expect_eof()
        self.assertEqual(a.wait(), 1, "exit status after a dropped connection")
        self.assertEqual(box.snapshot(), before, "changed (deleted or renamed) without QUIT")
        b = self.login()
        self.assertEqual(self.stat(b)[0], 3)
        self.quit_ok(b)

    def test_dropped_during_big_retr_deletes_nothing(self):
        raws = simple_raws(2) + [mb.big_message()]
        box = self.alice(raws)
        before = box.snapshot()
        a = self.login()
        self.assertOk(a.cmd("DELE 1"))
        a.send("RETR 3\r\n")
        a.readline()
        a.t.close()                 # stop reading and go away mid-message
        a.proc.wait(timeout=10)
        self.assertNotEqual(a.proc.returncode, 0)
        self.assertEqual(box.snapshot(), before)
        b = self.login()
        self.assertEqual(self.stat(b)[0], 3)
        self.quit_ok(b)

    def test_idle_timeout_after_login_deletes_nothing(self):
        raws = simple_raws(3)
        box = self.alice(raws)
        before = box.snapshot()
        a = self.login(extra=["-t", "1"])
        self.assertOk(a.cmd("DELE 1"))
        t0 = time.monotonic()
        rest = a.expect_eof(timeout=8)
        dt = time.monotonic() - t0
        self.assertGreater(dt, 0.5)
        self.assertTrue(rest == b"" or (rest.startswith(b"-ERR") and rest.count(b"\r\n") == 1
                                        and rest.endswith(b"\r\n")), rest)
        self.assertEqual(a.wait(), 1)
        self.assertEqual(box.snapshot(), before)
        b = self.login()
        self.quit_ok(b)

    def test_idle_timeout_before_login(self):
        self.alice()
        a = self.e.session(["-T", "1", "-e"])
        a.cmd("USER alice")
        rest = a.expect_eof(timeout=8)
        self.assertTrue(rest == b"" or rest.startswith(b"-ERR"), rest)
        self.assertEqual(a.wait(), 1)
        self.assertRegex(a.proc.stderr.read().decode("latin-1"), r"timeout user=\S+ rhost=local")


# ====================================================================== sizes, content, UIDLs

@each_kind
class Content:
    """Sizes, RETR/TOP content and UIDL stability of tricky messages; the
    same messages in an mbox and in a Maildir (SPEC 3: the size rules are
    the same)."""

    def test_size_invariant_tricky_corpus(self):
        raws, seps = mb.tricky_corpus()
        box = self.alice(raws, seps=seps)
        self.assertEqual(box.messages(), raws, "test's own model")
        self.check_all(box, raws)

    def test_read_boundaries_in_messages(self):
        # awkward octets exactly around the 64 KiB (and 4 KiB) read boundaries,
        # counted from the start of the message and of the file
        raws = []
        for base in (4096, 65536, 131072):
            for d in range(-3, 4):
                for pat in (b"\r\n", b"\r\r\n", b"\n.dot\n", b"\rX\n", b"\n..\n",
                            b"\r\n.\r\n"):
                    head = b"Subject: boundary %d %d %r\n\n" % (base, d, pat)
                    fill = base + d - len(head) - 1
                    raws.append(head + b"a" * fill + b"\n" + pat + b"tail\n")
        box = self.alice(raws)
        self.check_all(box, raws)

    def test_top_tricky_corpus(self):
        raws, seps = mb.tricky_corpus()
        box = self.alice(raws, seps=seps)
        before = box.snapshot()
        s = self.login()
        for i, raw in enumerate(raws, 1):
            for k in (0, 1, 3, 100000):
                with self.subTest(msg=i, k=k):
                    st, data = s.cmd_multi("TOP %d %d" % (i, k))
                    self.assertOk(st)
                    want = mb.top_expected(raw, k)
                    if b"\n\n" not in raw and b"\n\r\n" not in raw:   # header only
                        self.assertIn(data, (want, want + b"\r\n"))
                    else:
                        self.assertTrue(data == want, "TOP %d %d: %r... vs %r..."
                                        % (i, k, data[:80], want[:80]))
        self.quit_ok(s)
        self.assertEqual(box.snapshot(), before, "TOP changed the maildrop (a Maildir "
                         "message must not be marked seen by TOP)")

    def test_uidl_syntax_unique_and_stable(self):
        raws, seps = mb.tricky_corpus(big=False)
        # appending to a file whose last line lacks its newline would change
        # that message: leave the "no final newline" message out here
        raws, seps = raws[:-1], seps[:-1]
        box = self.alice(raws, seps=seps)
        s = self.login()
        u1 = self.uidls(s)
        self.quit_ok(s)
        self.assertEqual(list(u1.values()), box.uidls())
        self.assertEqual(len(u1), len(raws))
        for i, u in u1.items():
            self.assertRegex(u, RE_UIDL, "UIDL %d" % i)
        self.assertEqual(len(set(u1.values())), len(u1), "UIDLs not unique")
        s = self.login()
        self.assertEqual(self.uidls(s), u1, "UIDLs differ between sessions")
        dele = {2, 5, 9}
        for i in dele:
            self.assertOk(s.cmd("DELE %d" % i))
        for i in (1, 3, 4):                 # a Maildir renames these (seen)
            self.retr(s, i)
        self.quit_ok(s)
        new = simple_raws(2, tag=b"new")
        box.deliver(new)
        s = self.login()
        u2 = self.uidls(s)
        self.quit_ok(s)
        kept = [u for i, u in sorted(u1.items()) if i not in dele]
        self.assertEqual([u2[i] for i in range(1, len(kept) + 1)], kept)
        self.assertEqual(len(u2), len(kept) + 2)
        self.assertEqual(len(set(u2.values())), len(u2))
        self.assertEqual(list(u2.values()), box.uidls())
        for u in u2.values():
            self.assertRegex(u, RE_UIDL)
        s = self.login()
        self.assertEqual(self.uidls(s), u2)
        self.quit_ok(s)

    def test_append_during_session_survives_update(self):
        raws = simple_raws(4)
        box = self.alice(raws)
        ident = box.ident()
        s = self.login()
        new = simple_raws(2, tag=b"late")
        box.deliver(new[:1])
        self.assertEqual(self.stat(s)[0], 4, "message list frozen at login")
        self.assertErr(s.cmd("LIST 5"))
        self.assertOk(s.cmd("DELE 1"))
        self.assertOk(s.cmd("DELE 3"))
        box.deliver(new[1:])
        self.quit_ok(s)
        self.assertEqual(box.ident(), ident, "maildrop inode, owner or mode changed")
        self.assertRaws(box, [raws[1], raws[3]] + new)
        s = self.login()
        self.assertEqual(self.retr(s, 3), mb.delivered(new[0]))
        self.assertEqual(self.retr(s, 4), mb.delivered(new[1]))
        self.quit_ok(s)

    def habit(self, one_by_one):
        raws, seps = mb.tricky_corpus(big=False)
        box = self.alice(raws, seps=seps)
        ident = box.ident()
        late = simple_raws(1, tag=b"late")
        s = self.login()
        n, _ = self.stat(s)
        sizes = self.list_sizes(s)
        if one_by_one:
            for i in range(1, n + 1):
                data = self.retr(s, i)
                self.assertEqual(data, mb.delivered(raws[i - 1]))
                self.assertEqual(len(data), sizes[i])
                self.assertEqual(s.cmd("DELE %d" % i), "+OK message %d deleted" % i)
                if i == 3:
                    box.deliver(late)
        else:
            for i in range(1, n + 1):
                data = self.retr(s, i)
                self.assertEqual(data, mb.delivered(raws[i - 1]))
            box.deliver(late)
            for i in range(1, n + 1):
                self.assertEqual(s.cmd("DELE %d" % i), "+OK message %d deleted" % i)
        self.assertEqual(self.stat(s), (0, 0))
        self.quit_ok(s)
        self.assertRaws(box, late)
        self.assertEqual(box.ident(), ident)
        s = self.login()
        self.assertEqual(self.stat(s)[0], 1)
        self.assertEqual(self.retr(s, 1), mb.delivered(late[0]))
        self.quit_ok(s)

    def test_habit_retr_dele_one_by_one(self):
        self.habit(True)

    def test_habit_retr_all_then_dele_all(self):
        self.habit(False)


# ====================================================================== mbox: UIDL, outside changes

class Mbox(Base):

    def test_read_boundaries_between_messages(self):
        path = self.alice(raws=False)
        for base in (4096, 65536):
            for d in range(-7, 8):
                for sep in (b"\n", b"\r\n"):
                    with self.subTest(base=base, d=d, sep=sep):
                        first = b"Subject: first\n\n"
                        # the second From_ line starts at file offset base + d
                        fill = base + d - len(mb.FROM_LINE) - len(first) - 1 - len(sep)
                        r1 = first + b"b" * fill + b"\n"
                        r2 = mb.message(b"second", b".x\n")
                        self.e.write_mbox(path, mb.build_mbox([r1, r2], seps=[sep, b"\n"]))
                        self.assertEqual(self.e.read(path).index(b"From ", 5), base + d)
                        self.check_all(MboxBox(self.e, "alice"), [r1, r2])

    def test_uidl_expected_values(self):
        raws = [
            mb.message(b"u1", b"body one\n", headers=(
                b"Date: Thu, 27 Nov 2025 10:00:00 +0000",
                b"Received: from a.example.org (a [192.0.2.1])\n\tby mx.example.org; "
                b"Thu, 27 Nov 2025 10:00:01 +0000",
                b"Received: from b by c; Thu, 27 Nov 2025 09:59:00 +0000",
                b"Message-ID: <after-received@example.org>",
                b"Delivered-To: alice@example.org",
                b"X-Delivery-ID: 4711")),
            mb.message(b"u2", b"body two\nline\n", headers=(
                b"Message-ID: <no-received@example.org>",
                b"Date: Thu, 27 Nov 2025 11:00:00 +0000")),
            mb.message(b"u3", b"x\n", headers=(
                b"RECEIVED: from upper by case; Thu, 27 Nov 2025 12:00:00 +0000",
                b"delivered-to: lower@example.org",
                b"Date: Thu, 27 Nov 2025 12:00:05 +0000",
                b"Status: RO", b"X-Status: A", b"X-UID: 7", b"Content-Length: 2")),
            mb.message(b"u4 no selected headers", b"thirteen chr\n"),
            mb.message(b"u5", b"", headers=(b"Received: x",)),
        ]
        self.alice(raws)
        want = mb.expected_uidls(raws)
        s = self.login()
        got = self.uidls(s)
        for i, w in enumerate(want, 1):
            with self.subTest(msg=i):
                self.assertEqual(got[i], w, "UIDL of message %d; digest input %r"
                                 % (i, mb.uidl_source(raws[i - 1])))
        self.quit_ok(s)

    def test_uidl_duplicates(self):
        a = simple_raws(1, tag=b"dup")[0]
        b = simple_raws(2, tag=b"other")[1]
        raws = [a, b, a, a]
        self.alice(raws)
        s = self.login()
        u = self.uidls(s)
        base = u[1]
        self.assertEqual(u[3], base + "-2")
        self.assertEqual(u[4], base + "-3")
        self.assertNotEqual(u[2], base)
        self.assertEqual(list(u.values()), mb.expected_uidls(raws))
        self.assertEqual(s.cmd("UIDL 4"), "+OK 4 %s-3" % base)
        self.quit_ok(s)
        s = self.login()
        self.assertEqual(self.uidls(s), u)
        self.quit_ok(s)

    def test_uidl_unchanged_by_status_headers(self):
        raws = simple_raws(4)
        path = self.alice(raws)
        s = self.login()
        u1 = self.uidls(s)
        self.quit_ok(s)
        rewritten = []
        for i, r in enumerate(raws):
            hdr, _, body = r.partition(b"\n\n")
            extra = [b"Status: RO\n", b"X-Status: AF\n", b"X-Keywords: $Label1\n",
                     b"X-UID: %d\n" % (i + 1), b"Content-Length: %d\n" % len(body),
                     b"Lines: %d\n" % body.count(b"\n")]
            if i % 2:
                r2 = hdr + b"\n" + b"".join(extra) + b"\n" + body
            else:
                r2 = b"".join(extra[:3]) + hdr + b"\n\n" + body
            rewritten.append(r2)
        self.e.write_mbox(path, mb.build_mbox(rewritten))
        s = self.login()
        self.assertEqual(self.uidls(s), u1)
        self.quit_ok(s)

    def rewrite_during_session(self, s, path, raws):
        """Another program rewrites the mbox (not an append) while the
        session runs: a Status: header is added to message 1."""
        changed = [b"Status: RO\n" + raws[0]] + raws[1:]
        data = mb.build_mbox(changed)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, 0)            # in place, like a mail reader would
        finally:
            os.close(fd)
        self.assertEqual(self.e.read(path), data)
        return changed

    def test_rewrite_during_session_no_stale_retr(self):
        raws = simple_raws(3)
        path = self.alice(raws)
        s = self.login()
        self.rewrite_during_session(s, path, raws)
        st = s.cmd("RETR 2")
        if st.startswith("-ERR"):
            self.assertErr(st, "-ERR [SYS/TEMP]")
            return
        try:
            data = s.multiline()
        except EOFError:
            return                          # ended without ".": acceptable
        self.assertEqual(data, mb.delivered(raws[1]),
                         "RETR 2 after a concurrent rewrite sent other data")

    def test_rewrite_during_session_no_corruption(self):
        raws = simple_raws(3)
        path = self.alice(raws)
        s = self.login()
        self.assertOk(s.cmd("DELE 2"))
        changed = self.rewrite_during_session(s, path, raws)
        st = s.cmd("QUIT")
        s.expect_eof()
        after = self.e.read(path)
        if st.startswith("-ERR"):
            self.assertErr(st, "-ERR [SYS/TEMP]")
            self.assertEqual(after, mb.build_mbox(changed), "nothing may be deleted")
        else:
            self.assertEqual([m.raw for m in mb.split_mbox(after)],
                             [changed[0], changed[2]], "mbox corrupted by the update")

    def test_truncated_during_session(self):
        raws = simple_raws(3)
        path = self.alice(raws)
        s = self.login()
        self.assertOk(s.cmd("DELE 1"))
        self.e.write_mbox(path, mb.build_mbox(raws[2:]))   # shrank: not an append
        shrunk = self.e.read(path)
        st = s.cmd("QUIT")
        s.expect_eof()
        self.assertErr(st, "-ERR [SYS/TEMP]")
        self.assertEqual(self.e.read(path), shrunk)

    def test_uidl_depends_on_the_message_alone(self):
        """Issue 16 (1): messages that the old digest could not tell apart -
        header-less mail of equal body length, two relays in one second with
        the same Received line and equal body length - get different UIDLs,
        and a message keeps its UIDL when the one before it is deleted."""
        recv = b"Received: by mx.example.org with SMTP; Thu, 27 Nov 2025 12:00:00 +0000"
        raws = [
            b"\nDisk usage 81%\n",
            b"\nDisk usage 82%\n",
            mb.message(b"relay a", b"abc\n", headers=(recv,)),
            mb.message(b"relay b", b"abd\n", headers=(recv,)),
            simple_raws(1)[0],
        ]
        path = self.alice(raws)
        s = self.login()
        u = self.uidls(s)
        self.assertEqual(len(set(u.values())), 5, "different messages share a UIDL: %r" % u)
        self.assertTrue(all("-" not in v for v in u.values()), u)
        self.assertEqual(list(u.values()), mb.expected_uidls(raws))
        self.assertOk(s.cmd("DELE 1"))
        self.assertOk(s.cmd("DELE 3"))
        self.quit_ok(s)
        s = self.login()
        self.assertEqual(self.uidls(s), {1: u[2], 2: u[4], 3: u[5]},
                         "a UIDL changed because another message was deleted")
        self.quit_ok(s)
        self.assertEqual([m.raw for m in mb.split_mbox(self.e.read(path))],
                         [raws[1], raws[3], raws[4]])

    def test_byte_identical_copies_numbered_by_order(self):
        """Only byte-identical copies share a digest: the second and later get
        -2, -3 by order, and when the first goes, the next takes its UIDL."""
        a = simple_raws(1, tag=b"copy")[0]
        b = simple_raws(2, tag=b"other")[1]
        self.alice([a, b, a])
        s = self.login()
        u = self.uidls(s)
        self.assertEqual(u[3], u[1] + "-2")
        self.assertOk(s.cmd("DELE 1"))
        self.quit_ok(s)
        s = self.login()
        self.assertEqual(self.uidls(s), {1: u[2], 2: u[1]})
        self.quit_ok(s)

    def edit_in_place(self, path, edits, keep_mtime=False):
        """Another program changes octets in place: {offset: new octet}."""
        st = os.stat(path)
        fd = os.open(path, os.O_WRONLY)
        try:
            for off, val in edits.items():
                os.pwrite(fd, bytes([val]), off)
        finally:
            os.close(fd)
        if keep_mtime:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.assertEqual(os.stat(path).st_size, st.st_size)

    def assert_update_refused(self, s, path):
        edited = self.e.read(path)
        st = s.cmd("QUIT")
        s.expect_eof()
        self.assertErr(st, "-ERR [SYS/TEMP]")
        self.assertEqual(self.e.read(path), edited, "the update cut at stale offsets")

    def test_change_check_not_fooled_by_cancelling_edits(self):
        """Issue 16 (2): the old fingerprint was plain per-lane sums: octets
        changed by +1, -2, +1 at 256-octet steps cancelled out.  Here the
        first of them turns the separator before message 3 into text, so
        message 3 joins message 2; DELE 3 must then be refused, not cut at
        the loaded offsets."""
        raws = [simple_raws(1, b"one")[0], simple_raws(1, b"two")[0],
                mb.message(b"three", (b"b" * 70 + b"\n") * 12)]
        path = self.alice(raws)
        data = self.e.read(path)
        sep = data.index(b"\nFrom ", data.index(b"\nFrom ") + 1)  # separator before 3
        p = sep
        self.assertEqual(data[p:p + 1], b"\n")
        for k in (256, 512):
            self.assertEqual(data[p + k:p + k + 1], b"b", "layout")
        s = self.login()
        self.assertOk(s.cmd("DELE 3"))
        self.edit_in_place(path, {p: 0x0B, p + 256: ord("`"), p + 512: ord("c")})
        self.assert_update_refused(s, path)

    def test_change_check_done_whatever_size_and_mtime_say(self):
        """Issue 16 (3): one octet changed in place and the mtime put back
        (rsync --inplace -t, touch -r): the update must still notice."""
        raws = simple_raws(3)
        path = self.alice(raws)
        data = self.e.read(path)
        k = data.index(b"From ", 1) - 1             # the separator before message 2
        s = self.login()
        self.assertOk(s.cmd("DELE 3"))
        self.edit_in_place(path, {k: ord("x")}, keep_mtime=True)
        self.assert_update_refused(s, path)

    def test_rewritten_mbox_between_sessions(self):
        # a changed (not appended) mbox between sessions is simply re-read
        raws = simple_raws(3)
        path = self.alice(raws)
        s = self.login()
        self.quit_ok(s)
        self.e.write_mbox(path, mb.build_mbox(raws[1:]))
        s = self.login()
        self.assertEqual(self.stat(s)[0], 2)
        self.assertEqual(self.retr(s, 1), mb.delivered(raws[1]))
        self.quit_ok(s)


# ====================================================================== Maildir (issue 3)

def seen_name(name):
    """Model: the name a message gets once RETRieved: cur/, info ":2," and
    the flags with S added, all in ASCII order."""
    u, _, info = name.partition(":")
    flags = info[2:] if info.startswith("2,") else ""
    return u + ":2," + "".join(sorted(set(flags) | {"S"}))


class Maildir(Base):
    """Maildir behaviour (issue 3, points 1-7) on real files named the way
    delivery agents name them.  Unlink failures at QUIT ([SYS/TEMP] naming
    how many) are covered by tests/faults.py (maildir_unlink_eio,
    maildir_cur_read_only)."""

    def new_maildir(self, name="alice", path=None, user=None):
        """An empty Maildir (new/ cur/ tmp/) of user (default: name)."""
        if path is None:
            path = os.path.join(self.e.maildir, name + ".Maildir") + "/"
        ids = (self.e.uid, self.e.gid) if IS_ROOT else (None, None)
        box = md.Maildir(path, *ids).create()
        self.e.add_user(user or name, "{PLAIN}" + PW, mbox=path)
        self.e.write_userfile()
        return box

    def msg(self, tag):
        return mb.message(b"%s" % tag.encode(), b"body of %s\n.dot\n" % tag.encode(),
                          headers=(b"Message-ID: <%s@example.org>" % tag.encode(),))

    def check_session(self, box, s=None):
        """STAT, LIST, UIDL and RETR of every message are what the model
        says for the files in box."""
        msgs = box.ordered()
        s = s or self.login()
        sizes = [md.pop3_size(n, d) for _, n, d in msgs]
        self.assertEqual(self.stat(s), (len(msgs), sum(sizes)))
        self.assertEqual(self.list_sizes(s), dict(enumerate(sizes, 1)))
        self.assertEqual(self.uidls(s), {i: md.uidl(n) for i, (_, n, _) in
                                         enumerate(msgs, 1)})
        return s

    # ---- issue 16: twins, sizes and names of other MDAs

    def test_twins_listed_apart_and_never_swapped(self):
        """Issue 16 (4): a unique name in both new/ and cur/ (two files):
        both are listed, with different UIDLs; when another program removes
        one, it is gone: RETR and DELE never reach the other file."""
        box = self.new_maildir()
        T = md.BASE_TIME
        uniq = "%d.M1P1.host" % T
        a, b = self.msg("twin-cur"), self.msg("twin-new")
        box.put("cur", uniq + ":2,S", a)
        box.put("new", uniq, b)
        box.put("new", "%d.M2P2.host" % (T + 1), self.msg("other"))
        if os.stat(box.file("cur", uniq + ":2,S")).st_ino > os.stat(box.file("new", uniq)).st_ino:
            self.skipTest("the file system gave the later file the lower inode")
        s = self.login()
        self.assertEqual(self.stat(s)[0], 3)
        u = self.uidls(s)
        self.assertEqual(u[1], uniq)
        self.assertNotEqual(u[2], uniq)
        self.assertEqual(self.retr(s, 1), mb.delivered(a))
        self.assertEqual(self.retr(s, 2), mb.delivered(b))
        os.unlink(box.file("cur", uniq + ":2,S"))           # another program
        st = s.cmd("RETR 1")
        self.assertTrue(st.startswith("-ERR") and "removed" in st, st)
        self.assertOk(s.cmd("DELE 1"))
        self.quit_ok(s)
        # the new/ twin, RETRieved, is now cur/<uniq>:2,S; not removed
        self.assertEqual(self.e.read(box.file("cur", uniq + ":2,S")), b,
                         "DELE 1 removed the other file of the same unique name")
        s = self.login()
        self.assertEqual(self.uidls(s), {1: uniq, 2: "%d.M2P2.host" % (T + 1)})
        self.quit_ok(s)

    def test_twins_keep_their_uidls_across_a_rename(self):
        """The second review: which twin is first (and has the unique name as
        its UIDL) must not depend on where it is or its flags: when another
        program moves the new/ twin to cur/ (new/x -> cur/x:2,), each
        message keeps its UIDL, so a client never deletes one for the
        other. Both orders of the two files' inodes are tried."""
        box = self.new_maildir()
        uniq = "%d.M7P7.host" % md.BASE_TIME
        names = {"new": uniq, "cur": uniq + ":2,S"}

        def uidl_by_subject():
            s = self.login()
            got = {}
            for n, u in self.uidls(s).items():
                st, head = s.cmd_multi("TOP %d 0" % n)      # TOP sets no flag
                got[[h for h in head.split(b"\r\n") if h.startswith(b"Subject:")][0]] = u
            self.quit_ok(s)
            return got
        for first_in in ("new", "cur"):
            for sub in ("new", "cur"):
                for f in os.listdir(os.path.join(box.path, sub)):
                    os.unlink(os.path.join(box.path, sub, f))
            other = "cur" if first_in == "new" else "new"
            box.put(first_in, names[first_in], self.msg("made first, in " + first_in))
            box.put(other, names[other], self.msg("made second, in " + other))
            before = uidl_by_subject()
            self.assertEqual(len(set(before.values())), 2, before)
            os.rename(box.file("new", uniq), box.file("cur", uniq + ":2,"))   # an IMAP server
            self.assertEqual(uidl_by_subject(), before,
                             "twins swapped UIDLs (the first made in %s/)" % first_in)

    def test_list_equals_what_retr_sends(self):
        """Issue 16 (5a): Dovecot's W= counts no final newline, which pop3d
        supplies: LIST must still be what RETR sends."""
        box = self.new_maildir()
        raw = b"Subject: x\n\nno final newline"
        name = md.dovecot_cur(md.BASE_TIME, 1, 1, raw, "S")
        self.assertIn(",W=%d:" % (len(mb.delivered(raw)) - 2), name)
        box.put("cur", name, raw)
        s = self.login()
        size = self.list_sizes(s)[1]
        st, data = s.cmd_multi("RETR 1")
        self.assertEqual(st, "+OK %d octets" % size)
        self.assertEqual(len(data), size)
        self.assertEqual(data, mb.delivered(raw))
        self.quit_ok(s)

    def test_info_separators_of_other_mdas(self):
        """Issue 16 (5b): mbsync and others separate the info with ";" or "!"
        ("name;2,S"): the flags are not part of the UIDL, and the Seen flag
        is added after the name's own separator, once."""
        box = self.new_maildir()
        T = md.BASE_TIME
        names = ["%d.M1P1.host;2,F" % T, "%d.M2P2.host!2," % (T + 1),
                 "%d.M3P3.host;x" % (T + 2)]
        for n in names:
            box.put("cur", n, self.msg(n))
        s = self.login()
        u = self.uidls(s)
        self.assertEqual(u, {1: "%d.M1P1.host" % T, 2: "%d.M2P2.host" % (T + 1),
                             3: "%d.M3P3.host;x" % (T + 2)})
        for i in (1, 2, 3):
            self.retr(s, i)
        self.quit_ok(s)
        self.assertEqual(sorted(box.listing("cur")),
                         sorted(["%d.M1P1.host;2,FS" % T, "%d.M2P2.host!2,S" % (T + 1),
                                 "%d.M3P3.host;x:2,S" % (T + 2)]))
        s = self.login()
        self.assertEqual(self.uidls(s), u, "a UIDL changed with the flags")
        self.quit_ok(s)

    # ---- 1. what a Maildir is, what is in it

    def test_kind_trailing_slash_or_directory(self):
        box = self.new_maildir()
        raws = simple_raws(3)
        names = box.write(raws)
        nosl = box.root                       # a directory, no "/": a Maildir too
        self.e.add_user("bob", "{PLAIN}" + PW, mbox=nosl)
        self.e.write_userfile()
        for user in ("alice", "bob"):
            with self.subTest(user=user):
                s = self.login(user)
                self.check_session(box, s)
                self.assertEqual(self.uidls(s)[1], md.unique(names[0][1]))
                self.assertEqual(self.retr(s, 2), mb.delivered(raws[1]))
                self.quit_ok(s)
        # a regular file (an mbox) named with a trailing "/" is no maildrop
        mbox = self.e.mbox_path("carol")
        self.e.write_mbox(mbox, mb.build_mbox(simple_raws(2)))
        self.e.add_user("carol", "{PLAIN}" + PW, mbox=mbox + "/")
        self.e.write_userfile()
        s = self.e.session()
        s.cmd("USER carol")
        self.assertErr(s.cmd("PASS " + PW))

    def test_missing_maildir_is_empty_and_not_created(self):
        path = os.path.join(self.e.maildir, "nothing.Maildir") + "/"
        self.e.add_user("alice", "{PLAIN}" + PW, mbox=path)
        self.e.write_userfile()
        before = sorted(os.listdir(self.e.maildir))
        for _ in range(2):
            s = self.login()
            self.assertEqual(self.stat(s), (0, 0))
            st, lines = s.cmd_lines("UIDL")
            self.assertEqual(lines, [])
            self.bad(s, "RETR 1")
            self.quit_ok(s)
            self.assertFalse(os.path.lexists(path), "pop3d created the Maildir")
            self.assertEqual(sorted(os.listdir(self.e.maildir)), before)

    def test_tmp_and_dot_files_never_shown(self):
        box = self.new_maildir()
        raws = simple_raws(2)
        box.write(raws)
        t = md.BASE_TIME - 5000                # older than the messages: would sort first
        hidden = {
            ("tmp", md.dovecot_new(t, 1, 1)): self.msg("tmp1"),
            ("tmp", md.postfix(t, 1, 2, 3)): self.msg("tmp2"),
            ("tmp", md.dovecot_cur(t, 4, 4, self.msg("tmp3"))): self.msg("tmp3"),
            ("new", "." + md.dovecot_new(t, 2, 2)): self.msg("dot-new"),
            ("cur", "." + md.dovecot_new(t, 3, 3) + ":2,S"): self.msg("dot-cur"),
            ("cur", ".nfs000000000012345600000001"): self.msg("nfs"),
            ("new", ".x"): self.msg("dotx"),
        }
        for (sub, name), data in hidden.items():
            p = box.file(sub, name)
            self.e.write_mbox(p, data)
        s = self.login()
        self.check_session(box, s)
        self.assertEqual(self.stat(s)[0], 2)
        for i in (1, 2):
            self.assertEqual(self.retr(s, i), mb.delivered(raws[i - 1]))
            self.assertOk(s.cmd("DELE %d" % i))
        self.quit_ok(s)
        self.assertEqual(box.messages(), [])
        for (sub, name), data in hidden.items():
            self.assertEqual(self.e.read(box.file(sub, name)), data, "%s/%s touched"
                             % (sub, name))
        self.assertEqual(sorted(box.listing("tmp")),
                         sorted(n for (sub, n) in hidden if sub == "tmp"))

    # ---- 2. order

    def test_order_by_delivery_time_then_unique_name(self):
        box = self.new_maildir()
        T = md.BASE_TIME
        first = self.msg("order 0")
        files = [   # (sub, name); created in this order, mtimes all reversed
            ("cur", md.dovecot_cur(T, 9, 77, first, "S")),
            ("new", "999999999.M5P5.old.example.org"),             # 9 digits: earliest
            ("new", md.postfix(T, 0x801, 0xabc, 1)),                # ".V" after ".M"
            ("new", md.dovecot_new(T, 10, 77)),                     # "M10" before "M9"
            ("cur", md.qmail_classic(T + 1, 4242) + ":2,FR"),
            ("new", md.dovecot_new(T - 1, 999999, 1)),
            ("cur", "1000000000.M1P1.host:2,"),                    # 10 digits, numerically
            ("new", md.qmail_classic(T, 4242)),                     # ".4" before ".M"
        ]
        datas = {}
        for k, (sub, name) in enumerate(files):
            datas[name] = self.msg("order %d" % k)
            box.put(sub, name, datas[name], mtime=T + 10000 - k * 100)
        self.assertEqual(datas[files[0][1]], first)
        want = sorted((n for _, n in files), key=md.order_key)
        # the test must discriminate: neither creation, mtime nor plain
        # string order is the expected order
        self.assertNotEqual(want, [n for _, n in files])
        self.assertNotEqual(want, [n for _, n in reversed(files)])
        self.assertNotEqual(want, sorted(n for _, n in files))
        self.assertEqual(want[:2], ["999999999.M5P5.old.example.org",
                                    "1000000000.M1P1.host:2,"])
        for _ in range(2):
            s = self.check_session(box)
            for i, n in enumerate(want, 1):
                self.assertEqual(self.retr(s, i), mb.delivered(datas[n]), "message %d" % i)
            self.quit_ok(s)                  # RETR renamed the new/ ones: same order
        self.assertEqual([md.unique(n) for _, n, _ in box.ordered()],
                         [md.unique(n) for n in want])

    # ---- 3. sizes

    def test_sizes_w_trusted_s_never(self):
        """W= gives the size (plus the CR LF pop3d supplies when the file has
        no final newline: Dovecot's W= counts none); S= never does; a W= that
        is not the file's size is listed but never sent under it."""
        box = self.new_maildir()
        T = md.BASE_TIME
        lf = mb.message(b"lf", b"line\n" * 10)
        crlf = b"Subject: crlf\r\n\r\nline\r\n.dot\r\nlone\rcr\r\nno final newline"
        files = [
            # Dovecot: S= stored (LF) size, W= CRLF size: LIST gives W
            ("cur", md.dovecot_cur(T, 1, 1, lf, "S"), lf),
            # W= deliberately not the file's size: listed, RETR refused
            ("cur", md.dovecot_cur(T + 1, 2, 2, lf, "", vsize=4321), lf),
            # only S= (wrong, and equal to nothing POP3 sends): counted
            ("new", "%d.M3P3.host,S=7" % (T + 2), crlf),
            # S= after W=, in new/, no final newline: W= + 2
            ("new", "%d.M4P4.host,W=%d,S=1" % (T + 3, md.dovecot_vsize(crlf)), crlf),
            # no fields at all: counted (stored CRLF not doubled, newline supplied)
            ("new", md.postfix(T + 4, 5, 5, 5), crlf),
        ]
        for sub, name, data in files:
            box.put(sub, name, data)
        want = [4321 if ",W=4321" in n else len(mb.delivered(d)) for _, n, d in files]
        self.assertEqual(want[0], len(lf) + 12, "model: W of LF lines")
        self.assertNotEqual(len(lf), want[0])
        self.assertEqual(md.dovecot_vsize(crlf) + 2, want[3], "model: no final newline")
        self.assertEqual([md.pop3_size(n, d) for _, n, d in files], want, "model")
        s = self.login()
        self.assertEqual(self.stat(s), (5, sum(want)))
        self.assertEqual(self.list_sizes(s), dict(enumerate(want, 1)))
        for i, (_, n, d) in enumerate(files, 1):
            self.assertEqual(s.cmd("LIST %d" % i), "+OK %d %d" % (i, want[i - 1]))
            st, data = s.cmd_multi("RETR %d" % i)
            if i == 2:
                self.assertTrue(st.startswith("-ERR [SYS/TEMP]"), st)
                continue
            self.assertEqual(st, "+OK %d octets" % want[i - 1])
            self.assertEqual(data, mb.delivered(d), "content of message %d" % i)
        self.quit_ok(s)

    # ---- 4. UIDL

    def test_uidl_unique_name_or_md5(self):
        box = self.new_maildir()
        T = md.BASE_TIME
        n70 = "%d.M1P1." % T
        n70 += "h" * (70 - len(n70))
        n71 = "%d.M2P2." % T
        n71 += "h" * (71 - len(n71))
        names = [
            md.dovecot_cur(T, 3, 3, self.msg("uidl 0"), "FS"),     # S=,W= are in the UIDL
            md.postfix(T, 0x801, 0x1234, 5),
            n70,                                                   # 70 octets: as it is
            n71,                                                   # 71: MD5
            "%d.M6P6.~!host" % T,                                  # 0x7E, 0x21: as is
            "%d.M7P7.my host" % T,                                 # space: MD5
            "%d.M8P8.h\x7fst" % T,                                 # DEL: MD5
            "%d.M9P9.h\udce9st" % T,                               # octet 0xE9: MD5
            "%d.M10P10.%s" % (T, "x" * 200),                       # long: MD5
        ]
        self.assertEqual(len(md.octets(n70)), 70)
        self.assertEqual(len(md.octets(n71)), 71)
        datas = {}
        for k, n in enumerate(names):
            datas[n] = self.msg("uidl %d" % k)
            box.put("cur" if ":" in n else "new", n, datas[n])
        order = sorted(names, key=md.order_key)
        want = [md.uidl(n) for n in order]
        self.assertEqual(want[order.index(n70)], n70)
        self.assertEqual(want[order.index(n71)], hashlib.md5(n71.encode()).hexdigest())
        self.assertEqual(want[order.index(names[7])],
                         hashlib.md5(b"%d.M9P9.h\xe9st" % T).hexdigest())
        self.assertEqual(want[order.index(names[0])], md.unique(names[0]))
        self.assertEqual(len(set(want)), len(want))
        s = self.login()
        self.assertEqual(self.uidls(s), dict(enumerate(want, 1)))
        for i, u in enumerate(want, 1):
            self.assertEqual(s.cmd("UIDL %d" % i), "+OK %d %s" % (i, u))
            self.assertEqual(self.retr(s, i), mb.delivered(datas[order[i - 1]]))
        self.assertOk(s.cmd("DELE %d" % (order.index(names[7]) + 1)))
        self.quit_ok(s)
        # RETR moved/renamed the files; the UIDLs stay (qmail-pop3d and
        # Dovecot %f users re-download nothing)
        self.assertNotIn(md.unique(names[7]), box.state(), "DELE of a 0xE9 name")
        s = self.login()
        kept = [u for n, u in zip(order, want) if n != names[7]]
        self.assertEqual(self.uidls(s), dict(enumerate(kept, 1)))
        self.quit_ok(s)

    # ---- 5. session lock

    def test_session_lock_inside_maildir(self):
        # a virtual user who owns only the Maildir: its parent is not his
        parent = os.path.join(self.e.dir, "virtual")
        os.mkdir(parent)
        path = os.path.join(parent, "alice") + "/"
        box = self.new_maildir(path=path)
        raws = simple_raws(3)
        box.write(raws)
        os.chmod(parent, 0o555)
        self.addCleanup(os.chmod, parent, 0o755)
        before = box.snapshot()
        a = self.login()
        lock = os.path.join(box.root, "pop3d.lock")
        self.assertTrue(os.path.exists(lock), "no pop3d.lock inside the Maildir")
        if IS_ROOT:
            self.assertEqual(os.stat(lock).st_uid, TEST_UID, "lock taken as the user")
        self.assertEqual(self.stat(a)[0], 3, "the lock file is no message")
        self.assertOk(a.cmd("DELE 1"))
        for how in ("USER", "APOP"):
            b = self.e.session()
            if how == "USER":
                b.cmd("USER alice")
                t0 = time.monotonic()
                st = b.cmd("PASS " + PW)
            else:
                t0 = time.monotonic()
                st = b.cmd("APOP alice " + apop_digest(b.timestamp(), PW))
            self.assertLess(time.monotonic() - t0, 3.0, "[IN-USE] must come at once")
            self.assertErr(st, "-ERR [IN-USE]")
            self.assertEqual(b.expect_eof(), b"")
        self.assertEqual([n for n in os.listdir(self.e.lockdir) if n.endswith(".lock")], [],
                         "a Maildir's lock is not in the lock directory")
        # kill -9 of the whole session: no stale lock, nothing changed
        kill_session(a.proc)
        self.assertEqual(box.snapshot(), before)
        c = self.e.session()
        t0 = time.monotonic()
        c.login("alice", PW)
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertEqual(self.stat(c)[0], 3)
        self.assertEqual(self.retr(c, 2), mb.delivered(raws[1]))
        self.assertOk(c.cmd("DELE 3"))
        self.quit_ok(c)                     # updates work without the parent's help
        self.assertRaws(box, raws[:2])
        d = self.login()                    # lock released at QUIT
        self.quit_ok(d)

    # ---- 6. UPDATE

    def test_update_unlinks_and_marks_seen(self):
        box = self.new_maildir()
        T = md.BASE_TIME
        files = [   # (sub, name, what the client does)
            ("new", md.dovecot_new(T + 1, 1, 1), "RETR"),
            ("new", md.postfix(T + 2, 2, 2, 2), "TOP"),
            ("cur", md.dovecot_cur(T + 3, 3, 3, self.msg("update 2"), "FR"), "RETR"),
            ("cur", md.postfix(T + 4, 4, 4, 4) + ":2,", "RETR"),
            ("cur", md.dovecot_new(T + 5, 5, 5) + ":2,S", "RETR"),
            ("cur", md.dovecot_new(T + 6, 6, 6) + ":2,T", "RETR"),
            ("cur", md.dovecot_new(T + 7, 7, 7) + ":2,Fab", "RETR"),  # Dovecot keywords
            ("new", md.dovecot_new(T + 8, 8, 8), "DELE"),
            ("cur", md.dovecot_new(T + 9, 9, 9) + ":2,FR", "DELE"),
            ("new", md.postfix(T + 10, 10, 10, 10), "RETR DELE"),
            ("cur", md.dovecot_new(T + 11, 11, 11), "RETR"),          # cur/ without info
            ("new", md.qmail_classic(T + 12, 12), ""),
            ("cur", md.dovecot_new(T + 13, 13, 13) + ":2,DFRT", "RETR"),
            ("cur", md.dovecot_new(T + 14, 14, 14) + ":2,R", "TOP LIST"),
        ]
        datas = {}
        for k, (sub, name, _) in enumerate(files):
            datas[md.unique(name)] = self.msg("update %d" % k)
            box.put(sub, name, datas[md.unique(name)])
        s = self.check_session(box)
        for i, (sub, name, act) in enumerate(files, 1):
            if "TOP" in act:
                st, data = s.cmd_multi("TOP %d 1" % i)
                self.assertEqual(data, mb.top_expected(datas[md.unique(name)], 1))
            if "RETR" in act:
                self.assertEqual(self.retr(s, i), mb.delivered(datas[md.unique(name)]))
            if "DELE" in act:
                self.assertOk(s.cmd("DELE %d" % i))
        self.quit_ok(s)
        want = {}
        for sub, name, act in files:
            if "DELE" in act:
                continue
            if "RETR" in act:
                sub, name = "cur", seen_name(name)
            want[md.unique(name)] = [(sub, name, datas[md.unique(name)])]
        self.assertEqual(seen_name("x:2,FR"), "x:2,FRS")          # the model itself
        self.assertEqual(seen_name("x:2,Fab"), "x:2,FSab")
        self.assertEqual(box.state(), want)
        if IS_ROOT:
            for sub, name, _ in box.ordered():
                st = os.stat(box.file(sub, name))
                self.assertEqual((st.st_uid, st.st_mode & 0o777), (TEST_UID, 0o600))
        # next session: same numbering, same UIDLs
        s = self.check_session(box)
        self.quit_ok(s)
        self.assertEqual(box.state(), want, "a session without RETR renamed something")

    # ---- 7. other programs at work during the session

    def test_delivered_during_session_not_shown_and_kept(self):
        box = self.new_maildir()
        raws = simple_raws(4)
        box.write(raws)
        s = self.check_session(box)
        u1 = self.uidls(s)
        late = [self.msg("late %d" % k) for k in range(3)]
        names = box.deliver(late[:2])
        # delivered with an older time stamp (clock skew, a slow MDA): it
        # would sort first, but must not renumber this session's messages
        early = md.dovecot_new(md.BASE_TIME - 100, 1, 1)
        box.put("new", early, late[2])
        self.assertEqual(self.stat(s)[0], 4, "message list frozen at login")
        self.bad(s, "LIST 5")
        self.bad(s, "RETR 5")
        self.assertEqual(self.uidls(s), u1)
        self.assertEqual(self.retr(s, 1), mb.delivered(raws[0]))
        self.assertOk(s.cmd("DELE 2"))
        self.assertOk(s.cmd("DELE 4"))
        self.quit_ok(s)
        for n in names + [early]:
            self.assertTrue(os.path.exists(box.file("new", n)), "delivered %s lost" % n)
        self.assertEqual(box.messages(), [late[2], raws[0], raws[2]] + late[:2])
        s = self.check_session(box)
        self.assertEqual(self.retr(s, 1), mb.delivered(late[2]))
        self.quit_ok(s)

    def test_renamed_during_session_found_by_unique_name(self):
        box = self.new_maildir()
        T = md.BASE_TIME
        files = [
            ("new", md.dovecot_new(T + 1, 1, 1)),       # IMAP: new/ -> cur/ ":2,"
            ("cur", md.dovecot_new(T + 2, 2, 2) + ":2,"),   # flags: ":2," -> ":2,F"
            ("cur", md.postfix(T + 3, 3, 3, 3) + ":2,S"),   # ":2,S" -> ":2,FS", DELE
            ("new", md.postfix(T + 4, 4, 4, 4)),        # new/ -> cur/ ":2,S", DELE
            ("new", md.qmail_classic(T + 5, 5)),        # untouched
            ("cur", md.dovecot_new(T + 6, 6, 6) + ":2,R"),  # ":2,R" -> ":2,FR", TOP
        ]
        datas = [self.msg("renamed %d" % k) for k in range(len(files))]
        for (sub, name), d in zip(files, datas):
            box.put(sub, name, d)
        s = self.check_session(box)
        u1 = self.uidls(s)

        def mv(k, sub, name):
            os.rename(box.file(*files[k]), box.file(sub, name))
            files[k] = (sub, name)

        u = [md.unique(n) for _, n in files]
        mv(0, "cur", u[0] + ":2,")
        mv(1, "cur", u[1] + ":2,F")
        mv(2, "cur", u[2] + ":2,FS")
        mv(3, "cur", u[3] + ":2,S")
        mv(5, "cur", u[5] + ":2,FR")
        self.assertEqual(self.uidls(s), u1)
        self.assertEqual(self.retr(s, 1), mb.delivered(datas[0]))
        mv(0, "cur", u[0] + ":2,R")                 # renamed again after it was found
        self.assertEqual(self.retr(s, 1), mb.delivered(datas[0]))
        st, data = s.cmd_multi("TOP 2 1")
        self.assertEqual(data, mb.top_expected(datas[1], 1))
        st, data = s.cmd_multi("TOP 6 0")
        self.assertEqual(data, mb.top_expected(datas[5], 0))
        self.assertOk(s.cmd("DELE 3"))
        self.assertEqual(self.retr(s, 4), mb.delivered(datas[3]))
        self.assertOk(s.cmd("DELE 4"))
        self.assertEqual(self.retr(s, 5), mb.delivered(datas[4]))
        self.quit_ok(s)
        want = {
            u[0]: [("cur", u[0] + ":2,RS", datas[0])],       # seen added to current flags
            u[1]: [("cur", u[1] + ":2,F", datas[1])],        # TOP only
            u[4]: [("cur", u[4] + ":2,S", datas[4])],        # RETR: new/ -> cur/
            u[5]: [("cur", u[5] + ":2,FR", datas[5])],       # TOP only
        }
        self.assertEqual(box.state(), want)

    def test_removed_during_session(self):
        box = self.new_maildir()
        raws = simple_raws(6)
        names = box.write(raws)           # 1 cur, 2 new, 3 new, 4 cur, 5 new, 6 cur
        s = self.check_session(box)
        self.assertEqual(self.retr(s, 6), mb.delivered(raws[5]))
        for k in (1, 3, 5):               # messages 2 (new/), 4 (cur/), 6 (RETRieved)
            os.unlink(box.file(*names[k]))
        for line in ("RETR 2", "TOP 2 0", "RETR 4", "TOP 4 3"):
            with self.subTest(line=line):
                st = s.cmd(line)
                self.assertErr(st)
                self.assertFalse(st.startswith("-ERR [SYS/"), "not a server fault: %r" % st)
                self.assertOk(s.cmd("NOOP"))
        self.assertEqual(self.stat(s)[0], 6)         # still listed, as at login
        self.assertEqual(self.retr(s, 1), mb.delivered(raws[0]))
        self.assertEqual(self.retr(s, 3), mb.delivered(raws[2]))
        st, data = s.cmd_multi("TOP 5 1")
        self.assertEqual(data, mb.top_expected(raws[4], 1))
        self.assertOk(s.cmd("DELE 2"))               # gone already: nothing to fail
        self.assertOk(s.cmd("DELE 5"))
        self.quit_ok(s)
        self.assertEqual(box.messages(), [raws[0], raws[2]])
        s = self.check_session(box)
        self.quit_ok(s)


# ====================================================================== crashes during the update

def strace_usable():
    if not shutil.which("strace"):
        return False
    try:
        p = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e",
                            "inject=getppid:retval=0", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0


STRACE = None


class Crash(Base):
    """pop3d killed (SIGKILL, injected with strace) at every write, truncate and
    fsync of the update: afterwards - once the next session has run its
    recovery - the mbox holds every message it held, less at most the deleted
    ones, plus the mail appended during the session, each byte-for-byte."""

    def setUp(self):
        global STRACE
        if STRACE is None:
            STRACE = strace_usable()
        if not STRACE:
            self.skipTest("strace cannot inject faults here")
        super().setUp()

    def crash_run(self, syscall, when, raws, dele, late, extra):
        path = self.e.mbox_path("alice")
        self.e.write_mbox(path, mb.build_mbox(raws))
        argv = ["strace", "-f", "-qq", "-o", "/dev/null", "-e",
                "inject=%s:signal=SIGKILL:when=%d" % (syscall, when)] + self.e.args(extra)
        p = self.e.popen(argv)
        s = Session(PipeTransport(p), proc=p, read_greeting=False)
        appended = False
        quit_ok = False
        try:
            s.reply()
            s.cmd("USER alice")
            if s.cmd("PASS " + PW).startswith("+OK"):
                for i in sorted(dele):
                    s.cmd("DELE %d" % i)
                self.e.append_locked(path, mb.build_mbox(late))
                appended = True
                quit_ok = s.cmd("QUIT").startswith("+OK")
        except (EOFError, ProtocolError):
            pass
        p.wait(timeout=20)
        killed = p.returncode != 0
        s.close()
        ctx = "killed at %s #%d" % (syscall, when)
        stale = killed and os.path.exists(path + ".lock")
        # the next session recovers; it must get in at once
        r = self.e.session(extra)
        t0 = time.monotonic()
        try:
            r.login("alice", PW)
            dt = time.monotonic() - t0
        except (ProtocolError, EOFError) as e:
            dt = e
        if not isinstance(dt, float) or dt > 3.0:
            self.fail("%s: the next login was not at once (%s)%s" % (
                ctx, dt, "; the dead session's dotlock %s.lock was left behind" % path
                if stale else ""))
        n, _ = self.stat(r)
        self.quit_ok(r)
        got = [m.raw for m in mb.split_mbox(self.e.read(path))]
        keep = [r_ for i, r_ in enumerate(raws, 1) if i not in dele]
        if not killed:
            self.assertTrue(quit_ok, ctx)
            self.assertEqual(got, keep + late, ctx + ": not killed, normal update")
            return False
        # an ordered subsequence of raws + late holding all kept and the late mail
        full = raws + (late if appended else [])
        j = 0
        for g in got:
            while j < len(full) and full[j] != g:
                j += 1
            self.assertLess(j, len(full), ctx + ": a message was damaged or reordered")
            j += 1
        for k in keep + (late if appended else []):
            self.assertIn(k, got, ctx + ": a kept message was lost")
        if quit_ok:
            self.assertEqual(got, keep + late, ctx + ": +OK to QUIT but not all deleted")
        self.assertEqual(n, len(got))
        return True

    def crash_all(self, extra):
        raws = simple_raws(6)
        dele = {2, 4, 5}
        late = simple_raws(1, tag=b"late")
        self.alice(raws)
        for syscall in ("pwrite64", "write", "ftruncate", "fsync", "fdatasync", "rename",
                        "unlink"):
            for when in range(1, 60):
                # the first failure ends the test: later runs would only repeat it
                if not self.crash_run(syscall, when, raws, dele, late, extra):
                    break

    def test_kill_at_every_update_step_no_dotlock(self):
        self.crash_all(["-n"])

    def test_kill_at_every_update_step(self):
        self.crash_all([])


# ====================================================================== real clients over TCP

def curl(args, timeout=30):
    p = subprocess.run(["curl", "-s", "-S", "--max-time", "20"] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


@each_kind
class RealClients:

    def poplib_client(self, act):
        poplib._MAXLINE = 1 << 20           # the corpus has lines > 2048 octets
        return poplib.POP3("127.0.0.1", act.port, timeout=15)

    def test_poplib_user_pass_tricky_corpus(self):
        raws, seps = mb.tricky_corpus()
        box = self.alice(raws, seps=seps)
        act = self.e.activate(["-e"])
        p = self.poplib_client(act)
        try:
            self.assertTrue(p.getwelcome().startswith(b"+OK"))
            p.user("alice")
            p.pass_(PW)
            n, total = p.stat()
            self.assertEqual(n, len(raws))
            resp, lines, _ = p.list()
            sizes = {int(l.split()[0]): int(l.split()[1]) for l in lines}
            self.assertEqual(sum(sizes.values()), total)
            resp, lines, _ = p.uidl()
            self.assertEqual([l.decode("latin-1") for l in lines],
                             ["%d %s" % (i, u) for i, u in enumerate(box.uidls(), 1)])
            for i, raw in enumerate(raws, 1):
                with self.subTest(msg=i):
                    resp, lines, octets = p.retr(i)
                    data = b"".join(l + b"\r\n" for l in lines)
                    self.assertEqual(octets, sizes[i])
                    self.assertTrue(data == mb.delivered(raw), "message %d differs" % i)
            p.dele(1)
            p.dele(len(raws) - 1)
            resp = p.quit()
            self.assertTrue(resp.startswith(b"+OK"))
        finally:
            try:
                p.close()
            except Exception:
                pass
        self.assertRaws(box, raws[1:-2] + raws[-1:])
        log = act.logtext()
        self.assertRegex(log, r"login user=alice rhost=127\.0\.0\.1 ")
        self.assertTrue(wait_for(lambda: re.search(
            r"logout user=alice rhost=127\.0\.0\.1 retr=%d dele=2 kept=%d"
            % (len(raws), len(raws) - 2), act.logtext()), timeout=5), act.logtext()[-2000:])

    def test_poplib_apop(self):
        raws = simple_raws(2)
        self.alice(raws)
        act = self.e.activate()
        p = self.poplib_client(act)
        try:
            resp = p.apop("alice", PW)
            self.assertTrue(resp.startswith(b"+OK"), resp)
            resp, lines, octets = p.retr(2)
            self.assertEqual(b"".join(l + b"\r\n" for l in lines), mb.delivered(raws[1]))
            p.quit()
        finally:
            p.close()
        p = self.poplib_client(act)
        try:
            with self.assertRaises(poplib.error_proto):
                p.apop("alice", "wrong")
        finally:
            p.close()

    def test_curl_plain_list_and_retrieve(self):
        raws, seps = mb.tricky_corpus(big=False)
        box = self.alice(raws, seps=seps)
        before = box.contents()
        act = self.e.activate()
        url = "pop3://alice:%s@127.0.0.1:%d/" % (PW, act.port)
        rc, out, err = curl([url])
        self.assertEqual(rc, 0, err)
        want = "".join("%d %d\r\n" % (i, len(mb.delivered(r))) for i, r in enumerate(raws, 1))
        self.assertEqual(out.decode(), want)
        for i in (1, 4, 5, 10, 11, len(raws)):
            with self.subTest(msg=i):
                rc, out, err = curl([url + str(i)])
                self.assertEqual(rc, 0, err)
                self.assertTrue(out == mb.delivered(raws[i - 1]),
                                "curl message %d: %r vs %r" % (i, out[:100],
                                                               mb.delivered(raws[i - 1])[:100]))
        rc, out, err = curl(["pop3://alice:wrong@127.0.0.1:%d/" % act.port])
        self.assertNotEqual(rc, 0)
        self.assertEqual(box.contents(), before)

    def test_curl_yescrypt_user_with_A(self):
        raws = simple_raws(3)
        self.alice(raws, secret=self.crypt(PW, "$y$"))
        act = self.e.activate(["-A"])
        url = "pop3://alice:%s@127.0.0.1:%d/" % (PW, act.port)
        rc, out, err = curl([url])
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.decode().splitlines()), 3)
        rc, out, err = curl([url + "2"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, mb.delivered(raws[1]))

    def test_fd3_mode_without_inetd(self):
        raws = simple_raws(2)
        box = self.alice(raws)
        act = self.e.activate(["-e"], inetd=False)
        p = self.poplib_client(act)
        try:
            self.assertTrue(p.getwelcome().startswith(b"+OK"))
            p.user("alice")
            p.pass_(PW)
            self.assertEqual(p.stat()[0], 2)
            resp, lines, octets = p.retr(1)
            self.assertEqual(b"".join(l + b"\r\n" for l in lines), mb.delivered(raws[0]))
            p.dele(2)
            p.quit()
        finally:
            p.close()
        self.assertRaws(box, raws[:1])
        self.assertRegex(act.logtext(), r"login user=alice rhost=127\.0\.0\.1 ")
        rc, out, err = curl(["pop3://alice:%s@127.0.0.1:%d/1" % (PW, act.port)])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, mb.delivered(raws[0]))

    def test_tcp_pipelining_in_use_and_drop(self):
        raws = simple_raws(3)
        box = self.alice(raws)
        before = box.snapshot()
        act = self.e.activate()
        a = act.session(read_greeting=False)
        a.send("USER alice\r\nPASS secret\r\nDELE 1\r\nDELE 2\r\nSTAT\r\n")
        for _ in range(2):
            self.assertOk(a.reply())
        self.assertRegex(a.reply(), RE_LOGIN)
        self.assertOk(a.reply())
        self.assertOk(a.reply())
        self.assertRegex(a.reply(), RE_STAT)
        b = act.session()
        b.cmd("USER alice")
        self.assertErr(b.cmd("PASS secret"), "-ERR [IN-USE]")
        self.assertEqual(b.expect_eof(), b"")
        a.close()                              # drop the connection after DELE
        ok = wait_for(lambda: self._try_login(act), timeout=5, step=0.2)
        self.assertTrue(ok, "lock not released after the connection dropped")
        self.assertEqual(box.snapshot(), before)

    def _try_login(self, act):
        s = act.session()
        try:
            s.cmd("USER alice")
            st = s.cmd("PASS secret")
            if st.startswith("+OK"):
                s.quit()
                return True
            return False
        except (EOFError, ProtocolError, OSError):
            return False
        finally:
            s.close()


# ====================================================================== runner

def kill_session(proc):
    """SIGKILL a pop3d and every process of its session; wait until they are
    all dead (zombies at most)."""
    tree = proc_tree(proc.pid)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait(timeout=5)
    wait_for(lambda: all(proc_status(p).get("State", ["Z"])[0] == "Z" for p in tree[1:]),
             timeout=3)


class Result(unittest.TestResult):

    def summary(self, seconds=None):
        """Print the failed tests, the time and the closing line
        "N passed, N failed[, N skipped]"; the exit status to return."""
        if self.failed_names:
            print("# failed: %s" % " ".join(self.failed_names))
        if seconds is not None:
            print("# %.1f s" % seconds)
        line = "%d passed, %d failed" % (self.passed, len(self.failed_names))
        if self.skipped_n:
            line += ", %d skipped" % self.skipped_n
        print(line)
        return 1 if self.failed_names else 0

    def __init__(self):
        super().__init__()
        self.passed = 0
        self.failed_names = []
        self.skipped_n = 0
        self._cur = None

    def startTest(self, test):
        super().startTest(test)
        self._cur = {"fail": [], "skip": None}
        signal.alarm(TEST_TIMEOUT)

    def _err(self, test, err):
        self._cur["fail"].append(self._exc_info_to_string(err, test))

    def addError(self, test, err):
        self._err(test, err)

    def addFailure(self, test, err):
        self._err(test, err)

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self._cur["fail"].append("[%s]\n%s" % (subtest._subDescription(),
                                                   self._exc_info_to_string(err, test)))

    def addSkip(self, test, reason):
        self._cur["skip"] = reason

    def stopTest(self, test):
        signal.alarm(0)
        super().stopTest(test)
        if TIMED_OUT:
            TIMED_OUT.clear()
            self._cur["fail"].append("stopped: the test took longer than %d s" % TEST_TIMEOUT)
        name = test_name(test)
        if self._cur["fail"]:
            self.failed_names.append(name)
            print("FAIL %s" % name)
            for f in self._cur["fail"]:
                for line in f.rstrip().splitlines():
                    print("    " + line)
        elif self._cur["skip"] is not None:
            self.skipped_n += 1
            print("skip %s: %s" % (name, self._cur["skip"]))
        else:
            self.passed += 1
            print("ok %s" % name)
        sys.stdout.flush()


def test_name(test):
    cls = type(test).__name__
    meth = test._testMethodName
    return "%s.%s" % (cls, meth[5:] if meth.startswith("test_") else meth)


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


class TestTimeout(KeyboardInterrupt):
    """Derived from KeyboardInterrupt so that neither subTest nor a bare
    except in a test swallows it."""


TIMED_OUT = []


def on_alarm(signum, frame):
    TIMED_OUT.append(True)
    raise TestTimeout("test took longer than %d s" % TEST_TIMEOUT)


def suite_main(module, title, setup=None, cleanup=None):
    """The command line of a test suite (run.py and the others): -k PATTERN
    (repeatable: a part of the name, or a glob), -l; runs module's tests and
    prints "N passed, N failed". setup(tests), before the first test, may
    prepare what the selected tests need (a variant build); cleanup() runs
    at the end whatever happened. The exit status."""
    ap = argparse.ArgumentParser(description=module.__doc__.split("\n")[0])
    ap.add_argument("-k", action="append", default=[], metavar="PATTERN",
                    help="run only tests whose name contains PATTERN (or matches it as "
                         "a glob); may be repeated")
    ap.add_argument("-l", "--list", action="store_true", help="list test names")
    opts = ap.parse_args()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    tests = list(iter_tests(unittest.TestLoader().loadTestsFromModule(module)))
    if opts.k:
        def match(t):
            n = test_name(t)
            full = "%s.%s" % (type(t).__name__, t._testMethodName)
            return any(p.lower() in n.lower() or p.lower() in full.lower()
                       or fnmatch.fnmatch(n, p) for p in opts.k)
        tests = [t for t in tests if match(t)]
    if opts.list:
        for t in tests:
            print(test_name(t))
        return 0

    print("# %s: %s (%s, uid %d)"
          % (title, POP3D, "root" if IS_ROOT else "unprivileged", os.getuid()))
    if not (os.path.isfile(POP3D) and os.access(POP3D, os.X_OK)):
        print("FAIL setup: %s is not an executable file (build it with make, or set POP3D)"
              % POP3D)
        print("0 passed, 1 failed")
        return 1
    res = Result()
    t0 = time.monotonic()
    try:
        if setup is not None:
            setup(tests)
        for t in tests:
            try:
                t.run(res)
            except TestTimeout:           # stopTest has run and reported it
                signal.alarm(0)
                try:
                    t.doCleanups()
                except Exception:
                    pass
    finally:
        if cleanup is not None:
            cleanup()
    return res.summary(time.monotonic() - t0)


def main():
    return suite_main(sys.modules[__name__], "pop3d integration tests")


if __name__ == "__main__":
    sys.exit(main())
