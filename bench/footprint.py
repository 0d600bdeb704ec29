#!/usr/bin/python3
"""bench/footprint.py - the README's footprint table: for each pop3d binary
given, its size and the peak RSS (VmHWM) of one session over a pipe that
logs in, then STAT, LIST, UIDL and RETR of every message of a 1,000-message
mbox of about 12 MB, read from /proc/PID/status before QUIT. Run as root
(the session switches to the maildrop's owner, uid 4242). Prints figures;
asserts nothing.

    python3 bench/footprint.py [--runs 5] BINARY...
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import mboxlib as mb  # noqa: E402

UID = 4242


def make_mbox(path):
    rnd = random.Random(1)
    raws = []
    for i in range(1000):
        body = b"".join(b"%s\n" % bytes(rnd.choice(b"abcdefghij ") for _ in range(rnd.randint(20, 76)))
                        for _ in range(rnd.randint(170, 330)))
        raws.append(mb.message(b"footprint %d" % i, body))
    with open(path, "wb") as f:
        f.write(mb.build_mbox(raws))
    os.chown(path, UID, UID)
    os.chmod(path, 0o600)
    return len(raws), os.path.getsize(path)


def readline(f):
    line = f.readline()
    if not line:
        raise RuntimeError("pop3d closed the connection")
    return line


def multiline(f):
    while readline(f) != b".\r\n":
        pass


def one(binary, work):
    argv = [binary, "-f", os.path.join(work, "users"), "-l", os.path.join(work, "state"), "-D", "0"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    i, o = p.stdin, p.stdout
    readline(o)
    i.write(b"USER fp\r\nPASS fp\r\nSTAT\r\n")
    i.flush()
    readline(o)
    assert readline(o).startswith(b"+OK")
    n = int(readline(o).split()[1])
    for cmd in (b"LIST\r\n", b"UIDL\r\n"):
        i.write(cmd)
        i.flush()
        readline(o)
        multiline(o)
    for k in range(1, n + 1):
        i.write(b"RETR %d\r\n" % k)
        i.flush()
        assert readline(o).startswith(b"+OK")
        multiline(o)
    hwm = [l for l in open("/proc/%d/status" % p.pid) if l.startswith("VmHWM:")][0].split()[1]
    i.write(b"QUIT\r\n")
    i.flush()
    p.communicate(timeout=30)
    return int(hwm)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("binaries", nargs="+")
    opts = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pop3d-footprint-")
    try:
        os.chmod(work, 0o755)
        os.mkdir(os.path.join(work, "state"), 0o700)
        md = os.path.join(work, "mail")
        os.mkdir(md)
        os.chown(md, UID, UID)
        n, size = make_mbox(os.path.join(md, "fp"))
        with open(os.path.join(work, "users"), "w") as f:
            f.write("fp:{PLAIN}fp:%d:%d::%s\n" % (UID, UID, os.path.join(md, "fp")))
        os.chmod(os.path.join(work, "users"), 0o600)
        print("mbox: %d messages, %d octets; %d runs each" % (n, size, opts.runs))
        for b in opts.binaries:
            st = shutil.which(b) or b
            stripped = os.path.join(work, "stripped")
            shutil.copy(st, stripped)
            subprocess.run(["strip", stripped], check=False, stderr=subprocess.DEVNULL)
            hwms = sorted(one(os.path.abspath(st), work) for _ in range(opts.runs))
            print("%-40s %9d octets stripped   VmHWM %d-%d kB (median %d)"
                  % (b, os.path.getsize(stripped), hwms[0], hwms[-1], hwms[len(hwms) // 2]))
    finally:
        shutil.rmtree(work, True)


if __name__ == "__main__":
    main()
