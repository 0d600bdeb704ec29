#!/usr/bin/python3
"""pop3d over TLS (issue 12): POP3S (-s) and STLS with real clients (Python's
poplib and ssl, openssl s_client, curl, mpop, fetchmail) on an mbox and on a
Maildir, each fetching the same octets as a plain session; CAPA and the
plaintext-login rule (-p); AUTH PLAIN; STLS injection; ALPN; the handshake
timeout; bad, unreadable, unsafe and mismatched keys and certificates; a
renewed certificate; clients that drop mid-handshake and mid-RETR; which
process is what (the relay, the signer gone after the handshake); and the
private key searched for in the memory of every process of a logged-in TLS
session.  Certificates are made by the test: a CA, an RSA and an ECDSA
server certificate for localhost.

    tests/tls.py [-k PATTERN]... [-l]

Prints "ok NAME", "FAIL NAME" or "skip NAME: reason" per test and "N passed,
N failed[, N skipped]"; exit status 0 only when nothing failed.  Runs as root
and unprivileged (root-only tests say so).  testssl.sh runs in tests/testssl.py.
"""

import base64
import sys
sys.dont_write_bytecode = True            # never litter tests/__pycache__

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mboxlib as mb                      # noqa: E402
import run as R                           # noqa: E402
import security as S                      # noqa: E402
from pop3lib import (IS_ROOT, REPO, Session, SocketTransport,  # noqa: E402
                     crypt_hash, proc_status, proc_tree, wait_for)

PW = R.PW
RE_LOGIN = R.RE_LOGIN
CERTS = None                              # the Certs of the run, made once


def have_tls():
    out = subprocess.run([R.POP3D, "-h"], capture_output=True).stdout
    return b"-s          TLS" in out


class Certs:
    """A CA and two server certificates for localhost (and 127.0.0.1), made
    with the openssl command; the keys 0600."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pop3d-tls-certs-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.ca_key, self.ca = self.p("ca.key"), self.p("ca.crt")
        self.run(["req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", self.ca_key,
                  "-out", self.ca, "-days", "30", "-subj", "/CN=pop3d test CA"])
        for kind, new in (("rsa", ["-newkey", "rsa:2048"]),
                          ("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])):
            key, csr, crt = self.p(kind + ".key"), self.p(kind + ".csr"), self.p(kind + ".crt")
            self.run(["req"] + new + ["-nodes", "-keyout", key, "-out", csr,
                                      "-subj", "/CN=localhost"])
            ext = self.p(kind + ".ext")
            with open(ext, "w") as f:
                f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                        "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n"
                        "crlDistributionPoints=URI:http://localhost/pop3d-test.crl\n"
                        "authorityInfoAccess=OCSP;URI:http://localhost/ocsp\n")
            self.run(["x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                      "-CAcreateserial", "-out", crt, "-days", "365", "-extfile", ext])
            os.chmod(key, 0o600)
            # the chain file: the leaf, then the CA
            with open(self.p(kind + ".chain"), "wb") as f:
                f.write(open(crt, "rb").read() + open(self.ca, "rb").read())

    def p(self, name):
        return os.path.join(self.dir, name)

    def run(self, args):
        subprocess.run(["openssl"] + args, check=True, capture_output=True)

    def cert(self, kind):
        return self.p(kind + ".chain")

    def key(self, kind):
        return self.p(kind + ".key")

    def secrets(self, kind):
        """What must never be in a process of a logged-in session: 32-octet
        runs of the key file's PEM body, and of the private numbers (the EC
        scalar; RSA's d, p and q), each in both byte orders."""
        out = []
        body = b"".join(l for l in open(self.key(kind), "rb").read().splitlines()
                        if not l.startswith(b"-----"))
        out += [body[i:i + 32] for i in range(0, len(body) - 31, 16)]
        text = subprocess.run(["openssl", "pkey", "-in", self.key(kind), "-noout", "-text"],
                              capture_output=True, text=True, check=True).stdout
        for name in (("priv",) if kind == "ec" else ("privateExponent", "prime1", "prime2")):
            m = re.search(r"^%s:\s*\n((?:\s+[0-9a-f:]+\n)+)" % name, text, re.M)
            num = bytes.fromhex(re.sub(r"[\s:]", "", m.group(1))).lstrip(b"\0")
            for b in (num, num[::-1]):
                out += [b[i:i + 32] for i in range(0, len(b) - 31, 8)]
        return out

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def certs():
    global CERTS
    if CERTS is None:
        CERTS = Certs()
    return CERTS


class TlsBase(R.Base):

    def setUp(self):
        if not have_tls():
            self.skipTest("pop3d was built without TLS (TLS=no)")
        super().setUp()
        self.c = certs()

    def tls(self, kind="ec", implicit=False, extra=()):
        a = ["-e", "-c", self.c.cert(kind), "-k", self.c.key(kind)]
        if implicit:
            a.append("-s")
        return a + list(extra)

    def ctx(self, alpn=None, verify=True):
        c = ssl.create_default_context(cafile=self.c.ca)
        if not verify:
            c.check_hostname = False
            c.verify_mode = ssl.CERT_NONE
        if alpn is not None:
            c.set_alpn_protocols(alpn)
        return c

    def implicit(self, act, alpn=None, ctx=None):
        raw = act.connect()
        sock = (ctx or self.ctx(alpn)).wrap_socket(raw, server_hostname="localhost")
        return Session(SocketTransport(sock))

    def starttls(self, act, alpn=None):
        """A plain connection, STLS, then the handshake: the session over TLS."""
        raw = act.connect()
        s = Session(SocketTransport(raw))
        self.assertEqual(s.cmd("STLS"), "+OK begin TLS negotiation")
        self.assertEqual(s.pending(), b"")
        sock = self.ctx(alpn).wrap_socket(raw, server_hostname="localhost")
        t = Session(SocketTransport(sock), read_greeting=False)
        t.plain = s
        return t

    def capa(self, s):
        st, lines = s.cmd_lines("CAPA")
        self.assertOk(st)
        return lines

    def quit_ok_sock(self, s):
        self.assertTrue(s.quit().startswith("+OK"))

    def fetch_all(self, s):
        n, _ = self.stat(s)
        return [self.retr(s, i) for i in range(1, n + 1)]

    def plain_fetch(self, extra=()):
        """What a plain session over a pipe fetches: the reference."""
        s = self.e.session(list(extra))
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        got = self.fetch_all(s)
        self.quit_ok(s)
        return got


class TlsKind(TlsBase, R.KindBase):
    """TlsBase once per maildrop kind (see each_kind)."""


def each_kind(cls):
    """Class decorator: the mixin cls becomes one TestCase per maildrop kind,
    "Cls[mbox]" and "Cls[maildir]" (as tests/run.py's each_kind)."""
    g = sys.modules[cls.__module__].__dict__
    for i, kind in enumerate(R.KINDS):
        name = "%s[%s]" % (cls.__name__, kind)
        g["%s_%d_%s" % (cls.__name__, i, kind)] = type(
            name, (cls, TlsKind), {"KIND": kind, "__module__": cls.__module__,
                                   "__qualname__": name})
    return cls


# ====================================================================== clients

@each_kind
class Clients:
    """Every client over POP3S and over STLS fetches what a plain session
    fetches, octet for octet."""

    def test_poplib(self):
        self.alice(R.simple_raws(4))
        want = self.plain_fetch()
        import poplib
        for implicit in (True, False):
            with self.subTest(implicit=implicit):
                act = self.e.activate(self.tls(implicit=implicit))
                if implicit:
                    p = poplib.POP3_SSL("127.0.0.1", act.port, context=self.ctx(verify=False),
                                        timeout=15)
                else:
                    p = poplib.POP3("127.0.0.1", act.port, timeout=15)
                    self.assertIn("STLS", [c for c in p.capa()])
                    p.stls(context=self.ctx(verify=False))
                p.user("alice")
                p.pass_(PW)
                n = p.stat()[0]
                got = [b"\r\n".join(p.retr(i)[1]) + b"\r\n" for i in range(1, n + 1)]
                p.quit()
                self.assertEqual(got, want)

    def test_openssl_s_client(self):
        self.alice(R.simple_raws(3))
        want = self.plain_fetch()
        for implicit in (True, False):
            with self.subTest(implicit=implicit):
                act = self.e.activate(self.tls(kind="rsa", implicit=implicit))
                argv = ["openssl", "s_client", "-quiet", "-CAfile", self.c.ca,
                        "-verify_return_error", "-connect", "127.0.0.1:%d" % act.port,
                        "-servername", "localhost"]
                if not implicit:
                    argv += ["-starttls", "pop3"]
                script = "USER alice\r\nPASS %s\r\n%sQUIT\r\n" % (
                    PW, "".join("RETR %d\r\n" % i for i in range(1, 4)))
                r = subprocess.run(argv, input=script.encode(), capture_output=True, timeout=30)
                out = r.stdout
                for w in want:
                    self.assertIn(mb.dot_stuff(w), out)
                self.assertIn(b"+OK pop3d signing off", out)

    def test_curl(self):
        self.alice(R.simple_raws(3))
        want = self.plain_fetch()
        for implicit in (True, False):
            with self.subTest(implicit=implicit):
                act = self.e.activate(self.tls(implicit=implicit, extra=["-A"]))
                url = "%s://alice:%s@localhost:%d/2" % ("pop3s" if implicit else "pop3",
                                                        PW, act.port)
                argv = ["curl", "-sS", "--cacert", self.c.ca, url]
                if not implicit:
                    argv.insert(1, "--ssl-reqd")
                r = subprocess.run(argv, capture_output=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, want[1])
                # curl uses AUTH PLAIN when CAPA offers it
                self.assertRegex(act.logtext(), r"login user=alice .* tls=TLSv1\.[23]")

    def test_mpop(self):
        if not shutil.which("mpop"):
            self.fail("mpop is not installed (scripts/deps.sh installs it)")
        raws = R.simple_raws(3)
        self.alice(raws)
        for implicit in (True, False):
            with self.subTest(implicit=implicit):
                act = self.e.activate(self.tls(implicit=implicit))
                out = tempfile.mkdtemp(dir=self.e.dir)
                for sub in ("new", "cur", "tmp"):
                    os.mkdir(os.path.join(out, sub))
                rc = os.path.join(self.e.dir, "mpoprc")
                with open(rc, "w") as f:
                    f.write("account t\nhost localhost\nport %d\nuser alice\npassword %s\n"
                            "tls on\ntls_starttls %s\ntls_trust_file %s\nauth user\n"
                            "delivery maildir %s\nkeep on\nuidls_file %s/uidls\n"
                            % (act.port, PW, "off" if implicit else "on", self.c.ca, out, out))
                os.chmod(rc, 0o600)
                r = subprocess.run(["mpop", "-C", rc, "-q", "t"], capture_output=True,
                                   timeout=60, env={"HOME": self.e.dir, "PATH": "/usr/bin:/bin"})
                self.assertEqual(r.returncode, 0, r.stderr)
                got = sorted(open(p, "rb").read() for p in glob.glob(out + "/new/*"))
                self.assertEqual(len(got), 3)
                for raw in raws:
                    self.assertTrue(any(raw.split(b"\n\n", 1)[1] in g for g in got))

    def test_fetchmail(self):
        if not shutil.which("fetchmail"):
            self.fail("fetchmail is not installed (scripts/deps.sh installs it)")
        raws = R.simple_raws(2)
        self.e.entries = []
        self.alice(raws, secret=crypt_hash(PW))
        for implicit in (True, False):
            with self.subTest(implicit=implicit):
                act = self.e.activate(self.tls(implicit=implicit))
                out = tempfile.mkdtemp(dir=self.e.dir)
                mda = os.path.join(self.e.dir, "deliver")
                with open(mda, "w") as f:
                    f.write('#!/bin/sh\nexec cat > "$(mktemp "$1/msg.XXXXXXXX")"\n')
                os.chmod(mda, 0o755)
                rc = os.path.join(self.e.dir, "fetchmailrc")
                with open(rc, "w") as f:
                    f.write("set no bouncemail\nset no syslog\n"
                            "poll localhost service %d protocol POP3 uidl timeout 15\n"
                            '  user "alice" there with password "%s" is "%s" here\n'
                            "  keep %s sslcertck sslcertfile %s\n  mda \"%s %s\"\n"
                            % (act.port, PW, pwd.getpwuid(os.getuid()).pw_name,
                               "ssl" if implicit else "", self.c.ca, mda, out))
                os.chmod(rc, 0o600)
                r = subprocess.run(["fetchmail", "-N", "-f", rc, "--idfile",
                                    os.path.join(out, "ids")], capture_output=True, timeout=60,
                                   env={"HOME": self.e.dir, "PATH": "/usr/bin:/bin",
                                        "FETCHMAILHOME": self.e.dir})
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                got = [open(p, "rb").read() for p in glob.glob(out + "/msg.*")]
                self.assertEqual(len(got), 2)
                self.assertRegex(act.logtext(), r"login user=alice .* tls=TLSv1\.[23]")


# ====================================================================== the protocol over TLS

class Protocol(TlsBase):

    def test_capa_and_the_plaintext_rule(self):
        """With -c/-k, a plain connection offers STLS and neither USER nor SASL
        and refuses every kind of login (RFC 2595); after STLS it offers USER
        and SASL PLAIN and no STLS; -p allows logins without TLS."""
        self.alice()
        act = self.e.activate(self.tls())
        s = act.session()
        caps = self.capa(s)
        self.assertIn("STLS", caps)
        self.assertNotIn("USER", caps)
        self.assertFalse([c for c in caps if c.startswith("SASL")])
        for cmd in ("USER alice", "AUTH PLAIN AGFsaWNlAHNlY3JldA=="):
            st = s.cmd(cmd)
            self.assertTrue(st.startswith("-ERR [AUTH]") and "STLS" in st, st)
        s.close()
        s = self.starttls(act)
        caps = self.capa(s)
        self.assertNotIn("STLS", caps)
        self.assertIn("USER", caps)
        self.assertIn("SASL PLAIN", caps)
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.assertIn("USER", self.capa(s))
        self.quit_ok_sock(s)
        act = self.e.activate(self.tls(extra=["-p"]))
        s = act.session()
        caps = self.capa(s)
        self.assertIn("STLS", caps)
        self.assertIn("USER", caps)
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        s.quit()

    def test_stls_injection_discarded(self):
        """Commands sent in clear after STLS, in the same packet, are never
        run after the handshake (the CVE-2011-0411 class)."""
        self.alice()
        act = self.e.activate(self.tls())
        raw = act.connect()
        s = Session(SocketTransport(raw))
        raw.sendall(b"STLS\r\nCAPA\r\nQUIT\r\n")
        self.assertEqual(s.reply(), "+OK begin TLS negotiation")
        sock = self.ctx().wrap_socket(raw, server_hostname="localhost")
        t = Session(SocketTransport(sock), read_greeting=False)
        sock.settimeout(1.0)
        try:
            early = sock.recv(4096)
        except socket.timeout:
            early = b""
        self.assertEqual(early, b"", "the server ran what came in clear after STLS")
        self.assertIn("USER", self.capa(t))
        self.assertRegex(t.login("alice", PW), RE_LOGIN)
        t.quit()

    def test_stls_refused_twice_after_login_and_under_s(self):
        self.alice()
        act = self.e.activate(self.tls())
        s = self.starttls(act)
        self.assertTrue(s.cmd("STLS").startswith("-ERR"))
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.assertTrue(s.cmd("STLS").startswith("-ERR"))
        s.quit()
        act = self.e.activate(self.tls(implicit=True))
        s = self.implicit(act)
        self.assertTrue(s.cmd("STLS").startswith("-ERR"))
        self.assertNotIn("STLS", self.capa(s))
        s.quit()

    def test_auth_plain(self):
        """AUTH PLAIN (RFC 5034, 4616) with and without an initial response,
        "*" cancels, the same failures, delays and log lines as USER/PASS."""
        import base64
        self.alice(secret=crypt_hash(PW))
        act = self.e.activate(self.tls(implicit=True))

        def b64(z, c, p):
            return base64.b64encode(b"%s\0%s\0%s" % (z, c, p)).decode()
        s = self.implicit(act)
        self.assertEqual(s.cmd("AUTH PLAIN " + b64(b"", b"alice", b"wrong")),
                         "-ERR [AUTH] invalid user name or password")
        self.assertEqual(self.go_ahead(s), b"+ \r\n")
        self.assertEqual(s.cmd("*"), "-ERR authentication cancelled")
        self.capa(s)                    # (three bad commands in a row end a session)
        self.assertEqual(self.go_ahead(s), b"+ \r\n")
        self.assertTrue(s.cmd("not base64!").startswith("-ERR"))
        self.capa(s)
        self.assertTrue(s.cmd("AUTH PLAIN " + b64(b"bob", b"alice", PW.encode()))
                        .startswith("-ERR"), "a proxy login must be refused")
        self.capa(s)
        self.assertTrue(s.cmd("AUTH CRAM-MD5").startswith("-ERR"))
        self.capa(s)
        self.assertEqual(self.go_ahead(s), b"+ \r\n")
        self.assertRegex(s.cmd(b64(b"alice", b"alice", PW.encode())), RE_LOGIN)
        s.quit()
        s = self.implicit(act)
        self.assertRegex(s.cmd("AUTH PLAIN " + b64(b"", b"alice", PW.encode())), RE_LOGIN)
        s.quit()
        s = self.implicit(act)
        st, lines = s.cmd_lines("AUTH")
        self.assertEqual(lines, ["PLAIN"])
        s.close()
        log = act.logtext()
        self.assertEqual(len(re.findall(r"auth failed user=alice rhost=127\.0\.0\.1", log)), 1)
        self.assertEqual(len(re.findall(r"login user=alice", log)), 2)

    def go_ahead(self, s):
        """AUTH PLAIN without an initial response: the server's "+ " line."""
        s.send("AUTH PLAIN\r\n")
        return s.readline()

    def test_auth_plain_delay_like_pass(self):
        """A failed AUTH PLAIN waits the -D delay, as a failed PASS does."""
        import base64
        self.alice(secret=crypt_hash(PW))
        act = self.e.activate(self.tls(implicit=True), delay="1")
        s = self.implicit(act)
        t0 = time.monotonic()
        st = s.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0nope").decode())
        self.assertTrue(st.startswith("-ERR [AUTH]"))
        self.assertGreaterEqual(time.monotonic() - t0, 0.95)
        s.close()

    def test_alpn(self):
        self.alice()
        act = self.e.activate(self.tls(implicit=True))
        s = self.implicit(act, alpn=["pop3"])
        self.assertEqual(s.t.sock.selected_alpn_protocol(), "pop3")
        s.quit()
        s = self.implicit(act, alpn=["h2", "pop3"])
        self.assertEqual(s.t.sock.selected_alpn_protocol(), "pop3")
        s.quit()
        s = self.implicit(act)                          # no ALPN at all: fine
        s.quit()
        with self.assertRaises(ssl.SSLError) as cm:
            self.implicit(act, alpn=["imap", "http/1.1"])
        self.assertIn("NO APPLICATION PROTOCOL", str(cm.exception).upper().replace("_", " "))
        wait_for(lambda: "no application protocol" in act.logtext(), timeout=5)
        self.assertRegex(act.logtext(), r"error tls: handshake: no application protocol "
                         r"rhost=127\.0\.0\.1")

    def test_versions_and_policy(self):
        """TLS 1.2 and 1.3 only, and only forward-secret AEAD suites."""
        self.alice()
        act = self.e.activate(self.tls(kind="rsa", implicit=True))
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            c = self.ctx()
            c.minimum_version = c.maximum_version = v
            s = self.implicit(act, ctx=c)
            cipher = s.t.sock.cipher()[0]
            self.assertRegex(cipher, r"ECDHE-RSA-(AES\d+-GCM|CHACHA20-POLY1305)|^TLS_")
            s.quit()
        for v in ("-tls1", "-tls1_1"):
            r = subprocess.run(["openssl", "s_client", v, "-connect", "127.0.0.1:%d" % act.port],
                               input=b"", capture_output=True, timeout=30)
            self.assertNotEqual(r.returncode, 0, "%s was accepted" % v)
        r = subprocess.run(["openssl", "s_client", "-tls1_2", "-cipher", "AES128-SHA256",
                            "-connect", "127.0.0.1:%d" % act.port], input=b"",
                           capture_output=True, timeout=30)
        self.assertNotEqual(r.returncode, 0, "a suite without forward secrecy was accepted")

    def test_probe_not_logged_garbage_logged(self):
        """A connection that closes without sending an octet (a health
        check, a port scan) is not a failed handshake: no line. One that
        sends something else than TLS is, once."""
        self.alice()
        act = self.e.activate(self.tls(implicit=True))
        for _ in range(3):
            sock = act.connect()
            sock.close()
        sock = act.connect()
        sock.sendall(b"USER alice\r\n")
        sock.settimeout(10)
        try:
            self.assertIn(sock.recv(100)[:1], (b"", b"\x15"))     # closed, or an alert
        except ConnectionResetError:
            pass
        sock.close()
        wait_for(lambda: "error tls" in act.logtext() and
                 act.logtext().count("died with code") >= 4, timeout=10)
        text = act.logtext()
        self.assertEqual(len(re.findall(r"error tls: handshake: ", text)), 1, text)

    def test_handshake_timeout(self):
        self.alice()
        act = self.e.activate(self.tls(implicit=True, extra=["-T", "2"]))
        sock = act.connect()
        t0 = time.monotonic()
        sock.settimeout(15)
        self.assertEqual(sock.recv(100), b"")
        self.assertLess(time.monotonic() - t0, 8)
        sock.close()
        wait_for(lambda: "timed out" in act.logtext(), timeout=5)
        self.assertRegex(act.logtext(), r"error tls: handshake: handshake timed out "
                         r"rhost=127\.0\.0\.1")


# ====================================================================== keys and certificates

class Keys(TlsBase):

    def copy(self, kind):
        d = tempfile.mkdtemp(dir=self.e.dir)
        c, k = os.path.join(d, "crt"), os.path.join(d, "key")
        shutil.copy(self.c.cert(kind), c)
        shutil.copy(self.c.key(kind), k)
        os.chmod(k, 0o600)
        return c, k

    def args(self, c, k, implicit):
        return ["-e", "-c", c, "-k", k] + (["-s"] if implicit else [])

    def refused(self, c, k, log):
        """The connection is refused (POP3S: closed; STLS: -ERR [SYS/TEMP]),
        the reason logged once, never a crash."""
        act = self.e.activate(self.args(c, k, True))
        sock = act.connect()
        sock.settimeout(15)
        try:
            self.ctx().wrap_socket(sock, server_hostname="localhost")
            self.fail("the handshake succeeded")
        except (ssl.SSLError, ConnectionResetError, OSError):
            pass
        act2 = self.e.activate(self.args(c, k, False))
        s = act2.session()
        self.assertEqual(s.cmd("STLS"), "-ERR [SYS/TEMP] TLS is not available, try again later")
        s.quit()
        for a in (act, act2):
            wait_for(lambda: re.search(log, a.logtext()), timeout=5)
            text = a.logtext()
            self.assertRegex(text, log)
            self.assertEqual(len(re.findall(r"error tls", text)), 1, text)
            self.assertNotIn("Child", text.split("died with code")[-1][:0] or "", text)

    def test_unreadable_key(self):
        self.alice()
        c, k = self.copy("ec")
        os.unlink(k)
        self.refused(c, k, r"error tls: key \S+: No such file or directory rhost=127\.0\.0\.1")

    def test_broken_key(self):
        self.alice()
        c, k = self.copy("ec")
        with open(k, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        self.refused(c, k, r"error tls: key \S+: not a PEM RSA or EC private key")

    def test_encrypted_key_refused_without_asking_the_terminal(self):
        """An encrypted key is refused at once, even when pop3d has a
        controlling terminal (OpenSSL's default would prompt on it and hang
        every handshake)."""
        self.alice()
        c, k = self.copy("ec")
        subprocess.run(["openssl", "pkey", "-in", self.c.key("ec"), "-out", k, "-aes256",
                        "-passout", "pass:secret"], check=True, capture_output=True)
        os.chmod(k, 0o600)
        import pty
        mine, theirs = socket.socketpair()
        pid, master = pty.fork()
        if pid == 0:                            # pop3d with a terminal of its own
            try:
                os.dup2(theirs.fileno(), 0)
                os.dup2(theirs.fileno(), 1)
                os.execve(R.POP3D, self.e.args(self.args(c, k, True)), self.e.child_env())
            finally:
                os._exit(127)
        theirs.close()
        try:
            mine.settimeout(10)
            start = time.monotonic()
            with self.assertRaises((ssl.SSLError, ConnectionResetError, OSError)):
                self.ctx().wrap_socket(mine, server_hostname="localhost")
            self.assertLess(time.monotonic() - start, 8, "the handshake hung")
            out = b""
            while True:                         # what pop3d wrote on its terminal (-e)
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            self.assertNotIn(b"pass phrase", out)
            self.assertRegex(out.decode(errors="replace"),
                             r"error tls: key \S+: not a PEM RSA or EC private key \(or encrypted\)")
        finally:
            mine.close()
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            os.waitpid(pid, 0)
            os.close(master)

    def test_key_of_another_certificate(self):
        self.alice()
        c, _ = self.copy("ec")
        _, k = self.copy("rsa")
        self.refused(c, k, r"error tls: key \S+ is not the key of certificate")

    def test_broken_and_unreadable_certificate(self):
        self.alice()
        c, k = self.copy("ec")
        with open(c, "w") as f:
            f.write("garbage\n")
        self.refused(c, k, r"error tls: certificate: no PEM certificate in the file")
        os.unlink(c)
        self.refused(c, k, r"error tls: certificate \S+: No such file or directory")

    def test_unsafe_key_refused_at_start(self):
        """A key others may read stops pop3d at start, as an unsafe user file
        does: -ERR [SYS/PERM], a log line, exit 1."""
        self.alice()
        c, k = self.copy("ec")
        os.chmod(k, 0o644)
        rc, out, err = self.e.run(b"", extra=self.args(c, k, False))
        S.startup_error_line(rc, out, err)
        self.assertRegex(err.decode(), r"error config: -k: the key file must be a regular file")
        os.chmod(k, 0o640)                      # group-readable (ssl-cert) is fine
        rc, out, err = self.e.run(b"QUIT\r\n", extra=self.args(c, k, False))
        self.assertEqual(rc, 0, out + err)

    def test_module_missing_or_unsafe_refused_at_start(self):
        """The TLS code is a module (pop3d-tls.so beside the binary, or the
        installed one): with -c/-k, a module that is not there, that group
        or others may write, or in a directory they may write (where the
        file really is, links resolved), stops pop3d at start like an unsafe
        key; a plaintext pop3d does not need it."""
        self.alice()
        c, k = self.copy("ec")
        if not os.path.exists(R.POP3D + "-tls.so"):
            self.skipTest("no module beside %s" % R.POP3D)
        d = tempfile.mkdtemp(prefix="pop3d-module-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        binary = os.path.join(d, "pop3d")
        shutil.copy2(R.POP3D, binary)
        argv = self.e.args(self.args(c, k, False), "0", None)
        argv[0] = binary
        installed = os.path.exists("/usr/local/lib/pop3d/pop3d-tls.so")
        if not installed:
            rc, out, err = self.e.run(b"", argv=argv)
            S.startup_error_line(rc, out, err)
            self.assertRegex(err.decode(), r"error config: .*pop3d-tls\.so: the TLS module "
                                           r"cannot be found")
        plain = [a for a in argv if a not in ("-c", c, "-k", k, "-s")]
        rc, out, err = self.e.run(b"QUIT\r\n", argv=plain)
        self.assertEqual(rc, 0, out + err)
        shutil.copy2(R.POP3D + "-tls.so", binary + "-tls.so")
        os.chmod(binary + "-tls.so", 0o775)
        rc, out, err = self.e.run(b"", argv=argv)
        S.startup_error_line(rc, out, err)
        self.assertRegex(err.decode(), r"the TLS module must be a regular file of root's or "
                                       r"the running user's, not writable by group or others")
        os.chmod(binary + "-tls.so", 0o755)
        # its directory group or others may write: they could put another
        # file in its place between the check and the load
        os.chmod(d, 0o775)
        rc, out, err = self.e.run(b"", argv=argv)
        S.startup_error_line(rc, out, err)
        self.assertRegex(err.decode(), r"the TLS module's directory must be root's or the "
                                       r"running user's, not writable by group or others")
        os.chmod(d, 0o755)
        # the same through a symbolic link: where the file really is counts
        unsafe = os.path.join(d, "unsafe")
        os.mkdir(unsafe, 0o755)
        os.chmod(unsafe, 0o777)
        os.rename(binary + "-tls.so", os.path.join(unsafe, "pop3d-tls.so"))
        os.symlink(os.path.join(unsafe, "pop3d-tls.so"), binary + "-tls.so")
        rc, out, err = self.e.run(b"", argv=argv)
        S.startup_error_line(rc, out, err)
        self.assertRegex(err.decode(), r"the TLS module's directory must be")
        os.chmod(unsafe, 0o755)
        rc, out, err = self.e.run(b"QUIT\r\n", argv=argv)
        self.assertEqual(rc, 0, out + err)

    def test_options_go_together(self):
        self.alice()
        c, k = self.copy("ec")
        for extra in (["-c", c], ["-k", k], ["-s"], ["-p"]):
            rc, out, err = self.e.run(b"", extra=extra + ["-e"])
            S.startup_error_line(rc, out, err)

    def test_renewed_certificate_served_at_the_next_connection(self):
        """The chain and key are read by every connection: certbot's renewal
        takes effect with no restart."""
        self.alice()
        c, k = self.copy("ec")
        act = self.e.activate(self.args(c, k, True))
        s = self.implicit(act)
        first = s.t.sock.getpeercert(binary_form=True)
        s.quit()
        shutil.copy(self.c.cert("rsa"), c)
        shutil.copy(self.c.key("rsa"), k)
        s = self.implicit(act)
        second = s.t.sock.getpeercert(binary_form=True)
        s.quit()
        self.assertNotEqual(first, second)
        self.assertIn(b"rsaEncryption", subprocess.run(
            ["openssl", "x509", "-inform", "DER", "-noout", "-text"], input=second,
            capture_output=True).stdout)


# ====================================================================== deployment

class Deployment(TlsBase):
    """The POP3S lines the project ships (units/inetd.conf, units/xinetd.d/
    pop3s, units/pop3s@.service with the key as a systemd credential, and the
    STLS drop-in that units/pop3d@.service describes) start a pop3d that
    serves: their arguments, with the test's files for /etc/pop3d/*."""

    UNITS = os.path.join(REPO, "units")

    def shipped(self):
        """{name: argv after "pop3d"} for each shipped TLS line."""
        out = {}
        with open(os.path.join(self.UNITS, "inetd.conf")) as f:
            for line in f:
                if line.startswith("pop3s\t"):
                    out["inetd"] = line.split()[7:]
        with open(os.path.join(self.UNITS, "xinetd.d", "pop3s")) as f:
            m = re.search(r"^\s*server_args\s*=\s*(.*)$", f.read(), re.M)
            out["xinetd"] = m.group(1).split()
        with open(os.path.join(self.UNITS, "pop3s@.service")) as f:
            text = f.read()
            m = re.search(r"^ExecStart=\S+ (.*)$", text, re.M)
            out["pop3s@.service"] = m.group(1).split()
            cred = re.search(r"^LoadCredential=pop3d\.key:(\S+)$", text, re.M).group(1)
            self.assertEqual(cred, "/etc/pop3d/key.pem")
        with open(os.path.join(self.UNITS, "pop3d@.service")) as f:
            text = f.read()
            m = re.search(r"^ExecStart=\S+ (.*)$", text, re.M)
            stls = re.search(r'^# and "(-c [^"]*)" to ExecStart=', text, re.M).group(1)
            out["pop3d@.service+STLS"] = m.group(1).split() + stls.split()
        self.assertEqual(len(out), 4, out)
        return out

    def test_shipped_pop3s_and_stls_lines_serve(self):
        self.alice(R.simple_raws(2))
        want = self.plain_fetch()
        creds = tempfile.mkdtemp(dir=self.e.dir)        # as systemd's %d: 0400 copy
        shutil.copy(self.c.key("ec"), os.path.join(creds, "pop3d.key"))
        os.chmod(os.path.join(creds, "pop3d.key"), 0o400)
        files = {"/etc/pop3d/passwd": self.e.userfile, "/etc/pop3d/cert.pem": self.c.cert("ec"),
                 "/etc/pop3d/key.pem": self.c.key("ec"),
                 "%d/pop3d.key": os.path.join(creds, "pop3d.key")}
        for name, argv in self.shipped().items():
            with self.subTest(line=name):
                for a in argv:
                    if a.startswith("/") or a.startswith("%"):
                        self.assertIn(a, files, "%s names %s" % (name, a))
                self.assertEqual("-s" in argv, "STLS" not in name, "POP3S lines have -s")
                argv = [files.get(a, a) for a in argv]
                act = self.e.activate(["-e"] + argv)
                if "-s" in argv:
                    s = self.implicit(act)
                else:
                    p = act.session()
                    self.assertIn("STLS", self.capa(p))
                    self.assertEqual(p.cmd("USER alice")[:11], "-ERR [AUTH]")
                    p.quit()
                    s = self.starttls(act)
                self.assertRegex(s.login("alice", PW), RE_LOGIN)
                self.assertEqual(self.fetch_all(s), want)
                self.quit_ok_sock(s)


# ====================================================================== processes and memory

class Processes(TlsBase):

    def session_procs(self, act):
        return [p for p in proc_tree(act.proc.pid) if p != act.proc.pid]

    def test_relay_and_session_after_login(self):
        """After a login over TLS: the session (the user) and the relay (the
        pre-login user, chrooted, seccomp); the signer is gone."""
        if not IS_ROOT:
            self.skipTest("needs root (privilege separation)")
        self.alice()
        act = self.e.activate(self.tls(implicit=True))
        s = self.implicit(act)
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        procs = wait_for(lambda: len(self.session_procs(act)) == 2 and self.session_procs(act),
                         timeout=5)
        self.assertTrue(procs, "want the session and the relay: %r" % self.session_procs(act))
        session = [p for p in procs if proc_status(p).get("Uid") == [str(R.TEST_UID)] * 4]
        relay = [p for p in procs if p not in session]
        self.assertEqual(len(session), 1)
        pw = S.prelogin_user()
        st = proc_status(relay[0])
        self.assertEqual(st.get("Uid"), [str(pw.pw_uid)] * 4)
        self.assertEqual(st.get("Seccomp"), ["2"])
        self.assertEqual(os.readlink("/proc/%d/root" % relay[0]),
                         os.path.join(self.e.lockdir, "empty"))
        # OpenSSL is mapped where TLS is spoken, never in the session (the
        # monitor, which ran as root, loads no TLS module)
        libs = {p: open("/proc/%d/maps" % p).read() for p in procs}
        self.assertNotIn("libcrypto", libs[session[0]])
        self.assertNotIn("libssl", libs[session[0]])
        self.assertIn("libssl", libs[relay[0]])
        self.assertEqual(self.stat(s)[0], 3)
        s.quit()
        self.assertTrue(wait_for(lambda: not self.session_procs(act), timeout=5),
                        "processes left: %r" % self.session_procs(act))

    def test_private_key_in_no_process_after_login(self):
        """Neither the key's private numbers nor a 32-octet run of the key
        file's body is in the memory of any process of a logged-in session
        (the monitor never reads the key; the signer held it and is gone)."""
        if not IS_ROOT:
            self.skipTest("needs root (/proc/PID/mem of other users' processes)")
        if S.asan_build():
            self.skipTest("a sanitizer build's memory is not pop3d's")
        import attacks
        for kind in ("ec", "rsa"):
            with self.subTest(kind=kind):
                self.e.entries = []
                self.alice()
                act = self.e.activate(self.tls(kind=kind, implicit=True))
                s = self.implicit(act)
                self.assertRegex(s.login("alice", PW), RE_LOGIN)
                self.assertEqual(len(self.retr(s, 1)) > 0, True)
                procs = wait_for(lambda: len(self.session_procs(act)) == 2 and
                                 self.session_procs(act), timeout=5)
                self.assertTrue(procs)
                secrets = self.c.secrets(kind)
                self.assertGreater(len(secrets), 10)
                for p in procs:
                    mem = attacks.memory_of(p)
                    self.assertGreater(len(mem), 100000)
                    for x in secrets:
                        self.assertTrue(x not in mem, "process %d (%s) holds the key: %r"
                                        % (p, proc_status(p).get("Name"), x))
                s.quit()

    def test_password_in_no_process_after_login(self):
        """After a login over TLS with PASS or AUTH PLAIN (initial response),
        neither the relay nor the session holds the password or the PLAIN
        message: the command line it came on is wiped before the pre-login
        process becomes the relay (a review found the PASS line there)."""
        if not IS_ROOT:
            self.skipTest("needs root (/proc/PID/mem of other users' processes)")
        if S.asan_build():
            self.skipTest("a sanitizer build's memory is not pop3d's")
        import attacks
        pw = "Zq7Unique" + "Passw0rd9xK"
        plain = base64.b64encode(b"\0alice\0" + pw.encode()).decode()
        for how in ("PASS", "AUTH"):
            with self.subTest(how=how):
                self.e.entries = []
                self.alice(secret="{PLAIN}" + pw)
                act = self.e.activate(self.tls(implicit=True))
                s = self.implicit(act)
                if how == "PASS":
                    self.assertRegex(s.login("alice", pw), RE_LOGIN)
                else:
                    self.assertRegex(s.cmd("AUTH PLAIN " + plain), RE_LOGIN)
                procs = wait_for(lambda: len(self.session_procs(act)) == 2 and
                                 self.session_procs(act), timeout=5)
                self.assertTrue(procs)
                for p in procs:
                    mem = attacks.memory_of(p)
                    self.assertGreater(len(mem), 100000)
                    for x in (pw.encode(), plain.encode()):
                        self.assertTrue(x not in mem, "process %d (%s) holds %r"
                                        % (p, proc_status(p).get("Name"), x))
                s.quit()

    def test_drop_mid_handshake_and_mid_retr(self):
        """A client that drops in the middle of the handshake, or of a RETR
        over TLS: nothing is deleted, no process is left."""
        path = self.alice([mb.message(b"big", (b"z" * 70 + b"\n") * 30000)] +
                          R.simple_raws(2))
        before = self.e.read(path)
        act = self.e.activate(self.tls(implicit=True))
        sock = act.connect()
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a ClientHello
        sock.close()
        s = self.implicit(act)
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.assertOk(s.cmd("DELE 2"))
        s.send("RETR 1\r\n")
        s.readline()
        s.t.sock.recv(1000)
        s.t.sock.close()
        self.assertTrue(wait_for(lambda: not self.session_procs(act), timeout=10),
                        "processes left: %r" % self.session_procs(act))
        self.assertEqual(self.e.read(path), before)


# ====================================================================== runner

def main():
    def cleanup():
        if CERTS is not None:
            CERTS.cleanup()
    return R.suite_main(sys.modules[__name__], "pop3d TLS tests", cleanup=cleanup)

if __name__ == "__main__":
    sys.exit(main())
