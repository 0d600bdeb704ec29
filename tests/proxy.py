#!/usr/bin/python3
"""pop3d behind a proxy (issue 13): the PROXY protocol, versions 1 and 2,
with -P, against ./pop3d under systemd-socket-activate on 127.0.0.1 (and
[::1]): the client's address in every log line and in fail2ban's matches, the
header read octet-exact before the greeting (and before TLS under -s), v2
LOCAL health checks, TLVs skipped, the SSL TLV counting as TLS, untrusted
peers, missing, malformed, over-long and late headers closed before any
greeting with one "error proxy" line, -P's own errors, and nothing changed
without -P.  The real engines (nginx's mail proxy, HAProxy) are in
tests/engines.py.

    tests/proxy.py [-k PATTERN]... [-l]

Prints "ok NAME", "FAIL NAME" or "skip NAME: reason" per test and "N passed,
N failed[, N skipped]"; exit status 0 only when nothing failed.
"""

import sys
sys.dont_write_bytecode = True

import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as R                           # noqa: E402
import security as S                      # noqa: E402
from pop3lib import (Session, SocketTransport,  # noqa: E402
                     free_port, wait_for)

PW = R.PW
RE_LOGIN = R.RE_LOGIN
V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src="203.0.113.7", dst="127.0.0.1", sport=40001, dport=110, proto=None):
    proto = proto or ("TCP6" if ":" in src else "TCP4")
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def tlv(t, value):
    return struct.pack("!BH", t, len(value)) + value


def v2(src="203.0.113.7", dst="127.0.0.1", sport=40002, dport=110, cmd=1, tlvs=b"",
       family=None):
    """A v2 header: PROXY (cmd 1) or LOCAL (cmd 0) over TCP."""
    if family is None:
        family = socket.AF_INET6 if ":" in src else socket.AF_INET
    if family == socket.AF_INET:
        addr = socket.inet_pton(family, src) + socket.inet_pton(family, dst) + \
            struct.pack("!HH", sport, dport)
        fam = 0x11
    elif family == socket.AF_INET6:
        addr = socket.inet_pton(family, src) + socket.inet_pton(family, dst) + \
            struct.pack("!HH", sport, dport)
        fam = 0x21
    else:                                       # AF_UNSPEC
        addr, fam = b"", 0x00
    body = addr + tlvs
    return V2SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(body)) + body


def ssl_tlv(client=0x01, verify=0):
    """PP2_TYPE_SSL with sub-TLVs as HAProxy sends them (version, cipher)."""
    return tlv(0x20, bytes([client]) + struct.pack("!I", verify) +
               tlv(0x21, b"TLSv1.3") + tlv(0x23, b"TLS_AES_256_GCM_SHA384"))


class ProxyBase(R.Base):

    def px(self, extra=(), trusted="127.0.0.1"):
        return self.e.activate(["-e", "-P", trusted] + list(extra))

    def through(self, act, header, read_greeting=True):
        sock = act.connect()
        sock.sendall(header)
        return Session(SocketTransport(sock), read_greeting=read_greeting)

    def closed_before_greeting(self, act, header, log, wait_s=15):
        """The connection ends with no octet of a greeting; one error proxy
        line, matching log, names the real peer."""
        sock = act.connect()
        sock.settimeout(wait_s + 5)
        if header:
            try:
                sock.sendall(header)
            except OSError:
                pass
        got = b""
        try:
            while True:
                d = sock.recv(4096)
                if not d:
                    break
                got += d
        except (ConnectionResetError, socket.timeout):
            pass
        sock.close()
        self.assertEqual(got, b"", "the server sent something before closing")
        wait_for(lambda: re.search(log, act.logtext()), timeout=5)
        text = act.logtext()
        self.assertRegex(text, log)
        self.assertEqual(len(re.findall(r"error proxy", text)), 1, text)
        self.assertNotRegex(text, r"auth failed|login user")
        return text

    def quit_sock(self, s):
        self.assertTrue(s.quit().startswith("+OK"))


class Header(ProxyBase):

    def test_v1_client_address_in_every_line(self):
        self.alice()
        act = self.px()
        s = self.through(act, v1("203.0.113.7", sport=40001))
        self.assertOk(s.cmd("USER alice"))
        self.assertErr(s.cmd("PASS wrong"), "-ERR [AUTH]")
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.quit_sock(s)
        wait_for(lambda: "logout" in act.logtext(), timeout=5)
        text = act.logtext()
        self.assertRegex(text, r"auth failed user=alice rhost=203\.0\.113\.7\n")
        self.assertRegex(text, r"login user=alice rhost=203\.0\.113\.7 msgs=3 octets=\d+ "
                               r"rport=40001 proxy=127\.0\.0\.1\n")
        self.assertRegex(text, r"logout user=alice rhost=203\.0\.113\.7 ")
        self.assertNotRegex(text, r"rhost=127\.0\.0\.1")

    def test_v2_ipv4_and_ipv6_with_tlvs_skipped(self):
        self.alice()
        act = self.px()
        junk = tlv(0x04, b"") + tlv(0xE0, os.urandom(40)) + tlv(0x02, b"mail.example.org") + \
            tlv(0x05, b"\x01" * 16)
        for src, want in (("198.51.100.9", r"198\.51\.100\.9"),
                          ("2001:db8::42", r"2001:db8::42"),
                          ("::ffff:192.0.2.5", r"192\.0\.2\.5")):
            with self.subTest(src=src):
                s = self.through(act, v2(src, "::1" if ":" in src else "127.0.0.1",
                                         tlvs=junk))
                self.assertRegex(s.login("alice", PW), RE_LOGIN)
                self.quit_sock(s)
                wait_for(lambda: re.search(r"logout user=alice rhost=" + want, act.logtext()),
                         timeout=5)
                self.assertRegex(act.logtext(), r"login user=alice rhost=%s .*rport=40002 "
                                 r"proxy=127\.0\.0\.1" % want)

    def test_header_and_commands_in_one_packet(self):
        """Octet-exact: what follows the header in the same packet is the
        client's, answered after the greeting."""
        self.alice()
        act = self.px()
        for header in (v1(), v2()):
            with self.subTest(version=1 if header.startswith(b"PROXY") else 2):
                sock = act.connect()
                sock.sendall(header + b"CAPA\r\nUSER alice\r\nPASS " + PW.encode() +
                             b"\r\nSTAT\r\nQUIT\r\n")
                s = Session(SocketTransport(sock))
                self.assertTrue(s.greeting.startswith("+OK"), s.greeting)
                self.assertOk(s.reply())
                lines = s.multiline_lines()
                self.assertIn("USER", lines)
                self.assertOk(s.reply())
                self.assertRegex(s.reply(), RE_LOGIN)
                self.assertRegex(s.reply(), r"^\+OK 3 \d+$")
                self.assertOk(s.reply())
                self.assertEqual(s.expect_eof(), b"")

    def test_v2_local_health_check(self):
        """A v2 LOCAL (HAProxy's check-send-proxy) gets the greeting as the
        proxy's own connection; closing logs nothing fail2ban counts."""
        self.alice()
        act = self.px()
        for _ in range(3):
            s = self.through(act, v2(cmd=0))
            self.assertTrue(s.greeting.startswith("+OK"))
            s.close()
        s = self.through(act, v1(proto="UNKNOWN", src="x", dst="y").replace(
            b"UNKNOWN x y 40001 110", b"UNKNOWN"))
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.quit_sock(s)
        wait_for(lambda: "logout" in act.logtext(), timeout=5)
        text = act.logtext()
        self.assertRegex(text, r"login user=alice rhost=127\.0\.0\.1 msgs=3 octets=\d+\n")
        self.assertNotRegex(text, r"auth failed|auth limit|error")

    def test_unspec_family_uses_the_connection(self):
        self.alice()
        act = self.px()
        s = self.through(act, v2(family=socket.AF_UNSPEC))
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.quit_sock(s)
        wait_for(lambda: "logout" in act.logtext(), timeout=5)
        self.assertRegex(act.logtext(), r"login user=alice rhost=127\.0\.0\.1 msgs")


class Refused(ProxyBase):

    def test_no_header(self):
        self.alice()
        act = self.px()
        self.closed_before_greeting(act, b"USER alice\r\n",
                                    r"error proxy: not a PROXY header rhost=127\.0\.0\.1\n")

    def test_malformed_v1(self):
        self.alice()
        act = self.px()
        for bad, why in ((b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "four fields"),
                         (b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", "bad address or port"),
                         (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "bad address or port"),
                         (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad address or port"),
                         (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "bad address or port"),
                         (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "single spaces"),
                         (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
                         (b"PROXY TCP4 1.2.3.4\x005.6.7.8 1 2\r\n", "control octets"),
                         (b"PROXY TCP4 " + b"1" * 120 + b"\r\n", "no CRLF within 107")):
            with self.subTest(why=why):
                act = self.px()
                self.closed_before_greeting(act, bad, r"error proxy: v1 header: .*%s.* rhost=" % why)

    def test_malformed_and_over_long_v2(self):
        self.alice()
        good = v2()
        cases = (
            (V2SIG + b"\x31\x11" + struct.pack("!H", 12) + good[16:28], "version or command"),
            (V2SIG + b"\x22\x11" + struct.pack("!H", 12) + good[16:28], "version or command"),
            (V2SIG + b"\x21\x11" + struct.pack("!H", 8) + good[16:24], "family, protocol or length"),
            (V2SIG + b"\x21\x41" + struct.pack("!H", 12) + good[16:28], "family, protocol or length"),
            (good[:14] + struct.pack("!H", 12 + 5) + good[16:28] + b"\x20\x00\x09ab",
             "a TLV runs past the header"),
            (V2SIG + b"\x21\x11" + struct.pack("!H", 2000) + b"x" * 2000,
             r"v2 header of 2016 octets, over MAX_PROXY_HEADER"),
            (b"\r\n\r\n\x00\r\nQUIX\n" + good[12:], "not a PROXY header"),
        )
        for bad, why in cases:
            with self.subTest(why=why):
                act = self.px()
                self.closed_before_greeting(act, bad, r"error proxy: (v2 header: )?.*%s.* rhost="
                                            % why)

    def test_untrusted_peer(self):
        self.alice()
        act = self.px(trusted="10.0.0.0/8,192.0.2.1,2001:db8::/32")
        self.closed_before_greeting(
            act, v1(), r"error proxy: 127\.0\.0\.1 is not a trusted proxy \(-P\) "
                       r"rhost=127\.0\.0\.1\n")

    def test_header_too_late(self):
        self.alice()
        act = self.px(["-T", "2"])
        t0 = time.monotonic()
        self.closed_before_greeting(act, b"PROXY TCP4 1.2.3.4",
                                    r"error proxy: no PROXY header within 2 s rhost=127\.0\.0\.1")
        self.assertLess(time.monotonic() - t0, 10)
        act = self.px(["-T", "2"])
        self.closed_before_greeting(act, b"", r"error proxy: no PROXY header within 2 s")

    def test_probe_that_sends_nothing_not_logged(self):
        """A health check that only connects and closes (HAProxy's plain
        check) is not a missing header: nothing logged, at once."""
        self.alice()
        act = self.px()
        for _ in range(5):
            sock = act.connect()
            sock.close()
        wait_for(lambda: act.logtext().count("died with code") >= 5, timeout=10)
        text = act.logtext()
        self.assertEqual(text.count("died with code"), 5, text)
        self.assertNotRegex(text, r"pop3d\[\d+\]: ", text)

    def test_connection_closed_in_the_header(self):
        self.alice()
        act = self.px()
        sock = act.connect()
        sock.sendall(v2()[:20])
        sock.shutdown(socket.SHUT_WR)
        self.assertEqual(sock.recv(100), b"")
        sock.close()
        wait_for(lambda: "error proxy" in act.logtext(), timeout=5)
        self.assertRegex(act.logtext(), r"error proxy: connection closed in the PROXY header "
                                        r"rhost=127\.0\.0\.1\n")

    def test_bad_P_values_refused_at_start(self):
        self.alice()
        for bad in ("300.1.1.1", "10.0.0.0/33", "::1/129", "10.0.0.0/", "a,,b", "",
                    "10.0.0.0/-1", ",".join(["10.0.0.%d" % i for i in range(40)])):
            with self.subTest(value=bad):
                rc, out, err = self.e.run(b"", extra=["-e", "-P", bad])
                S.startup_error_line(rc, out, err)
                self.assertIn(b"error config: -P", err)

    def test_without_P_nothing_changes(self):
        """A PROXY line from a client of a pop3d without -P is an unknown
        command, and the log names the real peer."""
        self.alice()
        act = self.e.activate(["-e"])
        s = act.session()
        self.assertErr(s.cmd("PROXY TCP4 203.0.113.7 127.0.0.1 1 2"))
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.quit_sock(s)
        wait_for(lambda: "logout" in act.logtext(), timeout=5)
        self.assertRegex(act.logtext(), r"login user=alice rhost=127\.0\.0\.1 msgs=3 octets=\d+\n")
        self.assertNotIn("203.0.113.7", act.logtext())


class ProxyIPv6(ProxyBase):
    """A proxy that connects over IPv6 ([::1]), trusted by prefix."""

    def test_ipv6_proxy_trusted_by_prefix(self):
        self.alice()
        port = free_port()
        log = open(os.path.join(self.e.dir, "v6.log"), "wb")
        p = subprocess.Popen(["systemd-socket-activate", "--accept", "--inetd",
                              "-l", "[::1]:%d" % port] + self.e.args(["-e", "-P", "::/0"]),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                             env=self.e.child_env(), start_new_session=True)
        self.addCleanup(lambda: (os.killpg(p.pid, signal.SIGKILL), p.wait()))
        sock = None
        for _ in range(50):
            try:
                sock = socket.create_connection(("::1", port), timeout=10)
                break
            except OSError:
                time.sleep(0.1)
        self.assertIsNotNone(sock, "no listener on [::1]")
        sock.sendall(v1("2001:db8::7", "::1", 5555, 110))
        s = Session(SocketTransport(sock))
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.quit_sock(s)
        path = os.path.join(self.e.dir, "v6.log")
        wait_for(lambda: b"logout" in open(path, "rb").read(), timeout=5)
        self.assertRegex(open(path).read(), r"login user=alice rhost=2001:db8::7 .*rport=5555 "
                                            r"proxy=::1\n")


# ====================================================================== TLS

def have_tls():
    out = subprocess.run([R.POP3D, "-h"], capture_output=True).stdout
    return b"-s          TLS" in out


class ProxyTls(ProxyBase):
    """-s behind a proxy that passes TLS through: the header, then the
    handshake; and the SSL TLV of a proxy that terminated TLS itself."""

    def setUp(self):
        if not have_tls():
            self.skipTest("pop3d was built without TLS (TLS=no)")
        super().setUp()
        import tls as T
        self.c = T.certs()
        self.addCleanup(self.cleanup_certs)

    def cleanup_certs(self):
        pass                                    # tls.py's certificates live for the run

    def tls_args(self, implicit):
        return ["-c", self.c.cert("ec"), "-k", self.c.key("ec")] + (["-s"] if implicit else [])

    def test_header_then_handshake(self):
        self.alice()
        act = self.px(self.tls_args(True))
        sock = act.connect()
        sock.sendall(v2("192.0.2.44", sport=4444))
        ctx = ssl.create_default_context(cafile=self.c.ca)
        t = ctx.wrap_socket(sock, server_hostname="localhost")
        s = Session(SocketTransport(t))
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.quit_sock(s)
        wait_for(lambda: "logout" in act.logtext(), timeout=5)
        self.assertRegex(act.logtext(), r"login user=alice rhost=192\.0\.2\.44 msgs=3 "
                                        r"octets=\d+ tls=TLSv1\.3:\S+ rport=4444 proxy=127\.0\.0\.1")

    def test_ssl_tlv_counts_as_tls(self):
        """Without -p a login needs TLS: a v2 SSL TLV (client SSL, verified)
        from the trusted proxy is TLS; one not verified, or a v1 header, is
        not, and the login is refused until STLS."""
        self.alice()
        act = self.px(self.tls_args(False))
        s = self.through(act, v2(tlvs=ssl_tlv()))
        st, lines = s.cmd_lines("CAPA")
        self.assertIn("USER", lines)
        self.assertIn("SASL PLAIN", lines)
        self.assertNotIn("STLS", lines)
        self.assertEqual(s.cmd("STLS"), "-ERR TLS is already active")
        self.assertRegex(s.login("alice", PW), RE_LOGIN)
        self.quit_sock(s)
        wait_for(lambda: "logout" in act.logtext(), timeout=5)
        self.assertRegex(act.logtext(), r"login user=alice rhost=203\.0\.113\.7 .* tls=proxy ")
        for header in (v2(tlvs=ssl_tlv(verify=1)), v2(tlvs=ssl_tlv(client=0x02)), v1(),
                       v2(cmd=0, tlvs=ssl_tlv())):
            with self.subTest(header=header[:40]):
                s = self.through(act, header)
                st, lines = s.cmd_lines("CAPA")
                self.assertIn("STLS", lines)
                self.assertNotIn("USER", lines)
                self.assertEqual(s.cmd("USER alice"), "-ERR [AUTH] TLS required: use STLS first")
                s.close()


class Fail2ban(ProxyBase):
    """fail2ban's filter, on lines written behind a proxy, bans the client
    and never the proxy."""

    def test_fail2ban_bans_the_client_not_the_proxy(self):
        if not shutil.which("fail2ban-regex"):
            self.fail("fail2ban-regex is not installed (scripts/deps.sh)")
        self.alice()
        act = self.px(["-D", "0"])
        for i in range(2):
            s = self.through(act, v1("198.51.100.%d" % (20 + i)))
            for _ in range(3):
                s.cmd("USER alice")
                s.cmd("PASS wrong")
            s.close()
        wait_for(lambda: act.logtext().count("auth limit") == 2, timeout=10)
        import fail2ban as F
        lines = F.pop3d_lines(act.logtext())
        host = socket.gethostname().split(".")[0] or "localhost"
        stamp = time.strftime("%b %e %H:%M:%S")
        logfile = os.path.join(self.e.dir, "mail.log")
        with open(logfile, "w") as f:
            f.write("".join("%s %s %s\n" % (stamp, host, l) for l in lines))
        conf = os.path.join(self.e.dir, "f2b")
        os.makedirs(os.path.join(conf, "filter.d"))
        shutil.copy(F.FILTER, os.path.join(conf, "filter.d", "pop3d.conf"))
        shutil.copy(F.COMMON, os.path.join(conf, "filter.d", "common.conf"))
        p = subprocess.run(["fail2ban-regex", "-o", "ip", logfile,
                            os.path.join(conf, "filter.d", "pop3d.conf")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        ips = p.stdout.split()
        self.assertEqual(sorted(ips), ["198.51.100.20"] * 4 + ["198.51.100.21"] * 4,
                         "\n".join(lines))
        self.assertNotIn("127.0.0.1", ips)


def main():
    def cleanup():
        import tls as T
        if T.CERTS is not None:
            T.CERTS.cleanup()
    return R.suite_main(sys.modules[__name__], "pop3d PROXY protocol tests", cleanup=cleanup)

if __name__ == "__main__":
    sys.exit(main())
