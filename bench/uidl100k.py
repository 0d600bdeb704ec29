#!/usr/bin/python3
"""bench/uidl100k.py - what -U dovecot costs when a 100,000-message Maildir
is opened (issue 15: within 20% of the time and memory of pop3d without it).

    bench/uidl100k.py setup [--n 100000]          # as root: the Maildir, then Dovecot's uidlist
    bench/uidl100k.py run [--runs 7] [--maildir Maildir|Maildir-w] [BIN [-- ARGS]]...

setup writes DIR/Maildir like bench.py's maildir-100k (<t>.M<i>P7.bench:2,S
in cur/, sizes counted from the files, owned by uid 4242) and DIR/Maildir-w
like its maildir-100k-w (the same files, hard links named with Dovecot's
,S= and ,W=: three system calls a file), and serves each once with Dovecot
(a private configuration, mail_location maildir:DIR/..., so its
dovecot-uidlist lands in the Maildir, where -U dovecot reads it).

run times each server binary (default: ./pop3d, then ./pop3d -U dovecot)
over pipes, as bench.py's STAT row does: from PASS to the +OK of the login
(the maildrop opened and loaded), the session's CPU time (user + system,
less hurt than the wall time by other work on the machine) and its VmHWM,
both read before QUIT. The
configurations take turns run by run, so drift hits them alike; medians are
printed. DIR is /tmp/pop3d-uidl100k unless $UIDL100K_DIR says otherwise.
"""

import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import pop3lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.environ.get("UIDL100K_DIR", "/tmp/pop3d-uidl100k")
UID = GID = 4242
PW = "bench-pw"
SEED = 7


def words(rng, n):
    w = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua").split()
    out, line = [], []
    while sum(len(x) + 1 for x in out) < n:
        line.append(rng.choice(w))
        if len(line) == 12:
            out.append(" ".join(line))
            line = []
    return ("\n".join(out) + "\n").encode()


def setup(n):
    if os.path.exists(DIR):
        shutil.rmtree(DIR)
    md = os.path.join(DIR, "Maildir")
    mdw = os.path.join(DIR, "Maildir-w")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub))
        os.makedirs(os.path.join(mdw, sub))
    rng = random.Random(SEED + 2)
    small = [words(rng, int(rng.uniform(800, 6000))) for _ in range(997)]
    for i in range(n):
        head = (b"Received: from mx.example.org by mail.example.net; %d\n"
                b"From: sender%d@example.org\nTo: bench@example.net\n"
                b"Subject: benchmark message %d\nMessage-ID: <%d.bench@example.org>\n\n"
                % (i, i % 97, i, i))
        data = head + small[i % 997]
        base = "%d.M%dP%d.bench" % (1700000000 + i, i, SEED)
        with open(os.path.join(md, "cur", base + ":2,S"), "wb") as f:
            f.write(data)
        # the same file under Dovecot's own names (,S= and ,W=), as bench.py's maildir-100k-w
        os.link(os.path.join(md, "cur", base + ":2,S"), os.path.join(
            mdw, "cur", "%s,S=%d,W=%d:2,S" % (base, len(data), len(data) + data.count(b"\n"))))
    for dp, dn, fn in os.walk(DIR):
        os.chown(dp, UID, GID)
        for f in fn:
            os.chown(os.path.join(dp, f), UID, GID)
    for d in (md, mdw):
        dovecot_once(d)
        print("setup: %d messages in %s; %s" % (n, d, "dovecot-uidlist written"
              if os.path.exists(os.path.join(d, "dovecot-uidlist")) else "NO dovecot-uidlist"))


def dovecot_once(md):
    t = os.path.join(DIR, "dovecot")
    os.makedirs(os.path.join(t, "index"))
    os.chown(os.path.join(t, "index"), UID, GID)
    port = pop3lib.free_port()
    pw = os.path.join(t, "passwd")
    with open(pw, "w") as f:
        f.write("bench:{SHA512-CRYPT}%s:%d:%d::%s::userdb_mail=maildir:%s:INDEX=%s/index\n"
                % (pop3lib.crypt_hash(PW, "$6$"), UID, GID, t, md, t))
    conf = os.path.join(t, "dovecot.conf")
    with open(conf, "w") as f:
        f.write("base_dir = %s/run\nstate_dir = %s/state\nlog_path = %s/dovecot.log\n"
                "protocols = pop3\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n"
                "first_valid_uid = 1\nfirst_valid_gid = 1\nmail_fsync = never\n"
                "passdb {\n  driver = passwd-file\n  args = scheme=SHA512-CRYPT %s\n}\n"
                "userdb {\n  driver = passwd-file\n  args = %s\n}\n"
                "service pop3-login {\n  inet_listener pop3 {\n    address = 127.0.0.1\n"
                "    port = %d\n  }\n  inet_listener pop3s {\n    port = 0\n  }\n}\n"
                "service imap-login {\n  inet_listener imap {\n    port = 0\n  }\n"
                "  inet_listener imaps {\n    port = 0\n  }\n}\n" % (t, t, t, pw, pw, port))
    p = subprocess.Popen(["dovecot", "-F", "-c", conf], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        if not pop3lib.wait_for(lambda: pop3lib.port_listening(port), timeout=15):
            raise RuntimeError("dovecot did not listen")
        s = socket.create_connection(("127.0.0.1", port), timeout=300)
        f = s.makefile("rb")
        f.readline()
        for c in ("USER bench", "PASS " + PW, "STAT", "QUIT"):
            s.sendall(c.encode() + b"\r\n")
            r = f.readline()
            if not r.startswith(b"+OK"):
                raise RuntimeError("dovecot: %s: %r" % (c.split()[0], r))
        s.close()
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    shutil.rmtree(t, ignore_errors=True)


def one_run(argv, users, locks):
    p = subprocess.Popen(argv + ["-f", users, "-l", locks, "-D", "0"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    s = pop3lib.Session(pop3lib.PipeTransport(p), proc=p)
    if not s.cmd("USER bench").startswith("+OK"):
        raise RuntimeError("USER")
    t0 = time.monotonic()
    st = s.cmd("PASS " + PW, timeout=120)
    secs = time.monotonic() - t0
    if not st.startswith("+OK"):
        raise RuntimeError("PASS: %s" % st)
    rss = int(pop3lib.proc_status(p.pid).get("VmHWM", ["0"])[0])
    with open("/proc/%d/stat" % p.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    s.quit()
    s.wait()
    return secs, rss, st, cpu


def run(configs, runs, maildir):
    users = os.path.join(DIR, "users")
    locks = os.path.join(DIR, "locks")
    os.makedirs(locks, mode=0o700, exist_ok=True)
    with open(users, "w") as f:
        f.write("bench:{PLAIN}%s:%d:%d::%s/%s/\n" % (PW, UID, GID, DIR, maildir))
    os.chmod(users, 0o600)
    print("%s/%s:" % (DIR, maildir))
    res = {i: [] for i in range(len(configs))}
    for i, c in enumerate(configs):            # one warm-up each (page cache, dentries)
        one_run(c, users, locks)
    for r in range(runs):
        for i, c in enumerate(configs):
            res[i].append(one_run(c, users, locks))
    for i, c in enumerate(configs):
        t = statistics.median(x[0] for x in res[i])
        m = statistics.median(x[1] for x in res[i])
        cpu = statistics.median(x[3] for x in res[i])
        print("%s\n    login %.3f s (min %.3f, max %.3f), CPU %.2f s, VmHWM %d kB (max %d)  [%s]"
              % (" ".join(os.path.relpath(a, REPO) if a.startswith("/") else a for a in c),
                 t, min(x[0] for x in res[i]), max(x[0] for x in res[i]), cpu, m,
                 max(x[1] for x in res[i]), res[i][0][2]))


def main():
    args = sys.argv[1:]
    if not args or args[0] not in ("setup", "run"):
        print(__doc__)
        return 2
    if args[0] == "setup":
        n = int(args[2]) if len(args) > 2 and args[1] == "--n" else 100000
        setup(n)
        return 0
    runs, maildirs = 7, ["Maildir", "Maildir-w"]
    rest = args[1:]
    while rest[:1] in (["--runs"], ["--maildir"]):
        if rest[0] == "--runs":
            runs = int(rest[1])
        else:
            maildirs = [rest[1]]
        rest = rest[2:]
    configs, cur = [], None
    for a in rest:
        if a == "--":
            continue
        if a.startswith("-") and cur is not None:
            cur.append(a)
        elif a.startswith("-"):
            raise SystemExit("an option before any binary: %s" % a)
        elif cur is not None and cur[-1] in ("-U",):
            cur.append(a)
        else:
            cur = [os.path.abspath(a)]
            configs.append(cur)
    if not configs:
        configs = [[os.path.join(REPO, "pop3d")], [os.path.join(REPO, "pop3d"), "-U", "dovecot"]]
    for m in maildirs:
        run(configs, runs, m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
