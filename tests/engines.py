#!/usr/bin/python3
"""pop3d behind the real proxy engines (issue 13): nginx's mail proxy with
per-user routing to two pop3d backends, and HAProxy in TCP mode in front of
two backends (PROXY v2, balance source, health checks as v2 LOCAL, failover,
TLS passed through to pop3d -s, TLS terminated by HAProxy with the SSL TLV);
and two pop3d instances on one store (a Maildir session through one gets
[IN-USE] through the other; an mbox needs one state directory).

The engines run the configurations shipped in contrib/nginx and
contrib/haproxy, with the test's loopback addresses, ports and paths put in.
Backends listen on 127.0.0.2 and 127.0.0.3, the proxies connect from
127.0.0.1 (the one trusted address, -P 127.0.0.1) and the clients connect
from 127.0.0.5: every backend log line must name 127.0.0.5.

    tests/engines.py [-k PATTERN]... [-l]

Prints "ok NAME", "FAIL NAME" or "skip NAME: reason" per test and "N passed,
N failed[, N skipped]"; exit status 0 only when nothing failed. nginx (with
libnginx-mod-mail) and haproxy come from scripts/deps.sh; a missing one fails.
"""

import sys
sys.dont_write_bytecode = True

import os
import re
import shutil
import socket
import ssl
import subprocess
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as R                           # noqa: E402
import maildirlib as md                   # noqa: E402
from pop3lib import (IS_ROOT, REPO, stop_group, Session, SocketTransport, ProtocolError,  # noqa: E402
                     free_port, wait_for)

PW = R.PW
RE_LOGIN = R.RE_LOGIN
CLIENT = "127.0.0.5"
NGINX_CONF = os.path.join(REPO, "contrib", "nginx", "pop3d-proxy.conf")
HAPROXY_CONF = os.path.join(REPO, "contrib", "haproxy", "haproxy.cfg")


def listening(addr, port):
    try:
        socket.create_connection((addr, port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Backend:
    """pop3d under systemd-socket-activate on addr:port."""

    def __init__(self, env, name, addr, port, extra, userfile=None, lockdir=None):
        self.name, self.addr, self.port = name, addr, port
        self.logpath = os.path.join(env.dir, "backend-%s-%d.log" % (name, port))
        self.log = open(self.logpath, "ab")
        argv = env.args(["-e", "-P", "127.0.0.1"] + list(extra), userfile=userfile,
                        lockdir=lockdir)
        self.proc = subprocess.Popen(["systemd-socket-activate", "--accept", "--inetd",
                                      "-l", "%s:%d" % (addr, port)] + argv,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log, env=env.child_env(),
                                     start_new_session=True)
        if not wait_for(lambda: listening(addr, port) or self.proc.poll() is not None,
                        timeout=5) or self.proc.poll() is not None:
            raise ProtocolError("backend %s did not listen" % name)

    def logtext(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("latin-1")

    def pop3d_lines(self):
        return [l for l in self.logtext().splitlines() if l.startswith("pop3d[")]

    def stop(self):
        stop_group(self.proc)
        self.log.close()


def connect(port, tls_ctx=None):
    """A client connection from CLIENT to the proxy on 127.0.0.1:port."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20,
                                    source_address=(CLIENT, 0))
    if tls_ctx is not None:
        sock = tls_ctx.wrap_socket(sock, server_hostname="localhost")
    return Session(SocketTransport(sock))


class EngineBase(R.Base):

    def setUp(self):
        super().setUp()
        self.backends = []
        self.daemons = []
        self.addCleanup(self.stop_all)

    def stop_all(self):
        for p in self.daemons:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for b in self.backends:
            b.stop()

    def backend(self, name, addr, port, extra=(), **kw):
        b = Backend(self.e, name, addr, port, extra, **kw)
        self.backends.append(b)
        return b

    def users(self):
        """alice (an mbox) lives on backend A, bob (a Maildir) on B: each
        backend has a user file of its own users only, as separate hosts
        would."""
        self.alice_box = R.MboxBox(self.e, "alice")
        self.e.add_user("alice", "{PLAIN}" + PW, mbox=self.alice_box.path)
        self.e.write_userfile()
        self.alice_box.write(R.simple_raws(3, b"a"))
        self.users_a = self.e.userfile
        ids = (self.e.uid, self.e.gid) if IS_ROOT else (None, None)
        self.bob_box = md.Maildir(os.path.join(self.e.maildir, "bob.Maildir") + "/", *ids)
        self.bob_box.write(R.simple_raws(2, b"b"))
        self.users_b = os.path.join(self.e.dir, "passwd-b")
        u, g = self.e.ids()
        with open(self.users_b, "w") as f:
            f.write("bob:{PLAIN}%s:%s:%s:Bob:%s\n" % (PW, u, g, self.bob_box.path))
        os.chmod(self.users_b, 0o600)
        self.lock_b = os.path.join(self.e.dir, "locks-b")
        os.mkdir(self.lock_b, 0o700)

    def fetch_delete_refetch(self, port, user, n, tls_ctx=None):
        """Fetch all, delete the first, quit; then the next session sees one
        message less."""
        s = connect(port, tls_ctx)
        self.assertRegex(s.login(user, PW), RE_LOGIN)
        count, _ = self.stat(s)
        self.assertEqual(count, n)
        for i in range(1, count + 1):
            self.assertTrue(self.retr(s, i))
        self.assertOk(s.cmd("DELE 1"))
        self.assertTrue(s.quit().startswith("+OK"))
        s = connect(port, tls_ctx)
        self.assertRegex(s.login(user, PW), RE_LOGIN)
        self.assertEqual(self.stat(s)[0], n - 1)
        self.assertTrue(s.quit().startswith("+OK"))

    def names_client(self, b, user):
        """Every line b logged for user names the client, not the proxy."""
        wait_for(lambda: "logout user=%s" % user in b.logtext(), timeout=5)
        lines = [l for l in b.pop3d_lines() if "user=%s " % user in l]
        self.assertTrue(lines, b.logtext())
        for l in lines:
            self.assertIn("rhost=%s " % CLIENT, l + " ")
        self.assertRegex(b.logtext(), r"login user=%s rhost=%s .*proxy=127\.0\.0\.1"
                         % (user, re.escape(CLIENT)))


# ====================================================================== nginx

class Nginx(EngineBase):
    """nginx's mail proxy (contrib/nginx/pop3d-proxy.conf): its auth_http is
    nginx's own http block, a map from user name to backend."""

    def start_nginx(self, backend_port):
        if not shutil.which("nginx") or not os.path.exists(
                "/usr/lib/nginx/modules/ngx_mail_module.so"):
            self.fail("nginx with the mail module is not installed (scripts/deps.sh)")
        d = os.path.join(self.e.dir, "nginx")
        os.makedirs(d)
        self.front, auth = free_port(), free_port()
        with open(NGINX_CONF) as f:
            conf = f.read()
        subs = [
            (r"(?m)^pid .*;$", "pid %s/nginx.pid;" % d),
            (r"(?m)^error_log .*;$", "error_log %s/error.log info;" % d),
            (r"(?m)^worker_processes .*;$", "worker_processes 1;"),
            (r"(?m)^http \{$", "http {\n    client_body_temp_path %s/b; proxy_temp_path %s/p;"
             " fastcgi_temp_path %s/f; uwsgi_temp_path %s/u; scgi_temp_path %s/s;"
             % (d, d, d, d, d)),
            (r"192\.0\.2\.21", "127.0.0.2"),
            (r"192\.0\.2\.22", "127.0.0.3"),
            (r"add_header Auth-Port 110;", "add_header Auth-Port %d;" % backend_port),
            (r"127\.0\.0\.1:9110", "127.0.0.1:%d" % auth),
            (r"(?m)^        listen 110;$", "        listen 127.0.0.1:%d;" % self.front),
        ]
        for pat, rep in subs:
            conf, n = re.subn(pat, rep, conf)
            self.assertGreater(n, 0, "the shipped nginx config has no %r" % pat)
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.nginx_log = os.path.join(d, "error.log")
        p = subprocess.Popen(["nginx", "-c", path, "-g", "daemon off;"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(d, "stderr"), "wb"))
        self.daemons.append(p)
        if not wait_for(lambda: listening("127.0.0.1", self.front) or p.poll() is not None,
                        timeout=10) or p.poll() is not None:
            with open(os.path.join(d, "stderr")) as f:
                self.fail("nginx did not start: %s" % f.read()[-2000:])

    def test_per_user_routing_to_two_backends(self):
        self.users()
        port = free_port()
        a = self.backend("A", "127.0.0.2", port, ["-D", "1"], userfile=self.users_a)
        b = self.backend("B", "127.0.0.3", port, ["-D", "1"], userfile=self.users_b,
                         lockdir=self.lock_b)
        self.start_nginx(port)
        self.fetch_delete_refetch(self.front, "alice", 3)
        self.fetch_delete_refetch(self.front, "bob", 2)
        self.assertEqual(len(self.alice_box_messages()), 2)
        self.assertEqual(len(self.bob_box.messages()), 1)
        self.names_client(a, "alice")
        self.names_client(b, "bob")
        self.assertNotIn("user=bob", a.logtext())
        self.assertNotIn("user=alice", b.logtext())
        # a wrong password: pop3d's -ERR [AUTH], after pop3d's delay (-D 1)
        s = connect(self.front)
        self.assertOk(s.cmd("USER alice"))
        t0 = time.monotonic()
        st = s.cmd("PASS wrong", timeout=30)
        took = time.monotonic() - t0
        self.assertTrue(st.startswith("-ERR"), st)
        self.assertIn("[AUTH]", st)
        self.assertGreaterEqual(took, 0.9, "no delay: %.2f s" % took)
        s.close()
        wait_for(lambda: "auth failed" in a.logtext(), timeout=5)
        self.assertRegex(a.logtext(), r"auth failed user=alice rhost=%s\n" % re.escape(CLIENT))

    def alice_box_messages(self):
        return self.alice_box.messages()


# ====================================================================== HAProxy

class Haproxy(EngineBase):
    """HAProxy in TCP mode (contrib/haproxy/haproxy.cfg)."""

    def start_haproxy(self, ports, terminated=False, pem=None):
        if not shutil.which("haproxy"):
            self.fail("haproxy is not installed (scripts/deps.sh)")
        d = os.path.join(self.e.dir, "haproxy")
        os.makedirs(d, exist_ok=True)
        with open(HAPROXY_CONF) as f:
            conf = f.read()
        self.front, self.front_s, self.front_t = free_port(), free_port(), free_port()
        if terminated:      # the commented example at the end, made live
            head, tail = conf.split("# frontend pop3s-terminated", 1)
            tail = "# frontend pop3s-terminated" + tail
            conf = head + re.sub(r"(?m)^# ?", "", tail)
        subs = [
            (r"(?m)^    log /dev/log local0$", "    log stderr format raw local0 notice"),
            (r"(?m)^    bind :110$", "    bind 127.0.0.1:%d" % self.front),
            (r"(?m)^    bind :995$", "    bind 127.0.0.1:%d" % self.front_s),
            (r"192\.0\.2\.21:110", "127.0.0.2:%d" % ports[0]),
            (r"192\.0\.2\.22:110", "127.0.0.3:%d" % ports[0]),
            (r"192\.0\.2\.21:995", "127.0.0.2:%d" % ports[1]),
            (r"192\.0\.2\.22:995", "127.0.0.3:%d" % ports[1]),
            (r"inter 2s fall 2 rise 2", "inter 300ms fall 1 rise 1"),
        ]
        if terminated:
            subs += [(r"(?m)^    bind :995 ssl crt \S+$",
                      "    bind 127.0.0.1:%d ssl crt %s" % (self.front_t, pem)),
                     (r"192\.0\.2\.21:996", "127.0.0.2:%d" % ports[2]),
                     (r"192\.0\.2\.22:996", "127.0.0.3:%d" % ports[2])]
        for pat, rep in subs:
            conf, n = re.subn(pat, rep, conf)
            self.assertGreater(n, 0, "the shipped HAProxy config has no %r" % pat)
        path = os.path.join(d, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(conf)
        r = subprocess.run(["haproxy", "-c", "-f", path], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.halog = os.path.join(d, "stderr")
        p = subprocess.Popen(["haproxy", "-db", "-f", path], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=open(self.halog, "wb"))
        self.daemons.append(p)
        if not wait_for(lambda: listening("127.0.0.1", self.front) or p.poll() is not None,
                        timeout=10) or p.poll() is not None:
            with open(self.halog) as f:
                self.fail("haproxy did not start: %s" % f.read()[-2000:])

    def test_balance_health_checks_and_failover(self):
        self.users()
        # both backends serve alice's mbox here (a shared store, and one
        # shared state directory: see the mbox test below)
        port = free_port()
        a = self.backend("A", "127.0.0.2", port)
        b = self.backend("B", "127.0.0.3", port)
        self.start_haproxy((port, free_port()))
        time.sleep(1.5)                         # a few health checks
        for be in (a, b):
            text = be.logtext()
            self.assertGreaterEqual(text.count("Connection from 127.0.0.1"), 2, text)
            self.assertEqual(be.pop3d_lines(), [], "health checks logged: %s" % text)
        s = connect(self.front)
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.assertTrue(s.quit().startswith("+OK"))
        wait_for(lambda: any("logout user=alice" in be.logtext() for be in (a, b)), timeout=5)
        first = a if "logout user=alice" in a.logtext() else b
        other = b if first is a else a
        self.names_client(first, "alice")
        # balance source: the same client lands on the same backend again
        s = connect(self.front)
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.assertTrue(s.quit().startswith("+OK"))
        wait_for(lambda: first.logtext().count("logout user=alice") == 2, timeout=5)
        self.assertNotIn("user=alice", other.logtext())
        # that backend goes away: new sessions go to the other one
        first.stop()
        self.backends.remove(first)
        time.sleep(1.5)
        s = connect(self.front)
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.assertTrue(s.quit().startswith("+OK"))
        self.names_client(other, "alice")

    def test_tls_passed_through_to_pop3d_s(self):
        import tls as T
        c = T.certs()
        self.users()
        port, port_s = free_port(), free_port()
        extra = ["-s", "-c", c.cert("ec"), "-k", c.key("ec")]
        a = self.backend("A", "127.0.0.2", port_s, extra)
        b = self.backend("B", "127.0.0.3", port_s, extra)
        self.start_haproxy((port, port_s))
        time.sleep(1)
        ctx = ssl.create_default_context(cafile=c.ca)
        s = connect(self.front_s, ctx)
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.assertTrue(s.quit().startswith("+OK"))
        wait_for(lambda: any("logout user=alice" in be.logtext() for be in (a, b)), timeout=5)
        be = a if "logout user=alice" in a.logtext() else b
        self.names_client(be, "alice")
        self.assertRegex(be.logtext(), r"login user=alice rhost=%s .*tls=TLSv1\.[23]"
                         % re.escape(CLIENT))
        for x in (a, b):            # health checks (LOCAL, then nothing): no line
            self.assertNotRegex(x.logtext(), r"error (tls|proxy)")

    def test_tls_terminated_by_haproxy_counts_as_tls(self):
        """send-proxy-v2-ssl: the SSL TLV lets a pop3d that requires TLS
        (-c/-k without -p) take USER/PASS that came over HAProxy's TLS."""
        import tls as T
        c = T.certs()
        self.users()
        pem = os.path.join(self.e.dir, "haproxy.pem")
        with open(pem, "wb") as f:
            for part in (c.cert("ec"), c.key("ec")):
                with open(part, "rb") as g:
                    f.write(g.read())
        os.chmod(pem, 0o600)
        port, port_s, port_t = free_port(), free_port(), free_port()
        extra = ["-c", c.cert("ec"), "-k", c.key("ec")]
        a = self.backend("A", "127.0.0.2", port_t, extra)
        b = self.backend("B", "127.0.0.3", port_t, extra)
        self.start_haproxy((port, port_s, port_t), terminated=True, pem=pem)
        ctx = ssl.create_default_context(cafile=c.ca)
        s = connect(self.front_t, ctx)
        st, lines = s.cmd_lines("CAPA")
        self.assertIn("USER", lines)
        self.assertNotIn("STLS", lines)
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.assertTrue(s.quit().startswith("+OK"))
        wait_for(lambda: any("logout user=alice" in be.logtext() for be in (a, b)), timeout=5)
        be = a if "logout user=alice" in a.logtext() else b
        self.assertRegex(be.logtext(), r"login user=alice rhost=%s .*tls=proxy "
                         % re.escape(CLIENT))


# ====================================================================== one store

class OneStore(EngineBase):
    """Two pop3d instances (two addresses, as two hosts) on one store."""

    def second_refused(self, a, b, user):
        s1 = connect_direct(a)
        self.assertRegex(s1.login(user, PW), RE_LOGIN)
        s2 = connect_direct(b)
        self.assertOk(s2.cmd("USER " + user))
        t0 = time.monotonic()
        st = s2.cmd("PASS " + PW)
        self.assertEqual(st, "-ERR [IN-USE] maildrop is locked by another session")
        self.assertLess(time.monotonic() - t0, 5, "the second session waited")
        self.assertTrue(s1.quit().startswith("+OK"))
        s2 = connect_direct(b)
        self.assertRegex(s2.login(user, PW), RE_LOGIN)
        self.assertTrue(s2.quit().startswith("+OK"))

    def test_maildir_in_use_across_instances(self):
        """Different state directories: the Maildir's own lock holds."""
        self.users()
        port = free_port()
        a = self.backend("A", "127.0.0.2", port, [], userfile=self.users_b)
        b = self.backend("B", "127.0.0.3", port, [], userfile=self.users_b,
                         lockdir=self.lock_b)
        self.second_refused(a, b, "bob")

    def test_mbox_in_use_with_one_state_directory(self):
        """An mbox's session lock and update journal live in the state
        directory: instances that share it (as pop3d(8) says to) refuse the
        second session."""
        self.users()
        port = free_port()
        a = self.backend("A", "127.0.0.2", port, [], userfile=self.users_a)
        b = self.backend("B", "127.0.0.3", port, [], userfile=self.users_a)
        self.second_refused(a, b, "alice")


def connect_direct(b):
    """A client connection from CLIENT straight to backend b, with the PROXY
    header a proxy would send (b trusts 127.0.0.1 only, and this comes from
    127.0.0.1 as the proxy would)."""
    sock = socket.create_connection((b.addr, b.port), timeout=20,
                                    source_address=("127.0.0.1", 0))
    sock.sendall(("PROXY TCP4 %s %s 50000 %d\r\n" % (CLIENT, b.addr, b.port)).encode())
    return Session(SocketTransport(sock))


def main():
    def cleanup():
        import tls as T
        if T.CERTS is not None:
            T.CERTS.cleanup()
    return R.suite_main(sys.modules[__name__], "pop3d behind nginx and HAProxy",
                        cleanup=cleanup)

if __name__ == "__main__":
    sys.exit(main())
