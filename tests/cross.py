#!/usr/bin/python3
"""pop3d on arm64 and armhf, under qemu-user (issue 14).

    tests/cross.py [--targets aarch64,armhf] [--server] [-v]

1. tests/dropdump (the server's maildrop and command code, no fork) on
   x86-64 against the real ./pop3d over a pipe: the same octets after login
   for STAT, LIST, UIDL, RETR n and TOP n 3, on an mbox and a Maildir
   holding a corpus with every awkward line ending, and line lengths across
   the 64-octet blocks of the LF scan and the 32 KiB reads.
2. For each target: a cross build in a fresh copy of the sources
   (make CC=aarch64-linux-gnu-gcc / arm-linux-gnueabihf-gcc, -Werror), the
   unit tests under qemu-user (arm64: NEON and portable scans; armhf:
   portable scan and offsets past 4 GiB on a 32-bit CPU), and dropdump under
   qemu: its output must equal x86-64's octet for octet (UIDLs included:
   XXH3's portable path).
3. With --server (make check-slow): tests/run.py against each target's
   pop3d under qemu, where fork works with Debian's multiarch libc (below).

qemu is called directly, with -L to the target's root: "/" by default, where
Debian's multiarch libc6:arm64 and libc6:armhf live (scripts/deps.sh
--cross). With the cross toolchain's own sysroot (/usr/aarch64-linux-gnu,
libc6-arm64-cross) qemu-user 7.2 hangs on fork (armhf: the child
segfaults); with the multiarch libc it does not. POP3D_QEMU_ROOT overrides
the root. qemu refuses seccomp (prctl EINVAL), so the sandbox's filters
cannot be proven under it: the server logs "warning sandbox: seccomp".

Prints "ok NAME", "FAIL NAME: why" or "skip NAME: why" per test and a
closing "N passed, N failed, N skipped". Python standard library only.
"""

import sys
sys.dont_write_bytecode = True

import argparse
import os
import shutil
import subprocess
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pop3lib                            # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = {
    "aarch64": ("aarch64-linux-gnu", "qemu-aarch64-static"),
    "armhf": ("arm-linux-gnueabihf", "qemu-arm-static"),
}
IS_ROOT = os.geteuid() == 0
NOBODY = 65534
QEMU_ROOT = os.environ.get("POP3D_QEMU_ROOT", "/")

T = pop3lib.Tally('')
ok, fail, skip = T.ok, T.fail, T.skip


def as_user(argv):
    """Run as uid/gid 65534 when root: maildrops must be the runner's."""
    if IS_ROOT:
        return ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                "--clear-groups"] + argv
    return argv


# ---------------------------------------------------------------- the corpus

def body_lines(seed):
    """Lines (with their endings) of every awkward kind, deterministic."""
    endings = [b"\n", b"\r\n", b"\r\r\n", b"\n"]
    out = []
    x = seed
    # every length around the 64-octet blocks, with every ending
    for n in list(range(0, 140)) + [191, 192, 193, 255, 256, 257, 4095, 4096, 4097]:
        x = (x * 1103515245 + 12345) & 0x7fffffff
        end = endings[(x >> 8) % len(endings)]
        first = [b"a", b".", b"..", b"F", b">", b"\r", b"\x00", b"\xe9"][(x >> 12) % 8]
        line = (first + b"x" * n)[:n] if n else b""
        out.append(line + end)
        if x % 11 == 0:
            out.append([b"\n", b"\r\n", b"\n\n", b"\r\n\r\n"][(x >> 3) % 4])  # blank lines
        if x % 13 == 0:
            out.append(b"From inside the body\n")
        if x % 17 == 0:
            out.append(b".\r\n")
        if x % 19 == 0:
            out.append(b"lone\rcarriage\rreturns\n")
    return out


def messages():
    """(header, body) pairs; the last message has no final newline."""
    msgs = []
    for i in range(1, 13):
        hdr = [b"Received: from h%d.example.org\n" % i,
               b"\tby mx.example.org; Mon, 1 Jan 2024 00:00:%02d +0000\n" % i,
               b"Status: RO\n" if i % 3 == 0 else b"X-UID: %d\n" % i,
               b"Subject: awkward %d\n" % i]
        if i % 2:
            hdr = [h.replace(b"\n", b"\r\n") for h in hdr]
        body = b"".join(body_lines(i * 7919))
        if i == 5:
            body += b"y" * 70000 + b"\n"        # across the 32 KiB reads
        if i == 7:
            body = b""                          # no body at all
        msgs.append((b"".join(hdr), body))
    msgs.append(msgs[2])                        # a byte-identical copy: UIDL -2
    msgs.append((b"Subject: last\n", b"no final newline"))
    return msgs


def write_corpus(work):
    """An mbox and a Maildir of the same messages; owned by the runner."""
    mbox = os.path.join(work, "corpus.mbox")
    md = os.path.join(work, "corpus.md")
    with open(mbox, "wb") as f:
        for i, (h, b) in enumerate(messages()):
            sep = b"\n" if i else b""
            f.write(sep + b"From sender%d@example.org Mon Jan  1 00:00:00 2024\n" % (i % 3))
            f.write(h + (b"\r\n" if h.endswith(b"\r\n") else b"\n") + b)
    for d in ("", "new", "cur", "tmp"):
        os.makedirs(os.path.join(md, d), exist_ok=True)
    for i, (h, b) in enumerate(messages()):
        where, info = ("new", "") if i % 2 else ("cur", ":2,S")
        name = "%d.M%dP1.host%s" % (1700000000 + i, i, info)
        with open(os.path.join(md, where, name), "wb") as f:
            f.write(h + b"\n" + b)
    if IS_ROOT:
        for root, dirs, files in os.walk(work):
            for n in dirs + files:
                os.chown(os.path.join(root, n), NOBODY, NOBODY)
        os.chown(work, NOBODY, NOBODY)
    return {"mbox": mbox, "maildir": md + "/"}


# ---------------------------------------------------------------- helpers

def run(argv, timeout=600, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, **kw)


def copy_sources(dest):
    """Tracked and new files, as tests/check.sh copies them: a fresh build."""
    os.makedirs(dest)
    files = subprocess.run(["git", "-C", TOP, "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], stdout=subprocess.PIPE, check=True)
    for f in files.stdout.split(b"\0"):
        if not f:
            continue
        src = os.path.join(TOP, f.decode())
        if not os.path.isfile(src):
            continue
        dst = os.path.join(dest, f.decode())
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    for g in ("pop3d", "pop3passwd", "tests/unit", "tests/dropdump"):
        if os.path.exists(os.path.join(dest, g)):
            os.unlink(os.path.join(dest, g))


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def server_dump(pop3d, work, drop):
    """The real server's octets after login, over a pipe, for the commands
    dropdump runs."""
    users = os.path.join(work, "users")
    locks = os.path.join(work, "locks")
    os.makedirs(locks, mode=0o700, exist_ok=True)
    with open(users, "w") as f:
        f.write("u:{PLAIN}pw:::U:%s\n" % drop)
    os.chmod(users, 0o600)
    if IS_ROOT:
        os.chown(users, NOBODY, NOBODY)
        os.chown(locks, NOBODY, NOBODY)
    n = count_messages(pop3d, users, locks)
    cmds = ["USER u", "PASS pw", "STAT", "LIST", "UIDL"]
    for i in range(1, n + 1):
        cmds += ["RETR %d" % i, "TOP %d 3" % i]
    cmds.append("QUIT")
    p = run(as_user([pop3d, "-f", users, "-l", locks]),
            input="".join(c + "\r\n" for c in cmds).encode(), timeout=120)
    out = p.stdout
    # drop the greeting, USER's and PASS's replies (3 lines) and QUIT's
    for _ in range(3):
        out = out[out.index(b"\r\n") + 2:]
    tail = out.rindex(b"+OK pop3d signing off")
    return out[:tail]


def count_messages(pop3d, users, locks):
    p = run(as_user([pop3d, "-f", users, "-l", locks]),
            input=b"USER u\r\nPASS pw\r\nSTAT\r\nQUIT\r\n", timeout=60)
    for line in p.stdout.split(b"\r\n"):
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"+OK" and parts[1].isdigit():
            return int(parts[1])
    raise RuntimeError("no STAT from %s: %r %r" % (pop3d, p.stdout[:200], p.stderr[:200]))


# ---------------------------------------------------------------- the tests

def native(work, corpus, verbose):
    """dropdump equals the real server on x86-64; returns its outputs."""
    outs = {}
    r = run(["make", "-s", "-C", TOP, "pop3d", "tests/dropdump"])
    if r.returncode != 0:
        fail("native.build", r.stderr.decode(errors="replace")[-500:])
        return None
    dd = os.path.join(work, "dropdump")
    shutil.copy2(os.path.join(TOP, "tests/dropdump"), dd)
    pop3d = os.path.join(work, "pop3d")
    shutil.copy2(os.path.join(TOP, "pop3d"), pop3d)
    for kind, drop in corpus.items():
        p = run(as_user([dd, drop]), timeout=120)
        name = "dropdump[%s].equals-server" % kind
        if p.returncode != 0:
            fail(name, "dropdump exit %d: %s" % (p.returncode, p.stderr.decode()[-300:]))
            continue
        outs[kind] = p.stdout
        want = server_dump(pop3d, work, drop)
        if p.stdout == want:
            ok(name, "%d octets" % len(want))
        else:
            i = first_diff(p.stdout, want)
            fail(name, "differs at octet %d of %d/%d: %r vs %r" % (
                i, len(p.stdout), len(want), p.stdout[i:i + 40], want[i:i + 40]))
    return outs


def cross(target, work, corpus, native_outs, verbose):
    triplet, qemu = TARGETS[target]
    cc = triplet + "-gcc"
    if shutil.which(cc) is None or shutil.which(qemu) is None:
        fail("cross[%s]" % target, "%s or %s missing: run scripts/deps.sh --cross" % (cc, qemu))
        return
    builds = [("", "-Werror")]
    if target == "aarch64":
        builds.append(("portable", "-Werror -DMBOX_PORTABLE_SCAN"))
    for variant, flags in builds:
        tag = target + ("-" + variant if variant else "")
        src = os.path.join(work, "src-" + tag)
        copy_sources(src)
        t0 = time.time()
        goals = ["all", "tests/unit", "tests/dropdump"] if not variant else ["tests/unit"]
        r = run(["make", "-C", src, "-j2", "CC=" + cc, "CFLAGS_EXTRA=" + flags] + goals,
                timeout=900)
        if r.returncode != 0:
            fail("cross[%s].build" % tag, r.stderr.decode(errors="replace")[-800:])
            continue
        ok("cross[%s].build" % tag, "make CC=%s %s: %.0f s" % (cc, flags, time.time() - t0))
        os.chmod(src, 0o755)
        for d in ("tests",):
            os.chmod(os.path.join(src, d), 0o755)
        # the unit tests under qemu; offsets past 4 GiB on armhf only (the
        # 32-bit case; arm64's off_t is the same as x86-64's)
        env = dict(os.environ)
        if target != "armhf":
            env["POP3D_UNIT_NO_BIG"] = "1"
        t0 = time.time()
        u = run([qemu, "-L", QEMU_ROOT, os.path.join(src, "tests/unit")], env=env, timeout=900)
        out = u.stdout.decode(errors="replace")
        last = [l for l in out.splitlines() if " passed, " in l]
        kind = [l for l in out.splitlines() if l.startswith("unit: lf64 is")]
        name = "cross[%s].unit" % tag
        if u.returncode == 0 and last and " 0 failed" in last[-1]:
            ok(name, "%s; %s; %.0f s under %s" % (last[-1], kind[0] if kind else "?",
                                                  time.time() - t0, qemu))
        else:
            fail(name, "exit %d: %s" % (u.returncode, "\n".join(
                l for l in out.splitlines() if l.startswith("FAIL"))[-1500:] or out[-800:]))
        if variant:
            continue
        r = run(["file", "-b", os.path.join(src, "pop3d")])
        if verbose:
            print("# %s pop3d: %s" % (target, r.stdout.decode().strip()))
        for kind_, drop in corpus.items():
            name = "cross[%s].dropdump[%s]" % (target, kind_)
            if native_outs is None or kind_ not in native_outs:
                skip(name, "no x86-64 output to compare with")
                continue
            p = run(as_user([qemu, "-L", QEMU_ROOT, os.path.join(src, "tests/dropdump"), drop]),
                    timeout=300)
            if p.returncode != 0:
                fail(name, "exit %d: %s" % (p.returncode, p.stderr.decode()[-300:]))
            elif p.stdout == native_outs[kind_]:
                ok(name, "%d octets equal x86-64's" % len(p.stdout))
            else:
                i = first_diff(p.stdout, native_outs[kind_])
                fail(name, "differs from x86-64 at octet %d: %r vs %r" % (
                    i, p.stdout[i:i + 40], native_outs[kind_][i:i + 40]))


def server_suite(work, target):
    """tests/run.py against the target's pop3d under qemu (check-slow)."""
    src = os.path.join(work, "src-" + target)
    binary = os.path.join(src, "pop3d")
    name = "cross[%s].run.py" % target
    if not os.path.exists(binary):
        fail(name, "no %s build" % target)
        return
    wrapper = os.path.join(work, "pop3d-qemu-" + target)
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec %s -L %s %s \"$@\"\n" % (TARGETS[target][1], QEMU_ROOT,
                                                         binary))
    os.chmod(wrapper, 0o755)
    env = dict(os.environ, POP3D=wrapper)
    t0 = time.time()
    p = subprocess.run(["/usr/bin/python3", os.path.join(TOP, "tests/run.py")], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=3600)
    out = p.stdout.decode(errors="replace")
    last = [l for l in out.splitlines() if " passed, " in l]
    for l in out.splitlines():
        if l.startswith("FAIL"):
            print("#   " + l)
    if p.returncode == 0 and last:
        ok(name, "%s in %.0f s" % (last[-1], time.time() - t0))
    else:
        fail(name, "%s (exit %d)" % (last[-1] if last else "no summary", p.returncode))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="aarch64,armhf")
    ap.add_argument("--server", action="store_true", help="also tests/run.py under qemu")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pop3d-cross.")
    os.chmod(work, 0o755)
    try:
        corpus_dir = os.path.join(work, "corpus")
        os.makedirs(corpus_dir)
        corpus = write_corpus(corpus_dir)
        outs = native(work, corpus, args.v)
        for t in [t for t in args.targets.split(",") if t]:
            if t not in TARGETS:
                fail("cross[%s]" % t, "unknown target (aarch64, armhf)")
                continue
            cross(t, work, corpus, outs, args.v)
        if args.server:
            for t in [t for t in args.targets.split(",") if t in TARGETS]:
                server_suite(work, t)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return T.summary()


if __name__ == "__main__":
    sys.exit(main())
