#!/usr/bin/python3
"""pop3d against the attacks of the security reviews (issue 11): a local user
who owns a maildrop (hard links, renames, FIFOs, crafted Maildir names, a
session killed in the middle of an update, a reused inode), a mail reader that
rewrites an mbox after a crash, a subverted pre-login process (simulated by
tests/faultinject.so), secrets left in memory, and the timing of unknown users
in a user file that mixes kinds of hash.

    tests/attacks.py [-k PATTERN]... [-l]

Each test would fail if the protection it names were removed (the note of
issue 11 says which failed on the code before it).  Reuses tests/run.py's
Base and runner, tests/security.py's variant builds.  Prints "ok NAME", "FAIL
NAME" or "skip NAME: reason" per test and "N passed, N failed[, N skipped]";
exit status 0 only when nothing failed.  Most tests need root (other users'
files, /proc/PID/mem, privilege separation); the others run unprivileged too.
"""

import sys
sys.dont_write_bytecode = True            # never litter tests/__pycache__

import ctypes
import fcntl
import glob
import grp
import hashlib
import os
import subprocess
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mboxcheck as mc                    # noqa: E402
import mboxlib as mb                      # noqa: E402
import run as R                           # noqa: E402
import security as S                      # noqa: E402
from pop3lib import (IS_ROOT, REPO, TEST_UID, TEST_GID, Session,  # noqa: E402
                     PipeTransport, ProtocolError, _crypt_lib, proc_status, wait_for)

PW = R.PW
RE_LOGIN = R.RE_LOGIN
BOB_UID = TEST_UID + 1                    # a second maildrop owner
EPERM = 1
REFRESH_BUILD = None                      # -DDOTLOCK_REFRESH=1, for the dotlock test


def needs_root(cls):
    return unittest.skipUnless(IS_ROOT, "needs root (other users' files, /proc)")(cls)


def crypt_with(password, setting):
    """crypt(3) with a given setting (a fixed salt: deterministic hashes)."""
    h = _crypt_lib().crypt(password.encode(), setting.encode())
    if not h or h.startswith(b"*"):
        raise RuntimeError("crypt failed for %s" % setting)
    return h.decode()


def journals(lockdir):
    """{name: mboxcheck.Journal} of the lock files holding something."""
    out = {}
    for p in glob.glob(os.path.join(lockdir, "*.lock")):
        if os.path.getsize(p) > 0:
            out[os.path.basename(p)] = mc.read_journal(p)
    return out


def strace_inject_usable():
    return R.strace_usable()


class Base(R.Base):

    def home(self, name):
        """A directory of the second maildrop owner's (for its mbox and
        dotlocks)."""
        d = os.path.join(self.e.dir, "home-" + name)
        if not os.path.isdir(d):
            os.mkdir(d, 0o755)
            os.chown(d, BOB_UID, BOB_UID)
        return d

    def bob(self, raws, name="bob"):
        """A second user, another uid, with an mbox in a directory of its own."""
        path = os.path.join(self.home(name), name + ".mbox")
        self.e.add_user(name, "{PLAIN}" + PW, mbox=path, uid=BOB_UID, gid=BOB_UID)
        self.e.write_userfile()
        self.e.write_mbox(path, mb.build_mbox(raws))
        os.chown(path, BOB_UID, BOB_UID)
        return path

    def login_as(self, user, extra=()):
        s = self.e.session(extra)
        self.assertRegex(s.login(user, PW), RE_LOGIN)
        return s

    def log_of(self, s):
        """What a finished pipe session wrote to stderr (with -e)."""
        return s.proc.stderr.read().decode("latin-1")

    # ---- a session killed in the middle of an update (strace injects SIGKILL)
    def crash_update(self, user, path, dele, phase="rewriting", extra=()):
        """Run sessions of user that DELE dele and QUIT, each killed at a later
        pwrite, until the kill leaves the update in phase ("rewriting": the
        journal complete, no commit record, the mbox partly rewritten).  The
        mbox is put back between attempts.  Returns the Journal."""
        if not strace_inject_usable():
            self.skipTest("strace cannot inject faults here")
        original = self.e.read(path)
        for when in range(1, 16):
            for p in glob.glob(os.path.join(self.e.lockdir, "*.lock")):
                os.truncate(p, 0)
            with open(path, "r+b") as f:        # same inode
                f.write(original)
                f.truncate()
            argv = ["strace", "-f", "-qq", "-o", "/dev/null", "-e",
                    "inject=pwrite64:signal=SIGKILL:when=%d" % when] + self.e.args(extra)
            p = self.e.popen(argv)
            s = Session(PipeTransport(p), proc=p)
            try:
                s.login(user, PW)
                for n in dele:
                    s.cmd("DELE %d" % n)
                s.cmd("QUIT")
            except (EOFError, ProtocolError):
                pass
            p.wait(timeout=20)
            s.close()
            js = [j for j in journals(self.e.lockdir).values() if j.valid]
            if p.returncode == 0 or len(js) != 1:
                continue
            j = js[0]
            data = self.e.read(path)
            rewriting = not j.committed and data[j.start:j.orig_size] != j.saved
            if phase == "rewriting" and rewriting:
                return j
        self.fail("no kill landed in the %s phase of the update" % phase)

    def rescue_files(self):
        return {os.path.basename(p): self.e.read(p)
                for p in glob.glob(os.path.join(self.e.lockdir, "*.rescue"))}


# ====================================================================== journals

@needs_root
class Journals(Base):

    def test_journal_never_applied_to_a_new_file_with_the_same_inode(self):
        """Finding 1: alice's session is killed during an update, alice
        deletes her mbox, and bob's new mbox gets its inode: bob's login must
        drop alice's journal, not roll her octets into his file."""
        a_raws = R.simple_raws(3, b"alice")
        b_raws = R.simple_raws(2, b"bob")
        apath = self.alice(a_raws)
        bpath = os.path.join(self.home("bob"), "bob.mbox")
        self.e.add_user("bob", "{PLAIN}" + PW, mbox=bpath, uid=BOB_UID, gid=BOB_UID)
        self.e.write_userfile()
        self.crash_update("alice", apath, [1])
        ino = os.stat(apath).st_ino
        os.unlink(apath)
        # files until one is given alice's old inode (ext4 reuses it at once)
        found = None
        for i in range(300):
            t = os.path.join(self.e.maildir, "new-%d" % i)
            with open(t, "wb"):
                pass
            if os.stat(t).st_ino == ino:
                found = t
                break
        for t in glob.glob(os.path.join(self.e.maildir, "new-*")):
            if t != found:
                os.unlink(t)
        if found is None:
            self.skipTest("the file system did not hand out the freed inode again")
        os.rename(found, bpath)
        self.e.write_mbox(bpath, mb.build_mbox(b_raws))
        os.chown(bpath, BOB_UID, BOB_UID)
        self.assertEqual(os.stat(bpath).st_ino, ino)
        before = self.e.read(bpath)
        s = self.login_as("bob", ["-e"])
        self.assertEqual(self.stat(s)[0], 2)
        self.quit_ok(s)
        self.assertEqual(self.e.read(bpath), before, "bob's mbox was changed by "
                         "alice's journal")
        self.assertRegex(self.log_of(s), r"recovery .*bob\.mbox: journal of another file "
                         r".*dropped")
        self.assertEqual(journals(self.e.lockdir), {}, "the journal was kept")

    def test_state_directory_cleaned_of_what_no_mbox_needs(self):
        """Finding 1: lock files and journals of maildrops that no longer
        exist do not pile up: the clean-up (at most hourly, by gc.stamp's
        time) drops a journal whose mbox is gone (logged) and the lock files
        no session holds, and keeps held ones, journals of mboxes that are
        still there, and rescue files that hold something."""
        apath = self.alice(R.simple_raws(3, b"alice"))
        # the other mboxes exist before alice's goes: none may be given its
        # inode (and so its lock file and journal: that is the test above)
        others = [self.bob(R.simple_raws(1, n.encode()), name=n)
                  for n in ("carol", "dave", "bob")]
        self.crash_update("alice", apath, [1])
        os.unlink(apath)
        self.quit_ok(self.login_as("carol"))            # leaves an empty lock file
        held = self.login_as("dave")                    # holds its lock meanwhile
        empty_rescue = os.path.join(self.e.lockdir, "0" * 32 + ".20250101T000000.rescue")
        kept_rescue = os.path.join(self.e.lockdir, "1" * 32 + ".20250101T000000.rescue")
        open(empty_rescue, "wb").close()
        with open(kept_rescue, "wb") as f:
            f.write(b"From x\n\nsaved octets\n")
        locks = set(os.listdir(self.e.lockdir))
        self.assertEqual(len([n for n in locks if n.endswith(".lock")]), 3, locks)
        stamp = os.path.join(self.e.lockdir, "gc.stamp")
        self.assertTrue(os.path.exists(stamp), "no clean-up stamp after logins")
        # not yet an hour since the last clean-up: nothing removed
        self.quit_ok(self.login_as("bob"))
        self.assertTrue(set(os.listdir(self.e.lockdir)) >= locks)
        os.utime(stamp, (time.time() - 7200, time.time() - 7200))
        s = self.login_as("bob", ["-e"])
        after = set(os.listdir(self.e.lockdir))
        self.quit_ok(s)
        log = self.log_of(s)
        self.assertRegex(log, r"recovery .*alice\.mbox: journal dropped: that mbox is gone")
        left = sorted(n for n in after if n.endswith(".lock"))
        self.assertEqual(len(left), 2, "want dave's (held) and bob's (held) lock files, "
                         "got %r" % left)
        self.assertNotIn(os.path.basename(empty_rescue), after)
        self.assertIn(os.path.basename(kept_rescue), after)
        self.assertEqual(journals(self.e.lockdir), {})
        self.quit_ok(held)
        for p in others:
            self.assertTrue(os.path.exists(p))

    def moved_on(self, change):
        """Finding 2: alice's session is killed in the middle of step 2, then
        change(path, journal) stands for a mail reader rewriting the mbox before
        the next POP3 login.  That login must leave the mbox as the reader
        left it, log, and keep the journal's octets in a rescue file."""
        raws = R.simple_raws(4, b"alice")
        path = self.alice(raws)
        j = self.crash_update("alice", path, [2])
        change(path, j)
        before = self.e.read(path)
        s = self.login_as("alice", ["-e"])
        self.quit_ok(s)
        self.assertEqual(self.e.read(path), before, "recovery wrote over the mbox the "
                         "mail reader left")
        self.assertRegex(self.log_of(s), r"recovery .*alice\.mbox: .*not rolled back; "
                         r".*kept in \S+\.rescue")
        rescued = [v for v in self.rescue_files().values() if v]
        self.assertEqual(rescued, [j.saved], "the journal's octets are not in a rescue file")
        self.assertEqual(journals(self.e.lockdir), {})
        return before

    def test_rollback_refused_after_the_mbox_was_truncated_and_appended(self):
        late = mb.build_mbox(R.simple_raws(1, b"late"))

        def change(path, j):                    # the reader cuts the damage, mail comes
            with open(path, "r+b") as f:
                f.truncate(j.start)
            self.e.append_locked(path, late)
        self.assertTrue(self.moved_on(change).endswith(late))

    def test_rollback_refused_after_the_region_was_rewritten(self):
        late = mb.build_mbox([mb.message(b"late", b"x" * 3000 + b"\n")])

        def change(path, j):                    # the reader rewrote it, longer
            data = self.e.read(path)
            with open(path, "r+b") as f:
                f.write(data[:j.start] + b"From reader\n\n" + data[j.start:j.orig_size])
            self.e.append_locked(path, late)
        self.assertTrue(self.moved_on(change).endswith(late))

    def test_rollback_refused_after_the_kept_prefix_changed(self):
        def change(path, j):                    # one octet of message 1, same size
            data = bytearray(self.e.read(path))
            k = data.index(b"body of alice message 1")
            data[k] = ord("B")
            with open(path, "r+b") as f:
                f.write(bytes(data))
        self.moved_on(change)

    def test_rescue_files_are_bounded(self):
        """Finding 1's second half: crashing sessions on purpose and changing
        the mbox each time must not fill the state directory with rescue
        files. With RESCUE_MAX (4) already kept for the maildrop's path, the
        journal stays, the login is refused and logged, and nothing is
        written. They count whichever file the path named when they were
        made (another lock key here): giving the mbox a new inode each time
        does not get four more (the second review's reproducer made twelve
        that way)."""
        raws = R.simple_raws(4, b"alice")
        path = self.alice(raws)
        j = self.crash_update("alice", path, [2])
        key = [n for n in journals(self.e.lockdir)][0][:32]
        tag = hashlib.md5(path.encode()).hexdigest()
        for i in range(4):
            old_key = "%032x" % (i + 1)         # earlier inodes of the same path
            self.assertNotEqual(old_key, key)
            with open(os.path.join(self.e.lockdir, "%s.%s.2025010%dT000000.1.rescue"
                                   % (old_key, tag, i)), "wb") as f:
                f.write(b"From x\n\nkept %d\n" % i)
        with open(path, "r+b") as f:            # the mail reader cuts the damage
            f.truncate(j.start)
        before = self.e.read(path)
        s = self.e.session(["-e"])
        s.cmd("USER alice")
        st = s.cmd("PASS " + PW)
        self.assertTrue(st.startswith("-ERR [SYS/TEMP]"), st)
        s.expect_eof()
        s.wait()
        self.assertRegex(self.log_of(s), r"4 already kept for this maildrop, the limit RESCUE_MAX")
        self.assertEqual(self.e.read(path), before)
        self.assertEqual(len([v for v in self.rescue_files().values() if v]), 4)
        self.assertEqual(len(journals(self.e.lockdir)), 1, "the journal was not kept")

    def test_rollback_still_done_when_only_mail_was_appended(self):
        """The other side of finding 2: mail appended after the crash is no
        reason to leave the update undone."""
        raws = R.simple_raws(4, b"alice")
        late = R.simple_raws(1, b"late")
        path = self.alice(raws)
        self.crash_update("alice", path, [2])
        self.e.append_locked(path, mb.build_mbox(late))
        s = self.login_as("alice", ["-e"])
        self.quit_ok(s)
        self.assertRegex(self.log_of(s), r"interrupted update rolled back")
        self.assertEqual([m.raw for m in mb.split_mbox(self.e.read(path))], raws + late)
        self.assertEqual([v for v in self.rescue_files().values() if v], [])


# ====================================================================== owners and links

@needs_root
class Owners(Base):

    def spool(self, group):
        """A directory like Debian's /var/mail: root:group 2775."""
        d = os.path.join(self.e.dir, "spool")
        os.mkdir(d)
        os.chown(d, 0, group)
        os.chmod(d, 0o2775)
        return d

    def test_hard_link_to_another_users_mbox_refused(self):
        """Finding 4: with -g mail, alice's maildrop path is a hard link to
        bob's spool file.  pop3d must neither show nor touch bob's mail:
        user:mail 0660 (the group is not in effect when the maildrop is
        opened), nor 0666 (the maildrop must be the user's)."""
        try:
            mail = grp.getgrnam("mail").gr_gid
        except KeyError:
            self.skipTest("no group mail")
        spool = self.spool(mail)
        bpath = os.path.join(spool, "bob")
        self.e.add_user("bob", "{PLAIN}" + PW, mbox=bpath, uid=BOB_UID, gid=BOB_UID)
        apath = os.path.join(self.e.maildir, "alice.mbox")
        self.e.add_user("alice", "{PLAIN}" + PW, mbox=apath)
        self.e.write_userfile()
        self.e.write_mbox(bpath, mb.build_mbox(R.simple_raws(2, b"bob")), mode=0o660)
        os.chown(bpath, BOB_UID, mail)
        os.link(bpath, apath)
        before = self.e.read(bpath)
        for mode, why in ((0o660, r"Permission denied"),
                          (0o666, r"owned by uid %d, not by the user" % BOB_UID)):
            os.chmod(bpath, mode)
            s = self.e.session(["-g", "mail", "-e"])
            s.cmd("USER alice")
            st = s.cmd("PASS " + PW)
            self.assertTrue(st.startswith("-ERR [SYS/PERM]"), "mode %o: %s" % (mode, st))
            s.expect_eof()
            s.wait()
            self.assertRegex(self.log_of(s), r"error user=alice .*alice\.mbox: %s" % why)
            self.assertEqual(self.e.read(bpath), before)
        # and once it is alice's own file, with a second link: refused too
        os.unlink(apath)
        self.e.write_mbox(apath, mb.build_mbox(R.simple_raws(1, b"alice")))
        os.link(apath, apath + ".2")
        s = self.e.session(["-g", "mail", "-e"])
        s.cmd("USER alice")
        self.assertTrue(s.cmd("PASS " + PW).startswith("-ERR [SYS/PERM]"))
        s.expect_eof()
        s.wait()
        self.assertRegex(self.log_of(s), r"has 2 hard links")

    def test_maildir_file_of_another_user_not_served(self):
        """Finding 4 for a Maildir: message files that are hard links to
        bob's files are never sent: one readable only through the mail group
        (0640 bob:mail), as the -g group is not in effect when messages are
        read, is not even listed; a world-readable one (0644) is listed but
        RETR and TOP refuse it, as it is not alice's (logged)."""
        try:
            mail = grp.getgrnam("mail").gr_gid
        except KeyError:
            self.skipTest("no group mail")
        md = os.path.join(self.e.maildir, "alice-Maildir")
        for sub in ("", "new", "cur", "tmp"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
            os.chown(os.path.join(md, sub), TEST_UID, TEST_GID)
            os.chmod(os.path.join(md, sub), 0o700)
        self.e.add_user("alice", "{PLAIN}" + PW, mbox=md + "/")
        self.e.write_userfile()
        own = mb.message(b"alice's own", b"mine\n")
        self.e.write_mbox(os.path.join(md, "new", "1700000001.M1P1.host"), own)
        for i, mode in ((2, 0o640), (3, 0o644)):
            secret = mb.message(b"bob's secret", b"the secret of bob\n")
            bfile = os.path.join(self.e.dir, "bob-message-%d" % i)
            self.e.write_mbox(bfile, secret, mode=mode)
            os.chown(bfile, BOB_UID, mail)
            os.link(bfile, os.path.join(md, "new", "170000000%d.M%dP1.host" % (i, i)))
        s = self.e.session(["-g", "mail", "-e"])
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.assertEqual(self.stat(s)[0], 2, "the group-readable file was listed")
        self.assertIn(b"mine", self.retr(s, 1))
        for cmd in ("RETR 2", "TOP 2 0"):
            st = s.cmd(cmd)
            self.assertTrue(st.startswith("-ERR [SYS/PERM]"), "%s: %s" % (cmd, st))
        self.quit_ok(s)
        self.assertIn("owned by uid %d, not by the user" % BOB_UID, self.log_of(s))

    def test_renames_never_take_another_users_lock(self):
        """Finding 5: alice swaps her maildrop path with a hard link to bob's
        mbox (renameat2 RENAME_EXCHANGE) in a loop while she logs in again
        and again: none of her sessions may hold the session lock of bob's
        mbox (which would lock bob out with [IN-USE])."""
        libc = ctypes.CDLL(None, use_errno=True)
        if not hasattr(libc, "renameat2"):
            self.skipTest("no renameat2 in the C library")
        apath = self.alice(R.simple_raws(1, b"alice"))
        bpath = self.bob(R.simple_raws(1, b"bob"))
        st = os.stat(bpath)
        block = os.path.join(self.e.lockdir, hashlib.md5(
            b"%d:%d" % (st.st_dev, st.st_ino)).hexdigest() + ".lock")
        link = os.path.join(self.e.maildir, "swap")
        os.link(bpath, link)
        stop = threading.Event()
        swaps = [0]

        def swapper():
            a, b = apath.encode(), link.encode()
            while not stop.is_set():
                libc.renameat2(-100, a, -100, b, 2)     # AT_FDCWD, RENAME_EXCHANGE
                swaps[0] += 1
        t = threading.Thread(target=swapper, daemon=True)
        t.start()
        held = ok = 0
        try:
            for _ in range(60):
                s = self.e.session()
                s.cmd("USER alice")
                if s.cmd("PASS " + PW).startswith("+OK"):
                    ok += 1
                    if os.path.exists(block):
                        fd = os.open(block, os.O_RDONLY)
                        try:
                            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        except OSError:
                            held += 1
                        finally:
                            os.close(fd)
                try:
                    s.cmd("QUIT")
                except (EOFError, ProtocolError, OSError):
                    pass
                s.close()
                s.wait()
        finally:
            stop.set()
            t.join(5)
        self.assertGreater(swaps[0], 1000, "the swapping thread did not run")
        self.assertGreater(ok, 0, "alice never logged in")
        self.assertEqual(held, 0, "alice's session held bob's lock %d times of %d logins"
                         % (held, ok))


# ====================================================================== secrets in memory

def memory_of(pid):
    """Every readable private mapping of a process (as root, from /proc)."""
    out = []
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            name = f[5] if len(f) > 5 else ""
            if "r" not in f[1] or name in ("[vvar]", "[vsyscall]", "[vvar_vclock]") or \
                    hi - lo > 1 << 30:
                continue
            try:
                mem.seek(lo)
                out.append(mem.read(hi - lo))
            except (OSError, ValueError, OverflowError):
                pass
    return b"".join(out)


@needs_root
class Secrets(Base):

    def test_no_secret_in_the_prelogin_process_or_the_session(self):
        """Finding 3: the pre-login process (which inherits the monitor's
        memory) must not hold the user file: no hash and no {PLAIN} secret of
        any user; after login the session must not hold one either, its own
        user's password included."""
        if S.asan_build():
            self.skipTest("a sanitizer build keeps freed memory in quarantine and maps "
                          "terabytes of shadow: its memory is not pop3d's")
        secrets = {
            "alice": "Alice-pw-7c1e9b2f4d",
            "bob": "Bob-pw-58a0e3c6d1",
            "carol": "Carol-pw-0f9e7d3a2b",
        }
        lines = []
        needles = []
        for name, pw in secrets.items():
            path = self.e.mbox_path(name)
            self.e.write_mbox(path, mb.build_mbox(R.simple_raws(1, name.encode())))
            if name == "carol":
                h = crypt_with(pw, "$6$rounds=1000$CarolSaltXyz$")
                secret = h
                needles.append(h.rsplit("$", 1)[1].encode())     # the hash itself
            elif name == "bob":
                h = crypt_with(pw, "$y$j9T$BobSaltBobSaltBobSal$")
                secret = h
                needles.append(h.rsplit("$", 1)[1].encode())
            else:
                secret = "{PLAIN}" + pw
            needles.append(pw.encode())
            lines.append("%s:%s:%d:%d::%s" % (name, secret, TEST_UID, TEST_GID, path))
        with open(self.e.userfile, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.e.userfile, 0o600)
        s = self.e.session()
        kids = wait_for(lambda: S.children(s.proc.pid), timeout=3)
        self.assertEqual(len(kids), 1)
        mem = memory_of(kids[0])
        self.assertGreater(len(mem), 100000, "could not read the pre-login process")
        for n in needles:
            self.assertTrue(n not in mem, "the pre-login process holds %r" % n)
        self.assertRegex(s.login("alice", secrets["alice"]), RE_LOGIN)
        self.assertEqual(self.stat(s)[0], 1)
        mem = memory_of(s.proc.pid)
        for n in needles:
            self.assertTrue(n not in mem, "the logged-in session holds %r" % n)
        self.quit_ok(s)


# ====================================================================== a subverted pre-login process

@needs_root
class Subverted(Base):

    def setUp(self):
        super().setUp()
        mc.ensure_shim()

    def hostile(self, how):
        """Finding 6: the pre-login process turns hostile at its first request
        (tests/faultinject.so): it closes its channel, or sends an empty
        datagram, then lingers with its alarm off.  The monitor must end it
        and exit within the grace time (PRELOGIN_GRACE, 5 s), not wait
        forever."""
        self.alice()
        env = mc.shim_env(self.e.child_env(), subvert=how)
        s = self.e.session(["-e"], env=env)
        kid = S.children(s.proc.pid)[0]
        s.send("USER alice\r\nPASS %s\r\n" % PW)
        t0 = time.monotonic()
        try:
            rc = s.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.fail("the monitor still waits for the subverted process after 20 s")
        took = time.monotonic() - t0
        self.assertLess(took, 12)
        self.assertEqual(rc, 1)
        self.assertFalse(S.alive(kid), "the subverted pre-login process is still alive")
        self.assertRegex(self.log_of(s), r"error privsep: pre-login process .* rhost=")

    def test_prelogin_closing_its_channel_is_ended(self):
        self.hostile("close")

    def test_prelogin_sending_an_empty_datagram_is_ended(self):
        self.hostile("empty")

    def test_prelogin_sandbox(self):
        """Also from the review: the pre-login process runs under a seccomp
        allow-list and resource limits: a subverted one can open no socket or
        file and signal no process."""
        self.alice()
        env = mc.shim_env(self.e.child_env(), subvert="probe")
        s = self.e.session(["-e"], env=env)
        kid = S.children(s.proc.pid)[0]
        st = proc_status(kid)
        self.assertEqual(st.get("Seccomp"), ["2"], "no seccomp filter")
        with open("/proc/%d/limits" % kid) as f:
            limits = f.read()
        self.assertRegex(limits, r"Max processes\s+0\s+0")
        self.assertRegex(limits, r"Max core file size\s+0\s+0")
        if not S.asan_build():          # (a sanitizer build maps terabytes: no limit there)
            self.assertRegex(limits, r"Max address space\s+\d+\s+\d+")
        s.cmd("USER alice")
        s.send("PASS %s\r\n" % PW)
        probe = s.readline().decode("latin-1").strip()
        self.assertEqual(probe, "probe socket=%d kill=%d open=%d" % (EPERM, EPERM, EPERM))
        self.assertRegex(s.reply(), RE_LOGIN)
        self.quit_ok(s)
        self.assertNotIn("warning sandbox", self.log_of(s))

    def test_password_hashing_runs_as_the_prelogin_user(self):
        """Also from the review: crypt() on the client's password runs in a
        child of the monitor that is the pre-login user, under seccomp."""
        slow = crypt_with(PW, "$6$rounds=9999999$SlowSaltSlow$")
        self.alice(secret=slow)
        s = self.e.session()
        pre = S.children(s.proc.pid)            # the pre-login process
        self.assertOk(s.cmd("USER alice"))
        s.send("PASS %s\r\n" % PW)
        new = wait_for(lambda: [k for k in S.children(s.proc.pid) if k not in pre], timeout=5)
        self.assertTrue(new, "no password hashing process seen")
        # (it confines itself within microseconds of the fork; the hash takes seconds)
        wait_for(lambda: proc_status(new[0]).get("Seccomp") == ["2"], timeout=2)
        st = proc_status(new[0])
        pw = S.prelogin_user()
        self.assertEqual(st.get("PPid"), [str(s.proc.pid)])
        self.assertEqual(st.get("Uid"), [str(pw.pw_uid)] * 4, "the hashing process is not %s"
                         % pw.pw_name)
        self.assertEqual(st.get("Groups"), [])
        self.assertEqual(st.get("Seccomp"), ["2"], "the hashing process has no seccomp filter")
        self.assertRegex(s.reply(timeout=60), RE_LOGIN)
        self.quit_ok(s)


# ====================================================================== dotlocks

class Dotlocks(Base):

    def test_dotlock_temp_name_cannot_be_taken_first(self):
        """Also from the review: in a 1777 spool another user makes the name
        pop3d once used for its dotlock's temporary file; loads and updates
        must still work (the name is unguessable now)."""
        if not IS_ROOT:
            self.skipTest("needs root (another user's file)")
        d = os.path.join(self.e.dir, "spool")
        os.mkdir(d)
        os.chmod(d, 0o1777)
        path = os.path.join(d, "alice")
        raws = R.simple_raws(3)
        self.e.add_user("alice", "{PLAIN}" + PW, mbox=path)
        self.e.write_userfile()
        self.e.write_mbox(path, mb.build_mbox(raws))
        squat = path + ".lock.pop3d"
        with open(squat, "wb"):
            pass
        os.chown(squat, BOB_UID, BOB_UID)
        s = self.login_as("alice")
        self.assertOk(s.cmd("DELE 1"))
        self.quit_ok(s)
        self.assertEqual([m.raw for m in mb.split_mbox(self.e.read(path))], raws[1:])
        self.assertEqual(sorted(os.listdir(d)), ["alice", "alice.lock.pop3d"],
                         "temporary files or a dotlock left behind")

    def test_dotlock_refreshed_during_a_long_update(self):
        """Also from the review: an update longer than a dotlock's staleness
        must not let its dotlock look stale. On a build with DOTLOCK_REFRESH
        of 1 s and every write slowed, the dotlock's age stays near 1 s
        however long the update takes."""
        if REFRESH_BUILD is None:
            self.skipTest("no sources next to the tests: cannot build -DDOTLOCK_REFRESH=1")
        err = REFRESH_BUILD.wait()
        if err:
            self.fail("build with -DDOTLOCK_REFRESH=1: %s" % err)
        raws = [mb.message(b"big %d" % i, (b"y" * 99 + b"\n") * 3000) for i in range(8)]
        path = self.alice(raws)
        mc.ensure_shim()
        env = mc.shim_env(self.e.child_env(), delay_us=60000)
        argv = [REFRESH_BUILD.binary] + self.e.args()[1:]
        p = self.e.popen(argv, env=env)
        s = Session(PipeTransport(p), proc=p)
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.assertOk(s.cmd("DELE 1"))
        s.send("QUIT\r\n")
        lock = path + ".lock"
        ages = []
        t0 = time.monotonic()
        while p.poll() is None and time.monotonic() - t0 < 50:
            try:
                ages.append(time.time() - os.stat(lock).st_mtime)
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        took = time.monotonic() - t0
        self.assertOk(s.reply())
        s.expect_eof()
        self.assertGreater(took, 3.0, "the update was not slow enough to tell")
        self.assertTrue(ages, "never saw the dotlock")
        self.assertLess(max(ages), 2.5, "the dotlock aged %.1f s during a %.1f s update"
                        % (max(ages), took))
        self.assertEqual([m.raw for m in mb.split_mbox(self.e.read(path))], raws[1:])


# ====================================================================== Maildir files

class MaildirFiles(Base):

    def maildir(self):
        md = os.path.join(self.e.maildir, "alice-Maildir")
        for sub in ("", "new", "cur", "tmp"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
            os.chmod(os.path.join(md, sub), 0o700)
            if IS_ROOT:
                os.chown(os.path.join(md, sub), self.e.uid, self.e.gid)
        self.e.add_user("alice", "{PLAIN}" + PW, mbox=md + "/")
        self.e.write_userfile()
        return md

    def test_fifo_in_place_of_a_message_never_blocks(self):
        """Finding 8: a message file replaced by a FIFO after login: RETR must
        answer at once, not hang the session (with its lock) in open()."""
        md = self.maildir()
        raw = mb.message(b"one", b"body\n")
        name = "1700000001.M1P1.host,W=%d" % len(mb.delivered(raw))
        self.e.write_mbox(os.path.join(md, "new", name), raw)
        self.e.write_mbox(os.path.join(md, "new", "1700000002.M2P1.host"), raw)
        s = self.login_as("alice")
        os.unlink(os.path.join(md, "new", name))
        os.mkfifo(os.path.join(md, "new", name))
        if IS_ROOT:
            os.chown(os.path.join(md, "new", name), self.e.uid, self.e.gid)
        t0 = time.monotonic()
        st = s.cmd("RETR 1", timeout=10)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertTrue(st.startswith("-ERR"), st)
        self.assertEqual(self.retr(s, 2), mb.delivered(raw))
        self.quit_ok(s)

    def test_w_sizes_cannot_wrap_the_total(self):
        """Also from the review: ,W= sizes that add up past 2^64 must not wrap
        STAT's total (and slip under MAX_MAILDROP_BYTES)."""
        md = self.maildir()
        raw = mb.message(b"w", b"body\n")
        real = len(mb.delivered(raw))
        self.e.write_mbox(os.path.join(md, "cur", "1700000001.M1P1.h,W=%d:2," % (2 ** 64 - 10)),
                          raw)
        self.e.write_mbox(os.path.join(md, "cur", "1700000002.M2P1.h,W=%d:2," % (real + 10)),
                          raw)
        s = self.e.session()
        s.cmd("USER alice")
        st = s.cmd("PASS " + PW)
        m = RE_LOGIN.match(st)
        self.assertTrue(m, st)
        self.assertEqual(int(m.group(2)), 2 * real + 10, "the total wrapped, or an absurd "
                         ",W= size was believed")
        self.assertEqual(self.list_sizes(s)[1], real, "an absurd ,W= size was believed")
        self.quit_ok(s)


# ====================================================================== timing of unknown users

class Timing(Base):

    def test_unknown_users_cost_what_real_users_cost(self):
        """Finding 7: in a file that mixes a fast (sha512crypt, 1000 rounds)
        and a slow (bcrypt, cost 10) kind of hash, unknown names must not all
        take the first kind's time: each costs what some real entries cost,
        the same every time, and both kinds occur."""
        fast = [crypt_with("pw%d" % i, "$6$rounds=1000$FastSalt%d$" % i) for i in range(3)]
        slow = [crypt_with("pw%d" % i, "$2b$10$" + ("SlowSaltSlowSaltSlowS%d" % i)[:22])
                for i in range(3)]
        path = self.e.mbox_path("x")
        lines = ["f%d:%s:%d:%d::%s" % (i, h, self.e.uid, self.e.gid, path)
                 for i, h in enumerate(fast)]
        lines += ["s%d:%s:%d:%d::%s" % (i, h, self.e.uid, self.e.gid, path)
                  for i, h in enumerate(slow)]
        with open(self.e.userfile, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.e.userfile, 0o600)

        def cost(name):
            s = self.e.session()
            s.cmd("USER " + name)
            t0 = time.monotonic()
            st = s.cmd("PASS wrong")
            dt = time.monotonic() - t0
            self.assertTrue(st.startswith(R.AUTH_ERR), st)
            s.close()
            s.wait()
            return dt
        f_real = min(cost("f0") for _ in range(3))
        s_real = min(cost("s0") for _ in range(3))
        self.assertGreater(s_real, 4 * f_real, "the two kinds do not cost apart "
                           "(%.3f / %.3f s): cannot tell" % (f_real, s_real))
        cut = (f_real * s_real) ** 0.5
        kinds = {}
        for i in range(16):
            name = "nobody%d" % i
            # each figure the quicker of two tries: a busy machine only ever
            # adds time, and must not make a fast name look slow
            a = min(cost(name), cost(name))
            b = min(cost(name), cost(name))
            ka, kb = a > cut, b > cut
            self.assertEqual(ka, kb, "%s took %.3f then %.3f s" % (name, a, b))
            kinds[name] = "slow" if ka else "fast"
        self.assertIn("slow", kinds.values(), "no unknown name costs a bcrypt: %r" % kinds)
        self.assertIn("fast", kinds.values(), "no unknown name costs a sha512crypt: %r"
                      % kinds)


# ====================================================================== runner

def main():
    def setup(tests):
        global REFRESH_BUILD
        if any("dotlock_refreshed" in R.test_name(t) for t in tests) and \
                os.path.isfile(os.path.join(REPO, "Makefile")):
            REFRESH_BUILD = S.VariantBuild("-DDOTLOCK_REFRESH=1")

    def cleanup():
        if REFRESH_BUILD:
            REFRESH_BUILD.cleanup()
    return R.suite_main(sys.modules[__name__], "pop3d attack tests", setup, cleanup)

if __name__ == "__main__":
    sys.exit(main())
