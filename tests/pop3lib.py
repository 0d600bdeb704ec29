"""Helpers for the pop3d integration tests: per-test environments (temp dir,
user file, mboxes, lock dir), sessions over pipes and TCP, the
systemd-socket-activate wrapper, crypt(3) via libxcrypt.  Standard library
only; every wait is bounded."""

import ctypes
import fcntl
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POP3D = os.path.abspath(os.environ.get("POP3D") or os.path.join(REPO, "pop3d"))
IS_ROOT = os.geteuid() == 0
TEST_UID = 4242
TEST_GID = 4242
DEFAULT_TIMEOUT = 15.0

GREETING_TS = re.compile(r"^\+OK .*(<[^<>@\s]+@[^<>\s]+>)")

# ---------------------------------------------------------------- crypt

_libcrypt = None


def _crypt_lib():
    global _libcrypt
    if _libcrypt is None:
        lib = ctypes.CDLL("libcrypt.so.1")
        lib.crypt_gensalt.restype = ctypes.c_char_p
        lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p,
                                      ctypes.c_int]
        lib.crypt.restype = ctypes.c_char_p
        lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        _libcrypt = lib
    return _libcrypt


_hash_cache = {}


def crypt_hash(password, prefix="$y$"):
    """crypt(3) hash of password with a fresh salt of the given scheme."""
    key = (password, prefix)
    if key in _hash_cache:
        return _hash_cache[key]
    lib = _crypt_lib()
    count = 5 if prefix == "$2b$" else 0
    salt = lib.crypt_gensalt(prefix.encode(), count, None, 0)
    if not salt:
        raise RuntimeError("crypt_gensalt failed for %s" % prefix)
    h = lib.crypt(password.encode(), salt)
    if not h or h.startswith(b"*"):
        raise RuntimeError("crypt failed for %s" % prefix)
    h = h.decode()
    assert h.startswith(prefix), h
    _hash_cache[key] = h
    return h


_backend = None


def crypt_backend(binary=None):
    """The crypt pop3d was built with, from the second line of `pop3d -V`
    (cryptlib.h): "libxcrypt", "C library crypt_r" or "none"."""
    global _backend
    if _backend is None or binary is not None:
        try:
            out = subprocess.run([binary or POP3D, "-V"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, timeout=60).stdout.decode()
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        m = re.search(r"^crypt: (.*?) \(", out, re.M)
        found = m.group(1) if m else "libxcrypt"        # (builds before issue 14)
        if binary is not None:
            return found
        _backend = found
    return _backend


def crypt_skip_reason(prefix):
    """Why this pop3d cannot verify a hash of the scheme prefix, or None."""
    b = crypt_backend()
    if b == "none":
        return ("this pop3d verifies no crypt hashes: built with CRYPT=none "
                "(a C library without crypt, as Debian's musl)")
    if prefix == "$y$" and b != "libxcrypt":
        return "yescrypt needs libxcrypt; this pop3d has the %s" % b
    return None


def apop_digest(timestamp, secret):
    return hashlib.md5((timestamp + secret).encode()).hexdigest()


# ---------------------------------------------------------------- plain runners

class Tally:
    """"ok/FAIL/skip NAME" lines and their counts, for the scripts that are
    not unittest suites (tests/deb.py, tests/cross.py)."""

    def __init__(self, prefix=""):
        self.prefix = prefix
        self.passed = self.failed = self.skipped = 0

    def ok(self, name, info=""):
        self.passed += 1
        print("ok %s%s%s" % (self.prefix, name, " (%s)" % info if info else ""), flush=True)

    def fail(self, name, why):
        self.failed += 1
        print("FAIL %s%s: %s" % (self.prefix, name, why), flush=True)

    def skip(self, name, why):
        self.skipped += 1
        print("skip %s%s: %s" % (self.prefix, name, why), flush=True)

    def summary(self):
        """The closing line; the exit status."""
        print("%d passed, %d failed, %d skipped" % (self.passed, self.failed, self.skipped))
        return 1 if self.failed else 0


# ---------------------------------------------------------------- processes

def children(pid):
    """pid's child processes (/proc/PID/task/PID/children: no scan of /proc)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def descendants(pid):
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def stop_group(proc):
    """Stop proc's process group (started with start_new_session): SIGTERM,
    then SIGKILL to whatever is left, and reap proc."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def tree_cpu(pid):
    """user+sys seconds of pid and its descendants, reaped children included
    (utime, stime, cutime, cstime of /proc/PID/stat)."""
    total = 0
    for p in [pid] + descendants(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                parts = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields after ")" start at field 3 (state): utime=14 stime=15 cutime=16 cstime=17
        total += sum(int(parts[i]) for i in (11, 12, 13, 14))
    return total / os.sysconf("SC_CLK_TCK")


def proc_tree(pid):
    """pid and all its descendants (from /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out = []
    todo = [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def proc_status(pid):
    res = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                res[k] = v.split()
    except OSError:
        pass
    return res


def wait_for(pred, timeout=5.0, step=0.02):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            return v
        time.sleep(step)


# ---------------------------------------------------------------- transports

class ProtocolError(AssertionError):
    pass


class PipeTransport:
    def __init__(self, proc):
        self.proc = proc
        self.rfd = proc.stdout.fileno()
        self.closed_w = False
        os.set_blocking(proc.stdin.fileno(), False)

    def write(self, data):
        self._write_all(data)

    def _write_all(self, data):
        fd = self.proc.stdin.fileno()
        mv = memoryview(data)
        end = time.monotonic() + DEFAULT_TIMEOUT
        while len(mv):
            _, w, _ = select.select([], [fd], [], max(0.0, end - time.monotonic()))
            if not w:
                raise ProtocolError("timeout writing to pop3d")
            try:
                n = os.write(fd, mv[:65536])
            except BlockingIOError:
                continue
            mv = mv[n:]

    def write_bg(self, data):
        t = threading.Thread(target=self._write_quiet, args=(data,), daemon=True)
        t.start()
        return t

    def _write_quiet(self, data):
        try:
            self._write_all(data)
        except (OSError, ProtocolError):
            pass

    def read_some(self, timeout):
        r, _, _ = select.select([self.rfd], [], [], max(0.0, timeout))
        if not r:
            raise ProtocolError("timeout waiting for pop3d output")
        return os.read(self.rfd, 1 << 20)

    def close_write(self):
        if not self.closed_w:
            self.closed_w = True
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def close(self):
        self.close_write()
        try:
            self.proc.stdout.close()
        except OSError:
            pass


class SocketTransport:
    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        self.sock.settimeout(DEFAULT_TIMEOUT)
        self.sock.sendall(data)

    def write_bg(self, data):
        def w():
            try:
                self.write(data)
            except OSError:
                pass
        t = threading.Thread(target=w, daemon=True)
        t.start()
        return t

    def read_some(self, timeout):
        self.sock.settimeout(max(0.001, timeout))
        try:
            return self.sock.recv(1 << 20)
        except socket.timeout:
            raise ProtocolError("timeout waiting for pop3d output")
        except ConnectionResetError:
            return b""

    def close_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.sock.close()


class Session:
    """A POP3 conversation.  Replies are checked to end in CRLF."""

    def __init__(self, transport, proc=None, read_greeting=True):
        self.t = transport
        self.proc = proc
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.greeting = None
        if read_greeting:
            self.greeting = self.reply()

    # raw I/O
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.t.write(data)

    def send_bg(self, data):
        return self.t.write_bg(data)

    def _fill(self, deadline):
        if self.eof:
            return False
        data = self.t.read_some(deadline - time.monotonic())
        if not data:
            self.eof = True
            return False
        if self.pos:
            self.buf = self.buf[self.pos:] + data
            self.pos = 0
        else:
            self.buf += data
        return True

    def pending(self):
        return self.buf[self.pos:]

    def readline(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        scanned = 0                       # relative to self.pos
        while True:
            i = self.buf.find(b"\n", self.pos + scanned)
            if i >= 0:
                line = self.buf[self.pos:i + 1]
                self.pos = i + 1
                return line
            scanned = len(self.buf) - self.pos
            if not self._fill(deadline):
                raise EOFError("connection closed by pop3d (pending %r)"
                               % self.pending()[:200])

    def reply(self, timeout=DEFAULT_TIMEOUT):
        """One status line, as str without CRLF."""
        line = self.readline(timeout)
        if not line.endswith(b"\r\n"):
            raise ProtocolError("reply line not CRLF-terminated: %r" % line)
        s = line[:-2].decode("latin-1")
        if not (s.startswith("+OK") or s.startswith("-ERR")):
            raise ProtocolError("status line neither +OK nor -ERR: %r" % s)
        if len(line) > 512:
            raise ProtocolError("status line longer than 512 octets")
        return s

    def multiline(self, timeout=DEFAULT_TIMEOUT):
        """Body of a multi-line reply: content with dot-stuffing undone,
        lines CRLF-terminated; the terminator is not included."""
        out = []
        while True:
            line = self.readline(timeout)
            if not line.endswith(b"\r\n"):
                raise ProtocolError("multi-line reply line not CRLF-terminated: %r"
                                    % line[:100])
            if line == b".\r\n":
                return b"".join(out)
            if line.startswith(b"."):
                line = line[1:]
            out.append(line)

    def multiline_lines(self, timeout=DEFAULT_TIMEOUT):
        data = self.multiline(timeout)
        return [l.decode("latin-1") for l in data.split(b"\r\n")[:-1]]

    # commands
    def cmd(self, line, timeout=DEFAULT_TIMEOUT):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(timeout)

    def cmd_multi(self, line, timeout=DEFAULT_TIMEOUT):
        st = self.cmd(line, timeout)
        if st.startswith("+OK"):
            return st, self.multiline(timeout)
        return st, None

    def cmd_lines(self, line, timeout=DEFAULT_TIMEOUT):
        st = self.cmd(line, timeout)
        if st.startswith("+OK"):
            return st, self.multiline_lines(timeout)
        return st, None

    def login(self, user, password):
        st = self.cmd("USER " + user)
        if not st.startswith("+OK"):
            raise ProtocolError("USER %s: %s" % (user, st))
        st = self.cmd("PASS " + password)
        if not st.startswith("+OK"):
            raise ProtocolError("PASS for %s: %s" % (user, st))
        return st

    def timestamp(self):
        m = GREETING_TS.match(self.greeting or "")
        return m.group(1) if m else None

    def expect_eof(self, timeout=DEFAULT_TIMEOUT):
        """Wait for the server to close; return any data it still sent."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._fill(deadline)
            except ProtocolError:
                raise ProtocolError("pop3d did not close the connection; pending %r"
                                    % self.pending()[:200])
        data = self.pending()
        self.buf, self.pos = b"", 0
        return data

    def quit(self):
        st = self.cmd("QUIT")
        rest = self.expect_eof()
        if rest:
            raise ProtocolError("data after QUIT reply: %r" % rest[:200])
        return st

    def close(self):
        self.t.close()

    def wait(self, timeout=DEFAULT_TIMEOUT):
        if self.proc is None:
            return None
        return self.proc.wait(timeout=timeout)


# ---------------------------------------------------------------- environment

class Env:
    """One test's private world: temp dir, user file, mboxes, lock dir."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pop3d-test-", dir="/tmp")
        self.procs = []
        self.activators = []
        if IS_ROOT:
            os.chmod(self.dir, 0o711)
            self.uid, self.gid = TEST_UID, TEST_GID
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
        self.maildir = os.path.join(self.dir, "mail")
        os.mkdir(self.maildir, 0o755)
        os.chmod(self.maildir, 0o755)
        if IS_ROOT:
            os.chown(self.maildir, self.uid, self.gid)
        self.lockdir = os.path.join(self.dir, "locks")
        os.mkdir(self.lockdir, 0o700)
        self.userfile = os.path.join(self.dir, "passwd")
        self.entries = []
        self.ids_empty = False

    # ---- user file
    def ids(self, uid=None, gid=None):
        if uid is None:
            uid = "" if (self.ids_empty and not IS_ROOT) else str(self.uid)
        if gid is None:
            gid = "" if (self.ids_empty and not IS_ROOT) else str(self.gid)
        return str(uid), str(gid)

    def mbox_path(self, name):
        return os.path.join(self.maildir, name + ".mbox")

    def add_user(self, name, secret, mbox=None, uid=None, gid=None, gecos="Test User"):
        """Add a user-file entry; returns the maildrop path."""
        path = mbox or self.mbox_path(name)
        u, g = self.ids(uid, gid)
        self.entries.append("%s:%s:%s:%s:%s:%s" % (name, secret, u, g, gecos, path))
        return path

    def add_raw(self, line):
        self.entries.append(line)

    def write_userfile(self, mode=0o600, extra_head="# pop3d test user file\n\n"):
        with open(self.userfile, "w") as f:
            f.write(extra_head)
            for e in self.entries:
                f.write(e + "\n")
        os.chmod(self.userfile, mode)
        return self.userfile

    # ---- mboxes
    def write_mbox(self, path, data, mode=0o600):
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        if IS_ROOT:
            os.chown(path, self.uid, self.gid)

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def append_locked(self, path, data):
        """Append like a delivery agent: under an fcntl write lock."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            end = time.monotonic() + 10
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > end:
                        raise AssertionError("mbox fcntl lock held for 10 s")
                    time.sleep(0.02)
            os.write(fd, data)
            fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # ---- running pop3d
    def args(self, extra=(), delay="0", userfile=None, lockdir=None):
        a = [POP3D, "-f", userfile or self.userfile, "-l", lockdir or self.lockdir]
        if delay is not None:
            a += ["-D", str(delay)]
        return a + list(extra)

    def child_env(self, extra=None):
        e = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C"}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                e[k] = os.environ[k]
        if extra:
            e.update(extra)
        return e

    def popen(self, argv, env=None, **kw):
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=kw.pop("stderr", subprocess.PIPE), bufsize=0,
                             env=env or self.child_env(), close_fds=True, **kw)
        self.procs.append(p)
        return p

    def session(self, extra=(), delay="0", read_greeting=True, userfile=None, env=None,
                stderr=subprocess.PIPE, **popen_kw):
        p = self.popen(self.args(extra, delay, userfile), env=env, stderr=stderr, **popen_kw)
        return Session(PipeTransport(p), proc=p, read_greeting=read_greeting)

    def run(self, data, extra=(), delay="0", timeout=DEFAULT_TIMEOUT, userfile=None,
            argv=None, env=None):
        """One-shot: feed data on stdin, return (rc, stdout, stderr)."""
        p = self.popen(argv or self.args(extra, delay, userfile), env=env)
        try:
            out, err = p.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate(timeout=5)
            raise ProtocolError("pop3d did not finish within %s s" % timeout)
        return p.returncode, out, err

    def activate(self, extra=(), inetd=True, delay="0"):
        a = Activator(self, self.args(extra, delay), inetd=inetd)
        self.activators.append(a)
        return a

    def cleanup(self):
        for a in self.activators:
            a.stop()
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdin, p.stdout, p.stderr):
                try:
                    if f:
                        f.close()
                except OSError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- socket activation

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_listening(port):
    want = "0100007F:%04X" % port
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":
                    return True
    except OSError:
        pass
    return False


class Activator:
    """systemd-socket-activate --accept [--inetd] on 127.0.0.1:PORT."""

    def __init__(self, env, pop3d_argv, inetd=True):
        self.env = env
        self.logpath = os.path.join(env.dir, "activator-%d.log" % len(env.activators))
        self.log = open(self.logpath, "wb")
        for attempt in range(5):
            self.port = free_port()
            argv = ["systemd-socket-activate", "--accept"]
            if inetd:
                argv.append("--inetd")
            argv += ["-l", "127.0.0.1:%d" % self.port] + pop3d_argv
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=self.log,
                                         env=env.child_env(), start_new_session=True,
                                         close_fds=True)
            if wait_for(lambda: port_listening(self.port) or self.proc.poll() is not None,
                        timeout=5) and self.proc.poll() is None:
                return
            self.stop()
        raise ProtocolError("systemd-socket-activate did not start listening")

    def connect(self, timeout=DEFAULT_TIMEOUT):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return s

    def session(self, read_greeting=True):
        return Session(SocketTransport(self.connect()), read_greeting=read_greeting)

    def logtext(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("latin-1")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)   # children of the group, too
        except OSError:
            pass
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.log.close()
        except OSError:
            pass
