#!/usr/bin/python3
"""The Debian package (issue 14): build, lintian, install, a real session,
remove, purge.

    tests/deb.py [--deb dist/pop3d_VERSION_ARCH.deb]

Builds the package with scripts/deb.sh (unless --deb names one), runs
lintian (no error and no warning that an override does not explain), then,
as root, installs it with dpkg -i and checks what a Debian admin expects:
/usr/sbin/pop3d, /usr/bin/pop3passwd, the man pages, the systemd units with
the sockets not enabled, the pop3d system user, /var/lib/pop3d 0700,
/etc/pop3d/passwd 0600 as a conffile, the examples; serves a session from
the installed /usr/sbin/pop3d under systemd-socket-activate (its default
user file and state directory, its pre-login user); then dpkg -r (the user
file stays) and dpkg -P (the user file and the state directory go).

The machine is left as it was: the package purged, and the pop3d user,
which Debian packages keep on purge, deleted again when this test made it.
Skips when not root, when pop3d is installed already, or when /etc/pop3d or
/var/lib/pop3d exist (an admin's files are never touched).

Prints "ok NAME", "FAIL NAME: why", "skip NAME: why" and a closing
"N passed, N failed, N skipped". Python standard library only.
"""

import sys
sys.dont_write_bytecode = True

import argparse
import glob
import grp
import os
import poplib
import pwd
import shutil
import stat
import ssl
import subprocess
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
import mboxlib as mb                      # noqa: E402
import pop3lib                            # noqa: E402
from pop3lib import free_port             # noqa: E402

TEST_UID = 4242
T = pop3lib.Tally('deb.')
ok, fail, skip = T.ok, T.fail, T.skip


def check(name, cond, why=""):
    if cond:
        ok(name)
    else:
        fail(name, why or "not so")
    return cond


def sh(argv, **kw):
    kw.setdefault("timeout", 600)
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def mode(path):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def installed():
    r = sh(["dpkg-query", "-W", "-f=${Status}", "pop3d"])
    return r.returncode == 0 and r.stdout.decode().strip()


def build(args):
    if args.deb:
        return os.path.abspath(args.deb)
    t0 = time.time()
    r = sh(["sh", os.path.join(TOP, "scripts/deb.sh")], cwd=TOP, timeout=900)
    if r.returncode != 0:
        fail("build", r.stderr.decode(errors="replace")[-1500:])
        return None
    deb = os.path.join(TOP, r.stdout.decode().strip().splitlines()[-1])
    version = [l.split('"')[1] for l in open(os.path.join(TOP, "config.h"))
               if l.startswith("#define POP3D_VERSION ")][0]
    arch = sh(["dpkg", "--print-architecture"]).stdout.decode().strip()
    check("build", os.path.basename(deb) == "pop3d_%s_%s.deb" % (version, arch),
          "made %s, want pop3d_%s_%s.deb" % (deb, version, arch))
    print("# build: %.0f s" % (time.time() - t0))
    return deb


def lintian(deb):
    if shutil.which("lintian") is None:
        fail("lintian", "lintian is not installed (scripts/deps.sh installs it)")
        return
    r = sh(["lintian", "--fail-on", "error,warning", "--display-info", deb], timeout=300)
    out = r.stdout.decode(errors="replace")
    tags = [l for l in out.splitlines() if l[:2] in ("E:", "W:")]
    check("lintian", r.returncode == 0 and not tags,
          "exit %d: %s" % (r.returncode, "; ".join(tags) or out[-500:]))
    # every override must carry its reason: a comment line before it
    src = os.path.join(TOP, "debian/pop3d.lintian-overrides")
    lines = open(src).read().splitlines() if os.path.exists(src) else []
    bare = [l for i, l in enumerate(lines)
            if l.strip() and not l.startswith("#") and (i == 0 or not lines[i - 1].startswith("#"))]
    check("lintian-overrides-explained", not bare, "overrides without a reason: %r" % bare)


def installed_files():
    checks = {
        "/usr/sbin/pop3d": 0o755, "/usr/bin/pop3passwd": 0o755,
        "/usr/lib/pop3d/pop3d-tls.so": 0o644,
        "/usr/share/man/man8/pop3d.8.gz": 0o644,
        "/usr/share/man/man5/pop3d.passwd.5.gz": 0o644,
        "/usr/share/man/man1/pop3passwd.1.gz": 0o644,
        "/lib/systemd/system/pop3d.socket": 0o644,
        "/lib/systemd/system/pop3d@.service": 0o644,
        "/lib/systemd/system/pop3s.socket": 0o644,
        "/lib/systemd/system/pop3s@.service": 0o644,
        "/usr/lib/sysusers.d/pop3d.conf": 0o644,
        "/usr/share/doc/pop3d/examples/fail2ban/filter.d/pop3d.conf": 0o644,
        "/usr/share/doc/pop3d/examples/fail2ban/jail.d/pop3d.conf": 0o644,
        "/usr/share/doc/pop3d/examples/nginx/pop3d-proxy.conf": 0o644,
        "/usr/share/doc/pop3d/examples/haproxy/haproxy.cfg": 0o644,
        "/usr/share/doc/pop3d/examples/inetd.conf": 0o644,
        "/etc/pop3d/passwd": 0o600,
        "/var/lib/pop3d": 0o700,
    }
    bad = ["%s: %s" % (p, "missing" if mode(p) is None else "mode %o uid %d" % (mode(p)[0], mode(p)[1]))
           for p, m in checks.items() if mode(p) is None or mode(p)[0] != m or mode(p)[1] != 0]
    check("files", not bad, "; ".join(bad))
    units = [l for l in open("/lib/systemd/system/pop3d@.service") if l.startswith("ExecStart=")]
    check("unit-paths", units and units[0].strip() == "ExecStart=/usr/sbin/pop3d -f /etc/pop3d/passwd",
          "pop3d@.service: %r" % units)
    wants = glob.glob("/etc/systemd/system/*.wants/pop3*") + \
        glob.glob("/etc/systemd/system/pop3*")
    check("sockets-not-enabled", not wants, "enabled: %r" % wants)
    conff = sh(["dpkg-query", "-W", "-f=${Conffiles}", "pop3d"]).stdout.decode()
    check("conffile", "/etc/pop3d/passwd" in conff, "conffiles: %r" % conff)
    try:
        pw = pwd.getpwnam("pop3d")
        check("system-user", pw.pw_uid < 1000 and pw.pw_uid != 0 and
              pw.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin"),
              "pop3d: uid %d shell %s" % (pw.pw_uid, pw.pw_shell))
    except KeyError:
        fail("system-user", "no user pop3d after the install")
    r = sh(["/usr/sbin/pop3d", "-V"])
    check("version", r.returncode == 0 and r.stdout.startswith(b"pop3d "), repr(r.stdout))


def session(work):
    """A session through the installed binary, its default user file and
    state directory, under systemd-socket-activate."""
    if shutil.which("systemd-socket-activate") is None:
        fail("session", "systemd-socket-activate missing")
        return
    maildir = os.path.join(work, "mail")
    os.makedirs(maildir)
    os.chmod(work, 0o755)
    os.chown(maildir, TEST_UID, TEST_UID)
    raws = [mb.message(b"packaged %d" % i, b"body %d\n.dot\n" % i) for i in (1, 2)]
    box = os.path.join(maildir, "alice")
    with open(box, "wb") as f:
        f.write(mb.build_mbox(raws))
    os.chown(box, TEST_UID, TEST_UID)
    os.chmod(box, 0o600)
    with open("/etc/pop3d/passwd", "a") as f:
        f.write("alice:{PLAIN}pw-deb:%d:%d:Alice:%s\n" % (TEST_UID, TEST_UID, box))

    def use(p):
        p.user("alice")
        p.pass_("pw-deb")
        n, _ = p.stat()
        resp, lines, octets = p.retr(2)
        got = b"".join(l + b"\r\n" for l in lines)
        p.quit()
        check("session", n == 2 and got == mb.delivered(raws[1]),
              "STAT %d, RETR 2 %r" % (n, got[:80]))
        st = mode("/var/lib/pop3d/empty")
        check("state-dir-used", st is not None, "no /var/lib/pop3d/empty after a session")
    through_installed("session", [], lambda port: poplib.POP3("127.0.0.1", port, timeout=20), use)


def through_installed(name, args, connect, use):
    """use(client) against the installed /usr/sbin/pop3d ARGS under
    systemd-socket-activate, client = connect(port) once it listens; a
    connection or protocol error is FAIL name, with the server's stderr."""
    port = free_port()
    act = subprocess.Popen(["systemd-socket-activate", "--accept", "--inetd", "-l",
                            "127.0.0.1:%d" % port, "/usr/sbin/pop3d"] + args,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        p = None
        for _ in range(100):
            try:
                p = connect(port)
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        if p is None:
            fail(name, "no connection to 127.0.0.1:%d" % port)
            return
        use(p)
    except (poplib.error_proto, OSError) as e:
        fail(name, "%s; server stderr: %s" % (e, act.stderr.read1(2000) if act.stderr else ""))
    finally:
        act.terminate()
        act.wait(10)


def tls_session(work):
    """POP3S through the installed binary: it finds its TLS module where the
    package put it (/usr/lib/pop3d/pop3d-tls.so), and the session process
    maps no OpenSSL."""
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    r = sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", "/CN=localhost", "-days", "2", "-keyout", key, "-out", cert])
    if not check("tls-session-cert", r.returncode == 0, r.stderr.decode(errors="replace")[-300:]):
        return
    os.chmod(key, 0o600)
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False

    def use(p):
        p.user("alice")
        p.pass_("pw-deb")
        n, _ = p.stat()
        maps = ""
        for pid in sh(["pgrep", "-x", "-u", str(TEST_UID), "pop3d"]).stdout.split():
            with open("/proc/%d/maps" % int(pid)) as f:
                maps += f.read()
        p.quit()
        check("tls-session", n == 2 and maps != "" and "libcrypto" not in maps,
              "STAT %d; the session maps libcrypto: %s" % (n, "libcrypto" in maps))
    through_installed("tls-session", ["-s", "-c", cert, "-k", key],
                      lambda port: poplib.POP3_SSL("127.0.0.1", port, timeout=20, context=ctx),
                      use)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deb")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(TOP, "debian/control")):
        fail("debian", "no debian/ directory")
    deb = build(args)
    if deb:
        lintian(deb)
    if deb is None:
        pass
    elif os.geteuid() != 0:
        skip("install", "dpkg -i needs root")
    elif installed():
        skip("install", "pop3d is installed on this machine already (%s)" % installed())
    elif os.path.exists("/etc/pop3d") or os.path.exists("/var/lib/pop3d"):
        skip("install", "/etc/pop3d or /var/lib/pop3d exist: an admin's files are not touched")
    else:
        had_user = user_exists("pop3d")
        work = tempfile.mkdtemp(prefix="pop3d-deb.")
        policy = None
        try:
            if not os.path.exists("/usr/sbin/policy-rc.d"):   # nothing starts meanwhile
                policy = "/usr/sbin/policy-rc.d"
                with open(policy, "w") as f:
                    f.write("#!/bin/sh\n# pop3d tests/deb.py: no service starts\nexit 101\n")
                os.chmod(policy, 0o755)
            t0 = time.time()
            r = sh(["dpkg", "-i", deb], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
            if check("dpkg-i", r.returncode == 0, r.stderr.decode(errors="replace")[-800:]):
                installed_files()
                session(work)
                tls_session(work)
                r = sh(["dpkg", "-r", "pop3d"])
                check("dpkg-r", r.returncode == 0, r.stderr.decode(errors="replace")[-500:])
                kept = open("/etc/pop3d/passwd").read() if os.path.exists("/etc/pop3d/passwd") else ""
                check("remove-keeps-user-file", "alice:{PLAIN}pw-deb" in kept and
                      mode("/etc/pop3d/passwd")[0] == 0o600, "after dpkg -r: %r" % kept[:200])
                check("remove-keeps-state", mode("/var/lib/pop3d") is not None)
                gone = [p for p in ("/usr/sbin/pop3d", "/usr/bin/pop3passwd",
                                    "/usr/lib/pop3d/pop3d-tls.so",
                                    "/lib/systemd/system/pop3d.socket",
                                    "/usr/share/man/man8/pop3d.8.gz") if os.path.exists(p)]
                check("remove-removes-program", not gone, "left: %r" % gone)
                r = sh(["dpkg", "-P", "pop3d"])
                check("dpkg-P", r.returncode == 0, r.stderr.decode(errors="replace")[-500:])
                left = [p for p in ("/etc/pop3d", "/var/lib/pop3d", "/usr/share/doc/pop3d",
                                    "/usr/lib/sysusers.d/pop3d.conf") if os.path.exists(p)]
                check("purge-removes-all", not left and not installed(),
                      "left: %r, status %r" % (left, installed()))
            print("# install, session, remove, purge: %.0f s" % (time.time() - t0))
        finally:
            if installed():
                sh(["dpkg", "-P", "pop3d"])
            if not had_user and user_exists("pop3d"):   # Debian keeps it; we made it
                sh(["userdel", "pop3d"])
                try:
                    grp.getgrnam("pop3d")
                    sh(["groupdel", "pop3d"])
                except KeyError:
                    pass
            if policy:
                os.unlink(policy)
            shutil.rmtree(work, ignore_errors=True)
        check("machine-as-before", not installed() and user_exists("pop3d") == had_user
              and not os.path.exists("/etc/pop3d") and not os.path.exists("/var/lib/pop3d"))
    return T.summary()


if __name__ == "__main__":
    sys.exit(main())
