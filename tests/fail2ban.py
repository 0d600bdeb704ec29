#!/usr/bin/python3
"""The fail2ban filter against log lines pop3d really wrote.

    tests/fail2ban.py [-k PATTERN]... [-l]

Runs real pop3d sessions with -e (the log lines then also go to stderr as
"pop3d[PID]: MSG"): over TCP under systemd-socket-activate on 127.0.0.1 and
on [::1], and over pipes with REMOTE_ADDR set (IPv4 and IPv6): good logins,
wrong passwords, unknown users, a bad APOP digest, a connection that uses up
its attempts. Each captured line gets the prefix rsyslog writes in
/var/log/mail.log - "Nov 27 12:00:00 HOST " (traditional) in one log file,
"2025-11-27T12:00:00.123456+00:00 HOST " (RFC 3339) in another - and Debian's
fail2ban-regex runs contrib/fail2ban/filter.d/pop3d.conf (next to a copy of
the system's common.conf) on both. Every "auth failed" and "auth limit" line
must match with the right address, nothing else may match (no login or
logout line). `fail2ban-client -t` checks the jail example.

Prints "ok NAME" / "FAIL NAME" lines and "N passed, N failed"; exit 1 on
failure. Runs as root or unprivileged.
"""

import sys
sys.dont_write_bytecode = True

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pop3lib import (POP3D, IS_ROOT, REPO, Env, Session, SocketTransport, crypt_hash,  # noqa: E402
                     apop_digest, wait_for)
import run                                                          # noqa: E402

FILTER = os.path.join(REPO, "contrib", "fail2ban", "filter.d", "pop3d.conf")
JAIL = os.path.join(REPO, "contrib", "fail2ban", "jail.d", "pop3d.conf")
COMMON = "/etc/fail2ban/filter.d/common.conf"
PW = "secret"
LONG_NAME = "a.very+long_user-name@example.org." + "x" * 30      # 64 octets


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


class Activator6:
    """systemd-socket-activate --accept --inetd on [::1]:PORT."""

    def __init__(self, env, argv):
        self.logpath = os.path.join(env.dir, "activator6.log")
        self.log = open(self.logpath, "wb")
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.proc = subprocess.Popen(
            ["systemd-socket-activate", "--accept", "--inetd", "-l", "[::1]:%d" % self.port]
            + argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
            env=env.child_env(), start_new_session=True, close_fds=True)
        if not wait_for(lambda: "Listening on" in self.logtext() or self.proc.poll() is not None,
                        timeout=5) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("systemd-socket-activate on [::1] did not start: "
                                 + self.logtext())

    def session(self):
        sock = socket.create_connection(("::1", self.port), timeout=15)
        return Session(SocketTransport(sock))

    def logtext(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("latin-1")

    def stop(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=3)
                break
            except subprocess.TimeoutExpired:
                pass
        self.log.close()


def pop3d_lines(text):
    return [l for l in text.splitlines() if re.match(r"^pop3d\[\d+\]: ", l)]


class Fail2ban(unittest.TestCase):

    def setUp(self):
        for prog in ("fail2ban-regex", "fail2ban-client", "systemd-socket-activate"):
            if not shutil.which(prog):
                self.fail("%s is not installed (scripts/deps.sh installs it)" % prog)
        self.e = Env()
        self.addCleanup(self.e.cleanup)
        self.e.add_user("alice", crypt_hash(PW, "$y$"))
        self.e.add_user("bob", "{PLAIN}" + PW)          # so APOP is offered
        self.e.add_user(LONG_NAME, crypt_hash(PW, "$y$"))
        self.e.write_userfile()

    # ---- sessions of every kind from one transport
    def sessions(self, connect):
        """Good and bad logins; returns nothing, the log lines tell."""
        s = connect()                                   # good login, QUIT
        self.assertTrue(s.login("alice", PW).startswith("+OK"))
        self.assertTrue(s.quit().startswith("+OK"))
        s.close()
        s = connect()                                   # wrong password, then right
        s.cmd("USER alice")
        self.assertTrue(s.cmd("PASS wrong").startswith("-ERR [AUTH]"))
        self.assertTrue(s.login("alice", PW).startswith("+OK"))
        self.assertTrue(s.quit().startswith("+OK"))
        s.close()
        s = connect()                                   # unknown user, long name, bad APOP
        s.cmd("USER nosuchuser")
        self.assertTrue(s.cmd("PASS " + PW).startswith("-ERR [AUTH]"))
        s.cmd("USER " + LONG_NAME)
        self.assertTrue(s.cmd("PASS wrong").startswith("-ERR [AUTH]"))
        ts = s.timestamp()
        self.assertTrue(ts, "no APOP timestamp: %r" % s.greeting)
        self.assertTrue(s.cmd("APOP bob " + apop_digest(ts, "wrong")).startswith("-ERR [AUTH]"))
        s.expect_eof()                                  # the third failure closes
        s.close()
        s = connect()                                   # good APOP
        self.assertTrue(s.cmd("APOP bob " + apop_digest(s.timestamp(), PW)).startswith("+OK"))
        self.assertTrue(s.quit().startswith("+OK"))
        s.close()

    def pipe_session(self, remote_addr):
        env = self.e.child_env({"REMOTE_ADDR": remote_addr})

        def connect():
            return self.e.session(["-e"], env=env)
        out = []
        self.sessions(connect)
        for p in self.e.procs:
            p.wait(timeout=15)
            out += pop3d_lines(p.stderr.read().decode("latin-1"))
            p.stderr.close()
        self.e.procs = []
        return out

    def collect(self):
        lines = []
        act4 = self.e.activate(["-e"])
        self.sessions(act4.session)
        if not have_ipv6_loopback():
            self.fail("no IPv6 on the loopback interface: cannot test ::1")
        act6 = Activator6(self.e, self.e.args(["-e"]))
        self.addCleanup(act6.stop)
        self.sessions(act6.session)
        lines += self.pipe_session("192.0.2.55")
        lines += self.pipe_session("2001:db8::55")
        # the sessions have ended (QUIT or the third failure): wait for the
        # last lines to be written
        for act in (act4, act6):
            wait_for(lambda: act.logtext().count("died with code") >= 4, timeout=10)
            lines += pop3d_lines(act.logtext())
        return lines

    def fail2ban_regex(self, logfile, out):
        conf = tempfile.mkdtemp(prefix="pop3d-f2b-", dir=self.e.dir)
        os.mkdir(os.path.join(conf, "filter.d"))
        shutil.copy(FILTER, os.path.join(conf, "filter.d", "pop3d.conf"))
        shutil.copy(COMMON, os.path.join(conf, "filter.d", "common.conf"))
        p = subprocess.run(["fail2ban-regex", "-o", out, logfile,
                            os.path.join(conf, "filter.d", "pop3d.conf")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-2000:])
        return p.stdout.decode().splitlines()

    def test_filter_on_real_log_lines(self):
        lines = self.collect()
        host = socket.gethostname().split(".")[0] or "localhost"
        fails = [l for l in lines if re.search(r": auth (failed|limit) ", l)]
        others = [l for l in lines if l not in fails]
        # what the sessions must have logged, so the test can fail
        for addr in ("127.0.0.1", "::1", "192.0.2.55", "2001:db8::55"):
            with self.subTest(rhost=addr):
                a = re.escape(addr)
                self.assertEqual(len([l for l in fails if re.search(
                    r": auth failed user=\S+ rhost=%s$" % a, l)]), 4, "\n".join(lines))
                self.assertEqual(len([l for l in fails if re.search(
                    r": auth limit rhost=%s failures=3$" % a, l)]), 1, "\n".join(lines))
                self.assertEqual(len([l for l in others if re.search(
                    r": login user=\S+ rhost=%s " % a, l)]), 3, "\n".join(lines))
                self.assertEqual(len([l for l in others if re.search(
                    r": logout user=\S+ rhost=%s " % a, l)]), 3, "\n".join(lines))
        self.assertTrue(any("user=unknown " in l for l in fails))
        self.assertTrue(any("user=%s " % LONG_NAME in l for l in fails))
        want_ips = [re.search(r"rhost=(\S+)", l).group(1) for l in fails]

        now = time.time()
        stamps = {
            "traditional": lambda i: time.strftime("%b %e %H:%M:%S", time.localtime(now + i)),
            "rfc3339": lambda i: time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00",
                                               time.gmtime(now + i)),
        }
        for style, stamp in stamps.items():
            with self.subTest(style=style):
                logfile = os.path.join(self.e.dir, "mail-%s.log" % style)
                written = ["%s %s %s" % (stamp(i // 10), host, l) for i, l in enumerate(lines)]
                with open(logfile, "w") as f:
                    f.write("".join(l + "\n" for l in written))
                matched = self.fail2ban_regex(logfile, "msg")
                want = [w for w, l in zip(written, lines) if l in fails]
                self.assertEqual(sorted(matched), sorted(want),
                                 "matched lines differ from the auth failure lines")
                for m in matched:
                    self.assertNotRegex(m, r": (login|logout) ")
                self.assertEqual(self.fail2ban_regex(logfile, "ip"), want_ips)

    def test_jail_config(self):
        conf = tempfile.mkdtemp(prefix="pop3d-f2bconf-", dir=self.e.dir)
        shutil.copytree("/etc/fail2ban", conf, dirs_exist_ok=True)
        for f in os.listdir(os.path.join(conf, "jail.d")):    # only ours
            os.unlink(os.path.join(conf, "jail.d", f))
        shutil.copy(FILTER, os.path.join(conf, "filter.d", "pop3d.conf"))
        logfile = os.path.join(self.e.dir, "mail.log")
        open(logfile, "w").close()
        with open(JAIL) as f:
            jail = re.sub(r"(?m)^logpath\s*=.*$", "logpath = " + logfile, f.read())
        with open(os.path.join(conf, "jail.d", "pop3d.conf"), "w") as f:
            f.write(jail)
        p = subprocess.run(["fail2ban-client", "-c", conf, "-d"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-2000:])
        dump = p.stdout.decode()
        self.assertIn("['add', 'pop3d', 'auto']", dump)
        self.assertIn("'addlogpath', '%s'" % logfile, dump)
        self.assertIn("['set', 'pop3d', 'maxretry', 8]", dump)
        self.assertIn("auth failed user=", dump)
        p = subprocess.run(["fail2ban-client", "-c", conf, "-t"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, (p.stdout + p.stderr).decode(errors="replace"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", action="append", default=[], metavar="PATTERN")
    ap.add_argument("-l", "--list", action="store_true")
    opts = ap.parse_args()
    signal.signal(signal.SIGALRM, run.on_alarm)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    tests = list(run.iter_tests(unittest.TestLoader().loadTestsFromModule(sys.modules[__name__])))
    if opts.k:
        tests = [t for t in tests if any(p.lower() in run.test_name(t).lower() for p in opts.k)]
    if opts.list:
        for t in tests:
            print(run.test_name(t))
        return 0
    print("# fail2ban filter on pop3d's log lines: %s (%s, uid %d)"
          % (POP3D, "root" if IS_ROOT else "unprivileged", os.getuid()))
    res = run.Result()
    for t in tests:
        t.run(res)
    return res.summary()


if __name__ == "__main__":
    sys.exit(main())
