"""A second, independent mbox reader for the crash and fault tests.

It shares no code with pop3d nor with tests/mboxlib.py: it cuts the stored
bytes into chunks with one regular expression, where a chunk is everything
from a message's "From " line up to the next message's "From " line (the
separator blank line included), exactly the unit pop3d's update moves.  The
concatenation of the chunks is always the whole file, so comparing chunks
with the expected ones compares every octet of the mbox.

A message starts at a "From " line at the start of the file or after a
blank line (empty, or a lone CR).  Messages are identified by their first
Message-ID header.
"""

import fcntl
import os
import re
import struct
import subprocess

_START = re.compile(rb"(?:\A|(?<=\n\n)|(?<=\n\r\n))From ")
_MSGID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.I | re.M)


class Chunk:
    __slots__ = ("offset", "data", "msgid")

    def __init__(self, offset, data):
        self.offset = offset
        self.data = data
        head = data[:16384]                 # the header (the tests' headers are short)
        head = head.split(b"\n\n", 1)[0].split(b"\n\r\n", 1)[0]
        m = _MSGID.search(head)
        self.msgid = m.group(1).decode("latin-1") if m else None

    def __repr__(self):
        return "Chunk(@%d, %d octets, %s)" % (self.offset, len(self.data), self.msgid)


def chunks(data):
    """The chunks of mbox bytes.  Octets before the first From_ line (there
    should be none) come back as a chunk with msgid None."""
    starts = [m.start() for m in _START.finditer(data)]
    out = []
    if not starts or starts[0] != 0:
        out.append(Chunk(0, data[:starts[0] if starts else len(data)]))
        if out[0].data == b"":
            out = []
    for k, s in enumerate(starts):
        e = starts[k + 1] if k + 1 < len(starts) else len(data)
        out.append(Chunk(s, data[s:e]))
    return out


def chunk_of(from_line, raw, sep=b"\n"):
    """The chunk a message makes when written with this separator line."""
    return from_line + raw + sep


def read_fd(fd):
    size = os.fstat(fd).st_size
    parts = []
    off = 0
    while off < size:
        b = os.pread(fd, min(1 << 20, size - off), off)
        if not b:
            break
        parts.append(b)
        off += len(b)
    return b"".join(parts)


def read_locked(path):
    """The mbox's bytes read under a whole-file fcntl read lock, as a mail
    reader would: no delivery agent is half-way through an append then."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH)
        try:
            return read_fd(fd)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---- pop3d's journal, read from the outside to tell where a kill landed.
# Layout (mbox.c, struct journal): magic[8]; the mbox's identity dev ino uid
# (u64) btime_sec (i64) btime_nsec gen flags (u64); start size new_size
# nranges (u64); prefix[16]; path[4096]; sum[16] = 4224 octets; then nranges
# (src, len) pairs of u64; then the saved octets [start, size); then a commit
# record magic[8] sum[16].  sum and the commit's digest: journal_digest().

JOURNAL_MAGIC = b"POP3DJ2\n"
COMMIT_MAGIC = b"POP3DC2\n"
_HEADER = struct.Struct("<8s3QqQQQ4Q16s4096s16s")
HEADER = _HEADER.size
COMMIT = 24
SUM_AT = HEADER - 16


def journal_digest(data):
    """The digest pop3d's journal uses (mbox.c, struct digest): XXH3-128, as
    the reference xxhsum (Debian's xxhash) computes it."""
    r = subprocess.run(["xxhsum", "-H2", "-"], input=data, capture_output=True, check=True)
    return bytes.fromhex(r.stdout.split()[0].decode())


class Journal:
    def __init__(self, data):
        self.size = len(data)
        self.valid = False
        self.committed = False
        self.start = self.orig_size = self.new_size = None
        self.ranges = []
        self.path = None
        self.uid = self.ino = None
        self.saved = b""
        if len(data) < HEADER or data[:8] != JOURNAL_MAGIC:
            return
        f = _HEADER.unpack(data[:HEADER])
        _dev, ino, uid = f[1:4]
        start, size, new_size, nranges = f[8:12]
        if not (start <= new_size <= size) or nranges > size - start:
            return
        saved_at = HEADER + 16 * nranges
        if len(data) < saved_at + size - start:
            return
        if journal_digest(data[:SUM_AT] + data[HEADER:saved_at + size - start]) != f[14]:
            return
        self.valid = True
        self.start, self.orig_size, self.new_size = start, size, new_size
        self.ino, self.uid = ino, uid
        self.path = f[13].split(b"\0", 1)[0]
        self.ranges = [struct.unpack("<2Q", data[HEADER + 16 * k:HEADER + 16 * k + 16])
                       for k in range(nranges)]
        self.saved = data[saved_at:saved_at + size - start]
        c = data[saved_at + size - start:saved_at + size - start + COMMIT]
        self.committed = (len(c) == COMMIT and c[:8] == COMMIT_MAGIC
                          and c[8:] == journal_digest(f[14]))


def read_journal(path):
    try:
        with open(path, "rb") as f:
            return Journal(f.read())
    except FileNotFoundError:
        return Journal(b"")


# ---- running pop3d under the shim (tests/faultinject.c)

TESTS = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(TESTS, "faultinject.so")


def ensure_shim():
    """Build tests/faultinject.so when it is missing or older than its source
    (make builds it too: `make tests/faultinject.so`).  Returns its path."""
    import subprocess
    src = os.path.join(TESTS, "faultinject.c")
    if (not os.path.exists(SHIM)
            or os.path.getmtime(SHIM) < os.path.getmtime(src)):
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-O2", "-Wall", "-shared", "-fPIC", "-o", SHIM, src, "-ldl"],
                       check=True)
    return SHIM


def shim_env(base, fault=None, delay_us=None, trace=None, subvert=None):
    """Environment for a pop3d run under the shim."""
    e = dict(base)
    e["LD_PRELOAD"] = SHIM
    if subvert:
        e["POP3D_FAULT_SUBVERT"] = subvert
    if fault:
        e["POP3D_FAULT"] = fault
    if delay_us:
        e["POP3D_FAULT_DELAY_US"] = str(delay_us)
    if trace is not None:
        e["POP3D_FAULT_TRACE"] = trace
    # an ASan build wants its runtime first; the shim only wraps libc calls
    opts = e.get("ASAN_OPTIONS", "")
    e["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "verify_asan_link_order=0"
    return e


class TraceOp:
    __slots__ = ("seq", "op", "ino", "off", "len", "fail", "t")

    def __init__(self, line, t):
        f = line.split()
        self.seq = int(f[0])
        self.op = f[1]
        kv = dict(x.split("=", 1) for x in f[2:] if "=" in x)
        self.ino = int(kv.get("ino", 0))
        self.off = int(kv.get("off", -1))
        self.len = int(kv.get("len", 0))
        self.fail = "FAIL" in f[2:]
        self.t = t

    def __repr__(self):
        return "%d %s ino=%d off=%d len=%d%s" % (self.seq, self.op, self.ino, self.off,
                                                 self.len, " FAIL" if self.fail else "")


class TraceWatcher:
    """Reads the shim's trace lines from a pipe in a thread; decide(op, ops)
    is called for each one and may SIGKILL the process (returns True to
    kill).  pop3d is then inside the shim's delay, before that call runs."""

    def __init__(self, rfd, decide=None):
        import threading
        self.rfd = rfd
        self.decide = decide
        self.ops = []
        self.pid = None
        self.killed_at = None           # the TraceOp seen when killing
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def start(self, pid):
        self.pid = pid
        self.ready.set()

    def _run(self):
        import signal
        import time
        buf = b""
        self.ready.wait(30)
        while True:
            try:
                data = os.read(self.rfd, 65536)
            except OSError:
                break
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                op = TraceOp(line.decode(), time.monotonic())
                self.ops.append(op)
                if (self.killed_at is None and self.decide is not None
                        and self.decide(op, self.ops)):
                    try:
                        os.kill(self.pid, signal.SIGKILL)
                        self.killed_at = op
                    except OSError:
                        pass
        os.close(self.rfd)

    def join(self, timeout=10):
        self.thread.join(timeout)


def age_dotlock(mbox, pid, seconds=7200):
    """After pop3d (pid) was killed holding <mbox>.lock: make the dotlock as
    old as it would be after that long, so that pop3d (stale after 300 s) and
    procmail (LOCKTIMEOUT, 1024 s) break it, as they would in real life.
    Only a dotlock holding that pid is touched.  True if it was there."""
    lock = mbox + ".lock"
    try:
        with open(lock, "rb") as f:
            holder = f.read().strip()
    except FileNotFoundError:
        return False
    if holder != str(pid).encode():
        return False
    t = os.stat(lock).st_mtime - seconds
    try:
        os.utime(lock, (t, t))
    except FileNotFoundError:
        return False
    return True
