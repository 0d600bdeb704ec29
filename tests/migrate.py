#!/usr/bin/python3
"""pop3d taking a maildrop over from another POP3 server with its UIDLs
unchanged (issue 15, -U): against the real peers where they are installed
(scripts/deps.sh: Dovecot from its package, GNU mailutils' pop3d and popa3d
unpacked in /var/cache/pop3d-bench), each run on 127.0.0.1 with a private
configuration and stopped afterwards:

  - Dovecot serves a Maildir (its dovecot-uidlist in the Maildir, messages
    RETRieved there moved to cur/ with flags, one delivered late with an old
    time): pop3d -U dovecot lists the same UIDLs in the same order; mail
    delivered afterwards gets new, unique UIDLs;
  - GNU mailutils' pop3d serves an mbox (and writes X-UIDL fields): pop3d
    -U xuidl lists the same UIDLs; a message delivered after pop3d's first
    session with a copy of an X-UIDL gets its own UIDL, the original keeps
    the old one;
  - popa3d serves mboxes (hand-made edge cases, its 64 KiB quirk, random
    ones): pop3d -U popa3d lists the same UIDLs (popa3d's duplicates: the
    first keeps it); an mbox popa3d refuses gets pop3d's own UIDLs;
  - real clients across the switch: mpop and fetchmail, leaving mail on the
    server, fetch from the old server, then from pop3d on the same port with
    the matching -U: they download nothing;
and, with pop3d alone (as root and unprivileged): -U's errors, hand-made
uidlists (versions 1 and 3, P and O fields, malformed ones), the records in
the state directory (made once, torn ones made again, kept or removed by the
clean-up), duplicated and forged values, displaced own UIDLs, and popa3d's
UIDL against a model of its code on mboxes popa3d itself may not be there to
run.

    tests/migrate.py [-k PATTERN]... [-l]

Prints "ok NAME", "FAIL NAME" or "skip NAME: reason" per test and "N passed,
N failed[, N skipped]"; exit status 0 only when nothing failed. Users it
creates (pop3dmigr, and popa3d when missing), the /var/mail link popa3d
reads and the servers it starts are removed or stopped after each test.
"""

import sys
sys.dont_write_bytecode = True

import fcntl
import grp
import hashlib
import os
import poplib
import pwd
import random
import re
import shutil
import signal
import subprocess
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import maildirlib as md                   # noqa: E402
import mboxlib as mb                      # noqa: E402
import run as R                           # noqa: E402
from pop3lib import (IS_ROOT, POP3D, stop_group, crypt_hash, free_port, port_listening,  # noqa: E402
                     wait_for)

PW = R.PW
PEERS = os.environ.get("POP3D_PEERS", "/var/cache/pop3d-bench")
POPA3D = os.path.join(os.environ.get("POPA3D_DIR", os.path.join(PEERS, "popa3d")),
                      "usr/sbin/popa3d")
GNU_POP3D = os.path.join(os.environ.get("MAILUTILS_DIR", os.path.join(PEERS, "mailutils-pop3d")),
                         "usr/sbin/pop3d")
SYS_USER = "pop3dmigr"                    # a system user for the peers that need one
SYS_PW = "Migr-pw-15"
RE_OWN_MBOX = re.compile(r"^[0-9a-f]{32}(-\d+)?$")


# ====================================================================== helpers

def parse_uidl(out):
    """The "n uidl" lines of the first UIDL listing in a session's output."""
    lines = out.decode("latin-1").split("\r\n")
    i = next(k for k, l in enumerate(lines) if l.startswith("+OK unique-id listing"))
    got = []
    for l in lines[i + 1:]:
        if l == ".":
            return got
        n, u = l.split(" ")
        got.append((int(n), u))
    raise AssertionError("no end of the UIDL listing: %r" % out[-300:])


def peer_session(port, user, pw, cmds=(), uidl=True):
    """A poplib session with a peer: its UIDL listing, then cmds (RETR n,
    DELE n), then QUIT."""
    p = poplib.POP3("127.0.0.1", port, timeout=30)
    p.user(user)
    p.pass_(pw)
    got = None
    if uidl:
        got = [(int(n), u) for n, u in (x.decode().split(" ") for x in p.uidl()[1])]
    for c in cmds:
        verb, n = c.split(" ")
        if verb == "RETR":
            p.retr(int(n))
        elif verb == "DELE":
            p.dele(int(n))
    p.quit()
    return got


class Listener:
    """systemd-socket-activate --accept --inetd on 127.0.0.1:port (a given
    port: the client tests switch servers on one port)."""

    def __init__(self, argv, port, log, env=None):
        self.port = port
        self.logf = open(log, "ab")
        self.proc = subprocess.Popen(
            ["systemd-socket-activate", "--accept", "--inetd", "-l", "127.0.0.1:%d" % port] + argv,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.logf,
            env=env or {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
            start_new_session=True, close_fds=True)
        if not wait_for(lambda: port_listening(port) or self.proc.poll() is not None, timeout=10) \
                or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("systemd-socket-activate did not listen on %d" % port)

    def stop(self):
        stop_group(self.proc)
        self.logf.close()
        wait_for(lambda: not port_listening(self.port), timeout=5)


class Dovecot:
    """Dovecot's own master with a private configuration serving one user's
    Maildir: mail_location maildir:PATH and nothing else about mail, so the
    uidlist is in the Maildir and the POP3 UIDL format is the default."""

    def __init__(self, tmp, user, pw, uid, gid, maildir, port):
        self.t = os.path.join(tmp, "dv")
        self.port = port
        os.makedirs(os.path.join(self.t, "home"), exist_ok=True)
        os.chown(os.path.join(self.t, "home"), uid, gid)
        pw_file = os.path.join(self.t, "passwd")
        with open(pw_file, "w") as f:
            f.write("%s:{SHA512-CRYPT}%s:%d:%d::%s/home::userdb_mail=maildir:%s\n"
                    % (user, crypt_hash(pw, "$6$"), uid, gid, self.t, maildir.rstrip("/")))
        self.conf = os.path.join(self.t, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write("base_dir = {t}/run\nstate_dir = {t}/state\nlog_path = {t}/dovecot.log\n"
                    "protocols = pop3\nlisten = 127.0.0.1\nssl = no\n"
                    "disable_plaintext_auth = no\nauth_mechanisms = plain\n"
                    "first_valid_uid = 1\nfirst_valid_gid = 1\n"
                    "passdb {{\n  driver = passwd-file\n  args = scheme=SHA512-CRYPT {pw}\n}}\n"
                    "userdb {{\n  driver = passwd-file\n  args = {pw}\n}}\n"
                    "service pop3-login {{\n  inet_listener pop3 {{\n    address = 127.0.0.1\n"
                    "    port = {port}\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n"
                    "service imap-login {{\n  inet_listener imap {{\n    port = 0\n  }}\n"
                    "  inet_listener imaps {{\n    port = 0\n  }}\n}}\n"
                    .format(t=self.t, pw=pw_file, port=port))
        self.proc = None

    @staticmethod
    def available():
        return shutil.which("dovecot") is not None and os.path.exists("/usr/lib/dovecot/pop3")

    def start(self):
        self.log = open(os.path.join(self.t, "stderr.log"), "ab")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        if not wait_for(lambda: port_listening(self.port) or self.proc.poll() is not None,
                        timeout=20) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("dovecot did not listen:\n%s" % self.logtext())

    def logtext(self):
        try:
            with open(os.path.join(self.t, "dovecot.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            self.log.close()
        self.proc = None
        wait_for(lambda: not port_listening(self.port), timeout=5)


class Accounts:
    """System accounts the peers need (they authenticate through PAM against
    /etc/shadow): made when missing, removed afterwards if made here."""

    def __init__(self):
        self.made = []

    def user(self, name, home="/nonexistent", password=None):
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", home,
                            "--shell", "/usr/sbin/nologin", name], check=True,
                           capture_output=True)
            self.made.append(("user", name))
        if password is not None:
            subprocess.run(["usermod", "-p", crypt_hash(password, "$6$"), name], check=True,
                           capture_output=True)
        p = pwd.getpwnam(name)
        return p.pw_uid, p.pw_gid

    def path(self, path, make):
        if not os.path.lexists(path):
            make()
            self.made.append(("path", path))

    def cleanup(self):
        for kind, what in reversed(self.made):
            if kind == "user":
                subprocess.run(["userdel", what], capture_output=True)
                try:
                    grp.getgrnam(what)
                    subprocess.run(["groupdel", what], capture_output=True)
                except KeyError:
                    pass
            elif os.path.isdir(what) and not os.path.islink(what):
                shutil.rmtree(what, ignore_errors=True)
            elif os.path.lexists(what):
                os.unlink(what)
        self.made = []


# ---------------------------------------------------------------- popa3d's UIDL, modelled

def popa3d_model(data):
    """popa3d 1.0.3's messages of an mbox: [(offset of the From_ line, end,
    UIDL)], or None when it would refuse the mbox. Written from its
    mailbox.c (see uidlsrc.c): line by line, with the From_ line's 64 KiB
    fragment quirk."""
    if len(data) > 2147483647:
        return None
    out, blank, header, h, fixed, received, data_seen = [], True, False, None, False, False, False
    start = None
    off = 0
    ieq = (lambda l, n: l[:len(n)].lower() == n.lower())
    lines = data.split(b"\n")
    for k, body in enumerate(lines):
        line = body + b"\n" if k + 1 < len(lines) else body
        if not line:
            break
        s, e = off, off + len(line)
        off = e
        if blank and line.startswith(b"From "):
            if s != 0:
                if not data_seen:
                    return None
                out.append((start, s, h.digest()))
            start, h, header, fixed, received, data_seen = s, hashlib.md5(), True, False, False, False
            b = (s // 65536 + 1) * 65536
            frag = e - 1 >= b and (b - s > 32 or e - s > 32)
            blank = not frag
            continue
        if s == 0:
            return None
        if header:
            data_seen = True
        blank = line[:1] == b"\n"
        if not header:
            continue
        if blank:
            header = False
            continue
        c = line[:1]
        if c in (b"\t", b" "):
            pass
        elif c in (b"R", b"r"):
            fixed = False if received else ieq(line, b"Received:")
            received = received or fixed
        elif c in (b"D", b"d"):
            fixed = ieq(line, b"Delivered-To:") or (not received and ieq(line, b"Date:"))
        elif c in (b"M", b"m"):
            fixed = not received and ieq(line, b"Message-ID:")
        elif c == b"X":
            fixed = ieq(line, b"X-Delivery-ID:")
        else:
            fixed = False
            continue
        if fixed:
            h.update(line)
    if off == 0:
        return []
    if h is None or not data_seen:
        return None
    out.append((start, off, h.digest()))
    return [(a, b, d[3::-1].hex() + d[7:3:-1].hex()) for a, b, d in out]


def pop3d_starts(data):
    """Where pop3d's messages start: a From_ line first or after a blank line
    (empty or CR only)."""
    starts, off, prev_blank = [], 0, True
    for k, body in enumerate(data.split(b"\n")):
        line = body + b"\n" if k + 1 < len(data.split(b"\n")) else body
        if not line:
            break
        if line.startswith(b"From ") and (off == 0 or prev_blank):
            starts.append(off)
        prev_blank = line in (b"\n", b"\r\n")
        off += len(line)
    return starts


def expected_popa3d(data):
    """For each pop3d message: popa3d's UIDL it keeps (or None): popa3d's
    message that starts and ends where it does, its value not taken by an
    earlier one."""
    model = popa3d_model(data)
    starts = pop3d_starts(data)
    if model is None:
        return [None] * len(starts)
    ends = starts[1:] + [len(data)]
    by = {(a, b): u for a, b, u in model}
    seen, out = set(), []
    for a, b in zip(starts, ends):
        u = by.get((a, b))
        if u is not None and u in seen:
            u = None
        if u is not None:
            seen.add(u)
        out.append(u)
    return out


# The mbox Debian's popa3d 1.0.3 was first run on; it printed 71faf1c67579a98b,
# 0d64776bcfd7f108, d98c1dd404b2008f twice, 81436a50a8b3be15, 5c8ea440db8c503b.
RESEARCH_MBOX = (
    b'From alice@example.org Mon Jan  1 10:00:00 2024\n'
    b'Return-Path: <alice@example.org>\n'
    b'Delivered-To: bob@example.net\n'
    b'Received: from mx.example.org (mx.example.org [192.0.2.1])\n'
    b'\tby mail.example.net (Postfix) with ESMTP id 4A1B2C3D\n'
    b'\tfor <bob@example.net>; Mon,  1 Jan 2024 10:00:00 +0000 (UTC)\n'
    b'Received: from client.example.org by mx.example.org; Mon, 1 Jan 2024 09:59:59 +0000\n'
    b'Date: Mon, 1 Jan 2024 09:59:58 +0000\n'
    b'From: Alice <alice@example.org>\n'
    b'To: bob@example.net\n'
    b'Subject: one\n'
    b'Message-ID: <one@example.org>\n'
    b'\n'
    b'Body one.\n'
    b'>From the escaped line\n'
    b'\n'
    b'From carol@example.org Mon Jan  1 11:00:00 2024\n'
    b'date: Mon, 1 Jan 2024 11:00:00 +0000\n'
    b'message-id: <two@example.org>\n'
    b'From: Carol <carol@example.org>\n'
    b'Subject: two\n'
    b'Received: by localhost; Mon, 1 Jan 2024 11:00:01 +0000\n'
    b'\n'
    b'Body two.\n'
    b'\n'
    b'From dave@example.org Mon Jan  1 12:00:00 2024\n'
    b'From: Dave <dave@example.org>\n'
    b'Subject: three\n'
    b'\n'
    b'Body three.\n'
    b'\n'
    b'From dave@example.org Mon Jan  1 12:00:01 2024\n'
    b'From: Dave <dave@example.org>\n'
    b'Subject: four\n'
    b'\n'
    b'Body four, different.\n'
    b'\n'
    b'From erin@example.org Mon Jan  1 13:00:00 2024\n'
    b'X-Delivery-ID: abc123\n'
    b'Subject: five\n'
    b'\n'
    b'Body five.\n'
    b'\n'
    b'From frank@example.org Mon Jan  1 14:00:00 2024\n'
    b'Date: Mon, 1 Jan 2024 14:00:00 +0000\n'
    b'Message-ID: <six@example.org>\n'
    b'Subject: six\n'
    b'\n'
    b'Body six without final newline'
)


def research_mbox():
    return RESEARCH_MBOX


def random_mbox(rng, crlf_separators=True):
    names = [b"Received:", b"received:", b"RECEIVED:", b"Date:", b"date:", b"Message-ID:",
             b"message-id:", b"Delivered-To:", b"delivered-to:", b"X-Delivery-ID:",
             b"x-delivery-id:", b"Subject:", b"From:", b"To:", b"Return-Path:", b"Dat:",
             b"Received", b"X-Other:", b"Resent-Date:", b"X-UIDL:"]

    def val():
        n = rng.choice([3, 10, 25, 31, 32, 33, 60, 200, 5000, 70000])
        return bytes(rng.choice(b"abcdefgh ;<>@.:") for _ in range(n))
    out = []
    for m in range(rng.randint(1, 30)):
        eol = b"\r\n" if rng.random() < 0.1 else b"\n"
        out.append(b"From x@y Mon Jan  1 00:00:%02d 2024\n" % (m % 60))
        for h in range(rng.randint(0, 10)):
            out.append(rng.choice(names) + b" " + val() + eol)
            while rng.random() < 0.3:
                out.append(rng.choice([b"\t", b" "]) + val() + eol)
        out.append(b"\n" if eol == b"\n" or not crlf_separators else b"\r\n")
        for b in range(rng.randint(0, 20)):
            out.append(val() + b"\n")
        out.append(b"\r\n" if crlf_separators and rng.random() < 0.05 else b"\n")
    data = b"".join(out)
    if rng.random() < 0.3:
        data = data[:-1]
    return data


# ====================================================================== base

class Base(R.Base):

    def setUp(self):
        super().setUp()
        self.accounts = Accounts()
        self.addCleanup(self.accounts.cleanup)

    def pop3d(self, sources=None, user="alice", pw=None, cmds=(), extra=()):
        """One pop3d session over a pipe: USER, PASS, UIDL, cmds, QUIT.
        ([(n, uidl)], log text)."""
        if pw is None:
            pw = SYS_PW if user == SYS_USER else PW
        a = ["-e", "-n"] + (["-U", sources] if sources else []) + list(extra)
        data = "USER %s\r\nPASS %s\r\nUIDL\r\n%sQUIT\r\n" % (user, pw,
                                                              "".join(c + "\r\n" for c in cmds))
        rc, out, err = self.e.run(data.encode(), extra=a)
        self.assertIn(b"+OK maildrop has", out, "login: %r\n%s" % (out[:300], err.decode()))
        self.assertEqual(rc, 0, "exit status:\n%s" % err.decode("latin-1"))
        got = parse_uidl(out)
        u = [x for _, x in got]
        self.assertEqual(len(u), len(set(u)), "UIDLs not unique: %r" % got)
        for x in u:
            self.assertRegex(x, R.RE_UIDL)
        return got, err.decode("latin-1")

    def user_mbox(self, data, name="alice", uid=None, gid=None, path=None):
        path = self.e.add_user(name, "{PLAIN}" + PW, mbox=path, uid=uid, gid=gid)
        self.e.write_userfile()
        self.e.write_mbox(path, data)
        if IS_ROOT and uid is not None:
            os.chown(path, uid, gid)
        return path

    def user_maildir(self, name="alice"):
        box = md.Maildir(os.path.join(self.e.maildir, name) + "/",
                         *((self.e.uid, self.e.gid) if IS_ROOT else (None, None)))
        box.create()
        self.e.add_user(name, "{PLAIN}" + PW, mbox=box.root)
        self.e.write_userfile()
        return box

    def records(self, suffix=None):
        return sorted(n for n in os.listdir(self.e.lockdir)
                      if re.match(r"^[0-9a-f]{32}\.(xuidl|popa3d|dovecot)$", n) and
                      (suffix is None or n.endswith("." + suffix)))

    def need_root(self, what):
        if not IS_ROOT:
            self.skipTest("needs root (%s)" % what)


def mbox_of(msgs):
    """An mbox of (from line time, header lines, body) tuples."""
    out = []
    for t, headers, body in msgs:
        out.append(b"From sender@example.org %s\n" % t + b"".join(h + b"\n" for h in headers) +
                   b"\n" + body + b"\n")
    return b"".join(out)


def hdr_msgs(n, tag, extra=lambda i: []):
    return [(b"Mon Jan  1 10:%02d:00 2024" % i,
             [b"Received: from host%d by mx.example.org; Mon, 1 Jan 2024 10:%02d:00 +0000" % (i, i),
              b"Message-ID: <%s.%d@example.org>" % (tag, i), b"Subject: %s %d" % (tag, i)] +
             extra(i), b"body of %s %d\n" % (tag, i)) for i in range(1, n + 1)]


# ====================================================================== -U itself

class Options(Base):

    def test_bad_lists_are_configuration_errors(self):
        self.user_mbox(b"")
        for arg in ("", "bogus", "dovecot,", ",xuidl", "dovecot,dovecot", "Dovecot",
                    "xuidl,,popa3d", "dovecot xuidl"):
            with self.subTest(arg=arg):
                rc, out, err = self.e.run(b"CAPA\r\nQUIT\r\n", extra=["-e", "-U", arg])
                self.assertEqual(out, b"-ERR [SYS/PERM] server configuration error\r\n")
                self.assertEqual(rc, 1)
                self.assertRegex(err.decode(), r"error config: -U: ")

    def test_help_names_U(self):
        rc, out, err = self.e.run(b"", argv=[POP3D, "-h"])
        self.assertEqual(rc, 0)
        for w in (b"-U sources", b"dovecot", b"xuidl", b"popa3d"):
            self.assertIn(w, out)

    def test_without_U_nothing_changes(self):
        """No -U: pop3d's own UIDLs, no record, no uidl log line, whatever
        the maildrop holds."""
        data = mbox_of(hdr_msgs(3, b"m", lambda i: [b"X-UIDL: legacy-%d" % i]))
        self.user_mbox(data)
        got, log = self.pop3d()
        self.assertEqual([u for _, u in got], mb.expected_uidls(
            [m.raw for m in mb.split_mbox(data)], [m.from_line for m in mb.split_mbox(data)]))
        self.assertNotIn("uidl user=", log)
        self.assertEqual(self.records(), [])


# ====================================================================== dovecot-uidlist, hand-made

class DovecotList(Base):
    """-U dovecot with uidlists written here in Dovecot's formats (the real
    Dovecot is in RealDovecot)."""

    NAMES = ["1704103201.M1P100.host", "1704103202.M2P100.host,S=40", "1704103203.M3P100.host",
             "1704103204.M4P100.host"]

    def setUp(self):
        super().setUp()
        self.box = self.user_maildir()
        self.box.put("cur", self.NAMES[0] + ":2,S", b"Subject: 1\n\none\n")
        self.box.put("cur", self.NAMES[1] + ":2,FS", b"Subject: 2\n\ntwo\n")
        self.box.put("new", self.NAMES[2], b"Subject: 3\n\nthree\n")
        self.box.put("new", self.NAMES[3], b"Subject: 4\n\nfour\n")

    def uidlist(self, text, mode=0o600):
        p = os.path.join(self.box.root, "dovecot-uidlist")
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        if IS_ROOT:
            os.chown(p, self.e.uid, self.e.gid)
        return p

    def own(self):
        return [(i, n) for i, n in enumerate(self.NAMES, 1)]

    def forget(self):
        """Remove the record of pop3d's first -U dovecot session."""
        for r in self.records("dovecot"):
            os.unlink(os.path.join(self.e.lockdir, r))

    def test_version_3(self):
        self.uidlist("3 V1796669846 N5 G0539671d9601176be941000083ecc375\n"
                     "1 W170 :%s\n2 W170 :%s\n3 W170 :%s\n4 W170 :%s\n" % tuple(self.NAMES))
        got, log = self.pop3d("dovecot")
        self.assertEqual(got, [(1, "000000016b170196"), (2, "000000026b170196"),
                               (3, "000000036b170196"), (4, "000000046b170196")])
        self.assertIn("uidl user=alice rhost=local dovecot=4 xuidl=0 popa3d=0 own=0 displaced=0",
                      log)

    def test_version_1_with_flags(self):
        self.uidlist("1 12345 10\n3 %s:2,S\n5 %s\n7 %s\n" % tuple(self.NAMES[:3]))
        got, log = self.pop3d("dovecot")
        self.assertEqual(got, [(1, "0000000300003039"), (2, "0000000500003039"),
                               (3, "0000000700003039"), (4, self.NAMES[3])])

    def test_p_and_o_fields_and_dovecots_order(self):
        """As Dovecot lists them: O first (by O), then by UID; a P value
        verbatim, a bare P the base name; files it did not list last."""
        self.uidlist("3 V12345 N10\n3 P :%s\n5 Pabc-legacy.uidl O2 :%s\n7 O1 :%s\n"
                     % tuple(self.NAMES[:3]))
        got, log = self.pop3d("dovecot")
        self.assertEqual(got, [(1, "0000000700003039"), (2, "abc-legacy.uidl"),
                               (3, self.NAMES[0]), (4, self.NAMES[3])])

    def test_uid_order_not_time_order(self):
        """A file Dovecot listed late (an older time, a higher UID) comes
        where Dovecot put it."""
        self.uidlist("3 V99 N9\n1 :%s\n2 :%s\n3 :%s\n8 :%s\n" % (self.NAMES[1], self.NAMES[2],
                                                                self.NAMES[3], self.NAMES[0]))
        got, log = self.pop3d("dovecot")
        self.assertEqual(got, [(1, "0000000100000063"), (2, "0000000200000063"),
                               (3, "0000000300000063"), (4, "0000000800000063")])

    def test_ignored_lists_one_log_line_each(self):
        cases = {
            "missing": None,
            "unsupported version": "2 V1 N5\n1 :%s\n" % self.NAMES[0],
            "UIDs not in increasing order": "3 V5 N9\n2 :%s\n1 :%s\n" % tuple(self.NAMES[:2]),
            "broken header": "3 N9\n1 :%s\n" % self.NAMES[0],
            "invalid record": "3 V5 N9\nx :%s\n" % self.NAMES[0],
            "empty": "",
        }
        for why, text in cases.items():
            with self.subTest(why=why):
                self.forget()
                p = os.path.join(self.box.root, "dovecot-uidlist")
                if os.path.exists(p):
                    os.unlink(p)
                if text is not None:
                    self.uidlist(text)
                got, log = self.pop3d("dovecot")
                self.assertEqual(got, self.own())
                self.assertEqual(len(re.findall(r"dovecot-uidlist: .*-U dovecot gives no", log)),
                                 1, log)
                self.assertIn(why, log)

    def test_not_the_users_file_or_a_link(self):
        p = self.uidlist("3 V5 N9\n1 :%s\n" % self.NAMES[0])
        if IS_ROOT:
            os.chown(p, 0, 0)
            os.chmod(p, 0o644)                  # readable, but not the user's
            got, log = self.pop3d("dovecot")
            self.assertEqual(got, self.own())
            self.assertIn("not the user's file", log)
        self.forget()
        real = os.path.join(self.e.dir, "elsewhere")
        os.rename(p, real)
        os.symlink(real, p)
        got, log = self.pop3d("dovecot")
        self.assertEqual(got, self.own())
        self.assertIn("dovecot-uidlist", log)

    def test_bounded_lines(self):
        self.uidlist("3 V5 N9\n1 %s :%s\n" % ("X" * 5000, self.NAMES[0]))
        got, log = self.pop3d("dovecot")
        self.assertEqual(got, self.own())
        self.assertIn("longer than DOVECOT_LINE_MAX", log)

    def test_duplicate_p_values_go_to_neither(self):
        self.uidlist("3 V5 N9\n1 Psame :%s\n2 Psame :%s\n3 P0000000400000005 :%s\n4 :%s\n"
                     % tuple(self.NAMES))
        got, log = self.pop3d("dovecot")
        u = dict(got)
        self.assertEqual(u[1], self.NAMES[0])
        self.assertEqual(u[2], self.NAMES[1])
        self.assertEqual(u[3], self.NAMES[2], "a P value shaped like another UID's UIDL")
        self.assertEqual(u[4], "0000000400000005")

    def test_own_uidl_a_source_holds_is_displaced(self):
        """A file whose name is another message's Dovecot UIDL: its own UIDL
        would not be unique, so it gets the MD5 of "<name>:1", and keeps it
        when the other message is deleted."""
        self.box.put("new", "0000000100000005", b"Subject: odd name\n\nx\n")
        self.uidlist("3 V5 N9\n1 :%s\n" % self.NAMES[0])
        got, log = self.pop3d("dovecot")
        want = hashlib.md5(b"0000000100000005:1").hexdigest()
        self.assertEqual(got[0], (1, "0000000100000005"))
        self.assertIn(want, [u for _, u in got])
        self.assertIn("displaced=1", log)
        got2, log = self.pop3d("dovecot", cmds=("DELE 1",))
        self.assertEqual(got2, got)
        got3, log = self.pop3d("dovecot")
        self.assertIn(want, [u for _, u in got3])
        self.assertNotIn("0000000100000005", [u for _, u in got3])

    def test_stable_across_sessions_and_deletions(self):
        self.uidlist("3 V5 N9\n1 :%s\n2 :%s\n3 :%s\n4 :%s\n" % tuple(self.NAMES))
        first, _ = self.pop3d("dovecot", cmds=("DELE 2",))
        self.assertEqual([u for _, u in first], ["000000%02d00000005" % i for i in range(1, 5)])
        again, _ = self.pop3d("dovecot")
        self.assertEqual([u for _, u in again], [u for n, u in first if n != 2])

    def test_uids_dovecot_gives_later_do_not_count(self):
        """pop3d's first session records the uidlist's UIDVALIDITY and next
        UID: a file Dovecot (its IMAP server, its LDA) numbers afterwards
        keeps the own UIDL pop3d gave it, and a uidlist rebuilt with
        another UIDVALIDITY is not used."""
        p = self.uidlist("3 V5 N4\n1 :%s\n2 :%s\n3 :%s\n" % tuple(self.NAMES[:3]))
        got, log = self.pop3d("dovecot")
        self.assertIn("uidl record %s: dovecot: UIDVALIDITY 5, UIDs below 4" % self.box.root, log)
        self.assertEqual(got[3], (4, self.NAMES[3]))
        [rec] = self.records("dovecot")
        st = os.stat(os.path.join(self.e.lockdir, rec))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        with open(p, "a") as f:
            f.write("4 :%s\n" % self.NAMES[3])     # appended, as Dovecot does
        got2, log = self.pop3d("dovecot")
        self.assertEqual(got2, got)
        self.uidlist("3 V6 N5\n1 :%s\n2 :%s\n3 :%s\n4 :%s\n" % tuple(self.NAMES))
        got3, log = self.pop3d("dovecot")
        self.assertEqual(got3, self.own())
        self.assertIn("UIDVALIDITY 6, not the 5 of pop3d's first session", log)
        self.assertIn("displaced=0", log)

    def test_record_made_once(self):
        """(Even when the UIDVALIDITY and the next UID are the same number.)"""
        self.uidlist("3 V5 N5\n1 :%s\n2 :%s\n3 :%s\n4 :%s\n" % tuple(self.NAMES))
        got, log = self.pop3d("dovecot")
        self.assertIn("UIDVALIDITY 5, UIDs below 5", log)
        got2, log = self.pop3d("dovecot")
        self.assertEqual(got2, got)
        self.assertNotIn("uidl record", log)
        self.assertNotIn("recording again", log)

    def test_no_uidlist_at_the_first_session(self):
        got, log = self.pop3d("dovecot")
        self.assertEqual(got, self.own())
        self.assertIn("no usable dovecot-uidlist", log)
        self.uidlist("3 V5 N9\n1 :%s\n" % self.NAMES[0])
        got, log = self.pop3d("dovecot")
        self.assertEqual(got, self.own())
        self.assertNotIn("dovecot-uidlist:", log)

    def refused(self, sources):
        """A login that -U sources cannot serve now: -ERR [SYS/TEMP]; the log."""
        rc, out, err = self.e.run(b"USER alice\r\nPASS %s\r\nUIDL\r\nQUIT\r\n" % PW.encode(),
                                  extra=["-e", "-n", "-U", sources])
        self.assertIn(b"-ERR [SYS/TEMP]", out, out)
        self.assertNotIn(b"+OK maildrop has", out)
        return err.decode("latin-1")

    def test_unreadable_uidlist_is_recorded_later(self):
        """A uidlist that cannot be read for a reason that may pass (here no
        permission) refuses the login, at the first session and at later
        ones: a session with other UIDLs than the one before and the one
        after would have clients fetch everything again (the second
        review)."""
        p = self.uidlist("3 V5 N9\n1 :%s\n2 :%s\n3 :%s\n4 :%s\n" % tuple(self.NAMES))
        os.chmod(p, 0)
        log = self.refused("dovecot")
        self.assertIn("Permission denied", log)
        self.assertIn("the login is refused", log)
        self.assertNotIn("uidl record", log)
        os.chmod(p, 0o600)
        first, log = self.pop3d("dovecot")
        self.assertEqual(first[0], (1, "0000000100000005"))
        self.assertIn("UIDs below 9", log)
        os.chmod(p, 0)
        log = self.refused("dovecot")
        self.assertIn("cannot be read now", log)
        os.chmod(p, 0o600)
        got, log = self.pop3d("dovecot")
        self.assertEqual(got, first)

    def test_mbox_users_are_not_affected(self):
        data = mbox_of(hdr_msgs(2, b"m"))
        self.user_mbox(data, name="bob")
        got, log = self.pop3d("dovecot", user="bob")
        for _, u in got:
            self.assertRegex(u, RE_OWN_MBOX)


# ====================================================================== recorded sources

class Records(Base):
    """-U xuidl (mbox and Maildir) and the records in the state directory."""

    def xmbox(self):
        return self.user_mbox(mbox_of(hdr_msgs(4, b"x", lambda i: [b"X-UIDL: legacy.%d" % i])))

    def test_record_that_cannot_be_written_refuses_the_login(self):
        """The second review: a first session whose record cannot be written
        (here the file size limit, as a full disk would) must not serve the
        values: the next session would record again from the maildrop as it
        is then, and a message delivered meanwhile with a copy of an X-UIDL
        would take the value from the message the client knows it by."""
        path = self.user_mbox(mbox_of(hdr_msgs(40, b"x", lambda i: [b"X-UIDL: legacy.%d" % i])))
        argv = ["sh", "-c", 'trap "" XFSZ; ulimit -f 1; exec "$@"', "sh"] + \
            self.e.args(["-e", "-n", "-U", "xuidl"], "0")
        rc, out, err = self.e.run(b"USER alice\r\nPASS %s\r\nUIDL\r\nQUIT\r\n" % PW.encode(),
                                  argv=argv)
        self.assertIn(b"-ERR [SYS/TEMP]", out, out + err)
        self.assertNotIn(b"legacy.", out)
        self.assertRegex(err.decode(), r"-U xuidl: cannot write its record: File too large")
        self.assertEqual([os.path.getsize(os.path.join(self.e.lockdir, r))
                          for r in self.records("xuidl")], [0] * len(self.records("xuidl")))
        got, log = self.pop3d("xuidl")          # the limit gone: recorded now
        self.assertEqual([u for _, u in got], ["legacy.%d" % i for i in range(1, 41)])
        self.assertIn("uidl record %s: xuidl: 40 messages recorded" % path, log)

    def test_first_session_records_later_arrivals_never_count(self):
        path = self.xmbox()
        got, log = self.pop3d("xuidl")
        self.assertEqual([u for _, u in got], ["legacy.%d" % i for i in range(1, 5)])
        self.assertIn("uidl record %s: xuidl: 4 messages recorded" % path, log)
        [rec] = self.records("xuidl")
        st = os.stat(os.path.join(self.e.lockdir, rec))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertEqual(st.st_uid, os.getuid())
        # a new message with its own X-UIDL, and one with a copy of an old one
        self.e.append_locked(path, mbox_of([(b"Tue Jan  2 10:00:00 2024", [b"X-UIDL: new.5"],
                                             b"five\n"),
                                            (b"Tue Jan  2 11:00:00 2024", [b"X-UIDL: legacy.2"],
                                             b"forged\n")]))
        got2, log = self.pop3d("xuidl")
        u = [x for _, x in got2]
        self.assertEqual(u[:4], ["legacy.%d" % i for i in range(1, 5)])
        self.assertRegex(u[4], RE_OWN_MBOX)
        self.assertRegex(u[5], RE_OWN_MBOX)
        self.assertNotIn("recorded", log)
        self.assertIn("xuidl=4 popa3d=0 own=2", log)

    def test_values_twice_go_to_neither(self):
        data = mbox_of(hdr_msgs(4, b"d", lambda i: [b"X-UIDL: %s" % (b"twice" if i < 3 else
                                                                     b"once.%d" % i)]))
        self.user_mbox(data)
        got, log = self.pop3d("xuidl")
        u = [x for _, x in got]
        self.assertRegex(u[0], RE_OWN_MBOX)
        self.assertRegex(u[1], RE_OWN_MBOX)
        self.assertEqual(u[2:], ["once.3", "once.4"])

    def test_invalid_values_and_where_they_are(self):
        msgs = [(b"Mon Jan  1 10:00:00 2024", [b"X-UIDL: has space"], b"a\n"),
                (b"Mon Jan  1 10:00:01 2024", [b"X-UIDL: " + b"7" * 71], b"b\n"),
                (b"Mon Jan  1 10:00:02 2024", [b"Subject: c"], b"X-UIDL: in.the.body\n"),
                (b"Mon Jan  1 10:00:03 2024", [b"x-uidl:\t  lower.case  "], b"d\n"),
                (b"Mon Jan  1 10:00:04 2024", [b"X-UIDL: folded", b"\tvalue"], b"e\n"),
                (b"Mon Jan  1 10:00:05 2024", [b"X-UIDL: first", b"X-UIDL: second"], b"f\n"),
                (b"Mon Jan  1 10:00:06 2024", [b"X-UIDL: crlf.value\r"], b"g\n")]
        self.user_mbox(mbox_of(msgs))
        got, log = self.pop3d("xuidl")
        u = [x for _, x in got]
        for i in (0, 1, 2, 4):
            self.assertRegex(u[i], RE_OWN_MBOX, "message %d" % (i + 1))
        self.assertEqual((u[3], u[5], u[6]), ("lower.case", "first", "crlf.value"))

    def test_maildir_xuidl(self):
        box = self.user_maildir()
        box.put("cur", "1704103201.M1P1.host:2,S", b"Subject: a\nX-UIDL: md.1\n\na\n")
        box.put("new", "1704103202.M2P1.host", b"Subject: b\n\nb\n")
        box.put("cur", "1704103203.M3P1.host:2,", b"X-UIDL: md.3\r\nSubject: c\r\n\r\nc\r\n")
        got, log = self.pop3d("xuidl")
        self.assertEqual(got, [(1, "md.1"), (2, "1704103202.M2P1.host"), (3, "md.3")])
        box.put("new", "1704103204.M4P1.host", b"X-UIDL: md.4\n\nlate\n")
        got, log = self.pop3d("xuidl")
        self.assertEqual(got[3], (4, "1704103204.M4P1.host"))

    def test_own_uidl_equal_to_a_recorded_value_is_displaced(self):
        """A forged X-UIDL equal to another message's own UIDL, both there at
        the first session: the X-UIDL message has the value (it is
        recorded), the other is displaced, for good."""
        box = self.user_maildir()
        box.put("cur", "1704103201.M1P1.host:2,S", b"Subject: a\n\na\n")
        box.put("cur", "1704103202.M2P1.host:2,S", b"X-UIDL: 1704103201.M1P1.host\n\nb\n")
        got, log = self.pop3d("xuidl")
        disp = hashlib.md5(b"1704103201.M1P1.host:1").hexdigest()
        self.assertEqual(got, [(1, disp), (2, "1704103201.M1P1.host")])
        self.assertIn("displaced=1", log)
        got, log = self.pop3d("xuidl", cmds=("DELE 2",))
        got, log = self.pop3d("xuidl")
        self.assertEqual(got, [(1, disp)], "the displaced UIDL must not change back")

    def test_record_is_per_source_and_path(self):
        path = self.xmbox()
        self.pop3d("xuidl,popa3d")
        self.assertEqual(len(self.records("xuidl")), 1)
        self.assertEqual(len(self.records("popa3d")), 1)
        with open(os.path.join(self.e.lockdir, self.records("xuidl")[0])) as f:
            text = f.read()
        self.assertTrue(text.startswith("pop3d uidl record 1\nsource xuidl\npath %s\n" % path),
                        text)
        self.assertRegex(text, r"\nend 4 [0-9a-f]{32}\n$")

    def test_torn_or_corrupt_record_is_made_again(self):
        self.xmbox()
        self.pop3d("xuidl")
        rec = os.path.join(self.e.lockdir, self.records("xuidl")[0])
        with open(rec) as f:
            good = f.read()
        for bad in (good[:-20], "", good.replace("legacy.3", "legacy.X"),
                    good.replace("source xuidl", "source other")):
            with self.subTest(bad=bad[-40:]):
                with open(rec, "w") as f:
                    f.write(bad)
                got, log = self.pop3d("xuidl")
                self.assertEqual([u for _, u in got], ["legacy.%d" % i for i in range(1, 5)])
                if bad:
                    self.assertIn("its record is", log)
                self.assertIn("4 messages recorded", log)
                with open(rec) as f:
                    self.assertEqual(f.read(), good)

    def test_empty_maildrop_records_nothing_for_later(self):
        """The first session of an empty (or missing) maildrop records no
        value: what is delivered later is not honoured."""
        path = self.e.add_user("alice", "{PLAIN}" + PW)
        self.e.write_userfile()
        got, log = self.pop3d("xuidl,popa3d")
        self.assertEqual(got, [])
        for src in ("xuidl", "popa3d"):
            [rec] = self.records(src)
            with open(os.path.join(self.e.lockdir, rec)) as f:
                self.assertRegex(f.read(), r"\npath %s\nend 0 [0-9a-f]{32}\n$" % re.escape(path))
        self.e.write_mbox(path, mbox_of(hdr_msgs(2, b"late", lambda i: [b"X-UIDL: late.%d" % i])))
        got, log = self.pop3d("xuidl,popa3d")
        for _, u in got:
            self.assertRegex(u, RE_OWN_MBOX)

    def test_state_gc_keeps_and_removes_records(self):
        """The hourly clean-up: a torn record no session holds goes; a record
        whose maildrop is gone goes once unused for UIDL_RECORD_KEEP (30
        days); one whose maildrop is there stays, however old."""
        self.xmbox()
        self.pop3d("xuidl")
        [keep] = self.records("xuidl")
        old = time.time() - 40 * 86400
        os.utime(os.path.join(self.e.lockdir, keep), (old, old))
        # a gone maildrop's record, old and recent; a torn one
        gone = self.e.add_user("gone", "{PLAIN}" + PW)
        recent = self.e.add_user("recent", "{PLAIN}" + PW)
        self.e.write_userfile()
        for u, p in (("gone", gone), ("recent", recent)):
            self.e.write_mbox(p, mbox_of(hdr_msgs(1, u.encode())))
            self.pop3d("xuidl", user=u)
            os.unlink(p)
        recs = set(self.records("xuidl"))
        self.assertEqual(len(recs), 3)
        gone_rec = [r for r in recs if gone in open(os.path.join(self.e.lockdir, r)).read()][0]
        recent_rec = [r for r in recs if recent in open(os.path.join(self.e.lockdir, r)).read()][0]
        os.utime(os.path.join(self.e.lockdir, gone_rec), (old, old))
        torn = os.path.join(self.e.lockdir, "0123456789abcdef0123456789abcdef.popa3d")
        with open(torn, "w") as f:
            f.write("pop3d uidl record 1\nsource popa3d\npath /x\n")
        torn2 = os.path.join(self.e.lockdir, "0123456789abcdef0123456789abcdef.dovecot")
        open(torn2, "w").close()
        stamp = os.path.join(self.e.lockdir, "gc.stamp")
        os.utime(stamp, (old, old))
        got, log = self.pop3d("xuidl")
        self.assertEqual([u for _, u in got], ["legacy.%d" % i for i in range(1, 5)])
        left = set(self.records())
        self.assertIn(keep, left, "a record of a maildrop that is there")
        self.assertIn(recent_rec, left, "a record of a gone maildrop, used lately")
        self.assertNotIn(gone_rec, left, "a record of a maildrop gone for 40 days")
        self.assertNotIn(os.path.basename(torn), left, "a torn record")
        self.assertNotIn(os.path.basename(torn2), left, "an empty record")
        self.assertIn("uidl record %s: xuidl: dropped" % gone, log)

    def test_record_held_for_the_session(self):
        """The session holds its record's lock (flock) from before its +OK
        to its end: the clean-up never takes a record in use, and a second
        session of the same Maildir gets [IN-USE] at once."""
        box = self.user_maildir()
        box.put("new", "1704103201.M1P1.host", b"X-UIDL: a\n\na\n")
        s = self.e.session(["-U", "xuidl"])
        self.assertRegex(s.login("alice", PW), R.RE_LOGIN)
        [rec] = self.records("xuidl")
        fd = os.open(os.path.join(self.e.lockdir, rec), os.O_RDONLY)
        try:
            with self.assertRaises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            rc, out, err = self.e.run(b"USER alice\r\nPASS %s\r\nQUIT\r\n" % PW.encode(),
                                      extra=["-U", "xuidl"])
            self.assertIn(b"-ERR [IN-USE]", out)
            self.quit_ok(s)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once it is over
        finally:
            os.close(fd)


# ====================================================================== popa3d's UIDL, modelled

class Popa3dModel(Base):
    """-U popa3d against a model of popa3d's code: the cases popa3d splits
    differently from pop3d, refuses, or names alike; random mboxes. (The
    real popa3d is in RealPopa3d.)"""

    def check(self, data):
        self.e.entries = []
        self.user_mbox(data)
        for f in os.listdir(self.e.lockdir):
            if f.endswith(".popa3d"):
                os.unlink(os.path.join(self.e.lockdir, f))
        got, log = self.pop3d("popa3d")
        want = expected_popa3d(data)
        self.assertEqual(len(got), len(want))
        for (n, u), w in zip(got, want):
            if w is None:
                self.assertRegex(u, RE_OWN_MBOX, "message %d" % n)
            else:
                self.assertEqual(u, w, "message %d" % n)
        again, _ = self.pop3d("popa3d")
        self.assertEqual(again, got, "the second session")
        return got, log, want

    def test_the_research_mbox(self):
        got, log, want = self.check(research_mbox())
        self.assertEqual(want, ["71faf1c67579a98b", "0d64776bcfd7f108", "d98c1dd404b2008f", None,
                                "81436a50a8b3be15", "5c8ea440db8c503b"])

    def test_crlf_separators_split_otherwise(self):
        """A CR LF blank line before a From_ line separates messages for
        pop3d, not for popa3d: neither of the two keeps popa3d's UIDL."""
        data = (b"From a@b Mon Jan  1 10:00:00 2024\r\nReceived: x\r\n\r\nbody\r\n\r\n"
                b"From a@b Mon Jan  1 10:00:01 2024\nReceived: y\n\nbody\n\n"
                b"From a@b Mon Jan  1 10:00:02 2024\nReceived: z\n\nbody\n")
        got, log, want = self.check(data)
        self.assertEqual(len(got), 3)
        self.assertEqual(want[:2], [None, None])
        self.assertIsNotNone(want[2])

    def test_mboxes_popa3d_refuses(self):
        for data in (b"From a@b Mon Jan  1 10:00:00 2024\nFrom the header\nReceived: x\n\nb\n",
                     b"From a@b Mon Jan  1 10:00:00 2024\nReceived: x\n\nb\n\n"
                     b"From a@b Mon Jan  1 10:00:01 2024\n"):
            with self.subTest(data=data[:50]):
                got, log, want = self.check(data)
                self.assertEqual(want, [None] * len(got))
                self.assertIn("no message keeps a popa3d UIDL", log)

    def test_random_mboxes(self):
        rng = random.Random(1500)
        for k in range(12):
            with self.subTest(k=k):
                self.check(random_mbox(rng))


# ====================================================================== the real peers

class RealDovecot(Base):

    def setUp(self):
        super().setUp()
        self.need_root("Dovecot runs its mail processes as the Maildir's owner")
        if not Dovecot.available():
            self.skipTest("Dovecot is not installed (scripts/deps.sh installs it)")
        self.box = self.user_maildir()
        self.port = free_port()
        self.dv = Dovecot(self.e.dir, "alice", PW, self.e.uid, self.e.gid, self.box.root,
                          self.port)
        self.addCleanup(self.dv.stop)
        self.box.put("cur", "1704103201.M1P100.host:2,S", b"Subject: 1\n\none\n")
        self.box.put("cur", "1704103202.M2P100.host,S=16:2,F", b"Subject: 2\n\ntwo\n")
        self.box.put("new", "1704103203.M3P100.host", b"Subject: 3\n\nthree\n")
        self.box.put("new", "1704103204.M4P100.host,S=17,W=20", b"Subject: 4\n\nfour\n")
        self.box.put("new", "1704103205.M5P100.host", b"Subject: 5\n\nfive\n")

    def served_by_dovecot(self):
        self.dv.start()
        first = peer_session(self.port, "alice", PW, cmds=("RETR 3", "RETR 4"))
        # a message delivered late with an older time: Dovecot's next UID
        self.box.put("new", "1600000000.M9P9.host", b"Subject: late\n\nlate\n")
        peer_session(self.port, "alice", PW, cmds=("RETR 1",))
        last = peer_session(self.port, "alice", PW)
        self.dv.stop()
        return first, last

    def test_same_uidls_in_the_same_order(self):
        first, last = self.served_by_dovecot()
        self.assertTrue(os.path.exists(os.path.join(self.box.root, "dovecot-uidlist")))
        self.assertEqual(self.box.listing("new"), [], "Dovecot moved them all to cur/")
        self.assertTrue(any(n.endswith(":2,S") and "M3P100" in n for n in self.box.listing("cur")))
        self.assertEqual(last[:5], first)
        self.assertEqual(len(last), 6)
        got, log = self.pop3d("dovecot")
        self.assertEqual(got, last)
        self.assertIn("dovecot=6 xuidl=0 popa3d=0 own=0", log)
        # two messages delivered afterwards: new, unique UIDLs
        self.box.put("new", "1704109999.M7P1.other", b"Subject: new 1\n\nn1\n")
        self.box.put("new", "1500000000.M8P1.other", b"Subject: new 2\n\nn2\n")
        got2, log = self.pop3d("dovecot")
        self.assertEqual(got2[:6], last)
        olds = {u for _, u in last}
        news = [u for _, u in got2[6:]]
        self.assertEqual(len(news), 2)
        self.assertFalse(olds & set(news))
        got3, _ = self.pop3d("dovecot")
        self.assertEqual(got3, got2)

    def test_deleted_in_dovecot_and_after(self):
        first, last = self.served_by_dovecot()
        self.dv.start()
        peer_session(self.port, "alice", PW, cmds=("DELE 2",))
        after = peer_session(self.port, "alice", PW)
        self.dv.stop()
        got, log = self.pop3d("dovecot", cmds=("DELE 1",))
        self.assertEqual(got, after)
        got, log = self.pop3d("dovecot")
        self.assertEqual([u for _, u in got], [u for n, u in after if n != 1])


class GnuPop3d:
    """GNU mailutils' pop3d for SYS_USER, whose mbox is in a private spool
    (mailbox { mail-spool }); pop3d's user file names the same mbox."""

    def __init__(self, t):
        t.need_root("GNU pop3d authenticates system users and becomes them")
        if not os.access(GNU_POP3D, os.X_OK):
            t.skipTest("GNU mailutils' pop3d is not unpacked in %s (scripts/deps.sh does it, "
                       "as root)" % os.path.dirname(os.path.dirname(os.path.dirname(GNU_POP3D))))
        self.t = t
        self.uid, self.gid = t.accounts.user(SYS_USER, password=SYS_PW)
        self.spool = os.path.join(t.e.dir, "spool")
        os.mkdir(self.spool, 0o755)
        os.chown(self.spool, self.uid, self.gid)
        self.mbox = os.path.join(self.spool, SYS_USER)
        self.conf = os.path.join(t.e.dir, "mailutils.conf")
        with open(self.conf, "w") as f:
            f.write('mailbox {\n  mail-spool "%s";\n};\n' % self.spool)
        t.e.add_user(SYS_USER, "{PLAIN}" + SYS_PW, mbox=self.mbox, uid=self.uid, gid=self.gid)
        t.e.write_userfile()

    def write(self, data):
        with open(self.mbox, "wb") as f:
            f.write(data)
        os.chmod(self.mbox, 0o600)
        os.chown(self.mbox, self.uid, self.gid)

    def start(self, port):
        """Listening on port: the callable that stops it."""
        return Listener([GNU_POP3D, "--inetd", "--config-file=" + self.conf], port,
                        os.path.join(self.t.e.dir, "gnu-pop3d.log")).stop

    def serve(self, cmds=(), uidl=True):
        port = free_port()
        stop = self.start(port)
        try:
            return peer_session(port, SYS_USER, SYS_PW, cmds=cmds, uidl=uidl)
        finally:
            stop()

    @staticmethod
    def corpus():
        return mbox_of(hdr_msgs(4, b"mu") + [(b"Mon Jan  1 12:00:00 2024",
                                              [b"X-UIDL: 5f1a2b3c4d5e6f70", b"Subject: qpopper"],
                                              b"served by qpopper once\n")])


class Popa3d:
    """Debian's popa3d (unpacked) for SYS_USER: it reads /var/mail/USER, a
    hard link to a private mbox made only while it runs (pop3d serves mboxes
    of one link only); pop3d's user file names the private mbox."""

    def __init__(self, t):
        t.need_root("popa3d authenticates system users, reads /var/mail")
        if not os.access(POPA3D, os.X_OK):
            t.skipTest("popa3d is not unpacked in %s (scripts/deps.sh does it, as root)"
                       % os.path.dirname(os.path.dirname(os.path.dirname(POPA3D))))
        self.t = t
        self.spool = "/var/mail/" + SYS_USER
        if os.path.lexists(self.spool):
            t.skipTest("%s exists: not ours to replace" % self.spool)
        self.uid, self.gid = t.accounts.user(SYS_USER, password=SYS_PW)
        t.accounts.user("popa3d", home="/var/lib/popa3d")
        t.accounts.path("/var/lib/popa3d", lambda: os.makedirs("/var/lib/popa3d", 0o755))
        self.mbox = os.path.join(t.e.dir, "popa3d.mbox")
        t.e.add_user(SYS_USER, "{PLAIN}" + SYS_PW, mbox=self.mbox, uid=self.uid, gid=self.gid)
        t.e.write_userfile()

    def write(self, data):
        with open(self.mbox, "wb") as f:
            f.write(data)
        os.chmod(self.mbox, 0o600)
        os.chown(self.mbox, self.uid, self.gid)

    def start(self, port):
        self.t.accounts.path(self.spool, lambda: os.link(self.mbox, self.spool))
        l = Listener([POPA3D], port, os.path.join(self.t.e.dir, "popa3d.log"))

        def stop():
            l.stop()
            if os.path.lexists(self.spool):
                os.unlink(self.spool)
        return stop

    def serve(self):
        """popa3d's UIDL listing, or None (it refused the mailbox)."""
        port = free_port()
        stop = self.start(port)
        try:
            return peer_session(port, SYS_USER, SYS_PW)
        except poplib.error_proto:
            return None
        finally:
            stop()


class RealMailutils(Base):

    def setUp(self):
        super().setUp()
        self.mu = GnuPop3d(self)

    def test_same_uidls_and_a_forged_copy(self):
        self.mu.write(self.mu.corpus())
        before = self.mu.serve()
        with open(self.mu.mbox, "rb") as f:
            text = f.read()
        self.assertEqual(text.count(b"\nX-UIDL: "), 5, "GNU pop3d wrote its X-UIDL fields")
        self.assertEqual(before[4], (5, "5f1a2b3c4d5e6f70"))
        got, log = self.pop3d("xuidl", user=SYS_USER)
        self.assertEqual(got, before)
        # after pop3d's first session: a message with a copy of an X-UIDL
        forged = before[1][1]
        with open(self.mu.mbox, "ab") as f:
            f.write(mbox_of([(b"Tue Jan  2 10:00:00 2024", [b"X-UIDL: " + forged.encode(),
                                                            b"Subject: forged"], b"x\n")]))
        got2, log = self.pop3d("xuidl", user=SYS_USER)
        self.assertEqual(got2[:5], before)
        self.assertNotEqual(got2[5][1], forged)
        self.assertRegex(got2[5][1], RE_OWN_MBOX)

    def test_messages_it_never_listed_have_own_uidls(self):
        """GNU pop3d writes X-UIDL only for what UIDL asked about: mail
        that came after its last UIDL has none, so pop3d's own UIDL."""
        self.mu.write(self.mu.corpus())
        before = self.mu.serve()
        with open(self.mu.mbox, "ab") as f:
            f.write(mbox_of([(b"Tue Jan  2 10:00:00 2024", [b"Subject: late"], b"late\n")]))
        self.mu.serve(cmds=("RETR 6",), uidl=False)
        got, log = self.pop3d("xuidl", user=SYS_USER)
        self.assertEqual(got[:5], before)
        self.assertRegex(got[5][1], RE_OWN_MBOX)


class RealPopa3d(Base):

    def setUp(self):
        super().setUp()
        self.pa = Popa3d(self)

    def serve(self, data):
        self.pa.write(data)
        return self.pa.serve()

    def compare(self, data):
        before = self.serve(data)
        for f in os.listdir(self.e.lockdir):
            if f.endswith(".popa3d"):
                os.unlink(os.path.join(self.e.lockdir, f))
        got, log = self.pop3d("popa3d", user=SYS_USER)
        want = expected_popa3d(data)
        if before is None:
            self.assertEqual(want, [None] * len(got), "the model says popa3d refuses it too")
            for _, u in got:
                self.assertRegex(u, RE_OWN_MBOX)
            return before, got
        self.assertEqual(len(before), len(popa3d_model(data)), "the model's split")
        seen = set()
        if len(before) == len(got):
            for (n, p), (_, u) in zip(before, got):
                if p in seen:
                    self.assertRegex(u, RE_OWN_MBOX, "message %d: popa3d's duplicate" % n)
                else:
                    self.assertEqual(u, p, "message %d" % n)
                seen.add(p)
        for (n, u), w in zip(got, want):
            self.assertEqual(u if w is not None else None, w, "message %d (model)" % n)
        return before, got

    def test_same_uidls(self):
        data = mbox_of(hdr_msgs(5, b"pa", lambda i: [b"Delivered-To: u%d@example.net" % i]))
        before, got = self.compare(data)
        self.assertEqual(got, before)

    def test_the_research_mbox_with_duplicates(self):
        before, got = self.compare(research_mbox())
        self.assertEqual(before[2][1], before[3][1], "popa3d names messages 3 and 4 alike")
        self.assertEqual(got[2], before[2])
        self.assertRegex(got[3][1], RE_OWN_MBOX)

    def test_64k_from_line_quirk(self):
        """After a From_ line split across popa3d's 64 KiB reads, a "From "
        line is a header line; after one that is not split, popa3d refuses
        the mbox. pop3d follows it either way."""
        for before, refused in ((10, False), (40, False), (500, True)):
            with self.subTest(before=before):
                head = b"From x@y Mon Jan  1 00:00:00 2024\nReceived: r\n\n"
                at = 65536 - before
                data = head + b"a" * (at - 2 - len(head)) + b"\n\n"
                data += (b"From alice@example.org Mon Jan  1 10:00:00 2024\n"
                         b"From second line\nReceived: s\n\nbody\n")
                got_popa3d, got = self.compare(data)
                self.assertEqual(got_popa3d is None, refused)

    def test_random_mboxes(self):
        rng = random.Random(15)
        for k in range(6):
            with self.subTest(k=k):
                self.compare(random_mbox(rng))


# ====================================================================== real clients

class Clients(Base):
    """mpop and fetchmail, leaving mail on the server: a run against the old
    server, then one against pop3d on the same port: nothing downloaded
    again. Also against pop3d without -U, to show that they would."""

    def mpop(self, work, port, user, pw):
        os.makedirs(os.path.join(work, "out", "new"), exist_ok=True)
        for s in ("cur", "tmp"):
            os.makedirs(os.path.join(work, "out", s), exist_ok=True)
        rc = os.path.join(work, "mpoprc")
        with open(rc, "w") as f:
            f.write("defaults\ntls off\ntimeout 15\naccount t\nhost 127.0.0.1\nport %d\n"
                    "user %s\npassword \"%s\"\nauth user\ndelivery maildir %s/out\n"
                    "keep on\nonly_new on\nreceived_header off\nuidls_file %s/uidls\n"
                    % (port, user, pw, work, work))
        os.chmod(rc, 0o600)
        before = self.count(work)
        r = subprocess.run(["mpop", "-C", rc, "-q", "t"], capture_output=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "HOME": work, "LANG": "C"}, cwd=work)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return self.count(work) - before

    def fetchmail(self, work, port, user, pw):
        out = os.path.join(work, "out", "new")
        os.makedirs(out, exist_ok=True)
        mda = os.path.join(work, "deliver")
        with open(mda, "w") as f:
            f.write('#!/bin/sh\nexec cat > "$(mktemp "$1/msg.XXXXXXXX")"\n')
        os.chmod(mda, 0o755)
        rc = os.path.join(work, "fetchmailrc")
        with open(rc, "w") as f:
            f.write("set no bouncemail\nset no syslog\n"
                    "poll 127.0.0.1 service %d protocol POP3 uidl auth password timeout 15\n"
                    '  user "%s" there with password "%s" is "%s" here\n'
                    "  keep sslproto ''\n  mda \"%s %s\"\n"
                    % (port, user, pw, pwd.getpwuid(os.getuid()).pw_name, mda, out))
        os.chmod(rc, 0o600)
        before = self.count(work)
        r = subprocess.run(["fetchmail", "-N", "-f", rc, "--idfile", os.path.join(work, "ids")],
                           capture_output=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "HOME": work, "LANG": "C",
                                "FETCHMAILHOME": work}, cwd=work)
        self.assertIn(r.returncode, (0, 1), r.stdout + r.stderr)
        return self.count(work) - before

    @staticmethod
    def count(work):
        return sum(len(os.listdir(os.path.join(work, "out", s)))
                   for s in ("new", "cur") if os.path.isdir(os.path.join(work, "out", s)))

    def pop3d_on(self, port, sources):
        a = [POP3D, "-n", "-D", "0", "-f", self.e.userfile, "-l", self.e.lockdir]
        return Listener(a + (["-U", sources] if sources else []), port,
                        os.path.join(self.e.dir, "pop3d-%d.log" % port))

    def switch(self, client, old, user, pw, sources, n):
        """client against old (a callable: start the old server on port and
        return a stop callable), then against pop3d -U sources."""
        if not shutil.which(client):
            self.fail("%s is not installed (scripts/deps.sh installs it)" % client)
        fetch = getattr(self, client)
        port = free_port()
        work = os.path.join(self.e.dir, client)
        control = os.path.join(self.e.dir, client + "-control")
        os.makedirs(work)
        stop = old(port)
        try:
            self.assertEqual(fetch(work, port, user, pw), n, "first run, old server")
        finally:
            stop()
        shutil.copytree(work, control)
        l = self.pop3d_on(port, sources)
        try:
            self.assertEqual(fetch(work, port, user, pw), 0,
                             "%s downloaded again after the switch" % client)
        finally:
            l.stop()
        l = self.pop3d_on(port, None)
        try:
            self.assertEqual(fetch(control, port, user, pw), n,
                             "without -U everything is new to the client")
        finally:
            l.stop()

    def dovecot_case(self, client):
        self.need_root("Dovecot runs its mail processes as the Maildir's owner")
        if not Dovecot.available():
            self.skipTest("Dovecot is not installed (scripts/deps.sh installs it)")
        box = self.user_maildir()
        for i in range(4):
            box.put("new" if i % 2 else "cur", "170410320%d.M%dP1.host" % (i, i)
                    + ("" if i % 2 else ":2,S"), b"Subject: %d\n\nbody %d\n" % (i, i))

        def old(port):
            dv = Dovecot(self.e.dir, "alice", PW, self.e.uid, self.e.gid, box.root, port)
            dv.start()
            return dv.stop
        self.switch(client, old, "alice", PW, "dovecot", 4)

    def test_mpop_dovecot(self):
        self.dovecot_case("mpop")

    def test_fetchmail_dovecot(self):
        self.dovecot_case("fetchmail")

    def test_mpop_mailutils(self):
        mu = GnuPop3d(self)
        mu.write(mu.corpus())
        self.switch("mpop", mu.start, SYS_USER, SYS_PW, "xuidl", 5)

    def test_fetchmail_mailutils(self):
        mu = GnuPop3d(self)
        mu.write(mu.corpus())
        self.switch("fetchmail", mu.start, SYS_USER, SYS_PW, "xuidl", 5)

    def test_mpop_popa3d(self):
        pa = Popa3d(self)
        pa.write(mbox_of(hdr_msgs(4, b"pc", lambda i: [b"Delivered-To: u%d@example.net" % i])))
        self.switch("mpop", pa.start, SYS_USER, SYS_PW, "popa3d", 4)


# ====================================================================== runner

def main():
    return R.suite_main(sys.modules[__name__], "pop3d migration tests (-U)")


if __name__ == "__main__":
    sys.exit(main())
